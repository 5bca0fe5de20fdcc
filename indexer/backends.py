"""The backends by name, and opening the configured one (each implementation is imported only
when it is used). The one place backend names live: settings, the CLI and the indexer ask here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .backend import Backend

if TYPE_CHECKING:
    from .settings import IndexSettings

SERVER_BACKENDS = ("elasticsearch", "opensearch")
"""Backends on a search server (versions are indices behind an alias; [index.<name>] settings)."""
BACKENDS = ("embedded", *SERVER_BACKENDS)
"""Every [index] backend name, the default first."""


def open_backend(settings: IndexSettings) -> Backend:
    """The backend named by the settings, ready to index into or search."""
    if settings.backend == "elasticsearch":
        from .elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend(settings.name, settings.elasticsearch, settings.keep_versions)
    if settings.backend == "opensearch":
        from .opensearch import OpenSearchBackend

        return OpenSearchBackend(settings.name, settings.opensearch, settings.keep_versions)
    from .embedded import EmbeddedBackend

    return EmbeddedBackend(settings.data_dir, settings.name, settings.keep_versions, settings.search_threads)
