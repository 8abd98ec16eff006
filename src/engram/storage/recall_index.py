"""One user's memories in process memory for recall: vectors as a matrix, a BM25 inverted index, filter columns.

LanceDB answers a prefiltered search in 15-30 ms of planning and scanning whatever the table's size; the same
search over a user's rows held here costs well under a millisecond of numpy. The index answers exactly what
`LanceLongTermStore.vector_search` and `keyword_search` answer: the same rows (every `MemoryFilters` condition,
agent visibility and project scope is evaluated here as `storage/filters.py` compiles it for LanceDB), cosine
similarity as the vector score, BM25 (k1 1.2, b 0.75, LanceDB's formula and tokenizer) as the keyword score,
computed over the user's own memories. `storage/indexed_long_term.py` keeps it coherent with the table.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from engram.core.filters import MemoryFilters
from engram.core.models import Kind, Memory, Role, Sentiment, Visibility
from engram.core.ports import Candidate, Vectors
from engram.core.timeutil import to_utc
from engram.storage.recall_terms import terms

_K1, _B = 1.2, 0.75
_FIELDS = tuple(Memory.model_fields)
_FIELD_SET = frozenset(_FIELDS)
_LISTS = ("tags", "entities", "links", "supersedes", "superseded_by")
_EMPTY: list[str] = []
_ENUMS: dict[str, dict[str, Any]] = {
    "visibility": {v.value: v for v in Visibility},
    "role": {v.value: v for v in Role},
    "kind": {v.value: v for v in Kind},
    "sentiment": {v.value: v for v in Sentiment},
}
#: Attributes compared as whole strings: kept as integer codes, one dictionary per attribute (-1: null).
_CODED = ("agent_id", "visibility", "session_id", "project", "category", "kind", "sentiment")
#: List attributes a filter tests membership in, by the column LanceDB tests (entities are matched case-folded).
_LABELS = {"tags": "tags", "entities": "entity_keys"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = np.iinfo(np.int64).max
#: Bytes per row besides the vector and the text (measured: values, times, codes and postings of a short memory).
_ROW_OVERHEAD = 1_000


def _micros(value: datetime) -> int:
    """A time as microseconds since the epoch in UTC (LanceDB stores microseconds)."""
    delta = to_utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else to_utc(value)


def memory_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """A table row's memory as the values of Memory's fields, in their order (what `_to_memory` makes of it)."""
    return memory_columns({name: [value] for name, value in row.items()}, 1)[0]


def _shared(values: list[Any]) -> list[Any]:
    """The values with equal ones sharing one object (a user's rows repeat their user, agent, session...)."""
    seen: dict[Any, Any] = {}
    return [seen.setdefault(v, v) for v in values]


def memory_columns(columns: dict[str, list[Any]], count: int) -> list[tuple[Any, ...]]:
    """Table rows given as columns (Arrow's `to_pydict`), as memory values (what `_to_memory` makes of each)."""
    out: dict[str, list[Any]] = {}
    for name in _FIELDS:
        raw = columns.get(name) or [None] * count
        if name in _ENUMS:
            members = _ENUMS[name]
            out[name] = [members[getattr(v, "value", v)] if v else None for v in raw]
        elif name in _LISTS:
            # Empty lists are the common case: one shared object each, never changed (Memory is frozen, and no
            # code changes a memory's lists in place).
            out[name] = [list(v) if v else _EMPTY for v in raw]
        elif name in ("sentiment_score", "importance"):
            out[name] = [None if v is None else round(float(v), 6) for v in raw]
        elif name == "metadata":
            out[name] = [(json.loads(v) if v else {}) if isinstance(v, str | None) else v for v in raw]
        elif name in ("created_at", "updated_at", "valid_from", "valid_until"):
            out[name] = [None if v is None else to_utc(v) for v in raw]
        elif name in ("id", "content"):
            out[name] = list(raw)
        else:
            out[name] = _shared(list(raw))
    # A row written before validity existed holds from its creation.
    out["valid_from"] = [v or c for v, c in zip(out["valid_from"], out["created_at"], strict=True)]
    return list(zip(*(out[name] for name in _FIELDS), strict=True))


def trusted_memory(values: tuple[Any, ...]) -> Memory:
    """A Memory from values that came out of the table (validated when written), without validating them again.

    Validation costs ~50 us per memory, and recall builds up to 100 candidates per query.
    """
    data = dict(zip(_FIELDS, values, strict=True))
    memory = Memory.__new__(Memory)
    object.__setattr__(memory, "__dict__", data)
    object.__setattr__(memory, "__pydantic_fields_set__", set(_FIELD_SET))
    object.__setattr__(memory, "__pydantic_extra__", None)
    object.__setattr__(memory, "__pydantic_private__", None)
    return memory


class UserIndex:
    """One user's memories: their vectors, filter columns, BM25 postings and values, addressed by slot."""

    def __init__(self, dimensions: int) -> None:
        self.dimensions = dimensions
        self.size = 0  # slots used (deleted ones included)
        self.live = 0
        self._total_terms = 0  # over live rows: BM25's average document length
        self._slot: dict[str, int] = {}
        self._values: list[tuple[Any, ...] | None] = []
        self._vectors = np.zeros((0, dimensions), dtype=np.float32)
        self._norms = np.zeros(0, dtype=np.float32)
        self._alive = np.zeros(0, dtype=bool)
        self._lengths = np.zeros(0, dtype=np.int32)
        self._created = np.zeros(0, dtype=np.int64)
        self._valid_from = np.zeros(0, dtype=np.int64)
        self._valid_until = np.zeros(0, dtype=np.int64)
        self._importance = np.zeros(0, dtype=np.float32)
        self._resolved = np.zeros(0, dtype=np.int8)
        self._codes = {name: np.zeros(0, dtype=np.int32) for name in _CODED}
        self._dictionary: dict[str, dict[str, int]] = {name: {} for name in _CODED}
        self._labels: dict[str, dict[str, array[int]]] = {column: {} for column in _LABELS.values()}
        self._postings: dict[str, tuple[array[int], array[int]]] = {}
        self._text_bytes = 0

    # -- building ---------------------------------------------------------------------------------------------

    def holds(self, memory_id: str) -> bool:
        """Whether a live memory with this id is indexed."""
        return memory_id in self._slot

    def add_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        """Index table rows as the store writes them (`memory_rows._to_row`, each with its vector); ids already
        held are skipped."""
        columns = {name: [row.get(name) for row in rows] for name in rows[0] if name != "vector"}
        self.add(columns, np.stack([np.asarray(row["vector"], dtype=np.float32).reshape(-1) for row in rows]))

    def add(self, columns: dict[str, list[Any]], vectors: npt.NDArray[np.float32]) -> None:
        """Index table rows given as columns (with `index_text` and `entity_keys`) and their vectors (one per row);
        ids already held are skipped."""
        fresh = [i for i, memory_id in enumerate(columns["id"]) if memory_id not in self._slot]
        if not fresh:
            return
        if len(fresh) < len(columns["id"]):
            columns = {name: [values[i] for i in fresh] for name, values in columns.items()}
            vectors = vectors[fresh]
        count = len(fresh)
        self._grow(count)
        first, self.size = self.size, self.size + count
        rows = slice(first, self.size)
        values = memory_columns(columns, count)
        memories = {name: [v[i] for v in values] for i, name in enumerate(_FIELDS)}
        self._values.extend(values)
        for offset, memory_id in enumerate(memories["id"]):
            self._slot[memory_id] = first + offset
        matrix = np.asarray(vectors, dtype=np.float32).reshape(count, self.dimensions)
        self._vectors[rows] = matrix
        self._norms[rows] = np.linalg.norm(matrix, axis=1)
        self._alive[rows] = True
        self._created[rows] = [_micros(v) for v in memories["created_at"]]
        self._valid_from[rows] = [_micros(v) for v in memories["valid_from"]]
        self._valid_until[rows] = [_NEVER if v is None else _micros(v) for v in memories["valid_until"]]
        # The stored float32 itself, not the rounded value a Memory shows: filters compare what LanceDB compares.
        self._importance[rows] = [np.nan if v is None else v for v in columns.get("importance") or [None] * count]
        self._resolved[rows] = [-1 if v is None else int(bool(v)) for v in memories["resolved"]]
        for name in _CODED:
            dictionary = self._dictionary[name]
            self._codes[name][rows] = [
                -1 if v is None else dictionary.setdefault(str(v), len(dictionary)) for v in memories[name]
            ]
        for column in _LABELS.values():
            labels = self._labels[column]
            for offset, held in enumerate(columns.get(column) or [None] * count):
                for label in set(held or ()):
                    labels.setdefault(label, array("i")).append(first + offset)
        for offset, text in enumerate(columns["index_text"]):
            self._index_text(first + offset, text)
        self.live += count
        self._text_bytes += sum(len(c) + len(i) for c, i in zip(memories["content"], memories["id"], strict=True))

    def _index_text(self, slot: int, text: str) -> None:
        counted: dict[str, int] = {}
        for term in terms(text):
            counted[term] = counted.get(term, 0) + 1
        postings = self._postings
        for term, count in counted.items():
            held = postings.get(term)
            if held is None:
                held = postings[term] = (array("i"), array("i"))
            held[0].append(slot)
            held[1].append(count)
        length = sum(counted.values())
        self._lengths[slot] = length
        self._total_terms += length
        self._text_bytes += 8 * len(counted)

    def _grow(self, extra: int) -> None:
        needed = self.size + extra
        if needed <= len(self._alive):
            return
        # 1/8 headroom: appends stay cheap, and the arrays never hold much more than the rows.
        capacity = max(needed, len(self._alive) + len(self._alive) // 8, 16)

        def grown(old: npt.NDArray[Any], fill: Any = 0) -> npt.NDArray[Any]:
            new = np.full((capacity, *old.shape[1:]), fill, dtype=old.dtype)
            new[: self.size] = old[: self.size]
            return new

        self._vectors = grown(self._vectors)
        self._norms, self._alive, self._lengths = grown(self._norms), grown(self._alive), grown(self._lengths)
        self._created, self._valid_from = grown(self._created), grown(self._valid_from)
        self._valid_until, self._importance = grown(self._valid_until), grown(self._importance)
        self._resolved = grown(self._resolved)
        self._codes = {name: grown(codes, -1) for name, codes in self._codes.items()}

    def remove(self, ids: Iterable[str]) -> None:
        """Drop these memories: no search returns them again."""
        for memory_id in ids:
            slot = self._slot.pop(memory_id, None)
            if slot is None:
                continue
            self._alive[slot] = False
            self._values[slot] = None
            self._total_terms -= int(self._lengths[slot])
            self.live -= 1

    @property
    def nbytes(self) -> int:
        """Roughly what the index holds in memory."""
        return int(self._vectors.nbytes) + len(self._alive) * _ROW_OVERHEAD + self._text_bytes

    # -- filters ----------------------------------------------------------------------------------------------

    def mask(self, filters: MemoryFilters) -> npt.NDArray[np.bool_] | None:
        """Which slots `filters` admit, as LanceDB's where-clause would; None for a condition this index lacks."""
        n = self.size
        keep = self._alive[:n].copy()
        visibility = self._coded("visibility", "shared")
        if filters.shared_only or filters.viewer_agent is None:
            keep &= visibility
        else:
            keep &= visibility | self._coded("agent_id", filters.viewer_agent)
        if filters.projects != "any":
            unset = self._codes["project"][:n] == -1
            if filters.project is None:
                keep &= unset
            elif filters.projects == "only":
                keep &= self._coded("project", filters.project)
            else:
                keep &= unset | self._coded("project", filters.project)
        for condition, value in filters.conditions():
            admitted = self._condition(condition.attribute, condition.kind, value)
            if admitted is None:
                return None
            keep &= admitted
        return keep

    def _coded(self, name: str, value: Any) -> npt.NDArray[np.bool_]:
        code = self._dictionary[name].get(str(value), -2)
        result: npt.NDArray[np.bool_] = self._codes[name][: self.size] == code
        return result

    def _labelled(self, column: str, labels: Iterable[str]) -> list[npt.NDArray[np.bool_]]:
        found = []
        for label in labels:
            mask = np.zeros(self.size, dtype=bool)
            slots = self._labels[column].get(label)
            if slots is not None:
                mask[np.frombuffer(slots, dtype=np.int32)] = True
            found.append(mask)
        return found

    def _condition(self, attribute: str, kind: str, value: Any) -> npt.NDArray[np.bool_] | None:
        """One condition as a mask, by the rule `storage/filters.py` gives LanceDB; None when not held here."""
        n = self.size
        if attribute in _CODED and kind in ("equals", "in", "not_in"):
            values = [value] if kind == "equals" else list(value)
            hit = np.zeros(n, dtype=bool)
            for one in values:
                hit |= self._coded(attribute, one)
            # SQL: `x NOT IN (...)` is null for a null x, hence the explicit IS NULL of the compiled rule.
            return (~hit | (self._codes[attribute][:n] == -1)) if kind == "not_in" else hit
        if attribute in _LABELS and kind in ("has_any", "has_all", "has_folded"):
            column = _LABELS[attribute]
            masks = self._labelled(column, [value.casefold()] if kind == "has_folded" else list(value))
            combined: npt.NDArray[np.bool_] = np.zeros(n, dtype=bool)
            if masks:
                combined = np.logical_and.reduce(masks) if kind == "has_all" else np.logical_or.reduce(masks)
            return combined
        if attribute == "resolved" and kind == "is_true":
            resolved: npt.NDArray[np.bool_] = self._resolved[:n] == 1
            return resolved if value else ~resolved
        if attribute == "importance" and kind == "at_least":
            with np.errstate(invalid="ignore"):
                # LanceDB compares in the column's float32 (0.7 admits a stored 0.7); null (NaN) fails, as in SQL.
                admitted: npt.NDArray[np.bool_] = self._importance[:n] >= np.float32(value)
                return admitted
        if attribute == "created_at" and kind in ("at_least", "before"):
            at = _micros(value)
            created = self._created[:n]
            return created >= at if kind == "at_least" else created < at
        if attribute == "validity" and kind in ("valid_at", "open_at"):
            at = _micros(value)
            still_open = self._valid_until[:n] > at
            return still_open if kind == "open_at" else still_open & (self._valid_from[:n] <= at)
        return None

    # -- searches ---------------------------------------------------------------------------------------------

    def _candidates(self, slots: npt.NDArray[np.intp], scores: npt.NDArray[Any], limit: int) -> list[Candidate]:
        if len(slots) > limit:
            slots = slots[np.argpartition(-scores[slots], limit - 1)[:limit]]
        slots = slots[np.argsort(-scores[slots], kind="stable")]
        found = []
        for slot in slots.tolist():
            values = self._values[slot]
            assert values is not None
            found.append(Candidate(trusted_memory(values), float(scores[slot]), self._vectors[slot]))
        return found

    def admitted_candidates(
        self, memory_ids: Iterable[str], admitted: npt.NDArray[np.bool_], score: float
    ) -> list[Candidate]:
        """Those of these memories that are held and admitted, each with `score` (read without LanceDB)."""
        found = []
        for memory_id in memory_ids:
            slot = self._slot.get(memory_id)
            values = None if slot is None or not admitted[slot] else self._values[slot]
            if values is not None:
                found.append(Candidate(trusted_memory(values), score, self._vectors[slot]))
        return found

    def vector_search(self, vector: Vectors, admitted: npt.NDArray[np.bool_], limit: int) -> list[Candidate]:
        """The admitted memories most similar to `vector` (cosine, as LanceDB scores it), best first."""
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        n = self.size
        with np.errstate(divide="ignore", invalid="ignore"):
            similarity = (self._vectors[:n] @ query) / (self._norms[:n] * norm)
        slots = np.flatnonzero(admitted & ~np.isnan(similarity))
        return self._candidates(slots, similarity, limit)

    def keyword_search(self, text: str, admitted: npt.NDArray[np.bool_], limit: int) -> list[Candidate]:
        """The admitted memories matching a term of `text`, by BM25 over the user's memories, best first."""
        n = self.size
        if not self.live:
            return []
        scores = np.zeros(n, dtype=np.float64)
        matched = np.zeros(n, dtype=bool)
        average = self._total_terms / self.live
        lengths = self._lengths[:n]
        for term in dict.fromkeys(terms(text)):
            posting = self._postings.get(term)
            if posting is None:
                continue
            slots = np.array(posting[0], dtype=np.intp)
            live = self._alive[slots]
            slots = slots[live]
            if not len(slots):
                continue
            frequency = np.array(posting[1], dtype=np.float64)[live]
            count = len(slots)
            idf = math.log(1.0 + (self.live - count + 0.5) / (count + 0.5))
            norm = _K1 * (1.0 - _B + _B * lengths[slots] / average) if average else _K1
            scores[slots] += idf * frequency * (_K1 + 1.0) / (frequency + norm)
            matched[slots] = True
        return self._candidates(np.flatnonzero(matched & admitted), scores, limit)

    # -- snapshots (storage/recall_snapshot.py) ---------------------------------------------------------------

    def state(self) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
        """Everything the index holds: its arrays, and the rest as JSON-ready values (see `restored`)."""
        n = self.size
        arrays: dict[str, npt.NDArray[Any]] = {
            "vectors": self._vectors[:n],
            "norms": self._norms[:n],
            "alive": self._alive[:n],
            "lengths": self._lengths[:n],
            "created": self._created[:n],
            "valid_from": self._valid_from[:n],
            "valid_until": self._valid_until[:n],
            "importance": self._importance[:n],
            "resolved": self._resolved[:n],
        }
        arrays.update({f"code_{name}": codes[:n] for name, codes in self._codes.items()})
        # Postings and labels as one flat array of slots (and counts) with each term's offset into it.
        words = list(self._postings)
        held = [self._postings[w] for w in words]
        arrays["posting_offsets"] = np.cumsum([0, *(len(p[0]) for p in held)], dtype=np.int64)
        arrays["posting_slots"] = np.frombuffer(b"".join(p[0].tobytes() for p in held), dtype=np.int32)
        arrays["posting_counts"] = np.frombuffer(b"".join(p[1].tobytes() for p in held), dtype=np.int32)
        labels: dict[str, list[str]] = {}
        for column, by_label in self._labels.items():
            names = labels[column] = list(by_label)
            arrays[f"label_offsets_{column}"] = np.cumsum([0, *(len(by_label[x]) for x in names)], dtype=np.int64)
            arrays[f"label_slots_{column}"] = np.frombuffer(
                b"".join(by_label[x].tobytes() for x in names), dtype=np.int32
            )
        values = [None if v is None else [_encoded(x) for x in v] for v in self._values]
        meta = {
            "size": n,
            "live": self.live,
            "total_terms": self._total_terms,
            "text_bytes": self._text_bytes,
            "dictionary": self._dictionary,
            "terms": words,
            "labels": labels,
            "values": values,
        }
        return arrays, meta

    @classmethod
    def restored(cls, dimensions: int, arrays: dict[str, npt.NDArray[Any]], meta: dict[str, Any]) -> UserIndex:
        """The index `state` described (ValueError, KeyError or TypeError when the description is inconsistent)."""
        index = cls(dimensions)
        n = int(meta["size"])
        index.size, index.live = n, int(meta["live"])
        index._total_terms, index._text_bytes = int(meta["total_terms"]), int(meta["text_bytes"])

        def column(name: str, dtype: Any, shape: tuple[int, ...] = ()) -> npt.NDArray[Any]:
            found = np.ascontiguousarray(arrays[name], dtype=dtype)
            if found.shape != (n, *shape):
                raise ValueError(f"{name}: shape {found.shape}, expected {(n, *shape)}")
            return found.copy()

        index._vectors = column("vectors", np.float32, (dimensions,))
        index._norms, index._alive = column("norms", np.float32), column("alive", bool)
        index._lengths, index._created = column("lengths", np.int32), column("created", np.int64)
        index._valid_from, index._valid_until = column("valid_from", np.int64), column("valid_until", np.int64)
        index._importance, index._resolved = column("importance", np.float32), column("resolved", np.int8)
        index._codes = {name: column(f"code_{name}", np.int32) for name in _CODED}
        index._dictionary = {name: {str(k): int(v) for k, v in meta["dictionary"][name].items()} for name in _CODED}
        index._postings = dict(
            zip(
                meta["terms"],
                _runs(arrays["posting_offsets"], arrays["posting_slots"], arrays["posting_counts"], n),
                strict=True,
            )
        )
        for column_name in _LABELS.values():
            slots = arrays[f"label_slots_{column_name}"]
            runs = _runs(arrays[f"label_offsets_{column_name}"], slots, slots, n)
            index._labels[column_name] = dict(zip(meta["labels"][column_name], (r[0] for r in runs), strict=True))
        values = meta["values"]
        if len(values) != n:
            raise ValueError(f"values: {len(values)} rows, expected {n}")
        index._values = [None if v is None else _decoded(v) for v in values]
        index._slot = {v[0]: slot for slot, v in enumerate(index._values) if v is not None}
        if len(index._slot) != index.live:
            raise ValueError(f"{len(index._slot)} live rows, expected {index.live}")
        return index


_TIMES = frozenset(
    i for i, name in enumerate(_FIELDS) if name in ("created_at", "updated_at", "valid_from", "valid_until")
)
_ENUM_AT = {i: _ENUMS[name] for i, name in enumerate(_FIELDS) if name in _ENUMS}
_LIST_AT = frozenset(i for i, name in enumerate(_FIELDS) if name in _LISTS)


def _encoded(value: Any) -> Any:
    """One memory value as JSON holds it: times in ISO form, enums by their value."""
    if isinstance(value, datetime):
        return value.isoformat()
    return getattr(value, "value", value)


def _decoded(values: list[Any]) -> tuple[Any, ...]:
    """A memory's values back from `_encoded` ones, as `memory_columns` makes them."""
    if len(values) != len(_FIELDS):
        raise ValueError(f"a memory of {len(values)} values, expected {len(_FIELDS)}")
    out = list(values)
    for i in _TIMES:
        if out[i] is not None:
            out[i] = datetime.fromisoformat(out[i])
    for i, members in _ENUM_AT.items():
        if out[i] is not None:
            out[i] = members[out[i]]
    for i in _LIST_AT:
        if not out[i]:
            out[i] = _EMPTY
    return tuple(out)


def _runs(
    offsets: npt.NDArray[Any], slots: npt.NDArray[Any], counts: npt.NDArray[Any], size: int
) -> list[tuple[array[int], array[int]]]:
    """Each term's (slots, counts) as the index keeps them, from flat arrays and offsets into them."""
    bounds = np.asarray(offsets, dtype=np.int64)
    flat_slots = np.ascontiguousarray(slots, dtype=np.int32)
    flat_counts = np.ascontiguousarray(counts, dtype=np.int32)
    if len(flat_slots) != len(flat_counts) or not len(bounds) or bounds[0] != 0 or bounds[-1] != len(flat_slots):
        raise ValueError("postings: offsets do not match the slots")
    if len(flat_slots) and (int(flat_slots.min()) < 0 or int(flat_slots.max()) >= size):
        raise ValueError("postings: a slot outside the index")
    if np.any(np.diff(bounds) < 0):
        raise ValueError("postings: offsets go backwards")
    slot_bytes, count_bytes = flat_slots.tobytes(), flat_counts.tobytes()
    found = []
    for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        held_slots, held_counts = array("i"), array("i")
        held_slots.frombytes(slot_bytes[4 * start : 4 * end])
        held_counts.frombytes(count_bytes[4 * start : 4 * end])
        found.append((held_slots, held_counts))
    return found
