"""Turning stored rows into contract results. Reads sized for an LLM: text is sliced by
``offset``/``max_chars`` so a 200 KB newsletter never floods a context window."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from ..contract import AttachmentInfo, Authentication, MessageOut, MessageSummary
from ..mail.html_text import sanitize_html
from ..mail.reply_text import extract_reply_text
from ..store.blobs import get_blob
from ..store.messages import labels_of
from ..store.tables import Attachment, Message, MessageLabel, Thread

DEFAULT_MAX_CHARS = 20_000
REPLY_TEXT_MAX_CHARS = 20_000
# The new text of a reply sits at the top: reading further only costs time (a 200 KB newsletter
# would take ~0.25 s on every slice).
REPLY_TEXT_SCAN_CHARS = 50_000


def _slice(full: str, offset: int, max_chars: int) -> tuple[str, bool, int | None]:
    part = full[offset : offset + max_chars]
    end = offset + len(part)
    more = end < len(full)
    return part, more, end if more else None


def attachments_of(s: Session, msg: Message) -> list[Attachment]:
    return list(s.exec(select(Attachment).where(Attachment.message_pk == msg.pk).order_by(Attachment.position)).all())


def message_out(
    s: Session, msg: Message, thread: Thread, *, fmt: str = "text", max_chars: int = DEFAULT_MAX_CHARS, offset: int = 0
) -> MessageOut:
    raw_text: str | None = None
    body = msg.text if msg.parse_ok else get_blob(s, msg.raw_sha256).decode("utf-8", "replace")
    if fmt == "raw":
        raw_full = get_blob(s, msg.raw_sha256).decode("utf-8", "replace")
        raw_text, _, _ = _slice(raw_full, offset, max_chars)
        total = len(raw_full)
        text_part, more, nxt = _slice(body, 0, max_chars)
        more, nxt = offset + len(raw_text) < total, (offset + len(raw_text)) if offset + len(raw_text) < total else None
    else:
        total = len(body)
        text_part, more, nxt = _slice(body, offset, max_chars)
    auth = json.loads(msg.auth_results or "{}")
    return MessageOut(
        message_id=msg.id,
        thread_id=thread.id,
        inbox_id=msg.inbox_id,
        from_=msg.from_addr,
        from_name=msg.from_name,
        to=json.loads(msg.to_addrs),
        cc=json.loads(msg.cc_addrs),
        bcc=json.loads(msg.bcc_addrs) if msg.direction == "out" else [],
        subject=msg.subject,
        date=msg.date,
        received_at=msg.received_at,
        direction="out" if msg.direction == "out" else "in",
        text=text_part,
        text_total_chars=total,
        offset=offset,
        truncated=more,
        next_offset=nxt,
        html=sanitize_html(msg.html) if fmt == "html" and msg.html else None,
        raw=raw_text,
        reply_text=extract_reply_text(body[:REPLY_TEXT_SCAN_CHARS])[:REPLY_TEXT_MAX_CHARS],
        labels=labels_of(s, msg.pk),  # type: ignore[arg-type]
        attachments=[
            AttachmentInfo(attachment_id=a.id, filename=a.filename, content_type=a.content_type, size=a.size)
            for a in attachments_of(s, msg)
        ],
        authentication=Authentication(**{k: v for k, v in auth.items() if k in ("spf", "dkim", "dmarc")}),
        delivery_status=msg.status,
        parse_ok=msg.parse_ok,
    )


def labels_by_message(s: Session, pks: list[int]) -> dict[int, list[str]]:
    """Labels of several messages in one query (search pages: no query per row)."""
    out: dict[int, list[str]] = {}
    if pks:
        rows = s.exec(select(MessageLabel.message_pk, MessageLabel.label).where(MessageLabel.message_pk.in_(pks)))  # type: ignore[attr-defined]
        for pk, label in rows:
            out.setdefault(pk, []).append(label)
    return {k: sorted(v) for k, v in out.items()}


def message_summary(s: Session, msg: Message, thread_id: str, labels: list[str] | None = None) -> MessageSummary:
    return MessageSummary(
        message_id=msg.id,
        thread_id=thread_id,
        inbox_id=msg.inbox_id,
        from_=msg.from_addr,
        to=json.loads(msg.to_addrs),
        subject=msg.subject,
        date=msg.date,
        received_at=msg.received_at,
        snippet=msg.snippet,
        labels=labels if labels is not None else labels_of(s, msg.pk),  # type: ignore[arg-type]
        has_attachments=msg.has_attachments,
    )
