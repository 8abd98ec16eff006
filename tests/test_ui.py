"""The memory browser (`engram ui`) in process: pages, edits, erasure, and its defences (XSS, CSRF, Host, sign-in)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx2
import pytest

from engram.config import Settings
from engram.core.errors import InvalidInput
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from engram.ui.app import build_ui_app
from tests.helpers import stepping_clock
from tests.http_server import issue_token

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8766"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'

Browser = Callable[..., AbstractAsyncContextManager[httpx2.AsyncClient]]


async def _seed(settings: Settings, user: str, *contents: str, tags: list[str] | None = None) -> list[str]:
    """Store memories through the service, before the browser opens the same data directory."""
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        return [(await memory.remember(user, c, tags=tags or [])).id for c in contents]
    finally:
        memory.close()


@pytest.fixture
def browser(settings: Settings) -> Browser:
    @asynccontextmanager
    async def open_browser(
        *, users: tuple[str, ...] = ("alice",), **overrides: object
    ) -> AsyncIterator[httpx2.AsyncClient]:
        app = build_ui_app(
            settings.model_copy(update=overrides), users=list(users), embedder=HashEmbedder(), clock=stepping_clock
        )
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as client,
        ):
            yield client

    return open_browser


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "no CSRF field on the page"
    return found.group(1)


def _memory_ids(page: str) -> list[str]:
    return re.findall(r'href="/memory/([0-9a-f]{32})', page)


async def test_lists_searches_and_opens_one_users_memories(settings: Settings, browser: Browser) -> None:
    (tea,) = await _seed(settings, "alice", "prefers green tea in the morning", tags=["drinks"])
    await _seed(settings, "alice", "walks the dog at noon")
    await _seed(settings, "bob", "bob secret plan")
    async with browser() as client:
        page = (await client.get("/")).text
        assert "prefers green tea" in page and "walks the dog" in page and "bob secret" not in page
        assert "long-term" in page  # the tiers' counts and sizes
        page = (await client.get("/", params={"query": "green tea morning", "tier": "long_term"})).text
        assert _memory_ids(page)[0] == tea
        page = (await client.get("/", params={"tag": "drinks"})).text
        assert _memory_ids(page) == [tea]
        page = (await client.get("/", params={"since": "2999-01-01"})).text
        assert _memory_ids(page) == [] and "No memories found" in page
        opened = await client.get(f"/memory/{tea}")
        assert opened.status_code == 200 and "prefers green tea" in opened.text and "History" in opened.text


async def test_memory_content_is_escaped_everywhere(settings: Settings, browser: Browser) -> None:
    (hostile,) = await _seed(settings, "alice", XSS, tags=["<b>tag</b>"])
    async with browser() as client:
        for path in ("/", f"/memory/{hostile}", "/?query=alert"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "<script>" not in response.text and "<img" not in response.text and "<b>tag" not in response.text
            assert "&lt;script&gt;" in response.text
            assert "script-src" not in response.headers["content-security-policy"]  # so no script may run at all
            assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_edit_and_forget_through_the_forms(settings: Settings, browser: Browser) -> None:
    (memory_id,) = await _seed(settings, "alice", "lives in Lisbon", tags=["home"])
    async with browser() as client:
        page = (await client.get(f"/memory/{memory_id}")).text
        edited = await client.post(
            f"/memory/{memory_id}/edit",
            data={"csrf": _csrf(page), "user": "alice", "content": "lives in Porto", "tags": "home, city"},
        )
        assert edited.status_code == 303
        new_id = edited.headers["location"].split("/memory/")[1].split("?")[0]
        assert new_id != memory_id
        page = (await client.get(edited.headers["location"])).text
        assert "Memory updated." in page and "lives in Porto" in page and "home, city" in page
        assert (await client.get(f"/memory/{memory_id}")).status_code == 400  # the old id is gone
        forgotten = await client.post(f"/memory/{new_id}/forget", data={"csrf": _csrf(page), "user": "alice"})
        assert forgotten.status_code == 303
        page = (await client.get(forgotten.headers["location"])).text
        assert "Memory forgotten." in page and "lives in Porto" not in page


async def test_a_post_without_this_sessions_csrf_token_changes_nothing(settings: Settings, browser: Browser) -> None:
    (memory_id,) = await _seed(settings, "alice", "keep me")
    async with browser() as client:
        token = _csrf((await client.get(f"/memory/{memory_id}")).text)
        assert (await client.post(f"/memory/{memory_id}/forget", data={"user": "alice"})).status_code == 403
        wrong = await client.post(f"/memory/{memory_id}/forget", data={"user": "alice", "csrf": "0" * 64})
        assert wrong.status_code == 403 and "nothing was changed" in wrong.text
    async with browser() as other:  # another browser (no session cookie) replaying a valid token
        replayed = await other.post(f"/memory/{memory_id}/forget", data={"user": "alice", "csrf": token})
        assert replayed.status_code == 403
        assert "keep me" in (await other.get(f"/memory/{memory_id}")).text


async def test_foreign_host_and_origin_are_refused(settings: Settings, browser: Browser) -> None:
    (memory_id,) = await _seed(settings, "alice", "keep me")
    async with browser() as client:
        page = (await client.get(f"/memory/{memory_id}")).text
        assert (await client.get("/", headers={"Host": "evil.example"})).status_code == 421
        cross = await client.post(
            f"/memory/{memory_id}/forget",
            data={"csrf": _csrf(page), "user": "alice"},
            headers={"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        assert "keep me" in (await client.get(f"/memory/{memory_id}")).text


async def test_erasure_needs_the_user_id_typed_as_confirmation(settings: Settings, browser: Browser) -> None:
    await _seed(settings, "alice", "one", "two")
    async with browser() as client:
        page = (await client.get("/erase", params={"user": "alice"})).text
        assert "cannot be undone" in page
        refused = await client.post("/erase", data={"csrf": _csrf(page), "user": "alice", "confirm": "yes"})
        assert refused.status_code == 400 and "nothing was erased" in refused.text
        assert len(_memory_ids((await client.get("/")).text)) == 2
        erased = await client.post("/erase", data={"csrf": _csrf(page), "user": "alice", "confirm": "alice"})
        assert erased.status_code == 200 and "Erased" in erased.text
        assert _memory_ids((await client.get("/")).text) == []


async def test_tokenless_browser_serves_only_the_users_it_was_started_for(settings: Settings, browser: Browser) -> None:
    await _seed(settings, "bob", "bob secret plan")
    async with browser(users=("alice",)) as client:
        response = await client.get("/", params={"user": "bob"})
        assert response.status_code == 403 and "bob secret" not in response.text


async def test_bad_input_gets_a_one_line_message(settings: Settings, browser: Browser) -> None:
    async with browser() as client:
        for params in ({"since": "yesterday"}, {"tier": "attic"}, {"user": "x' OR '1'='1"}):
            response = await client.get("/", params=params)
            assert response.status_code in (400, 403) and 'class="error"' in response.text, params
        assert (await client.get("/memory/not-an-id")).status_code == 400


def test_without_tokens_only_a_loopback_bind_is_accepted(settings: Settings) -> None:
    with pytest.raises(InvalidInput, match="only on loopback"):
        build_ui_app(settings.model_copy(update={"host": "0.0.0.0"}), users=["alice"], embedder=HashEmbedder())


async def test_with_tokens_every_page_needs_sign_in_and_the_token_decides(
    settings: Settings, browser: Browser, tmp_path: Path
) -> None:
    await _seed(settings, "alice", "alice note")
    await _seed(settings, "bob", "bob secret plan")
    secret = issue_token(settings.data_dir, users=["alice"], scopes=["read", "write"])
    async with browser(users=()) as client:
        first = await client.get("/")
        assert first.status_code == 303 and first.headers["location"] == "/login"
        login = (await client.get("/login")).text
        bad = await client.post("/login", data={"csrf": _csrf(login), "token": "eng_wrong"})
        assert bad.status_code == 401 and "not valid" in bad.text
        good = await client.post("/login", data={"csrf": _csrf(login), "token": secret})
        assert good.status_code == 303
        page = (await client.get("/")).text
        assert "alice note" in page and "bob secret" not in page
        assert 'class="tiers"' not in page  # the server-wide counts are for the operator and admin tokens
        refused = await client.get("/", params={"user": "bob"})
        assert refused.status_code == 403 and "bob secret" not in refused.text
        await client.post("/logout", data={"csrf": _csrf(page)})
        assert (await client.get("/")).status_code == 303


async def test_working_memory_knowledge_and_an_agents_private_memories(settings: Settings, browser: Browser) -> None:
    from engram.core.knowledge_models import DocumentFormat
    from engram.core.models import Visibility

    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        await memory.remember("alice", "the turn said in chat one", session_id="chat-1")
        await memory.remember("alice", "planner's own private note", agent_id="planner", visibility=Visibility.PRIVATE)
        assert memory.knowledge is not None
        await memory.knowledge.ingest_text(
            None,
            "handbook",
            "# Vacation\n\nEvery employee gets twenty days of vacation.",
            DocumentFormat.MARKDOWN,
        )
    finally:
        memory.close()
    async with browser() as client:
        page = (await client.get("/", params={"tier": "working", "session": "chat-1"})).text
        assert "Working memory" in page and "the turn said in chat one" in page
        assert "give a session id" in (await client.get("/", params={"tier": "working"})).text
        page = (await client.get("/", params={"tier": "knowledge", "query": "vacation days"})).text
        assert "twenty days of vacation" in page and "handbook" in page
        assert "private note" not in (await client.get("/")).text
        assert "private note" in (await client.get("/", params={"agent": "planner"})).text


async def test_signing_in_gives_the_browser_a_new_session_so_a_planted_one_gets_nothing(
    settings: Settings, browser: Browser
) -> None:
    await _seed(settings, "alice", "alice note")
    secret = issue_token(settings.data_dir, users=["alice"], scopes=["read"])
    async with browser(users=()) as victim:
        login = (await victim.get("/login")).text
        (cookie,) = victim.cookies.jar
        planted = cookie.value  # the id an attacker could have planted before the victim signs in
        assert (await victim.post("/login", data={"csrf": _csrf(login), "token": secret})).status_code == 303
        assert "alice note" in (await victim.get("/")).text
        assert next(iter(victim.cookies.jar)).value != planted
        victim.cookies.clear()
        victim.cookies.set(cookie.name, planted, domain=cookie.domain)
        assert (await victim.get("/")).status_code == 303  # back to sign-in: the planted id was never signed in


async def test_the_session_cookie_is_secure_behind_https_and_never_readable_by_script(
    settings: Settings, browser: Browser
) -> None:
    async with browser() as client:
        cookie = (await client.get("/")).headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    async with browser(public_url="https://memory.example.com") as client:
        cookie = (await client.get("/")).headers["set-cookie"].lower()
        assert "httponly" in cookie and "; secure" in cookie


async def test_the_project_filter_and_every_project_by_default(settings: Settings, browser: Browser) -> None:
    memory = open_memory(settings, HashEmbedder(), clock=stepping_clock)
    try:
        alpha = (await memory.remember("alice", "the alpha build uses make", project="alpha")).id
        await memory.remember("alice", "beta deploys on fridays", project="beta")
        await memory.remember("alice", "likes short answers")
    finally:
        memory.close()
    async with browser() as client:
        page = (await client.get("/")).text
        assert "alpha build" in page and "beta deploys" in page and "likes short answers" in page
        page = (await client.get("/", params={"project": "alpha"})).text
        assert _memory_ids(page) == [alpha]
        page = (await client.get("/", params={"project": "alpha", "query": "build"})).text
        assert _memory_ids(page) == [alpha]
        assert ">alpha<" in (await client.get(f"/memory/{alpha}")).text
