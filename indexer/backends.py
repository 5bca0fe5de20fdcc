"""Open the configured backend (imports each implementation only when it is used)."""

from __future__ import annotations

from .backend import Backend
from .settings import IndexSettings


def open_backend(settings: IndexSettings) -> Backend:
    """The backend named by the settings, ready to index into or search."""
    if settings.backend == "elasticsearch":
        from .elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend(settings.name, settings.elasticsearch, settings.keep_versions)
    from .embedded import EmbeddedBackend

    return EmbeddedBackend(settings.data_dir, settings.name, settings.keep_versions)
