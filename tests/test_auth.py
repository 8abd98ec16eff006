"""Identity from the token: the Principal rules, caller() over an authenticated request, and JWT verification."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from engram.auth.jwt_tokens import JwtVerifier
from engram.auth.principal import Principal
from engram.auth.tokens import TokenFile
from engram.auth.verifier import EngramTokenVerifier, principal_of
from engram.core.errors import AccessDenied, InvalidInput
from engram.tools.state import Caller, authorize, caller

pytestmark = pytest.mark.anyio

AUDIENCE = "https://memory.example/mcp"


def principal(*users: str, scopes: tuple[str, ...] = ("read", "write"), agent: str | None = None) -> Principal:
    return Principal(token_id="t1", users=frozenset(users), agent=agent, scopes=frozenset(scopes))


@pytest.mark.parametrize(
    ("who", "user_id", "agent_id", "access", "expected"),
    [
        (principal("ann"), None, None, "read", ("ann", None)),
        (principal("ann"), "ann", None, "write", ("ann", None)),
        (principal("ann", agent="bot"), None, None, "write", ("ann", "bot")),
        (principal("ann", agent="bot"), None, "bot", "write", ("ann", "bot")),
        (principal("ann"), None, "any-agent", "write", ("ann", "any-agent")),  # unbound token: agent as given
        (principal("ann", "team"), "team", None, "read", ("team", None)),
        (principal(scopes=("admin",)), "zoe", None, "write", ("zoe", None)),
        (principal("ann", scopes=("admin",)), None, None, "admin", ("ann", None)),
    ],
)
def test_principal_allows(
    who: Principal, user_id: str | None, agent_id: str | None, access: str, expected: tuple[str, str | None]
) -> None:
    assert who.acting_for(user_id, agent_id, access) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("who", "user_id", "agent_id", "access", "message"),
    [
        (principal("ann"), "bob", None, "read", "may not act for the user_id given"),
        (principal("ann", scopes=("read",)), None, None, "write", "lacks the 'write' scope"),
        (principal("ann", scopes=("write",)), None, None, "read", "lacks the 'read' scope"),
        (principal("ann"), None, None, "admin", "lacks the 'admin' scope"),
        (principal("ann", "team"), None, None, "read", "'user_id' is required"),
        (principal(scopes=("admin",)), None, None, "read", "'user_id' is required"),
        (principal("ann", agent="bot"), None, "other", "write", "own agent"),
        (principal("ann", scopes=("metrics",)), None, None, "read", "lacks the 'read' scope"),
    ],
)
def test_principal_refuses(
    who: Principal, user_id: str | None, agent_id: str | None, access: str, message: str
) -> None:
    with pytest.raises(AccessDenied, match=message):
        who.acting_for(user_id, agent_id, access)  # type: ignore[arg-type]


@contextmanager
def authenticated_as(token: AccessToken) -> Iterator[None]:
    """What the SDK's auth middleware does for an HTTP request with this token."""
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


async def test_caller_follows_the_token_over_http_and_the_arguments_on_stdio(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    _, secret = tokens.create(users=["ann"], scopes=["read"], agent="phone")
    verified = await EngramTokenVerifier(token_file=tokens).verify_token(secret)
    assert verified is not None
    assert principal_of(verified) == Principal(
        token_id=verified.client_id, users=frozenset({"ann"}), agent="phone", scopes=frozenset({"read"})
    )
    # stdio / in-process: no token, the arguments decide (as before).
    assert caller("bob", "desk", access="write") == Caller("bob", "desk")
    with pytest.raises(AccessDenied, match="required"):
        caller(None, access="read")
    with authenticated_as(verified):
        assert caller(None, access="read") == Caller("ann", "phone")
        with pytest.raises(AccessDenied, match="may not act"):
            caller("bob", access="read")
        with pytest.raises(AccessDenied, match="'write' scope"):
            caller(None, access="write")
        with pytest.raises(AccessDenied, match="'admin' scope"):
            authorize("admin")
        authorize("read")


def test_a_token_from_another_verifier_may_do_nothing() -> None:
    foreign = AccessToken(token="x", client_id="other", scopes=["read", "write"], subject="ann")
    with authenticated_as(foreign), pytest.raises(AccessDenied, match="its scopes: none"):
        caller("ann", access="read")


async def test_verifier_refuses_unknown_and_oversized_tokens(tmp_path: Path) -> None:
    verifier = EngramTokenVerifier(token_file=TokenFile(tmp_path / "tokens.json"))
    assert await verifier.verify_token("egm_unknown") is None
    assert await verifier.verify_token("egm_" + "a" * 10_000) is None
    assert not verifier.configured()


def _mint(key: object, algorithm: str, **claims: object) -> str:
    now = int(time.time())
    body = {"sub": "ann", "aud": AUDIENCE, "iss": "https://id.example", "exp": now + 60, "scope": "read"} | claims
    return jwt.encode(body, key, algorithm, headers={"kid": "k1"})  # type: ignore[arg-type]


async def test_jwks_file_verifies_rsa_tokens_and_maps_claims(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk | {"kid": "k1", "alg": "RS256", "use": "sig"}]}))
    verifier = JwtVerifier.from_files(
        public_key_file=None, jwks_file=tmp_path / "jwks.json", audience=AUDIENCE, issuer="https://id.example"
    )
    assert verifier is not None
    token = _mint(key, "RS256", engram_users=["ann-work", "bad id!"], engram_agent="cli", scp=["ignored"])
    verified = verifier.verify(token)
    assert verified is not None
    assert verified.principal.users == frozenset({"ann", "ann-work"})  # malformed ids are dropped
    assert verified.principal.agent == "cli"
    assert verified.principal.scopes == frozenset({"read"})
    assert verifier.verify(_mint(key, "RS256", aud="https://elsewhere/mcp")) is None
    assert verifier.verify(_mint(key, "RS256", iss="https://evil.example")) is None
    assert verifier.verify(_mint(key, "RS256", engram_agent="not valid!")) is None
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert verifier.verify(_mint(other, "RS256")) is None


def test_public_key_file_accepts_only_its_own_algorithms(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "key.pem").write_bytes(pem)
    verifier = JwtVerifier.from_files(
        public_key_file=tmp_path / "key.pem", jwks_file=None, audience=AUDIENCE, issuer=None
    )
    assert verifier is not None
    assert verifier.verify(_mint(key, "EdDSA")) is not None
    assert verifier.verify(_mint(b"a-shared-secret-of-32-bytes-long!", "HS256")) is None


def test_unusable_key_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(InvalidInput, match="ENGRAM_JWT_PUBLIC_KEY_FILE"):
        JwtVerifier.from_files(public_key_file=tmp_path / "bad.pem", jwks_file=None, audience=AUDIENCE, issuer=None)
    (tmp_path / "secret.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    with pytest.raises(InvalidInput, match="no usable public signing key"):
        JwtVerifier.from_files(public_key_file=None, jwks_file=tmp_path / "secret.json", audience=AUDIENCE, issuer=None)
