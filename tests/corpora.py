"""Where the test mail corpora live: mail written by other projects, fetched offline by
scripts/fetch-corpora.sh (mail-parser, talon, enmime, CPython's test_email).

A missing corpus is an error, not a skip: a test run that silently skipped every real-world
message would pass while testing nothing.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPORA = ("mail-parser", "talon", "enmime", "cpython")


def corpora_root() -> Path:
    configured = os.environ.get("INBOX_MCP_CORPORA")
    return Path(configured) if configured else REPO_ROOT / ".cache" / "corpora"


def corpus_dir(name: str) -> Path:
    """The directory of one corpus; raises with the fix if it has not been fetched."""
    if name not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    path = corpora_root() / name
    if not path.is_dir() or not any(path.iterdir()):
        raise RuntimeError(
            f"mail corpus {name!r} not found at {path}. Run `bash scripts/fetch-corpora.sh` "
            f"(or set INBOX_MCP_CORPORA to a directory that holds it)."
        )
    return path


def corpus_files(name: str) -> list[Path]:
    """Every mail-like file of a corpus, sorted (talon's Python test module excluded)."""
    return sorted(p for p in corpus_dir(name).rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc"))


def all_corpus_files() -> list[Path]:
    return [p for name in CORPORA for p in corpus_files(name)]


def talon_plain_cases() -> list[tuple[str, str, str]]:
    """(test name, message body, talon's expected reply) from talon's text_quotations_test.py.

    Only the direct ``eq_(EXPECTED, quotations.extract_from_plain(BODY))`` assertions whose
    arguments are string literals (or a local variable bound to one) are taken; tests that
    patch talon's internals are not.
    """
    source = (corpus_dir("talon") / "text_quotations_test.py").read_text(encoding="utf-8")
    cases: list[tuple[str, str, str]] = []
    for func in ast.parse(source).body:
        if not isinstance(func, ast.FunctionDef) or func.decorator_list:
            continue
        bindings: dict[str, str] = {}

        def resolve(node: ast.AST) -> str | None:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            if isinstance(node, ast.Name):
                return bindings.get(node.id)
            return None

        # Walk statements in order so a variable reassigned between assertions resolves to
        # the value it had at that assertion.
        n = 0
        for stmt in func.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = resolve(stmt.value)
                if value is not None:
                    bindings[stmt.targets[0].id] = value
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "eq_" and len(call.args) >= 2):
                continue
            inner = call.args[1]
            is_extract = isinstance(inner, ast.Call) and getattr(inner.func, "attr", None) == "extract_from_plain"
            if not (is_extract and inner.args):
                continue
            expected, body = resolve(call.args[0]), resolve(inner.args[0])
            if expected is not None and body is not None:
                n += 1
                cases.append((f"{func.name}#{n}", body, expected))
    return cases
