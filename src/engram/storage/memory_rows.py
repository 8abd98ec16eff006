"""The memories table's row format: its Arrow schema, the columns added since version 1, and rows to and from Memory."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from engram.core.models import Kind, Memory, Role, Sentiment, Visibility
from engram.core.ports import Candidate, Vectors
from engram.core.timeutil import to_utc
from engram.storage.lance_support import META_MODEL

if TYPE_CHECKING:
    import pyarrow as pa

TABLE_NAME = "memories"
SCHEMA_VERSION = "2"
_META_VERSION = b"engram.schema_version"


def memory_schema(dimensions: int, model_id: str) -> pa.Schema:
    """The Arrow schema of the memories table, stamped with the schema version and embedding model."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("user_id", pa.string(), nullable=False),
            pa.field("agent_id", pa.string()),
            pa.field("visibility", pa.string(), nullable=False),
            pa.field("session_id", pa.string()),
            pa.field("project", pa.string()),
            pa.field("role", pa.string()),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("content", pa.string(), nullable=False),
            pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
            pa.field("tags", pa.list_(pa.string())),
            pa.field("category", pa.string()),
            pa.field("entities", pa.list_(pa.string())),
            # Case-folded entities: what an `entity` filter matches, whatever case the caller writes.
            pa.field("entity_keys", pa.list_(pa.string())),
            pa.field("sentiment", pa.string()),
            pa.field("sentiment_score", pa.float32()),
            pa.field("resolved", pa.bool_()),
            pa.field("importance", pa.float32()),
            pa.field("links", pa.list_(pa.string())),
            pa.field("turn_index", pa.int32()),
            pa.field("metadata", pa.string()),
            # Validity in time: null valid_from (rows written before these columns) means created_at.
            pa.field("valid_from", pa.timestamp("us", tz="UTC")),
            pa.field("valid_until", pa.timestamp("us", tz="UTC")),
            pa.field("supersedes", pa.list_(pa.string())),
            pa.field("superseded_by", pa.list_(pa.string())),
            # Content plus the context a question asks about (speaker, date, the turn replied to): what keyword
            # search matches and the vector embeds, kept apart so the stored content stays verbatim.
            pa.field("index_text", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimensions)),
        ],
        metadata={_META_VERSION: SCHEMA_VERSION.encode(), META_MODEL: model_id.encode()},
    )


#: The memories' own columns, as `memory_schema` lists them (without the vector and the index-only columns); named
#: here rather than read from the schema, so that reading rows back needs no pyarrow until LanceDB is opened.
_COLUMNS = [
    "id", "user_id", "agent_id", "visibility", "session_id", "project", "role", "kind", "content", "created_at",
    "updated_at", "tags", "category", "entities", "sentiment", "sentiment_score", "resolved", "importance", "links",
    "turn_index", "metadata", "valid_from", "valid_until", "supersedes", "superseded_by",
]  # fmt: skip
#: Columns added after schema version 1, with the SQL value that existing rows get.
_ADDED_COLUMNS = {
    "visibility": "'shared'",
    "entity_keys": "arrow_cast(NULL, 'List(Utf8)')",
    "project": "arrow_cast(NULL, 'Utf8')",
    "valid_from": "arrow_cast(NULL, 'Timestamp(Microsecond, Some(\"UTC\"))')",
    "valid_until": "arrow_cast(NULL, 'Timestamp(Microsecond, Some(\"UTC\"))')",
    "supersedes": "arrow_cast(NULL, 'List(Utf8)')",
    "superseded_by": "arrow_cast(NULL, 'List(Utf8)')",
}
_FTS_COLUMN = "index_text"


def _to_row(memory: Memory, index_text: str, vector: Vectors) -> dict[str, Any]:
    row = memory.model_dump(mode="python")
    row["index_text"] = index_text
    row["role"] = memory.role.value if memory.role else None
    row["visibility"] = memory.visibility.value
    row["entity_keys"] = sorted({entity.casefold() for entity in memory.entities})
    row["kind"] = memory.kind.value
    row["sentiment"] = memory.sentiment.value if memory.sentiment else None
    row["metadata"] = json.dumps(memory.metadata, ensure_ascii=False, sort_keys=True)
    row["vector"] = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
    return row


def _candidate(row: dict[str, Any], score: float) -> Candidate:
    return Candidate(memory=_to_memory(row), score=score, vector=np.asarray(row["vector"], dtype=np.float32))


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


def _to_memory(row: dict[str, Any]) -> Memory:
    created_at = _utc(row["created_at"])
    assert created_at is not None
    return Memory(
        id=row["id"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        visibility=Visibility(row["visibility"]),
        session_id=row["session_id"],
        project=row.get("project"),
        role=Role(row["role"]) if row["role"] else None,
        kind=Kind(row["kind"]),
        content=row["content"],
        created_at=created_at,
        updated_at=_utc(row["updated_at"]),
        tags=list(row["tags"] or []),
        category=row["category"],
        entities=list(row["entities"] or []),
        sentiment=Sentiment(row["sentiment"]) if row["sentiment"] else None,
        sentiment_score=None if row["sentiment_score"] is None else round(float(row["sentiment_score"]), 6),
        resolved=row["resolved"],
        importance=None if row["importance"] is None else round(float(row["importance"]), 6),
        links=list(row["links"] or []),
        turn_index=row["turn_index"],
        metadata=json.loads(row["metadata"]) if row["metadata"] else {},
        valid_from=_utc(row["valid_from"]) or created_at,
        valid_until=_utc(row["valid_until"]),
        supersedes=list(row["supersedes"] or []),
        superseded_by=list(row["superseded_by"] or []),
    )
