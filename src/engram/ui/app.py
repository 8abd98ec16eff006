"""`engram ui`: a small local web page to search, open, correct and forget what Engram remembers.

Server-rendered (Starlette and Jinja2 with autoescaping; no script at all), behind the HTTP server's Host/Origin
guard and body limit, with sign-in by bearer token whenever tokens are configured (see `ui/access.py`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from engram.config import Settings
from engram.core.errors import AccessDenied, EngramError, InvalidInput
from engram.core.ports import Embedder
from engram.core.service import MemoryService
from engram.ui.access import COOKIE, BrowserSessions, Viewer
from engram.ui.search import TIERS, SearchForm, run_search

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
#: Largest form body accepted (an edited memory's content is the largest field).
MAX_FORM_BYTES = 256 * 1024
#: What a redirect after a change may say; the page shows only these fixed texts, never text from the URL.
NOTICES = {
    "updated": "Memory updated.",
    "forgotten": "Memory forgotten.",
    "unchanged": "Nothing was changed.",
    "signed-in": "Signed in.",
}
#: Every page: no script, no framing, no third-party anything, nothing cached, no referrer leaving the site.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it Chromium sends `Origin: null` on form posts, which the Host/Origin guard refuses.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda d: "" if d is None else f"{d:%Y-%m-%d %H:%M}" if isinstance(d, datetime) else d
    env.filters["size"] = _size
    return env


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@dataclass
class UiState:
    """What every page needs: the settings, the open memory, the browser sessions and the templates."""

    settings: Settings
    sessions: BrowserSessions
    templates: Environment
    memory: MemoryService | None = None

    def service(self) -> MemoryService:
        """The open memory service (opened by the app's lifespan)."""
        if self.memory is None:
            raise EngramError("Engram's memory is not open yet; reload the page in a moment.")
        return self.memory


Handler = Callable[[Request, UiState, Viewer, str], Awaitable[Response]]


class Page:
    """One route: resolves the browser session and viewer, checks CSRF on POST, renders errors as one line."""

    def __init__(self, state: UiState, handler: Handler, *, signed_in: bool = True) -> None:
        self._state, self._handler, self._signed_in = state, handler, signed_in

    async def respond(self, request: Request) -> Response:
        """Answer the request (a new browser session gets its cookie)."""
        state = self._state
        session_id = request.cookies.get(COOKIE) or ""
        fresh = not session_id or len(session_id) > 64
        if fresh:
            session_id = state.sessions.new_id()
        try:
            if request.method == "POST":
                form = await _form(request)
                if fresh or not state.sessions.csrf_valid(session_id, form.get("csrf")):
                    refused = render(state, request, "error.html", session_id, message=_CSRF_MESSAGE, status=403)
                    return _finish(state, refused, session_id, fresh)
                request.state.form = form
            viewer = await state.sessions.viewer(session_id)
            if viewer is None and self._signed_in:
                response: Response = RedirectResponse("/login", status_code=303)
            else:
                response = await self._handler(request, state, viewer or Viewer(None), session_id)
        except AccessDenied as exc:
            response = render(state, request, "error.html", session_id, message=str(exc), status=403)
        except EngramError as exc:
            response = render(state, request, "error.html", session_id, message=str(exc), status=400)
        renewed: str | None = getattr(request.state, "renewed_session", None)
        if renewed is not None:
            return _finish(state, response, renewed, True)
        return _finish(state, response, session_id, fresh)


_CSRF_MESSAGE = (
    "This form is out of date or did not come from this page (its security token is missing or wrong); "
    "nothing was changed. Reload the page and try again."
)


def _finish(state: UiState, response: Response, session_id: str, fresh: bool) -> Response:
    if fresh:
        # Secure when the browser reaches the page over HTTPS (a proxy in front, named by ENGRAM_PUBLIC_URL).
        secure = str(state.settings.public_url or "").startswith("https://")
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", path="/", secure=secure)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _form(request: Request) -> dict[str, str]:
    """A POST's url-encoded fields (last value wins); anything larger than MAX_FORM_BYTES is refused."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidInput("form", f"is over {MAX_FORM_BYTES // 1024} KB; shorten the content.")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50))
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("form", "is not a url-encoded UTF-8 form.") from None


def render(
    state: UiState, request: Request, name: str, session_id: str, *, status: int = 200, **values: Any
) -> Response:
    """A template filled with `values`, the CSRF token, and the notice named in the URL (if it is a known one)."""
    notice = NOTICES.get(request.query_params.get("done", ""), "")
    html = state.templates.get_template(name).render(
        csrf=state.sessions.csrf_token(session_id),
        notice=notice,
        tokenless=state.sessions.tokenless,
        tiers=TIERS,
        **values,
    )
    return HTMLResponse(html, status_code=status)


def _link(path: str, **params: str) -> str:
    kept = {k: v for k, v in params.items() if v}
    return path + ("?" + urlencode(kept) if kept else "")


async def search_page(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """The start page: search or list one user's memories and knowledge, with the tiers' sizes."""
    form = SearchForm.parse(dict(request.query_params))
    user, agent = viewer.acting_for(form.user or None, "read")
    if viewer.principal is None and form.agent:
        agent = form.agent  # the local operator filtering by an agent also sees that agent's private memories
    memory = state.service()
    found = await run_search(memory, form, user, agent)
    stats = await memory.tier_stats() if viewer.operator else {}
    more = None
    if found.next_offset is not None:
        params = {k: v for k, v in request.query_params.items() if k != "offset"}
        more = _link("/", **params, offset=str(found.next_offset))
    return render(
        state, request, "search.html", session_id, form=form, user=user, users=viewer.users(), found=found,
        stats=stats, more=more, link=_link,
    )  # fmt: skip


async def memory_page(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """One memory whole: content, metadata, history, and the forms to edit or forget it."""
    user, agent = viewer.acting_for(request.query_params.get("user") or None, "read")
    found = await state.service().get_memory(user, request.path_params["memory_id"], agent_id=agent)
    return render(state, request, "memory.html", session_id, memory=found, user=user, link=_link)


async def edit_memory(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """Apply the edit form: only the fields that differ from the stored memory are changed."""
    form: dict[str, str] = request.state.form
    user, agent = viewer.acting_for(form.get("user") or None, "write")
    memory = state.service()
    current = await memory.get_memory(user, request.path_params["memory_id"], agent_id=agent)
    content = form.get("content", "").replace("\r\n", "\n")
    tags = [t.strip() for t in form.get("tags", "").split(",") if t.strip()]
    category = form.get("category", "").strip()
    importance_text = form.get("importance", "").strip()
    try:
        importance = float(importance_text) if importance_text else None
    except ValueError:
        raise InvalidInput("importance", "must be a number from 0 to 1, or empty.") from None
    changes: dict[str, Any] = {}
    if content.strip() and content != current.content:
        changes["content"] = content
    if tags != current.tags:
        changes["tags"] = tags
    if category and category != current.category:
        changes["category"] = category
    if importance is not None and importance != current.importance:
        changes["importance"] = importance
    if not changes:
        return RedirectResponse(_link(f"/memory/{current.id}", user=user, done="unchanged"), status_code=303)
    updated = await memory.update_memory(user, current.id, agent_id=agent, **changes)
    return RedirectResponse(_link(f"/memory/{updated.id}", user=user, done="updated"), status_code=303)


async def forget_memory(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """Forget one memory, then go back to the list."""
    form: dict[str, str] = request.state.form
    user, agent = viewer.acting_for(form.get("user") or None, "write")
    await state.service().forget_memory(user, request.path_params["memory_id"], agent_id=agent)
    return RedirectResponse(_link("/", user=user, done="forgotten"), status_code=303)


async def erase_page(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """Erase a user: a GET asks for confirmation (typing the user id), a POST with it erases."""
    if request.method == "GET":
        user, _ = viewer.acting_for(request.query_params.get("user") or None, "write")
        return render(state, request, "erase.html", session_id, user=user)
    form: dict[str, str] = request.state.form
    user, _ = viewer.acting_for(form.get("user") or None, "write")
    if form.get("confirm", "").strip() != user:
        raise InvalidInput("confirm", "type the user id exactly as shown to confirm; nothing was erased.")
    receipt = await state.service().forget_user(user, confirm=True)
    return render(state, request, "erased.html", session_id, receipt=receipt)


async def login_page(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """Sign in with a bearer token (only when tokens are configured)."""
    if state.sessions.tokenless:
        return RedirectResponse("/", status_code=303)
    if request.method == "GET":
        return render(state, request, "login.html", session_id)
    # A new session id on sign-in: an id planted in the browser beforehand (another local port can set cookies for
    # 127.0.0.1) must not become a signed-in session its planter also holds.
    renewed = state.sessions.new_id()
    if not await state.sessions.sign_in(renewed, request.state.form.get("token", "")):
        return render(
            state, request, "login.html", session_id, status=401,
            error="That token is not valid (unknown, revoked or expired). Create one with `engram token create`.",
        )  # fmt: skip
    state.sessions.sign_out(session_id)
    request.state.renewed_session = renewed
    return RedirectResponse("/?done=signed-in", status_code=303)


async def logout(request: Request, state: UiState, viewer: Viewer, session_id: str) -> Response:
    """Sign out of this browser session."""
    state.sessions.sign_out(session_id)
    return RedirectResponse("/login", status_code=303)


async def stylesheet(_: Request) -> Response:
    """The page's only style sheet (a file, so the content security policy can forbid inline styles)."""
    return PlainTextResponse((HERE / "static" / "style.css").read_text(), media_type="text/css")


def build_ui_app(
    settings: Settings,
    *,
    users: list[str],
    embedder: Embedder | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Starlette:
    """The memory browser as an ASGI app, with the HTTP server's Host/Origin and body-size guards in front.

    Tokenless (no token configured) only on a loopback bind, for `users`; otherwise every page needs sign-in.
    """
    from engram.server.guards import BodySizeGuard, HostOriginGuard
    from engram.server.host_check import HostOriginPolicy
    from engram.server.http import _loopback, token_verifier, transport_security

    verifier = token_verifier(settings, base_url_of(settings))
    configured = verifier.configured()
    if not configured and not _loopback(settings.host):
        raise InvalidInput(
            "--host",
            f"without tokens the memory browser serves only on loopback (127.0.0.1, ::1 or localhost), not "
            f"{settings.host!r}; create a token with `engram token create` or bind to loopback.",
        )
    state = UiState(settings, BrowserSessions(verifier if configured else None, users), _templates())

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncGenerator[None, None]:
        from engram.runtime import open_memory

        def opened() -> MemoryService:
            return open_memory(settings, embedder) if clock is None else open_memory(settings, embedder, clock)

        state.memory = await anyio.to_thread.run_sync(opened)
        try:
            yield
        finally:
            memory, state.memory = state.memory, None
            await anyio.to_thread.run_sync(memory.close)

    def page(handler: Handler, *, signed_in: bool = True) -> Callable[[Request], Awaitable[Response]]:
        return Page(state, handler, signed_in=signed_in).respond

    routes = [
        Route("/", page(search_page), methods=["GET"]),
        Route("/memory/{memory_id}", page(memory_page), methods=["GET"]),
        Route("/memory/{memory_id}/edit", page(edit_memory), methods=["POST"]),
        Route("/memory/{memory_id}/forget", page(forget_memory), methods=["POST"]),
        Route("/erase", page(erase_page), methods=["GET", "POST"]),
        Route("/login", page(login_page, signed_in=False), methods=["GET", "POST"]),
        Route("/logout", page(logout, signed_in=False), methods=["POST"]),
        Route("/style.css", stylesheet, methods=["GET"]),
    ]
    security = transport_security(settings)
    policy = HostOriginPolicy(security.allowed_hosts, security.allowed_origins)
    middleware = [
        Middleware(HostOriginGuard, policy=policy),
        Middleware(BodySizeGuard, max_bytes=MAX_FORM_BYTES, setting="the memory browser's form limit"),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def base_url_of(settings: Settings) -> str:
    """Where the browser is reached (ENGRAM_PUBLIC_URL, else http://<host>:<port>); names JWTs' audience."""
    from engram.server.http import base_url

    return base_url(settings)


def serve_ui(settings: Settings, *, users: list[str]) -> None:
    """Run the memory browser until interrupted."""
    import uvicorn

    app = build_ui_app(settings, users=users)
    logger.info("Engram memory browser at %s; data in %s", base_url_of(settings), settings.data_dir)
    uvicorn.Server(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False, lifespan="on")
    ).run()
