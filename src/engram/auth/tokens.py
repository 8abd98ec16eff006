"""Operator-issued bearer tokens: only their SHA-256 hashes are stored, in an owner-only file or the environment."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, model_validator

from engram.auth.principal import Principal, Scope
from engram.core.errors import InvalidInput
from engram.core.limits import ID_PATTERN

logger = logging.getLogger(__name__)

#: Marks Engram secrets so that they are recognisable in a leak (secret scanners, Engram's own redaction).
SECRET_PREFIX = "egm_"
#: 32 random bytes: far beyond guessing, which is why a plain (fast) hash is enough to store them.
SECRET_BYTES = 32
HASH_PATTERN = r"^sha256:[0-9a-f]{64}$"
TOKEN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

UserId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class TokenRecord(BaseModel):
    """One token as stored: its hash and the principal it is bound to; never the secret itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, StringConstraints(pattern=TOKEN_ID_PATTERN)]
    hash: Annotated[str, StringConstraints(pattern=HASH_PATTERN)]
    users: list[UserId] = Field(default_factory=list)
    agent: UserId | None = None
    scopes: list[Scope] = Field(min_length=1)
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None

    @model_validator(mode="after")
    def _bound_to_someone(self) -> TokenRecord:
        if not self.users and "admin" not in self.scopes and set(self.scopes) != {"metrics"}:
            raise ValueError("a token needs at least one user, unless it has the 'admin' or only the 'metrics' scope")
        return self

    def principal(self) -> Principal:
        """The identity this token carries."""
        return Principal(token_id=self.id, users=frozenset(self.users), agent=self.agent, scopes=frozenset(self.scopes))

    def expired(self, now: datetime) -> bool:
        """Whether the token is past its expiry."""
        return self.expires_at is not None and self.expires_at <= now


class TokenFileContent(BaseModel):
    """The tokens file: a version and the token records."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tokens: list[TokenRecord] = Field(default_factory=list)


_ENV_TOKENS = TypeAdapter(list[TokenRecord])


def new_secret() -> str:
    """A fresh, unguessable bearer token."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """What is stored in place of a token: `sha256:` and the hex digest of the secret."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()


def match(records: Sequence[TokenRecord], secret: str, now: datetime) -> TokenRecord | None:
    """The unexpired record whose hash is the secret's, compared in constant time against every record."""
    presented = hash_secret(secret).encode()
    found: TokenRecord | None = None
    for record in records:
        # No early exit: the time taken does not depend on where (or whether) the token is found.
        if hmac.compare_digest(presented, record.hash.encode()) and found is None:
            found = record
    if found is None or found.expired(now):
        return None
    return found


def parse_env_tokens(text: str | None) -> list[TokenRecord]:
    """Token records given as JSON in ENGRAM_TOKENS (a list of records with hashes, as `token create --env` prints)."""
    if not text or not text.strip():
        return []
    try:
        return _ENV_TOKENS.validate_json(text)
    except ValidationError as exc:
        raise InvalidInput("ENGRAM_TOKENS", _first_problem(exc)) from exc


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


class TokenFile:
    """The tokens file under the data directory: created owner-only, rewritten atomically, re-read when changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._records: list[TokenRecord] = []

    def read(self) -> list[TokenRecord]:
        """Every record in the file (none when it does not exist); InvalidInput if it is malformed."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        try:
            return TokenFileContent.model_validate_json(text).tokens
        except ValidationError as exc:
            raise InvalidInput(str(self.path), f"the tokens file is malformed ({_first_problem(exc)}).") from exc

    def current(self) -> list[TokenRecord]:
        """The records as the file holds them now, re-read only when it changed (a revocation applies at once).

        A file that became unreadable or malformed yields no tokens at all: failing closed.
        """
        try:
            stat = self.path.stat()
            seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            self._seen, self._records = None, []
            return []
        if seen != self._seen:
            try:
                self._records = self.read()
            except (InvalidInput, OSError) as exc:
                logger.error("tokens file unusable, refusing every file token until it is fixed: %s", exc)
                self._records = []
            self._seen = seen
        return self._records

    def create(
        self,
        *,
        users: Sequence[str],
        scopes: Sequence[str],
        agent: str | None = None,
        name: str | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[TokenRecord, str]:
        """Add a token; return its record and the secret, which is not kept anywhere and cannot be shown again."""
        secret = new_secret()
        try:
            record = TokenRecord(
                id="tok_" + secrets.token_hex(6),
                hash=hash_secret(secret),
                users=list(dict.fromkeys(users)),
                agent=agent,
                scopes=sorted(set(scopes)),  # type: ignore[arg-type]  # validated by the model
                name=name,
                created_at=datetime.now(UTC),
                expires_at=expires_at,
            )
        except ValidationError as exc:
            raise InvalidInput("token", _first_problem(exc)) from exc
        with self._locked():
            records = self.read()
            self._write([*records, record])
        return record, secret

    def revoke(self, token_id: str) -> bool:
        """Remove a token by id; return whether it existed."""
        with self._locked():
            records = self.read()
            kept = [record for record in records if record.id != token_id]
            if len(kept) == len(records):
                return False
            self._write(kept)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise writers (two `engram token` commands at once) on a lock file beside the tokens file."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _write(self, records: list[TokenRecord]) -> None:
        content = TokenFileContent(tokens=records).model_dump(mode="json", exclude_none=True)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as out:
                json.dump(content, out, indent=2)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        # An older file created by hand keeps its mode through os.replace of a 0600 file, but be explicit.
        os.chmod(self.path, 0o600)
