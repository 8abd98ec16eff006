"""Engram's own error types; adapters turn them into MCP tool errors or CLI messages."""

from __future__ import annotations


class EngramError(Exception):
    """Base of every error Engram raises on purpose; its message is written for the caller."""


class InvalidInput(EngramError):
    """A caller-supplied value is unacceptable; the message names the field and what is accepted."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Invalid '{field}': {problem}")
        self.field = field


class NothingToSummarize(EngramError):
    """The session has no older turns beyond the ones to keep verbatim."""


class ConfirmationRequired(EngramError):
    """A destructive operation was called without explicit confirmation."""


class EmbeddingModelMismatch(EngramError):
    """The long-term store was built with a different embedding model than the configured one."""


class ErasureBlocked(EngramError):
    """Something in the store (such as a version tag) would keep erased data; nothing was erased."""


class ErasureIncomplete(EngramError):
    """After erasing, a trace of the erased user was still found on disk."""


class BackendUnavailable(EngramError):
    """The stores or the embedding model could not be opened."""


class AccessDenied(EngramError):
    """The request's credentials do not allow this user, agent or kind of access."""


class UnreadableDocument(EngramError):
    """A document could not be read or parsed (malformed, encrypted, binary, or no text in it)."""


class TierDamaged(EngramError):
    """A file of one memory tier is damaged or missing, so that tier cannot serve; the other tiers still do."""

    def __init__(self, tier: str, path: str, detail: str) -> None:
        super().__init__(
            f"The {tier} store is damaged and cannot be used: {detail} ({path}). The other memory tiers keep "
            "working. To repair it: stop Engram, run `engram doctor` to find every damaged file, and restore the "
            f"{tier} store's folder from a backup."
        )
        self.tier = tier
        self.path = path
        self.detail = detail


#: What a StorageFailure says went wrong, and what to do about it, by kind.
STORAGE_PROBLEMS = {
    "disk_full": ("the disk is full", "Free disk space, then retry."),
    "read_only": ("the file system is read-only", "Make the data directory writable again, then retry."),
    "permission": (
        "permission was denied",
        "Give the user running Engram read and write access to the data directory, then retry.",
    ),
    "io_error": ("the disk reported an I/O error", "Check the disk and run `engram doctor`, then retry."),
}


class StorageFailure(EngramError):
    """The operating system refused a read or write of a store (disk full, read-only, permission, I/O error)."""

    def __init__(self, kind: str, store: str, path: str) -> None:
        what, action = STORAGE_PROBLEMS[kind]
        super().__init__(
            f"The {store} store could not be used: {what} ({path}). This call was not completed and nothing it "
            f"wrote was acknowledged (a retry stores it once); memories acknowledged earlier are intact. {action}"
        )
        self.kind = kind
        self.store = store
        self.path = path


class UserKeyLost(EngramError):
    """The pseudonym key the data directory's memories were written with is missing or was replaced."""


#: How much of a caller's bad value an error message or a log line quotes.
QUOTE_CHARS = 60


def quoted(value: object, limit: int = QUOTE_CHARS) -> str:
    """`value` quoted for an error message: its repr, cut to `limit` characters with its full length after.

    A caller may send megabytes in one argument; echoing it whole makes an error (and the log line that records
    it) as large as the input.
    """
    if not isinstance(value, str):
        shown = repr(value)  # already quoted as Python writes it
        return shown if len(shown) <= limit else f"{shown[:limit]}… ({len(shown):,} characters)"
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value):,} characters)"
