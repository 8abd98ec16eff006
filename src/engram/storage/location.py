"""Where a LanceDB database lives: a local directory, or a prefix of an S3-compatible bucket, with its locks.

A local store takes turns with other processes through flock; a store on object storage takes turns with the other
replicas through Redis locks (or, without Redis, only with the threads of this process, relying on LanceDB's
conditional-PUT commits and conflict retries).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from engram.storage.residue import files_containing


class StoreLock(Protocol):
    """An exclusive lock shared by every process that writes one store."""

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; without `blocking`, return False at once if anyone holds it."""
        ...

    def release(self) -> None:
        """Give the lock back."""
        ...

    def __enter__(self) -> None: ...

    def __exit__(self, *exc: object) -> None: ...


class ThreadOnlyLock:
    """A StoreLock for one process alone (an object store without Redis: the commits' conditional PUT decides)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock within this process."""
        return self._lock.acquire(blocking=blocking)

    def release(self) -> None:
        """Give the lock back."""
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class ObjectStore:
    """A prefix in an S3-compatible bucket, with what LanceDB needs to reach it and how replicas take turns."""

    uri: str  # s3://bucket/prefix (no trailing slash)
    # Never in a repr or a message: the options hold the secret key.
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    lock_factory: Callable[[str], StoreLock] | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.uri

    @property
    def bucket(self) -> str:
        """The bucket's name."""
        return urlsplit(self.uri).netloc

    @property
    def prefix(self) -> str:
        """The key prefix under the bucket ('' for the bucket's root)."""
        return urlsplit(self.uri).path.strip("/")

    def child(self, name: str) -> ObjectStore:
        """The same store one level down (one LanceDB database per tier)."""
        return ObjectStore(f"{self.uri.rstrip('/')}/{name}", self.storage_options, self.lock_factory)

    def lock(self, name: str) -> StoreLock:
        """The lock `name` of this prefix, shared by every replica (Redis) or by this process's threads."""
        if self.lock_factory is None:
            return ThreadOnlyLock()
        return self.lock_factory(f"{self.uri}#{name}")

    def objects(self) -> Iterator[tuple[str, int]]:
        """Every object under the prefix: (key, size); none for gs:// and az://, which are not listed (untested)."""
        if not self.uri.startswith("s3://"):
            return
        client, prefix = s3_client(), self.prefix
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{prefix}/" if prefix else ""):
            for item in page.get("Contents", []):
                yield str(item["Key"]), int(item["Size"])

    def objects_containing(self, needle: str) -> list[str]:
        """The objects under the prefix whose bytes contain `needle` (read whole: erasure checks are rare)."""
        client, wanted = s3_client(), needle.encode()
        found = []
        for key, _ in self.objects():
            try:
                body = client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:  # removed meanwhile by another replica's clean-up
                continue
            if wanted in body:
                found.append(f"s3://{self.bucket}/{key}")
        return sorted(found)

    def total_bytes(self) -> int:
        """Size of every object under the prefix."""
        return sum(size for _, size in self.objects())


#: A store's location: a local directory or a prefix on object storage.
Location = Path | ObjectStore


def location_text(location: Location) -> str:
    """The location as an operator writes it (for messages)."""
    return location.uri if isinstance(location, ObjectStore) else str(location)


def location_lock(location: Location, name: str) -> StoreLock:
    """The cross-process lock `name` of a store: a flock beside a local table, a shared lock on object storage."""
    if isinstance(location, ObjectStore):
        return location.lock(name)
    from engram.storage.lance_support import FileLock

    return FileLock(location / f".engram-{name}.lock")


def location_holding(location: Location, key: str) -> list[str]:
    """The files or objects of a store whose bytes contain `key`."""
    if isinstance(location, ObjectStore):
        return location.objects_containing(key)
    return files_containing(location, key)


def location_bytes(location: Location) -> int:
    """Size of a store's files or objects."""
    if isinstance(location, ObjectStore):
        return location.total_bytes()
    return sum(p.stat().st_size for p in location.rglob("*") if p.is_file())


def s3_client() -> Any:
    """A boto3 S3 client configured the usual AWS way (environment, shared config, instance role)."""
    import boto3
    from botocore.config import Config

    # A fresh session each time: boto3's default session keeps the credentials it first found for good, and rotated
    # keys (or another store's, in tests) must be read again. Path-style addressing: S3-compatible stores (radosgw,
    # MinIO) rarely have wildcard DNS for bucket names.
    return boto3.session.Session().client(
        "s3", config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
    )
