"""The streamable HTTP transport end to end: bearer-key authentication in front of the MCP
endpoint, per-request agent identity, isolation between agents, and a full send → read."""

from __future__ import annotations

import base64
import json
import os

import anyio
import httpx2
import pytest
from conftest import Home, HttpServer, call, call_error, http_client

pytestmark = pytest.mark.anyio

DOMAIN = "agents.test"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-http-test", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def post_initialize(url: str, headers: dict[str, str]) -> httpx2.Response:
    return httpx2.post(url, content=json.dumps(INITIALIZE), headers={**MCP_HEADERS, **headers}, timeout=30)


def assert_unauthenticated(resp: httpx2.Response) -> None:
    assert resp.status_code == 401, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["error"] == "unauthenticated", body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert resp.headers.get("www-authenticate", "").lower().startswith("bearer")


async def test_http_auth_isolation_and_mail(home: Home) -> None:
    key_a, key_b = home.create_agent("alice"), home.create_agent("bob")
    with HttpServer(home) as srv:
        # --- authentication, with a raw client so nothing is hidden ---------------------------
        bad_headers = [
            {},  # no Authorization header
            {"Authorization": "Bearer imk_000000000000_not-a-real-secret"},  # wrong key, valid shape
            {"Authorization": f"Bearer {key_a}x"},  # a real key, altered
            {"Authorization": "Bearer"},  # scheme, no key
            {"Authorization": "Bearer not-even-a-key"},
            {"Authorization": f"Basic {base64.b64encode(f'alice:{key_a}'.encode()).decode()}"},
            {"Authorization": key_a},  # no scheme
        ]
        for headers in bad_headers:
            resp = await anyio.to_thread.run_sync(post_initialize, srv.url, headers)
            assert_unauthenticated(resp)
        # the key is not echoed back in the refusal
        resp = await anyio.to_thread.run_sync(post_initialize, srv.url, {"Authorization": f"Bearer {key_a}x"})
        assert key_a not in resp.text

        # a valid key passes the gate (the MCP layer answers, not 401)
        resp = await anyio.to_thread.run_sync(post_initialize, srv.url, {"Authorization": f"Bearer {key_a}"})
        assert resp.status_code == 200, (resp.status_code, resp.text)

        # the MCP client with a wrong key fails to connect at all
        with pytest.raises(Exception):  # noqa: B017 - whatever the SDK's transport raises
            async with http_client(srv.url, "imk_000000000000_wrong") as c:
                await call(c, "list_inboxes")

        # --- two agents over HTTP: tools work; each sees only its own ------------------------
        async with http_client(srv.url, key_a) as a, http_client(srv.url, key_b) as b:
            ia = await call(a, "provision_inbox", username="alice", display_name="Alice over HTTP")
            ib = await call(b, "provision_inbox", username="bob")
            assert ia["address"] == f"alice@{DOMAIN}" and ib["address"] == f"bob@{DOMAIN}"
            assert [i["inbox_id"] for i in (await call(a, "list_inboxes"))["inboxes"]] == [ia["inbox_id"]]
            assert [i["inbox_id"] for i in (await call(b, "list_inboxes"))["inboxes"]] == [ib["inbox_id"]]

            blob = os.urandom(4096) + bytes(range(256))
            sent = await call(
                a, "send_message", inbox_id=ia["inbox_id"], to=[ib["address"]], subject="Über HTTP ✓",
                text="Sent over streamable HTTP.",
                attachments=[{"filename": "data.bin", "content_type": "application/octet-stream",
                              "content_base64": base64.b64encode(blob).decode()}],
            )
            assert sent["status"] == "sent" and sent["delivered"] == [ib["address"]]

            r = await call(b, "wait_for_message", inbox_id=ib["inbox_id"], since="1970-01-01T00:00:00Z", timeout_s=10)
            assert r["status"] == "received"
            msg = await call(b, "read_message", message_id=r["message"]["message_id"])
            assert msg["subject"] == "Über HTTP ✓" and msg["text"] == "Sent over streamable HTTP."
            assert msg["from"] == ia["address"] and msg["from_name"] == "Alice over HTTP"
            att = msg["attachments"][0]
            got = await call(b, "get_attachment", message_id=msg["message_id"], attachment_id=att["attachment_id"])
            assert base64.b64decode(got["content_base64"]) == blob
            res = await b.read_resource(got["resource_uri"])
            assert base64.b64decode(res.contents[0].blob) == blob

            rep = await call(b, "reply", message_id=msg["message_id"], text="Received, thanks.")
            thread = await call(a, "get_thread", thread_id=sent["thread_id"])
            assert [m["subject"] for m in thread["messages"]] == ["Über HTTP ✓", "Re: Über HTTP ✓"]
            assert thread["messages"][1]["reply_text"] == "Received, thanks."

            # bob cannot see or touch alice's inbox, messages, threads or attachments
            a_att = (await call(a, "read_message", message_id=sent["message_id"]))["attachments"][0]["attachment_id"]
            before = await call(a, "list_threads", inbox_id=ia["inbox_id"])
            for tool, args in [
                ("list_threads", {"inbox_id": ia["inbox_id"]}),
                ("read_message", {"message_id": sent["message_id"]}),
                ("get_thread", {"thread_id": sent["thread_id"]}),
                ("get_attachment", {"message_id": sent["message_id"], "attachment_id": a_att}),
                ("update_labels", {"thread_id": sent["thread_id"], "add": ["trash"]}),
                ("send_message", {"inbox_id": ia["inbox_id"], "to": [ib["address"]], "subject": "spoof"}),
                ("search", {"query": "http", "inbox_id": ia["inbox_id"]}),
            ]:
                err = await call_error(b, tool, **args)
                assert err.startswith("not_found:"), (tool, err)
            assert await call(a, "list_threads", inbox_id=ia["inbox_id"]) == before
            # alice does not see bob's sent reply either (it is bob's copy)
            assert (await call_error(a, "read_message", message_id=rep["message_id"])).startswith("not_found:")
            # bob's search of his own mail does not reach alice's
            assert {m["inbox_id"] for m in (await call(b, "search", query="http", limit=100))["messages"]} == {ib["inbox_id"]}

        # --- after all that, the gate still refuses the unauthenticated ----------------------
        resp = await anyio.to_thread.run_sync(post_initialize, srv.url, {})
        assert_unauthenticated(resp)
