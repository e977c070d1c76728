"""Compiling a parsed search query (mail/query.py) into SQL over messages.

Words, phrases, ``subject:`` and ``filename:`` go to the FTS5 index; addresses, labels, flags and
dates are plain SQL on indexed columns. Results are newest first with a keyset on ``pk``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, column, exists, not_, or_, table, text
from sqlmodel import Session, select

from ..errors import InvalidArgument
from ..mail.query import Query, Term, fts5_split
from .tables import Message, MessageLabel


_FTS = table("message_fts", column("rowid", Integer))


def _like(value: str) -> str:
    return "%" + value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _label(name: str) -> ColumnElement[bool]:
    return exists().where(MessageLabel.message_pk == Message.pk, MessageLabel.label == name)


def _day(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _condition(term: Term) -> ColumnElement[bool] | None:
    f, v = term.field, term.value
    if f == "from":
        return or_(Message.from_addr.like(_like(v), escape="\\"), Message.from_name.like(_like(v), escape="\\"))  # type: ignore[union-attr]
    if f == "to":
        return Message.to_addrs.like(_like(v), escape="\\")  # type: ignore[attr-defined]
    if f == "cc":
        return Message.cc_addrs.like(_like(v), escape="\\")  # type: ignore[attr-defined]
    if f in ("label", "in"):
        return _label(v)
    if f == "is":
        return _label("unread") if v == "unread" else not_(_label("unread"))
    if f == "has":
        return Message.has_attachments == True  # noqa: E712
    # Dates: "before" is exclusive and "after" inclusive of whole UTC days, as in Gmail.
    if f == "before":
        return Message.received_at < _day(v)
    if f == "after":
        return Message.received_at >= _day(v)
    return None  # full-text terms are handled by FTS5


def compile_search(
    session: Session, query: Query, inbox_ids: list[str], after_pk: int | None, limit: int,
    *, newer_than: int | None = None, extra: list[Any] | None = None,
) -> list[Message]:
    """Newest first below ``after_pk`` (search pages); or, with ``newer_than``, oldest first
    above it (wait_for_message: the first match after a point, however many came after)."""
    conds: list[Any] = [Message.inbox_id.in_(inbox_ids), *(extra or [])]  # type: ignore[attr-defined]
    for term in query.terms:
        cond = _condition(term)
        if cond is not None:
            conds.append(not_(cond) if term.negated else cond)
    positive, negative = fts5_split(query.terms)
    if session.get_bind().dialect.name != "sqlite" and (positive or negative):
        raise InvalidArgument("full-text search needs the SQLite store in this version")
    if negative:
        conds.append(text("message.pk NOT IN (SELECT rowid FROM message_fts WHERE message_fts MATCH :neg)").bindparams(neg=negative))
    # With words to match, the FTS index drives the query in rowid (= pk) order, so a page stops
    # after `limit` hits: a word in a third of 100k messages costs ~2 ms, not a sort of all its
    # matches (~130 ms). Otherwise the covering index ix_message_inbox_pk does the same job.
    key = _FTS.c.rowid if positive else Message.pk
    if after_pk is not None:
        conds.append(key < after_pk)
    if newer_than is not None:
        conds.append(key > newer_than)
    order = key.asc() if newer_than is not None else key.desc()  # type: ignore[union-attr]
    pk_stmt = select(Message.pk)
    if positive:
        pk_stmt = pk_stmt.select_from(_FTS.join(Message, Message.pk == _FTS.c.rowid))  # type: ignore[arg-type]
        conds.append(text("message_fts MATCH :pos").bindparams(pos=positive))
    # Two steps: choose the page's pks first, then load just those rows (selecting whole rows
    # made SQLite carry every matching body through the ordering).
    pk_stmt = pk_stmt.where(and_(*conds)).order_by(order).limit(limit)
    pks = list(session.exec(pk_stmt).all())
    if not pks:
        return []
    rows = {m.pk: m for m in session.exec(select(Message).where(Message.pk.in_(pks))).all()}  # type: ignore[union-attr]
    return [rows[pk] for pk in pks]



