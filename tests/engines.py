"""Real distributed engines for the tests: a loopback Redis and a loopback Ceph radosgw, one of each per test session.

Each is started by its script in scripts/ (which CI and the benchmark use too) and installed with apt-get first where
missing, as on a clean CI machine. Tests that use them are marked `distributed`; `-m "not distributed"` skips them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
#: How long one engine script may take (radosgw on a loaded two-core machine takes minutes, not hours).
_START_TIMEOUT_S = 900


def ensure_installed(commands: dict[str, str]) -> None:
    """apt-get install the Debian package of every command (name -> package) not on PATH; CI starts without them."""
    missing = sorted({package for command, package in commands.items() if shutil.which(command) is None})
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        # A clean machine has no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)
    still = [command for command in commands if shutil.which(command) is None]
    assert not still, f"apt-get installed {missing} but {still} are still missing"


def _script(name: str, action: str, directory: Path) -> str:
    done = subprocess.run(
        [str(SCRIPTS / name), action, str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=_START_TIMEOUT_S,
    )
    assert done.returncode == 0, f"{name} {action} failed:\n{done.stderr[-3000:]}"
    return done.stdout


@dataclass(frozen=True)
class RedisEngine:
    """A running loopback Redis: its URL and its data directory (AOF files)."""

    url: str
    directory: Path


@dataclass(frozen=True)
class S3Engine:
    """A running loopback S3 server (Ceph radosgw) with one user's keys."""

    endpoint: str
    access_key: str
    secret_key: str
    directory: Path

    def environment(self) -> dict[str, str]:
        """The AWS variables a client of this store needs (plain HTTP on loopback)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }


def start_redis(directory: Path) -> RedisEngine:
    """Install (if needed) and start a Redis in `directory`; stop it with stop_redis."""
    ensure_installed({"redis-server": "redis-server", "redis-cli": "redis-tools"})
    url = _script("redis-engine.sh", "start", directory).strip().splitlines()[-1]
    return RedisEngine(url, directory)


def stop_redis(engine: RedisEngine) -> None:
    """Stop a Redis that start_redis started."""
    _script("redis-engine.sh", "stop", engine.directory)


def start_radosgw(directory: Path) -> S3Engine:
    """Install (if needed) and start a one-OSD Ceph with radosgw in `directory`; stop it with stop_radosgw."""
    ensure_installed(
        {
            "ceph-mon": "ceph-mon",
            "ceph-osd": "ceph-osd",
            "radosgw": "radosgw",
            "radosgw-admin": "radosgw",
            "ceph": "ceph-common",
        }
    )
    fields = dict(
        line.split("=", 1) for line in _script("radosgw-engine.sh", "start", directory).splitlines() if "=" in line
    )
    return S3Engine(fields["endpoint"], fields["access_key"], fields["secret_key"], directory)


def stop_radosgw(engine: S3Engine) -> None:
    """Stop the Ceph daemons that start_radosgw started."""
    _script("radosgw-engine.sh", "stop", engine.directory)


@pytest.fixture(scope="session")
def redis_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisEngine]:
    """One Redis for the test session (AOF on, appendfsync always); tests keep apart by flushing or by user keys."""
    engine = start_redis(tmp_path_factory.mktemp("redis"))
    yield engine
    stop_redis(engine)


@pytest.fixture(scope="session")
def s3_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Engine]:
    """One radosgw for the test session; tests keep apart by bucket."""
    engine = start_radosgw(tmp_path_factory.mktemp("radosgw"))
    yield engine
    stop_radosgw(engine)


@pytest.fixture
def s3_bucket(s3_engine: S3Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh bucket on the session's radosgw, with the AWS variables set for this test; yields s3://bucket/engram."""
    import uuid

    from engram.storage.location import s3_client

    for name, value in s3_engine.environment().items():
        monkeypatch.setenv(name, value)
    bucket = f"engram-{uuid.uuid4().hex[:12]}"
    client = s3_client()
    client.create_bucket(Bucket=bucket)
    yield f"s3://{bucket}/engram"
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    with contextlib.suppress(Exception):  # a replica still writing (an interrupted run): memstore ends anyway
        client.delete_bucket(Bucket=bucket)


def redis_contents(url: str) -> dict[str, str]:
    """Every key of a Redis database with its value read by type (DUMP would hand back LZF-compressed bytes)."""
    import redis

    contents: dict[str, str] = {}
    with redis.Redis.from_url(url, decode_responses=True) as client:
        for key in client.scan_iter(match="*"):
            kind = client.type(key)
            if kind == "string":
                value: object = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "set":
                value = sorted(client.smembers(key))
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            else:
                value = f"<{kind}>"
            contents[key] = repr(value)
    return contents
