"""`python -m engram` runs the CLI; a hook event goes first to the running hook daemon, without loading the CLI."""

import sys

from engram.hooks.client import fast_main

handled = fast_main(sys.argv[1:])
if handled is not None:
    sys.exit(handled)

from engram.cli import main  # noqa: E402  (only when the fast path could not answer)

main()
