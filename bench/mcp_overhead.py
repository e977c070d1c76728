"""What the MCP layer costs: list_inboxes through `inbox-mcp serve` over stdio (the MCP SDK client,
as an MCP host would call it) against the same call made directly on the service in-process.

Usage: .venv/bin/python bench/mcp_overhead.py [--calls 300] [--inboxes 3]

Both sides read the same data home (a fresh temporary one, with one agent and --inboxes
inboxes). The server's SMTP listener binds a free port on 127.0.0.1; the server process is
stopped when the client context exits.

Rows:
  direct svc.list_inboxes   the service method in this process (DB read + pydantic result)
  direct + model_dump_json  the same plus JSON serialisation of the result
  MCP call_tool             list_inboxes through stdio: JSON-RPC, SDK dispatch, argument
                            validation, worker thread, result serialisation, client parsing
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DOMAIN, free_port, pct, settings_for, table, timed_calls  # noqa: E402

from inbox_mcp.service import build_service  # noqa: E402

BIN = Path(sys.executable).with_name("inbox-mcp")


async def timed_async(fn, n: int, warmup: int = 5) -> list[float]:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        await fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


async def over_stdio(env: dict[str, str], calls: int, expect: int) -> tuple[dict[str, list[float]], float]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=str(BIN), args=["serve"], env=env)
    t = time.perf_counter()
    async with Client(params, read_timeout_seconds=120) as c:
        startup = time.perf_counter() - t
        first = await c.call_tool("list_inboxes", {})
        assert not first.is_error, first
        got = len(first.structured_content["inboxes"])  # type: ignore[index]
        assert got == expect, f"server sees {got} inboxes, expected {expect}"
        res = {
            "MCP call_tool list_inboxes": await timed_async(lambda: c.call_tool("list_inboxes", {}), calls),
        }
    return res, startup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--inboxes", type=int, default=3)
    args = ap.parse_args()
    t_all = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="inbox-bench-mcp-"))
    try:
        port = free_port()
        svc = build_service(settings_for(home, port), listen=False)
        agent, key = svc.create_agent("a")
        for i in range(args.inboxes):
            svc.provision_inbox(agent, f"box{i}")
        results = {
            "direct svc.list_inboxes": timed_calls(lambda: svc.list_inboxes(agent), args.calls),
            "direct + model_dump_json": timed_calls(lambda: svc.list_inboxes(agent).model_dump_json(), args.calls),
        }
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INBOX_MCP_")},
            "INBOX_MCP_HOME": str(home),
            "INBOX_MCP_SMTP_LISTEN": f"127.0.0.1:{port}",
            "INBOX_MCP_DOMAIN": DOMAIN,
            "INBOX_MCP_API_KEY": key,
        }
        mcp_res, startup = asyncio.run(over_stdio(env, args.calls, args.inboxes))
        results.update(mcp_res)
        svc.backend.stop()
        svc.db.dispose()
    finally:
        shutil.rmtree(home, ignore_errors=True)

    base50 = pct(results["direct svc.list_inboxes"], 50)
    base99 = pct(results["direct svc.list_inboxes"], 99)
    rows = [
        [name, len(v), pct(v, 50), pct(v, 99), pct(v, 50) / base50, pct(v, 99) / base99]
        for name, v in results.items()
    ]
    print(f"list_inboxes, {args.inboxes} inboxes, {args.calls} calls each (after 5 warm-up calls); ms")
    print(table(["path", "calls", "p50 ms", "p99 ms", "p50 / direct", "p99 / direct"], rows))
    mcp = results["MCP call_tool list_inboxes"]
    print()
    print(f"MCP overhead: p50 {pct(mcp, 50) - base50:.2f} ms/call ({pct(mcp, 50) / base50:.1f}x direct), "
          f"p99 {pct(mcp, 99) - base99:.2f} ms/call ({pct(mcp, 99) / base99:.1f}x direct)")
    print(f"server start-up (spawn + initialize): {startup:.2f} s")
    print(f"total run time {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
