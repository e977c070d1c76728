"""Content scanning: every built-in detector on realistic secrets in every field, no false
positives on ordinary mail (written here, the verification-mail corpus and the fetched corpora),
the operator's block/hold patterns, and findings that never repeat the secret.

Sample credentials are assembled at run time from a seeded generator, so that this file holds
no literal token for a secret scanner (GitHub push protection, gitleaks) to flag.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import random
import string
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from inbox_mcp.mail.parse import parse_message
from inbox_mcp.policy.content import (
    MAX_ATTACHMENT_BYTES,
    MAX_PATTERN_CHARS,
    ContentFinding,
    ContentItem,
    describe,
    scan,
)
from inbox_mcp.policy.models import DETECTORS
from tests.corpora import all_corpus_files

ALL = list(DETECTORS)
REPO = Path(__file__).resolve().parents[2]
VERIFICATION_CORPUS = Path(
    os.environ.get("INBOX_MCP_VERIFICATION_CORPUS") or REPO.parent / "shared" / "corpora" / "verification-mail"
)

_rng = random.Random(20240517)
ALNUM = string.ascii_letters + string.digits


def rand(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def pem(label: str, first: str, n_bytes: int, width: int = 64, headers: str = "") -> str:
    body = first + base64.b64encode(_rng.randbytes(n_bytes)).decode()
    lines = [body[i : i + width] for i in range(0, len(body), width)]
    return f"-----BEGIN {label}-----\n{headers}" + "\n".join(lines) + f"\n-----END {label}-----\n"


def item(subject: str = "", text: str | None = None, html: str | None = None, attachments: list | None = None) -> ContentItem:
    return ContentItem(subject=subject, text=text, html=html, attachments=attachments or [])


def scan_text(text: str, detectors: list[str] | None = None) -> list[ContentFinding]:
    return scan(item(text=text), ALL if detectors is None else detectors, [], [])


def names(findings: list[ContentFinding]) -> list[str]:
    return [f.name for f in findings]


# --- realistic secrets -------------------------------------------------------------------------

RSA_KEY = pem("RSA PRIVATE KEY", "MIIEowIBAAKCAQEA", 1180)
PKCS8_KEY = pem("PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", 1200)
EC_KEY = pem("EC PRIVATE KEY", "MHcCAQEEI", 110)
OPENSSH_KEY = pem("OPENSSH PRIVATE KEY", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", 300, width=70)
ENCRYPTED_KEY = pem("ENCRYPTED PRIVATE KEY", "MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI", 1250)
LEGACY_ENCRYPTED_RSA = pem(
    "RSA PRIVATE KEY", "", 1190, headers="Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89F2C4E3D1A9B0C7E5\n\n"
)
PGP_KEY = (
    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n"
    + "\n".join(rand(ALNUM + "+/", 64) for _ in range(30))
    + "\n=" + rand(ALNUM, 4) + "\n-----END PGP PRIVATE KEY BLOCK-----\n"
)
DSA_KEY = pem("DSA PRIVATE KEY", "MIIBuwIBAAKBgQD", 440)

AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example
AWS_STS_KEY_ID = "ASIA" + rand(string.ascii_uppercase + string.digits, 16)
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example

GH_CLASSIC = "ghp_" + rand(ALNUM, 36)
GH_OAUTH = "gho_" + rand(ALNUM, 36)
GH_SERVER = "ghs_" + rand(ALNUM, 36)
GH_FINE = "github_pat_" + rand(ALNUM, 22) + "_" + rand(ALNUM, 59)

SLACK_BOT = "xox" + "b-" + rand(string.digits, 12) + "-" + rand(string.digits, 13) + "-" + rand(ALNUM, 24)
SLACK_USER = "xox" + "p-" + "-".join(rand(string.digits, 12) for _ in range(3)) + "-" + rand(string.hexdigits.lower(), 32)
SLACK_HOOK = "https://hooks.slack.com/services/T" + rand(string.ascii_uppercase + string.digits, 8) + "/B" + rand(
    string.ascii_uppercase + string.digits, 10
) + "/" + rand(ALNUM, 24)

OPENAI_LEGACY = "sk-" + rand(ALNUM, 48)
OPENAI_PROJECT = "sk-" + "proj-" + rand(ALNUM + "-_", 156)
ANTHROPIC = "sk-" + "ant-api03-" + rand(ALNUM + "-_", 93) + "AA"

CARDS = {
    "visa": "4111 1111 1111 1111",
    "visa_plain": "4012888888881881",
    "visa_dashes": "4242-4242-4242-4242",
    "mastercard": "5555 5555 5555 4444",
    "mastercard_2series": "2223003122003222",
    "amex": "3782 822463 10005",
    "amex_plain": "371449635398431",
    "discover": "6011 1111 1111 1117",
    "jcb": "3530111333300000",
    "diners": "36227206271667",
    "unionpay": "6200000000000005",
}

SECRETS: dict[str, tuple[str, str]] = {  # sample -> (detector, the secret as it appears)
    "rsa": ("private_key", RSA_KEY),
    "pkcs8": ("private_key", PKCS8_KEY),
    "ec": ("private_key", EC_KEY),
    "openssh": ("private_key", OPENSSH_KEY),
    "encrypted": ("private_key", ENCRYPTED_KEY),
    "legacy_encrypted": ("private_key", LEGACY_ENCRYPTED_RSA),
    "pgp": ("private_key", PGP_KEY),
    "dsa": ("private_key", DSA_KEY),
    "aws_key_id": ("aws_key", AWS_KEY_ID),
    "aws_sts_key_id": ("aws_key", AWS_STS_KEY_ID),
    "github_classic": ("github_token", GH_CLASSIC),
    "github_oauth": ("github_token", GH_OAUTH),
    "github_server": ("github_token", GH_SERVER),
    "github_fine_grained": ("github_token", GH_FINE),
    "slack_bot": ("slack_token", SLACK_BOT),
    "slack_user": ("slack_token", SLACK_USER),
    "slack_webhook": ("slack_token", SLACK_HOOK),
    "openai_legacy": ("openai_key", OPENAI_LEGACY),
    "openai_project": ("openai_key", OPENAI_PROJECT),
    "anthropic": ("openai_key", ANTHROPIC),
    **{f"card_{k}": ("card_number", v) for k, v in CARDS.items()},
}


def in_prose(secret: str) -> str:
    return (
        "Hi Dana,\n\nAs discussed on the call, here is what you need to get the staging deploy going:\n\n"
        f"{secret}\n\nLet me know if anything is missing.\n\nBest,\nSam\n"
    )


def assert_no_leak(findings: list[ContentFinding], secret: str) -> None:
    for f in findings:
        for rendered in (str(f), repr(f), describe(f), f.name, f.where):
            assert secret not in rendered
            digits = "".join(c for c in secret if c.isdigit())
            if len(digits) >= 13:
                assert digits not in "".join(c for c in rendered if c.isdigit())


# --- every detector, every field ---------------------------------------------------------------


@pytest.mark.parametrize("sample", SECRETS)
def test_detector_finds_secret_in_text_and_never_repeats_it(sample: str) -> None:
    detector, secret = SECRETS[sample]
    findings = scan_text(in_prose(secret))
    assert findings == [ContentFinding("detector", detector, "text")]
    assert_no_leak(findings, secret)
    assert describe(findings[0]) == f"detector {detector} matched in text"


@pytest.mark.parametrize("sample", SECRETS)
def test_detector_finds_secret_in_html_body(sample: str) -> None:
    detector, secret = SECRETS[sample]
    html = f"<html><body><p>Hi Dana,</p><pre>{secret}</pre><p>Best,<br>Sam</p></body></html>"
    findings = scan(item(html=html), ALL, [], [])
    assert findings == [ContentFinding("detector", detector, "html")]
    assert_no_leak(findings, secret)


@pytest.mark.parametrize("sample", SECRETS)
def test_detector_finds_secret_in_text_attachment(sample: str) -> None:
    detector, secret = SECRETS[sample]
    findings = scan(item(text="See attached.", attachments=[("notes.txt", "text/plain", in_prose(secret).encode())]), ALL, [], [])
    assert findings == [ContentFinding("detector", detector, "attachment 'notes.txt'")]
    assert_no_leak(findings, secret)


@pytest.mark.parametrize("sample", [s for s in SECRETS if "\n" not in SECRETS[s][1] and "/" not in SECRETS[s][1]])
def test_detector_finds_secret_in_attachment_name_and_redacts_the_name(sample: str) -> None:
    detector, secret = SECRETS[sample]
    name = f"backup-{secret.replace(' ', '_')}.pdf" if "card" not in sample else f"card {secret}.pdf"
    findings = scan(item(text="See attached.", attachments=[(name, "application/pdf", b"%PDF-1.7\n\x00\x01")]), ALL, [], [])
    assert [(f.name, f.where.startswith("attachment name '")) for f in findings] == [(detector, True)]
    assert "[redacted]" in findings[0].where
    assert_no_leak(findings, secret)
    assert_no_leak(findings, secret.replace(" ", "_"))


@pytest.mark.parametrize("card", CARDS.values())
def test_cards_in_subject_html_table_and_csv(card: str) -> None:
    assert scan(item(subject=f"card {card}"), ALL, [], []) == [ContentFinding("detector", "card_number", "subject")]
    table = f"<table><tr><td>Card</td><td>{card.replace(' ', '&nbsp;')}</td><td>12/27</td></tr></table>"
    assert names(scan(item(html=table), ["card_number"], [], [])) == ["card_number"]
    csv = f"name,card,expiry\nDana Smith,{card},12/27\n".encode()
    found = scan(item(attachments=[("export", "text/csv", csv)]), ["card_number"], [], [])
    assert found == [ContentFinding("detector", "card_number", "attachment 'export'")]


@pytest.mark.parametrize(
    "text",
    [
        "Card: 4111 1111 1111 1111 exp 12/27 cvc 123",
        "card 4111-1111-1111-1111 12/27",
        "4111 1111 1111 1111 12/27",
        "number=4111111111111111;exp=1227",
        "Amex 3782-822463-10005",
        "(5555555555554444)",
        "visa:4012888888881881.",
    ],
)
def test_cards_in_context(text: str) -> None:
    assert names(scan_text(text)) == ["card_number"]


@pytest.mark.parametrize(
    "text",
    [
        "04111111111111111",  # a card inside a longer digit run is not a card
        "41111111111111110",
        "4111111111111111222",
        "Ref 2024 4111 1111 1111 1111",  # grouped, but the run does not start with the card
        "4111 1111 1111 1112",  # Luhn fails
        "9111 1111 1111 1111",  # no issuer starts with 9
        "4111111111111111abc",  # glued to letters: part of a token
        "tx_4111111111111111",
        "4111 1111  1111 1111",  # double space: not one number
        "4111\n1111\n1111\n1111",
        "4222222222222",  # 13-digit Visa: retired, and indistinguishable from EAN-13 barcodes
        "4006381333931",  # an EAN-13 barcode
        "411 1111 1111 11111",
    ],
)
def test_card_lookalikes_are_not_cards(text: str) -> None:
    assert scan_text(text) == []


def test_private_key_needs_a_key_body() -> None:
    docs = (
        "Your key file should start with -----BEGIN RSA PRIVATE KEY----- and end with the END line.\n"
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n"
    )
    assert scan_text(docs) == []
    public = pem("PUBLIC KEY", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA", 260)
    certificate = pem("CERTIFICATE", "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa", 900)
    assert scan_text(public + certificate) == []


def test_private_key_quoted_in_a_reply() -> None:
    quoted = "\n".join("> " + line for line in RSA_KEY.splitlines())
    assert names(scan_text(f"On Mon, Sam wrote:\n{quoted}\n")) == ["private_key"]


@pytest.mark.parametrize(
    "text",
    [
        f"[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'{{"AccessKeyId": "ASIA...", "SecretAccessKey": "{AWS_SECRET}"}}',
        f"aws_secret_access_key:\n  {AWS_SECRET}",
        f"secret: '{AWS_SECRET}'",
    ],
)
def test_aws_secret_access_key_in_context(text: str) -> None:
    findings = scan_text(text)
    assert names(findings) == ["aws_key"]
    assert_no_leak(findings, AWS_SECRET)


@pytest.mark.parametrize(
    "text",
    [
        f"Build artifact digest {AWS_SECRET}",  # 40 base64 chars with no secret context
        "secret = 9fceb02d0ae598e95dc970b74767f19372d61af8",  # a git SHA: no upper case
        "The secret to good onboarding: ThisIsNotAKeyJustAVeryLongCamelCaseWordOk",
        "AKIAIOSFODNN7EXAMPL",  # too short
        "xAKIAIOSFODNN7EXAMPLE",  # inside a longer token
        "AKIAIOSFODNN7EXAMPLE2",
    ],
)
def test_aws_lookalikes(text: str) -> None:
    assert scan_text(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "ghp_short",
        "ghp_" + rand(ALNUM, 35),
        "my ghp_ prefix notes",
        "xoxb-not-a-token",
        "the xoxo-hugs-and-kisses-team",
        "hooks.slack.com/services/",
        "desk-top task-list ask-me-anything risk-assessment-2024-q3 whisk-mixer",
        "sk-learn and sk-" + "thisisjustalongwordwithoutanydigitsatall",
        "sk-proj-redesign-homepage-and-checkout-flow",
        "sk-ant-colony-optimisation-notes-for-the-team",
        "Use the sk- prefix for secret keys.",
    ],
)
def test_token_lookalikes(text: str) -> None:
    assert scan_text(text) == []


# --- fields and attachments --------------------------------------------------------------------


def test_raw_html_is_scanned_too_comments_and_attributes() -> None:
    hidden = f'<p>Hello</p><!-- {GH_CLASSIC} --><a href="{SLACK_HOOK}">status</a><span style="display:none">{AWS_KEY_ID}</span>'
    assert names(scan(item(html=hidden), ALL, [], [])) == ["aws_key", "github_token", "slack_token"]


def test_html_entities_are_decoded() -> None:
    html = "<p>Card: 4111&#32;1111&nbsp;1111&#x20;1111</p>"
    assert names(scan(item(html=html), ALL, [], [])) == ["card_number"]


@pytest.mark.parametrize(
    ("filename", "content_type", "scanned"),
    [
        ("notes.txt", "text/plain", True),
        ("config.yaml", "application/octet-stream", True),
        (".env", "application/octet-stream", True),
        ("id_rsa.pem", "application/octet-stream", True),
        ("data.json", "application/json", True),
        ("deploy", "application/x-sh", True),
        ("key", "application/x-pem-file", True),
        ("page.html", "text/html", True),
        ("README", "application/octet-stream", True),  # sniffed: plain UTF-8 text
        ("photo.png", "image/png", False),
        ("report.pdf", "application/pdf", False),
    ],
)
def test_which_attachments_are_scanned(filename: str, content_type: str, scanned: bool) -> None:
    data = f"AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n".encode()
    if not scanned:
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + data + b"\x00\x00"
    found = scan(item(attachments=[(filename, content_type, data)]), ALL, [], [])
    assert found == ([ContentFinding("detector", "aws_key", f"attachment '{filename}'")] if scanned else [])


def test_attachment_text_is_decoded_leniently() -> None:
    data = b"\xff\xfe broken bytes \xc3 then " + AWS_KEY_ID.encode() + b" \x80"
    assert names(scan(item(attachments=[("dump.log", "text/plain", data)]), ALL, [], [])) == ["aws_key"]


def test_attachment_scan_is_capped_at_5_mb() -> None:
    filler = b"lorem ipsum dolor sit amet 12345 " * (MAX_ATTACHMENT_BYTES // 33 + 1)
    late = filler[:MAX_ATTACHMENT_BYTES] + b"\n" + AWS_KEY_ID.encode()
    early = filler[: MAX_ATTACHMENT_BYTES - 100] + b" " + AWS_KEY_ID.encode() + b" "
    start = time.monotonic()
    assert scan(item(attachments=[("big.log", "text/plain", late)]), ALL, [], []) == []
    assert names(scan(item(attachments=[("big.log", "text/plain", early)]), ALL, [], [])) == ["aws_key"]
    assert time.monotonic() - start < 5


def test_first_field_wins_and_each_detector_reported_once() -> None:
    it = item(
        subject="keys",
        text=f"{AWS_KEY_ID} and again {AWS_STS_KEY_ID}",
        html=f"<p>{AWS_KEY_ID}</p>",
        attachments=[("a.txt", "text/plain", AWS_KEY_ID.encode())],
    )
    assert scan(it, ALL, [], []) == [ContentFinding("detector", "aws_key", "text")]


def test_only_enabled_detectors_run_in_the_order_given() -> None:
    text = f"{GH_CLASSIC}\n{AWS_KEY_ID}\n4111 1111 1111 1111"
    assert names(scan_text(text, [])) == []
    assert names(scan_text(text, ["card_number"])) == ["card_number"]
    assert names(scan_text(text, ["card_number", "github_token", "aws_key"])) == ["card_number", "github_token", "aws_key"]
    assert names(scan_text(text, ALL)) == ["aws_key", "github_token", "card_number"]


def test_unknown_detector_fails_closed() -> None:
    with pytest.raises(ValueError, match="password"):
        scan_text("hello", ["aws_key", "password"])


# --- operator patterns -------------------------------------------------------------------------


def test_block_and_hold_patterns_named_by_index() -> None:
    it = item(subject="Project Falcon update", text="Numbers attached. CONFIDENTIAL - do not forward.")
    found = scan(it, ALL, ["Nothing", r"Project\s+Falcon"], [r"(?i)confidential", "Numbers"])
    assert found == [
        ContentFinding("block_pattern", "content.block_patterns[1]", "subject"),
        ContentFinding("hold_pattern", "content.hold_patterns[0]", "text"),
        ContentFinding("hold_pattern", "content.hold_patterns[1]", "text"),
    ]
    assert describe(found[0]) == "block pattern content.block_patterns[1] matched in subject"
    assert describe(found[1]) == "hold pattern content.hold_patterns[0] matched in text"


def test_patterns_are_case_sensitive_unless_they_say_otherwise() -> None:
    it = item(text="project falcon")
    assert scan(it, [], ["Project Falcon"], []) == []
    assert names(scan(it, [], ["(?i)Project Falcon"], [])) == ["content.block_patterns[0]"]


def test_order_is_detectors_then_block_then_hold() -> None:
    it = item(
        subject="hold me",
        text="block me",
        attachments=[("keys.env", "text/plain", f"GITHUB_TOKEN={GH_CLASSIC}\n".encode())],
    )
    found = scan(it, ALL, ["block"], ["hold"])
    assert [(f.kind, f.name, f.where) for f in found] == [
        ("detector", "github_token", "attachment 'keys.env'"),
        ("block_pattern", "content.block_patterns[0]", "text"),
        ("hold_pattern", "content.hold_patterns[0]", "subject"),
    ]


def test_same_regex_as_block_and_hold_gives_one_finding_each() -> None:
    found = scan(item(text="wire transfer"), [], ["wire"], ["wire"])
    assert [f.kind for f in found] == ["block_pattern", "hold_pattern"]


def test_patterns_see_html_text_attachment_names_and_contents() -> None:
    assert scan(item(html="<p>Project&nbsp;Falcon</p>"), [], ["Project Falcon"], [])[0].where == "html"
    found = scan(item(attachments=[("falcon-plan.docx", "application/octet-stream", b"PK\x03\x04\x00")]), [], ["falcon"], [])
    assert found == [ContentFinding("block_pattern", "content.block_patterns[0]", "attachment name '[redacted]-plan.docx'")]
    found = scan(item(attachments=[("plan.md", "text/markdown", b"# Falcon\n")]), [], ["Falcon"], [])
    assert found == [ContentFinding("block_pattern", "content.block_patterns[0]", "attachment 'plan.md'")]


def test_pattern_matches_are_not_quoted_in_findings() -> None:
    it = item(subject="codename BLUEBIRD-7781", attachments=[("BLUEBIRD-7781.txt", "text/plain", b"x")])
    found = scan(it, [], [r"BLUEBIRD-\d+"], [r"BLUEBIRD"])
    assert found and all("BLUEBIRD" not in describe(f) and "7781" not in repr(f) for f in found)


def test_pattern_scan_is_capped_per_field() -> None:
    far = "a" * MAX_PATTERN_CHARS + " NEEDLE"
    assert scan(item(text=far), [], ["NEEDLE"], []) == []
    assert names(scan(item(text="NEEDLE" + far), [], ["NEEDLE"], [])) == ["content.block_patterns[0]"]


def test_empty_matches_and_empty_inputs() -> None:
    assert scan(item(), ALL, [], []) == []
    assert scan(item(subject="", text="", html=""), ALL, ["x*"], []) == [
        ContentFinding("block_pattern", "content.block_patterns[0]", "subject")
    ]


def test_secret_in_attachment_name_is_redacted_in_content_finding_too() -> None:
    name = f"{GH_CLASSIC}.txt"
    found = scan(item(attachments=[(name, "text/plain", b"Project Falcon")]), ALL, ["Falcon"], [])
    assert found == [
        ContentFinding("detector", "github_token", "attachment name '[redacted].txt'"),
        ContentFinding("block_pattern", "content.block_patterns[0]", "attachment '[redacted].txt'"),
    ]


# --- no false positives on ordinary mail -------------------------------------------------------

ORDINARY_MAIL = [
    (
        "Hi team,\n\nThe Q3 planning meeting moves to Thursday 2024-09-12 at 14:30 CET, room 4.111.\n"
        "Agenda: budget (EUR 1,250,000.00), hiring (3 FTE) and the desk-top refresh.\n\nThanks,\nMaria"
    ),
    (
        "Your order #112-4567890-1234567 has shipped!\nTracking number: 1Z999AA10123456784 (UPS)\n"
        "Estimated delivery: Tue, Mar 12. Order total: $149.99"
    ),
    (
        "Hello,\nPlease pay invoice INV-2024-000123 by 30 April 2024 to IBAN DE89370400440532013000, "
        "BIC COBADEFFXXX. Reference: 2024/04/0117.\nKind regards, Accounts"
    ),
    "IBAN: DE89 3704 0044 0532 0130 00\nAmount due: 4.111,11 EUR\nDue date: 15.05.2024",
    "Call me on +1 (415) 555-0132 or my mobile +44 7911 123456. Office: +49 30 901820.",
    (
        "The build failed on commit 9fceb02d0ae598e95dc970b74767f19372d61af8 (branch task-list-refactor).\n"
        "See https://ci.example.com/builds/4111111 for logs."
    ),
    "Request ID: 550e8400-e29b-41d4-a716-446655440000\nCorrelation: 123e4567-e89b-12d3-a456-426614174000",
    "ISBN 978-0-306-40615-7 and ISBN-10 0-306-40615-2; EAN 4006381333931. Price: GBP 24.99",
    "Your Visa ending in 1111 was charged $42.00 on 03/14/2024. Card: **** **** **** 1111",
    "Customer number 4539 1488 0343 6468 2 has been migrated to account 100200300400500.",
    "Meeting ID: 845 1234 5678, Passcode: 902113\nDial by your location: +1 646 558 8656 US (New York)",
    (
        "Dear Mr. Schmidt,\n\nthank you for your application. We will get back to you by the end of next week.\n\n"
        "Mit freundlichen Grüßen\nPersonalabteilung"
    ),
    "Flight LH 2035 MUC-BER departs 07:15, seat 14C. Booking reference: X7K9QP. E-ticket 220-4111111111.",
    "Shipment 9400 1000 0000 0000 0000 00 is out for delivery. FedEx 7489 2345 6789.",
    "Re: risk-assessment for sk-8 plant\n> Can you send the ask-me-anything notes?\nSure, attached below.",
    "Parcel 00340434161094015902 scanned at hub 12 on 2024-02-29T08:15:00Z.",
    "Your verification code is 482913. It expires in 10 minutes. Do not share it.",
    "Transaction 7712004455889911 declined (reference 2024031512345678). Please retry later.",
    "The SHA-256 of the installer is 3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea.",
    "Hi! The kids' soccer game is at 9 on Saturday, field 3. Bring snacks for 14 players. — Jen",
    "Password reset requested for account 73810092. If this wasn't you, ignore this email.",
    "Order 5512-3456-7890-1233 is confirmed. Delivery window: 10:00-12:00.",
    "Temperature log: 21.5 22.0 22.4 21.9 21.7 22.1 22.3 (°C), humidity 45%.",
    "Stack trace:\n  File \"/srv/app/main.py\", line 4111, in handler\n    raise KeyError('secret')\nKeyError: 'secret'",
    "Happy birthday Grandma! Love, Tom & Anna. PS: the photos are on the shared drive.",
    "Timestamps: 1712345678901 1712345678901234 and batch 20240315123045123.",
    "Coordinates 48.137154, 11.576124; parcel ID DE-BY-09162-000-1234-5678.",
    "Your AWS bill for March: $12.34. Account 123456789012. Region eu-central-1.",
    "The secret ingredient is love. Also, the Wi-Fi password is on the fridge.",
    "PR #4111 merged: add github_pat support to docs; see ghp_ prefix table in README.",
    "Slack: join #release-2024 and ping @oncall. Webhooks are configured in the admin console.",
    "Invoice total 1 234 567,89 SEK, org.nr 556677-8899, bankgiro 5050-1055.",
    "Ticket JIRA-20412 updated: status changed from 'In Progress' to 'Done' by alex.",
    "The sk-II essence and the SK-1 camera are both back in stock. Use code SPRING24.",
]


@pytest.mark.parametrize("body", ORDINARY_MAIL, ids=[f"mail{i}" for i in range(len(ORDINARY_MAIL))])
def test_ordinary_mail_has_no_findings(body: str) -> None:
    assert scan(item(subject="Re: update", text=body, html=f"<p>{body}</p>"), ALL, [], []) == []


def test_ordinary_mail_corpus_is_large_enough() -> None:
    assert len(ORDINARY_MAIL) >= 30


def _stdlib_item(raw: bytes) -> ContentItem:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = html = None
    attachments: list[tuple[str, str, bytes]] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if part.get_content_disposition() != "attachment" and ctype == "text/plain" and text is None:
            text = part.get_content()
        elif part.get_content_disposition() != "attachment" and ctype == "text/html" and html is None:
            html = part.get_content()
        else:
            attachments.append((part.get_filename() or "part", ctype, part.get_payload(decode=True) or b""))
    return ContentItem(str(message.get("subject", "")), text, html, attachments)


def test_verification_mail_corpus_has_no_detector_findings() -> None:
    files = sorted(VERIFICATION_CORPUS.glob("*.eml"))
    if not files:
        pytest.fail(f"verification-mail corpus not found at {VERIFICATION_CORPUS}")
    flagged = {f.name: scan(_stdlib_item(f.read_bytes()), ALL, [], []) for f in files}
    assert {k: v for k, v in flagged.items() if v} == {}


def test_fetched_corpora_have_no_detector_findings() -> None:
    flagged = {}
    for path in all_corpus_files():
        parsed = parse_message(path.read_bytes())
        attachments = [(a.filename, a.content_type, a.data) for a in parsed.attachments]
        it = ContentItem(parsed.subject, parsed.text, parsed.html, attachments)
        findings = scan(it, ALL, [], [])
        if findings:
            flagged[str(path)] = findings
    assert flagged == {}
