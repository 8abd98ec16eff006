"""`python -m engram` runs the CLI."""

from engram.cli import main

main()
