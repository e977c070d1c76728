"""The command line as a user meets it: init, agents, db upgrade, the stdio key check, and the
README's quick-start command starting a working server."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    Home,
    call,
    free_port,
    http_client,
    stdio_client,
    wait_port,
)


@pytest.mark.anyio
async def test_init_prints_a_key_that_works(tmp_path: Path) -> None:
    home = Home(tmp_path / "fresh")
    out = home.cli("init", "--domain", "example.test").stdout
    key = re.search(r"Agent key:\s+(imk_\S+)", out).group(1)  # type: ignore[union-attr]
    assert '"mcpServers"' in out and "/mcp" in out and "Bearer" in out
    configs = out.split("MCP client config (stdio):\n", 1)[1]
    stdio_cfg = json.loads(configs.split("MCP client config (HTTP):\n")[0])
    assert stdio_cfg["mcpServers"]["inbox"]["env"]["INBOX_MCP_API_KEY"] == key
    # init is idempotent and never reveals the key again
    again = home.cli("init").stdout
    assert "already initialised" in again and key not in again
    async with stdio_client(home, key, {"INBOX_MCP_DOMAIN": "example.test"}) as client:
        inbox = await call(client, "provision_inbox", username="first")
        assert inbox["address"] == "first@example.test"
    db = home.path / "inbox.db"
    assert key not in db.read_bytes().decode("latin-1"), "the key must be stored only as a hash"


def test_stdio_without_a_valid_key_exits_with_unauthenticated(home: Home) -> None:
    for env in ({}, {"INBOX_MCP_API_KEY": "imk_0000_nope"}):
        proc = home.cli("serve", check=False, env=env)
        assert proc.returncode != 0
        assert "unauthenticated:" in proc.stderr


def test_agents_commands_and_errors(home: Home) -> None:
    home.create_agent("ops", tenant="acme")
    listed = json.loads(home.cli("agents", "list", "--json").stdout)
    assert [(a["name"], a["tenant"], a["verified"], a["paused"]) for a in listed] == [("ops", "acme", False, False)]
    home.cli("agents", "verify", "ops")
    home.cli("agents", "pause", "ops")
    assert json.loads(home.cli("agents", "list", "--json").stdout)[0]["paused"] is True
    home.cli("agents", "resume", "ops")
    row = json.loads(home.cli("agents", "list", "--json").stdout)[0]
    assert row["verified"] is True and row["paused"] is False
    dup = home.cli("agents", "create", "ops", check=False)
    assert dup.returncode != 0 and dup.stderr.startswith("conflict:")
    missing = home.cli("agents", "pause", "ghost", check=False)
    assert missing.returncode != 0 and missing.stderr.startswith("not_found:")
    bad = home.cli("agents", "create", "Bad Name!", check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("invalid_argument:")


def test_db_upgrade_is_idempotent(home: Home) -> None:
    first = home.cli("db", "upgrade")
    second = home.cli("db", "upgrade")
    assert "newest schema" in first.stdout and "newest schema" in second.stdout


@pytest.mark.anyio
async def test_quick_start_command_serves_mcp(tmp_path: Path) -> None:
    """README's first set-up command: installs (already installed here: a no-op pip run) and
    serves HTTP on the embedded default, printing the key and client configs."""
    home = Home(tmp_path / "qs")
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        ["bash", str(REPO / "scripts" / "serve.sh"), "--port", str(port)],
        env=home.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )
    try:
        wait_port(port, timeout=180)
        text = (tmp_path / "serve.log").read_text()
        key = re.search(r"Agent key:\s+(imk_\S+)", text).group(1)  # type: ignore[union-attr]
        async with http_client(f"http://127.0.0.1:{port}/mcp", key) as client:
            inbox = await call(client, "provision_inbox", username="quick")
            assert inbox["address"] == "quick@agents.test"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
