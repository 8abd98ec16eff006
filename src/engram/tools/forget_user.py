"""The `forget_user` tool: erase everything Engram holds about a user, after explicit confirmation."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from engram.core.errors import EngramError
from engram.core.models import ForgetReceipt
from engram.tools._fields import UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


class EraseConfirmation(BaseModel):
    """The form shown to the user by clients that support elicitation."""

    erase: bool = Field(description="Yes, erase every memory of this user. This cannot be undone.")


#: The answer when the person declined, cancelled or left the box unticked. It must not mention `confirm`: the
#: model would take it as the way around the person's answer.
NOT_APPROVED = (
    "The user did not approve erasing their memories when asked, so nothing was erased. "
    "Do not try again unless the user asks for it again."
)


def _can_ask(ctx: Context[AppState]) -> bool:
    capabilities = ctx.client_capabilities
    return capabilities is not None and capabilities.elicitation is not None


async def approve_forget(
    user_id: str | None, confirm: bool, ctx: Context[AppState]
) -> EraseConfirmation | Elicit[EraseConfirmation]:
    """Ask the person through the client's form when it can show one; only otherwise does `confirm=true` approve."""
    try:
        who = caller(user_id, access="write")
    except EngramError:
        # Never ask a human to approve what the request may not do; the tool body reports why.
        return EraseConfirmation(erase=False)
    if _can_ask(ctx):
        # The model's `confirm` is not the person's answer: a client that can ask always asks.
        return Elicit(
            f"Erase every memory Engram holds for user '{who.user_id}'? This cannot be undone.", EraseConfirmation
        )
    return EraseConfirmation(erase=confirm)


async def forget_user(
    ctx: Context[AppState],
    approval: Annotated[ElicitationResult[EraseConfirmation], Resolve(approve_forget)],
    user_id: UserIdArg = None,
    confirm: Annotated[
        bool,
        Field(
            description="Must be true: you confirm the user asked to erase all of their memories. Where the client "
            "can show a confirmation form, the user is asked there instead and their answer decides."
        ),
    ] = False,
) -> ForgetReceipt:
    """Permanently erase everything remembered about the user, only when they explicitly ask.

    Pass confirm=true; a client that can show a confirmation form asks the user, whose answer decides. Cannot be
    undone.
    """
    with domain_errors():
        who = caller(user_id, access="write")
    approved = isinstance(approval, AcceptedElicitation) and approval.data.erase
    if not approved and _can_ask(ctx):
        raise ToolError(NOT_APPROVED)
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.forget_user(who.user_id, confirm=approved)
