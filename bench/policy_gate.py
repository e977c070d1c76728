"""What the policy gate costs.

1. The decision alone: ``decide()`` (pure) on a realistic request, against a no-op gate that
   returns "allow" in the same run: decisions/s, median and p99 µs, and the ratio.
2. Content scanning (the detectors and patterns over subject, body, attachments), the other
   CPU part of a decision.
3. The whole gate inside a real send: sends/s through ``Service.send_message`` with the real
   gate, against the same service whose gate always allows (no counters, no scan, no audit).

    .venv/bin/python bench/policy_gate.py [--n 20000] [--sends 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import REPO, free_port, pct, table  # sets up sys.path first

from inbox_mcp.policy.content import ContentItem, scan
from inbox_mcp.policy.engine import ALLOW, Counters, SendRequest, Window, decide
from inbox_mcp.policy.loader import PolicyStore
from inbox_mcp.service import Service, build_service
from inbox_mcp.settings import Settings

BODY = (
    "Hi Bob,\n\nFollowing up on the quarterly report: the numbers for order 48213 look right, "
    "and the invoice total is $1,234.56. Call me at +1 415 555 0100 if anything is off.\n\n"
) * 8


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def bench_decisions(n: int) -> list[list[str]]:
    store = PolicyStore(REPO / "policies", "agents.test")
    policy = store.effective("default", "bench")
    findings = scan(ContentItem("Quarterly report", BODY, None, []), list(policy.content.detectors), [], [])  # type: ignore[union-attr]
    req = SendRequest(
        agent="bench", verified=False, paused=False, recipients=["bob@agents.test", "carol@agents.test"],
        size=4000, new_recipients=[], findings=findings,
    )
    counters = Counters(minute=Window(1, 30), hour=Window(3, 1000), day=Window(4, 50000))
    noop = lambda: ALLOW  # noqa: E731
    real = lambda: decide(policy, req, counters, "policies/default.toml")  # type: ignore[arg-type]  # noqa: E731
    loaded = lambda: decide(store.effective("default", "bench"), req, counters, "policies/default.toml")  # noqa: E731
    scanning = lambda: scan(ContentItem("Quarterly report", BODY, None, []), list(policy.content.detectors), [], [])  # type: ignore[union-attr]  # noqa: E731
    rows = []
    base = None
    for name, fn in (("no-op gate", noop), ("decide()", real), ("decide() + policy stat/cache", loaded), ("content scan, 1.6 KB body", scanning)):
        timed(fn, n // 10)  # warm up
        t = timed(fn, n)
        med = pct(t, 50)
        base = base or med
        rows.append([name, f"{1e6 / med:,.0f}", f"{med:.2f}", f"{pct(t, 99):.2f}", f"{med / base:.1f}x"])
    return rows


class NoGate(Service):
    """The same service with a gate that always allows: what a send costs without policy."""

    def _decide(self, s, agent, out, prep, approved=False):  # type: ignore[no-untyped-def,override]
        return ALLOW


def bench_sends(n: int) -> list[list[str]]:
    rows = []
    base = None
    for name, cls in (("send, no-op gate", NoGate), ("send, real gate", Service)):
        with tempfile.TemporaryDirectory() as tmp:
            policy_dir = Path(tmp) / "policies"
            policy_dir.mkdir()
            text = (REPO / "policies" / "default.toml").read_text()
            for a, b in (("per_minute = 5\n", "per_minute = 100000\n"), ("per_hour = 10\n", "per_hour = 100000\n"),
                         ("per_day = 10\n", "per_day = 100000\n"), ("sends_per_10_minutes = 50", "sends_per_10_minutes = 100000"),
                         ("duplicate_window_minutes = 10", "duplicate_window_minutes = 0"),
                         ("per_minute = 30\n", "per_minute = 100000\n"), ("per_hour = 500\n", "per_hour = 100000\n"),
                         ("per_day = 2000\n", "per_day = 100000\n")):
                text = text.replace(a, b)
            (policy_dir / "default.toml").write_text(text)
            settings = Settings(home=Path(tmp) / "home", domain="agents.test", policy_dir=policy_dir, smtp_listen=f"127.0.0.1:{free_port()}")
            svc = build_service(settings, listen=False)
            svc.__class__ = cls
            alice, _ = svc.create_agent("alice")
            bob, _ = svc.create_agent("bob")
            a, b = svc.provision_inbox(alice, "alice"), svc.provision_inbox(bob, "bob")
            for i in range(10):
                svc.send_message(alice, a.inbox_id, [b.address], f"warm {i}", text=BODY + str(i))
            t = timed(lambda: svc.send_message(alice, a.inbox_id, [b.address], "Quarterly report", text=BODY + str(time.time_ns())), n)
            med = pct(t, 50)
            base = base or med
            rows.append([name, f"{1e6 / med:,.0f}", f"{med / 1000:.2f}", f"{pct(t, 99) / 1000:.2f}", f"{med / base:.2f}x"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--sends", type=int, default=300)
    args = ap.parse_args()
    print(table(["decision path", "per second", "median µs", "p99 µs", "vs no-op"], bench_decisions(args.n)))
    print()
    print(table(["full send (local delivery)", "sends/s", "median ms", "p99 ms", "vs no-op gate"], bench_sends(args.sends)))


if __name__ == "__main__":
    main()
