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


def _flag_command(flag: dict[str, Any], done: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        _service(_settings()).set_agent_flag(args.name, **flag)
        print(f"agent {args.name} {done}")
        return 0

    return run


cmd_agents_verify = _flag_command({"verified": True}, "verified: the verified caps tier applies")
cmd_agents_verify.__doc__ = "Move an agent to the verified caps tier.\n\nExample: inbox-mcp agents verify support-bot"
cmd_agents_pause = _flag_command({"paused": True, "paused_reason": "paused by an operator"}, "paused: every send is refused")
cmd_agents_pause.__doc__ = "Pause an agent: every send gets agent_paused; reads keep working.\n\nExample: inbox-mcp agents pause support-bot"
cmd_agents_resume = _flag_command({"paused": False, "paused_reason": None}, "resumed")
cmd_agents_resume.__doc__ = "Resume a paused agent.\n\nExample: inbox-mcp agents resume support-bot"


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
        sp = parent.add_parser(name, help=doc.splitlines()[0], description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
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
