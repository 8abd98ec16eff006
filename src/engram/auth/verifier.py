"""The MCP SDK's token verifier for Engram: operator tokens (by hash) and JWTs, both mapped to a Principal."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp.server.auth.provider import AccessToken

from engram.auth.principal import Principal
from engram.auth.tokens import SECRET_PREFIX, TokenFile, TokenRecord, match

if TYPE_CHECKING:
    # Only HTTP servers verify JWTs (jwt and cryptography's key types: off the stdio start path).
    from engram.auth.jwt_tokens import JwtVerifier

#: The AccessToken claim that carries the Principal from the verifier to the tools.
PRINCIPAL_CLAIM = "engram_principal"
#: Longest bearer value looked at; anything longer is refused before hashing or parsing.
MAX_TOKEN_CHARS = 8192


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _access_token(
    raw: str, principal: Principal, *, subject: str | None, expires_at: int | None, issuer: str | None
) -> AccessToken:
    claims: dict[str, Any] = {
        PRINCIPAL_CLAIM: {"users": sorted(principal.users), "agent": principal.agent, "token_id": principal.token_id}
    }
    if issuer is not None:
        claims["iss"] = issuer
    return AccessToken(
        token=raw,
        client_id=principal.token_id,
        scopes=sorted(principal.scopes),
        expires_at=expires_at,
        subject=subject,
        claims=claims,
    )


def principal_of(token: AccessToken) -> Principal:
    """The Principal a verified AccessToken carries; a token from anywhere else may do nothing."""
    carried = (token.claims or {}).get(PRINCIPAL_CLAIM)
    if not isinstance(carried, dict):
        return Principal(token_id=token.client_id, users=frozenset(), agent=None, scopes=frozenset())
    agent = carried.get("agent")
    return Principal(
        token_id=str(carried.get("token_id", token.client_id)),
        users=frozenset(str(user) for user in carried.get("users", [])),
        agent=agent if isinstance(agent, str) else None,
        scopes=frozenset(token.scopes),
    )


class EngramTokenVerifier:
    """Verifies bearer tokens for the HTTP transports (a structural `mcp` TokenVerifier)."""

    def __init__(
        self,
        *,
        token_file: TokenFile | None,
        env_tokens: Sequence[TokenRecord] = (),
        jwt: JwtVerifier | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._file = token_file
        self._env = list(env_tokens)
        self._jwt = jwt
        self._clock = clock

    def configured(self) -> bool:
        """Whether any token could be accepted at all (for a warning at start-up)."""
        return bool(self._env or self._jwt is not None or (self._file is not None and self._file.current()))

    async def verify_token(self, token: str) -> AccessToken | None:
        """The AccessToken for a valid token, or None (the SDK then answers 401)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        if self._jwt is not None and not token.startswith(SECRET_PREFIX) and token.count(".") == 2:
            verified = self._jwt.verify(token)
            if verified is None:
                return None
            return _access_token(
                token,
                verified.principal,
                subject=verified.subject,
                expires_at=verified.expires_at,
                issuer=verified.issuer,
            )
        records = [*self._env, *(self._file.current() if self._file is not None else [])]
        record = match(records, token, self._clock())
        if record is None:
            return None
        principal = record.principal()
        return _access_token(
            token,
            principal,
            subject=min(principal.users) if principal.users else None,
            expires_at=int(record.expires_at.timestamp()) if record.expires_at is not None else None,
            issuer=None,
        )
