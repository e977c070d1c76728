"""Bad input, end to end: every refusal through the real MCP client starts with the right stable
code and names the problem; afterwards nothing stored has changed and the server still answers.

One server for the whole catalogue (a single long test). A mismatch is recorded rather than
raised, so one run reports every wrong answer instead of stopping at the first.
"""

from __future__ import annotations

import base64
import json
import os
import re
import smtplib
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import REPO, Home, call, stdio_client

pytestmark = pytest.mark.anyio

DOMAIN = "agents.test"
ALICE, ALICE2 = f"alice@{DOMAIN}", f"alice2@{DOMAIN}"
MAX_MESSAGE_BYTES = 20_000
NO_MSG = "msg_00000000000000000000dead"
NO_THR = "thr_00000000000000000000dead"
NO_INB = "inb_00000000000000000000dead"
NO_DRF = "drf_00000000000000000000dead"
NO_ATT = "att_00000000000000000000dead"


def _sub(text: str, pattern: str, repl: str) -> str:
    new, n = re.subn(pattern, repl, text, count=1, flags=re.MULTILINE)
    assert n == 1, f"policies/default.toml no longer has a line matching {pattern!r}"
    return new


def policy_dir(tmp: Path, *, max_message_bytes: int | None = None, inbound_max: int | None = None,
               extra_allow: list[str] | None = None) -> Path:
    """A policy directory whose default.toml is the shipped one with a few values changed."""
    text = (REPO / "policies" / "default.toml").read_text("utf-8")
    sections = re.split(r"(?m)^(?=\[)", text)
    out = []
    for sec in sections:
        header = sec.split("\n", 1)[0].split("#")[0].strip()
        if header == "[caps]" and max_message_bytes is not None:
            sec = _sub(sec, r"^max_message_bytes\s*=.*$", f"max_message_bytes = {max_message_bytes}")
        if header == "[inbound]" and inbound_max is not None:
            sec = _sub(sec, r"^max_message_bytes\s*=.*$", f"max_message_bytes = {inbound_max}")
        if header == "[recipients]" and extra_allow:
            allow = ", ".join(json.dumps(x) for x in ["*@{domain}", *extra_allow])
            sec = _sub(sec, r"^allow\s*=.*$", f"allow = [{allow}]")
        if header == "[approval]":
            # first contact with an external address would be held for approval before routing
            # is even considered; these tests are about what the router says
            sec = re.sub(r"(?m)^hold_first_contact\s*=.*$", "hold_first_contact = false", sec)
        out.append(sec)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "default.toml").write_text("".join(out), "utf-8")
    return tmp


class Findings:
    """Collects mismatches so that one run lists all of them."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(what)

    def assert_none(self) -> None:
        assert not self.problems, f"{len(self.problems)} problem(s):\n- " + "\n- ".join(self.problems)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_bad_input_catalogue(home: Home, tmp_path: Path) -> None:
    pol = policy_dir(tmp_path / "policy", max_message_bytes=MAX_MESSAGE_BYTES, extra_allow=["*@allowed.example"])
    key = home.create_agent("alice")
    att_dir = home.path / "attachments"
    (att_dir / "notes.txt").write_text("notes that may be attached\n")
    (home.path / "outside-secret.txt").write_text("must never be attached\n")
    os.symlink("/etc/passwd", att_dir / "passwd-link")
    os.symlink(home.path / "outside-secret.txt", att_dir / "secret-link")
    os.symlink("/etc", att_dir / "etc-dir")
    f = Findings()

    async with stdio_client(home, key, extra_env={"INBOX_MCP_POLICY_DIR": str(pol)}) as c:
        ia = (await call(c, "provision_inbox", username="alice"))["inbox_id"]
        ia2 = (await call(c, "provision_inbox", username="alice2"))["inbox_id"]
        # a little real data, so that "nothing changed" means something
        s1 = await call(c, "send_message", inbox_id=ia, to=[ALICE2], subject="First", text="one",
                        attachments=[{"path": "notes.txt"}])
        await call(c, "send_message", inbox_id=ia, to=[ALICE2], subject="Second", text="two")
        m_sent = s1["message_id"]
        (m_in,) = [m["message_id"] for m in (await call(c, "search", query="subject:first", inbox_id=ia2))["messages"]]
        first_in = await call(c, "read_message", message_id=m_in)
        assert first_in["attachments"][0]["filename"] == "notes.txt"  # the {path} form works at all
        att_in = first_in["attachments"][0]["attachment_id"]
        thr_in = first_in["thread_id"]
        draft = await call(c, "create_draft", inbox_id=ia, to=[ALICE2], subject="kept draft", text="d")
        ext_draft = await call(c, "create_draft", inbox_id=ia, to=["x@allowed.example"], subject="ext", text="e")
        page = await call(c, "list_threads", inbox_id=ia2, limit=1)
        threads_cursor = page["next_cursor"]
        assert threads_cursor
        spage = await call(c, "search", query="in:inbox", limit=1)
        search_cursor = spage["next_cursor"]
        assert search_cursor

        async def state() -> list[Any]:
            out: list[Any] = [await call(c, "list_inboxes")]
            for inbox in (ia, ia2):
                out += [
                    await call(c, "list_threads", inbox_id=inbox, limit=100),
                    await call(c, "list_drafts", inbox_id=inbox),
                ]
            # every message of every inbox, with its labels (so label counts are covered too)
            out.append(await call(c, "search", query="after:2000-01-01 before:2100-01-01", limit=100))
            return out

        baseline = await state()

        async def expect(tool: str, args: dict[str, Any], code: str, *needles: str) -> None:
            nonlocal baseline
            what = f"{tool}({_short(args)})"
            r = await c.call_tool(tool, args)
            text = r.content[0].text if r.content else ""
            if not r.is_error:
                f.check(False, f"{what}: expected {code}, but it succeeded: {_short(r.structured_content)}")
            else:
                f.check(text.startswith(f"{code}: "), f"{what}: expected '{code}: …', got {text!r}")
                for n in needles:
                    f.check(n.lower() in text.lower(), f"{what}: error should name {n!r}: {text!r}")
            now = await state()
            f.check(now == baseline, f"{what}: stored state changed after the error")
            baseline = now

        # --- unknown ids, for every tool that takes one --------------------------------------
        for tool, args, named in [
            ("read_message", {"message_id": NO_MSG}, NO_MSG),
            ("get_thread", {"thread_id": NO_THR}, NO_THR),
            ("get_thread", {"thread_id": m_in}, m_in),  # a message id is not a thread id
            ("get_attachment", {"message_id": NO_MSG, "attachment_id": att_in}, NO_MSG),
            ("get_attachment", {"message_id": m_in, "attachment_id": NO_ATT}, NO_ATT),
            ("get_attachment", {"message_id": m_sent, "attachment_id": att_in}, att_in),  # exists, other message
            ("update_labels", {"message_id": NO_MSG, "add": ["x"]}, NO_MSG),
            ("update_labels", {"thread_id": NO_THR, "add": ["x"]}, NO_THR),
            ("list_threads", {"inbox_id": NO_INB}, NO_INB),
            ("list_labels", {"inbox_id": NO_INB}, NO_INB),
            ("list_drafts", {"inbox_id": NO_INB}, NO_INB),
            ("search", {"query": "one", "inbox_id": NO_INB}, NO_INB),
            ("send_message", {"inbox_id": NO_INB, "to": [ALICE2], "subject": "s"}, NO_INB),
            ("check_send", {"inbox_id": NO_INB, "to": [ALICE2], "subject": "s"}, NO_INB),
            ("reply", {"message_id": NO_MSG, "text": "r"}, NO_MSG),
            ("forward", {"message_id": NO_MSG, "to": [ALICE2]}, NO_MSG),
            ("send_message", {"inbox_id": ia, "to": [ALICE2], "subject": "s",
                              "attachments": [{"message_id": NO_MSG, "attachment_id": att_in}]}, NO_MSG),
            ("send_message", {"inbox_id": ia, "to": [ALICE2], "subject": "s",
                              "attachments": [{"message_id": m_in, "attachment_id": NO_ATT}]}, NO_ATT),
            ("send_message", {"inbox_id": ia, "to": [ALICE2], "subject": "s",
                              "attachments": [{"path": "no-such-file.txt"}]}, "no-such-file.txt"),
            ("create_draft", {"inbox_id": NO_INB}, NO_INB),
            ("create_draft", {"inbox_id": ia, "in_reply_to": NO_MSG}, NO_MSG),
            ("update_draft", {"draft_id": NO_DRF, "text": "t"}, NO_DRF),
            ("send_draft", {"draft_id": NO_DRF}, NO_DRF),
            ("delete_draft", {"draft_id": NO_DRF}, NO_DRF),
            ("extract_verification", {"message_id": NO_MSG}, NO_MSG),
            ("wait_for_message", {"inbox_id": NO_INB, "timeout_s": 0}, NO_INB),
            ("wait_for_message", {"inbox_id": ia, "since": NO_MSG, "timeout_s": 0}, NO_MSG),
        ]:
            await expect(tool, args, "not_found", named)

        # --- recipients ----------------------------------------------------------------------
        send = {"inbox_id": ia, "subject": "hello", "text": "body"}
        await expect("send_message", {**send, "to": []}, "invalid_argument", "to", "recipient")
        await expect("check_send", {**send, "to": []}, "invalid_argument", "recipient")
        for bad in ("not-an-address", "bob@", "@agents.test", "a@@agents.test", "bob@localhost-typo",
                    "bob@agents.test, eve@evil.example", "bob smith@agents.test", "bob@[127.0.0.1]"):
            await expect("send_message", {**send, "to": [bad]}, "invalid_argument", "invalid address", bad)
        await expect("send_message", {**send, "to": [ALICE2], "cc": ["nope"]}, "invalid_argument", "nope", "cc")
        await expect("send_message", {**send, "to": [ALICE2], "bcc": ["nope"]}, "invalid_argument", "nope", "bcc")
        await expect("create_draft", {"inbox_id": ia, "to": ["nope"]}, "invalid_argument", "nope")
        await expect("update_draft", {"draft_id": draft["draft_id"], "to": ["nope"]}, "invalid_argument", "nope")
        await expect("forward", {"message_id": m_in, "to": ["nope"]}, "invalid_argument", "nope")

        # --- CR/LF (header injection) in every header-bound field -----------------------------
        inject = "Hi\r\nBcc: eve@evil.example"
        await expect("send_message", {**send, "to": [ALICE2], "subject": inject}, "invalid_argument", "subject", "CR or LF")
        await expect("send_message", {**send, "to": [ALICE2], "subject": "Hi\nX-Evil: 1"}, "invalid_argument", "subject")
        await expect("send_message", {**send, "to": [f"{ALICE2}\r\nBcc: eve@evil.example"]}, "invalid_argument", "to", "CR or LF")
        await expect("send_message", {**send, "to": [ALICE2], "cc": [f"{ALICE2}\nBcc: eve@evil.example"]}, "invalid_argument", "cc", "CR or LF")
        await expect("check_send", {**send, "to": [ALICE2], "subject": inject}, "invalid_argument", "subject")
        await expect("create_draft", {"inbox_id": ia, "subject": inject}, "invalid_argument", "subject")
        await expect("update_draft", {"draft_id": draft["draft_id"], "subject": inject}, "invalid_argument", "subject")
        await expect("provision_inbox", {"username": "eve", "display_name": "Eve\r\nBcc: x@evil.example"},
                     "invalid_argument", "display_name", "CR or LF")
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "a\r\nContent-Type: text/html.txt", "content_base64": b64(b"x")}]},
            "invalid_argument", "filename", "CR or LF")
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "a.txt", "content_type": "text/plain\r\nX-Evil: 1", "content_base64": b64(b"x")}]},
            "invalid_argument", "content_type", "CR or LF")

        # --- attachments ---------------------------------------------------------------------
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "a.bin", "content_base64": "this is *not* base64!"}]}, "invalid_argument", "content_base64", "base64")
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "a.bin", "content_base64": "QUJ"}]}, "invalid_argument", "base64")  # bad padding
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"content_base64": b64(b"x")}]}, "invalid_argument", "filename")
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "a.bin", "content_base64": b64(b"x"), "path": "notes.txt"}]}, "invalid_argument", "exactly one")
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [{}]}, "invalid_argument", "exactly one")
        for path in ("../../etc/passwd", "../outside-secret.txt", "/etc/passwd", "passwd-link", "secret-link",
                     "etc-dir/passwd"):
            await expect("send_message", {**send, "to": [ALICE2], "attachments": [{"path": path}]},
                         "invalid_argument", path, "outside the attachments directory")
        await expect("create_draft", {"inbox_id": ia, "to": [ALICE2], "attachments": [{"path": "../../etc/passwd"}]},
                     "invalid_argument", "outside the attachments directory")
        # message size: README says the message size limit is quota_exceeded (naming the cap)
        big = os.urandom(MAX_MESSAGE_BYTES + 10_000)
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "big.bin", "content_base64": b64(big)}]}, "quota_exceeded", "caps.max_message_bytes")
        near = os.urandom(int(MAX_MESSAGE_BYTES * 0.8))  # under the cap raw, over it once base64-encoded
        await expect("send_message", {**send, "to": [ALICE2], "attachments": [
            {"filename": "near.bin", "content_base64": b64(near)}]}, "quota_exceeded", "caps.max_message_bytes")
        await expect("send_message", {**send, "to": [ALICE2], "text": "x" * (MAX_MESSAGE_BYTES + 5000)},
                     "quota_exceeded", "caps.max_message_bytes")

        # --- paging and slicing arguments ------------------------------------------------------
        for limit in (0, 101, -1):
            await expect("list_threads", {"inbox_id": ia, "limit": limit}, "invalid_argument", "limit", "100")
            await expect("search", {"query": "one", "limit": limit}, "invalid_argument", "limit", "100")
        await expect("list_threads", {"inbox_id": ia, "cursor": "not a cursor!"}, "invalid_argument", "cursor")
        await expect("search", {"query": "in:inbox", "cursor": "%%%"}, "invalid_argument", "cursor")
        forged = base64.urlsafe_b64encode(b'{"s":"0000000000000000","k":["2020-01-01T00:00:00",1]}').decode()
        await expect("list_threads", {"inbox_id": ia2, "cursor": forged}, "invalid_argument", "cursor")
        await expect("list_threads", {"inbox_id": ia, "cursor": threads_cursor}, "invalid_argument", "cursor")  # other inbox
        await expect("list_threads", {"inbox_id": ia2, "labels": ["sent"], "cursor": threads_cursor}, "invalid_argument", "cursor")
        await expect("search", {"query": "in:sent", "cursor": search_cursor}, "invalid_argument", "cursor")  # other query
        await expect("search", {"query": "in:inbox", "cursor": threads_cursor}, "invalid_argument", "cursor")
        await expect("list_threads", {"inbox_id": ia2, "cursor": search_cursor}, "invalid_argument", "cursor")
        await expect("read_message", {"message_id": m_in, "max_chars": 0}, "invalid_argument", "max_chars")
        await expect("read_message", {"message_id": m_in, "offset": -1}, "invalid_argument", "offset")
        await expect("read_message", {"message_id": m_in, "format": "pdf"}, "invalid_argument", "format")
        await expect("get_thread", {"thread_id": thr_in, "max_chars": 0}, "invalid_argument", "max_chars")
        await expect("wait_for_message", {"inbox_id": ia, "timeout_s": 301}, "invalid_argument", "timeout_s")
        await expect("wait_for_message", {"inbox_id": ia, "timeout_s": -1}, "invalid_argument", "timeout_s")
        await expect("wait_for_message", {"inbox_id": ia, "since": "last tuesday", "timeout_s": 0}, "invalid_argument", "since")
        await expect("wait_for_message", {"inbox_id": ia, "since": m_in, "timeout_s": 0}, "invalid_argument", "another inbox")

        # --- malformed queries -------------------------------------------------------------------
        for query, needle in [
            ('"unterminated phrase', "unterminated quote"),
            ("subject:\"open", "unterminated quote"),
            ("form:alice", "unknown search operator 'form:'"),
            ("frm:alice@agents.test", "unknown search operator"),
            ("after:2026-13-45", "YYYY-MM-DD"),
            ("before:yesterday", "YYYY-MM-DD"),
            ("after:", "needs a value"),
            ("is:maybe", "is:"),
            ("in:archive", "in:"),
            ("has:pictures", "has:"),
            ("one OR two", "OR"),
            ("", "empty"),
            ("   ", "empty"),
        ]:
            await expect("search", {"query": query}, "invalid_argument", needle)
        await expect("wait_for_message", {"inbox_id": ia, "query": "form:x", "timeout_s": 0}, "invalid_argument", "form:")

        # --- labels, inboxes, idempotency keys ---------------------------------------------------
        await expect("update_labels", {"add": ["x"]}, "invalid_argument", "message_id", "thread_id")
        await expect("update_labels", {"message_id": m_in, "thread_id": thr_in, "add": ["x"]}, "invalid_argument", "exactly one")
        await expect("update_labels", {"message_id": m_in, "add": ["sent"]}, "invalid_argument", "sent")
        await expect("update_labels", {"message_id": m_in, "add": ["   "]}, "invalid_argument", "label")
        await expect("update_labels", {"message_id": m_in, "add": ["x" * 65]}, "invalid_argument", "label")
        await expect("update_labels", {"message_id": m_in, "add": ["ok", "bad\nlabel"]}, "invalid_argument", "label")
        await expect("provision_inbox", {"username": "Not Valid!"}, "invalid_argument", "username")
        await expect("provision_inbox", {"username": "alice"}, "conflict", ALICE)
        await expect("provision_inbox", {"username": " ALICE2 "}, "conflict", ALICE2)  # normalised, still taken
        await expect("send_message", {**send, "to": [ALICE2], "idempotency_key": ""}, "invalid_argument", "idempotency_key")
        await expect("send_message", {**send, "to": [ALICE2], "idempotency_key": "k" * 201}, "invalid_argument", "idempotency_key")
        await expect("create_draft", {"inbox_id": ia, "in_reply_to": m_in}, "invalid_argument", "another inbox")
        await expect("send_message", {"inbox_id": ia, "to": [ALICE2]}, "invalid_argument", "subject")  # required
        await expect("send_message", {**send, "to": ALICE2 + ",x"}, "invalid_argument", "to")  # not a list

        # --- policy and routing -----------------------------------------------------------------
        await expect("send_message", {**send, "to": ["x@evil.example"]}, "policy_denied",
                     "recipients.allow", "x@evil.example", "default.toml")
        await expect("send_message", {**send, "to": [ALICE2], "cc": ["y@evil.example"]}, "policy_denied", "recipients.allow", "y@evil.example")
        await expect("send_message", {**send, "to": [ALICE2], "bcc": ["z@evil.example"]}, "policy_denied", "recipients.allow", "z@evil.example")
        await expect("forward", {"message_id": m_in, "to": ["x@evil.example"]}, "policy_denied", "recipients.allow")
        await expect("send_message", {**send, "to": ["x@allowed.example"]}, "backend_unavailable", "allowed.example")
        await expect("send_message", {**send, "to": [ALICE2, "x@allowed.example"]}, "backend_unavailable", "allowed.example")
        await expect("send_message", {**send, "to": [ALICE2], "bcc": ["x@sub.allowed.example"]}, "policy_denied", "recipients.allow")
        await expect("reply", {"message_id": m_in, "text": "r", "attachments": [{"path": "passwd-link"}]},
                     "invalid_argument", "outside the attachments directory")
        await expect("send_draft", {"draft_id": ext_draft["draft_id"]}, "backend_unavailable", "allowed.example")

        cs = await call(c, "check_send", **send, to=["x@evil.example"])
        f.check((cs["decision"], cs["rule"], cs["code"]) == ("deny", "recipients.allow", "policy_denied"), f"check_send evil: {cs}")
        cs = await call(c, "check_send", **send, to=["x@allowed.example"])
        f.check(cs["decision"] == "deny" and cs["code"] == "backend_unavailable" and "allowed.example" in cs["reason"],
                f"check_send unroutable: {cs}")
        cs = await call(c, "check_send", **send, to=[ALICE2])
        f.check(cs["decision"] == "allow", f"check_send local: {cs}")

        # unroutable and denied mail left no sent copy, no delivery, and the draft is still there
        sent_now = await call(c, "search", query="in:sent", limit=100)
        f.check(sorted(m["subject"] for m in sent_now["messages"]) == ["First", "Second"],
                f"sent copies after refusals: {[m['subject'] for m in sent_now['messages']]}")
        f.check(len((await call(c, "search", query="subject:hello", limit=100))["messages"]) == 0, "a refused 'hello' was stored")
        drafts = {d["draft_id"] for d in (await call(c, "list_drafts", inbox_id=ia))["drafts"]}
        f.check(drafts == {draft["draft_id"], ext_draft["draft_id"]}, f"drafts after refusals: {drafts}")
        f.check(await state() == baseline, "state changed")

        # the inbox cap: a third inbox is fine, a fourth is quota_exceeded and creates nothing
        await call(c, "provision_inbox", username="alice3")
        baseline = await state()
        await expect("provision_inbox", {"username": "alice4"}, "quota_exceeded", "caps.max_inboxes")

        # and the server still answers, and still sends
        inboxes = await call(c, "list_inboxes")
        f.check([i["address"] for i in inboxes["inboxes"]] == [ALICE, ALICE2, f"alice3@{DOMAIN}"], f"list_inboxes: {inboxes}")
        ok = await call(c, "send_message", inbox_id=ia, to=[ALICE2], subject="Still alive", text="yes")
        f.check(ok["status"] == "sent", f"final send: {ok}")
    f.assert_none()


def _short(v: Any) -> str:
    s = json.dumps(v, default=str, ensure_ascii=False)
    return s if len(s) <= 160 else s[:150] + "…" + s[-8:]


# --- inbound SMTP refusals -------------------------------------------------------------------


def _mail(size: int, to: str = f"bob@{DOMAIN}") -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "sender@outside.example", to, f"{size}-byte body"
    m["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
    m.set_content(("0123456789abcdef" * (size // 16 + 1))[:size] if size else "small")
    return m.as_bytes(policy=SMTP_POLICY)


def _smtp(home: Home) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", home.smtp_port, local_hostname="localhost", timeout=15)


def _wait_listener(home: Home) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            with _smtp(home) as s:
                s.noop()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def test_smtp_inbound_refusals(home: Home, tmp_path: Path) -> None:
    pol = policy_dir(tmp_path / "policy", inbound_max=2048)
    key = home.create_agent("bob")
    bob = f"bob@{DOMAIN}"
    async with stdio_client(home, key, extra_env={"INBOX_MCP_POLICY_DIR": str(pol)}) as c:
        ib = (await call(c, "provision_inbox", username="bob"))["inbox_id"]
        await anyio.to_thread.run_sync(_wait_listener, home)

        def unknown_recipient() -> None:
            with _smtp(home) as s, pytest.raises(smtplib.SMTPRecipientsRefused) as e:
                s.sendmail("sender@outside.example", [f"nobody@{DOMAIN}"], _mail(0, f"nobody@{DOMAIN}"))
            code, msg = e.value.recipients[f"nobody@{DOMAIN}"]
            assert code == 550 and b"5.1.1" in msg, (code, msg)

        def other_domain() -> None:
            with _smtp(home) as s, pytest.raises(smtplib.SMTPRecipientsRefused) as e:
                s.sendmail("sender@outside.example", ["victim@elsewhere.example"], _mail(0, "victim@elsewhere.example"))
            code, msg = e.value.recipients["victim@elsewhere.example"]
            assert code == 550 and b"5.7.1" in msg and b"relay" in msg.lower(), (code, msg)

        def oversize_announced() -> None:
            with _smtp(home) as s:
                s.ehlo()
                assert s.has_extn("size")
                with pytest.raises(smtplib.SMTPSenderRefused) as e:
                    s.sendmail("sender@outside.example", [bob], _mail(5000))  # smtplib sends SIZE=
            assert e.value.smtp_code == 552, e.value

        def oversize_actual() -> None:
            with _smtp(home) as s:
                s.ehlo()
                code, _ = s.mail("sender@outside.example")  # no SIZE= announced
                assert code == 250
                code, _ = s.rcpt(bob)
                assert code == 250
                code, msg = s.data(_mail(5000))
                assert code == 552, (code, msg)

        def mixed_and_fitting() -> dict:
            with _smtp(home) as s:
                return s.sendmail("sender@outside.example", [bob, f"ghost@{DOMAIN}"], _mail(200))

        for step in (unknown_recipient, other_domain, oversize_announced, oversize_actual):
            await anyio.to_thread.run_sync(step)
        assert (await call(c, "list_threads", inbox_id=ib))["threads"] == []

        refused = await anyio.to_thread.run_sync(mixed_and_fitting)
        assert list(refused) == [f"ghost@{DOMAIN}"] and refused[f"ghost@{DOMAIN}"][0] == 550
        threads = (await call(c, "list_threads", inbox_id=ib))["threads"]
        assert [t["subject"] for t in threads] == ["200-byte body"]
        assert (await call(c, "list_inboxes"))["inboxes"][0]["address"] == bob
