"""evaluate(): SPF, DKIM and DMARC verdicts from injected DNS (a dict), and never an exception,
whatever the mail, the records or the resolver do."""

from __future__ import annotations

import base64
import random
import re
from email import policy
from email.message import EmailMessage

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization

from inbox_mcp.mail.authresults import AuthVerdict, evaluate, no_dns, org_domain, system_dns
from inbox_mcp.mail.dkim_sign import DkimKey, generate_key, sign
from tests.corpora import all_corpus_files
from tests.mail.test_dkim import SMALL_KEY

BITS = 1024
IP = "192.0.2.10"
OTHER_IP = "198.51.100.7"


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[DkimKey, str]]:
    return {domain: generate_key(domain, bits=BITS) for domain in ("example.com", "other.org")}


def txt_of(record: str) -> tuple[str, str]:
    name, _, rest = record.partition(". IN TXT ")
    return name, "".join(re.findall(r'"([^"]*)"', rest))


def resolver(zone: dict[str, list[str] | str]):
    def txt(name: str) -> list[str]:
        value = zone[name]  # KeyError: NXDOMAIN
        if isinstance(value, Exception):
            raise value
        return [value] if isinstance(value, str) else value

    return txt


def zone_with(keys, records: dict | None = None) -> dict[str, list[str] | str]:
    """The DKIM key records of ``keys`` plus ``records`` (name -> TXT value(s) or an exception)."""
    return {**dict(txt_of(record) for _, record in keys.values()), **(records or {})}


def compose(from_: str = "Alice <alice@example.com>", body: str = "Hi Bob\n") -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = from_
    msg["To"] = "bot@agents.example.net"
    msg["Subject"] = "Hello"
    msg["Message-ID"] = "<m1@example.com>"
    msg.set_content(body)
    return msg.as_bytes()


def spf(zone, *, ip: str | None = IP, mail_from: str | None = "alice@example.com", helo: str | None = "mx.example.com", dns_addr=None):
    verdict = evaluate(compose(), client_ip=ip, helo=helo, mail_from=mail_from, dns_txt=resolver(zone), dns_addr=dns_addr)
    return verdict.spf, verdict.details


# --- SPF ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record, expected",
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", "pass"),
        ("v=spf1 ip4:192.0.2.10 -all", "pass"),
        ("v=spf1 +ip4:192.0.2.0/28 ~all", "pass"),
        ("v=spf1 ip4:203.0.113.0/24 -all", "fail"),
        ("v=spf1 ip4:203.0.113.0/24 ~all", "softfail"),
        ("v=spf1 ip4:203.0.113.0/24 ?all", "neutral"),
        ("v=spf1 ip4:203.0.113.0/24", "neutral"),
        ("v=spf1 -ip4:192.0.2.0/24 +all", "fail"),
        ("v=spf1 ip6:2001:db8::/32 -all", "fail"),  # an IPv4 client never matches ip6
        ("V=SPF1 IP4:192.0.2.0/24 -ALL", "pass"),
        ("v=spf1 ip4:192.0.2.0/24 exp=explain.example.com unknown-mod=x -all", "pass"),
        ("v=spf1 ip4:192.0.2.0/33 -all", "permerror"),
        ("v=spf1 ip4:192.0.2 -all", "permerror"),
        ("v=spf1 ip4:192.0.2.0/24 -all foo:bar", "permerror"),  # syntax errors count even after all
        ("v=spf1 all=1 -all", "fail"),  # an unknown modifier, not a mechanism
        ("v=spf1 -all/24", "permerror"),
        ("v=spf1 include -all", "permerror"),
        ("v=spf1 a/40 -all", "permerror"),
        ("v=spf1 a/100 -all", "permerror"),
        ("v=spf1 mx: -all", "permerror"),
        ("v=spf10 -all", "none"),  # not an SPF record
    ],
)
def test_spf_mechanisms_and_qualifiers(record, expected):
    assert spf({"example.com": ["google-site-verification=abc", record]})[0] == expected


def test_spf_ip6_and_ipv4_mapped_clients():
    zone = {"example.com": "v=spf1 ip6:2001:db8:1::/48 ip4:192.0.2.0/24 -all"}
    assert spf(zone, ip="2001:db8:1::25")[0] == "pass"
    assert spf(zone, ip="2001:db8:2::25")[0] == "fail"
    assert spf(zone, ip="::ffff:192.0.2.10")[0] == "pass"
    assert spf(zone, ip="[192.0.2.10]")[0] == "pass"


def test_spf_include_and_redirect():
    zone = {
        "example.com": "v=spf1 include:_spf.provider.net -all",
        "_spf.provider.net": "v=spf1 ip4:192.0.2.0/24 ~all",
        "sub.example.com": "v=spf1 redirect=example.com",
    }
    assert spf(zone)[0] == "pass"
    assert spf(zone, ip=OTHER_IP)[0] == "fail"  # the include's ~all is "no match"; our -all decides
    assert spf(zone, mail_from="x@sub.example.com")[0] == "pass"
    assert spf(zone, mail_from="x@sub.example.com", ip=OTHER_IP)[0] == "fail"


def test_spf_include_or_redirect_to_nothing_is_permerror():
    assert spf({"example.com": "v=spf1 include:missing.example -all"})[0] == "permerror"
    assert spf({"example.com": "v=spf1 redirect=missing.example"})[0] == "permerror"
    assert spf({"example.com": "v=spf1 include:norecord.example -all", "norecord.example": []})[0] == "permerror"


def test_spf_redirect_is_ignored_when_a_mechanism_decides():
    zone = {"example.com": "v=spf1 ip4:192.0.2.0/24 redirect=elsewhere.example", "elsewhere.example": "v=spf1 -all"}
    assert spf(zone)[0] == "pass"
    assert spf(zone, ip=OTHER_IP)[0] == "fail"


def test_spf_more_than_ten_lookups_is_permerror():
    chain = {f"l{i}.example.com": f"v=spf1 include:l{i + 1}.example.com -all" for i in range(12)}
    chain["example.com"] = "v=spf1 include:l0.example.com -all"
    result, details = spf(chain)
    assert result == "permerror" and "more than 10" in details["spf.reason"]
    # ten are fine
    short = {f"l{i}.example.com": f"v=spf1 include:l{i + 1}.example.com -all" for i in range(9)}
    short["l9.example.com"] = "v=spf1 ip4:192.0.2.0/24 -all"
    short["example.com"] = "v=spf1 include:l0.example.com -all"
    assert spf(short)[0] == "pass"


def test_spf_include_loop_is_permerror():
    assert spf({"example.com": "v=spf1 include:example.com -all"})[0] == "permerror"


def test_spf_two_records_is_permerror():
    assert spf({"example.com": ["v=spf1 -all", "v=spf1 +all"]})[0] == "permerror"


def test_spf_none_without_record_client_ip_or_domain():
    assert spf({})[0] == "none"  # NXDOMAIN
    assert spf({"example.com": []})[0] == "none"
    assert spf({"example.com": "v=spf1 -all"}, ip=None)[0] == "none"
    assert spf({"example.com": "v=spf1 -all"}, ip="not-an-ip")[0] == "none"
    assert spf({"example.com": "v=spf1 -all"}, mail_from="", helo=None)[0] == "none"
    assert spf({"example.com": "v=spf1 -all"}, mail_from="", helo="[192.0.2.10]")[0] == "none"


def test_spf_uses_helo_when_the_reverse_path_is_null():
    zone = {"mx.bounces.example": "v=spf1 ip4:192.0.2.10 -all"}
    result, details = spf(zone, mail_from="<>", helo="mx.bounces.example")
    assert result == "pass" and details["spf.identity"] == "helo" and details["spf.domain"] == "mx.bounces.example"


def test_spf_temperror_when_the_resolver_fails():
    assert spf({"example.com": TimeoutError("no answer")})[0] == "temperror"
    zone = {"example.com": "v=spf1 include:flaky.example -all", "flaky.example": OSError("SERVFAIL")}
    assert spf(zone)[0] == "temperror"


def test_spf_a_and_mx_without_an_address_resolver_are_neutral():
    result, details = spf({"example.com": "v=spf1 mx -all"})
    assert result == "neutral" and "address lookup" in details["spf.reason"]
    # mechanisms before it still decide
    assert spf({"example.com": "v=spf1 ip4:192.0.2.0/24 a mx -all"})[0] == "pass"
    assert spf({"example.com": "v=spf1 ptr -all"})[0] == "fail"  # ptr never matches


def test_spf_a_mx_exists_with_an_address_resolver():
    addresses = {
        ("example.com", "A"): ["192.0.2.10"],
        ("example.com", "MX"): ["mx1.example.com", "mx2.example.com"],
        ("mx2.example.com", "A"): ["198.51.100.0"],
        ("10.2.0.192.in-addr._spf.example.com", "A"): ["127.0.0.2"],
    }

    def dns_addr(name: str, rrtype: str) -> list[str]:
        return addresses[(name, rrtype)]

    def check(record: str, ip: str = IP) -> str:
        return spf({"example.com": record}, ip=ip, dns_addr=dns_addr)[0]

    assert check("v=spf1 a -all") == "pass"
    assert check("v=spf1 a:example.com -all") == "pass"
    assert check("v=spf1 a -all", ip=OTHER_IP) == "fail"
    assert check("v=spf1 mx/24 -all", ip=OTHER_IP) == "pass"  # mx2's /24
    assert check("v=spf1 mx -all", ip=OTHER_IP) == "fail"
    assert check("v=spf1 a//64 -all", ip="2001:db8::1") == "fail"  # no AAAA: NXDOMAIN is no match
    assert check("v=spf1 exists:%{ir}.%{v}._spf.%{d} -all") == "pass"
    assert check("v=spf1 exists:%{ir}.%{v}._spf.%{d} -all", ip=OTHER_IP) == "fail"
    assert check("v=spf1 exists:%{c}.example.com -all") == "permerror"  # %{c} is exp-only


def test_spf_macros_expand_sender_parts():
    zone = {"example.com": "v=spf1 include:%{l}.%{o2}._spf.%{d2} -all", "alice.example.com._spf.example.com": "v=spf1 +all"}
    assert spf(zone)[0] == "pass"


# --- DKIM ---------------------------------------------------------------------------------------


def dkim(raw: bytes, zone) -> AuthVerdict:
    return evaluate(raw, client_ip=None, helo=None, mail_from=None, dns_txt=resolver(zone))


def test_dkim_pass_reports_domain_and_selector(keys):
    verdict = dkim(sign(compose(), keys["example.com"][0]), zone_with(keys))
    assert verdict.dkim == "pass"
    assert verdict.details["dkim.d"] == "example.com" and verdict.details["dkim.s"] == "inbox"


def test_dkim_any_valid_signature_passes(keys):
    raw = compose()
    impostor, _ = generate_key("example.com", selector="inbox", bits=BITS)
    bad_header = sign(raw, impostor)[: -len(raw)]
    verdict = dkim(bad_header + sign(raw, keys["example.com"][0]), zone_with(keys))
    assert verdict.dkim == "pass" and verdict.details["dkim.signatures"] == "example.com=fail, example.com=pass"


def test_dkim_tampered_or_foreign_key_fails(keys):
    zone = zone_with(keys)
    signed = sign(compose(), keys["example.com"][0])
    assert dkim(signed.replace(b"Hi Bob", b"Hi Eve"), zone).dkim == "fail"
    swapped = dict(zone)
    swapped["inbox._domainkey.example.com"] = zone["inbox._domainkey.other.org"]
    assert dkim(signed, swapped).dkim == "fail"


def test_dkim_missing_or_broken_key_is_permerror(keys):
    signed = sign(compose(), keys["example.com"][0])
    assert dkim(signed, {}).dkim == "permerror"
    assert dkim(signed, {"inbox._domainkey.example.com": "v=DKIM1; k=rsa; p=bm90IGEga2V5"}).dkim == "permerror"
    verdict = evaluate(signed, client_ip=None, helo=None, mail_from=None, dns_txt=no_dns)
    assert verdict.dkim == "permerror" and "no usable key" in verdict.details["dkim.reason"]


def test_dkim_key_under_1024_bits_is_permerror():
    small = DkimKey("example.com", "tiny", SMALL_KEY)
    public = serialization.load_pem_private_key(SMALL_KEY, password=None).public_key()
    p = base64.b64encode(public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    zone = {"tiny._domainkey.example.com": f"v=DKIM1; k=rsa; p={p.decode()}"}
    verdict = dkim(sign(compose(), small), zone)
    assert verdict.dkim == "permerror" and "too small" in verdict.details["dkim.reason"]


def test_dkim_dns_failure_is_temperror(keys):
    signed = sign(compose(), keys["example.com"][0])
    assert dkim(signed, {"inbox._domainkey.example.com": TimeoutError()}).dkim == "temperror"


def test_dkim_malformed_signature_is_permerror():
    raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; b=!!!\r\n" + compose()
    assert dkim(raw, {}).dkim == "permerror"
    raw = b"DKIM-Signature: garbage without tags\r\n" + compose()
    assert dkim(raw, {}).dkim == "permerror"


def test_dkim_none_without_signature():
    verdict = dkim(compose(), {})
    assert verdict.dkim == "none" and "dkim.d" not in verdict.details


# --- DMARC --------------------------------------------------------------------------------------


def full(raw: bytes, zone, *, ip: str = OTHER_IP, mail_from: str = "bounce@other.org") -> AuthVerdict:
    return evaluate(raw, client_ip=ip, helo="mx.other.org", mail_from=mail_from, dns_txt=resolver(zone))


def test_dmarc_pass_via_aligned_dkim(keys):
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject", "other.org": "v=spf1 -all"})
    verdict = full(sign(compose(), keys["example.com"][0]), zone)
    assert (verdict.spf, verdict.dkim, verdict.dmarc) == ("fail", "pass", "pass")
    assert verdict.details["dmarc.policy"] == "reject" and verdict.details["dmarc.aligned"] == "dkim:example.com"


def test_dmarc_pass_via_aligned_spf():
    zone = {"_dmarc.example.com": "v=DMARC1; p=quarantine", "mail.example.com": f"v=spf1 ip4:{IP} -all"}
    verdict = full(compose(), zone, ip=IP, mail_from="bounces+123@mail.example.com")
    assert (verdict.spf, verdict.dkim, verdict.dmarc) == ("pass", "none", "pass")  # relaxed: same org domain
    assert verdict.details["dmarc.aligned"] == "spf:mail.example.com"


def test_dmarc_fails_when_spf_passes_for_another_domain(keys):
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject", "other.org": f"v=spf1 ip4:{IP} -all"})
    # other.org's server, other.org's envelope, other.org's signature: then From rewritten
    signed = sign(compose(from_="alice@other.org"), keys["other.org"][0])
    spoof = signed.replace(b"From: alice@other.org", b"From: alice@example.com")
    verdict = full(spoof, zone, ip=IP)
    assert (verdict.spf, verdict.dkim, verdict.dmarc) == ("pass", "fail", "fail")
    assert verdict.details["dmarc.policy"] == "reject"


def test_dmarc_fails_when_dkim_passes_for_another_domain(keys):
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject", "other.org": "v=spf1 -all"})
    # a valid signature by other.org over a From: example.com message (our sign() refuses to
    # make one, so dkimpy signs directly)
    raw = compose(from_="alice@example.com")
    header = dkimpy.sign(raw, b"inbox", b"other.org", keys["other.org"][0].private_pem, canonicalize=(b"relaxed", b"relaxed"))
    verdict = full(header + raw, zone)
    assert (verdict.spf, verdict.dkim, verdict.dmarc) == ("fail", "pass", "fail")
    assert verdict.details["dkim.d"] == "other.org"


def test_dmarc_none_without_a_record(keys):
    verdict = full(sign(compose(), keys["example.com"][0]), zone_with(keys))
    assert verdict.dkim == "pass" and verdict.dmarc == "none"
    assert verdict.details["dmarc.reason"].startswith("no DMARC record")


def test_dmarc_falls_back_to_the_organizational_domain_and_uses_sp(keys):
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject; sp=quarantine"})
    verdict = full(compose(from_="alice@eu.mail.example.com"), zone)
    assert verdict.dmarc == "fail"
    assert verdict.details["dmarc.domain"] == "example.com" and verdict.details["dmarc.policy"] == "quarantine"
    # relaxed alignment: a signature by example.com covers the subdomain
    signed = sign(compose(from_="alice@eu.mail.example.com"), keys["example.com"][0])
    assert full(signed, zone).dmarc == "pass"


def test_dmarc_strict_alignment():
    zone = {"_dmarc.example.com": "v=DMARC1; p=none; aspf=s", "mail.example.com": f"v=spf1 ip4:{IP} -all"}
    verdict = full(compose(), zone, ip=IP, mail_from="b@mail.example.com")
    assert verdict.spf == "pass" and verdict.dmarc == "fail" and verdict.details["dmarc.policy"] == "none"


def test_dmarc_strict_dkim_alignment(keys):
    zone = zone_with(keys, {"_dmarc.sub.example.com": "v=DMARC1; p=reject; adkim=s"})
    signed = sign(compose(from_="alice@sub.example.com"), keys["example.com"][0])
    assert full(signed, zone).dmarc == "fail"


def test_dmarc_record_oddities():
    base = {"example.com": f"v=spf1 ip4:{IP} -all"}
    assert full(compose(), {**base, "_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]}, ip=IP, mail_from="a@example.com").dmarc == "none"
    assert full(compose(), {**base, "_dmarc.example.com": "p=reject"}, ip=IP, mail_from="a@example.com").dmarc == "none"
    verdict = full(compose(), {**base, "_dmarc.example.com": "v=DMARC1; p=bogus"}, ip=OTHER_IP, mail_from="a@example.com")
    assert verdict.dmarc == "fail" and verdict.details["dmarc.policy"] == "none"
    verdict = full(compose(), {**base, "_dmarc.example.com": TimeoutError()}, ip=IP, mail_from="a@example.com")
    assert verdict.dmarc == "none" and verdict.details["dmarc.reason"].startswith("temperror")


def test_dmarc_multiple_from_domains_fail(keys):
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject"})
    signed = sign(compose(), keys["example.com"][0])
    two_froms = b"From: ceo@victim.example\r\n" + signed
    verdict = full(two_froms, zone)
    assert verdict.dmarc == "fail" and "more than one domain" in verdict.details["dmarc.reason"]


def test_dmarc_none_without_from():
    raw = re.sub(rb"^From: .*?\r\n", b"", compose(), flags=re.MULTILINE)
    verdict = full(raw, {})
    assert verdict.dmarc == "none" and verdict.details["dmarc.reason"] == "no From domain"


def test_org_domain_is_the_last_two_labels():
    assert org_domain("a.b.Example.COM.") == "example.com"
    assert org_domain("example.com") == "example.com"


# --- the verdict's other shapes ----------------------------------------------------------------


def test_verdict_as_dict_and_authentication_results_header(keys):
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject", "example.com": f"v=spf1 ip4:{IP} -all"})
    verdict = full(sign(compose(), keys["example.com"][0]), zone, ip=IP, mail_from="alice@example.com")
    assert verdict.as_dict() == {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
    assert verdict.header_value("mx.agents.example.net") == (
        "mx.agents.example.net; spf=pass smtp.mailfrom=example.com; "
        "dkim=pass header.d=example.com header.s=inbox; dmarc=pass header.from=example.com"
    )
    helo = evaluate(b"From: x\r\n\r\n", client_ip=None, helo="mx.ex;ample", mail_from=None, dns_txt=no_dns)
    assert helo.header_value("mx") == "mx; spf=none; dkim=none; dmarc=none"  # untrusted values left out


# --- never raises -------------------------------------------------------------------------------


def _hostile_resolvers():
    def raises_value_error(name):
        raise ValueError("resolver bug")

    def returns_junk(name):
        return [b"\xff\xfe", "v=spf1 include:%{", "v=DKIM1; p=", "v=DMARC1; p"]

    def returns_none(name):
        return None

    return [no_dns, raises_value_error, returns_junk, returns_none]


def test_evaluate_never_raises_on_real_mail():
    files = all_corpus_files()
    assert files
    for path in files:
        raw = path.read_bytes()
        for dns_txt in _hostile_resolvers():
            verdict = evaluate(raw, client_ip="192.0.2.1", helo="mx", mail_from="a@example.com", dns_txt=dns_txt)
            assert verdict.spf in {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}
            assert verdict.dkim in {"pass", "fail", "none", "temperror", "permerror"}
            assert verdict.dmarc in {"pass", "fail", "none"}


def test_evaluate_never_raises_on_garbage(keys):
    rng = random.Random(4411)
    signed = sign(compose(), keys["example.com"][0])
    samples = [b"", b"\r\n", b"DKIM-Signature:\r\n\r\n", b"From: <@>\r\n\r\n", b"\x00" * 50, signed[:40], signed[:300]]
    for _ in range(150):
        cut = bytearray(signed)
        for _ in range(rng.randint(1, 8)):
            cut[rng.randrange(len(cut))] = rng.randrange(256)
        samples.append(bytes(cut))
    zone = zone_with(keys, {"_dmarc.example.com": "v=DMARC1; p=reject"})
    for raw in samples:
        for dns_txt in [resolver(zone), *_hostile_resolvers()]:
            verdict = evaluate(raw, client_ip="::1", helo="", mail_from="", dns_txt=dns_txt)
            assert isinstance(verdict, AuthVerdict)


# --- system_dns, with dnspython faked (no network here) ----------------------------------------


def test_system_dns_maps_dnspython_answers(monkeypatch):
    import dns.resolver

    class Rdata:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class Name:
        def __init__(self, text):
            self.text = text

        def to_text(self, omit_final_dot=False):
            return self.text

    class FakeResolver:
        def __init__(self):
            self.lifetime = None

        def resolve(self, name, rrtype, raise_on_no_answer=True, search=None):
            assert raise_on_no_answer is False and search is False
            if name == "missing.example":
                raise dns.resolver.NXDOMAIN()
            if name == "slow.example":
                raise dns.resolver.LifetimeTimeout(timeout=1.0, errors=[])
            rrset = {
                "TXT": [Rdata(strings=(b"v=spf1 ", b"-all"))],
                "A": [Rdata(address="192.0.2.1")],
                "MX": [Rdata(exchange=Name("mx.example.com"))],
            }.get(rrtype)
            return Rdata(rrset=rrset)

    monkeypatch.setattr(dns.resolver, "Resolver", FakeResolver)
    txt, addr = system_dns(timeout=2)
    assert txt("example.com") == ["v=spf1 -all"]
    assert addr("example.com", "A") == ["192.0.2.1"]
    assert addr("example.com", "MX") == ["mx.example.com"]
    assert addr("example.com", "AAAA") == []
    with pytest.raises(LookupError):
        txt("missing.example")
    verdict = evaluate(compose(), client_ip=IP, helo=None, mail_from="a@slow.example", dns_txt=txt, dns_addr=addr)
    assert verdict.spf == "temperror"
