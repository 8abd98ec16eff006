"""Storage engines behind the core's ports: LanceDB for long-term memory, diskcache for sessions."""

from engram.storage.lazy_rest_client import defer_rest_client

# Before any storage module imports lancedb: its unused REST client otherwise costs ~0.5 s CPU at start-up.
defer_rest_client()
