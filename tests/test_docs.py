"""The README documents the whole public contract: every MCP tool, every CLI command, every
environment setting. Like sqlite-utils' test_docs: adding one without documenting it fails."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from inbox_mcp.cli import build_parser
from inbox_mcp.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _tool_names() -> list[str]:
    from inbox_mcp.mcp_server import AppContext, build_server

    server = build_server(AppContext(service=None, fixed_agent=None))  # type: ignore[arg-type]
    return sorted(t.name for t in anyio.run(server.list_tools))


def _commands() -> list[str]:
    parser = build_parser()
    out = []
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        nested = [a for a in p._actions if a.dest.endswith("_command")]
        if nested:
            out += [f"{name} {n}" for n in nested[0].choices]  # type: ignore[union-attr]
        else:
            out.append(name)
    return out


@pytest.mark.parametrize("tool", _tool_names())
def test_readme_documents_tool(tool: str) -> None:
    assert re.search(rf"\|\s*`{tool}`\s*\|", README), f"MCP tool {tool} is missing from the README's tool table"


@pytest.mark.parametrize("command", _commands())
def test_readme_documents_command(command: str) -> None:
    assert f"inbox-mcp {command}" in README, f"CLI command 'inbox-mcp {command}' is missing from the README"


@pytest.mark.parametrize("command", _commands())
def test_cli_help_ends_with_example(command: str) -> None:
    parser = build_parser()
    words = command.split()
    sub = next(a for a in parser._actions if a.dest == "command").choices[words[0]]  # type: ignore[union-attr]
    if len(words) == 2:
        sub = next(a for a in sub._actions if a.dest.endswith("_command")).choices[words[1]]  # type: ignore[union-attr]
    last = sub.format_help().strip().splitlines()[-1]
    assert last.startswith("Example: ") and "inbox-mcp " in last, f"help of {command} does not end with an example"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_readme_documents_setting(field: str) -> None:
    var = f"INBOX_MCP_{field.upper()}"
    short = "_" + field.upper().split("_", 1)[1] if "_" in field else var
    assert var in README or (short in README and field.split("_")[0] in ("smtp", "imap")), f"{var} is missing from the README"


def test_every_tool_describes_itself_and_its_arguments() -> None:
    from inbox_mcp.mcp_server import AppContext, build_server

    server = build_server(AppContext(service=None, fixed_agent=None))  # type: ignore[arg-type]
    for tool in anyio.run(server.list_tools):
        assert tool.description and len(tool.description) > 30, tool.name
        assert tool.output_schema, f"{tool.name} has no output schema"
        for arg, schema in (tool.input_schema.get("properties") or {}).items():
            assert schema.get("description"), f"{tool.name}.{arg} has no description"


def test_readme_error_table_is_the_error_tree() -> None:
    """Every stable code in the README has a class in errors.py and vice versa, each with its
    own code and an HTTP status that REST can use (DESIGN.md §4)."""
    from inbox_mcp.errors import ALL_ERRORS

    table = README.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert documented == set(codes)
    assert all(400 <= cls.http_status < 600 for cls in ALL_ERRORS)
