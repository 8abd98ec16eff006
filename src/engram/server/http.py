"""The HTTP composition root: streamable HTTP or SSE with bearer auth, Host/Origin checks, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import AsyncGenerator, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from prometheus_client import Gauge
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from engram import __version__
from engram.auth.jwt_tokens import JwtVerifier
from engram.auth.tokens import TokenFile, parse_env_tokens
from engram.auth.verifier import EngramTokenVerifier
from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.core.ports import Embedder
from engram.server.app import Lifecycle, build_server
from engram.server.guards import OAUTH_FALLBACK_PATHS, BodySizeGuard, HostOriginGuard, ScopeGuard
from engram.server.host_check import HostOriginPolicy
from engram.server.metrics import CONTENT_TYPE, PrometheusMetrics, ToolCallMetrics
from engram.server.sessions import SessionGuard, SessionLimits
from engram.storage.distributed import EngineProbe
from engram.tools.state import AppState, use_default_user

logger = logging.getLogger(__name__)

HttpTransport = Literal["streamable-http", "sse"]
MCP_PATH = "/mcp"
SSE_PATH = "/sse"
#: Where RFC 9728 protected-resource metadata is served (the SDK appends the endpoint's path).
PROTECTED_RESOURCE = "/.well-known/oauth-protected-resource"
MESSAGE_PATH = "/messages/"
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class InFlight:
    """MCP server middleware counting the requests being handled, so that shutdown can wait for them."""

    def __init__(self, gauge: Gauge) -> None:
        self.count = 0
        self._gauge = gauge

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Count a request while it runs (notifications are not counted)."""
        if ctx.request_id is None:
            return await call_next(ctx)
        self.count += 1
        self._gauge.set(self.count)
        try:
            return await call_next(ctx)
        finally:
            self.count -= 1
            self._gauge.set(self.count)


@dataclass(frozen=True)
class HttpServer:
    """A built HTTP app and the parts tests and the CLI look at."""

    app: Starlette
    server: MCPServer[AppState]
    lifecycle: Lifecycle
    metrics: PrometheusMetrics
    verifier: EngramTokenVerifier
    in_flight: InFlight
    endpoint: str
    #: The streamable-HTTP session limits (None for SSE, whose sessions last as long as their stream).
    sessions: SessionLimits | None = None


def base_url(settings: Settings) -> str:
    """Where clients reach the server: ENGRAM_PUBLIC_URL, else http://<host>:<port>."""
    if settings.public_url is not None:
        return str(settings.public_url).rstrip("/")
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{settings.port}"


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The Host and Origin values accepted: loopback, the bind address, the public URL, and the configured extras.

    Always explicit, so the check stays on when bound to 0.0.0.0 (the SDK turns it off there otherwise).
    """
    names: list[str] = list(_LOOPBACK_NAMES)
    if not _is_wildcard(settings.host):
        names.append(f"[{settings.host}]" if ":" in settings.host else settings.host)
    hosts = [f"{name}:*" for name in names] + names
    origins = [f"http://{name}:*" for name in _LOOPBACK_NAMES] + [f"http://{name}" for name in _LOOPBACK_NAMES]
    if settings.public_url is not None:
        public = urlsplit(str(settings.public_url))
        hosts.append(public.netloc)
        if public.hostname and public.port is None:
            hosts.append(f"{public.hostname}:*" if ":" not in public.hostname else f"[{public.hostname}]:*")
        origins.append(f"{public.scheme}://{public.netloc}")
    for host in settings.allowed_hosts:
        hosts.append(host)
        if not host.endswith("]") and ":" not in host.rsplit("]", 1)[-1]:
            hosts.append(f"{host}:*")  # a bare name accepts any port
    origins.extend(origin.rstrip("/") for origin in settings.allowed_origins)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def token_verifier(settings: Settings, audience: str) -> EngramTokenVerifier:
    """The verifier of the configured tokens file, ENGRAM_TOKENS, and JWT key; raises InvalidInput if malformed."""
    token_file = TokenFile(settings.token_file)
    token_file.read()  # fail at start on a malformed file, rather than refusing every request later
    jwt = JwtVerifier.from_files(
        public_key_file=settings.jwt_public_key_file,
        jwks_file=settings.jwt_jwks_file,
        audience=settings.jwt_audience or audience,
        issuer=settings.jwt_issuer,
    )
    return EngramTokenVerifier(token_file=token_file, env_tokens=parse_env_tokens(settings.tokens), jwt=jwt)


def authorization_server(settings: Settings) -> AnyHttpUrl | None:
    """The operator's identity provider, if one is configured: ENGRAM_AUTHORIZATION_SERVER, else the JWT issuer
    when it is a URL. None: no authorization server exists, and none may be advertised (a client sent to a
    made-up one fails at registration and never learns its token was wrong)."""
    for issuer in (settings.authorization_server, settings.jwt_issuer):
        if issuer and issuer.startswith(("https://", "http://")):
            return AnyHttpUrl(issuer)
    return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalUser:
    """Tokenless loopback mode: every request acts for the server's default user, as on stdio."""

    def __init__(self, app: ASGIApp, *, user_id: str | None) -> None:
        self.app = app
        self._user_id = user_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Set the default user for this request's handlers, then pass it on."""
        use_default_user(self._user_id)
        await self.app(scope, receive, send)


def build_http_app(
    settings: Settings,
    transport: HttpTransport,
    *,
    embedder: Embedder | None = None,
    clock: Callable[[], float] | None = None,
) -> HttpServer:
    """Build the Starlette app serving Engram over `transport`, with every check in place.

    `clock` (monotonic seconds) times idle sessions; tests pass one they can move.
    """
    root = base_url(settings)
    endpoint = root + (MCP_PATH if transport == "streamable-http" else SSE_PATH)
    tokenless = settings.http_no_auth == "loopback"
    if tokenless and not _loopback(settings.host):
        raise InvalidInput(
            "ENGRAM_HTTP_NO_AUTH",
            f"'loopback' serves without tokens, so it needs a loopback bind (127.0.0.1, ::1 or localhost), not "
            f"{settings.host!r}; unset it, or create tokens with `engram token create`.",
        )
    verifier = token_verifier(settings, endpoint)
    metrics = PrometheusMetrics(per_user=settings.metrics_per_user, max_users=settings.metrics_max_users)
    lifecycle = Lifecycle(settings, embedder, metrics)
    identity_provider = authorization_server(settings)
    auth = AuthSettings(
        # Without an identity provider the SDK still needs a URL here; its metadata route is then removed below.
        issuer_url=identity_provider or AnyHttpUrl(root),
        resource_server_url=AnyHttpUrl(endpoint),
        # Engram's verifier checks a JWT's audience itself; operator tokens belong to this server only.
        validate_token_resource=False,
    )
    if tokenless:
        server = build_server(settings, lifecycle=lifecycle)
    else:
        server = build_server(settings, lifecycle=lifecycle, token_verifier=verifier, auth=auth)
    in_flight = InFlight(metrics.in_flight)
    server.middleware.extend([in_flight, ToolCallMetrics(metrics, server)])

    engines = EngineProbe(
        None if settings.sessions_url is None else settings.sessions_url.get_secret_value(), settings.storage_uri
    )

    async def healthz(_: Request) -> Response:
        """Whether the model is loaded and the stores are open (503 while loading, after a failure, or stopping).

        A server with a damaged tier still serves the others: it answers 200 with status 'degraded' and says which
        tier is damaged, which file, and what to do.
        """
        state = lifecycle.current()
        memory = state.memory if state is not None else None
        loaded = memory is not None and memory.ready
        stores_open = loaded and memory is not None and not memory.closed
        damaged: dict[str, str] = {}
        if memory is None or memory.closed:
            status = "stopped"
        elif memory.error is not None:
            status = "failed"
        else:
            status = "ready" if loaded else "loading"
            if loaded:
                damaged = {tier: str(error) for tier, error in (await memory.get()).health.damaged().items()}
                status = "degraded" if damaged else status
        body: dict[str, object] = {
            "status": status,
            "model_loaded": loaded,
            "stores_open": stores_open,
            "version": __version__,
        }
        if damaged:
            body["damaged"] = damaged
        healthy = stores_open
        if engines.configured:
            # The shared engines of distributed mode: a replica that cannot reach them should get no traffic.
            body["engines"] = report = await anyio.to_thread.run_sync(engines.check)
            healthy = healthy and all(outcome == "ok" for outcome in report.values())
        return JSONResponse(body, status_code=200 if healthy else 503)

    async def prometheus(_: Request) -> Response:
        """Prometheus exposition of Engram's metrics (the token check runs in ScopeGuard)."""
        state = lifecycle.current()
        text = await metrics.render(state.memory if state is not None else None, settings.embedding_model)
        return Response(text, media_type=CONTENT_TYPE)

    security = transport_security(settings)
    max_body = int(settings.max_request_mb * 1024 * 1024)
    if transport == "streamable-http":
        app = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=security,
            host=settings.host,
            max_request_body_size=max_body,
            max_sessions=settings.max_sessions,
            # Engram ends idle sessions itself (SessionLimits), on a clock tests can move.
            session_idle_timeout=None,
            # Replicas behind a load balancer: every request stands alone, so any replica can take it.
            stateless_http=settings.sessions_url is not None
            if settings.http_stateless is None
            else settings.http_stateless,
        )
        mcp_paths: tuple[str, ...] = (MCP_PATH,)
        sessions: SessionLimits | None = SessionLimits(
            server.session_manager,
            max_sessions=settings.max_sessions,
            per_token=settings.max_sessions_per_token,
            idle_seconds=settings.session_idle_seconds,
            clock=clock or time.monotonic,
        )
    else:
        app = server.sse_app(
            sse_path=SSE_PATH,
            message_path=MESSAGE_PATH,
            transport_security=security,
            host=settings.host,
            max_request_body_size=max_body,
        )
        mcp_paths = (SSE_PATH, MESSAGE_PATH.rstrip("/"))
        sessions = None

    if identity_provider is None:
        # No authorization server to point OAuth clients to: no protected-resource metadata either.
        app.router.routes[:] = [
            route for route in app.router.routes if not getattr(route, "path", "").startswith(PROTECTED_RESOURCE)
        ]
    app.add_route(HEALTH_PATH, healthz, methods=["GET"])
    app.add_route(METRICS_PATH, prometheus, methods=["GET"])

    def rejected(reason: str) -> None:
        metrics.http_rejected.labels(reason=reason).inc()

    # Outermost: foreign Host/Origin are refused before anything else, on every path.
    try:
        policy = HostOriginPolicy(security.allowed_hosts, security.allowed_origins)
    except ValueError as exc:
        raise InvalidInput("ENGRAM_ALLOWED_HOSTS/ENGRAM_ALLOWED_ORIGINS", str(exc)) from exc
    app.user_middleware.insert(0, Middleware(HostOriginGuard, policy=policy, rejected=rejected))
    # Next, before authentication: an oversized body is refused before anyone reads it.
    app.user_middleware.insert(
        1, Middleware(BodySizeGuard, max_bytes=max_body, setting="ENGRAM_MAX_REQUEST_MB", rejected=rejected)
    )
    # Innermost, after the SDK's authentication middleware has identified the token.
    app.user_middleware.append(
        Middleware(
            ScopeGuard,
            mcp_paths=mcp_paths,
            metrics_path=METRICS_PATH,
            metrics_public=settings.metrics_public,
            resource_metadata_url=(
                str(build_resource_metadata_url(AnyHttpUrl(endpoint))) if identity_provider is not None else None
            ),
            oauth_fallback_paths=OAUTH_FALLBACK_PATHS if identity_provider is None and not tokenless else (),
            tokenless=tokenless,
            rejected=rejected,
        )
    )
    if tokenless:
        app.user_middleware.append(Middleware(LocalUser, user_id=settings.default_user or None))
    if sessions is not None:
        # After authentication, which names the token a session belongs to.
        app.user_middleware.append(Middleware(SessionGuard, limits=sessions, path=MCP_PATH))
    app.router.lifespan_context = _holding(lifecycle, app.router.lifespan_context, sessions)
    return HttpServer(
        app=app,
        server=server,
        lifecycle=lifecycle,
        metrics=metrics,
        verifier=verifier,
        in_flight=in_flight,
        endpoint=endpoint,
        sessions=sessions,
    )


def _holding(
    lifecycle: Lifecycle,
    inner: Callable[[Any], AbstractAsyncContextManager[Any]],
    sessions: SessionLimits | None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: hold the memory open for the whole process around the transport's own lifespan, and
    end idle sessions meanwhile."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncGenerator[None, None]:
        async with lifecycle.hold(), inner(app), anyio.create_task_group() as tasks:
            if sessions is not None:
                tasks.start_soon(sessions.expire_forever)
            yield
            tasks.cancel_scope.cancel()

    return lifespan


#: After the last in-flight request finished, how long its response gets to leave before event streams end.
FLUSH_S = 0.3


def serve_http(settings: Settings, transport: HttpTransport) -> None:
    """Run the HTTP server until SIGTERM/SIGINT; in-flight calls get `shutdown_grace_seconds` to finish.

    On the signal: no new connections; requests being handled run to completion and their responses are sent;
    then the event streams (SSE) end, the connections close, and the lifespan closes the stores.
    """
    import uvicorn
    from sse_starlette.sse import AppStatus

    from engram.server.header_timeout import header_deadline_protocol

    # sse-starlette ends every event stream as soon as uvicorn is told to stop, which cuts off the response
    # of a call still running (streamable HTTP answers over such a stream too). Engram ends them itself, once
    # the calls in flight are done.
    AppStatus.enable_automatic_graceful_drain = False

    class GracefulServer(uvicorn.Server):
        """Uvicorn that drains in-flight MCP calls before ending streams, and exits with 0 after a clean stop."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            drain = asyncio.create_task(self._end_streams_when_idle())
            try:
                await super().shutdown(sockets)
            finally:
                drain.cancel()
                AppStatus.should_exit = True

        async def _end_streams_when_idle(self) -> None:
            while built.in_flight.count > 0:
                await asyncio.sleep(0.05)
            await asyncio.sleep(FLUSH_S)
            AppStatus.should_exit = True

        @contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            # Unlike uvicorn's own, the stop signal is not raised again afterwards: a clean stop exits with 0.
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    built = build_http_app(settings, transport)
    if not built.verifier.configured():
        logger.warning(
            "no bearer tokens are configured, so every request will be refused (401); "
            "create one with `engram token create --user <id> --scope read --scope write`"
        )
    logger.info("Engram serving %s at %s; data in %s", transport, built.endpoint, settings.data_dir)
    config = uvicorn.Config(
        built.app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep Engram's logging: everything on stderr
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        lifespan="on",
        # h11 with a deadline for request headers: uvicorn itself has none, and slow sockets would pile up.
        http=header_deadline_protocol(settings.http_header_timeout_seconds),
    )
    GracefulServer(config).run()
    # As for stdio: the stores are closed; skip the final collection of large heaps so the process exits fast.
    gc.freeze()
