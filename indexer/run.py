"""The indexing run: a model directory -> item documents -> a new backend version."""

from __future__ import annotations

import logging
from pathlib import Path

from .backend import IndexReport, ProgressFn
from .backends import open_backend
from .documents import iter_documents, open_model, schema_for
from .settings import IndexSettings

logger = logging.getLogger(__name__)


def index_model(model_dir: str | Path, settings: IndexSettings, progress: ProgressFn | None = None) -> IndexReport:
    """Index every item of a model directory into a new version of the configured backend
    and switch to it; the previous version stays current if anything fails."""
    model = open_model(model_dir)
    schema = schema_for(model, tuple(settings.date_fields))
    backend = open_backend(settings)
    logger.info("indexing %s into the %s backend (%s)", model.path, settings.backend, settings.name)
    return backend.create_version(schema, iter_documents(model, schema), progress=progress)
