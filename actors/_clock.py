"""Time as the runtime sees it: `Clock` (real time) and `ManualClock` (time moved by tests).

Everything time-driven in the runtime (restart intensity windows, restart backoff, timers)
reads the time and schedules callbacks through the system's clock, never through
``time.monotonic`` or ``loop.call_later`` directly. A test that injects a `ManualClock`
decides when time passes, so time-driven behaviour is deterministic (trio's rule).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ("Clock", "ManualClock", "Scheduled")


class Scheduled(Protocol):
    """A callback scheduled on a clock; `cancel` makes sure it will not run."""

    def cancel(self) -> None: ...


class Clock:
    """Real monotonic time; callbacks run on the given event loop (its ``call_at``).

    Example:
        ```python
        system = ActorSystem(clock=actors.Clock())  # the default
        ```
    """

    runs_on_loop: bool = True
    """Callbacks run on the event loop given to `call_at` (a ManualClock runs them anywhere)."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        return time.monotonic()

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[..., object]
    ) -> Scheduled:
        """Run ``callback()`` at time ``when`` of this clock. Call from ``loop``'s thread."""
        return loop.call_later(max(0.0, when - self.now()), callback)


class _Pending:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock(Clock):
    """A clock that moves only when `advance` is called: deterministic timers and backoff.

    Due callbacks run in the thread that calls `advance`, in time order; the runtime's
    callbacks only hand signals to actors (thread-safe), so they may run anywhere.

    Example:
        ```python
        clock = actors.ManualClock()
        async with ActorSystem(clock=clock) as system:
            ticker = await system.spawn(Ticker)  # calls self.send_every(1.0, Tick())
            clock.advance(1.0)                   # the first tick is in its mailbox now
        ```
    """

    runs_on_loop = False

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._queue: list[tuple[float, int, _Pending]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(
        self, loop: asyncio.AbstractEventLoop, when: float, callback: Callable[..., object]
    ) -> Scheduled:
        pending = _Pending(when, callback)
        with self._lock:
            heapq.heappush(self._queue, (when, next(self._order), pending))
        return pending

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due on the way."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        with self._lock:
            target = self._now + seconds
        while True:
            with self._lock:
                if not self._queue or self._queue[0][0] > target:
                    self._now = target
                    return
                when, _, pending = heapq.heappop(self._queue)
                self._now = max(self._now, when)
            if not pending.cancelled:
                pending.callback()

    @property
    def next_due(self) -> float | None:
        """When the earliest scheduled callback falls due (maybe a cancelled one), or None."""
        with self._lock:
            return self._queue[0][0] if self._queue else None

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not yet due (cancelled ones included until they fall due)."""
        with self._lock:
            return len(self._queue)
