"""The `forget_user` tool: erase everything Engram holds about a user, after explicit confirmation."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import AcceptedElicitation, Context, Elicit, ElicitationResult, Resolve
from pydantic import BaseModel, Field

from engram.core.errors import EngramError
from engram.core.models import ForgetReceipt
from engram.tools._fields import UserIdArg
from engram.tools.state import AppState, caller, domain_errors, memory_of


class EraseConfirmation(BaseModel):
    """The form shown to the user by clients that support elicitation."""

    erase: bool = Field(description="Yes, erase every memory of this user. This cannot be undone.")


async def approve_forget(
    user_id: str | None, confirm: bool, ctx: Context[AppState]
) -> EraseConfirmation | Elicit[EraseConfirmation]:
    """Approve from `confirm=true`, else ask the user through the client when it can show a form."""
    try:
        who = caller(user_id, access="write")
    except EngramError:
        # Never ask a human to approve what the request may not do; the tool body reports why.
        return EraseConfirmation(erase=False)
    if confirm:
        return EraseConfirmation(erase=True)
    capabilities = ctx.client_capabilities
    if capabilities is not None and capabilities.elicitation is not None:
        return Elicit(
            f"Erase every memory Engram holds for user '{who.user_id}'? This cannot be undone.", EraseConfirmation
        )
    return EraseConfirmation(erase=False)


async def forget_user(
    ctx: Context[AppState],
    approval: Annotated[ElicitationResult[EraseConfirmation], Resolve(approve_forget)],
    user_id: UserIdArg = None,
    confirm: Annotated[
        bool, Field(description="Must be true: you confirm the user asked to erase all of their memories.")
    ] = False,
) -> ForgetReceipt:
    """Permanently erase everything remembered about a user: working, short-term and long-term memory.

    Call this only when the user explicitly asks to be forgotten or to delete all their data. It cannot be
    undone. Pass confirm=true; clients that can show a confirmation form may ask the user instead.
    """
    with domain_errors():
        who = caller(user_id, access="write")
    approved = isinstance(approval, AcceptedElicitation) and approval.data.erase
    memory = await memory_of(ctx)
    with domain_errors():
        return await memory.forget_user(who.user_id, confirm=approved)
