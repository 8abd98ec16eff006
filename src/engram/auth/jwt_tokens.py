"""JWT bearer tokens from the operator's identity provider, verified with PyJWT against a public key or JWKS file."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from engram.auth.principal import SCOPES, Principal
from engram.core.errors import InvalidInput
from engram.core.limits import ID_PATTERN

logger = logging.getLogger(__name__)

_ID = re.compile(ID_PATTERN)
_RSA = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
_EC_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
#: Clock skew tolerated on exp / nbf / iat.
LEEWAY_S = 30
#: Claims beyond `sub` that Engram reads: more users the token may act for, and the agent it acts as.
USERS_CLAIM = "engram_users"
AGENT_CLAIM = "engram_agent"


@dataclass(frozen=True)
class VerifiedJwt:
    """A JWT whose signature, issuer, audience and lifetime were checked, and the principal it names."""

    principal: Principal
    client_id: str
    subject: str
    issuer: str | None
    expires_at: int


@dataclass(frozen=True)
class _Key:
    key: Any
    algorithms: list[str]


def _pem_key(path: Path) -> _Key:
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInput("ENGRAM_JWT_PUBLIC_KEY_FILE", f"cannot read a PEM public key from {path}: {exc}") from exc
    # Only the algorithms of the key's own type: a public key can never be used as an HMAC secret.
    if isinstance(key, rsa.RSAPublicKey):
        return _Key(key, _RSA)
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_BY_CURVE:
        return _Key(key, [_EC_BY_CURVE[key.curve.name]])
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return _Key(key, ["EdDSA"])
    raise InvalidInput("ENGRAM_JWT_PUBLIC_KEY_FILE", "the key must be an RSA, P-256/384/521 or Ed25519/Ed448 key.")


def _jwks_keys(path: Path) -> dict[str | None, _Key]:
    try:
        document = json.loads(path.read_text())
        entries = document["keys"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("ENGRAM_JWT_JWKS_FILE", f"cannot read a JWKS from {path}: {exc}") from exc
    keys: dict[str | None, _Key] = {}
    for entry in entries if isinstance(entries, list) else []:
        # Symmetric ("oct") or private keys ("d") have no place in a verification key set.
        if not isinstance(entry, dict) or entry.get("kty") == "oct" or "d" in entry:
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            raise InvalidInput("ENGRAM_JWT_JWKS_FILE", f"a key in {path} is unusable: {exc}") from exc
        keys[jwk.key_id] = _Key(jwk, [jwk.algorithm_name])
    if not keys:
        raise InvalidInput("ENGRAM_JWT_JWKS_FILE", f"{path} holds no usable public signing key.")
    return keys


class JwtVerifier:
    """Checks a JWT's signature with the configured key(s), its `iss`, its `aud`, and its `exp`."""

    def __init__(self, keys: dict[str | None, _Key], *, audience: str, issuer: str | None) -> None:
        self._keys = keys
        self.audience = audience
        self.issuer = issuer

    @classmethod
    def from_files(
        cls, *, public_key_file: Path | None, jwks_file: Path | None, audience: str, issuer: str | None
    ) -> JwtVerifier | None:
        """A verifier for the configured key file or JWKS file, or None when neither is configured."""
        if public_key_file is not None and jwks_file is not None:
            raise InvalidInput("ENGRAM_JWT_JWKS_FILE", "set either a public key file or a JWKS file, not both.")
        if public_key_file is not None:
            return cls({None: _pem_key(public_key_file)}, audience=audience, issuer=issuer)
        if jwks_file is not None:
            return cls(_jwks_keys(jwks_file), audience=audience, issuer=issuer)
        return None

    def _key_for(self, token: str) -> _Key | None:
        kid = jwt.get_unverified_header(token).get("kid")
        if kid in self._keys:
            return self._keys[kid]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return None

    def verify(self, token: str) -> VerifiedJwt | None:
        """The verified token's identity, or None for any token that does not pass every check."""
        try:
            key = self._key_for(token)
            if key is None:
                return None
            claims = jwt.decode(
                token,
                key.key,
                algorithms=key.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub"], "verify_iss": self.issuer is not None},
            )
        except jwt.PyJWTError as exc:
            logger.info("JWT refused: %s", type(exc).__name__)
            return None
        return _identity(claims)


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    raw = claims.get("scope", claims.get("scp", []))
    names: list[str] = []
    if isinstance(raw, str):  # OAuth's space-separated `scope`
        names = raw.split()
    elif isinstance(raw, list):  # the `scp` array some providers issue
        names = [name for name in raw if isinstance(name, str)]
    return frozenset(name for name in names if name in SCOPES)


def _identity(claims: dict[str, Any]) -> VerifiedJwt | None:
    subject = claims["sub"]
    if not isinstance(subject, str):
        return None
    users = {subject}
    extra = claims.get(USERS_CLAIM, [])
    if isinstance(extra, list):
        users |= {user for user in extra if isinstance(user, str)}
    agent = claims.get(AGENT_CLAIM)
    if agent is not None and not (isinstance(agent, str) and _ID.match(agent)):
        return None  # a malformed agent claim must not silently widen what the token may do
    client_id = claims.get("client_id", claims.get("azp", subject))
    principal = Principal(
        token_id=str(client_id),
        users=frozenset(u for u in users if _ID.match(u)),
        agent=agent,
        scopes=_scopes(claims),
    )
    issuer = claims.get("iss")
    return VerifiedJwt(
        principal=principal,
        client_id=str(client_id),
        subject=subject,
        issuer=str(issuer) if issuer is not None else None,
        expires_at=int(claims["exp"]),
    )
