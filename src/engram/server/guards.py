"""ASGI guards of the HTTP server: Host/Origin checks on every path, and scope checks the SDK cannot express."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

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


class ScopeGuard:
    """Runs after authentication: 403 for a valid token without any memory scope on the MCP endpoints, and the
    token requirement of /metrics (401 without one, 403 without the `metrics` or `admin` scope).

    Unauthenticated MCP requests pass through to the SDK, which answers 401 with its WWW-Authenticate header.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        mcp_paths: tuple[str, ...],
        metrics_path: str,
        metrics_public: bool,
        resource_metadata_url: str,
        rejected: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self._mcp_paths = mcp_paths
        self._metrics_path = metrics_path
        self._metrics_public = metrics_public
        self._metadata_url = resource_metadata_url
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
        elif path.startswith(self._mcp_paths):
            if not isinstance(user, AuthenticatedUser):
                if self._rejected is not None:
                    self._rejected("unauthenticated")
            elif not scopes & MEMORY_SCOPES:
                await self._refuse(
                    send, 403, "insufficient_scope", "Required scope: read, write or admin", "read write admin"
                )
                return
        await self.app(scope, receive, send)

    async def _refuse(self, send: Send, status: int, error: str, description: str, scope_hint: str) -> None:
        if self._rejected is not None:
            self._rejected("unauthenticated" if status == 401 else "insufficient_scope")
        challenge = (
            f'Bearer error="{error}", error_description="{description}", scope="{scope_hint}", '
            f'resource_metadata="{self._metadata_url}"'
        )
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
