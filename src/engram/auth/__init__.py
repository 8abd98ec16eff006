"""Who may use a remote Engram: bearer tokens (operator-issued or JWT) and the principal each one carries."""
