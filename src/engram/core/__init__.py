"""Transport-free core: memory semantics, independent of MCP and of the storage engines' APIs."""
