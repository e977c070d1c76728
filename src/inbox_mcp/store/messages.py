"""Writing messages into an inbox: the thread they join, their labels, their search index.

Thread counters (message_count, unread_count, per-label counts) are maintained here on every
write so that listing threads never has to aggregate over messages: list_threads stays as fast
at 100k messages as at 10k.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, update
from sqlalchemy import text as sql
from sqlmodel import Session, select

from .blobs import put_blob
from .ids import new_id
from .tables import Attachment, Message, MessageLabel, Thread, ThreadLabel, utcnow

SUBJECT_FALLBACK_WINDOW = timedelta(days=30)

# Built once: constructing SQLAlchemy statements per message cost as much as running them.
_INSERT_THREAD = insert(Thread)
_INSERT_MESSAGE = insert(Message)
_INSERT_ATTACHMENT = insert(Attachment)
_INSERT_LABEL = insert(MessageLabel)
_INSERT_THREAD_LABEL = insert(ThreadLabel)
_BUMP_THREAD = (
    update(Thread)
    .where(Thread.pk == bindparam("b_pk"))
    .values(
        message_count=Thread.message_count + 1, unread_count=Thread.unread_count + bindparam("b_unread"),
        last_message_at=bindparam("b_at"), snippet=bindparam("b_snippet"), participants=bindparam("b_people"),
    )
)
_BUMP_THREAD_LABEL = (
    update(ThreadLabel)
    .where(ThreadLabel.thread_pk == bindparam("t"), ThreadLabel.label == bindparam("l"))
    .values(count=ThreadLabel.count + 1)
)
_BY_MSGID = (
    select(Message.thread_pk)
    .where(Message.inbox_id == bindparam("inbox"), Message.message_id_header.in_(bindparam("ids", expanding=True)))  # type: ignore[union-attr]
    .order_by(Message.pk.desc())  # type: ignore[union-attr]
    .limit(1)
)
_BY_CHILD = select(Message.thread_pk).where(Message.inbox_id == bindparam("inbox"), Message.in_reply_to == bindparam("id")).limit(1)
_BY_SUBJECT = (
    select(Thread.pk)
    .where(Thread.inbox_id == bindparam("inbox"), Thread.subject_key == bindparam("key"), Thread.last_message_at >= bindparam("since"))
    .order_by(Thread.last_message_at.desc())  # type: ignore[attr-defined]
    .limit(1)
)
_PARTICIPANTS = select(Thread.participants).where(Thread.pk == bindparam("pk"))
_INSERT_FTS = sql("INSERT INTO message_fts(rowid, subject, body, addresses, filenames) VALUES (:r, :s, :b, :a, :f)")
SNIPPET_CHARS = 160


@dataclass
class NewAttachment:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False


@dataclass
class NewMessage:
    inbox_id: str
    raw: bytes
    direction: str  # in | out
    labels: list[str]
    message_id_header: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    subject_key: str  # normalised subject, for the no-references fallback
    is_reply_subject: bool  # subject carried Re:/Fwd: — only then may the fallback thread it
    from_addr: str | None
    from_name: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str] = field(default_factory=list)
    reply_to: list[str] = field(default_factory=list)
    date: datetime | None = None
    text: str = ""
    html: str | None = None
    attachments: list[NewAttachment] = field(default_factory=list)
    parse_ok: bool = True
    auto_submitted: bool = False
    auth_results: dict[str, str] = field(default_factory=dict)
    status: str | None = None


def snippet_of(text: str) -> str:
    return " ".join(text.split())[:SNIPPET_CHARS]


def _find_thread(session: Session, m: NewMessage) -> tuple[int, str] | None:
    """(thread pk, participants) of the thread the message joins, JWZ-style: a parent named by
    In-Reply-To/References wins, then a child that names us (replies can arrive before the
    message they answer), then the subject fallback."""
    conn = session.connection()
    refs = [r for r in ([m.in_reply_to] if m.in_reply_to else []) + list(reversed(m.references)) if r]
    # Another copy of the same message (our own sent copy of mail to ourselves) shares its thread.
    own = [m.message_id_header] if m.message_id_header else []
    pk = None
    if refs or own:
        pk = conn.execute(_BY_MSGID, {"inbox": m.inbox_id, "ids": refs + own}).scalar()
    if pk is None and m.message_id_header:
        pk = conn.execute(_BY_CHILD, {"inbox": m.inbox_id, "id": m.message_id_header}).scalar()
    if pk is None and not refs and m.is_reply_subject and m.subject_key:
        since = utcnow() - SUBJECT_FALLBACK_WINDOW
        pk = conn.execute(_BY_SUBJECT, {"inbox": m.inbox_id, "key": m.subject_key, "since": since}).scalar()
    if pk is None:
        return None
    return pk, conn.execute(_PARTICIPANTS, {"pk": pk}).scalar() or "[]"


def _participants(current: str, m: NewMessage) -> str:
    people = [m.from_addr] if m.from_addr else []
    people += [p for p in json.loads(current) if p not in people]
    people += [p for p in m.to + m.cc if p not in people]
    return json.dumps(people[:20])


def insert_message(session: Session, m: NewMessage) -> Message:
    """Store one message. Core statements rather than ORM units of work: this is the ingest hot
    path, and per-row ORM bookkeeping cost several times the SQL itself."""
    raw_sha = put_blob(session, m.raw)
    now = utcnow()
    found = _find_thread(session, m)
    conn = session.connection()  # Core on the session's transaction, without the ORM layer
    if found is None:
        thread_pk = conn.execute(
            _INSERT_THREAD,
            dict(
                id=new_id("thr"), inbox_id=m.inbox_id, subject=m.subject, subject_key=m.subject_key,
                message_count=0, unread_count=0, last_message_at=now, snippet="", participants="[]",
            ),
        ).inserted_primary_key[0]
        participants = "[]"
    else:
        thread_pk, participants = found
    values = dict(
        id=new_id("msg"), inbox_id=m.inbox_id, thread_pk=thread_pk, direction=m.direction,
        message_id_header=m.message_id_header, in_reply_to=m.in_reply_to, references=" ".join(m.references),
        subject=m.subject, from_addr=m.from_addr, from_name=m.from_name, to_addrs=json.dumps(m.to),
        cc_addrs=json.dumps(m.cc), bcc_addrs=json.dumps(m.bcc), reply_to=json.dumps(m.reply_to), date=m.date,
        received_at=now, text=m.text, html=m.html, snippet=snippet_of(m.text), size=len(m.raw), raw_sha256=raw_sha,
        parse_ok=m.parse_ok, auto_submitted=m.auto_submitted, has_attachments=bool(m.attachments),
        auth_results=json.dumps(m.auth_results), status=m.status,
    )
    pk = conn.execute(_INSERT_MESSAGE, values).inserted_primary_key[0]
    msg = Message(pk=pk, **values)
    if m.attachments:
        conn.execute(
            _INSERT_ATTACHMENT,
            [
                dict(
                    id=new_id("att"), message_pk=pk, position=pos, filename=a.filename, content_type=a.content_type,
                    size=len(a.data), sha256=put_blob(session, a.data), content_id=a.content_id, inline=a.inline,
                )
                for pos, a in enumerate(m.attachments)
            ],
        )
    labels = list(dict.fromkeys(m.labels))
    conn.execute(
        _BUMP_THREAD,
        dict(b_pk=thread_pk, b_unread=1 if "unread" in labels else 0, b_at=now, b_snippet=msg.snippet,
             b_people=_participants(participants, m)),
    )
    stale = session.identity_map.get(session.identity_key(Thread, thread_pk))  # type: ignore[arg-type]
    if stale is not None:  # an ORM copy loaded earlier in this session no longer matches the row
        session.expire(stale)
    _insert_labels(session, pk, thread_pk, labels)
    _index(session, msg, [a.filename for a in m.attachments])
    return msg


def _insert_labels(session: Session, message_pk: int, thread_pk: int, labels: list[str]) -> None:
    if not labels:
        return
    session.connection().execute(_INSERT_LABEL, [{"message_pk": message_pk, "label": label} for label in labels])
    _upsert_thread_labels(session, thread_pk, labels)


def _upsert_thread_labels(session: Session, thread_pk: int, labels: list[str]) -> None:
    """count += 1 per label, creating the row on first use. Runs inside a write transaction
    (serialised), so update-then-insert cannot race; and it is the same SQL on every database."""
    conn = session.connection()
    for label in labels:
        if not conn.execute(_BUMP_THREAD_LABEL, {"t": thread_pk, "l": label}).rowcount:
            conn.execute(_INSERT_THREAD_LABEL, {"thread_pk": thread_pk, "label": label, "count": 1})
        tl = session.identity_map.get(session.identity_key(ThreadLabel, (thread_pk, label)))  # type: ignore[arg-type]
        if tl is not None:  # keep a copy already loaded in this session coherent
            session.expire(tl)


def _index(session: Session, msg: Message, filenames: list[str]) -> None:
    if session.get_bind().dialect.name != "sqlite":
        return
    addresses = " ".join(
        filter(None, [msg.from_addr, msg.from_name, *json.loads(msg.to_addrs), *json.loads(msg.cc_addrs)])
    )
    session.connection().execute(
        _INSERT_FTS,
        {"r": msg.pk, "s": msg.subject, "b": msg.text, "a": addresses, "f": " ".join(filenames)},
    )


def labels_of(session: Session, message_pk: int) -> list[str]:
    return sorted(session.exec(select(MessageLabel.label).where(MessageLabel.message_pk == message_pk)).all())


def add_labels(session: Session, msg: Message, thread: Thread, labels: list[str]) -> None:
    have = set(labels_of(session, msg.pk))  # type: ignore[arg-type]
    new = [label for label in dict.fromkeys(labels) if label not in have]
    if not new:
        return
    session.flush()  # pending ORM changes land before the Core statements below
    _insert_labels(session, msg.pk, thread.pk, new)  # type: ignore[arg-type]
    if "unread" in new:
        thread.unread_count += 1
        session.add(thread)
    session.flush()


def remove_labels(session: Session, msg: Message, thread: Thread, labels: list[str]) -> None:
    for label in dict.fromkeys(labels):
        row = session.get(MessageLabel, (msg.pk, label))
        if row is None:
            continue
        session.delete(row)
        _bump_thread_label(session, thread, label, -1)
        if label == "unread":
            thread.unread_count -= 1
            session.add(thread)
    session.flush()


def _bump_thread_label(session: Session, thread: Thread, label: str, delta: int) -> None:
    tl = session.get(ThreadLabel, (thread.pk, label))
    if tl is None:
        tl = ThreadLabel(thread_pk=thread.pk, label=label, count=0)  # type: ignore[arg-type]
    tl.count += delta
    if tl.count <= 0:
        if tl in session:
            session.delete(tl)
    else:
        session.add(tl)


def thread_labels(session: Session, thread_pk: int) -> list[str]:
    return sorted(session.exec(select(ThreadLabel.label).where(ThreadLabel.thread_pk == thread_pk)).all())
