"""Small helpers for reading MCP results in tests."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent


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
