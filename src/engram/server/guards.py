"""ASGI guards of the HTTP server: Host/Origin checks on every path, and scope checks the SDK cannot express."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engram.auth.principal import MEMORY_SCOPES
from engram.server.host_check import HostOriginPolicy

logger = logging.getLogger(__name__)

#: Paths answered whatever the Host: a liveness probe reveals nothing and probes rarely send the public name.
HOST_EXEMPT = frozenset({"/healthz"})


class HostOriginGuard:
    """Rejects a foreign Host (421) or Origin (403) on every path, before authentication: DNS-rebinding defence.

    The values are parsed and compared exactly (`host_check`); the SDK's own check, which runs on its MCP
    endpoints only, matches a port wildcard by prefix. A repeated Host or Origin header is refused too.
    """

    def __init__(
        self, app: ASGIApp, *, policy: HostOriginPolicy, rejected: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self._policy = policy
        self._rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a foreign request with 421 or 403; pass the rest on."""
        if scope["type"] == "http" and scope["path"] not in HOST_EXEMPT:
            refusal = self._refusal(scope["headers"])
            if refusal is not None:
                reason, status, header, value = refusal
                logger.warning("refused a request with %s header %r", header, value[:80])
                if self._rejected is not None:
                    self._rejected(reason)
                await PlainTextResponse(f"Invalid {header} header", status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, int, str, str] | None:
        hosts = [value.decode("latin-1") for name, value in headers if name == b"host"]
        if len(hosts) != 1 or not self._policy.host_allowed(hosts[0]):
            return "host", 421, "Host", ", ".join(hosts)
        origins = [value.decode("latin-1") for name, value in headers if name == b"origin"]
        # Origin is absent from same-origin and non-browser requests; when present it must be allowed.
        if len(origins) > 1 or (origins and not self._policy.origin_allowed(origins[0])):
            return "origin", 403, "Origin", ", ".join(origins)
        return None


class _BodyTooLarge(Exception):
    """The streamed body passed the limit."""


class BodySizeGuard:
    """Refuses a request body over `max_bytes` with 413 and a one-line message, before the app reads it.

    A declared Content-Length over the limit is refused unread (the HTTP server holds the body to that length). A
    body without one (chunked) is read here up to the limit, counting, and refused as soon as it passes it; a body
    within the limit is handed on whole. So no request ever holds more than the limit in memory.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, setting: str, rejected: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self._max = max_bytes
        self._message = (
            f"Request body is over the {max_bytes / 2**20:g} MB limit ({setting}); send less per call "
            "(split a long document or a large batch)."
        )
        self._rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body; pass the rest on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lengths = [value for name, value in scope["headers"] if name == b"content-length"]
        chunked = any(name == b"transfer-encoding" for name, _ in scope["headers"])
        if lengths:
            if any(not length.strip().isdigit() or int(length) > self._max for length in lengths):
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        try:
            replay = await self._read_within_limit(receive)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, replay, send)

    async def _read_within_limit(self, receive: Receive) -> Receive:
        parts: list[bytes] = []
        size = 0
        pending: list[Message] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                pending.append(message)  # a disconnect: the app sees it after the body
                break
            body = message.get("body", b"")
            size += len(body)
            if size > self._max:
                raise _BodyTooLarge
            parts.append(body)
            if not message.get("more_body", False):
                break
        queue: list[Message] = [{"type": "http.request", "body": b"".join(parts), "more_body": False}, *pending]

        async def replay() -> Message:
            return queue.pop(0) if queue else await receive()

        return replay

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._rejected is not None:
            self._rejected("body_too_large")
        # Connection: close, so the HTTP server does not read (or wait for) the body it was announced.
        response = PlainTextResponse(self._message, status_code=413, headers={"connection": "close"})
        await response(scope, receive, send)


#: What a client without a usable token is told, in the 401's body and its WWW-Authenticate header.
NO_TOKEN = (
    "invalid or missing bearer token: ask the operator for one (made with `engram token create`) and send it as "
    "the header Authorization: Bearer <token>"
)

#: Where a client of the 2025-03-26 MCP authorization spec registers and signs in when a server publishes no
#: metadata (that spec's default endpoints, still tried by mcp-remote).
OAUTH_FALLBACK_PATHS = ("/register", "/authorize", "/token")
NO_OAUTH = f"{NO_TOKEN} (this server has no OAuth authorization server: there is no client registration or sign-in)"


class ScopeGuard:
    """Runs after authentication: 401 for an MCP request without a valid token, 403 for a valid token without any
    memory scope, and the token requirement of /metrics (401 without one, 403 without `metrics` or `admin`).

    The 401 says the token is invalid or missing and how to get one; it points to protected-resource metadata
    only when an authorization server is configured (`resource_metadata_url`), since sending an OAuth client to
    a made-up one ends in a registration error that hides the real problem. Without one, `oauth_fallback_paths`
    answer a request without a valid token with the same 401: an OAuth client refused at the MCP endpoint goes
    there next and shows that answer as its reason. `tokenless` (loopback mode) lets MCP requests through without
    a token.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        mcp_paths: tuple[str, ...],
        metrics_path: str,
        metrics_public: bool,
        resource_metadata_url: str | None,
        oauth_fallback_paths: tuple[str, ...] = (),
        tokenless: bool = False,
        rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self._mcp_paths = mcp_paths
        self._metrics_path = metrics_path
        self._metrics_public = metrics_public
        self._metadata_url = resource_metadata_url
        self._oauth_fallbacks = oauth_fallback_paths
        self._tokenless = tokenless
        self._rejected = rejected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what the token does not allow; pass the rest on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        user = scope.get("user")
        scopes = set(user.scopes) if isinstance(user, AuthenticatedUser) else set()
        if path == self._metrics_path and not self._metrics_public:
            if not isinstance(user, AuthenticatedUser):
                await self._refuse(send, 401, "invalid_token", "Authentication required", "metrics")
                return
            if not scopes & {"metrics", "admin"}:
                await self._refuse(send, 403, "insufficient_scope", "Required scope: metrics or admin", "metrics")
                return
        elif path.startswith(self._mcp_paths) and not self._tokenless:
            if not isinstance(user, AuthenticatedUser):
                await self._refuse(send, 401, "invalid_token", NO_TOKEN, "read write admin")
                return
            if not scopes & MEMORY_SCOPES:
                await self._refuse(
                    send, 403, "insufficient_scope", "Required scope: read, write or admin", "read write admin"
                )
                return
        elif path in self._oauth_fallbacks and not isinstance(user, AuthenticatedUser):
            await self._refuse(send, 401, "invalid_token", NO_OAUTH, "read write admin")
            return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, error: str, description: str, scope_hint: str) -> None:
        if self._rejected is not None:
            self._rejected("unauthenticated" if status == 401 else "insufficient_scope")
        if status == 401 and NO_TOKEN not in description:
            description = f"{description}: {NO_TOKEN}"
        challenge = f'Bearer error="{error}", error_description="{description}", scope="{scope_hint}"'
        if self._metadata_url is not None:
            challenge += f', resource_metadata="{self._metadata_url}"'
        body = json.dumps({"error": error, "error_description": description}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
