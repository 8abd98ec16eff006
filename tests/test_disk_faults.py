"""A full or read-only disk, for real (a small tmpfs mounted for the test): the caller learns what failed, and that
nothing acknowledged was lost."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from engram.config import Settings
from tests.helpers import connected, text

pytestmark = pytest.mark.anyio


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of the test's own, unmounted afterwards (needs root, as CI runs)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill_up(disk: Path) -> Path:
    """Take every free byte of `disk` (big writes, then ever smaller ones, down to single bytes)."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\xa5" * size
            while True:
                try:
                    os.write(descriptor, block)
                except OSError as exc:
                    assert exc.errno == 28  # ENOSPC
                    break
    finally:
        os.close(descriptor)
    return filler


def remount(disk: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(disk)], check=True)


async def listed(client: Client) -> list[str]:
    result = await client.call_tool("list_memories", {"user_id": "alice"})
    assert not result.is_error, text(result)
    return [m["content"] for m in result.structured_content["memories"]]


LONG = " ".join(f"word{i}" for i in range(900))  # bigger than any free space a full disk leaves


async def test_a_full_disk_says_disk_full_and_loses_nothing_acknowledged(small_disk: Path) -> None:
    settings = Settings(data_dir=small_disk / "data", embedding_model="hash", tools="all")
    async with connected(settings) as client:
        assert not (await client.call_tool("remember", {"user_id": "alice", "content": "first memory"})).is_error
        assert await listed(client) == ["first memory"]
        filler = fill_up(small_disk)

        refused = await client.call_tool("remember", {"user_id": "alice", "content": "second " + LONG})
        assert refused.is_error
        message = text(refused)
        assert "long-term store" in message and "the disk is full" in message, message
        assert "not completed" in message and "acknowledged earlier are intact" in message
        assert "Free disk space" in message

        ingest = await client.call_tool("ingest_text", {"user_id": "alice", "source": "doc", "text": LONG * 3})
        assert ingest.is_error
        assert "knowledge store" in text(ingest) and "the disk is full" in text(ingest), text(ingest)

        filler.unlink()
        assert await listed(client) == ["first memory"]  # what was acknowledged is all there
        retried = await client.call_tool("remember", {"user_id": "alice", "content": "second " + LONG})
        assert not retried.is_error, text(retried)
        assert len(await listed(client)) == 2


async def test_a_read_only_file_system_says_read_only_and_loses_nothing_acknowledged(small_disk: Path) -> None:
    settings = Settings(data_dir=small_disk / "data", embedding_model="hash", tools="all")
    # Written by another process, which exits: remounting read-only needs no file of the disk open for writing
    # (as when a disk went read-only while the server was down).
    env = {**os.environ, "ENGRAM_DATA_DIR": str(settings.data_dir), "ENGRAM_EMBEDDING_MODEL": "hash"}
    subprocess.run([sys.executable, "-m", "engram", "remember", "alice", "first memory"], env=env, check=True)
    remount(small_disk, "ro")
    try:
        async with connected(settings) as client:
            refused = await client.call_tool("remember", {"user_id": "alice", "content": "second memory"})
            assert refused.is_error
            message = text(refused)
            assert "store could not be used: the file system is read-only" in message, message
            assert str(settings.data_dir) in message
            assert "acknowledged earlier are intact" in message and "Make the data directory writable" in message
    finally:
        remount(small_disk, "rw")
    async with connected(settings) as client:
        assert await listed(client) == ["first memory"]
