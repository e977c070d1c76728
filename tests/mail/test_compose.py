"""compose_message: structure, round trip through parse_message (and the stdlib parser, an
independent reader), header-injection refusal, address validation; subject helpers."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import datetime, timezone

import pytest

from inbox_mcp.errors import InvalidArgument
from inbox_mcp.mail.compose import (
    ComposedMessage,
    OutgoingAttachment,
    check_header_value,
    compose_message,
    validate_address,
)
from inbox_mcp.mail.parse import parse_message
from inbox_mcp.mail.subjects import forward_subject, normalize_subject, reply_subject

GMAIL_LONG_ID = "<CAF" + "x" * 90 + "=abc@mail.gmail.com>"


def _compose(**overrides) -> ComposedMessage:
    args = dict(
        from_addr="agent@agents.localhost",
        from_name="Agent",
        to=["alice@example.com"],
        cc=[],
        subject="Hello",
        text="Hi Alice",
        html=None,
        message_id_domain="agents.localhost",
    )
    args.update(overrides)
    return compose_message(**args)


def _std(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line and not line[0].isspace()]


def test_text_only_message():
    c = _compose(date=datetime(2025, 3, 3, 10, 0, tzinfo=timezone.utc))
    msg = _std(c.raw)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "Hi Alice"
    assert msg["Date"] == "Mon, 03 Mar 2025 10:00:00 +0000"
    assert msg["Message-ID"] == c.message_id
    assert re.fullmatch(r"<[^<>@\s]+@agents\.localhost>", c.message_id)
    assert str(msg["From"]) == "Agent <agent@agents.localhost>"
    assert msg["MIME-Version"] == "1.0"


def test_crlf_only_and_short_lines():
    c = _compose(text="line one\nline two\r\n" + "long " * 400, html="<p>" + "x" * 3000 + "</p>")
    assert b"\n" not in c.raw.replace(b"\r\n", b"")  # no bare LF
    assert b"\r" not in c.raw.replace(b"\r\n", b"")  # no bare CR
    assert max(len(line) for line in c.raw.split(b"\r\n")) <= 998
    assert c.raw.isascii()  # 7-bit clean: no dependence on 8BITMIME


def test_round_trip_non_ascii_and_attachments():
    pdf = bytes(range(256)) * 40 + b"\r\n\x00\r"  # every byte value, stray CR/LF, NUL
    c = _compose(
        from_name="Jürgen Ümlaut, Ph.D.",
        to=["Alice@Example.COM", "bob@example.org"],
        cc=["carol@example.net"],
        subject="Grüße – 日本語",
        text="Grüße, 日本語のテキスト\nzweite Zeile",
        html="<p>Grüße, <b>日本語</b></p>",
        attachments=[
            OutgoingAttachment("Bericht – März.pdf", "application/pdf", pdf),
            OutgoingAttachment("notes.txt", "text/plain", "naïve\r\ntext\n".encode()),
        ],
    )
    assert c.raw.isascii()
    p = parse_message(c.raw)
    assert p.parse_ok
    assert p.subject == "Grüße – 日本語"
    assert p.from_name == "Jürgen Ümlaut, Ph.D."
    assert p.from_addr == "agent@agents.localhost"
    assert p.to == ["Alice@example.com", "bob@example.org"]
    assert p.cc == ["carol@example.net"]
    assert p.message_id == c.message_id
    assert p.text == "Grüße, 日本語のテキスト\nzweite Zeile"
    assert "<b>日本語</b>" in p.html
    by_name = {a.filename: a for a in p.attachments}
    assert by_name["Bericht – März.pdf"].data == pdf
    assert by_name["Bericht – März.pdf"].content_type == "application/pdf"
    assert by_name["notes.txt"].data == "naïve\r\ntext\n".encode()  # exact bytes, line endings too

    msg = _std(c.raw)  # an independent reader agrees on the structure
    assert msg.get_content_type() == "multipart/mixed"
    alternative = msg.get_payload()[0]
    assert alternative.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in alternative.get_payload()] == ["text/plain", "text/html"]
    assert msg["Subject"] == "Grüße – 日本語"


def test_html_only_gets_a_text_part():
    html = "<h1>Welcome</h1><p>Visit <a href='https://example.com/x'>our site</a>.</p><script>bad()</script>"
    c = _compose(text=None, html=html)
    msg = _std(c.raw)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_payload()
    assert plain.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    text = plain.get_content()
    assert "Welcome" in text and "our site" in text and "https://example.com/x" in text
    assert "bad()" not in text
    assert parse_message(c.raw).text == text.replace("\r\n", "\n").strip()


def test_no_body_at_all():
    msg = _std(_compose(text=None, html=None).raw)
    assert msg.get_content_type() == "text/plain"


def test_bcc_never_in_headers_and_bcc_only_mail():
    c = _compose(to=["a@example.com"], cc=["b@example.com"])
    assert "bcc" not in _header_names(c.raw)
    c = _compose(to=[], cc=[])
    names = _header_names(c.raw)
    assert "bcc" not in names and "cc" not in names
    assert _std(c.raw)["To"] == "undisclosed-recipients:;"


def test_reply_headers_with_long_ids():
    refs = ["<root@example.com>", GMAIL_LONG_ID, "<mid@example.org>"]
    c = _compose(in_reply_to=GMAIL_LONG_ID, references=refs)
    raw = c.raw.decode("ascii")
    assert "=?" not in raw.split("\r\n\r\n", 1)[0].split("Subject")[0]  # ids are never RFC 2047-encoded
    assert f"In-Reply-To: {GMAIL_LONG_ID}\r\n" in raw
    p = parse_message(c.raw)
    assert p.in_reply_to == GMAIL_LONG_ID
    assert p.references == refs
    msg = _std(c.raw)
    assert msg["References"].split() == refs  # folded between ids, unfolded by any reader


def test_overlong_or_repeated_ids():
    hostile = "<" + "x" * 2000 + "@example.com>"
    p = parse_message(_compose(in_reply_to=hostile, references=["<a@x>", hostile, "<a@x>", "<b@x>"]).raw)
    assert p.in_reply_to is None  # omitted rather than a line SMTP would refuse
    assert p.references == ["<a@x>", "<b@x>"]
    with pytest.raises(InvalidArgument):
        _compose(in_reply_to="<has space@x>")


def test_lone_surrogates_are_invalid_arguments():
    for overrides in [{"text": "a\ud800"}, {"html": "<p>\udfff</p>"}, {"subject": "x\ud800"}, {"from_name": "\ud800"}]:
        with pytest.raises(InvalidArgument):
            _compose(**overrides)


def test_ids_without_brackets_are_normalised():
    p = parse_message(_compose(in_reply_to="abc@example.com", references=["abc@example.com"]).raw)
    assert p.in_reply_to == "<abc@example.com>" and p.references == ["<abc@example.com>"]


def test_forwarded_message_attachment():
    original = b"From: x@example.com\r\nSubject: original\r\n\r\nbody\r\n"
    c = _compose(attachments=[OutgoingAttachment("fwd.eml", "message/rfc822", original)])
    att = parse_message(c.raw).attachments[0]
    assert att.content_type == "message/rfc822"
    assert parse_message(att.data).subject == "original"


def test_extra_headers():
    c = _compose(extra_headers={"Auto-Submitted": "auto-replied", "X-Inbox-Agent": "a1"})
    p = parse_message(c.raw)
    assert p.headers["x-inbox-agent"] == "a1"
    assert p.auto_submitted
    for reserved in ["Bcc", "From", "message-id", "Content-Type"]:
        with pytest.raises(InvalidArgument):
            _compose(extra_headers={reserved: "x"})
    with pytest.raises(InvalidArgument):
        _compose(extra_headers={"Bad Name": "x"})


@pytest.mark.parametrize(
    "field,overrides",
    [
        ("subject", {"subject": "Hi\r\nBcc: victim@example.com"}),
        ("subject", {"subject": "Hi\nthere"}),
        ("from_name", {"from_name": "Agent\rX"}),
        ("to", {"to": ["alice@example.com\r\nBcc: x@example.com"]}),
        ("cc", {"cc": ["carol@example.com\n"]}),
        ("from", {"from_addr": "agent@agents.localhost\n"}),
        ("in_reply_to", {"in_reply_to": "<a@b>\r\nX: y"}),
        ("references", {"references": ["<a@b>\nX: y"]}),
        ("attachment filename", {"attachments": [("a\r\n.pdf", "application/pdf", b"x")]}),
        ("header X-Test", {"extra_headers": {"X-Test": "v\r\nBcc: x@example.com"}}),
    ],
)
def test_cr_lf_rejected_naming_the_field(field, overrides):
    with pytest.raises(InvalidArgument) as info:
        if "attachments" in overrides:
            OutgoingAttachment(*overrides["attachments"][0])
        else:
            _compose(**overrides)
    assert str(info.value) == f"invalid_argument: {field} contains CR or LF"


@pytest.mark.parametrize(
    "bad",
    ["bob", "bob@", "@example.com", "bob smith@example.com", "bob@example", "Bob <bob@example.com>",
     "a@@example.com", "a@example..com", "a@-example.com", "a.@example.com", ".a@example.com", "a@1.2.3.4", ""],
)
def test_invalid_addresses(bad):
    with pytest.raises(InvalidArgument) as info:
        _compose(to=[bad])
    assert str(info.value) == f"invalid_argument: invalid address {bad!r} in to"


def test_valid_addresses_are_normalised():
    assert validate_address("a@agents.localhost", "to") == "a@agents.localhost"
    assert validate_address("First.Last+tag@Example.COM", "to") == "First.Last+tag@example.com"
    assert validate_address("root@localhost", "to") == "root@localhost"
    assert validate_address("x@bücher.example", "to") == "x@xn--bcher-kva.example"
    assert validate_address(" pad@example.com ", "cc") == "pad@example.com"


def test_invalid_attachment_types():
    for bad in ["pdf", "application/", "application/pdf; name=x", "multipart/mixed", "text/plain\n"]:
        with pytest.raises(InvalidArgument):
            OutgoingAttachment("a.bin", bad, b"x")
    with pytest.raises(InvalidArgument):
        OutgoingAttachment("", "application/pdf", b"x")


def test_check_header_value():
    assert check_header_value("fine value", "subject") == "fine value"
    with pytest.raises(InvalidArgument) as info:
        check_header_value("a\x00b", "subject")
    assert "subject" in str(info.value)


def test_subject_helpers():
    assert reply_subject("Hello") == "Re: Hello"
    assert reply_subject("RE: Hello") == "RE: Hello"
    assert reply_subject("aw: Termin") == "aw: Termin"
    assert reply_subject("Fwd: Hello") == "Re: Fwd: Hello"
    assert reply_subject("[dev] Re: build") == "[dev] Re: build"
    assert reply_subject("") == "Re:"
    assert forward_subject("Hello") == "Fwd: Hello"
    assert forward_subject("FW: Hello") == "FW: Hello"
    assert forward_subject("Re: Hello") == "Fwd: Re: Hello"

    assert normalize_subject("Re: RE: Fwd:  Hello   World") == "hello world"
    assert normalize_subject("AW: WG: SV: Antw: Termin") == "termin"
    assert normalize_subject("Re[2]: Status") == "status"
    assert normalize_subject("回复：测试") == "测试"
    assert normalize_subject("[dev] Re: [dev] build broken") == normalize_subject("[DEV] build broken")
    assert normalize_subject("Results vs last year") == "results vs last year"
    assert normalize_subject("Re: Grüße") == normalize_subject("GRÜSSE")  # casefold


def test_composed_reply_threads_with_parsed_original():
    original = parse_message((
        "Message-ID: <orig@example.com>\r\nReferences: <root@example.com>\r\nSubject: Plan\r\n"
        "From: Alice <alice@example.com>\r\n\r\nWhat do you think?\r\n").encode())
    reply = parse_message(_compose(
        to=[original.from_addr],
        subject=reply_subject(original.subject),
        in_reply_to=original.message_id,
        references=[*original.references, original.message_id],
    ).raw)
    assert reply.subject == "Re: Plan"
    assert reply.in_reply_to == "<orig@example.com>"
    assert reply.references == ["<root@example.com>", "<orig@example.com>"]
    assert normalize_subject(reply.subject) == normalize_subject(original.subject)
