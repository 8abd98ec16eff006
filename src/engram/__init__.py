"""Engram: persistent, layered memory for MCP assistants."""

__version__ = "0.1.0"
