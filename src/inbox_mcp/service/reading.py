"""Reading an agent's mail: threads, messages, search, labels, attachments, verification codes."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from sqlalchemy import exists, tuple_
from sqlmodel import Session, func, select

from ..contract import (
    AttachmentContent,
    LabelCount,
    LabelCounts,
    LabelsOut,
    MessageOut,
    SearchResult,
    ThreadList,
    ThreadOut,
    ThreadSummary,
    VerificationOut,
)
from ..errors import InvalidArgument, NotFound
from ..mail.query import parse_query
from ..mail.verification import extract_verification
from ..store.blobs import get_blob
from ..store.cursors import decode_cursor, encode_cursor, scope_digest
from ..store.messages import add_labels, remove_labels, thread_labels
from ..store.search import compile_search
from ..store.tables import (
    Attachment,
    Draft,
    Inbox,
    Message,
    MessageLabel,
    Thread,
    ThreadLabel,
)
from .base import AgentRef, ServiceBase
from .views import DEFAULT_MAX_CHARS, labels_by_message, message_out, message_summary

SYSTEM_LABELS = ("inbox", "sent", "unread", "drafts", "trash", "spam")
HIDDEN_UNLESS_ASKED = ("trash", "spam")
THREAD_MESSAGE_MAX_CHARS = 4_000
MAX_LABEL_CHARS = 64


def check_limit(limit: int, maximum: int = 100) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise InvalidArgument(f"limit must be between 1 and {maximum}, got {limit!r}")
    return limit


def check_label(label: str) -> str:
    name = label.strip() if isinstance(label, str) else ""
    if not name or len(name) > MAX_LABEL_CHARS or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise InvalidArgument(f"label {label!r} must be 1-{MAX_LABEL_CHARS} printable characters")
    return name.lower() if name.lower() in SYSTEM_LABELS else name


def check_slice(max_chars: int, offset: int) -> None:
    if not 1 <= max_chars <= 1_000_000:
        raise InvalidArgument(f"max_chars must be between 1 and 1000000, got {max_chars}")
    if offset < 0:
        raise InvalidArgument(f"offset must be 0 or more, got {offset}")


class ReadingOps(ServiceBase):
    def list_threads(
        self, agent: AgentRef, inbox_id: str, labels: list[str] | None = None, unread: bool | None = None,
        limit: int = 20, cursor: str | None = None,
    ) -> ThreadList:
        check_limit(limit)
        wanted = [check_label(label) for label in labels or []]
        scope = scope_digest("threads", inbox_id, sorted(wanted), unread)
        with self.db.read() as s:
            self._inbox(s, agent, inbox_id)
            stmt = select(Thread).where(Thread.inbox_id == inbox_id)
            for label in wanted:
                # Correlated EXISTS: walks ix_thread_inbox_last newest first and probes the
                # threadlabel primary key per thread, instead of materialising every thread
                # that carries the label (IN (SELECT …) grows with the inbox).
                stmt = stmt.where(
                    exists().where(ThreadLabel.thread_pk == Thread.pk, ThreadLabel.label == label)  # type: ignore[arg-type]
                )
            for hidden in HIDDEN_UNLESS_ASKED:
                if hidden not in wanted:
                    # A thread wholly in the trash (or spam) is out of sight, as in every mail client.
                    stmt = stmt.where(
                        ~Thread.pk.in_(  # type: ignore[union-attr]
                            select(ThreadLabel.thread_pk).where(
                                ThreadLabel.label == hidden, ThreadLabel.thread_pk == Thread.pk,
                                ThreadLabel.count >= Thread.message_count,
                            )
                        )
                    )
            if unread is True:
                stmt = stmt.where(Thread.unread_count > 0)
            elif unread is False:
                stmt = stmt.where(Thread.unread_count == 0)
            if cursor:
                at, pk = decode_cursor(cursor, scope, 2)
                try:
                    key = (datetime.fromisoformat(at), int(pk))
                except (TypeError, ValueError):
                    raise InvalidArgument("cursor is malformed: pass next_cursor exactly as a previous call returned it") from None
                stmt = stmt.where(tuple_(Thread.last_message_at, Thread.pk) < tuple_(*key))
            stmt = stmt.order_by(Thread.last_message_at.desc(), Thread.pk.desc()).limit(limit + 1)  # type: ignore[attr-defined,union-attr]
            rows = list(s.exec(stmt).all())
            page, more = rows[:limit], len(rows) > limit
            labels_by_thread = self._labels_by_thread(s, [t.pk for t in page])  # type: ignore[misc]
            threads = [
                ThreadSummary(
                    thread_id=t.id, inbox_id=t.inbox_id, subject=t.subject, participants=json.loads(t.participants),
                    message_count=t.message_count, unread_count=t.unread_count, last_message_at=t.last_message_at,
                    labels=labels_by_thread.get(t.pk, []), snippet=t.snippet,  # type: ignore[arg-type]
                )
                for t in page
            ]
        nxt = encode_cursor(scope, [page[-1].last_message_at.isoformat(), page[-1].pk]) if more else None
        return ThreadList(threads=threads, next_cursor=nxt)

    def _labels_by_thread(self, s: Session, pks: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if pks:
            for pk, label in s.exec(select(ThreadLabel.thread_pk, ThreadLabel.label).where(ThreadLabel.thread_pk.in_(pks))):  # type: ignore[attr-defined]
                out.setdefault(pk, []).append(label)
        return {k: sorted(v) for k, v in out.items()}

    def get_thread(self, agent: AgentRef, thread_id: str, max_chars: int = THREAD_MESSAGE_MAX_CHARS) -> ThreadOut:
        check_slice(max_chars, 0)
        with self.db.read() as s:
            thread = self._thread(s, agent, thread_id)
            msgs = s.exec(select(Message).where(Message.thread_pk == thread.pk).order_by(Message.pk)).all()  # type: ignore[arg-type]
            return ThreadOut(
                thread_id=thread.id, inbox_id=thread.inbox_id, subject=thread.subject,
                labels=thread_labels(s, thread.pk),  # type: ignore[arg-type]
                messages=[message_out(s, m, thread, max_chars=max_chars) for m in msgs],
            )

    def read_message(
        self, agent: AgentRef, message_id: str, fmt: str = "text", max_chars: int = DEFAULT_MAX_CHARS, offset: int = 0
    ) -> MessageOut:
        if fmt not in ("text", "html", "raw"):
            raise InvalidArgument(f"format must be text, html or raw, got {fmt!r}")
        check_slice(max_chars, offset)
        with self.db.read() as s:
            msg, _ = self._message(s, agent, message_id)
            thread = s.get(Thread, msg.thread_pk)
            assert thread is not None
            return message_out(s, msg, thread, fmt=fmt, max_chars=max_chars, offset=offset)

    def search(
        self, agent: AgentRef, query: str, inbox_id: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> SearchResult:
        check_limit(limit)
        parsed = parse_query(query)
        scope = scope_digest("search", query, inbox_id)
        after_pk = None
        if cursor:
            (pk,) = decode_cursor(cursor, scope, 1)
            if not isinstance(pk, int):
                raise InvalidArgument("cursor is malformed: pass next_cursor exactly as a previous call returned it")
            after_pk = pk
        with self.db.read() as s:
            if inbox_id is not None:
                inbox_ids = [self._inbox(s, agent, inbox_id).id]
            else:
                inbox_ids = list(s.exec(select(Inbox.id).where(Inbox.agent_id == agent.id)).all())
            rows = compile_search(s, parsed, inbox_ids, after_pk, limit + 1) if inbox_ids else []
            page, more = rows[:limit], len(rows) > limit
            thread_ids = dict(s.exec(select(Thread.pk, Thread.id).where(Thread.pk.in_({m.thread_pk for m in page}))).all())  # type: ignore[union-attr]
            labels = labels_by_message(s, [m.pk for m in page])  # type: ignore[misc]
            out = [message_summary(s, m, thread_ids[m.thread_pk], labels.get(m.pk, [])) for m in page]
        return SearchResult(messages=out, next_cursor=encode_cursor(scope, [page[-1].pk]) if more else None)

    def update_labels(
        self, agent: AgentRef, message_id: str | None = None, thread_id: str | None = None,
        add: list[str] | None = None, remove: list[str] | None = None,
    ) -> LabelsOut:
        if (message_id is None) == (thread_id is None):
            raise InvalidArgument("give exactly one of message_id or thread_id")
        to_add = [check_label(x) for x in add or []]
        to_remove = [check_label(x) for x in remove or []]
        for name in set(to_add) & {"sent", "drafts"}:
            raise InvalidArgument(f"label {name!r} is set by the system and cannot be added")
        with self.db.write() as s:
            if message_id is not None:
                msg, _ = self._message(s, agent, message_id)
                thread = s.get(Thread, msg.thread_pk)
                msgs = [msg]
            else:
                thread = self._thread(s, agent, thread_id)  # type: ignore[arg-type]
                msgs = list(s.exec(select(Message).where(Message.thread_pk == thread.pk)).all())
            assert thread is not None
            for m in msgs:
                add_labels(s, m, thread, to_add)
                remove_labels(s, m, thread, to_remove)
            changed = [m.pk for m in msgs]
            if message_id is not None:
                labels = sorted(s.exec(select(MessageLabel.label).where(MessageLabel.message_pk == msgs[0].pk)).all())
            else:
                labels = thread_labels(s, thread.pk)  # type: ignore[arg-type]
        for pk in changed:  # mirrored to the mail server after the store has committed
            self.backend.labels_changed(thread.inbox_id, pk, to_add, to_remove)  # type: ignore[arg-type]
        return LabelsOut(labels=labels)

    def list_labels(self, agent: AgentRef, inbox_id: str) -> LabelCounts:
        with self.db.read() as s:
            self._inbox(s, agent, inbox_id)
            inbox_msgs = select(Message.pk).where(Message.inbox_id == inbox_id)
            counts = dict(
                s.exec(
                    select(MessageLabel.label, func.count())
                    .where(MessageLabel.message_pk.in_(inbox_msgs))  # type: ignore[attr-defined]
                    .group_by(MessageLabel.label)
                ).all()
            )
            unread_label = select(MessageLabel.message_pk).where(MessageLabel.label == "unread")
            unread = dict(
                s.exec(
                    select(MessageLabel.label, func.count())
                    .where(MessageLabel.message_pk.in_(inbox_msgs), MessageLabel.message_pk.in_(unread_label))  # type: ignore[attr-defined]
                    .group_by(MessageLabel.label)
                ).all()
            )
            counts["drafts"] = s.exec(select(func.count()).select_from(Draft).where(Draft.inbox_id == inbox_id)).one()
        names = list(SYSTEM_LABELS) + sorted(n for n in counts if n not in SYSTEM_LABELS)
        return LabelCounts(labels=[LabelCount(name=n, count=counts.get(n, 0), unread=unread.get(n, 0)) for n in names])

    def get_attachment(self, agent: AgentRef, message_id: str, attachment_id: str) -> tuple[AttachmentContent, bytes]:
        with self.db.read() as s:
            msg, _ = self._message(s, agent, message_id)
            att = s.get(Attachment, attachment_id)
            if att is None or att.message_pk != msg.pk:
                raise NotFound(f"attachment {attachment_id!r} does not exist on message {message_id!r}")
            data = get_blob(s, att.sha256)
        content = AttachmentContent(
            attachment_id=att.id, filename=att.filename, content_type=att.content_type, size=att.size,
            content_base64=base64.b64encode(data).decode(),
            resource_uri=f"inbox://messages/{message_id}/attachments/{attachment_id}",
        )
        return content, data

    def extract_verification(self, agent: AgentRef, message_id: str) -> VerificationOut:
        with self.db.read() as s:
            msg, _ = self._message(s, agent, message_id)
            found = extract_verification(subject=msg.subject, text=msg.text, html=msg.html)
        return VerificationOut(message_id=msg.id, codes=found.codes, links=found.links)
