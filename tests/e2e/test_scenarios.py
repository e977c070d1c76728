"""End-to-end scenarios through the real MCP client.

Two agents, alice and bob, each run their own ``inbox-mcp serve`` over stdio against one shared
data home — the real deployment shape. Mail between them goes through the embedded backend;
mail from "outside" is injected with ``smtplib`` into the SMTP listener that one of the two
server processes owns. Steps are grouped into a few long scenarios to keep server starts few.
"""

from __future__ import annotations

import base64
import email.policy
import os
import smtplib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import anyio
import pytest
from conftest import Home, call, call_error, stdio_client
from mcp import MCPError

DOMAIN = "agents.test"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
OPS = f"alice-ops@{DOMAIN}"
SUBJECT = "Grüße – 日本語 ✓"

pytestmark = pytest.mark.anyio


# --- helpers ------------------------------------------------------------------------------------


def relax_send_rates(home: Home) -> None:
    """The default unverified tier allows 5 sends a minute; these scenarios send more than that.
    A tenant override (a documented policy layer) raises the rates and nothing else."""
    tenants = home.path / "policies" / "tenants"
    tenants.mkdir(parents=True, exist_ok=True)
    (tenants / "default.toml").write_text(
        "[caps.unverified]\nper_minute = 200\nper_hour = 1000\nper_day = 1000\n", encoding="utf-8"
    )


@asynccontextmanager
async def alice_and_bob(home: Home) -> AsyncIterator[tuple[object, object, str, str]]:
    """Two agents, two stdio servers on one home, an inbox each: (alice, bob, alice_inbox, bob_inbox).
    The agents are created and the servers started concurrently (as two MCP clients would), which
    also keeps this file's runtime down."""
    relax_send_rates(home)
    keys: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        for name in ("alice", "bob"):
            tg.start_soon(lambda n=name: _create(home, n, keys))
    clients: dict[str, object] = {}
    done = anyio.Event()

    async def hold(name: str, ready: anyio.Event) -> None:
        async with stdio_client(home, keys[name]) as c:
            clients[name] = c
            ready.set()
            await done.wait()

    try:
        async with anyio.create_task_group() as tg:
            ready_a, ready_b = anyio.Event(), anyio.Event()
            tg.start_soon(hold, "alice", ready_a)
            tg.start_soon(hold, "bob", ready_b)
            await ready_a.wait()
            await ready_b.wait()
            a, b = clients["alice"], clients["bob"]
            try:
                ia = await call(a, "provision_inbox", username="alice", display_name="Alice Example")
                ib = await call(b, "provision_inbox", username="bob", display_name="Bob Bäcker")
                yield a, b, ia["inbox_id"], ib["inbox_id"]
            finally:
                done.set()
    except BaseExceptionGroup as group:
        # report a failed assertion in the test body as itself, not wrapped in a task group's error
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out += _leaves(e) if isinstance(e, BaseExceptionGroup) else [e]
    return out


async def _create(home: Home, name: str, keys: dict[str, str]) -> None:
    keys[name] = await anyio.to_thread.run_sync(home.create_agent, name)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wire_bytes(msg: EmailMessage) -> bytes:
    """The message as it travels over SMTP: CRLF line endings."""
    return msg.as_bytes(policy=email.policy.SMTP)


def smtp_inject(home: Home, msg: EmailMessage | bytes, rcpts: list[str], mail_from: str = "sender@outside.example") -> None:
    data = msg if isinstance(msg, bytes) else wire_bytes(msg)
    # local_hostname: skip smtplib's getfqdn(), which can stall on a machine without DNS
    with smtplib.SMTP("127.0.0.1", home.smtp_port, local_hostname="localhost", timeout=15) as s:
        s.sendmail(mail_from, rcpts, data)


def wait_smtp_ready(home: Home, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", home.smtp_port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError("SMTP listener did not come up")


def plain_mail(subject: str, body: str, frm: str = "Carol Outside <carol@outside.example>", to: str = BOB) -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, subject
    m["Date"] = format_datetime(datetime.now(UTC))
    m["Message-ID"] = make_msgid(domain="outside.example")
    m.set_content(body)
    return m


async def search_ids(client: object, query: str, **kw: object) -> list[str]:
    r = await call(client, "search", query=query, limit=100, **kw)
    assert r["next_cursor"] is None
    return [m["message_id"] for m in r["messages"]]


async def label_counts(client: object, inbox_id: str) -> dict[str, tuple[int, int]]:
    r = await call(client, "list_labels", inbox_id=inbox_id)
    return {x["name"]: (x["count"], x["unread"]) for x in r["labels"]}


# --- scenario 1: send, read, attachments, reply, reply_all, forward, labels, drafts, idempotency --


async def test_mail_flow_between_two_agents(home: Home) -> None:
    async with alice_and_bob(home) as (a, b, ia, ib):
        # provision + list_inboxes
        ops = await call(a, "provision_inbox", username="alice-ops", display_name="Alice Ops")
        assert ops["address"] == OPS
        inboxes = (await call(a, "list_inboxes"))["inboxes"]
        assert [(i["address"], i["display_name"]) for i in inboxes] == [(ALICE, "Alice Example"), (OPS, "Alice Ops")]
        assert [(i["address"], i["display_name"]) for i in (await call(b, "list_inboxes"))["inboxes"]] == [(BOB, "Bob Bäcker")]
        iops = ops["inbox_id"]

        # alice -> bob: non-ASCII subject and a binary attachment
        blob = bytes(range(256)) * 4 + os.urandom(777)
        sent = await call(
            a, "send_message", inbox_id=ia, to=[BOB], subject=SUBJECT, text="Hello Bob,\nthe file is attached.\n",
            attachments=[{"filename": "blob.bin", "content_type": "application/octet-stream", "content_base64": b64(blob)}],
        )
        assert sent["status"] == "sent" and sent["delivered"] == [BOB], sent

        threads = (await call(b, "list_threads", inbox_id=ib))["threads"]
        assert len(threads) == 1
        t = threads[0]
        assert t["subject"] == SUBJECT
        assert {"inbox", "unread"} <= set(t["labels"]) and t["unread_count"] == 1 and t["message_count"] == 1
        bob_thread = t["thread_id"]
        first = (await call(b, "get_thread", thread_id=bob_thread))["messages"][0]
        m1 = first["message_id"]

        msg = await call(b, "read_message", message_id=m1)
        assert msg["subject"] == SUBJECT
        assert msg["from"] == ALICE and msg["from_name"] == "Alice Example" and msg["to"] == [BOB]
        assert msg["text"] == "Hello Bob,\nthe file is attached."
        assert msg["direction"] == "in" and msg["untrusted"] is True
        assert set(msg["labels"]) == {"inbox", "unread"}
        assert len(msg["attachments"]) == 1
        att = msg["attachments"][0]
        assert (att["filename"], att["content_type"], att["size"]) == ("blob.bin", "application/octet-stream", len(blob))

        got = await call(b, "get_attachment", message_id=m1, attachment_id=att["attachment_id"])
        assert base64.b64decode(got["content_base64"]) == blob
        assert got["size"] == len(blob) and got["filename"] == "blob.bin"
        assert got["resource_uri"] == f"inbox://messages/{m1}/attachments/{att['attachment_id']}"
        res = await b.read_resource(got["resource_uri"])
        assert len(res.contents) == 1
        assert base64.b64decode(res.contents[0].blob) == blob

        # alice's copy is labelled sent (and not inbox/unread)
        sent_threads = (await call(a, "list_threads", inbox_id=ia, labels=["sent"]))["threads"]
        assert [x["subject"] for x in sent_threads] == [SUBJECT]
        alice_thread = sent_threads[0]["thread_id"]
        assert sent_threads[0]["thread_id"] == sent["thread_id"]
        alice_copy = await call(a, "read_message", message_id=sent["message_id"])
        assert alice_copy["labels"] == ["sent"] and alice_copy["direction"] == "out"
        assert alice_copy["delivery_status"] == "sent"
        assert alice_copy["attachments"][0]["size"] == len(blob)

        # bob replies with a quote; alice sees one thread of 2 messages; reply_text is only the new text
        quoted = (
            "Thanks Alice, got it.\n\n"
            "On Thu, 26 Nov 2026 at 13:00, Alice Example <alice@agents.test> wrote:\n"
            "> Hello Bob,\n> the file is attached.\n"
        )
        r1 = await call(b, "reply", message_id=m1, text=quoted)
        assert r1["status"] == "sent" and r1["delivered"] == [ALICE] and r1["thread_id"] == bob_thread
        a_threads = (await call(a, "list_threads", inbox_id=ia))["threads"]
        assert len(a_threads) == 1 and a_threads[0]["thread_id"] == alice_thread
        assert a_threads[0]["message_count"] == 2 and a_threads[0]["unread_count"] == 1
        th = await call(a, "get_thread", thread_id=alice_thread)
        assert [m["subject"] for m in th["messages"]] == [SUBJECT, f"Re: {SUBJECT}"]
        reply_msg = th["messages"][1]
        assert reply_msg["from"] == BOB and reply_msg["from_name"] == "Bob Bäcker"
        assert reply_msg["reply_text"].strip() == "Thanks Alice, got it."
        assert "> Hello Bob" in reply_msg["text"]  # the full text keeps the quote
        assert set(reply_msg["labels"]) == {"inbox", "unread"}

        # reply_all: alice -> bob, cc alice-ops; bob's reply_all goes to alice, cc alice-ops, not to bob himself
        cc_sent = await call(a, "send_message", inbox_id=ia, to=[BOB], cc=[OPS], subject="Planning sync", text="Agenda attached soon.")
        assert sorted(cc_sent["delivered"]) == sorted([BOB, OPS])
        (m_cc,) = await search_ids(b, 'subject:"planning sync"', inbox_id=ib)
        ra = await call(b, "reply", message_id=m_cc, text="Works for me.", reply_all=True)
        ra_copy = await call(b, "read_message", message_id=ra["message_id"])
        assert ra_copy["to"] == [ALICE] and ra_copy["cc"] == [OPS] and ra_copy["subject"] == "Re: Planning sync"
        assert sorted(ra["delivered"]) == sorted([ALICE, OPS])
        plain = await call(b, "reply", message_id=m_cc, text="(just to you)")
        plain_copy = await call(b, "read_message", message_id=plain["message_id"])
        assert plain_copy["to"] == [ALICE] and plain_copy["cc"] == []
        ops_threads = (await call(a, "list_threads", inbox_id=iops))["threads"]
        assert len(ops_threads) == 1 and ops_threads[0]["message_count"] == 2  # the cc copy and the reply_all

        # forward: Fwd: subject, the attachment carried over by reference, identical bytes
        fw = await call(b, "forward", message_id=m1, to=[OPS], text="FYI, see below.")
        assert fw["status"] == "sent" and fw["delivered"] == [OPS]
        (m_fw,) = await search_ids(a, "subject:Fwd", inbox_id=iops)
        fwd = await call(a, "read_message", message_id=m_fw)
        assert fwd["subject"] == f"Fwd: {SUBJECT}"
        assert fwd["from"] == BOB and fwd["text"].startswith("FYI, see below.")
        assert "Forwarded message" in fwd["text"] and "the file is attached." in fwd["text"]
        assert [x["filename"] for x in fwd["attachments"]] == ["blob.bin"]
        fwd_att = await call(a, "get_attachment", message_id=m_fw, attachment_id=fwd["attachments"][0]["attachment_id"])
        assert base64.b64decode(fwd_att["content_base64"]) == blob

        # an attachment reused by {message_id, attachment_id} on a plain send
        reuse = await call(
            b, "send_message", inbox_id=ib, to=[ALICE], subject="Your file back",
            attachments=[{"message_id": m1, "attachment_id": att["attachment_id"]}],
        )
        reuse_copy = await call(b, "read_message", message_id=reuse["message_id"])
        back = await call(b, "get_attachment", message_id=reuse["message_id"], attachment_id=reuse_copy["attachments"][0]["attachment_id"])
        assert base64.b64decode(back["content_base64"]) == blob and back["filename"] == "blob.bin"

        # labels on a message: add a user label, remove unread (= mark read)
        before = await label_counts(b, ib)
        assert await search_ids(b, "is:unread", inbox_id=ib) and m1 in await search_ids(b, "is:unread", inbox_id=ib)
        lab = await call(b, "update_labels", message_id=m1, add=["important"], remove=["unread"])
        assert lab["labels"] == ["important", "inbox"]
        after = await label_counts(b, ib)
        assert after["important"] == (1, 0)
        assert after["unread"][0] == before["unread"][0] - 1
        assert after["inbox"] == (before["inbox"][0], before["inbox"][1] - 1)
        assert m1 in await search_ids(b, "is:read", inbox_id=ib)
        assert m1 not in await search_ids(b, "is:unread", inbox_id=ib)
        assert (await call(b, "read_message", message_id=m1))["labels"] == ["important", "inbox"]

        # labels on a thread: every message gets it; list_threads filters by it; removal clears it
        tl = await call(b, "update_labels", thread_id=bob_thread, add=["project-x"])
        assert "project-x" in tl["labels"]
        for m in (await call(b, "get_thread", thread_id=bob_thread))["messages"]:
            assert "project-x" in m["labels"], m["message_id"]
        px = (await call(b, "list_threads", inbox_id=ib, labels=["project-x"]))["threads"]
        assert [x["thread_id"] for x in px] == [bob_thread]
        n_thread_msgs = len((await call(b, "get_thread", thread_id=bob_thread))["messages"])
        assert (await label_counts(b, ib))["project-x"][0] == n_thread_msgs
        tl = await call(b, "update_labels", thread_id=bob_thread, remove=["project-x"])
        assert "project-x" not in tl["labels"]
        assert (await call(b, "list_threads", inbox_id=ib, labels=["project-x"]))["threads"] == []
        assert (await label_counts(b, ib)).get("project-x", (0, 0))[0] == 0

        # trash hides a thread from the default listing, and only there
        visible = {x["thread_id"] for x in (await call(b, "list_threads", inbox_id=ib))["threads"]}
        assert bob_thread in visible
        await call(b, "update_labels", thread_id=bob_thread, add=["trash"])
        visible2 = {x["thread_id"] for x in (await call(b, "list_threads", inbox_id=ib))["threads"]}
        assert visible2 == visible - {bob_thread}
        assert [x["thread_id"] for x in (await call(b, "list_threads", inbox_id=ib, labels=["trash"]))["threads"]] == [bob_thread]
        await call(b, "update_labels", thread_id=bob_thread, remove=["trash"])
        assert bob_thread in {x["thread_id"] for x in (await call(b, "list_threads", inbox_id=ib))["threads"]}

        # drafts: in_reply_to fills to + Re:, update, list, send (threads at alice), delete
        d = await call(b, "create_draft", inbox_id=ib, in_reply_to=m1, text="Draft v1")
        assert d["to"] == [ALICE] and d["subject"] == f"Re: {SUBJECT}" and d["in_reply_to"] == m1
        d2 = await call(b, "update_draft", draft_id=d["draft_id"], text="Draft v2 — final")
        assert d2["text"] == "Draft v2 — final" and d2["subject"] == f"Re: {SUBJECT}" and d2["to"] == [ALICE]
        drafts = (await call(b, "list_drafts", inbox_id=ib))["drafts"]
        assert [(x["draft_id"], x["text"]) for x in drafts] == [(d["draft_id"], "Draft v2 — final")]
        assert (await label_counts(b, ib))["drafts"][0] == 1
        alice_before = len((await call(a, "get_thread", thread_id=alice_thread))["messages"])
        sd = await call(b, "send_draft", draft_id=d["draft_id"])
        assert sd["status"] == "sent" and sd["delivered"] == [ALICE] and sd["thread_id"] == bob_thread
        assert (await call(b, "list_drafts", inbox_id=ib))["drafts"] == []
        assert (await label_counts(b, ib))["drafts"][0] == 0
        alice_msgs = (await call(a, "get_thread", thread_id=alice_thread))["messages"]
        assert len(alice_msgs) == alice_before + 1
        assert alice_msgs[-1]["subject"] == f"Re: {SUBJECT}" and alice_msgs[-1]["reply_text"] == "Draft v2 — final"
        assert (await call_error(b, "send_draft", draft_id=d["draft_id"])).startswith("not_found:")
        d3 = await call(b, "create_draft", inbox_id=ib, to=[ALICE], subject="never sent", text="x")
        assert await call(b, "delete_draft", draft_id=d3["draft_id"]) == {"deleted": True, "id": d3["draft_id"]}
        assert (await call(b, "list_drafts", inbox_id=ib))["drafts"] == []
        assert (await call_error(b, "delete_draft", draft_id=d3["draft_id"])).startswith("not_found:")
        assert await search_ids(a, '"never sent"') == []

        # idempotency: a retried call sends once; the same key for another message is a conflict
        args = {"inbox_id": ia, "to": [BOB], "subject": "Idempotent hello", "text": "exactly once"}
        s1 = await call(a, "send_message", idempotency_key="idem-42", **args)
        s2 = await call(a, "send_message", idempotency_key="idem-42", **args)
        assert s1["message_id"] == s2["message_id"] and s1["thread_id"] == s2["thread_id"]
        assert len(await search_ids(b, 'subject:"idempotent hello"')) == 1
        assert len(await search_ids(a, 'in:sent subject:"idempotent hello"')) == 1
        err = await call_error(a, "send_message", idempotency_key="idem-42", **{**args, "text": "a different body"})
        assert err.startswith("conflict:") and "idem-42" in err
        assert len(await search_ids(b, 'subject:"idempotent hello"')) == 1


# --- scenario 2: search operators, pagination, isolation ---------------------------------------


async def test_search_pagination_and_isolation(home: Home) -> None:
    today = datetime.now(UTC).date()
    yesterday, tomorrow = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    async with alice_and_bob(home) as (a, b, ia, ib):
        cc_box = (await call(a, "provision_inbox", username="alice-cc"))["inbox_id"]
        pdf = b"%PDF-1.4 fake but fine\n" + os.urandom(300)
        await call(
            a, "send_message", inbox_id=ia, to=[BOB], cc=[f"alice-cc@{DOMAIN}"], subject="Quarterly report draft",
            text="The quarterly report is attached. Budget numbers inside.",
            attachments=[{"filename": "report.pdf", "content_type": "application/pdf", "content_base64": b64(pdf)}],
        )
        await call(a, "send_message", inbox_id=ia, to=[BOB], subject="Lunch plans", text="Shall we have lunch on Friday? The report can wait.")
        await call(a, "send_message", inbox_id=ia, to=[BOB], subject="Invoice 2231", text="Please find the invoice for March.")
        await call(b, "send_message", inbox_id=ib, to=[ALICE], subject="Hello from Bob", text="Quick hello, nothing else.")

        by_subject = {m["subject"]: m["message_id"] for m in (await call(b, "search", query="to:bob", limit=100))["messages"]}
        q, lunch, inv = by_subject["Quarterly report draft"], by_subject["Lunch plans"], by_subject["Invoice 2231"]
        (bob_sent,) = await search_ids(b, "in:sent")
        everything = {q, lunch, inv, bob_sent}

        await call(b, "update_labels", message_id=inv, add=["finance"])
        await call(b, "update_labels", message_id=lunch, remove=["unread"])

        async def ids(query: str, **kw: object) -> set[str]:
            return set(await search_ids(b, query, **kw))

        assert await ids("lunch") == {lunch}
        assert await ids("report") == {q, lunch}  # subject and body
        assert await ids("REPORT") == {q, lunch}  # any case
        assert await ids("invoi*") == {inv}
        assert await ids('"quarterly report"') == {q}
        assert await ids('"report quarterly"') == set()
        assert await ids("from:alice") == {q, lunch, inv}
        assert await ids(f"from:{ALICE}") == {q, lunch, inv}
        assert await ids('from:"Alice Example"') == {q, lunch, inv}
        assert await ids("from:bob") == {bob_sent}
        assert await ids("to:bob") == {q, lunch, inv}
        assert await ids(f"to:{ALICE}") == {bob_sent}
        assert await ids("cc:alice-cc") == {q}
        assert await ids("subject:invoice") == {inv}
        assert await ids('subject:"lunch plans"') == {lunch}
        assert await ids("subject:report") == {q}  # not the body mention in "Lunch plans"
        assert await ids("label:finance") == {inv}
        assert await ids("is:unread") == {q, inv}
        assert await ids("is:read") == {lunch, bob_sent}
        assert await ids("has:attachment") == {q}
        assert await ids("filename:report.pdf") == {q}
        assert await ids("filename:report") == {q}
        assert await ids(f"after:{yesterday}") == everything
        assert await ids(f"after:{today.isoformat()}") == everything
        assert await ids(f"after:{tomorrow}") == set()
        assert await ids(f"before:{tomorrow}") == everything
        assert await ids(f"before:{yesterday}") == set()
        assert await ids(f"after:{yesterday} before:{tomorrow} from:alice") == {q, lunch, inv}
        assert await ids("in:sent") == {bob_sent}
        assert await ids("in:inbox") == {q, lunch, inv}
        assert await ids("report -lunch") == {q}
        assert await ids('report -"quarterly report"') == {lunch}
        assert await ids("-from:alice") == {bob_sent}
        assert await ids("from:alice -label:finance") == {q, lunch}
        assert await ids("-has:attachment from:alice") == {lunch, inv}
        assert await ids("-is:unread") == {lunch, bob_sent}
        assert await ids("in:inbox", inbox_id=ib) == {q, lunch, inv}
        # alice's view: her three sent copies, and the cc copy in her second inbox
        assert len(await search_ids(a, "in:sent")) == 3
        assert len(await search_ids(a, "cc:alice-cc", inbox_id=cc_box)) == 1

        # pagination: limit=1 walks every result exactly once, newest first
        async def walk(tool: str, key: str, **kw: object) -> list[str]:
            seen, cursor, pages = [], None, 0
            while True:
                page = await call(b, tool, limit=1, **({"cursor": cursor} if cursor else {}), **kw)
                seen += [x[key] for x in page[key.split("_")[0] + "s"]]
                pages += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    return seen
                assert pages < 20

        walked = await walk("search", "message_id", query="from:alice")
        assert len(walked) == len(set(walked)) == 3 and set(walked) == {q, lunch, inv}
        assert walked == await search_ids(b, "from:alice")
        all_threads = [t["thread_id"] for t in (await call(b, "list_threads", inbox_id=ib, limit=100))["threads"]]
        assert len(all_threads) == 4
        walked_threads = await walk("list_threads", "thread_id", inbox_id=ib)
        assert walked_threads == all_threads

        # --- isolation: bob names alice's objects; every call is not_found and nothing changes ----
        (a_msg,) = await search_ids(a, "has:attachment in:sent")
        a_read = await call(a, "read_message", message_id=a_msg)
        a_att = a_read["attachments"][0]["attachment_id"]
        a_thread = a_read["thread_id"]
        a_draft = (await call(a, "create_draft", inbox_id=ia, to=[BOB], subject="secret draft", text="s"))["draft_id"]
        (a_in,) = await search_ids(a, "from:bob")  # a message alice received

        async def alice_state() -> list[object]:
            return [
                await call(a, "list_threads", inbox_id=ia, limit=100),
                await call(a, "list_threads", inbox_id=cc_box, limit=100),
                await call(a, "list_labels", inbox_id=ia),
                await call(a, "list_drafts", inbox_id=ia),
                await call(a, "search", query="in:sent", limit=100),
                await call(a, "read_message", message_id=a_msg),
                await call(a, "read_message", message_id=a_in),
            ]

        async def bob_state() -> list[object]:
            return [await call(b, "list_threads", inbox_id=ib, limit=100), await call(b, "search", query="in:sent", limit=100),
                    await call(b, "list_labels", inbox_id=ib), await call(b, "list_drafts", inbox_id=ib)]

        a_before, b_before = await alice_state(), await bob_state()
        attempts: list[tuple[str, dict[str, object], str]] = [
            ("read_message", {"message_id": a_msg}, a_msg),
            ("read_message", {"message_id": a_in, "format": "raw"}, a_in),
            ("get_thread", {"thread_id": a_thread}, a_thread),
            ("get_attachment", {"message_id": a_msg, "attachment_id": a_att}, a_msg),
            ("update_labels", {"message_id": a_in, "remove": ["unread"], "add": ["pwned"]}, a_in),
            ("update_labels", {"thread_id": a_thread, "add": ["trash"]}, a_thread),
            ("list_threads", {"inbox_id": ia}, ia),
            ("list_labels", {"inbox_id": ia}, ia),
            ("search", {"query": "report", "inbox_id": ia}, ia),
            ("extract_verification", {"message_id": a_in}, a_in),
            ("wait_for_message", {"inbox_id": ia, "timeout_s": 0}, ia),
            ("reply", {"message_id": a_in, "text": "hijack"}, a_in),
            ("reply", {"message_id": a_msg, "text": "hijack", "reply_all": True}, a_msg),
            ("forward", {"message_id": a_msg, "to": [BOB]}, a_msg),
            ("send_message", {"inbox_id": ia, "to": [BOB], "subject": "spoofed", "text": "from alice?"}, ia),
            ("check_send", {"inbox_id": ia, "to": [BOB], "subject": "spoofed"}, ia),
            ("send_message", {"inbox_id": ib, "to": [BOB], "subject": "steal",
                              "attachments": [{"message_id": a_msg, "attachment_id": a_att}]}, a_msg),
            ("create_draft", {"inbox_id": ia, "to": [BOB]}, ia),
            ("create_draft", {"inbox_id": ib, "in_reply_to": a_in}, a_in),
            ("update_draft", {"draft_id": a_draft, "text": "changed"}, a_draft),
            ("send_draft", {"draft_id": a_draft}, a_draft),
            ("delete_draft", {"draft_id": a_draft}, a_draft),
            ("list_drafts", {"inbox_id": ia}, ia),
        ]
        for tool, args, named in attempts:
            err = await call_error(b, tool, **args)
            assert err.startswith("not_found:"), (tool, err)
            assert named in err, (tool, err)
        with pytest.raises(MCPError) as exc_info:
            await b.read_resource(f"inbox://messages/{a_msg}/attachments/{a_att}")
        resource_error = str(exc_info.value)
        assert await alice_state() == a_before
        assert await bob_state() == b_before
        # the same calls still work for alice herself
        assert (await call(a, "list_drafts", inbox_id=ia))["drafts"][0]["draft_id"] == a_draft
        assert base64.b64decode((await call(a, "get_attachment", message_id=a_msg, attachment_id=a_att))["content_base64"]) == pdf
        # the attachment resource follows the same rule as the tools: "not_found", not a generic crash
        assert "not_found" in resource_error and a_msg in resource_error, resource_error


# --- scenario 3: inbound SMTP, wait_for_message, verification codes, long and raw/html reads ----


SIGNUP_HTML = """\
<!DOCTYPE html><html><head><style>.btn {{ background:#336699; color:#ffffff }}</style></head>
<body style="background-color:#f4f4f4">
<table width="600" cellpadding="0" cellspacing="0"><tr><td>
<img src="https://cdn.acme.example/logo.png" alt="Acme" width="120">
<h1 style="color:#222222">Welcome to Acme, Bob!</h1>
<p>Thanks for signing up on November 26, 2026. Enter this verification code to finish:</p>
<p style="font-size:32px;letter-spacing:6px;color:#111111"><strong>{code}</strong></p>
<p>Or confirm your email address with one click:</p>
<p><a class="btn" href="{link_html}">Confirm my email</a></p>
<p>The code expires in 10 minutes. Plans start at $19.99/month. Questions? Call +1 (415) 555-0142.</p>
<hr><p style="font-size:11px;color:#999999">Acme Inc., 500 Market St, San Francisco, CA 94105 ·
<a href="https://acme.example/unsubscribe?u=77">Unsubscribe</a> ·
<a href="https://acme.example/privacy">Privacy</a></p>
</td></tr></table></body></html>
"""


async def test_inbound_wait_verification_and_slicing(home: Home) -> None:
    async with alice_and_bob(home) as (a, b, ia, ib):
        await anyio.to_thread.run_sync(wait_smtp_ready, home)

        async def inject(msg: EmailMessage | bytes, mail_from: str = "sender@outside.example") -> None:
            await anyio.to_thread.run_sync(lambda: smtp_inject(home, msg, [BOB], mail_from))

        async def wait_while(action, **wait_args: object) -> dict:  # type: ignore[no-untyped-def]
            """Start a wait in bob's session, then run ``action`` once the wait is under way."""
            box: dict[str, dict] = {}

            async def waiter() -> None:
                box["r"] = await call(b, "wait_for_message", inbox_id=ib, **wait_args)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(1.0)  # the wait has fixed its baseline by now
                await action()
            return box["r"]

        # 1. a wait wakes on SMTP mail that arrives after it started
        t0 = time.monotonic()
        r = await wait_while(lambda: inject(plain_mail("Wake up", "first outside message")), timeout_s=30)
        assert r["status"] == "received", r
        assert r["message"]["subject"] == "Wake up" and r["message"]["from"] == "carol@outside.example"
        assert r["message"]["untrusted"] is True and set(r["message"]["labels"]) == {"inbox", "unread"}
        assert time.monotonic() - t0 < 15
        first = r["message"]["message_id"]

        # 2. ... and on mail another agent's server process delivered (cross-process wake-up)
        r = await wait_while(lambda: call(a, "send_message", inbox_id=ia, to=[BOB], subject="Cross-process", text="hi"), timeout_s=30)
        assert r["status"] == "received" and r["message"]["subject"] == "Cross-process" and r["message"]["from"] == ALICE
        cross = r["message"]["message_id"]

        # 3. timeout
        t0 = time.monotonic()
        r = await call(b, "wait_for_message", inbox_id=ib, timeout_s=1)
        assert r["status"] == "timeout" and r.get("message") is None
        assert 0.9 <= time.monotonic() - t0 < 10

        # 4. since = a message id: the next message after it, even though it is already stored
        await inject(plain_mail("Second", "second outside message"))
        await inject(plain_mail("Third", "third outside message"))
        r = await call(b, "wait_for_message", inbox_id=ib, since=first, timeout_s=5)
        assert r["status"] == "received" and r["message"]["message_id"] == cross
        r = await call(b, "wait_for_message", inbox_id=ib, since=cross, timeout_s=5)
        assert r["status"] == "received" and r["message"]["subject"] == "Second"
        second = r["message"]["message_id"]
        r = await call(b, "wait_for_message", inbox_id=ib, since=second, timeout_s=5)
        assert r["status"] == "received" and r["message"]["subject"] == "Third"
        r = await call(b, "wait_for_message", inbox_id=ib, since=r["message"]["message_id"], timeout_s=1)
        assert r["status"] == "timeout"

        # 5. a query filter skips mail that does not match
        async def two_mails() -> None:
            await inject(plain_mail("Newsletter", "not what we wait for", frm="news@other.example"), "news@other.example")
            await anyio.sleep(0.3)
            await inject(plain_mail("Your code", "here it comes", frm="Acme <noreply@acme.example>"), "noreply@acme.example")

        r = await wait_while(two_mails, query="from:noreply@acme.example", timeout_s=30)
        assert r["status"] == "received" and r["message"]["subject"] == "Your code", r
        assert len(await search_ids(b, "from:news@other.example")) == 1  # the skipped one did arrive

        # 6. extract_verification on a realistic HTML-only sign-up mail
        link = "https://acme.example/confirm?token=Zx81kQ9pL&uid=1207"
        signup = EmailMessage()
        signup["From"], signup["To"], signup["Subject"] = "Acme <noreply@acme.example>", BOB, "Confirm your Acme account"
        signup["Date"] = format_datetime(datetime.now(UTC))
        signup["Message-ID"] = make_msgid(domain="acme.example")
        signup.set_content(SIGNUP_HTML.format(code="482913", link_html=link.replace("&", "&amp;")), subtype="html")
        r = await wait_while(lambda: inject(signup, "noreply@acme.example"), query='subject:"confirm your acme account"', timeout_s=30)
        assert r["status"] == "received"
        m_signup = r["message"]["message_id"]
        assert "482913" in r["message"]["text"]  # HTML-only mail still has text
        v = await call(b, "extract_verification", message_id=m_signup)
        assert v["codes"] and v["codes"][0] == "482913", v
        for not_a_code in ("336699", "222222", "111111", "1999", "0142", "94105", "2026", "555"):
            assert not any(not_a_code in c for c in v["codes"]), v
        assert v["links"] and v["links"][0] == link, v
        assert "https://acme.example/unsubscribe?u=77" not in v["links"][:1]

        # 7. format=html is sanitised; format=raw is the exact source
        evil = EmailMessage()
        evil["From"], evil["To"], evil["Subject"] = "Mallory <m@outside.example>", BOB, "Scripted"
        evil["Message-ID"] = make_msgid(domain="outside.example")
        evil.set_content("Plain part: hello.")
        evil.add_alternative(
            '<p onclick="steal()">Hello <b>Bob</b></p><script>alert("x")</script>'
            '<img src="https://tracker.example/p.gif" onerror="steal()"><a href="javascript:steal()">x</a>',
            subtype="html",
        )
        evil_bytes = wire_bytes(evil)
        await inject(evil_bytes)
        (m_evil,) = await search_ids(b, "subject:scripted")
        h = await call(b, "read_message", message_id=m_evil, format="html")
        assert h["html"] is not None and "<b>Bob</b>" in h["html"]
        low = h["html"].lower()
        assert "<script" not in low and "alert(" not in low and "onclick" not in low and "onerror" not in low
        assert "javascript:" not in low and "tracker.example" not in low
        assert h["text"] == "Plain part: hello."
        raw = await call(b, "read_message", message_id=m_evil, format="raw", max_chars=1_000_000)
        assert raw["raw"] == evil_bytes.decode() and raw["next_offset"] is None
        assert "<script>" in raw["raw"]

        # 8. a ~200 KB message read in slices: contiguous, progressing, joined == full text
        body = "".join(f"Line {i:05d}: über die Brücke — the quick brown fox jumps over the lazy dog\n" for i in range(2600))
        assert len(body.encode()) > 200_000
        await inject(plain_mail("Big newsletter", body))
        (m_big,) = await search_ids(b, 'subject:"big newsletter"')
        full = await call(b, "read_message", message_id=m_big, max_chars=1_000_000)
        assert full["next_offset"] is None and full["truncated"] is False
        assert full["text"] == body.rstrip("\n")
        assert full["text_total_chars"] == len(full["text"])
        default = await call(b, "read_message", message_id=m_big)
        assert len(default["text"]) == 20_000 and default["next_offset"] == 20_000 and default["truncated"] is True
        parts, offset, calls = [], 0, 0
        while True:
            s = await call(b, "read_message", message_id=m_big, max_chars=50_000, offset=offset)
            assert s["offset"] == offset and s["text_total_chars"] == len(full["text"])
            assert 0 < len(s["text"]) <= 50_000
            parts.append(s["text"])
            calls += 1
            if s["next_offset"] is None:
                assert s["truncated"] is False
                break
            assert s["next_offset"] == offset + len(s["text"]) and s["truncated"] is True
            offset = s["next_offset"]
        assert calls == -(-len(full["text"]) // 50_000)
        assert "".join(parts) == full["text"]
        # raw slices the same way
        raw_parts, offset = [], 0
        while True:
            s = await call(b, "read_message", message_id=m_big, format="raw", max_chars=100_000, offset=offset)
            raw_parts.append(s["raw"])
            if s["next_offset"] is None:
                break
            assert s["next_offset"] == offset + len(s["raw"])
            offset = s["next_offset"]
        joined_raw = "".join(raw_parts)
        assert len(joined_raw) == s["text_total_chars"] and "Subject: Big newsletter" in joined_raw
