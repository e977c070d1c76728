"""wait_for_message: block until matching mail arrives, without a tight polling loop.

The baseline is fixed when the call starts (or given by ``since``: a message id or an ISO time),
and the answer is the oldest matching message after it — so a client that retries with
``since`` set to the last message it saw neither misses nor repeats one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
from sqlmodel import func, select

from ..contract import WaitResult
from ..errors import InvalidArgument
from ..mail.query import Query, parse_query
from ..store.search import compile_search
from ..store.tables import Message, Thread
from .base import AgentRef, ServiceBase
from .notify import CROSS_PROCESS_CHECK_S
from .views import message_out

MAX_TIMEOUT_S = 300


class WaitOps(ServiceBase):
    def _baseline(self, agent: AgentRef, inbox_id: str, since: str | None) -> tuple[int, datetime | None]:
        with self.db.read() as s:
            self._inbox(s, agent, inbox_id)
            if since is None:
                return s.exec(select(func.coalesce(func.max(Message.pk), 0)).where(Message.inbox_id == inbox_id)).one(), None
            if since.startswith("msg_"):
                msg, inbox = self._message(s, agent, since)
                if inbox.id != inbox_id:
                    raise InvalidArgument(f"since message {since!r} belongs to another inbox")
                return msg.pk, None  # type: ignore[return-value]
        try:
            at = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgument(f"since must be a message_id or an ISO 8601 time, got {since!r}") from None
        return 0, at if at.tzinfo else at.replace(tzinfo=UTC)

    def _first_after(self, inbox_id: str, after_pk: int, after_time: datetime | None, query: Query | None):  # type: ignore[no-untyped-def]
        with self.db.read() as s:
            if query is not None:
                extra = [Message.direction == "in"] + ([Message.received_at > after_time] if after_time is not None else [])
                rows = compile_search(s, query, [inbox_id], None, 1, newer_than=after_pk, extra=extra)
                msg = rows[0] if rows else None
            else:
                stmt = select(Message).where(Message.inbox_id == inbox_id, Message.pk > after_pk, Message.direction == "in")
                if after_time is not None:
                    stmt = stmt.where(Message.received_at > after_time)
                msg = s.exec(stmt.order_by(Message.pk).limit(1)).first()  # type: ignore[arg-type]
            if msg is None:
                return None
            thread = s.get(Thread, msg.thread_pk)
            return message_out(s, msg, thread)  # type: ignore[arg-type]

    async def wait_for_message(
        self, agent: AgentRef, inbox_id: str, query: str | None = None, since: str | None = None, timeout_s: float = 60
    ) -> WaitResult:
        if not 0 <= timeout_s <= MAX_TIMEOUT_S:
            raise InvalidArgument(f"timeout_s must be between 0 and {MAX_TIMEOUT_S}, got {timeout_s}")
        parsed = parse_query(query) if query else None
        after_pk, after_time = await anyio.to_thread.run_sync(self._baseline, agent, inbox_id, since)
        deadline = time.monotonic() + timeout_s
        while True:
            found = await anyio.to_thread.run_sync(self._first_after, inbox_id, after_pk, after_time, parsed)
            if found is not None:
                return WaitResult(status="received", message=found)
            left = deadline - time.monotonic()
            if left <= 0:
                return WaitResult(status="timeout")
            await self.notifier.wait(inbox_id, min(left, CROSS_PROCESS_CHECK_S))
