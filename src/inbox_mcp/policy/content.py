"""Outbound content scanning (DESIGN.md §5 ``[content]``): built-in secret detectors and the
operator's ``block_patterns`` / ``hold_patterns``.

A finding names the detector or pattern and the field, never the matched text: findings reach the
audit log, the ``policy_denied`` error the agent reads and the approval request an operator
reads, and a finding that quoted the secret would copy it into all three.

Pure: no database, no network, no state beyond compiled regexes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from inbox_mcp.mail.html_text import html_to_text

Kind = Literal["detector", "block_pattern", "hold_pattern"]

# Python's re has no timeout: a pathological operator regex over a large body could run for
# very long. Capping each field bounds the cost of ordinary patterns and keeps the worst case
# finite; detectors are ours, linear, and see the whole field.
MAX_PATTERN_CHARS = 1_000_000
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
# Enough of a binary-typed attachment to tell text from binary.
_SNIFF_BYTES = 8192
_MAX_LABEL_CHARS = 120

_TEXT_TYPES = {
    "application/json", "application/xml", "application/csv", "application/x-sh",
    "application/javascript", "application/x-javascript", "application/x-pem-file",
}
_TEXT_EXTENSIONS = (
    ".txt", ".csv", ".json", ".md", ".env", ".pem", ".key", ".yml", ".yaml", ".ini", ".cfg",
    ".log", ".py", ".js", ".sh", ".xml",
)


@dataclass(frozen=True)
class ContentFinding:
    kind: Kind
    name: str  # detector name, or "content.block_patterns[N]" / "content.hold_patterns[N]"
    where: str  # "subject" | "text" | "html" | "attachment name '…'" | "attachment '…'"


@dataclass(frozen=True)
class ContentItem:
    subject: str
    text: str | None
    html: str | None
    attachments: list[tuple[str, str, bytes]]  # (filename, content_type, data)


def describe(f: ContentFinding) -> str:
    what = {"detector": "detector", "block_pattern": "block pattern", "hold_pattern": "hold pattern"}[f.kind]
    return f"{what} {f.name} matched in {f.where}"


# --- detectors ---------------------------------------------------------------------------------
# Letters and digits on either side mean the match is a piece of a longer token (a hash, a
# base64 blob, a word such as "desk-top"), not a credential standing on its own.
_B = r"(?<![A-Za-z0-9])"
_E = r"(?![A-Za-z0-9])"


def _mixed(s: str) -> bool:
    """Random credentials of 20+ chars contain upper, lower and digits; prose and slugs rarely."""
    return any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)


_PEM_HEADER = re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----")
# A key body line; PEM wraps at 64, OpenSSH at 70. Requiring one keeps documentation that merely
# names the header ("your file starts with -----BEGIN PRIVATE KEY-----") from counting.
_PEM_BODY_LINE = re.compile(r"^[ \t>]*[A-Za-z0-9+/]{40,}={0,2}[ \t]*\r?$", re.MULTILINE)


def _private_key(text: str) -> bool:
    for m in _PEM_HEADER.finditer(text):
        if _PEM_BODY_LINE.search(text, m.end(), m.end() + 1500):
            return True
    return False


_AWS_KEY_ID = re.compile(_B + r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}" + _E)
# 40 base64 characters are everywhere (hashes, blobs); only count them as a secret access key
# when they are assigned to something called a secret, as in credentials files, env files, JSON.
_AWS_SECRET = re.compile(
    r"(?i:secret)[A-Za-z_ -]{0,24}[\"']?[ \t]{0,3}(?::|=>?)[ \t]{0,3}\r?\n?[ \t]{0,8}[\"']?"
    r"(?<![A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)


def _aws_key(text: str) -> bool:
    if _AWS_KEY_ID.search(text):
        return True
    return any(_mixed(m.group(1)) for m in _AWS_SECRET.finditer(text))


_GITHUB = re.compile(_B + r"(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{82,251})(?![A-Za-z0-9_])")


def _github_token(text: str) -> bool:
    return bool(_GITHUB.search(text))


_SLACK_TOKEN = re.compile(_B + r"(?:xox[baprs]|xapp)-[A-Za-z0-9-]{10,}")
_SLACK_WEBHOOK = re.compile(r"hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+")


def _slack_token(text: str) -> bool:
    if _SLACK_WEBHOOK.search(text):
        return True
    # Real tokens carry numeric workspace and user ids; placeholders in docs ("xoxb-your-token-here") do not.
    return any(sum(c.isdigit() for c in m.group()) >= 2 for m in _SLACK_TOKEN.finditer(text))


# OpenAI legacy and project keys, and Anthropic's sk-ant- keys, which share the prefix.
_OPENAI = re.compile(_B + r"sk-(?:(?:proj|ant|svcacct|admin)-([A-Za-z0-9_-]{20,})|([A-Za-z0-9]{32,}))" + _E)


def _openai_key(text: str) -> bool:
    return any(_mixed(m.group(1) or m.group(2)) for m in _OPENAI.finditer(text))


# Runs of digits joined by single spaces or dashes, starting where no digit (or digit group)
# precedes: "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111".
_DIGIT_RUN = re.compile(r"(?<![A-Za-z0-9_])(?<![0-9][ -])[0-9](?:[ -]?[0-9]){12,}(?![A-Za-z0-9_])")
_GROUP_SPLIT = re.compile(r"([ -])")

# (lowest prefix, highest prefix, allowed lengths), prefixes compared as integers of their width.
_IIN_RANGES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    # No 13-digit Visa or Maestro: those cards are long gone, while EAN-13 barcodes (German
    # products start 400-440, British 500-509) fill order confirmations and are Luhn-valid often.
    ("4", "4", (16, 19)),  # Visa
    ("51", "55", (16,)),  # Mastercard
    ("2221", "2720", (16,)),  # Mastercard 2-series
    ("34", "34", (15,)), ("37", "37", (15,)),  # American Express
    ("6011", "6011", (16, 17, 18, 19)), ("644", "649", (16, 17, 18, 19)), ("65", "65", (16, 17, 18, 19)),  # Discover
    ("62", "62", (16, 17, 18, 19)),  # UnionPay
    ("3528", "3589", (16, 17, 18, 19)),  # JCB
    ("300", "305", (14, 15, 16, 17, 18, 19)), ("36", "36", (14, 15, 16, 17, 18, 19)),  # Diners Club
    ("38", "39", (16, 17, 18, 19)),
    ("2200", "2204", (16, 17, 18, 19)),  # Mir
    ("5018", "5018", (16, 19)), ("5020", "5020", (16, 19)), ("5038", "5038", (16, 19)),
    ("5893", "5893", (16, 19)), ("6304", "6304", (16, 19)), ("6759", "6759", (16, 19)),
    ("6761", "6763", (16, 19)),  # Maestro
)


def _known_iin(digits: str) -> bool:
    for low, high, lengths in _IIN_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_candidates(run: str) -> Iterator[str]:
    """Digit strings a run could be a card number as written: the whole first group, or leading
    groups laid out like a card (uniform separator, first group of four, groups of 3–6). A
    trailing group is allowed to be something else, so "4111 1111 1111 1111 12/27" still counts;
    a card never starts in the middle of a run."""
    parts = _GROUP_SPLIT.split(run)
    groups, seps = parts[0::2], parts[1::2]
    digits = ""
    for k, group in enumerate(groups, start=1):
        digits += group
        if len(digits) > 19:
            return
        if k > 1 and (len(groups[0]) != 4 or len(set(seps[: k - 1])) != 1 or not 3 <= len(group) <= 6):
            return
        if len(digits) >= 13:
            yield digits


def _card_number(text: str) -> bool:
    for m in _DIGIT_RUN.finditer(text):
        if any(_known_iin(d) and _luhn(d) for d in _card_candidates(m.group())):
            return True
    return False


_DETECTORS: dict[str, Callable[[str], bool]] = {
    "private_key": _private_key,
    "aws_key": _aws_key,
    "github_token": _github_token,
    "slack_token": _slack_token,
    "openai_key": _openai_key,
    "card_number": _card_number,
}
# Every regex a secret could match, used only to blank it out of attachment names we display.
_REDACT = (_PEM_HEADER, _AWS_KEY_ID, _AWS_SECRET, _GITHUB, _SLACK_TOKEN, _SLACK_WEBHOOK, _OPENAI, _DIGIT_RUN)


# --- fields ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    where: str
    text: str


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is_text_attachment(filename: str, content_type: str, data: bytes) -> bool:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype.startswith("text/") or ctype in _TEXT_TYPES or filename.lower().endswith(_TEXT_EXTENSIONS):
        return True
    # An agent can label a text file application/octet-stream with no extension; text is text.
    head = data[:_SNIFF_BYTES]
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        # Only a character cut in half at the sniff boundary is acceptable.
        return e.start >= len(head) - 3 and len(data) > _SNIFF_BYTES
    return True


def _spans(text: str, patterns: list[re.Pattern[str]]) -> list[tuple[int, int]]:
    spans = [m.span() for p in patterns for m in p.finditer(text) if m.end() > m.start()]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _label(filename: str, patterns: list[re.Pattern[str]]) -> str:
    """The attachment name as shown in a finding, with anything a detector or pattern could match
    blanked out: the name may itself be the secret."""
    name = filename[:MAX_PATTERN_CHARS]
    out, pos = [], 0
    for start, end in _spans(name, [*_REDACT, *patterns]):
        out += [name[pos:start], "[redacted]"]
        pos = end
    out.append(name[pos:])
    label = "".join(ch if ch.isprintable() else "?" for ch in "".join(out))
    return label if len(label) <= _MAX_LABEL_CHARS else label[: _MAX_LABEL_CHARS - 1] + "…"


def _fields(item: ContentItem, patterns: list[re.Pattern[str]]) -> Iterator[_Field]:
    yield _Field("subject", item.subject or "")
    if item.text:
        yield _Field("text", item.text)
    if item.html:
        # What the recipient reads, and the markup itself: comments, attributes and hidden
        # elements are sent too, and html_to_text drops them.
        yield _Field("html", html_to_text(item.html))
        yield _Field("html", item.html)
    for filename, content_type, data in item.attachments:
        label = _label(filename, patterns)
        yield _Field(f"attachment name '{label}'", filename)
        if _is_text_attachment(filename, content_type, data):
            text = data[:MAX_ATTACHMENT_BYTES].decode("utf-8", errors="replace")
            yield _Field(f"attachment '{label}'", text)


# --- scan --------------------------------------------------------------------------------------


def _pattern_check(rx: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: rx.search(text, 0, MAX_PATTERN_CHARS) is not None


def _check_detectors(detectors: list[str]) -> list[str]:
    unknown = [d for d in detectors if d not in _DETECTORS]
    if unknown:
        # Fail closed: a detector we cannot run must not silently pass content.
        raise ValueError(f"unknown content detector(s): {', '.join(unknown)}")
    return list(dict.fromkeys(detectors))


def scan(
    item: ContentItem, detectors: list[str], block_patterns: list[str], hold_patterns: list[str]
) -> list[ContentFinding]:
    """Every detector and pattern that matches somewhere, each once, at the first field it matches.

    Order: detectors (in the order given), then block patterns, then hold patterns (by index).
    Raises ValueError for an unknown detector and re.error for a pattern that does not compile
    (the policy loader rejects both before they get here).
    """
    names = _check_detectors(detectors)
    checks: list[tuple[Kind, str, Callable[[str], bool]]] = [("detector", n, _DETECTORS[n]) for n in names]
    compiled: list[re.Pattern[str]] = []
    for kind, key, patterns in (("block_pattern", "block_patterns", block_patterns), ("hold_pattern", "hold_patterns", hold_patterns)):
        for i, source in enumerate(patterns):
            rx = _compiled(source)
            compiled.append(rx)
            checks.append((kind, f"content.{key}[{i}]", _pattern_check(rx)))
    if not checks:
        return []
    pending = dict(enumerate(checks))
    found: dict[int, str] = {}
    for field in _fields(item, compiled):
        for i, (_, _, matches) in list(pending.items()):
            if matches(field.text):
                found[i] = field.where
                del pending[i]
        if not pending:
            break
    return [ContentFinding(checks[i][0], checks[i][1], found[i]) for i in sorted(found)]
