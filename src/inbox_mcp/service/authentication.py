"""Mail authentication around the service: DKIM-signing what we send (when the domain has a key)
and judging what arrives (SPF, DKIM, DMARC), with DNS as configured."""

from __future__ import annotations

import json
import logging
import threading
from functools import cached_property
from pathlib import Path

from ..errors import InvalidArgument
from ..mail.authresults import DnsAddr, DnsTxt, evaluate, no_dns, system_dns
from ..mail.dkim_sign import DkimKey, load_key, sign
from .base import ServiceBase

log = logging.getLogger(__name__)
DNS_TIMEOUT_S = 2.0


def static_dns(path: Path) -> DnsTxt:
    """A resolver that answers TXT queries from a JSON file {"name": ["value", …]}."""
    records = {k.lower().rstrip("."): v for k, v in json.loads(path.read_text()).items()}

    def txt(name: str) -> list[str]:
        key = name.lower().rstrip(".")
        if key not in records:
            raise LookupError(name)
        return list(records[key])

    return txt


class AuthenticationOps(ServiceBase):
    _dkim_lock = threading.Lock()

    @cached_property
    def _resolvers(self) -> tuple[DnsTxt, DnsAddr | None]:
        mode = self.settings.auth_dns
        if mode == "off":
            return no_dns, None
        if mode == "system":
            return system_dns(DNS_TIMEOUT_S)
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
