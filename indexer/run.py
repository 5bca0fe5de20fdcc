"""The indexing run: a model directory -> item documents -> a new backend version."""

from __future__ import annotations

import logging
from pathlib import Path

from .backend import IndexReport, ProgressFn
from .backends import SERVER_BACKENDS, open_backend
from .documents import Prior, iter_documents, open_model, read_changes, schema_for
from .settings import IndexSettings

logger = logging.getLogger(__name__)

MAX_ES_CHANGED = 50_000
"""Above this many changed items, `--changed-only` on Elasticsearch indexes the whole model."""


def index_model(
    model_dir: str | Path,
    settings: IndexSettings,
    progress: ProgressFn | None = None,
    changed_only: bool = False,
) -> IndexReport:
    """Index a model directory into a new version of the configured backend and switch to
    it; the previous version stays current if anything fails.

    Full (default): every item of the model. `changed_only`: the model must come from
    `cooccur update` and the current version from its base model; the new version is the
    current one with the items of the model's changed/ replaced or deleted (the same
    documents as a full index of the model, for a fraction of the reading and writing).
    Refusals raise indexer.errors.ChangedOnlyRefused before anything is written."""
    model = open_model(model_dir)
    schema = schema_for(model, tuple(settings.date_fields), weights=settings.correlator_weights)
    prior = Prior(settings.prior_ranking, settings.prior_exponent, settings.prior_floor)
    if changed_only:
        # model-side checks first: they need no backend
        changes = read_changes(model, schema, prior)
        backend = open_backend(settings)
        n_changed = len(changes.documents) + len(changes.deleted)
        if settings.backend in SERVER_BACKENDS and n_changed > MAX_ES_CHANGED:
            # The copy excludes the changed ids in one `ids` query, bounded by the cluster's
            # index.max_terms_count (65,536 by default); past that a full index is as cheap.
            logger.info("%d changed items: more than %d, indexing the whole model instead",
                        n_changed, MAX_ES_CHANGED)
            return backend.create_version(
                schema, iter_documents(model, schema, prior=prior), progress=progress,
                model_id=model.model_id, model=model.served)
        logger.debug(
            "indexing %d changed items of %s (%d documents, %d deletions) into the %s backend (%s)",
            len(changes.documents) + len(changes.deleted), model.path, len(changes.documents),
            len(changes.deleted), settings.backend, settings.name,
        )
        return backend.update_version(schema, changes, progress=progress)
    backend = open_backend(settings)
    logger.debug("indexing %s into the %s backend (%s)", model.path, settings.backend, settings.name)
    return backend.create_version(
        schema, iter_documents(model, schema, prior=prior), progress=progress, model_id=model.model_id,
        model=model.served,
    )
