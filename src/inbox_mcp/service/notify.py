"""Wake-ups for wait_for_message. Deliveries in this process wake waiters at once; deliveries in
another process sharing the home are seen by the waiter's own check of the newest message id,
which it repeats at most every ``CROSS_PROCESS_CHECK_S`` (one indexed lookup, not a scan)."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

CROSS_PROCESS_CHECK_S = 0.5


class Notifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)

    def notify(self, inbox_id: str) -> None:
        """Safe to call from any thread (the SMTP listener runs in its own)."""
        with self._lock:
            waiters = list(self._waiters.get(inbox_id, ()))
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that waiter's loop is closed
                pass

    async def wait(self, inbox_id: str, timeout: float) -> None:
        """Return when mail for the inbox may have arrived, or after ``timeout`` seconds."""
        event = asyncio.Event()
        key = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters[inbox_id].add(key)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters[inbox_id].discard(key)
