"""The SessionStore contract, in domain terms: what any back end of working and short-term memory must do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engram.core.models import Role, Turn, Visibility
from engram.core.ports import SessionStore

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
ALICE, BOB = "k-alice", "k-bob"


def turn(n: int, role: Role = Role.USER, **fields: object) -> Turn:
    return Turn.model_validate(
        {"memory_id": f"m{n}", "seq": 99, "role": role, "content": f"turn {n}", "created_at": T0, **fields}
    )


def ids(turns: list[Turn] | None) -> list[str]:
    return [t.memory_id for t in turns or []]


def test_turns_get_their_positions_and_a_retry_is_not_appended_again(sessions: SessionStore) -> None:
    first = sessions.append_turn(ALICE, "s", turn(0), T0)
    second = sessions.append_turn(ALICE, "s", turn(1, Role.ASSISTANT), T0)
    assert (first.seq, first.previous) == (0, None)
    assert second.seq == 1 and second.previous is not None and second.previous.memory_id == "m0"
    retried = sessions.append_turn(ALICE, "s", turn(1, Role.ASSISTANT), T0)
    assert retried.seq == 1 and ids(sessions.transcript(ALICE, "s")) == ["m0", "m1"]
    again = sessions.append_turn(ALICE, "s", turn(1, Role.USER), T0)  # another speaker saying it is a new turn
    assert again.seq == 2


def test_working_memory_keeps_the_latest_turns_and_short_term_the_transcript(sessions: SessionStore) -> None:
    for n in range(7):
        sessions.append_turn(ALICE, "s", turn(n, Role.USER if n % 2 == 0 else Role.ASSISTANT), T0)
    assert ids(sessions.working(ALICE, "s")) == ["m4", "m5", "m6"]
    assert ids(sessions.transcript(ALICE, "s")) == ["m2", "m3", "m4", "m5", "m6"]
    assert sessions.transcript(ALICE, "unknown") is None and sessions.working(ALICE, "unknown") == []


def test_a_summary_replaces_the_older_working_turns(sessions: SessionStore) -> None:
    for n in range(3):
        sessions.append_turn(ALICE, "s", turn(n, Role.USER if n % 2 == 0 else Role.ASSISTANT), T0)
    summary = Turn(memory_id="sum", seq=2, role=None, content="summary", created_at=T0, is_summary=True)
    assert sessions.apply_summary(ALICE, "s", summary, keep_from_seq=2, now=T0) == 2
    assert ids(sessions.working(ALICE, "s")) == ["sum", "m2"]
    assert sessions.summarized_until(ALICE, "s") == 2
    assert ids(sessions.transcript(ALICE, "s")) == ["m0", "m1", "m2"]  # the transcript stays verbatim
    assert sessions.remove_memory(ALICE, "sum") == 1
    assert ids(sessions.working(ALICE, "s")) == ["m2"]


def test_a_forgotten_memory_leaves_every_session(sessions: SessionStore) -> None:
    sessions.append_turn(ALICE, "a", turn(0), T0)
    sessions.append_turn(ALICE, "a", turn(1, Role.ASSISTANT), T0)
    sessions.append_turn(ALICE, "b", turn(1), T0)
    assert sessions.remove_memory(ALICE, "m1") == 2
    assert ids(sessions.transcript(ALICE, "a")) == ["m0"] and ids(sessions.working(ALICE, "b")) == []
    assert sessions.remove_memory(ALICE, "m1") == 0


def test_sessions_are_listed_most_recent_first_with_their_agents(sessions: SessionStore) -> None:
    sessions.append_turn(ALICE, "old", turn(0, agent_id="planner"), T0)
    sessions.append_turn(ALICE, "new", turn(1, visibility=Visibility.SHARED), T0 + timedelta(hours=1))
    listed = sessions.sessions(ALICE)
    assert [s.session_id for s in listed] == ["new", "old"]
    assert listed[1].agents == ["planner"] and listed[1].turns == 1


def test_users_never_see_each_others_sessions_and_erasure_leaves_no_trace(sessions: SessionStore) -> None:
    sessions.append_turn(ALICE, "s", turn(0), T0)
    sessions.append_turn(BOB, "s", turn(9), T0)
    assert ids(sessions.working(BOB, "s")) == ["m9"] and [s.session_id for s in sessions.sessions(BOB)] == ["s"]
    assert sessions.traces_of(ALICE) != []
    assert sessions.forget_user(ALICE) == (1, 1)
    assert sessions.traces_of(ALICE) == [] and sessions.sessions(ALICE) == []
    assert ids(sessions.transcript(BOB, "s")) == ["m9"]
