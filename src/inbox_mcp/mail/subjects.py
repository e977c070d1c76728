"""Subject lines: reply/forward prefixes and the normalised form used as a threading fallback."""

from __future__ import annotations

import re

# Reply and forward prefixes as mail clients write them, in several languages: English
# (Re, Fwd, Fw), German (AW "Antwort", WG "Weitergeleitet"), Scandinavian (SV, VS), Dutch
# (Antw, Doorst), French (TR "transféré"), Spanish/Portuguese (RV, ENC), Italian (R; "I" is
# too ambiguous and is left out), Finnish (VL, VS), Swedish (VB), Polish (Odp, PD), Turkish
# (YNT, ILT), Chinese (回复, 回覆, 转发, 轉寄) and Greek (ΑΠ, ΣΧΕΤ, ΠΡΘ). Some clients count ("Re[2]:",
# "Re(3):") or use a full-width colon.
_REPLY_WORDS = r"re|aw|sv|antw|odp|ynt|vs|r|回复|回覆|答复|ΑΠ|ΣΧΕΤ"
_FORWARD_WORDS = r"fwd?|wg|tr|rv|enc|doorst|vb|vl|pd|ilt|转发|轉寄|转寄|ΠΡΘ"
_PREFIX = re.compile(
    rf"^\s*(?:{_REPLY_WORDS}|{_FORWARD_WORDS})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(rf"^\s*(?:{_REPLY_WORDS})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(rf"^\s*(?:{_FORWARD_WORDS})\s*(?:\[\d+\]|\(\d+\))?\s*[:：]", re.IGNORECASE)
# A mailing-list tag ("[dev-list] Re: x") sits in front of the prefixes; it is kept, but the
# prefixes behind it are stripped too, so "[dev] Re: x" and "[dev] x" thread together.
_LIST_TAG = re.compile(r"^\s*(\[[^\]]{1,64}\])\s*")
_WHITESPACE = re.compile(r"\s+")


def _strip_prefixes(subject: str) -> str:
    while True:
        stripped = _PREFIX.sub("", subject, count=1)
        if stripped == subject:
            return subject
        subject = stripped


def normalize_subject(subject: str) -> str:
    """The subject with every reply/forward prefix removed (list tags kept), whitespace
    collapsed and case folded: equal for a message and the replies to it."""
    s = _WHITESPACE.sub(" ", subject or "").strip()
    tags: list[str] = []
    while True:
        s = _strip_prefixes(s)
        match = _LIST_TAG.match(s)
        if not match:
            break
        if match.group(1).casefold() not in (t.casefold() for t in tags):
            tags.append(match.group(1))  # "[dev] Re: [dev] x" is the thread "[dev] x"
        s = s[match.end():]
    if not s and tags:
        # A subject that is only a tag, e.g. "[urgent]": the tag is the subject.
        s, tags = tags[-1], tags[:-1]
    return " ".join([*tags, s]).strip().casefold()


def _is_reply(subject: str) -> bool:
    s = _LIST_TAG.sub("", subject, count=1)
    return bool(_REPLY_PREFIX.match(s))


def _is_forward(subject: str) -> bool:
    s = _LIST_TAG.sub("", subject, count=1)
    return bool(_FORWARD_PREFIX.match(s))


def reply_subject(subject: str) -> str:
    """"Re: X", or X unchanged when it already starts with a reply prefix."""
    s = (subject or "").strip()
    if _is_reply(s):
        return s
    return f"Re: {s}" if s else "Re:"


def forward_subject(subject: str) -> str:
    """"Fwd: X", or X unchanged when it already starts with a forward prefix."""
    s = (subject or "").strip()
    if _is_forward(s):
        return s
    return f"Fwd: {s}" if s else "Fwd:"
