"""Mail authentication around the service: DKIM-signing what we send (when the domain has a key)
and judging what arrives (SPF, DKIM, DMARC), with DNS as configured."""

from __future__ import annotations

import json
import logging
import threading
import time
from functools import cached_property
from pathlib import Path

from ..errors import InvalidArgument
from ..mail.authresults import DnsAddr, DnsTxt, evaluate, no_dns, system_dns
from ..mail.dkim_sign import DkimKey, load_key, sign
from .base import ServiceBase

log = logging.getLogger(__name__)
DNS_TIMEOUT_S = 2.0
DNS_CACHE_S = 300.0


def static_dns(path: Path) -> DnsTxt:
    """A resolver that answers TXT queries from a JSON file {"name": ["value", …]}."""
    records = {k.lower().rstrip("."): v for k, v in json.loads(path.read_text()).items()}

    def txt(name: str) -> list[str]:
        key = name.lower().rstrip(".")
        if key not in records:
            raise LookupError(name)
        return list(records[key])

    return txt


def cached(fn, ttl: float = DNS_CACHE_S, size: int = 4096):  # type: ignore[no-untyped-def]
    """A small TTL cache in front of a resolver, negative answers included: a burst of mail from
    one domain asks DNS once, not once per message (each lookup is a network round trip)."""
    memo: dict[tuple, tuple[float, object, bool]] = {}
    lock = threading.Lock()

    def lookup(*args):  # type: ignore[no-untyped-def]
        now = time.monotonic()
        with lock:
            hit = memo.get(args)
        if hit and now - hit[0] < ttl:
            if hit[2]:
                raise LookupError(args[0])
            return hit[1]
        try:
            value, missing = fn(*args), False
        except LookupError:
            value, missing = None, True
        with lock:
            if len(memo) >= size:
                memo.clear()
            memo[args] = (now, value, missing)
        if missing:
            raise LookupError(args[0])
        return value

    return lookup


class AuthenticationOps(ServiceBase):
    _dkim_lock = threading.Lock()

    @cached_property
    def _resolvers(self) -> tuple[DnsTxt, DnsAddr | None]:
        mode = self.settings.auth_dns
        if mode == "off":
            return no_dns, None
        if mode == "system":
            txt, addr = system_dns(DNS_TIMEOUT_S)
            return cached(txt), cached(addr)
        return static_dns(Path(mode)), None

    def authenticate_inbound(self, raw: bytes, client_ip: str | None, helo: str | None, mail_from: str | None) -> dict[str, str]:
        txt, addr = self._resolvers
        return evaluate(raw, client_ip=client_ip, helo=helo, mail_from=mail_from, dns_txt=txt, dns_addr=addr).as_dict()

    def _dkim_key(self, domain: str) -> DkimKey | None:
        path = self.settings.dkim_keys / f"{domain}.{self.settings.dkim_selector}.pem"
        if not path.exists():
            return None
        with self._dkim_lock:
            cache: dict[Path, tuple[float, DkimKey]] = self.__dict__.setdefault("_dkim_cache", {})
            mtime = path.stat().st_mtime
            if path not in cache or cache[path][0] != mtime:
                cache[path] = (mtime, load_key(path, domain, self.settings.dkim_selector))
            return cache[path][1]

    def dkim_sign(self, raw: bytes, from_address: str) -> bytes:
        key = self._dkim_key(from_address.rpartition("@")[2].lower())
        if key is None:
            return raw
        try:
            return sign(raw, key)
        except InvalidArgument:
            log.exception("DKIM signing failed for %s; sending unsigned", from_address)
            return raw
