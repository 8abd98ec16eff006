"""Storage engines behind the core's ports: LanceDB for long-term memory, diskcache for sessions."""

from engram.storage.lazy_rest_client import defer_rest_client
from engram.storage.light_overrides import lighten_overrides

# Before any storage module imports lancedb: its unused REST client otherwise costs ~0.5 s CPU at start-up, and
# on Python 3.11 the `overrides` package's import-time checks ~0.1 s.
defer_rest_client()
lighten_overrides()
