"""Authentication verdicts for inbound mail: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489).

``evaluate`` is pure: every DNS answer comes from the injected resolvers, so it runs offline and in
tests. ``dns_txt(name)`` returns the TXT records at ``name``, one string per record (a record's
character-strings already joined), and raises ``LookupError`` (``KeyError`` will do) for NXDOMAIN;
any other exception is a temporary DNS failure. ``no_dns`` answers nothing; ``system_dns``
builds real resolvers on dnspython. ``evaluate`` never raises: broken mail, broken records and
broken resolvers become ``none`` / ``permerror`` / ``temperror``.

Deliberate simplifications, each on the safe side (they can withhold a ``pass``, never invent one):

- SPF ``a``, ``mx`` and ``exists`` need address lookups. With no ``dns_addr`` resolver they cannot
  be decided, so evaluation stops there with ``neutral`` (rather than guessing "no match" and
  reaching a ``-all`` that would fail good mail). ``ptr`` (deprecated by RFC 7208) never matches.
  Macros are expanded for ``%{s l o d i h v}``; ``p`` expands to ``unknown``. The void-lookup
  limit is not enforced; the 10-lookup limit is (``permerror``).
- DMARC's organizational domain is the last two labels of the From domain instead of the Public
  Suffix List (so ``a.example.co.uk`` falls back to ``_dmarc.co.uk``, which has no record).
  ``pct``, ``rua`` and ``fo`` are ignored; a record without a valid ``p=`` counts as ``p=none``.
  A From with several domains is ``fail``: it is the classic way to pass one domain's
  signature off under another's name. A temporary DNS failure gives ``none`` with a reason.
- DKIM passes if any signature verifies. Otherwise the summary is, in this order of
  preference, ``temperror`` (retrying may pass), ``fail`` (a signature that does not match its
  key or body), ``permerror`` (a malformed or expired signature, a missing or unusable key).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

import dkim

DnsTxt = Callable[[str], list[str]]
# (name, "A" | "AAAA" | "MX") -> addresses, or for MX the exchange host names.
DnsAddr = Callable[[str, str], list[str]]

SPF_LOOKUP_LIMIT = 10
SPF_MX_LIMIT = 10
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def no_dns(name: str) -> list[str]:
    """The resolver of a machine without DNS: every name has no records."""
    return []


@dataclass(frozen=True)
class AuthVerdict:
    spf: str  # pass | fail | softfail | neutral | none | temperror | permerror
    dkim: str  # pass | fail | none | temperror | permerror
    dmarc: str  # pass | fail | none
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, str]:
        """The ``authentication`` object of a message result."""
        return {"spf": self.spf, "dkim": self.dkim, "dmarc": self.dmarc}

    def header_value(self, authserv_id: str) -> str:
        """An RFC 8601 Authentication-Results value, e.g. ``mx.example; spf=pass smtp.mailfrom=…``."""
        spf_prop = "smtp.helo" if self.details.get("spf.identity") == "helo" else "smtp.mailfrom"
        parts = [
            authserv_id,
            _method("spf", self.spf, spf_prop, self.details.get("spf.domain")),
            _method("dkim", self.dkim, "header.d", self.details.get("dkim.d"))
            + _prop("header.s", self.details.get("dkim.s")),
            _method("dmarc", self.dmarc, "header.from", self.details.get("dmarc.from")),
        ]
        return "; ".join(parts)


def evaluate(
    raw: bytes,
    *,
    client_ip: str | None,
    helo: str | None,
    mail_from: str | None,
    dns_txt: DnsTxt = no_dns,
    dns_addr: DnsAddr | None = None,
) -> AuthVerdict:
    """SPF for the SMTP envelope, DKIM for the signatures in ``raw``, DMARC for its From domain."""
    dns = _Dns(dns_txt, dns_addr)
    details: dict[str, str] = {}
    spf_result, spf_domain = _guard(lambda: _spf(dns, client_ip, helo, mail_from, details), "spf", details)
    dkim_result, dkim_domains = _guard(lambda: _dkim(raw, dns, details), "dkim", details)
    dmarc_result, _ = _guard(
        lambda: _dmarc(raw, dns, spf_result, spf_domain, dkim_domains, details), "dmarc", details
    )
    return AuthVerdict(spf=spf_result, dkim=dkim_result, dmarc=dmarc_result, details=details)


def system_dns(timeout: float = 5.0) -> tuple[DnsTxt, DnsAddr]:
    """Real resolvers (dnspython, the system's resolv.conf), for ``evaluate(dns_txt=…, dns_addr=…)``."""
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout

    def query(name: str, rrtype: str) -> list:
        try:
            answer = resolver.resolve(name, rrtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as e:
            raise LookupError(name) from e
        return list(answer.rrset or [])

    def txt(name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in query(name, "TXT")]

    def addr(name: str, rrtype: str) -> list[str]:
        if rrtype == "MX":
            return [r.exchange.to_text(omit_final_dot=True) for r in query(name, "MX")]
        return [r.address for r in query(name, rrtype)]

    return txt, addr


# --- DNS, as the three evaluators see it --------------------------------------------------------


class _TempError(Exception):
    pass


class _PermError(Exception):
    pass


class _Undecidable(Exception):
    """An SPF mechanism that needs a lookup we have no resolver for."""


class _Dns:
    """The injected resolvers, cached per evaluation, with their failures sorted into
    NXDOMAIN (``None``) and temporary (``_TempError``)."""

    def __init__(self, txt: DnsTxt, addr: DnsAddr | None) -> None:
        self._txt, self._addr = txt, addr
        self._cache: dict[tuple[str, str], list[str] | None] = {}

    @property
    def can_resolve_addresses(self) -> bool:
        return self._addr is not None

    def txt(self, name: str) -> list[str] | None:
        return self._lookup(name, "TXT")

    def addr(self, name: str, rrtype: str) -> list[str] | None:
        return self._lookup(name, rrtype)

    def _lookup(self, name: str, rrtype: str) -> list[str] | None:
        key = (name.lower().rstrip("."), rrtype)
        if key not in self._cache:
            resolve = self._txt if rrtype == "TXT" else self._addr
            assert resolve is not None
            try:
                answer = resolve(key[0]) if rrtype == "TXT" else resolve(key[0], rrtype)
                if isinstance(answer, (str, bytes)):
                    answer = [answer]
                self._cache[key] = [_text(a) for a in answer or []]
            except LookupError:
                self._cache[key] = None
            except Exception as e:  # a resolver's own failure, whatever its type
                raise _TempError(f"{rrtype} lookup of {key[0]} failed: {e or type(e).__name__}") from e
        return self._cache[key]


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _guard(run: Callable[[], tuple[str, object]], method: str, details: dict[str, str]) -> tuple[str, object]:
    try:
        return run()
    except Exception as e:  # the promise is "never raises"; a bug here must not lose the message
        details[f"{method}.reason"] = f"internal error: {type(e).__name__}: {e}"
        return ("none" if method == "dmarc" else "permerror"), None


# --- SPF -------------------------------------------------------------------------------------

_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
_MECHANISM = re.compile(r"^([+\-~?]?)([a-z0-9]+)(.*)$", re.IGNORECASE)
_DUAL_CIDR = re.compile(r"^(.*?)(?:/(\d{1,2}))?(?://(\d{1,3}))?$")
_QUALIFIER = {"+": "pass", "": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MACRO = re.compile(r"%\{([slodiphcrtv])(\d*)(r?)([.\-+,/_=]*)\}|%%|%_|%-|%", re.IGNORECASE)


def _spf(dns: _Dns, client_ip: str | None, helo: str | None, mail_from: str | None, details: dict[str, str]):
    sender = (mail_from or "").strip().strip("<>").strip()
    local, _, domain = sender.rpartition("@")
    identity = "mailfrom"
    if not local or not domain:
        identity, domain = "helo", (helo or "").strip()
        local, sender = "postmaster", f"postmaster@{domain}"
    domain = domain.lower().rstrip(".")
    details["spf.identity"] = identity
    details["spf.domain"] = domain
    if not client_ip:
        details["spf.reason"] = "no client IP"
        return "none", domain
    try:
        ip = ipaddress.ip_address(client_ip.strip().strip("[]"))
    except ValueError:
        details["spf.reason"] = f"client IP {client_ip!r} is not an IP address"
        return "none", domain
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if not _is_domain(domain):
        details["spf.reason"] = f"no valid domain to check ({identity} {domain!r})"
        return "none", domain
    check = _SpfCheck(dns, ip, local, sender, helo or "")
    try:
        result, reason = check.check_host(domain)
    except _TempError as e:
        result, reason = "temperror", str(e)
    except _PermError as e:
        result, reason = "permerror", str(e)
    except _Undecidable as e:
        result, reason = "neutral", str(e)
    details["spf.reason"] = reason
    return result, domain


class _SpfCheck:
    def __init__(self, dns: _Dns, ip: _IP, local: str, sender: str, helo: str) -> None:
        self.dns, self.ip, self.local, self.sender, self.helo = dns, ip, local, sender, helo
        self.lookups = 0

    def check_host(self, domain: str) -> tuple[str, str]:
        records = self.dns.txt(domain)
        spf = [r for r in records or [] if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]
        if not spf:
            return "none", f"no SPF record at {domain}"
        if len(spf) > 1:
            raise _PermError(f"{len(spf)} SPF records at {domain}")
        mechanisms, redirect = self._parse(spf[0], domain)
        for qualifier, name, arg in mechanisms:
            if name == "all":
                return _QUALIFIER[qualifier], f"{domain}: matched {qualifier}all"
            if self._matches(name, arg, domain):
                return _QUALIFIER[qualifier], f"{domain}: matched {qualifier}{name}{arg}"
        if redirect is not None:
            self._count_lookup()
            target = self._expand(redirect, domain)
            result, reason = self.check_host(target)
            if result == "none":
                raise _PermError(f"redirect={target} from {domain} has no SPF record")
            return result, reason
        return "neutral", f"{domain}: no mechanism matched"

    def _parse(self, record: str, domain: str) -> tuple[list[tuple[str, str, str]], str | None]:
        """Parse the whole record first: a syntax error anywhere is a permerror (RFC 7208 §4.6)."""
        mechanisms: list[tuple[str, str, str]] = []
        redirect = None
        for term in record.split()[1:]:
            modifier = _MODIFIER.match(term)
            if modifier:
                if modifier.group(1).lower() == "redirect":
                    if redirect is not None:
                        raise _PermError(f"{domain}: more than one redirect=")
                    redirect = modifier.group(2)
                continue  # exp= and unknown modifiers do not affect the result
            m = _MECHANISM.match(term)
            name = m.group(2).lower() if m else ""
            arg = m.group(3) if m else ""
            if name not in {"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"}:
                raise _PermError(f"{domain}: unknown SPF term {term!r}")
            if name == "all" and arg:
                raise _PermError(f"{domain}: malformed {term!r}")
            if name in {"include", "exists", "ip4", "ip6"} and (not arg.startswith(":") or len(arg) < 2):
                raise _PermError(f"{domain}: {name} needs a value in {term!r}")
            if name in {"a", "mx", "ptr"} and arg and arg[0] not in ":/":
                raise _PermError(f"{domain}: malformed {term!r}")
            if name in {"ip4", "ip6"}:
                self._network(name, arg[1:], domain)  # validates now, raises _PermError
            if name in {"a", "mx"}:
                self._domain_and_cidr(arg, domain)  # likewise
            mechanisms.append((m.group(1), name, arg))
        return mechanisms, redirect

    def _matches(self, name: str, arg: str, domain: str) -> bool:
        if name in {"ip4", "ip6"}:
            network = self._network(name, arg[1:], domain)
            return self.ip.version == network.version and self.ip in network
        self._count_lookup()
        if name == "include":
            target = self._expand(arg[1:], domain)
            result, reason = self.check_host(target)
            if result == "temperror":
                raise _TempError(reason)
            if result in {"permerror", "none"}:
                raise _PermError(f"include:{target} from {domain}: {reason}")
            return result == "pass"
        if name == "ptr":
            return False
        spec, cidr4, cidr6 = self._domain_and_cidr(arg, domain) if name != "exists" else (arg[1:], "32", "128")
        target = self._expand(spec, domain) if spec else domain
        if not self.dns.can_resolve_addresses:
            raise _Undecidable(f"{domain}: {name}{arg} needs an address lookup and no resolver was given")
        if name == "exists":
            return bool(self.dns.addr(target, "A"))
        hosts = [target]
        if name == "mx":
            hosts = self.dns.addr(target, "MX") or []
            if len(hosts) > SPF_MX_LIMIT:
                raise _PermError(f"{domain}: mx:{target} has more than {SPF_MX_LIMIT} MX hosts")
        prefix = int(cidr4 if self.ip.version == 4 else cidr6)
        for host in hosts:
            for address in self.dns.addr(host, "A" if self.ip.version == 4 else "AAAA") or []:
                try:
                    if self.ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False):
                        return True
                except ValueError:
                    continue
        return False

    def _count_lookup(self) -> None:
        self.lookups += 1
        if self.lookups > SPF_LOOKUP_LIMIT:
            raise _PermError(f"more than {SPF_LOOKUP_LIMIT} DNS-querying SPF terms")

    @staticmethod
    def _network(name: str, value: str, domain: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        address, slash, prefix = value.partition("/")
        try:
            ip = ipaddress.IPv4Address(address) if name == "ip4" else ipaddress.IPv6Address(address)
            if slash and not prefix.isdigit():
                raise ValueError(f"bad prefix {prefix!r}")
            return ipaddress.ip_network(f"{ip}/{prefix if slash else ip.max_prefixlen}", strict=False)
        except ValueError as e:
            raise _PermError(f"{domain}: malformed {name}:{value} ({e})") from e

    @staticmethod
    def _domain_and_cidr(arg: str, domain: str) -> tuple[str, str, str]:
        m = _DUAL_CIDR.match(arg.removeprefix(":"))
        spec, cidr4, cidr6 = m.group(1), m.group(2) or "32", m.group(3) or "128"
        if int(cidr4) > 32 or int(cidr6) > 128 or bool(spec) != arg.startswith(":"):
            raise _PermError(f"{domain}: malformed mechanism argument {arg!r}")
        return spec, cidr4, cidr6

    def _expand(self, spec: str, domain: str) -> str:
        """Macro-expand a domain-spec (RFC 7208 §7) and check that a domain came out."""
        if "%" in spec:
            spec = _MACRO.sub(lambda m: self._macro(m, domain), spec)
        spec = spec.lower().rstrip(".")
        while len(spec) > 253 and "." in spec:
            spec = spec.split(".", 1)[1]  # §7.3: drop labels from the left until it fits
        if not _is_domain(spec):
            raise _PermError(f"{domain}: {spec!r} is not a domain name")
        return spec

    def _macro(self, m: re.Match[str], domain: str) -> str:
        token = m.group(0)
        if token in {"%%", "%_", "%-"}:
            return {"%%": "%", "%_": " ", "%-": "%20"}[token]
        if token == "%":
            raise _PermError(f"{domain}: malformed macro")
        letter, digits, reverse, delimiters = m.group(1).lower(), m.group(2), m.group(3), m.group(4)
        if self.ip.version == 4:
            ip_text = str(self.ip)
        else:
            ip_text = ".".join(self.ip.exploded.replace(":", ""))
        values = {
            "s": self.sender, "l": self.local, "o": self.sender.rpartition("@")[2], "d": domain,
            "i": ip_text, "h": self.helo, "v": "in-addr" if self.ip.version == 4 else "ip6", "p": "unknown",
        }
        if letter not in values:  # c, r, t are only allowed in exp=
            raise _PermError(f"{domain}: macro %{{{letter}}} is not allowed here")
        parts = re.split("[" + re.escape(delimiters or ".") + "]", values[letter])
        if reverse:
            parts.reverse()
        if digits:
            if int(digits) == 0:
                raise _PermError(f"{domain}: macro with zero labels")
            parts = parts[-int(digits) :]
        return ".".join(parts)


def _is_domain(name: str) -> bool:
    labels = name.split(".")
    return (
        0 < len(name) <= 253
        and len(labels) >= 2
        and all(0 < len(label) <= 63 for label in labels)
        and not labels[-1].isdigit()
        and not any(c.isspace() or c in "[]@" for c in name)
    )


# --- DKIM ------------------------------------------------------------------------------------


class _QuietLog(logging.LoggerAdapter):
    """dkimpy logs every bad signature at ERROR; for inbound mail that is routine, and the
    reason is in the verdict's details, so it goes to DEBUG."""

    def error(self, msg: object, *args: object, **kwargs: object) -> None:
        self.debug(msg, *args, **kwargs)


_DKIM_LOG = _QuietLog(logging.getLogger(__name__), {})
_DKIM_PREFERENCE = ("pass", "temperror", "fail", "permerror")


def _dkim(raw: bytes, dns: _Dns, details: dict[str, str]):
    try:
        verifier = dkim.DKIM(raw, logger=_DKIM_LOG, minkey=1024)
        signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    except Exception as e:
        details["dkim.reason"] = f"unparsable message: {e}"
        return ("permerror" if b"dkim-signature" in raw.lower() else "none"), []
    if not signatures:
        details["dkim.reason"] = "no DKIM-Signature"
        return "none", []
    outcomes = [_dkim_one(verifier, i, dns) for i in range(len(signatures))]
    passing = [d for result, _, d, _ in outcomes if result == "pass" and d]
    result, reason, d, s = min(outcomes, key=lambda o: _DKIM_PREFERENCE.index(o[0]))
    if d:
        details["dkim.d"] = d
    if s:
        details["dkim.s"] = s
    if result != "pass":
        details["dkim.reason"] = reason
    if len(outcomes) > 1:
        details["dkim.signatures"] = ", ".join(f"{o[2] or '?'}={o[0]}" for o in outcomes)
    return result, passing


def _dkim_one(verifier: dkim.DKIM, idx: int, dns: _Dns) -> tuple[str, str, str, str]:
    """(result, reason, d=, s=) for the idx-th signature."""
    dns_failure: list[str] = []

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        try:
            records = dns.txt(_text(name))
        except _TempError as e:
            dns_failure.append(str(e))
            raise dkim.DnsTimeoutError(str(e)) from e
        keys = [r for r in records or [] if "p=" in r] or records or []
        return keys[0].encode("utf-8", "replace") if keys else None

    try:
        prep = verifier.verify_headerprep(idx)
    except Exception as e:
        return "permerror", f"malformed signature: {e}", "", ""
    if not prep:
        return "permerror", "malformed signature", "", ""
    sig, include_headers, sig_headers = prep
    d, s = _text(sig.get(b"d", b"")).lower(), _text(sig.get(b"s", b"")).lower()
    verifier.pk = None  # set by dkimpy only once a key record is found and parsed
    try:
        ok = verifier.verify_sig(sig, include_headers, sig_headers[idx], dnsfunc)
    except dkim.ValidationError as e:
        return "fail", str(e), d, s
    except Exception as e:
        return "permerror", f"{type(e).__name__}: {e}", d, s
    if ok:
        return "pass", "", d, s
    if dns_failure:
        return "temperror", dns_failure[0], d, s
    if verifier.pk is None:
        return "permerror", f"no usable key at {s}._domainkey.{d}", d, s
    return "fail", "signature does not verify", d, s


# --- DMARC -----------------------------------------------------------------------------------

_DMARC_VERSION = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
_POLICIES = {"none", "quarantine", "reject"}


def _dmarc(raw: bytes, dns: _Dns, spf: str, spf_domain: object, dkim_domains: object, details: dict[str, str]):
    from_domains = _from_domains(raw)
    if not from_domains:
        details["dmarc.reason"] = "no From domain"
        return "none", None
    if len(from_domains) > 1:
        details["dmarc.from"] = ",".join(sorted(from_domains))
        details["dmarc.reason"] = "From names more than one domain"
        return "fail", None
    (from_domain,) = from_domains
    details["dmarc.from"] = from_domain
    org = org_domain(from_domain)
    try:
        tags, found_at = _dmarc_record(dns, from_domain), from_domain
        if tags is None and org != from_domain:
            tags, found_at = _dmarc_record(dns, org), org
    except _TempError as e:
        details["dmarc.reason"] = f"temperror: {e}"
        return "none", None
    if tags is None:
        details["dmarc.reason"] = f"no DMARC record for {from_domain}"
        return "none", None
    policy = tags.get("p", "").lower()
    if found_at != from_domain and tags.get("sp", "").lower() in _POLICIES:
        policy = tags["sp"].lower()
    details["dmarc.domain"] = found_at
    details["dmarc.policy"] = policy if policy in _POLICIES else "none"
    strict_spf, strict_dkim = tags.get("aspf", "r").lower() == "s", tags.get("adkim", "r").lower() == "s"
    if spf == "pass" and isinstance(spf_domain, str) and _aligned(spf_domain, from_domain, strict_spf):
        details["dmarc.aligned"] = f"spf:{spf_domain}"
        return "pass", None
    for d in dkim_domains if isinstance(dkim_domains, list) else []:
        if _aligned(d, from_domain, strict_dkim):
            details["dmarc.aligned"] = f"dkim:{d}"
            return "pass", None
    details["dmarc.reason"] = "neither SPF nor DKIM passed with a domain aligned to From"
    return "fail", None


def org_domain(domain: str) -> str:
    """The last two labels: a stand-in for the Public Suffix List (see the module docstring)."""
    return ".".join(domain.lower().rstrip(".").split(".")[-2:])


def _aligned(domain: str, from_domain: str, strict: bool) -> bool:
    domain, from_domain = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return domain == from_domain if strict else org_domain(domain) == org_domain(from_domain)


def _dmarc_record(dns: _Dns, domain: str) -> dict[str, str] | None:
    records = [r for r in dns.txt(f"_dmarc.{domain}") or [] if _DMARC_VERSION.match(r.strip())]
    if len(records) != 1:  # RFC 7489 §6.6.3: none, or several, means no policy
        return None
    tags: dict[str, str] = {}
    for part in records[0].split(";"):
        name, eq, value = part.partition("=")
        if eq:
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


def _from_domains(raw: bytes) -> set[str]:
    try:
        values = BytesHeaderParser(policy=compat32).parsebytes(raw).get_all("From") or []
        addresses = getaddresses([str(v) for v in values])
    except Exception:
        return set()
    domains = set()
    for _, addr in addresses:
        domain = addr.rpartition("@")[2].strip().lower().rstrip(".")
        if "@" in addr and domain:
            domains.add(domain)
    return domains


# --- Authentication-Results ------------------------------------------------------------------

_PROP_VALUE = re.compile(r"^[A-Za-z0-9._-]+$")


def _method(name: str, result: str, prop: str, value: str | None) -> str:
    return f"{name}={result}" + _prop(prop, value)


def _prop(prop: str, value: str | None) -> str:
    # Values come from untrusted mail; anything but a plain token is left out rather than quoted.
    return f" {prop}={value}" if value and _PROP_VALUE.match(value) else ""
