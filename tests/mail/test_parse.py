"""parse_message on mail written by other projects (mail-parser, enmime, CPython, talon), on
hand-made charset cases, and on garbage. Expected values come from reading the raw files or
from the assertions of the project that wrote them (cited next to each)."""

from __future__ import annotations

import email
import hashlib
import random
from datetime import datetime, timezone

import mailparser
import pytest

from inbox_mcp.mail.parse import ParsedMessage, parse_message
from tests.corpora import all_corpus_files, corpus_dir, corpus_files


def _parse(corpus: str, name: str) -> ParsedMessage:
    return parse_message((corpus_dir(corpus) / name).read_bytes())


def _assert_well_formed(p: ParsedMessage) -> None:
    assert isinstance(p, ParsedMessage)
    assert isinstance(p.text, str) and isinstance(p.subject, str)
    for value in [p.text, p.subject, p.html or "", p.from_name or "", *p.headers.values()]:
        # What the store and JSON accept: no NUL, no lone surrogates.
        assert "\x00" not in value
        value.encode("utf-8")
    for att in p.attachments:
        assert att.filename and "/" not in att.filename and "\\" not in att.filename
        assert isinstance(att.data, bytes)
        assert "/" in att.content_type
    if p.date is not None:
        assert p.date.utcoffset().total_seconds() == 0
    for msg_id in [p.message_id, p.in_reply_to, *p.references]:
        assert msg_id is None or (msg_id.startswith("<") and msg_id.endswith(">"))
    for addr in [p.from_addr, *p.to, *p.cc, *p.reply_to]:
        if addr is not None:
            local, _, domain = addr.rpartition("@")
            assert local and domain == domain.lower()


def test_every_corpus_file_parses():
    files = all_corpus_files()
    # The four corpora hold ~220 files; far fewer means a corpus was fetched incompletely.
    assert len(files) > 200
    for path in files:
        _assert_well_formed(parse_message(path.read_bytes()))


@pytest.mark.parametrize("corpus", ["mail-parser", "enmime", "cpython"])
def test_each_corpus_has_messages_with_headers(corpus):
    parsed = [parse_message(p.read_bytes()) for p in corpus_files(corpus)]
    assert sum(1 for p in parsed if p.subject) >= len(parsed) // 3


def test_cpython_plain_message():
    p = _parse("cpython", "msg_01.txt")
    assert p.subject == "This is a test message"
    assert p.from_addr == "bbb@ddd.com"
    assert p.from_name == "John X. Doe"  # the old "addr (Name)" comment form
    assert p.to == ["bbb@zzz.org"]
    assert p.message_id == "<15090.61304.110929.45684@aaa.zzz.org>"
    assert p.date == datetime(2001, 5, 4, 18, 5, 44, tzinfo=timezone.utc)
    assert p.text == "Hi,\n\nDo you like this message?\n\n-Me"
    assert p.html is None and p.attachments == []
    assert p.parse_ok


def test_mail_parser_corpus_headers_and_attachments():
    # Same values as mail-parser's own test_mail_parser.py asserts for mail_test_2.
    p = _parse("mail-parser", "mail_test_2")
    assert p.subject == "Bollettino Meteorologico del 29/11/2015"
    assert p.from_addr == "meteo@regione.vda.it"
    assert p.message_id == "<4516257BC5774408ADC1263EEBBBB73F@ad.regione.vda.it>"
    assert len(p.to) == 2 and p.to[0] == "echo@tu-berlin.de"
    assert p.date.isoformat() == "2015-11-29T08:45:18+00:00"
    assert [a.filename for a in p.attachments] == ["intestazione.jpg", "logometeo.jpg", "Bollettino.pdf"]
    assert p.attachments[0].content_id == "intestazione.jpg" and p.attachments[0].inline
    assert p.attachments[0].data[:3] == b"\xff\xd8\xff"  # JPEG magic
    assert p.attachments[2].data[:5] == b"%PDF-"


def test_uuencoded_attachment_bytes():
    # mail-parser's test_write_uuencode_attachment: md5 of the decoded zip.
    p = _parse("mail-parser", "mail_test_15")
    (att,) = [a for a in p.attachments if a.filename == "REQUEST FOR QUOTE.zip"]
    assert hashlib.md5(att.data).hexdigest() == "4f2cf891e7cfb349fca812091f184ecc"


def test_encoded_words_in_other_scripts():
    p = _parse("mail-parser", "mail_test_1")  # UTF-8 B-encoded subject and name, raw UTF-8 filename
    assert p.subject == "письмо уведом-е"
    assert p.from_addr == "suvorov.s@nalg.ru"
    assert p.from_name == "служба ФНС Даниил Суворов"
    assert "ФНС_РФ558.zip" in [a.filename for a in p.attachments]
    p = _parse("mail-parser", "mail_test_12")  # =?GB2312?B?...?=
    assert p.subject == "代开各地增值税发票"
    assert p.from_name == "张先生"


def test_enmime_expectations():
    # Each value below is what enmime's envelope_test.go asserts for the same file.
    p = _parse("enmime", "mail/qp-utf8-header.raw")
    assert p.subject == "MIME UTF8 Test \u00a2 More Text"
    assert p.to == ["marczak@inbucket.com"]

    p = _parse("enmime", "mail/attachment-octet.raw")  # TestParseAttachmentOctet
    assert "A text section" in p.text
    assert p.html is None
    (att,) = p.attachments
    assert att.filename == "ATTACHMENT.EXE"  # from the non-standard Content-Type "file=" param
    assert att.data == bytes([
        0x3, 0x17, 0xE1, 0x7E, 0xE8, 0xEB, 0xA2, 0x96, 0x9D, 0x95, 0xA7, 0x67, 0x82, 0x9,
        0xDF, 0x8E, 0xC, 0x2C, 0x6A, 0x2B, 0x9B, 0xBE, 0x79, 0xA4, 0x69, 0xD8, 0xAE, 0x86,
        0xD7, 0xAB, 0xA8, 0x72, 0x52, 0x15, 0xFB, 0x80, 0x8E, 0x47, 0xE1, 0xAE, 0xAA, 0x5E,
        0xA2, 0xB2, 0xC0, 0x90, 0x59, 0xE3, 0x35, 0xF8, 0x60, 0xB7, 0xB1, 0x63, 0x77, 0xD7,
        0x5F, 0x92, 0x58, 0xA8, 0x75,
    ])

    for name in ["html-mime-inline.raw", "html-mime-bad-charset-inline.raw",
                 "html-mime-bad-unknown-charset-inline.raw"]:
        p = _parse("enmime", f"mail/{name}")  # TestParseInline*Text
        assert p.text == "Test of text section", name

    p = _parse("enmime", "mail/mime-bad-8bit-filename.raw")  # TestBadMime8bitFilename
    assert p.text.strip() == "Text part"
    assert [a.filename for a in p.attachments] == ["管理.doc"]

    p = _parse("enmime", "mail/mime-blank-media-name.raw")  # TestBlankMediaName
    assert p.attachments[0].filename == "Invoice_302232133150612.pdf"
    assert p.attachments[0].content_type == "application/pdf"

    p = _parse("enmime", "mail/inlinemultipart.raw")  # TestParseInlineMultipart
    assert "Simple text." in p.text
    inline = [a for a in p.attachments if a.inline]
    assert [a.filename for a in inline] == ["test.txt"] and inline[0].data.startswith(b"Text")


def test_forwarded_message_is_an_attachment():
    p = _parse("cpython", "msg_06.txt")  # the whole body is a message/rfc822
    assert p.subject == "forwarded message from Barry A. Warsaw"
    (att,) = p.attachments
    assert att.filename == "forwarded-message.eml" and att.content_type == "message/rfc822"
    inner = parse_message(att.data)
    assert inner.subject == "testing"
    assert inner.message_id == "<15265.9468.713530.98441@python.org>"


def test_delivery_report_parts():
    p = _parse("cpython", "msg_16.txt")
    types = [a.content_type for a in p.attachments]
    assert types == ["message/delivery-status", "message/rfc822"]
    assert b"Status:" in p.attachments[0].data or b"Action:" in p.attachments[0].data


@pytest.mark.parametrize(
    "corpus,name,expected_text,expected_attachment",
    [
        ("cpython", "msg_41.txt", "Blah blah blah", None),  # multipart with no boundary at all
        ("cpython", "msg_17.txt", "This is the dingus fish.", None),  # boundary never used
        ("mail-parser", "mail_malformed_1", None, "20160523_916527.jpg_.zip"),  # part after the close
        ("mail-parser", "mail_malformed_3", "Problemas para visualizar", None),  # declared boundary differs from used
        ("enmime", "low-quality/bad-final-boundary.raw", None, "foo_9E5D72.zip"),
    ],
)
def test_malformed_structure_still_yields_content(corpus, name, expected_text, expected_attachment):
    p = _parse(corpus, name)
    assert p.parse_ok
    assert p.defects  # the damage is reported
    assert p.text.strip() or p.attachments
    if expected_text:
        assert expected_text in p.text
    if expected_attachment:
        assert expected_attachment in [a.filename for a in p.attachments]


def test_malformed_cpython_messages_are_readable():
    for path in corpus_files("cpython"):
        p = parse_message(path.read_bytes())
        raw = email.message_from_bytes(path.read_bytes())
        if any(part.defects for part in raw.walk()):
            assert p.parse_ok or p.text.strip(), path.name


def _raw(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode("ascii") + b"\r\n" + body


def test_latin1_body_and_header():
    raw = _raw(
        "From: =?iso-8859-1?q?Ren=E9?= <rene@Example.FR>\nTo: a@b.example\nSubject: =?iso-8859-1?q?caf=E9?=\n"
        "Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n",
        "Voilà, un café.\r\n".encode("latin-1"),
    )
    p = parse_message(raw)
    assert p.subject == "café"
    assert p.from_name == "René" and p.from_addr == "rene@example.fr"
    assert p.text == "Voilà, un café."


def test_iso_2022_jp():
    body = "こんにちは、世界".encode("iso-2022-jp")
    raw = _raw(
        "From: a@b.example\nSubject: =?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n",
        body + b"\r\n",
    )
    p = parse_message(raw)
    assert p.subject == "テスト"
    assert p.text == "こんにちは、世界"


def test_unknown_and_missing_charsets():
    headers = "Subject: x\nContent-Type: text/plain; charset=x-no-such-charset\n"
    p = parse_message(_raw(headers, "naïve ☃\r\n".encode()))
    assert p.text == "naïve ☃"  # valid UTF-8 under a label nobody knows
    assert any("x-no-such-charset" in d for d in p.defects)
    p = parse_message(_raw("Subject: x\nContent-Type: text/plain\n", "déjà vu\r\n".encode("cp1252")))
    assert p.text == "déjà vu"  # unlabelled 8-bit that is not UTF-8
    p = parse_message(_raw("Subject: =?x-bogus?q?hello?=\n", b"body\r\n"))
    assert p.subject == "hello"


def test_raw_utf8_headers():
    raw = "Subject: Grüße aus Köln\r\nFrom: Jörg <joerg@example.de>\r\n\r\nhi\r\n".encode()
    p = parse_message(raw)
    assert p.subject == "Grüße aus Köln"
    assert p.from_name == "Jörg"


def test_base64_garbage_body_and_attachment():
    raw = _raw(
        'Subject: b64\nContent-Type: multipart/mixed; boundary="B"\n',
        b"--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64@@@\r\n"
        b"--B\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n--B--\r\n",
    )
    p = parse_message(raw)
    assert p.parse_ok
    assert len(p.attachments) == 1 and p.attachments[0].filename == "attachment-1.pdf"


def test_threading_headers_and_auto_submitted():
    raw = _raw(
        "Message-ID: <a1@x.example>\nIn-Reply-To: <p1@x.example> (Bob's message)\n"
        "References: <r0@x.example>\n <p1@x.example>\nAuto-Submitted: auto-replied\n"
        "Reply-To: Help <Help@X.Example>, other@y.example\nSubject: Re: hi\n",
        b"ok\r\n",
    )
    p = parse_message(raw)
    assert p.message_id == "<a1@x.example>"
    assert p.in_reply_to == "<p1@x.example>"
    assert p.references == ["<r0@x.example>", "<p1@x.example>"]
    assert p.reply_to == ["Help@x.example", "other@y.example"]
    assert p.auto_submitted
    assert p.headers["auto-submitted"] == "auto-replied"
    assert not parse_message(_raw("Auto-Submitted: no\nSubject: x\n", b"x\r\n")).auto_submitted
    assert parse_message(_raw("Precedence: bulk\nSubject: x\n", b"x\r\n")).auto_submitted
    assert not parse_message(_raw("List-Id: <l.example>\nSubject: x\n", b"x\r\n")).auto_submitted


def test_html_only_gets_text():
    headers = "Subject: h\nContent-Type: text/html; charset=utf-8\n"
    raw = _raw(headers, b"<p>Hello <b>world</b></p><script>x()</script>\r\n")
    p = parse_message(raw)
    assert p.text == "Hello world"
    assert "<script>" in p.html  # raw HTML is kept; sanitising happens on output


def test_attachment_without_name_gets_one():
    raw = _raw(
        'Subject: a\nContent-Type: multipart/mixed; boundary="B"\n',
        b"--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        b"--B\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-ID: <img1@x>\r\n\r\niVBORw0KGgo=\r\n"
        b"--B\r\nContent-Type: application/x-unknown-thing\r\n"
        b"Content-Disposition: attachment; filename=\"../../etc/passwd\"\r\n\r\nzz\r\n"
        b"--B--\r\n",
    )
    p = parse_message(raw)
    png, other = p.attachments
    assert png.filename == "attachment-1.png" and png.content_id == "img1@x" and png.inline
    assert png.data == b"\x89PNG\r\n\x1a\n"
    assert other.filename == "passwd" and not other.inline


def test_fallback_when_mail_parser_fails(monkeypatch):
    def boom(raw):
        raise RuntimeError("simulated mail-parser failure")

    monkeypatch.setattr(mailparser.MailParser, "from_bytes", staticmethod(boom))
    p = _parse("cpython", "msg_01.txt")
    assert not p.parse_ok
    assert p.subject == "This is a test message"
    assert p.from_addr == "bbb@ddd.com"
    assert "Do you like this message?" in p.text
    assert any("mail-parser failed" in d for d in p.defects)


def test_minimal_result_when_everything_fails(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(mailparser.MailParser, "from_bytes", staticmethod(boom))
    monkeypatch.setattr(email, "message_from_bytes", boom)
    p = parse_message(b"Subject: x\r\n\r\nstill readable \xff")
    assert not p.parse_ok
    assert "still readable" in p.text and p.defects


def _nested(depth: int) -> bytes:
    head = b"Subject: deep\r\n"
    parts = b""
    for i in range(depth):
        parts += f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
    return head + parts + b"Content-Type: text/plain\r\n\r\nbottom\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 100,
        b"\r\n\r\n\r\n",
        b"Subject",
        b"Subject: \xff\xfe\r\n\r\n\xff",
        b"Content-Type: multipart/mixed\r\n\r\n--\r\n--\r\n",
        b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\n',
        b"Content-Type: text/plain; charset=\"\r\n\r\nx",
        b"Content-Transfer-Encoding: base64\r\n\r\n=",
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=ZZ=",
        b"Content-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 f\r\n",
        b"Date: Mon, 99 Foo 99999 99:99:99 +9999\r\nFrom: <<<@>>>\r\n\r\nx",
        b"From: " + b"a" * 100_000 + b"\r\n\r\n",
        b"Subject: =?utf-8?b?\xff\xff?=\r\n\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        _nested(120),
    ],
)
def test_never_raises_on_hostile_input(raw):
    _assert_well_formed(parse_message(raw))


def test_never_raises_on_random_and_truncated_input():
    rng = random.Random(20240601)
    samples = [corpus_dir("cpython") / "msg_07.txt", corpus_dir("mail-parser") / "mail_test_3",
               corpus_dir("enmime") / "mail/other-multi-related.raw"]
    for _ in range(60):
        _assert_well_formed(parse_message(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))))
    for path in samples:
        data = path.read_bytes()
        for cut in sorted(rng.sample(range(len(data)), 15)):
            _assert_well_formed(parse_message(data[:cut]))
        for _ in range(15):  # random byte flips
            mutated = bytearray(data)
            for _ in range(20):
                mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
            _assert_well_formed(parse_message(bytes(mutated)))
