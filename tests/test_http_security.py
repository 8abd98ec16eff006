"""A server bound to 0.0.0.0 as an operator would deploy it: DNS-rebinding checks, JWTs, ENGRAM_TOKENS, SIGINT.

One real `engram serve --host 0.0.0.0` process serves the whole file; clients reach it on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers import error, ok
from tests.http_server import RunningServer, connect, engram_command, free_port, issue_token, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ISSUER = "https://id.example"
ORIGIN = "https://app.example"


@dataclass
class Deployment:
    server: RunningServer
    port: int
    signing_key: ec.EllipticCurvePrivateKey
    env_secret: str
    admin: str

    @property
    def audience(self) -> str:
        return f"http://memory.example:{self.port}/mcp"


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("wildcard")
    key = ec.generate_private_key(ec.SECP256R1())
    (root / "idp.pem").write_bytes(_pem(key))
    # `engram token create --env`, as an operator would run it: the secret, then the record for ENGRAM_TOKENS.
    created = subprocess.run(
        [*engram_command(), "token", "create", "--env", "--user", "olga", "--scope", "read", "--scope", "write"],
        capture_output=True,
        text=True,
        check=True,
        env={"ENGRAM_DATA_DIR": str(root / "elsewhere"), "PATH": "/usr/bin:/bin"},
    )
    secret, record = created.stdout.splitlines()
    assert not (root / "elsewhere" / "tokens.json").exists(), "--env must not store the token"
    port = free_port()
    server = spawn(
        root / "data",
        "streamable-http",
        host="0.0.0.0",
        port=port,
        env={
            "ENGRAM_PUBLIC_URL": f"http://memory.example:{port}",
            "ENGRAM_ALLOWED_HOSTS": "alias.example",
            "ENGRAM_ALLOWED_ORIGINS": ORIGIN,
            "ENGRAM_JWT_PUBLIC_KEY_FILE": str(root / "idp.pem"),
            "ENGRAM_JWT_ISSUER": ISSUER,
            "ENGRAM_TOKENS": record,
        },
    )
    admin = issue_token(server.data_dir, [], ["admin"])
    yield Deployment(server=server, port=port, signing_key=key, env_secret=secret, admin=admin)
    # SIGINT (Ctrl+C) stops it as gracefully as SIGTERM: exit status 0, stores closed.
    assert server.stop(signal.SIGINT) == 0, server.log()
    assert "stores closed" in server.log()


def _get(deployment: Deployment, path: str, **headers: str) -> httpx2.Response:
    return httpx2.get(
        f"{deployment.server.base}{path}", headers={"Authorization": f"Bearer {deployment.admin}", **headers}
    )


def _post_mcp(deployment: Deployment, **headers: str) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return httpx2.post(
        deployment.server.endpoint,
        json=body,
        headers={
            "Authorization": f"Bearer {deployment.admin}",
            "Accept": "application/json, text/event-stream",
            **headers,
        },
    )


# Acceptance 3: a foreign Host or Origin is rejected even when bound to 0.0.0.0.


def test_foreign_host_is_rejected_on_a_wildcard_bind(deployed: Deployment) -> None:
    port = deployed.port
    for path in ("/mcp", "/metrics", "/.well-known/oauth-protected-resource/mcp"):
        response = _get(deployed, path, Host=f"evil.example:{port}")
        assert response.status_code == 421, path
        assert "Invalid Host header" in response.text
    assert _post_mcp(deployed, Host=f"evil.example:{port}").status_code == 421
    assert _post_mcp(deployed, Host="evil.example").status_code == 421
    # Rejected before authentication: the answer is the same without a token.
    assert httpx2.get(f"{deployed.server.base}/metrics", headers={"Host": "evil.example"}).status_code == 421
    # The configured names pass: the public URL's host, an allowed host on any port, and loopback.
    assert _get(deployed, "/metrics", Host=f"memory.example:{port}").status_code == 200
    assert _get(deployed, "/metrics", Host="alias.example:443").status_code == 200
    assert _get(deployed, "/metrics").status_code == 200


def test_foreign_origin_is_rejected_on_a_wildcard_bind(deployed: Deployment) -> None:
    for origin in ("http://evil.example", f"http://evil.example:{deployed.port}", "null"):
        response = _post_mcp(deployed, Origin=origin)
        assert response.status_code == 403, origin
        assert "Invalid Origin header" in response.text
        assert _get(deployed, "/metrics", Origin=origin).status_code == 403
    assert _get(deployed, "/metrics", Origin=ORIGIN).status_code == 200
    assert _get(deployed, "/metrics", Origin=f"http://localhost:{deployed.port}").status_code == 200


async def test_real_client_works_through_the_wildcard_bind(deployed: Deployment) -> None:
    async with connect(deployed.server, deployed.env_secret) as client:
        ok(await client.call_tool("remember", {"content": "Olga's token came from ENGRAM_TOKENS."}))
        recalled = ok(await client.call_tool("recall", {"detail": "full", "query": "ENGRAM_TOKENS"}))
        assert recalled["memories"][0]["memory"]["user_id"] == "olga"


# JWT bearer tokens checked against the configured public key.


def _jwt(deployment: Deployment, key: Any = None, algorithm: str = "ES256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": deployment.audience,
        "sub": "nia",
        "scope": "read write",
        "iat": now,
        "exp": now + 300,
        "engram_agent": "nia-phone",
    }
    claims |= overrides
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key or deployment.signing_key, algorithm)


async def test_jwt_acts_for_its_subject_and_agent(deployed: Deployment) -> None:
    async with connect(deployed.server, _jwt(deployed)) as client:
        ok(await client.call_tool("remember", {"content": "Nia signs in with a JWT."}))
        recalled = ok(await client.call_tool("recall", {"detail": "full", "query": "JWT"}))
        hit = recalled["memories"][0]["memory"]
        assert (hit["user_id"], hit["agent_id"]) == ("nia", "nia-phone")
        assert "may not act for" in error(
            await client.call_tool("recall", {"detail": "full", "user_id": "olga", "query": "token"})
        )
    async with connect(deployed.server, _jwt(deployed, scope="read")) as client:
        assert "'write' scope" in error(await client.call_tool("remember", {"content": "Nia was read-only."}))


def test_invalid_jwts_get_401(deployed: Deployment) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = _pem(deployed.signing_key)
    now = int(time.time())
    forged = {
        "wrong key": _jwt(deployed, key=other_key),
        "expired": _jwt(deployed, exp=now - 600, iat=now - 900),
        "other audience": _jwt(deployed, aud="https://other.example/mcp"),
        "other issuer": _jwt(deployed, iss="https://evil.example"),
        "no expiry": _jwt(deployed, exp=None),
        # Algorithm confusion: an HMAC token keyed with the (public) PEM must never verify.
        "hs256 keyed with the public key": _hs256(
            public_pem,
            {"sub": "nia", "aud": deployed.audience, "iss": ISSUER, "exp": now + 300, "scope": "read write"},
        ),
    }
    for what, bearer in forged.items():
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        response = httpx2.post(
            deployed.server.endpoint,
            json=body,
            headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream"},
        )
        assert response.status_code == 401, what


def _hs256(secret: bytes, claims: dict[str, Any]) -> str:
    """A JWT signed with HMAC-SHA256, built by hand (PyJWT refuses a PEM as an HMAC secret, attackers do not)."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + part(json.dumps(claims).encode())
    signature = part(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def test_protected_resource_metadata_names_the_public_url_and_issuer(deployed: Deployment) -> None:
    metadata = httpx2.get(f"{deployed.server.base}/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == deployed.audience
    assert [url.rstrip("/") for url in metadata["authorization_servers"]] == [ISSUER]


def test_data_dir_tokens_file_is_owner_only(deployed: Deployment) -> None:
    tokens = Path(deployed.server.data_dir) / "tokens.json"
    assert tokens.stat().st_mode & 0o777 == 0o600
    stored = json.loads(tokens.read_text())
    assert deployed.admin not in tokens.read_text()
    assert all(entry["hash"].startswith("sha256:") for entry in stored["tokens"])
