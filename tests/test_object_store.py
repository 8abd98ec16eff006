"""Long-term and knowledge memory on a real S3 server (Ceph radosgw): the start-up probe, and erasure that erases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import lance
import pytest
import redis

from engram.config import Settings, aws_storage_options
from engram.core.errors import InvalidInput
from engram.core.identity import Pseudonymizer
from engram.storage.location import ObjectStore, s3_client
from engram.storage.s3_probe import check_conditional_put
from engram.user_key import user_id_key
from tests.engines import RedisEngine, redis_contents
from tests.helpers import connected, ok

pytestmark = pytest.mark.distributed

USER = "patient.b-4410"
MARKER = "Flibbertronic"
KEY = "a-test-key-of-sixteen-chars-or-more"


class _CarelessS3(BaseHTTPRequestHandler):
    """An 'S3' that stores nothing and accepts every PUT, If-None-Match or not (like the clones that lose commits)."""

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("ETag", '"0"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def careless_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CarelessS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    yield "s3://bucket/engram"
    server.shutdown()
    server.server_close()


def test_a_store_that_ignores_conditional_put_is_refused_naming_the_setting(careless_s3: str) -> None:
    with pytest.raises(InvalidInput, match=r"ENGRAM_STORAGE_URI.*ignores conditional PUT"):
        check_conditional_put(ObjectStore(careless_s3))


def test_radosgw_honours_conditional_put(s3_bucket: str) -> None:
    check_conditional_put(ObjectStore(s3_bucket, aws_storage_options()))  # no error
    assert list(ObjectStore(s3_bucket).objects()) == []  # and the probe cleans up after itself


def _every_object(uri: str) -> dict[str, bytes]:
    store, client = ObjectStore(uri), s3_client()
    return {key: client.get_object(Bucket=store.bucket, Key=key)["Body"].read() for key, _ in store.objects()}


def _decoded_rows(uri: str) -> str:
    """Every row of every version of the long-term table, decoded (Lance may compress what a byte scan reads)."""
    dataset = lance.dataset(f"{uri}/lancedb/memories.lance", storage_options=aws_storage_options())
    parts: list[str] = []
    for version in dataset.versions():
        table = dataset.checkout_version(version["version"]).to_table()
        for column in table.column_names:
            if column != "vector":
                parts += [str(v) for v in table.column(column).to_pylist()]
    return "\n".join(parts)


@pytest.mark.anyio
async def test_forget_user_leaves_no_object_and_no_key_holding_the_user(
    tmp_path: Path, s3_bucket: str, redis_engine: RedisEngine
) -> None:
    with redis.Redis.from_url(redis_engine.url) as raw:
        raw.flushdb()
    settings = Settings(
        data_dir=tmp_path / "data",
        embedding_model="hash",
        tools="all",
        storage_uri=s3_bucket,
        sessions_url=redis_engine.url,
        user_id_key=KEY,
    )
    async with connected(settings) as client:
        for n in range(5):
            content = f"{MARKER} dose {n} for the heart"
            ok(await client.call_tool("remember", {"user_id": USER, "content": content, "session_id": "s1"}))
        for n in range(5):
            content = f"garden entry {n} about basil"
            ok(await client.call_tool("remember", {"user_id": "bob", "content": content, "session_id": "g"}))
        ok(await client.call_tool("ingest_text", {"user_id": USER, "text": f"{MARKER} leaflet text", "source": "x"}))
        first = ok(await client.call_tool("recall", {"user_id": USER, "query": f"{MARKER} dose", "detail": "full"}))
        assert first["memories"]
        assert MARKER in _decoded_rows(s3_bucket)
        receipt = ok(await client.call_tool("forget_user", {"user_id": USER, "confirm": True}))
        assert receipt["long_term"] == 5
        bob = ok(
            await client.call_tool("recall", {"user_id": "bob", "query": "garden basil", "top_k": 10, "detail": "full"})
        )
        assert len(bob["memories"]) == 5

    pseudonym = Pseudonymizer(user_id_key(settings))(USER)
    needles = [MARKER, MARKER.lower(), USER, pseudonym]
    objects = _every_object(s3_bucket)
    assert objects  # the bucket holds bob's data
    for key, body in objects.items():
        for needle in needles:
            assert needle.encode() not in body, f"{needle!r} left in s3 object {key}"
    decoded = _decoded_rows(s3_bucket)
    for needle in needles:
        assert needle not in decoded
    assert "garden entry 3" in decoded
    for key, value in redis_contents(redis_engine.url).items():
        for needle in needles:
            assert needle not in key and needle not in value, f"{needle!r} left in Redis"


def test_the_secret_key_never_reaches_a_message_or_log(caplog: pytest.LogCaptureFixture) -> None:
    secret = "wJalrXUtnFEMI-not-a-real-key"
    store = ObjectStore("s3://bucket/prefix", {"aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": secret})
    assert secret not in repr(store) and secret not in str(store) and secret not in f"{store.child('lancedb')!r}"
    assert str(store) == "s3://bucket/prefix"


def test_opening_a_table_on_s3_logs_no_secret(s3_bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    from engram.embeddings.hashing import HashEmbedder
    from engram.storage.long_term import LanceLongTermStore

    options = aws_storage_options()
    with caplog.at_level("DEBUG"):
        store = LanceLongTermStore(ObjectStore(s3_bucket, options), dimensions=HashEmbedder().dimensions, model_id="h")
        store.close()
    assert "creating the long-term memory table" in caplog.text
    assert options["aws_secret_access_key"] not in caplog.text
