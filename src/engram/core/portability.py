"""Export and restore: everything a user owns as plain records, and those records back into the stores, once.

Records are JSON-ready dicts, one per memory, session, knowledge source, graph entity and graph relation, after a
header naming the embedding model. Ids are content-addressed per user: restored into the same data directory they
come back unchanged; into another one (another user key) they are recomputed, and the links, session turns and
graph relations that name them follow.
Vectors are kept only when the file carries them and was made with the same model; otherwise the restore embeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread
import numpy as np

from engram.core.errors import InvalidInput
from engram.core.filters import MemoryFilters
from engram.core.graph_models import Entity, Relation, entity_id, relation_id
from engram.core.identity import UserKey
from engram.core.knowledge import chunk_id
from engram.core.knowledge_models import KnowledgeChunk
from engram.core.models import Memory, Turn, Visibility
from engram.core.ports import Vectors
from engram.core.timeutil import utc_now
from engram.core.validation import check_optional_id, memory_id

if TYPE_CHECKING:
    from engram.core.service import MemoryService

T = TypeVar("T")
FORMAT = "engram-export"
FORMAT_VERSION = 1
#: Memories and chunks embedded and written per store call during a restore.
_BATCH = 256
#: "No limit" for the graph reads of an export (a user's whole graph).
_ALL = 10_000_000


async def _run(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


def _vector(values: Vectors) -> list[float]:
    return [round(float(v), 7) for v in np.asarray(values, dtype=np.float32).reshape(-1)]


async def export_records(
    memory: MemoryService, user_id: str, *, project: str | None = None, with_vectors: bool = False
) -> list[dict[str, Any]]:
    """The header, then every memory, session and (without `project`) knowledge source of the user, as records."""
    key = memory.user_key(user_id)
    check_optional_id("project", project)
    stored = await _run(partial(memory.long_term.stored_memories, key, project))
    records: list[dict[str, Any]] = [
        {
            "type": FORMAT,
            "version": FORMAT_VERSION,
            "model": memory.embedder.model_id,
            "dimensions": memory.embedder.dimensions,
            "user_id": user_id,
            "project": project,
            "exported_at": utc_now().isoformat(),
            "with_vectors": with_vectors,
        }
    ]
    for item in stored:
        record: dict[str, Any] = {
            "type": "memory",
            "memory": item.memory.model_copy(update={"user_id": user_id}).model_dump(mode="json"),
            "index_text": item.index_text,
        }
        if with_vectors:
            record["vector"] = _vector(item.vector)
        records.append(record)
    records.extend(await _session_records(memory, key, {s.memory.session_id for s in stored}, project))
    if project is None and memory.knowledge is not None:
        records.extend(await _knowledge_records(memory, key, with_vectors))
    if project is None:
        records.extend(await _graph_records(memory, key, {s.memory.agent_id for s in stored}))
    return records


async def _graph_records(memory: MemoryService, key: UserKey, agents: set[str | None]) -> list[dict[str, Any]]:
    """The user's graph: every entity and relation, the private ones of each agent that wrote memories included."""
    graph = memory.graph_store
    if graph is None:
        return []
    entities: dict[str, Entity] = {}
    relations: dict[str, Relation] = {}
    # A query sees shared items and the asking agent's private ones: ask as each agent in turn.
    for agent in [*sorted(agents - {None}, key=str), None]:
        seen = MemoryFilters().seen_by(agent)
        for entity in await _run(partial(graph.entities, key, seen, None, _ALL)):
            entities.setdefault(entity.id, entity)
        for relation in await _run(partial(graph.relations, key, seen, None, _ALL)):
            relations.setdefault(relation.id, relation)
    return [{"type": "entity", "entity": _without_owner(e)} for e in entities.values()] + [
        {"type": "relation", "relation": _without_owner(r)} for r in relations.values()
    ]


def _without_owner(item: Entity | Relation) -> dict[str, Any]:
    # The owner is the user's key in this directory: the restore gives the item its key there.
    data = item.model_dump(mode="json")
    data.pop("user_id", None)
    return data


async def _session_records(
    memory: MemoryService, key: UserKey, of_memories: set[str | None], project: str | None
) -> list[dict[str, Any]]:
    """Each session still in short-term memory: its verbatim transcript and its working memory (with summaries)."""
    records: list[dict[str, Any]] = []
    for info in await _run(partial(memory.sessions.sessions, key)):
        if project is not None and info.session_id not in of_memories:
            continue
        transcript = await _run(partial(memory.sessions.transcript, key, info.session_id)) or []
        working = await _run(partial(memory.sessions.working, key, info.session_id))
        records.append(
            {
                "type": "session",
                "session": info.model_dump(mode="json"),
                "transcript": [t.model_dump(mode="json") for t in transcript],
                "summaries": [t.model_dump(mode="json") for t in working if t.is_summary],
            }
        )
    return records


async def _knowledge_records(memory: MemoryService, key: UserKey, with_vectors: bool) -> list[dict[str, Any]]:
    """The user's own knowledge sources (not the global ones), one record per source with its chunks."""
    assert memory.knowledge is not None
    by_source: dict[str, dict[str, Any]] = {}
    for found in await _run(partial(memory.knowledge.store.chunks_of, key)):
        chunk = found.chunk
        record = by_source.setdefault(
            chunk.source,
            {
                "type": "knowledge",
                "source": chunk.source,
                "origin": chunk.origin,
                "title": chunk.title,
                "source_hash": chunk.source_hash,
                "ingested_at": chunk.ingested_at.isoformat(),
                "chunks": [],
            },
        )
        entry: dict[str, Any] = {
            "id": chunk.id,
            "heading_path": list(chunk.heading_path),
            "position": chunk.position,
            "chunks": chunk.chunks,
            "page": chunk.page,
            "content": chunk.content,
            "index_text": chunk.index_text,
        }
        if with_vectors:
            entry["vector"] = _vector(found.vector)
        record["chunks"].append(entry)
    return list(by_source.values())


class Restorer:
    """Puts exported records back for one user: memories, then sessions, then knowledge; repeats change nothing."""

    def __init__(self, memory: MemoryService, user_id: str, header: dict[str, Any]) -> None:
        if header.get("type") != FORMAT or header.get("version") != FORMAT_VERSION:
            raise InvalidInput("file", f"is not an Engram export (expected a first line with type {FORMAT!r}).")
        self._memory = memory
        self._user_id = user_id
        self._key = memory.user_key(user_id)
        embedder = memory.embedder
        self._same_model = header.get("model") == embedder.model_id and header.get("dimensions") == embedder.dimensions
        self._ids: dict[str, str] = {}
        self.counts = {
            "memories": 0,
            "memories_new": 0,
            "sessions": 0,
            "turns_new": 0,
            "knowledge_sources": 0,
            "entities": 0,
            "relations_new": 0,
        }

    async def _vectors(self, texts: Sequence[str], given: Sequence[object]) -> Vectors:
        """The exported vectors when the model is the same and every record has one; else embedded now."""
        if self._same_model and all(isinstance(v, list) for v in given):
            return np.asarray(given, dtype=np.float32).reshape(len(texts), -1)
        return await _run(partial(self._memory.embedder.embed, list(texts)))

    async def memories(self, records: Iterable[dict[str, Any]]) -> None:
        """Insert the exported memories whose id is not stored yet (in batches)."""
        batch = list(records)
        for start in range(0, len(batch), _BATCH):
            part = batch[start : start + _BATCH]
            memories = [self._memory_of(r["memory"]) for r in part]
            texts = [str(r.get("index_text") or m.content) for r, m in zip(part, memories, strict=True)]
            vectors = await self._vectors(texts, [r.get("vector") for r in part])
            memories = [m.model_copy(update={"links": [self._ids.get(i, i) for i in m.links]}) for m in memories]
            inserted = await _run(partial(self._memory.long_term.add_many, memories, texts, vectors))
            self.counts["memories"] += len(part)
            self.counts["memories_new"] += len(inserted)

    def _memory_of(self, data: dict[str, Any]) -> Memory:
        try:
            exported = Memory.model_validate({**data, "user_id": self._key})
        except ValueError as exc:
            raise InvalidInput("memory", f"a memory record is malformed: {exc}") from exc
        new_id = memory_id(self._key, exported.content, exported.project)
        self._ids[exported.id] = new_id
        return exported.model_copy(update={"id": new_id})

    async def sessions(self, records: Iterable[dict[str, Any]]) -> None:
        """Append each session's turns that it does not hold yet, in order, then its latest summary."""
        store, key = self._memory.sessions, self._key
        for record in records:
            session_id = str(record["session"]["session_id"])
            check_optional_id("session_id", session_id)
            held = {t.memory_id for t in await _run(partial(store.transcript, key, session_id)) or []}
            for data in record.get("transcript", []):
                turn = self._turn_of(data)
                if turn.memory_id not in held:
                    await _run(partial(store.append_turn, key, session_id, turn, turn.created_at))
                    held.add(turn.memory_id)
                    self.counts["turns_new"] += 1
            summaries = [self._turn_of(d) for d in record.get("summaries", [])]
            if summaries and await _run(partial(store.summarized_until, key, session_id)) < summaries[-1].seq:
                summary = summaries[-1]
                await _run(partial(store.apply_summary, key, session_id, summary, summary.seq, self._memory.clock()))
            self.counts["sessions"] += 1

    def _turn_of(self, data: dict[str, Any]) -> Turn:
        turn = Turn.model_validate(data)
        return turn.model_copy(update={"memory_id": self._ids.get(turn.memory_id, turn.memory_id)})

    async def knowledge(self, records: Iterable[dict[str, Any]]) -> None:
        """Make each exported source the whole content of that source of the user (chunk ids recomputed)."""
        if self._memory.knowledge is None:
            return
        store = self._memory.knowledge.store
        for record in records:
            source = str(record["source"])
            ingested = datetime.fromisoformat(str(record["ingested_at"]))
            chunks = [
                KnowledgeChunk(
                    id=chunk_id(self._key, source, int(c["position"]), str(c["index_text"])),
                    owner=self._key,
                    source=source,
                    origin="text" if record.get("origin") == "text" else "file",
                    title=str(record["title"]),
                    heading_path=[str(h) for h in c.get("heading_path") or []],
                    position=int(c["position"]),
                    chunks=int(c["chunks"]),
                    page=c.get("page"),
                    content=str(c["content"]),
                    index_text=str(c["index_text"]),
                    source_hash=str(record["source_hash"]),
                    ingested_at=ingested,
                )
                for c in record.get("chunks", [])
            ]
            if not chunks:
                continue
            vectors = await self._vectors([c.index_text for c in chunks], [c.get("vector") for c in record["chunks"]])
            await _run(partial(store.replace_sources, self._key, [source], chunks, vectors))
            self.counts["knowledge_sources"] += 1

    async def graph(self, entities: Iterable[dict[str, Any]], relations: Iterable[dict[str, Any]]) -> None:
        """Put back the user's entities and relations under this directory's ids (their memories restored first)."""
        graph = self._memory.graph_store
        if graph is None:
            return
        key = self._key
        try:
            nodes = [Entity.model_validate({**r["entity"], "user_id": key}) for r in entities]
            edges = [Relation.model_validate({**r["relation"], "user_id": key}) for r in relations]
        except (KeyError, ValueError) as exc:
            raise InvalidInput("file", f"holds a malformed graph record: {exc}") from exc
        nodes = [n.model_copy(update={"id": entity_id(key, n.visibility.value, _owner(n), n.name)}) for n in nodes]
        edges = [
            e.model_copy(
                update={
                    "id": relation_id(key, e.visibility.value, _owner(e), e.source, e.relation_type, e.target),
                    "memory_ids": [self._ids.get(i, i) for i in e.memory_ids],
                }
            )
            for e in edges
        ]
        if nodes:
            await _run(partial(graph.upsert_entities, nodes))
        self.counts["entities"] += len(nodes)
        if edges:
            self.counts["relations_new"] += len(await _run(partial(graph.upsert_relations, edges)))


def _owner(item: Entity | Relation) -> str | None:
    return item.agent_id if item.visibility is Visibility.PRIVATE else None


async def restore(memory: MemoryService, user_id: str, records: Iterator[dict[str, Any]]) -> dict[str, int]:
    """Restore an export (its header first) for `user_id`; running it again stores nothing new."""
    header = next(records, None)
    if header is None:
        raise InvalidInput("file", "is empty; expected an Engram export.")
    restorer = Restorer(memory, user_id, header)
    by_type: dict[str, list[dict[str, Any]]] = {t: [] for t in ("memory", "session", "knowledge", "entity", "relation")}
    for record in records:
        kind = record.get("type")
        if kind not in by_type:
            raise InvalidInput(
                "file", f"holds a record of unknown type {kind!r}; expected one of {', '.join(by_type)}."
            )
        by_type[str(kind)].append(record)
    # Memories first: sessions and links name memory ids, which a restore into another directory changes.
    await restorer.memories(by_type["memory"])
    await restorer.sessions(by_type["session"])
    await restorer.knowledge(by_type["knowledge"])
    await restorer.graph(by_type["entity"], by_type["relation"])
    return restorer.counts
