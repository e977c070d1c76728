"""Shared fixtures: a fresh data home per test, free ports, the real CLI as a subprocess, and the
MCP SDK's own client talking to ``inbox-mcp serve`` over stdio or streamable HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("inbox-mcp")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open within {timeout} s")


class Home:
    """One data home: its environment, and helpers to run the CLI against it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.smtp_port = free_port()
        (path / "attachments").mkdir(parents=True, exist_ok=True)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INBOX_MCP_")},
            "INBOX_MCP_HOME": str(path),
            "INBOX_MCP_SMTP_LISTEN": f"127.0.0.1:{self.smtp_port}",
            "INBOX_MCP_DOMAIN": "agents.test",
            # No DNS in tests unless a test brings its own records (INBOX_MCP_AUTH_DNS=<file>).
            "INBOX_MCP_AUTH_DNS": "off",
        }

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN), *args], env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"inbox-mcp {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def create_agent(self, name: str, tenant: str = "default") -> str:
        return json.loads(self.cli("agents", "create", name, "--tenant", tenant, "--json").stdout)["api_key"]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    h = Home(tmp_path / "home")
    h.cli("db", "upgrade")
    yield h


@asynccontextmanager
async def stdio_client(home: Home, key: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[object]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=str(BIN), args=["serve"], env={**home.env, "INBOX_MCP_API_KEY": key, **(extra_env or {})}
    )
    async with Client(params, read_timeout_seconds=120) as client:
        yield client


def stop_process(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class HttpServer:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> HttpServer:
        self.log = open(self.home.path / f"http-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--transport", "http", "--port", str(self.port)],
            env=self.home.env, stdout=self.log, stderr=subprocess.STDOUT, text=True,
        )
        wait_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop_process(self.proc)
        self.log.close()


@asynccontextmanager
async def http_client(url: str, key: str) -> AsyncIterator[object]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http), read_timeout_seconds=120) as client:
            yield client


async def call(client: object, tool: str, **args: object) -> dict:
    """Call a tool that must succeed; return its structured content."""
    r = await client.call_tool(tool, args)  # type: ignore[attr-defined]
    assert not r.is_error, f"{tool} failed: {r.content[0].text}"
    return r.structured_content


async def call_error(client: object, tool: str, **args: object) -> str:
    """Call a tool that must fail; return the error text (it starts with the stable code)."""
    r = await client.call_tool(tool, args)  # type: ignore[attr-defined]
    assert r.is_error, f"{tool} unexpectedly succeeded: {r.structured_content}"
    return r.content[0].text
