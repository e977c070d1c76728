"""Opaque keyset cursors. A cursor carries the sort key of the last row served and a digest of
the listing it belongs to, so a cursor from one listing cannot be replayed against another."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from ..errors import InvalidArgument


def scope_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()[:16]


def encode_cursor(scope: str, key: list[Any]) -> str:
    payload = json.dumps({"s": scope, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def decode_cursor(cursor: str, scope: str, arity: int) -> list[Any]:
    bad = InvalidArgument("cursor is malformed: pass next_cursor exactly as a previous call returned it")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        raise bad from None
    if not isinstance(data, dict) or not isinstance(data.get("k"), list) or len(data["k"]) != arity:
        raise bad
    if data.get("s") != scope:
        raise InvalidArgument("cursor belongs to a different listing: repeat the call with the same filters")
    return data["k"]
