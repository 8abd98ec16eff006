"""Small helpers for tests: the fixed clock, and reading MCP results."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from mcp.types import CallToolResult, TextContent

#: The time every test's memory runs at: what a test checks must never depend on the day it runs (the date is part of
#: the indexed text, so with the hash embedder it moves rankings). ENGRAM_TEST_NOW moves it, to check exactly that.
TEST_NOW = datetime.fromisoformat(os.environ.get("ENGRAM_TEST_NOW", "2025-03-14T09:26:53+00:00"))


def fixed_clock() -> datetime:
    """The tests' clock: always TEST_NOW."""
    return TEST_NOW


def text(result: CallToolResult) -> str:
    """The text of a tool result's first content block."""
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a successful tool result (fails the test on a tool error)."""
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> str:
    """The message of a failed tool result (fails the test if the call succeeded)."""
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    return text(result)
