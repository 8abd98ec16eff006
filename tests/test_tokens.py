"""Operator tokens: only hashes on disk, owner-only file, revocation, expiry, ENGRAM_TOKENS, and `engram token`."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from engram.auth.tokens import SECRET_PREFIX, TokenFile, TokenRecord, hash_secret, match, parse_env_tokens
from engram.cli import cli
from engram.core.errors import InvalidInput

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def test_created_token_is_stored_as_a_hash_only_in_an_owner_only_file(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "data" / "tokens.json")
    record, secret = tokens.create(users=["alice"], scopes=["write", "read"], agent="desk", name="laptop")
    assert secret.startswith(SECRET_PREFIX) and len(secret) > 40
    text = tokens.path.read_text()
    assert secret not in text
    assert secret[len(SECRET_PREFIX) :] not in text
    assert record.hash == hash_secret(secret) and record.hash in text
    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.path.parent.stat().st_mode) == 0o700
    (stored,) = tokens.read()
    assert (stored.users, stored.scopes, stored.agent, stored.name) == (["alice"], ["read", "write"], "desk", "laptop")


def test_every_token_is_different_and_matches_only_itself(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    issued = [tokens.create(users=[f"u{i}"], scopes=["read"]) for i in range(5)]
    assert len({secret for _, secret in issued}) == 5
    records = tokens.read()
    for record, secret in issued:
        found = match(records, secret, NOW)
        assert found is not None and found.id == record.id
    assert match(records, issued[0][1] + "x", NOW) is None
    assert match(records, "", NOW) is None


def test_revoke_removes_the_token_and_the_running_view_follows(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    _, kept_secret = tokens.create(users=["a"], scopes=["read"])
    gone, gone_secret = tokens.create(users=["b"], scopes=["read"])
    live = TokenFile(tokens.path)  # what a running server holds
    assert match(live.current(), gone_secret, NOW) is not None
    assert tokens.revoke(gone.id) is True
    assert tokens.revoke(gone.id) is False
    assert match(live.current(), gone_secret, NOW) is None
    assert match(live.current(), kept_secret, NOW) is not None


def test_expired_tokens_are_refused(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    _, secret = tokens.create(users=["a"], scopes=["read"], expires_at=NOW + timedelta(hours=1))
    assert match(tokens.read(), secret, NOW) is not None
    assert match(tokens.read(), secret, NOW + timedelta(hours=2)) is None


def test_a_malformed_file_fails_closed_while_serving_and_loudly_at_start(tmp_path: Path) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    _, secret = tokens.create(users=["a"], scopes=["read"])
    assert match(tokens.current(), secret, NOW) is not None
    tokens.path.write_text("{not json")
    assert tokens.current() == []
    with pytest.raises(InvalidInput, match="malformed"):
        tokens.read()


@pytest.mark.parametrize(
    ("users", "scopes", "problem"),
    [
        ([], ["read"], "at least one user"),
        (["x' OR '1'='1"], ["read"], "pattern"),
        (["a"], ["root"], "read"),
        (["a"], [], "at least 1"),
    ],
)
def test_bad_tokens_are_refused_at_creation(tmp_path: Path, users: list[str], scopes: list[str], problem: str) -> None:
    tokens = TokenFile(tmp_path / "tokens.json")
    with pytest.raises(InvalidInput, match=problem):
        tokens.create(users=users, scopes=scopes)
    assert tokens.read() == []


def test_env_tokens_hold_hashes_and_are_validated() -> None:
    record = {"id": "ci", "hash": hash_secret("egm_secret"), "users": ["bot"], "scopes": ["read"]}
    (parsed,) = parse_env_tokens(json.dumps([record]))
    assert parsed == TokenRecord.model_validate(record)
    assert parse_env_tokens("") == []
    with pytest.raises(InvalidInput, match="ENGRAM_TOKENS"):
        parse_env_tokens(json.dumps([{**record, "hash": "egm_secret"}]))  # a secret instead of its hash


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"ENGRAM_DATA_DIR": str(tmp_path / "data")}
    created = runner.invoke(
        cli, ["token", "create", "--user", "alice", "--agent", "desk", "--scope", "read", "--name", "laptop"], env=env
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith(SECRET_PREFIX)
    listed = runner.invoke(cli, ["token", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert entry["users"] == ["alice"] and entry["agent"] == "desk" and entry["source"] == "file"
    assert "hash" not in entry and secret not in listed.stdout
    plain = runner.invoke(cli, ["token", "list"], env=env)
    assert entry["id"] in plain.stdout and secret not in plain.stdout
    revoked = runner.invoke(cli, ["token", "revoke", entry["id"]], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(runner.invoke(cli, ["token", "list", "--json"], env=env).stdout) == []
    again = runner.invoke(cli, ["token", "revoke", entry["id"]], env=env)
    assert again.exit_code != 0 and "no token" in again.output


def test_cli_refuses_a_token_bound_to_nobody(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["token", "create", "--scope", "read"], env={"ENGRAM_DATA_DIR": str(tmp_path / "data")}
    )
    assert result.exit_code != 0
    assert "at least one user" in result.output


def test_cli_serve_rejects_host_on_stdio() -> None:
    result = CliRunner().invoke(cli, ["serve", "--port", "9000"])
    assert result.exit_code != 0
    assert "HTTP transports" in result.output
