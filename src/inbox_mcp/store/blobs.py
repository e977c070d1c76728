"""Content-addressed storage: the same bytes (an attachment forwarded ten times) are kept once."""

from __future__ import annotations

import hashlib

from sqlalchemy import insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from .tables import Blob


def put_blob(session: Session, data: bytes) -> str:
    """One INSERT … ON CONFLICT DO NOTHING on SQLite instead of a SELECT, an ORM add and a flush."""
    digest = hashlib.sha256(data).hexdigest()
    row = {"sha256": digest, "size": len(data), "data": data}
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sqlite_insert(Blob).values(**row).on_conflict_do_nothing())
    elif session.get(Blob, digest) is None:
        session.execute(insert(Blob).values(**row))
    return digest


def get_blob(session: Session, digest: str) -> bytes:
    blob = session.get(Blob, digest)
    if blob is None:  # a foreign key guards this; reaching here means a damaged database
        raise LookupError(f"blob {digest} missing")
    return blob.data
