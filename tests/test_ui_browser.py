"""The memory browser in a real headless Chromium (Debian's, driven by Selenium): load, search, edit, forget.

The set-up installs Debian's `chromium` and `chromium-driver` when they are missing, as CI on a clean machine must.
The screenshot the test takes of the search page is the one in the README (docs/memory-browser.png): with
`ENGRAM_UPDATE_SCREENSHOT=1` the test writes it there; otherwise into its temporary directory, so a test run
leaves the checkout clean.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from engram.config import Settings
from engram.embeddings.hashing import HashEmbedder
from engram.runtime import open_memory
from tests.http_server import START_TIMEOUT_S, engram_command, free_port

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
README_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "memory-browser.png"
#: Longest a page may take to appear in the browser on a loaded machine (a ceiling, not a measurement).
PAGE_TIMEOUT_S = 60

MEMORIES = [
    ("Prefers green tea in the morning, never coffee after 2 pm.", ["drinks"], "preference", None),
    ("The staging database is on the db-staging host; backups run nightly at 02:00.", ["infra"], "work", "shop-api"),
    ("Allergic to peanuts: check every recipe suggestion.", ["health"], "health", None),
    ("Walks the dog, Miso, every day at noon.", ["pets"], "routine", None),
    ("Wants the quarterly report as a PDF, with charts first.", ["reports"], "work", "finance"),
]


@pytest.fixture(scope="module")
def chromium() -> None:
    """Debian's Chromium and its driver, installed now if missing (CI starts from a clean machine)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if shutil.which("apt-get") is None:
            pytest.fail("Chromium is missing and apt-get is not available to install it")
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
        ):
            done = subprocess.run(
                command, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            )
            if done.returncode != 0:
                pytest.fail(f"{' '.join(command)} failed: {done.stderr[-2000:]}")


def _seed(data_dir: Path) -> None:
    import anyio

    memory = open_memory(Settings(data_dir=data_dir, embedding_model="hash"), HashEmbedder())
    try:

        async def store() -> None:
            for content, tags, category, project in MEMORIES:
                stored = await memory.remember("alice", content, tags=tags, project=project)
                await memory.update_memory("alice", stored.id, category=category)

        anyio.run(store)
    finally:
        memory.close()


@pytest.fixture
def ui_server(tmp_path: Path) -> Iterator[str]:
    """A real `engram ui` process on a free loopback port, over a data directory holding MEMORIES."""
    data_dir = tmp_path / "data"
    _seed(data_dir)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENGRAM_")}
    env |= {"ENGRAM_DATA_DIR": str(data_dir), "ENGRAM_EMBEDDING_MODEL": "hash", "ENGRAM_DEFAULT_USER": "alice"}
    log_path = tmp_path / "ui.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*engram_command(), "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"engram ui exited with {process.returncode}: {log_path.read_text()}")
            try:
                if httpx2.get(base + "/", timeout=2.0).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"engram ui did not answer within {START_TIMEOUT_S} s: {log_path.read_text()}")
            time.sleep(0.2)  # polling for the port to open, not timing anything
        yield base
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def driver(chromium: None) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(PAGE_TIMEOUT_S)
    try:
        yield browser
    finally:
        browser.quit()


def test_load_search_edit_and_forget_in_chromium(ui_server: str, driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(driver, PAGE_TIMEOUT_S)
    driver.get(ui_server + "/")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.memories a.memory")
    assert len(rows) == len(MEMORIES)

    box = driver.find_element(By.NAME, "query")
    box.send_keys("green tea in the morning")
    Select(driver.find_element(By.NAME, "tier")).select_by_value("long_term")
    driver.find_element(By.CSS_SELECTOR, "form.search button[type=submit]").click()
    wait.until(shown.url_contains("query="))
    first = driver.find_element(By.CSS_SELECTOR, "table.memories a.memory")
    assert first.text.startswith("Prefers green tea")
    screenshot = README_SCREENSHOT if os.environ.get("ENGRAM_UPDATE_SCREENSHOT") == "1" else tmp_path / "page.png"
    assert driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 0

    first.click()
    wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, "blockquote.content")))
    content = driver.find_element(By.NAME, "content")
    content.clear()
    content.send_keys("Prefers jasmine tea in the morning, never coffee after 2 pm.")
    driver.find_element(By.CSS_SELECTOR, "form.edit button[type=submit]").click()
    wait.until(shown.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Memory updated."))
    assert "jasmine tea" in driver.find_element(By.CSS_SELECTOR, "blockquote.content").text

    driver.find_element(By.CSS_SELECTOR, "form[action$='/forget'] button").click()
    wait.until(shown.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Memory forgotten."))
    listed = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "table.memories a.memory")]
    assert len(listed) == len(MEMORIES) - 1 and not any("jasmine" in text for text in listed)
