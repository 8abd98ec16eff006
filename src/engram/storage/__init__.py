"""Storage engines behind the core's ports: LanceDB for long-term memory, diskcache for sessions."""
