"""The search query language: parse results, errors, and FTS5 expressions run on real SQLite."""

from __future__ import annotations

import random
import sqlite3

import pytest

import inbox_mcp.mail.query as query_module
from inbox_mcp.errors import InvalidArgument
from inbox_mcp.mail.query import (
    FTS5_COLUMNS,
    OPERATORS,
    SYNTAX_HELP,
    Query,
    Term,
    fts5_match_expression,
    fts5_phrase,
    fts5_split,
    parse_query,
)


def T(field: str, value: str, phrase: bool = False, negated: bool = False) -> Term:
    return Term(field, value, phrase, negated)  # type: ignore[arg-type]


# --- parsing ---------------------------------------------------------------------------------

PARSES = [
    ("invoice", [T("text", "invoice")]),
    ("  invoice\tpaid\n", [T("text", "invoice"), T("text", "paid")]),
    ('"quarterly report"', [T("text", "quarterly report", phrase=True)]),
    ('"  padded  "', [T("text", "padded", phrase=True)]),
    ("invoi*", [T("text", "invoi*")]),
    ("-invoice", [T("text", "invoice", negated=True)]),
    ('-"exact phrase"', [T("text", "exact phrase", phrase=True, negated=True)]),
    ("from:alice@example.com", [T("from", "alice@example.com")]),
    ("-from:bob", [T("from", "bob", negated=True)]),
    ('to:"Bob Smith"', [T("to", "Bob Smith", phrase=True)]),
    ("cc:carol", [T("cc", "carol")]),
    ("from:ali*", [T("from", "ali")]),
    ('subject:"quarterly report"', [T("subject", "quarterly report", phrase=True)]),
    ("subject:invoi*", [T("subject", "invoi*")]),
    ('label:"my label"', [T("label", "my label", phrase=True)]),
    ("label:Receipts", [T("label", "Receipts")]),
    ("filename:report.pdf", [T("filename", "report.pdf")]),
    ("is:unread", [T("is", "unread")]),
    ("is:READ", [T("is", "read")]),
    ("-is:unread", [T("is", "unread", negated=True)]),
    ("has:attachment", [T("has", "attachment")]),
    ("has:attachments", [T("has", "attachment")]),
    ("in:sent", [T("in", "sent")]),
    ("in:Inbox in:DRAFTS in:trash in:spam",
     [T("in", "inbox"), T("in", "drafts"), T("in", "trash"), T("in", "spam")]),
    ('in:"sent"', [T("in", "sent", phrase=True)]),
    ("before:2026-01-31", [T("before", "2026-01-31")]),
    ("after:2026/01/05", [T("after", "2026-01-05")]),
    ("FROM:alice Subject:hi IS:unread",
     [T("from", "alice"), T("subject", "hi"), T("is", "unread")]),
    ("invoice AND paid", [T("text", "invoice"), T("text", "paid")]),
    ("-AND", [T("text", "AND", negated=True)]),
    ("and or not", [T("text", "and"), T("text", "or"), T("text", "not")]),
    ('"OR"', [T("text", "OR", phrase=True)]),
    ("http://example.com/a:b", [T("text", "http://example.com/a:b")]),
    ("meet at 10:30", [T("text", "meet"), T("text", "at"), T("text", "10:30")]),
    ("Re: lunch", [T("text", "Re:"), T("text", "lunch")]),
    ("x-header:value café:menu", [T("text", "x-header:value"), T("text", "café:menu")]),
    ("invoice - paid", [T("text", "invoice"), T("text", "paid")]),
    ("Tom & Jerry", [T("text", "Tom"), T("text", "Jerry")]),
    ("🎉 party", [T("text", "party")]),
    ('"" word', [T("text", "word")]),
    ("--twice", [T("text", "-twice", negated=True)]),
    ('from:alice"hi there"', [T("from", "alice"), T("text", "hi there", phrase=True)]),
    ('subject:"a b"c', [T("subject", "a b", phrase=True), T("text", "c")]),
    ("from:-bob", [T("from", "-bob")]),
    (
        'from:alice has:attachment after:2026-01-01 -label:done "weekly report" -draft',
        [
            T("from", "alice"),
            T("has", "attachment"),
            T("after", "2026-01-01"),
            T("label", "done", negated=True),
            T("text", "weekly report", phrase=True),
            T("text", "draft", negated=True),
        ],
    ),
]


@pytest.mark.parametrize(("q", "expected"), PARSES, ids=[q for q, _ in PARSES])
def test_parse_query_returns_terms(q: str, expected: list[Term]) -> None:
    assert parse_query(q) == Query(tuple(expected))


def test_query_positive_text_keeps_non_negated_text_and_subject() -> None:
    query = parse_query('alpha -beta subject:gamma -subject:delta from:x filename:f "e f"')
    assert query.positive_text() == [
        T("text", "alpha"), T("subject", "gamma"), T("text", "e f", phrase=True)
    ]


def test_parse_query_accepts_max_length() -> None:
    assert len(parse_query("a " * 500).terms) == 500


# --- errors ----------------------------------------------------------------------------------

ERRORS = [
    ("", "query is empty"),
    ("   \t\n ", "query is empty"),
    ("a" * 1001, "query is too long (1001 characters; the limit is 1000)"),
    ("AND", "query has no searchable terms"),
    ("- !!! 🎉", "query has no searchable terms"),
    ('"abc', "unterminated quote starting at position 0"),
    ('one "two', "unterminated quote starting at position 4"),
    ('subject:"abc', "unterminated quote starting at position 8"),
    ('"a" "b" "', "unterminated quote starting at position 8"),
    ("foo:bar", "unknown search operator 'foo:' at position 0 (known: from:, to:, cc:"),
    ("ok -form:alice", "unknown search operator 'form:' at position 3"),
    ('mailto:"x"', "unknown search operator 'mailto:'"),
    ("before:2026-13-01", "before: expects YYYY-MM-DD, got '2026-13-01'"),
    ("after:2026-02-30", "after: expects YYYY-MM-DD, got '2026-02-30'"),
    ("after:yesterday", "after: expects YYYY-MM-DD, got 'yesterday'"),
    ("before:2026-1-5", "before: expects YYYY-MM-DD, got '2026-1-5'"),
    ("before:2026-01/05", "before: expects YYYY-MM-DD"),
    ("before:２０２６-01-05", "before: expects YYYY-MM-DD"),
    ("from:", "from: at position 0 needs a value, e.g. from:alice@example.com"),
    ("x from: alice", "from: at position 2 needs a value"),
    ('label:""', "label: at position 0 needs a value"),
    ("from:*", "from: at position 0 needs a value"),
    ("is:starred", "is: expects unread or read, got 'starred'"),
    ("has:link", "has: expects attachment, got 'link'"),
    ("in:archive", "in: expects one of inbox, sent, drafts, trash, spam, got 'archive'"),
    ("subject:!!!", "subject: at position 0 has no letters or digits"),
    ("from:(a b)", "from: at position 0: grouping with parentheses or braces is not supported"),
    ("to:{a b}", "to: at position 0: grouping"),
    ("a OR b", "'OR' at position 2 is not supported"),
    ("NOT a", "'NOT' at position 0 is not supported"),
    ("a\x00b", "control character (U+0000) at position 1"),
    ("a\x1bb", "control character (U+001B) at position 1"),
    ("a\ud800", "control character (U+D800) at position 1"),
]


@pytest.mark.parametrize(("q", "message"), ERRORS, ids=[repr(q[:30]) for q, _ in ERRORS])
def test_parse_query_rejects_bad_input(q: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_query(q)
    assert message in caught.value.message
    assert str(caught.value).startswith("invalid_argument: ")


def test_parse_query_rejects_non_string() -> None:
    with pytest.raises(InvalidArgument, match="query must be a string"):
        parse_query(None)  # type: ignore[arg-type]


# --- FTS5 expressions ------------------------------------------------------------------------

ROWS = {
    1: ("Quarterly report Q3", "Please find the invoice attached",
        "Alice <alice@example.com>, bob@example.com", "report.pdf"),
    2: ("Lunch on Friday", "Tom & Jerry join at 10:30, see https://example.com/menu",
        "carol@example.com", ""),
    3: ("Invoice 2041", "Your invoices are ready. Out of office until Monday.",
        "billing@shop.example", "invoice-2041.pdf"),
    4: ("Re: quarterly numbers", "the report follows next quarter",
        "alice@example.com", "numbers.xlsx"),
    5: ("Café ☕ meetup 🎉", "NEAR the station; AND OR NOT are just words here",
        "dave@example.com", ""),
}
ALL = set(ROWS)


@pytest.fixture(scope="module")
def fts() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    # Same columns and tokenizer as the store's message_fts (migration 0001).
    conn.execute(
        f"CREATE VIRTUAL TABLE msg_fts USING fts5({', '.join(FTS5_COLUMNS)}, "
        "tokenize='unicode61 remove_diacritics 2')"
    )
    conn.executemany(
        "INSERT INTO msg_fts(rowid, subject, body, addresses, filenames) VALUES (?, ?, ?, ?, ?)",
        [(rowid, *cols) for rowid, cols in ROWS.items()],
    )
    return conn


def run_split(conn: sqlite3.Connection, terms: tuple[Term, ...]) -> set[int]:
    """What the store does: rowid IN (positive) AND rowid NOT IN (negative)."""
    positive, negative = fts5_split(terms)
    sql, params = "SELECT rowid FROM msg_fts WHERE 1", []
    if positive is not None:
        sql += " AND rowid IN (SELECT rowid FROM msg_fts WHERE msg_fts MATCH ?)"
        params.append(positive)
    if negative is not None:
        sql += " AND rowid NOT IN (SELECT rowid FROM msg_fts WHERE msg_fts MATCH ?)"
        params.append(negative)
    return {rowid for (rowid,) in conn.execute(sql, params)}


def run_match(conn: sqlite3.Connection, expression: str) -> set[int]:
    rows = conn.execute("SELECT rowid FROM msg_fts WHERE msg_fts MATCH ?", (expression,))
    return {rowid for (rowid,) in rows}


MATCHES = [
    ("invoice", {1, 3}),
    ("INVOICE", {1, 3}),
    ("invoices", {3}),
    ("invoi*", {1, 3}),
    ("invoi**", {1, 3}),
    ('"invoi*"', set()),
    ('"quarterly report"', {1}),
    ("quarterly report", {1, 4}),
    ("subject:report", {1}),
    ("subject:quarterly", {1, 4}),
    ("subject:invoi*", {3}),
    ('subject:"report follows"', set()),
    ("filename:pdf", {1, 3}),
    ("filename:report.pdf", {1}),
    ("filename:invoice", {3}),
    ("-invoice", {2, 4, 5}),
    ("quarterly -\"quarterly report\"", {4}),
    ('-"out of office" -lunch', {1, 4, 5}),
    ("-subject:quarterly", {2, 3, 5}),
    ("report -subject:report", {4}),
    ("-filename:pdf -invoice", {2, 4, 5}),
    ("alice@example.com", {1, 4}),
    ("-alice@example.com", {2, 3, 5}),
    ("Tom & Jerry", {2}),
    ("10:30", {2}),
    ("https://example.com/menu", {2}),
    ("Re: quarterly", {4}),
    ('"AND OR NOT"', {5}),
    ("NEAR(", {5}),
    ("near(the station)", {5}),
    ("café", {5}),
    ("CAFÉ", {5}),
    ("cafe", {5}),
    ("☕ meetup", {5}),
    ("^quarterly", {1, 4}),
    ("q3 x*y", set()),
    ("from:alice is:unread", ALL),  # nothing for FTS: the store filters these with SQL
]


@pytest.mark.parametrize(("q", "expected"), MATCHES, ids=[q for q, _ in MATCHES])
def test_fts5_split_matches_expected_rows(
    fts: sqlite3.Connection, q: str, expected: set[int]
) -> None:
    terms = parse_query(q).terms
    assert run_split(fts, terms) == expected
    positive, _ = fts5_split(terms)
    if positive is not None:  # the one-string form agrees whenever it can be built
        assert run_match(fts, fts5_match_expression(list(terms))) == expected


COMPILES = [
    ("invoice", ('"invoice"', None)),
    ("invoi*", ('"invoi"*', None)),
    ('"a b" c', ('"a b" AND "c"', None)),
    ('"say ""hi"""', ('"say" AND "hi"', None)),
    ('say"hi"', ('"say" AND "hi"', None)),
    ("subject:x filename:y.pdf", ('subject : "x" AND filenames : "y.pdf"', None)),
    ("subject:x*", ('subject : "x"*', None)),
    ('-a -"b c" -subject:d', (None, '"a" OR "b c" OR subject : "d"')),
    ("from:a to:b cc:c label:l in:sent is:read has:attachment after:2026-01-01", (None, None)),
]


@pytest.mark.parametrize(("q", "expected"), COMPILES, ids=[q for q, _ in COMPILES])
def test_fts5_split_builds_expressions(q: str, expected: tuple[str | None, str | None]) -> None:
    assert fts5_split(parse_query(q).terms) == expected


def test_fts5_match_expression_combines_with_not() -> None:
    terms = list(parse_query("a -b -subject:c").terms)
    assert fts5_match_expression(terms) == '("a") NOT ("b" OR subject : "c")'
    assert fts5_match_expression(list(parse_query("from:x").terms)) is None


def test_fts5_match_expression_refuses_only_negated_terms() -> None:
    with pytest.raises(ValueError, match="fts5_split"):
        fts5_match_expression(list(parse_query("-a from:x").terms))


def test_fts5_phrase_quotes_everything() -> None:
    assert fts5_phrase('he said "hi"') == '"he said ""hi"""'
    assert fts5_phrase("a\x00b") == '"a b"'


# --- hostile input: parse errors are InvalidArgument, everything else is valid FTS5 ----------

HOSTILE = [
    '"', 'a"b', '"""', '""""', 'x""y', "*", "**", "*a", "a**", "**a**", "-*", "^", "^foo",
    "NEAR(", "NEAR(a b, 2)", "NEAR/3", ":", "::", "a:", ":a", "a:b", "-", "--", "- -", "-:",
    "AND", "OR", "NOT", "AND OR NOT", "a AND", "AND a", "(", ")", "()", "(a OR b)", "{a b}",
    "subject:", "subject:*", 'subject:"', 'subject:"*"', "subject:a*b", "subject:(x)",
    "body:x", "rowid:1", 'col : "x"', "subject : x", "+", "+a", "'", "'a'", "\\", '\\"', "\\\"a",
    "🎉", "👨‍👩‍👧 family", "ü", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u200b", "\u00a0a\u00a0", "\u3000日本語\u3000",
    "\x00", "\ud800", "a\tb\nc\rd", '"a"*', '-"a"*', "filename:*.pdf", "-filename:*",
    'is:"unread', "label:-", "in:", "from:\"\"\"", "a -b -c -d", "-a -b", "x" * 1000,
    '"' + "x" * 998 + '"', "-" * 1000, "*" * 1000, '"a" ' * 250, "-a " * 333, "subject:a " * 100,
]
FUZZ_ALPHABET = list('ab Z9é🎉"*^:-()+{}\\\'/.,&|\t') + [
    "AND ", "OR ", "NOT ", "NEAR", "subject:", "from:", "filename:", "is:", "in:", "label:",
    "before:", "2026-01-01", "foo:", "http://", " -", '"x y"',
]


def check_hostile(conn: sqlite3.Connection, q: str) -> None:
    try:
        terms = parse_query(q).terms
    except InvalidArgument:
        return
    run_split(conn, terms)  # raises sqlite3.OperationalError on an FTS5 syntax error
    if fts5_split(terms)[0] is not None:
        run_match(conn, fts5_match_expression(list(terms)))


@pytest.mark.parametrize("q", HOSTILE, ids=[repr(q[:20]) for q in HOSTILE])
def test_hostile_input_never_breaks_fts5(fts: sqlite3.Connection, q: str) -> None:
    check_hostile(fts, q)


def test_fuzzed_input_never_breaks_fts5(fts: sqlite3.Connection) -> None:
    rng = random.Random(20260101)
    for _ in range(3000):
        q = "".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(1, 12)))
        check_hostile(fts, q)


def test_fts5_phrase_is_valid_for_any_text(fts: sqlite3.Connection) -> None:
    rng = random.Random(7)
    samples = ['"', '""', "*", "NEAR(", "a:b", "^", "(", "\x00", "x\x00y", "🎉", " "]
    samples += ["".join(rng.choice('a"*^:()- \x00é') for _ in range(8)) for _ in range(300)]
    for value in samples:
        run_match(fts, fts5_phrase(value))
        run_match(fts, f"subject : {fts5_phrase(value)}*")


# --- documentation ---------------------------------------------------------------------------

def test_syntax_help_is_short_and_names_every_operator() -> None:
    assert len(SYNTAX_HELP) <= 600
    for op in OPERATORS:
        assert f"{op}:" in SYNTAX_HELP
        assert f"`{op}:" in query_module.__doc__
