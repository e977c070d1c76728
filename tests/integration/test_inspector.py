"""A third-party MCP client, MCP Inspector's CLI (npm), lists the tools of `inbox-mcp serve` and
calls one. scripts/test.sh installs it into .cache/inspector."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import BIN, REPO, Home

INSPECTOR = REPO / ".cache" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"


def _inspector(home: Home, key: str, *method: str) -> dict:
    assert INSPECTOR.exists(), "MCP Inspector is not installed: run scripts/test.sh (it installs it)"
    env = {**{k: v for k, v in home.env.items() if k.startswith("INBOX_MCP_")}, "INBOX_MCP_API_KEY": key}
    env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
    proc = subprocess.run(
        [str(INSPECTOR), "--cli", *env_args, str(BIN), "serve", *method],
        capture_output=True, text=True, timeout=120, cwd=INSPECTOR.parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_inspector_lists_tools_and_calls_one(home: Home, tmp_path: Path) -> None:
    key = home.create_agent("inspected")
    listed = _inspector(home, key, "--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert {"provision_inbox", "send_message", "search", "wait_for_message", "extract_verification"} <= names
    called = _inspector(home, key, "--method", "tools/call", "--tool-name", "provision_inbox", "--tool-arg", "username=viainspector")
    assert called["isError"] is False
    assert called["structuredContent"]["address"] == "viainspector@agents.test"
    failed = _inspector(home, key, "--method", "tools/call", "--tool-name", "read_message", "--tool-arg", "message_id=msg_missing")
    assert failed["isError"] is True
    assert failed["content"][0]["text"].startswith("not_found:")
