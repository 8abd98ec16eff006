"""Portability: `engram export` and `engram import` (Engram's JSONL, and Claude and ChatGPT conversation exports)."""
