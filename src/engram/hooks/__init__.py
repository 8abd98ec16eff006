"""Hooks: capture conversation turns and inject remembered context from inside an assistant (`engram hook`)."""
