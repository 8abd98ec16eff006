"""`engram forget-project`: erase one project of a user from the command line."""

from __future__ import annotations

import click


@click.command("forget-project")
@click.argument("user_id")
@click.argument("project")
@click.option("--yes", is_flag=True, help="Confirm: erase every memory of PROJECT of USER_ID.")
def forget_project(user_id: str, project: str, yes: bool) -> None:
    """Erase USER_ID's memories of PROJECT (and their session turns); global memories and other projects stay."""
    from engram.cli import _configure_logging, _echo_json, _settings, _with_memory

    if not yes:
        click.confirm(f"Erase every memory of project {project!r} of {user_id!r}? This cannot be undone", abort=True)
    settings = _settings()
    _configure_logging("WARNING")
    receipt = _with_memory(settings, lambda m: m.forget_project(user_id, project, confirm=True))
    _echo_json(receipt.model_dump(mode="json"))
