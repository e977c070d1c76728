"""DKIM keys and signing: generate_key's zone-file record, sign, load_key/save_key, and the
signatures verified both by our evaluate() and by dkimpy directly, offline (DNS from a dict)."""

from __future__ import annotations

import base64
import re
import stat
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from inbox_mcp.errors import InvalidArgument
from inbox_mcp.mail.authresults import evaluate
from inbox_mcp.mail.dkim_sign import DkimKey, dns_record, generate_key, load_key, save_key, sign, txt_value

BITS = 1024  # tests only: 2048 is the default and is exercised once
# A 512-bit key (test only; cryptography refuses to generate one, openssl genrsa 512 did).
SMALL_KEY = b"""-----BEGIN RSA PRIVATE KEY-----
MIIBOwIBAAJBANODTrq8gccTKkDLnyv+OSUJ5dSZMxSelieFJlotRMUmX+RTAuxb
u6MmyHbbC2ISiYKDOdB/qD6L0dVADH2sMLMCAwEAAQJAMeHlz2Rltu1uKZncECQE
lheffGQlB9fe0bM1OE80yMm15i6bICgXnZCaGlw/G/WXQ3xbDvrz5Qyp7wi631KY
AQIhAP33tSQQ5tRXRz2uJuZ1hgkUTO5p8neW4/o8vsu33ftTAiEA1TSf+A3BXN4F
13SXGew0utjziTmqSyfpUQquJASnqSECIQDK440uluIRWPhs6ifhjJnbvwAGp1Uw
/LZ8PvMdxHHuSQIgAK7kfFT+8586gZA8E7cwDBE55oyqwQbltn7ERBVHvEECIQCU
TNALdNrlM/7EvSYTdy6e3qJ6bbJoIw245KRY0nmEhg==
-----END RSA PRIVATE KEY-----
"""


@pytest.fixture(scope="module")
def key_and_record() -> tuple[DkimKey, str]:
    return generate_key("example.com", bits=BITS)


@pytest.fixture(scope="module")
def key(key_and_record) -> DkimKey:
    return key_and_record[0]


@pytest.fixture(scope="module")
def zone(key_and_record) -> dict[str, list[str]]:
    return zone_from_records(key_and_record[1])


def parse_record(record: str) -> tuple[str, list[str]]:
    """(name without the final dot, quoted chunks) of a zone-file TXT line."""
    m = re.fullmatch(r'(\S+)\. IN TXT ((?:"[^"]*"\s?)+)', record)
    assert m, record
    return m.group(1), re.findall(r'"([^"]*)"', m.group(2))


def zone_from_records(*records: str) -> dict[str, list[str]]:
    zone: dict[str, list[str]] = {}
    for record in records:
        name, chunks = parse_record(record)
        zone.setdefault(name, []).append("".join(chunks))  # DNS joins a record's strings
    return zone


def resolver(zone: dict[str, list[str]]):
    def txt(name: str) -> list[str]:
        return zone[name]  # KeyError is a LookupError: NXDOMAIN

    return txt


def compose(from_: str = "Support Bot <bot@example.com>", body: str = "Hello Bob,\n\nYour ticket is fixed.\n") -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_
    msg["To"] = "Bob <bob@example.org>"
    msg["Cc"] = "carol@example.org"
    msg["Subject"] = "Your ticket #4411"
    msg["Date"] = format_datetime(datetime(2024, 3, 12, 10, 15, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = "<q1@example.org>"
    msg["References"] = "<q1@example.org>"
    msg.set_content(body)
    return msg.as_bytes()


def dkim_of(raw: bytes, zone: dict[str, list[str]]) -> str:
    return evaluate(raw, client_ip=None, helo=None, mail_from=None, dns_txt=resolver(zone)).dkim


def signature_tags(signed: bytes) -> dict[str, str]:
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    value = re.search(r"^DKIM-Signature:(.*?)(?=^\S)", header + "\r\nX", re.MULTILINE | re.DOTALL).group(1)
    tags = {}
    for part in re.sub(r"\s+", "", value).split(";"):
        if part:
            k, _, v = part.partition("=")
            tags[k] = v
    return tags


# --- generate_key / dns_record ------------------------------------------------------------------


def test_generate_key_record_is_a_zone_file_line_with_255_char_chunks():
    key, record = generate_key("Example.COM")  # default 2048 bits: the p= value needs two strings
    name, chunks = parse_record(record)
    assert name == "inbox._domainkey.example.com" == key.dns_name
    assert key.domain == "example.com" and key.selector == "inbox"
    assert len(chunks) >= 2 and all(0 < len(c) <= 255 for c in chunks)
    value = "".join(chunks)
    assert value == txt_value(key)
    tags = dict(part.strip().split("=", 1) for part in value.split(";"))
    assert tags["v"] == "DKIM1" and tags["k"] == "rsa"
    public = serialization.load_der_public_key(base64.b64decode(tags["p"]))
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert public.public_numbers() == private.public_key().public_numbers()
    # and dkimpy, the verifier, reads the record as a key
    assert dkim.evaluate_pk(name.encode(), value.encode())[1] == 2048


def test_generate_key_custom_selector_names_the_record(key_and_record):
    other, record = generate_key("mail.example.net", selector="s2024", bits=BITS)
    assert record.startswith('s2024._domainkey.mail.example.net. IN TXT "v=DKIM1; k=rsa; p=')
    assert dns_record(other) == record
    # a 1024-bit value fits one string
    assert len(parse_record(key_and_record[1])[1]) == 1


@pytest.mark.parametrize(
    "domain, selector, bits",
    [("localhost", "inbox", BITS), ("exa mple.com", "inbox", BITS), ("a@b.com", "inbox", BITS),
     ("example.com", "bad selector", BITS), ("example.com", "", BITS), ("example.com", "inbox", 512)],
)
def test_generate_key_refuses_bad_names_and_small_keys(domain, selector, bits):
    with pytest.raises(InvalidArgument):
        generate_key(domain, selector, bits)


def test_key_repr_hides_the_private_key(key):
    assert "PRIVATE" not in repr(key) and "example.com" in repr(key)


# --- sign ---------------------------------------------------------------------------------------


def test_sign_prepends_a_relaxed_signature_over_the_present_headers(key):
    raw = compose()
    signed = sign(raw, key)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(raw)
    tags = signature_tags(signed)
    assert tags["c"] == "relaxed/relaxed" and tags["a"] == "rsa-sha256"
    assert tags["d"] == "example.com" and tags["s"] == "inbox"
    assert tags["h"].split(":") == [
        "from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references",
        "mime-version", "content-type",
    ]  # Reply-To is absent, so not signed


def test_sign_then_verify_passes(key, zone):
    signed = sign(compose(), key)
    assert dkim_of(signed, zone) == "pass"
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: zone[name.decode().rstrip(".")][0].encode())


def test_sign_accepts_a_subdomain_of_the_key_domain(key, zone):
    signed = sign(compose(from_="bot@agents.example.com"), key)
    assert signature_tags(signed)["d"] == "example.com"
    assert dkim_of(signed, zone) == "pass"


def test_sign_lf_only_message_verifies(key, zone):
    raw = compose().replace(b"\r\n", b"\n")
    signed = sign(raw, key)
    assert b"\r" not in signed
    assert dkim_of(signed, zone) == "pass"


def test_sign_with_explicit_headers(key, zone):
    signed = sign(compose(), key, headers=[b"From", b"Subject", b"From"])
    assert signature_tags(signed)["h"] == "from:subject:from"
    assert dkim_of(signed, zone) == "pass"


def test_tampered_body_fails(key, zone):
    signed = sign(compose(), key)
    assert dkim_of(signed.replace(b"ticket is fixed", b"ticket is broken"), zone) == "fail"


def test_tampered_signed_header_fails(key, zone):
    signed = sign(compose(), key)
    assert dkim_of(signed.replace(b"Subject: Your ticket", b"Subject: Urgent: your ticket"), zone) == "fail"


def test_relaxed_canonicalization_survives_whitespace_changes(key, zone):
    signed = sign(compose(), key)
    reflowed = signed.replace(b"Subject: Your ticket #4411", b"Subject:   Your   ticket #4411  ")
    assert dkim_of(reflowed, zone) == "pass"


def test_signature_by_another_key_fails(key, zone):
    impostor, _ = generate_key("example.com", bits=BITS)  # same name, key not the published one
    assert dkim_of(sign(compose(), impostor), zone) == "fail"


def test_unsigned_message_is_none(zone):
    assert dkim_of(compose(), zone) == "none"


@pytest.mark.parametrize(
    "from_",
    ["bot@example.org", "bot@evilexample.com", "bot@example.com.evil.net", "undisclosed-recipients:;"],
)
def test_sign_refuses_a_from_outside_the_key_domain(key, from_):
    with pytest.raises(InvalidArgument):
        sign(compose(from_=from_), key)


def test_sign_refuses_a_second_from_address_outside_the_domain(key):
    with pytest.raises(InvalidArgument, match="example.org"):
        sign(compose(from_="bot@example.com, mallory@example.org"), key)


def test_sign_refuses_no_from_or_two_from_headers(key):
    raw = compose()
    without = re.sub(rb"^From: .*?\r\n", b"", raw, flags=re.MULTILINE)
    with pytest.raises(InvalidArgument, match="exactly one From"):
        sign(without, key)
    with pytest.raises(InvalidArgument, match="exactly one From"):
        sign(b"From: bot@example.com\r\n" + raw, key)


# --- save_key / load_key ------------------------------------------------------------------------


def test_save_key_writes_0600_and_load_key_round_trips(key, zone, tmp_path):
    path = save_key(key, tmp_path / "dkim")
    assert path == tmp_path / "dkim" / "example.com.inbox.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    loaded = load_key(path, "example.com", "inbox")
    assert loaded == key
    assert dkim_of(sign(compose(), loaded), zone) == "pass"


def test_save_key_replaces_an_existing_file(key, tmp_path):
    path = tmp_path / "example.com.inbox.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    assert save_key(key, tmp_path) == path
    assert path.read_bytes() == key.private_pem and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_key_accepts_pkcs8(key, zone, tmp_path):
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    pkcs8 = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / "k.pem"
    path.write_bytes(pkcs8)
    assert dkim_of(sign(compose(), load_key(path, "example.com", "inbox")), zone) == "pass"


def test_load_key_refuses_missing_garbage_encrypted_and_small_keys(key, tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_key(tmp_path / "missing.pem", "example.com", "inbox")
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----\n")
    with pytest.raises(InvalidArgument, match="garbage.pem"):
        load_key(garbage, "example.com", "inbox")
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(InvalidArgument):
        load_key(encrypted, "example.com", "inbox")
    small = tmp_path / "small.pem"
    small.write_bytes(SMALL_KEY)
    with pytest.raises(InvalidArgument, match="512-bit"):
        load_key(small, "example.com", "inbox")


def test_load_key_checks_domain_and_selector(key, tmp_path):
    path = save_key(key, tmp_path)
    with pytest.raises(InvalidArgument):
        load_key(Path(path), "not a domain", "inbox")
