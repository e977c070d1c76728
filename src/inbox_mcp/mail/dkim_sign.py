"""DKIM signing of outgoing mail (RFC 6376), and the keys it needs.

A key is an RSA private key in PEM plus the (domain, selector) it is published under; the DNS
side is one TXT record at ``<selector>._domainkey.<domain>``. ``generate_key`` makes both,
``save_key`` / ``load_key`` keep the private half on disk (mode 0600), ``dns_record`` prints the
public half again for an existing key.

Signing is relaxed/relaxed rsa-sha256 through dkimpy. We sign a fixed set of headers, only those
present, and refuse to sign mail whose From is not the key's domain or a subdomain of it: a
signature for a domain the author does not use would fail DMARC alignment anyway, and signing
arbitrary From domains is exactly what a compromised agent would want.
"""

from __future__ import annotations

import base64
import os
import re
import tempfile
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from inbox_mcp.errors import InvalidArgument

# Signed when present, in this order. Reply-To is beyond the usual list on purpose: a relay
# that rewrites it redirects every answer without touching From.
DEFAULT_SIGNED_HEADERS: tuple[bytes, ...] = (
    b"From", b"To", b"Cc", b"Reply-To", b"Subject", b"Date", b"Message-ID", b"In-Reply-To",
    b"References", b"MIME-Version", b"Content-Type",
)
MIN_BITS = 1024  # RFC 8301: verifiers must not accept smaller RSA keys
MAX_TXT_CHUNK = 255  # one <character-string> in a TXT record (RFC 1035 §3.3)

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    private_pem: bytes = field(repr=False)  # never in logs or tracebacks

    @property
    def dns_name(self) -> str:
        """Where the public key is published, without the trailing dot."""
        return f"{self.selector}._domainkey.{self.domain}"


def generate_key(domain: str, selector: str = "inbox", bits: int = 2048) -> tuple[DkimKey, str]:
    """A new RSA key and the zone-file line that publishes it.

    >>> key, record = generate_key("example.com")
    >>> record[:60]
    'inbox._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=MIIB'
    """
    domain, selector = _check_domain(domain), _check_selector(selector)
    if not MIN_BITS <= bits <= 8192:
        raise InvalidArgument(f"DKIM key size must be between {MIN_BITS} and 8192 bits, got {bits}")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what dkimpy documents
        serialization.NoEncryption(),
    )
    key = DkimKey(domain=domain, selector=selector, private_pem=pem)
    return key, dns_record(key)


def txt_value(key: DkimKey) -> str:
    """The TXT record's value, unquoted: ``v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>``."""
    public = _private_key(key.private_pem, source="key").public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def dns_record(key: DkimKey) -> str:
    """``<selector>._domainkey.<domain>. IN TXT "…" "…"``, each quoted string at most 255 chars.

    DNS joins the strings of one TXT record without separators, so the split points are free.
    """
    value = txt_value(key)
    chunks = [value[i : i + MAX_TXT_CHUNK] for i in range(0, len(value), MAX_TXT_CHUNK)]
    return f"{key.dns_name}. IN TXT " + " ".join(f'"{c}"' for c in chunks)


def sign(raw: bytes, key: DkimKey, headers: list[bytes] | None = None) -> bytes:
    """``raw`` with a DKIM-Signature header prepended.

    ``headers`` overrides the signed header list exactly (repeat a name to oversign it); by
    default the present ones of ``DEFAULT_SIGNED_HEADERS`` are signed. The signature header uses
    the message's own line ending.
    """
    parsed = BytesHeaderParser(policy=compat32).parsebytes(raw)
    _check_from(parsed.get_all("From") or [], key.domain)
    if headers is None:
        present = {name.lower() for name in parsed}
        headers = [h for h in DEFAULT_SIGNED_HEADERS if h.decode().lower() in present]
    linesep = b"\r\n" if b"\r\n" in raw or b"\n" not in raw else b"\n"
    try:
        signature = dkim.sign(
            raw,
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(headers),
            linesep=linesep,
        )
    except dkim.DKIMException as e:
        raise InvalidArgument(f"cannot DKIM-sign this message: {e}") from e
    return signature + raw


def save_key(key: DkimKey, directory: Path) -> Path:
    """Write ``<directory>/<domain>.<selector>.pem``, mode 0600, atomically; return its path."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{key.domain}.{key.selector}.pem"
    # mkstemp creates the file 0600, so the key is never readable by others, not even briefly.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_key(path: Path, domain: str, selector: str) -> DkimKey:
    """Read a PEM RSA private key (PKCS#1 or unencrypted PKCS#8) for ``selector._domainkey.domain``."""
    try:
        pem = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read DKIM key {path}: {e.strerror or e}") from e
    _private_key(pem, source=str(path))
    return DkimKey(domain=_check_domain(domain), selector=_check_selector(selector), private_pem=pem)


def _private_key(pem: bytes, *, source: str) -> rsa.RSAPrivateKey:
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"{source} is not an unencrypted PEM private key: {e}") from e
    if not isinstance(private, rsa.RSAPrivateKey):
        raise InvalidArgument(f"{source} is not an RSA key (DKIM signing here is rsa-sha256)")
    if private.key_size < MIN_BITS:
        raise InvalidArgument(f"{source} is a {private.key_size}-bit key; DKIM needs at least {MIN_BITS}")
    return private


def _check_from(values: list[str], domain: str) -> None:
    if len(values) != 1:
        raise InvalidArgument(f"a DKIM-signed message needs exactly one From header, found {len(values)}")
    addresses = [addr for _, addr in getaddresses([str(values[0])]) if addr]
    if not addresses:
        raise InvalidArgument(f"From header has no address: {values[0]!r}")
    for addr in addresses:
        from_domain = addr.rpartition("@")[2].lower().rstrip(".")
        if from_domain != domain and not from_domain.endswith("." + domain):
            raise InvalidArgument(
                f"From domain {from_domain or '(none)'!r} is not {domain!r} or a subdomain of it; "
                f"the DKIM key for {domain} cannot sign it"
            )


def _check_domain(domain: str) -> str:
    domain = domain.strip().lower().rstrip(".")
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidArgument(f"not a DNS domain name (ASCII/punycode): {domain!r}")
    return domain


def _check_selector(selector: str) -> str:
    selector = selector.strip().lower()
    if not selector or not all(_LABEL.match(label) for label in selector.split(".")):
        raise InvalidArgument(f"not a DKIM selector (DNS labels): {selector!r}")
    return selector
