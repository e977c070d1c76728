"""Content-addressed storage: the same bytes (an attachment forwarded ten times) are kept once."""

from __future__ import annotations

import hashlib

from sqlmodel import Session

from .tables import Blob


def put_blob(session: Session, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    if session.get(Blob, digest) is None:
        session.add(Blob(sha256=digest, size=len(data), data=data))
        session.flush()
    return digest


def get_blob(session: Session, digest: str) -> bytes:
    blob = session.get(Blob, digest)
    if blob is None:  # a foreign key guards this; reaching here means a damaged database
        raise LookupError(f"blob {digest} missing")
    return blob.data
