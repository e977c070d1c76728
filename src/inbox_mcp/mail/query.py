"""The search query language: a Gmail-like string parsed into a small AST (`Query` of `Term`s).

The parser is pure; the store compiles the AST (SQLite FTS5 + SQL today, PostgreSQL later).
The section below is written to be pasted into the README.

Search syntax
-------------

| syntax | finds messages… | example |
|---|---|---|
| `word` | containing the word in the subject, body, addresses or attachment names (whole words, any case) | `invoice` |
| `word*` | containing a word that starts with `word` | `invoi*` |
| `"a phrase"` | containing these words in this order | `"quarterly report"` |
| `from:` `to:` `cc:` | whose sender / recipients / cc match the name or address | `from:alice@example.com`, `to:"Bob Smith"` |
| `subject:` | with these words in the subject | `subject:"weekly sync"` |
| `filename:` | with an attachment of this name | `filename:report.pdf` |
| `label:` | carrying this label | `label:receipts`, `label:"my label"` |
| `in:` | in a system folder: `inbox` `sent` `drafts` `trash` `spam` | `in:sent` |
| `is:unread` `is:read` | unread / read | `is:unread` |
| `has:attachment` | with at least one attachment | `has:attachment` |
| `after:` `before:` | dated on or after / strictly before a day (`YYYY-MM-DD`, UTC) | `after:2026-01-01 before:2026-02-01` |
| `-` before any term | *not* matching that term | `-from:bob -"out of office" -label:done` |

All terms must match (AND); a bare `AND` is allowed and ignored. `OR`, `NOT` and parentheses are
not supported: run two searches, or put `-` before a term to exclude it. Operator names are
case-insensitive; quote a value that has spaces. Words made only of punctuation or emoji are
ignored, because the index holds only letters and digits. Text with a colon that is not an
operator (`10:30`, `https://example.com`) is searched as text; any other `word:value` is an
error, so a typo such as `form:alice` is reported rather than silently searched for. Queries are
at most 1000 characters; error positions count characters from 0.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from inbox_mcp.errors import InvalidArgument

SYNTAX_HELP = (
    "Search syntax (Gmail-like; all terms must match): words, word* (prefix), \"exact phrase\"; "
    "from: to: cc: (name or address), subject:, filename:, label:NAME, "
    "in:inbox|sent|drafts|trash|spam, is:unread|read, has:attachment, "
    "after:YYYY-MM-DD (on or after), before:YYYY-MM-DD (earlier); "
    "quote values with spaces: subject:\"weekly report\"; "
    "- excludes: -from:bob -\"out of office\". "
    "No OR/NOT/parentheses. "
    "Example: from:alice has:attachment after:2026-01-01 -label:done"
)

MAX_QUERY_LENGTH = 1000

Field = Literal[
    "text", "from", "to", "cc", "subject", "label", "filename", "is", "has", "in", "before", "after"
]

OPERATORS: tuple[str, ...] = (
    "from", "to", "cc", "subject", "label", "filename", "is", "has", "in", "before", "after"
)
IN_FOLDERS: tuple[str, ...] = ("inbox", "sent", "drafts", "trash", "spam")

# The store's FTS5 table has exactly these columns; subject:/filename: filter on one of them.
FTS5_COLUMNS: tuple[str, ...] = ("subject", "body", "addresses", "filenames")
_FTS5_COLUMN_OF_FIELD = {"text": None, "subject": "subject", "filename": "filenames"}

_OPERATOR_WORD = re.compile(r"([A-Za-z]+):(.*)", re.DOTALL)
_DATE = re.compile(r"([0-9]{4})([-/])([0-9]{2})\2([0-9]{2})")
_ALLOWED_CONTROL = "\t\n\r"


@dataclass(frozen=True)
class Term:
    """One condition. `value` is normalised: ISO date for before/after, "unread"|"read" for is,
    "attachment" for has, a lowercase folder for in; a bare text/subject/filename value keeps a
    trailing `*` that asks for a prefix match."""

    field: Field
    value: str
    phrase: bool  # the value was double-quoted
    negated: bool


@dataclass(frozen=True)
class Query:
    terms: tuple[Term, ...]

    def positive_text(self) -> list[Term]:
        """Non-negated text and subject terms: what a snippet highlighter should look for."""
        return [t for t in self.terms if t.field in ("text", "subject") and not t.negated]


def parse_query(q: str) -> Query:
    """Parse a search string; raise InvalidArgument naming the problem and where it is."""
    if not isinstance(q, str):
        raise InvalidArgument("query must be a string")
    if len(q) > MAX_QUERY_LENGTH:
        raise InvalidArgument(
            f"query is too long ({len(q)} characters; the limit is {MAX_QUERY_LENGTH})"
        )
    _reject_control_characters(q)
    if not q.strip():
        raise InvalidArgument("query is empty")

    terms: list[Term] = []
    pos = 0
    while (pos := _skip_space(q, pos)) < len(q):
        start = pos
        negated = q[pos] == "-"
        if negated:
            pos += 1
            if pos == len(q) or q[pos].isspace():
                continue  # a dash standing alone ("invoice - paid") negates nothing
        term, pos = _read_term(q, pos, start, negated)
        if term is not None:
            terms.append(term)
    if not terms:
        raise InvalidArgument(
            "query has no searchable terms (a word needs at least one letter or digit)"
        )
    return Query(tuple(terms))


def _reject_control_characters(q: str) -> None:
    # NUL ends an FTS5 string early and lone surrogates cannot be encoded for SQLite.
    for i, ch in enumerate(q):
        category = unicodedata.category(ch)
        if category == "Cs" or (category == "Cc" and ch not in _ALLOWED_CONTROL):
            raise InvalidArgument(
                f"query contains a control character (U+{ord(ch):04X}) at position {i}"
            )


def _skip_space(q: str, pos: int) -> int:
    while pos < len(q) and q[pos].isspace():
        pos += 1
    return pos


def _bare_end(q: str, pos: int) -> int:
    """A bare word runs to the next whitespace or double quote."""
    while pos < len(q) and not q[pos].isspace() and q[pos] != '"':
        pos += 1
    return pos


def _read_quoted(q: str, pos: int) -> tuple[str, int]:
    end = q.find('"', pos + 1)
    if end == -1:
        raise InvalidArgument(f"unterminated quote starting at position {pos}")
    return q[pos + 1 : end], end + 1


def _read_term(q: str, pos: int, start: int, negated: bool) -> tuple[Term | None, int]:
    if q[pos] == '"':
        value, pos = _read_quoted(q, pos)
        return _text_term(value.strip(), phrase=True, negated=negated), pos

    end = _bare_end(q, pos)
    word = q[pos:end]
    match = _OPERATOR_WORD.fullmatch(word)
    if match:
        name, rest = match.group(1).lower(), match.group(2)
        quoted_value_follows = rest == "" and end < len(q) and q[end] == '"'
        if name in OPERATORS:
            if quoted_value_follows:
                value, end = _read_quoted(q, end)
                return _operator_term(name, value, True, negated, start), end
            return _operator_term(name, rest, False, negated, start), end
        # URLs and "Re:"-style words are text; anything else that looks like an operator is
        # far more likely a typo (form:alice) than a search for that literal text.
        if "//" not in rest and (rest or quoted_value_follows):
            known = ", ".join(f"{op}:" for op in OPERATORS)
            raise InvalidArgument(
                f"unknown search operator '{match.group(1)}:' at position {start} "
                f"(known: {known}); put text with a colon in double quotes to search for it"
            )
    if not negated and word in ("OR", "NOT"):
        hint = "run one search per alternative" if word == "OR" else "put - before a term"
        raise InvalidArgument(
            f"'{word}' at position {start} is not supported: terms are always combined with "
            f"AND; {hint}, or quote \"{word}\" to search for the word"
        )
    if not negated and word == "AND":
        return None, end
    return _text_term(word, phrase=False, negated=negated), end


def _has_letter_or_digit(value: str) -> bool:
    return any(ch.isalnum() for ch in value)


def _text_term(value: str, *, phrase: bool, negated: bool) -> Term | None:
    # Punctuation and emoji never reach the index, so a word made only of them matches
    # nothing; dropping it keeps "Tom & Jerry" meaning what the user meant.
    if not _has_letter_or_digit(value):
        return None
    return Term("text", value, phrase, negated)


def _operator_term(name: str, value: str, phrase: bool, negated: bool, start: int) -> Term:
    value = value.strip()
    if name in ("from", "to", "cc") and not phrase:
        value = value.rstrip("*")  # addresses match by substring already
    if not value:
        raise InvalidArgument(
            f"{name}: at position {start} needs a value, e.g. {_EXAMPLES[name]}"
        )
    if not phrase and value[0] in "({":
        raise InvalidArgument(
            f"{name}: at position {start}: grouping with parentheses or braces is not "
            f"supported; write one {name}: term per value (terms are combined with AND)"
        )
    if name in ("before", "after"):
        value = _parse_date(name, value)
    elif name == "is":
        value = _one_of(name, value, {"unread": "unread", "read": "read"})
    elif name == "has":
        value = _one_of(name, value, {"attachment": "attachment", "attachments": "attachment"})
    elif name == "in":
        known = {folder: folder for folder in IN_FOLDERS}
        value = _one_of(name, value, known, hint="; use label: for other labels")
    elif name in ("subject", "filename") and not _has_letter_or_digit(value):
        raise InvalidArgument(
            f"{name}: at position {start} has no letters or digits to search for: '{value}'"
        )
    return Term(name, value, phrase, negated)  # type: ignore[arg-type]


_EXAMPLES = {
    "from": "from:alice@example.com",
    "to": "to:bob@example.com",
    "cc": "cc:carol@example.com",
    "subject": 'subject:"quarterly report"',
    "label": 'label:"my label"',
    "filename": "filename:report.pdf",
    "is": "is:unread",
    "has": "has:attachment",
    "in": "in:sent",
    "before": "before:2026-01-31",
    "after": "after:2026-01-01",
}


def _one_of(name: str, value: str, allowed: dict[str, str], hint: str = "") -> str:
    normalised = allowed.get(value.lower())
    if normalised is None:
        options = list(dict.fromkeys(allowed.values()))
        choices = " or ".join(options) if len(options) <= 2 else "one of " + ", ".join(options)
        raise InvalidArgument(f"{name}: expects {choices}, got '{value}'{hint}")
    return normalised


def _parse_date(name: str, value: str) -> str:
    match = _DATE.fullmatch(value)
    try:
        if match is None:
            raise ValueError
        year, _, month, day = match.groups()
        return datetime.date(int(year), int(month), int(day)).isoformat()
    except ValueError:
        raise InvalidArgument(f"{name}: expects YYYY-MM-DD, got '{value}'") from None


# --- FTS5 compilation (used by the SQLite store) ------------------------------------------------


def fts5_phrase(value: str) -> str:
    """`value` as one FTS5 string: every character is literal, so no input is an FTS5 operator.
    NUL would end the string inside SQLite, so it becomes a space."""
    return '"' + value.replace('"', '""').replace("\x00", " ") + '"'


def _fts5_operand(term: Term) -> str:
    value, prefix = term.value, ""
    if not term.phrase and value.endswith("*") and value.rstrip("*"):
        value, prefix = value.rstrip("*"), "*"
    operand = fts5_phrase(value) + prefix
    column = _FTS5_COLUMN_OF_FIELD[term.field]
    return f"{column} : {operand}" if column else operand


def fts5_split(terms: Iterable[Term]) -> tuple[str | None, str | None]:
    """(positive, negative) MATCH strings for the full-text terms (text, subject:, filename:).

    The store selects `rowid IN (… MATCH positive) AND rowid NOT IN (… MATCH negative)`,
    leaving out a side that is None; (None, None) means no full-text condition. FTS5 cannot
    start an expression with NOT, so a query of only exclusions needs the negative side apart.
    Terms are joined with explicit AND / OR (never juxtaposition, which treats a phrase without
    tokens differently).
    """
    positive: list[str] = []
    negative: list[str] = []
    for term in terms:
        if term.field in _FTS5_COLUMN_OF_FIELD:
            (negative if term.negated else positive).append(_fts5_operand(term))
    return (" AND ".join(positive) or None, " OR ".join(negative) or None)


def fts5_match_expression(terms: Iterable[Term]) -> str | None:
    """One MATCH string for the full-text terms, None if there are none.

    Raises ValueError when every full-text term is negated (FTS5 has no "match all" to subtract
    from); a store that accepts arbitrary queries should use `fts5_split` instead.
    """
    positive, negative = fts5_split(terms)
    if positive is None and negative is not None:
        raise ValueError("only negated full-text terms; use fts5_split")
    if negative is None:
        return positive
    return f"({positive}) NOT ({negative})"
