"""The command line (DESIGN.md §6). Each command is a thin adapter over a service method; errors
print as ``<code>: <sentence>`` on stderr with a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__
from .errors import InboxError, Unauthenticated
from .settings import Settings

log = logging.getLogger("inbox_mcp")
OUTBOX_INTERVAL_S = 5.0
FIRST_AGENT = "agent"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as e:
        first = e.errors()[0]
        raise SystemExit(f"invalid_argument: INBOX_MCP_{str(first['loc'][0]).upper()}: {first['msg']}") from None


def _service(settings: Settings, listen: bool = False):  # type: ignore[no-untyped-def]
    from .service import build_service

    return build_service(settings, listen=listen)


def client_config(settings: Settings, key: str, host: str, port: int) -> dict[str, Any]:
    exe = shutil.which("inbox-mcp") or "inbox-mcp"
    env = {"INBOX_MCP_API_KEY": key, "INBOX_MCP_HOME": str(settings.home)}
    if settings.database_url:
        env["INBOX_MCP_DATABASE_URL"] = settings.database_url
    return {
        "stdio": {"mcpServers": {"inbox": {"command": exe, "args": ["serve"], "env": env}}},
        "http": {
            "mcpServers": {
                "inbox": {"type": "http", "url": f"http://{host}:{port}/mcp", "headers": {"Authorization": f"Bearer {key}"}}
            }
        },
    }


def _print_first_agent(settings: Settings, name: str, key: str, host: str, port: int, out: Any) -> None:  # noqa: ANN401
    cfg = client_config(settings, key, host, port)
    print(f"Data home:    {settings.home}", file=out)
    print(f"Agent:        {name}", file=out)
    print(f"Agent key:    {key}   (shown once; stored only as a hash)", file=out)
    print(f"MCP endpoint: http://{host}:{port}/mcp   (streamable HTTP, Authorization: Bearer <key>)", file=out)
    print(f"SMTP inbound: {settings.smtp_listen} for *@{settings.domain}", file=out)
    print("MCP client config (stdio):", file=out)
    print(json.dumps(cfg["stdio"], indent=2), file=out)
    print("MCP client config (HTTP):", file=out)
    print(json.dumps(cfg["http"], indent=2), file=out)


def _bootstrap(service: Any, settings: Settings, host: str, port: int, out: Any) -> bool:  # noqa: ANN401
    """First run: a tenant and an agent, so that one command gives a usable server."""
    if service.list_agents():
        return False
    _ref, key = service.create_agent(FIRST_AGENT, "default")
    _print_first_agent(settings, FIRST_AGENT, key, host, port, out)
    return True


# --- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """Create the data home, database, first tenant and agent; print its key and client config.

    Example: inbox-mcp init --domain agents.example.com"""
    if args.domain:
        os.environ["INBOX_MCP_DOMAIN"] = args.domain
    settings = _settings()
    service = _service(settings)
    if not _bootstrap(service, settings, settings.http_host, settings.http_port, sys.stdout):
        print(f"{settings.home} is already initialised; create another agent with: inbox-mcp agents create NAME")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve MCP over stdio (the agent named by INBOX_MCP_API_KEY) or streamable HTTP (Bearer keys).

    Example: inbox-mcp serve --transport http --port 8025"""
    from .mcp_server import AppContext, build_server

    settings = _settings()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mail.log", "alembic", "httpx", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    host = args.host or settings.http_host
    port = args.port or settings.http_port
    service = _service(settings, listen=True)
    # stdout carries the stdio protocol: anything for a person goes to stderr.
    _bootstrap(service, settings, host, port, sys.stderr if args.transport == "stdio" else sys.stdout)
    fixed = None
    if args.transport == "stdio":
        try:
            fixed = service.authenticate(settings.api_key)
        except Unauthenticated:
            service.backend.stop()
            raise Unauthenticated(
                "INBOX_MCP_API_KEY is missing or not a valid agent key: a stdio server acts as one agent "
                "(create one with: inbox-mcp agents create NAME)"
            ) from None
    stop = threading.Event()
    worker = threading.Thread(target=_outbox_loop, args=(service, stop), name="outbox", daemon=True)
    worker.start()
    server = build_server(AppContext(service=service, fixed_agent=fixed))
    try:
        if args.transport == "stdio":
            server.run()
        else:
            _serve_http(server, service, host, port)
    finally:
        stop.set()
        service.backend.stop()
    return 0


def _outbox_loop(service: Any, stop: threading.Event) -> None:  # noqa: ANN401
    while not stop.wait(OUTBOX_INTERVAL_S):
        try:
            service.dispatch_due()
            service.expire_approvals()
        except Exception:  # keep retrying: a transient database error must not end the worker
            log.exception("outbox pass failed")


def _serve_http(server: Any, service: Any, host: str, port: int) -> None:  # noqa: ANN401
    import uvicorn

    from .web.auth import BearerGate

    app = BearerGate(server.streamable_http_app(host=host), service)
    print(f"inbox-mcp {__version__} serving MCP on http://{host}:{port}/mcp", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def cmd_agents_create(args: argparse.Namespace) -> int:
    """Create an agent and print its key (shown once).

    Example: inbox-mcp agents create support-bot --tenant acme --json"""
    settings = _settings()
    ref, key = _service(settings).create_agent(args.name, args.tenant)
    if args.json:
        print(json.dumps({"agent": ref.name, "tenant": ref.tenant, "api_key": key}))
    else:
        print(f"Agent {ref.name} (tenant {ref.tenant}) created.\nAgent key: {key}   (shown once; stored only as a hash)")
    return 0


def cmd_agents_list(args: argparse.Namespace) -> int:
    """List agents with tenant, verified and paused state, and inbox count.

    Example: inbox-mcp agents list --json"""
    rows = _service(_settings()).list_agents()
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            flags = ",".join(f for f in ("verified", "paused") if r[f]) or "-"
            print(f"{r['name']}\t{r['tenant']}\t{flags}\t{r['inboxes']} inboxes")
    return 0


def operator() -> str:
    """Who is acting, for the audit log: the login name of the person running the CLI."""
    try:
        return os.getlogin()
    except OSError:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name


def _state_command(action: str, done: str, doc: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        _service(_settings()).set_agent_state(args.name, action, operator())
        print(f"agent {args.name} {done}")
        return 0

    run.__doc__ = doc
    return run


cmd_agents_verify = _state_command(
    "verify", "verified: the verified caps tier applies",
    "Move an agent to the verified caps tier.\n\nExample: inbox-mcp agents verify support-bot",
)
cmd_agents_pause = _state_command(
    "pause", "paused: every send is refused",
    "Pause an agent: every send gets agent_paused; reads keep working.\n\nExample: inbox-mcp agents pause support-bot",
)
cmd_agents_resume = _state_command(
    "resume", "resumed", "Resume a paused agent.\n\nExample: inbox-mcp agents resume support-bot"
)


def cmd_policy_check(args: argparse.Namespace) -> int:
    """Validate every policy file and print the effective policy of each agent. Exits non-zero
    naming the file and key of the first problem in each broken file.

    Example: inbox-mcp policy check ./policies"""
    from .policy.loader import PolicyError, PolicyStore

    settings = _settings()
    directory = Path(args.dir) if args.dir else settings.policies
    store = PolicyStore(directory, settings.domain)
    agents: list[tuple[str, str]] = []
    if args.dir is None or (settings.home / "inbox.db").exists() or settings.database_url:
        agents = [(str(a["tenant"]), str(a["name"])) for a in _service(settings).list_agents()]
    known = {name for _, name in agents}
    for f in sorted((directory / "agents").glob("*.toml")):
        if f.stem not in known:
            agents.append(("default", f.stem))
    tenants = sorted({t for t, _ in agents} | {f.stem for f in (directory / "tenants").glob("*.toml")})
    errors = 0
    for tenant in tenants:
        result = store.effective(tenant, "")
        if isinstance(result, PolicyError):
            errors += 1
            print(f"error: tenant {tenant}: {result}", file=sys.stderr)
    report: dict[str, Any] = {}
    for tenant, name in sorted(agents, key=lambda x: x[1]):
        result = store.effective(tenant, name)
        if isinstance(result, PolicyError):
            errors += 1
            print(f"error: agent {name}: {result} -> every send of {name} is denied", file=sys.stderr)
            report[name] = {"tenant": tenant, "error": str(result)}
        else:
            report[name] = {"tenant": tenant, "policy": result.model_dump()}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, r in report.items():
            if "error" in r:
                print(f"{name} (tenant {r['tenant']}): DENY ALL — {r['error']}")
                continue
            p = r["policy"]
            caps = p["caps"]
            print(
                f"{name} (tenant {r['tenant']}): may send to {', '.join(p['recipients']['allow']) or 'nobody'}"
                + (f" except {', '.join(p['recipients']['block'])}" if p["recipients"]["block"] else "")
                + f"; unverified {caps['unverified']['per_minute']}/min {caps['unverified']['per_hour']}/h {caps['unverified']['per_day']}/day"
                + f", verified {caps['verified']['per_minute']}/min {caps['verified']['per_hour']}/h {caps['verified']['per_day']}/day"
                + f"; ≤{caps['max_recipients']} recipients, ≤{caps['max_message_bytes']} bytes"
                + ("; first contact held for approval" if p["approval"]["hold_first_contact"] else "")
            )
    print(f"{len(report)} agent(s), {errors} error(s) in {directory}", file=sys.stderr)
    return 2 if errors else 0


def _print_approval(a: Any, out: Any = None) -> None:  # noqa: ANN401
    print(json.dumps(a.model_dump(mode="json"), indent=2), file=out or sys.stdout)


def cmd_approvals_list(args: argparse.Namespace) -> int:
    """List held sends (pending by default).

    Example: inbox-mcp approvals list --status all --json"""
    rows = _service(_settings()).list_approvals(None if args.status == "all" else args.status)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in rows]))
    else:
        for r in rows:
            print(f"{r.approval_id}\t{r.status}\t{r.rule}\t{', '.join(r.to + r.cc + r.bcc)}\t{r.subject}")
    return 0


def cmd_approvals_show(args: argparse.Namespace) -> int:
    """Show one held send: recipients, subject, the rule that held it.

    Example: inbox-mcp approvals show apr_0123abcd"""
    _print_approval(_service(_settings()).show_approval(args.id))
    return 0


def cmd_approvals_approve(args: argparse.Namespace) -> int:
    """Approve a held send: it goes out once, counting against the agent's caps.

    Example: inbox-mcp approvals approve apr_0123abcd"""
    approval, result = _service(_settings()).approve(args.id, operator())
    print(f"approved {approval.approval_id}: {result.status} as {result.message_id}")
    return 0


def cmd_approvals_reject(args: argparse.Namespace) -> int:
    """Reject a held send: it never goes out.

    Example: inbox-mcp approvals reject apr_0123abcd --reason 'not our customer'"""
    approval = _service(_settings()).reject(args.id, operator(), args.reason)
    print(f"rejected {approval.approval_id}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Recompute the audit log's hash chain; exit non-zero naming the first broken record.

    Example: inbox-mcp audit verify"""
    from .policy import audit

    service = _service(_settings())
    with service.db.read() as s:
        n, broken = audit.verify(s)
    if broken:
        print(f"conflict: audit record {broken.seq} is broken: {broken.problem} ({n} records checked)", file=sys.stderr)
        return 1
    print(f"audit log intact: {n} records, chain verified")
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Write the audit log as JSON lines (one record per line, with its hashes).

    Example: inbox-mcp audit export > audit.jsonl"""
    from .policy import audit

    service = _service(_settings())
    with service.db.read() as s:
        for rec in audit.iter_records(s):
            sys.stdout.write(audit.as_json(rec) + "\n")
    return 0


def cmd_domains_dkim_keygen(args: argparse.Namespace) -> int:
    """Create a DKIM key for a domain (outbound mail from it is signed from then on) and print
    the DNS TXT record to publish.

    Example: inbox-mcp domains dkim-keygen agents.example.com --selector inbox"""
    from .mail.dkim_sign import generate_key, save_key

    settings = _settings()
    selector = args.selector or settings.dkim_selector
    path = settings.dkim_keys / f"{args.domain.lower()}.{selector}.pem"
    if path.exists() and not args.force:
        from .errors import Conflict

        raise Conflict(f"{path} exists: pass --force to replace the key (and republish the record)")
    key, record = generate_key(args.domain.lower(), selector, args.bits)
    saved = save_key(key, settings.dkim_keys)
    print(f"; private key saved to {saved} (mode 0600); publish this record, then mail from {key.domain} is signed")
    print(record)
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Run database migrations to the newest schema.

    Example: INBOX_MCP_DATABASE_URL=sqlite:////srv/inbox/inbox.db inbox-mcp db upgrade"""
    from .store.db import Database

    settings = _settings()
    db = Database(settings.url)
    db.upgrade()
    print(f"database at {settings.url} is at the newest schema")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inbox-mcp", description="Email inboxes for AI agents over MCP.")
    p.add_argument("--version", action="version", version=f"inbox-mcp {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(parent: Any, name: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:  # noqa: ANN401
        doc = fn.__doc__ or ""
        body, _, example = doc.partition("Example:")
        sp = parent.add_parser(
            name, help=doc.splitlines()[0], description=" ".join(body.split()),
            epilog="Example: " + " ".join(example.split()), formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sp.set_defaults(func=fn)
        return sp

    sp = add(sub, "init", cmd_init)
    sp.add_argument("--domain", help="mail domain of the inboxes (INBOX_MCP_DOMAIN)")
    sp = add(sub, "serve", cmd_serve)
    sp.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    sp.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    sp.add_argument("--port", type=int, help="HTTP port (default 8025)")

    agents = sub.add_parser("agents", help="manage agents").add_subparsers(dest="agents_command", required=True)
    sp = add(agents, "create", cmd_agents_create)
    sp.add_argument("name")
    sp.add_argument("--tenant", default="default")
    sp.add_argument("--json", action="store_true")
    sp = add(agents, "list", cmd_agents_list)
    sp.add_argument("--json", action="store_true")
    for name, fn in (("verify", cmd_agents_verify), ("pause", cmd_agents_pause), ("resume", cmd_agents_resume)):
        add(agents, name, fn).add_argument("name")

    policy = sub.add_parser("policy", help="policy files").add_subparsers(dest="policy_command", required=True)
    sp = add(policy, "check", cmd_policy_check)
    sp.add_argument("dir", nargs="?", help="policy directory (default: INBOX_MCP_POLICY_DIR or <home>/policies)")
    sp.add_argument("--json", action="store_true")

    approvals = sub.add_parser("approvals", help="the approval queue").add_subparsers(dest="approvals_command", required=True)
    sp = add(approvals, "list", cmd_approvals_list)
    sp.add_argument("--status", choices=["pending", "approved", "rejected", "expired", "all"], default="pending")
    sp.add_argument("--json", action="store_true")
    for name, fn in (("show", cmd_approvals_show), ("approve", cmd_approvals_approve)):
        add(approvals, name, fn).add_argument("id")
    sp = add(approvals, "reject", cmd_approvals_reject)
    sp.add_argument("id")
    sp.add_argument("--reason", required=True)

    audit_p = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_command", required=True)
    add(audit_p, "verify", cmd_audit_verify)
    add(audit_p, "export", cmd_audit_export)

    domains = sub.add_parser("domains", help="mail domains").add_subparsers(dest="domains_command", required=True)
    sp = add(domains, "dkim-keygen", cmd_domains_dkim_keygen)
    sp.add_argument("domain")
    sp.add_argument("--selector", help="DKIM selector (default INBOX_MCP_DKIM_SELECTOR, 'inbox')")
    sp.add_argument("--bits", type=int, default=2048)
    sp.add_argument("--force", action="store_true", help="replace an existing key")

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_command", required=True)
    add(db, "upgrade", cmd_db_upgrade)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InboxError as e:
        print(str(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
