"""Every send path × every rule kind, through the real MCP client over stdio.

One server runs the whole table: the agent's policy override is rewritten between cases, which
also proves that policy changes apply without a restart. The paths are send_message, reply,
forward, send_draft, and a held message approved by an operator with the CLI.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, Home, call, stdio_client

SECRET = "AKIAIOSFODNN7EXAMPLE"
HOLD_WORD = "HOLD-FOR-REVIEW"


@dataclass(frozen=True)
class Rule:
    name: str
    policy: str  # policies/agents/alice.toml for this case
    text: str  # body the agent sends
    expect: str  # "sent" | "pending_approval" | an error code
    rule_named: str = ""  # what the error must name
    approve_expect: str = ""  # for the approved-hold path, when it differs from expect


HOLD = f'[content]\nhold_patterns = ["{HOLD_WORD}"]\n'
# At hold time no content rule but the hold pattern applies, so that each rule under test meets
# the held message only when the operator approves it.
HOLD_ONLY = f'[content]\ndetectors = []\nhold_patterns = ["{HOLD_WORD}"]\n'
RULES = [
    Rule("allowed", "", "hello", "sent"),
    Rule("recipients.allow", '[recipients]\nallow = ["*@elsewhere.test"]\n', "hi", "policy_denied", "recipients.allow"),
    Rule("recipients.block", '[recipients]\nblock = ["bob@agents.test", "carol@agents.test"]\n', "hi", "policy_denied", "recipients.block"),
    Rule("caps.max_message_bytes", "[caps]\nmax_message_bytes = 1024\n", "x" * 3000, "quota_exceeded", "caps.max_message_bytes"),
    Rule("caps.per_minute", "[caps.unverified]\nper_minute = 0\nper_hour = 100\nper_day = 100\n", "hi", "rate_limited", "caps.unverified.per_minute"),
    Rule("caps.per_day", "[caps.unverified]\nper_minute = 100\nper_hour = 100\nper_day = 0\n", "hi", "quota_exceeded", "caps.unverified.per_day"),
    Rule("content.detector", "", f"my key is {SECRET} ok", "policy_denied", "aws_key"),
    Rule("content.block_pattern", '[content]\nblock_patterns = ["(?i)wire\\\\s+transfer"]\n', "please WIRE  transfer now", "policy_denied", "content.block_patterns[0]"),
    Rule("content.hold_pattern", HOLD, f"please {HOLD_WORD}", "pending_approval", "content.hold_patterns[0]", "sent"),
    Rule("policy.invalid", "[caps]\nmax_recipents = 3\n", "hi", "policy_denied", "caps.max_recipents"),
]


def write_policy(policy_dir: Path, text: str) -> None:
    """Replace the agent's override atomically, as a careful operator (or editor) would."""
    target = policy_dir / "agents" / "alice.toml"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


def roomy_default(policy_dir: Path) -> None:
    text = (REPO / "policies" / "default.toml").read_text()
    text = text.replace("per_minute = 5\n", "per_minute = 500\n").replace("per_hour = 10\n", "per_hour = 500\n")
    text = text.replace("per_day = 10\n", "per_day = 500\n").replace("sends_per_10_minutes = 50", "sends_per_10_minutes = 5000")
    text = text.replace("new_per_hour = 3", "new_per_hour = 100").replace("new_per_day = 5", "new_per_day = 100")
    text = text.replace("new_per_week = 10", "new_per_week = 100").replace("duplicate_window_minutes = 10", "duplicate_window_minutes = 0")
    (policy_dir / "default.toml").write_text(text)
    (policy_dir / "agents").mkdir()
    (policy_dir / "tenants").mkdir()


def bob_count(home: Home) -> int:
    db = sqlite3.connect(home.path / "inbox.db")
    try:
        return db.execute(
            "SELECT count(*) FROM message m JOIN inbox i ON i.id = m.inbox_id WHERE i.address IN ('bob@agents.test','carol@agents.test') AND m.direction = 'in'"
        ).fetchone()[0]
    finally:
        db.close()


@pytest.mark.anyio
async def test_every_path_enforces_every_rule(home: Home, tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    roomy_default(policy_dir)
    home.env["INBOX_MCP_POLICY_DIR"] = str(policy_dir)
    alice_key, bob_key = home.create_agent("alice"), home.create_agent("bob")
    home.create_agent("carol")
    async with stdio_client(home, bob_key) as bob, stdio_client(home, alice_key) as alice:
        a_inbox = await call(alice, "provision_inbox", username="alice")
        await call(bob, "provision_inbox", username="bob")
        # carol's inbox exists so forwards have a local destination
        home_carol = await _provision_carol(home)
        assert home_carol == "carol@agents.test"
        b_inbox = (await call(bob, "list_inboxes"))["inboxes"][0]
        await call(bob, "send_message", inbox_id=b_inbox["inbox_id"], to=["alice@agents.test"], subject="question", text="can you help?")
        incoming = (await call(alice, "search", query="subject:question"))["messages"][0]["message_id"]

        async def via_send(text: str, n: int) -> object:
            return await alice.call_tool("send_message", {"inbox_id": a_inbox["inbox_id"], "to": ["bob@agents.test"], "subject": f"s{n}", "text": text})

        async def via_reply(text: str, n: int) -> object:
            return await alice.call_tool("reply", {"message_id": incoming, "text": f"{text} #{n}"})

        async def via_forward(text: str, n: int) -> object:
            return await alice.call_tool("forward", {"message_id": incoming, "to": ["carol@agents.test"], "text": f"{text} #{n}"})

        async def via_draft(text: str, n: int) -> object:
            d = await call(alice, "create_draft", inbox_id=a_inbox["inbox_id"], to=["bob@agents.test"], subject=f"d{n}", text=text)
            return await alice.call_tool("send_draft", {"draft_id": d["draft_id"]})

        paths: dict[str, Callable[[str, int], Awaitable[object]]] = {
            "send_message": via_send, "reply": via_reply, "forward": via_forward, "send_draft": via_draft,
        }
        n = 0
        failures: list[str] = []
        for rule in RULES:
            for path_name, path in paths.items():
                n += 1
                write_policy(policy_dir, rule.policy)
                before = bob_count(home)
                # Size-limited cases need the big body on the path's own text.
                r = await path(rule.text, n)
                outcome = _outcome(r)
                delivered = bob_count(home) - before
                ok = outcome["status"] == rule.expect and (rule.rule_named in outcome["text"])
                ok = ok and delivered == (1 if rule.expect == "sent" else 0)
                if rule.expect not in ("sent", "pending_approval") and SECRET in outcome["text"]:
                    ok = False
                if not ok:
                    failures.append(f"{path_name} × {rule.name}: got {outcome} delivered={delivered}")

            # The approved-hold path: hold under a hold pattern, then change the policy to the rule
            # under test and approve; the rule (not the hold) decides whether it goes out.
            n += 1
            write_policy(policy_dir, HOLD_ONLY)
            held = await call(alice, "send_message", inbox_id=a_inbox["inbox_id"], to=["bob@agents.test"], subject=f"h{n}", text=f"{HOLD_WORD} {rule.text}")
            if held["status"] != "pending_approval":
                failures.append(f"approved-hold × {rule.name}: not held: {held}")
                continue
            write_policy(policy_dir, rule.policy)
            before = bob_count(home)
            proc = home.cli("approvals", "approve", held["approval_id"], check=False)
            want = rule.approve_expect or rule.expect
            delivered = bob_count(home) - before
            if want in ("sent", "pending_approval"):
                good = proc.returncode == 0 and delivered == 1
            else:
                good = proc.returncode != 0 and proc.stderr.startswith(f"{want}:") and delivered == 0
            state = await call(alice, "get_approval", approval_id=held["approval_id"])
            good = good and state["status"] == ("approved" if want == "sent" else "pending")
            if not good:
                failures.append(f"approved-hold × {rule.name}: rc={proc.returncode} err={proc.stderr.strip()} delivered={delivered} state={state['status']}")
            if state["status"] == "pending":
                home.cli("approvals", "reject", held["approval_id"], "--reason", "test over")
        assert not failures, "\n".join(failures)


async def _provision_carol(home: Home) -> str:
    key = json.loads(home.cli("agents", "create", "carol2", "--json").stdout)["api_key"]
    async with stdio_client(home, key) as carol:
        return (await call(carol, "provision_inbox", username="carol"))["address"]


def _outcome(r: object) -> dict[str, str]:
    if r.is_error:  # type: ignore[attr-defined]
        text = r.content[0].text  # type: ignore[attr-defined]
        return {"status": text.split(":", 1)[0], "text": text}
    data = r.structured_content  # type: ignore[attr-defined]
    return {"status": data["status"], "text": json.dumps(data)}
