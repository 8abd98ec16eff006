"""MCP wiring: the server factory, its resources and prompts, and the transports it runs on."""
