"""Timers: messages an actor sends to itself later (`Actor.send_after`) or periodically
(`Actor.send_every`).

A tick joins the actor's mailbox behind the messages already queued (FIFO: a Beat sent
before a timeout fell due is handled before that timeout), but past the bound: a full
mailbox cannot lose it. At most one tick of a timer waits at a time: a tick that falls due
while the previous one still waits is skipped (counted in `Timer.skipped`), so a slow actor
never gets a burst of stale ticks, and the bound is exceeded by at most one per timer.
Periodic ticks fall due at ``start + k * interval``: lateness does not accumulate into drift.

A loop may run a timer's callback early by up to its clock's resolution: uvloop rounds to
libuv's millisecond clock, so a tick can fire a fraction of a millisecond before
``clock.now()`` reaches its due time. The tick is due all the same and is delivered; the
next one is computed from the index of the period that fired, never from now alone, so it
always falls due strictly later. (Computed from now alone, an early fire re-armed for the
same instant again and again: storms of hundreds of ticks on uvloop, issue 13.)

Cancellation is checked when a tick is handled, on the actor's own loop: once `Timer.cancel`
has returned, no tick of that timer runs, not even one already waiting (Akka's guarantee).
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import TYPE_CHECKING, Any

from ._control import Tick
from ._mailbox import Signal

if TYPE_CHECKING:
    from ._cell import Cell
    from ._clock import Scheduled

__all__ = ("CANCELLED", "Timer")

CANCELLED: Any = object()  # what `Timer.take` returns for a tick that must not run


class Timer:
    """A running timer of an actor; `cancel` it to stop it.

    Attributes:
        message: what each tick delivers to the actor's ``receive``.
        interval: seconds between ticks, or None for a one-shot timer.
        skipped: ticks dropped because the previous one had not been handled yet.

    Example:
        ```python
        async def on_start(self) -> None:
            self.heartbeat = self.send_every(1.0, Beat())

        async def receive(self, message: Beat | Quiet) -> None:
            if isinstance(message, Quiet):
                self.heartbeat.cancel()
        ```
    """

    __slots__ = (
        "_cell",
        "_due",
        "_epoch",
        "_period",
        "_scheduled",
        "_start",
        "_waiting",
        "cancelled",
        "interval",
        "message",
        "skipped",
    )

    def __init__(self, cell: Cell, message: object, delay: float, interval: float | None) -> None:
        self._cell = cell
        self.message = message
        self.interval = interval
        self.cancelled = False
        self.skipped = 0
        self._waiting = False  # a tick waits in the mailbox (single writer at a time)
        clock = cell.system.clock
        self._start = clock.now()
        self._due = self._start + delay
        # Periodic: the k of the multiple ``start + k * interval`` the pending tick is for (for
        # the first tick, the last multiple at or before it: 1 for `send_every`).
        self._period = math.floor(delay / interval) if interval is not None else 0
        self._scheduled: Scheduled | None = None
        self._epoch = 0  # bumped when the actor is evacuated: an older loop timer is stale
        self._schedule()

    def __repr__(self) -> str:
        every = f" every {self.interval} s" if self.interval is not None else ""
        state = "cancelled" if self.cancelled else "active"
        return f"<Timer {type(self.message).__qualname__}{every} of {self._cell.path} {state}>"

    @property
    def active(self) -> bool:
        """False once cancelled, or once a one-shot timer has delivered its tick."""
        return not self.cancelled

    def cancel(self) -> None:
        """Stop the timer: no tick of it is handled after this returns. Idempotent.

        Example:
            ```python
            self.reminder.cancel()
            ```
        """
        self.cancelled = True
        cell = self._cell
        timers = cell.timers
        if timers is not None:
            timers.discard(self)
        scheduled, self._scheduled = self._scheduled, None
        # Loop timers may only be touched on their loop; elsewhere the flag is enough.
        if scheduled is not None and cell.on_home_thread():
            scheduled.cancel()

    def _schedule(self) -> None:
        cell = self._cell
        fire = functools.partial(self._fire, self._epoch)
        self._scheduled = cell.system.clock.call_at(cell.home.loop, self._due, fire)

    def strand(self) -> bool:
        """The actor is evacuated from its blocked loop (by another thread, under the
        mailbox's lock): the loop timer there becomes stale and will fire as a no-op.

        True when a tick was still to fall due: `arrive`, posted to the new loop, schedules
        it there at the same due time.
        """
        self._epoch += 1
        scheduled, self._scheduled = self._scheduled, None
        return scheduled is not None

    def leave(self) -> bool:
        """The actor is moving to another loop: drop the loop timer here (old home thread).

        As `strand`, and the loop timer is cancelled rather than left to fire as a no-op.
        """
        scheduled = self._scheduled
        if scheduled is not None:
            scheduled.cancel()
        return self.strand()

    def arrive(self) -> None:
        """On the new home thread after a move: schedule the pending tick on this loop."""
        if not self.cancelled and self._scheduled is None:
            self._schedule()

    def _fire(self, epoch: int) -> None:
        # On the home loop (real clock) or in the thread advancing a manual clock; maybe
        # slightly before `_due` as the clock sees it (see the module docstring).
        cell = self._cell
        with cell.mailbox.lock:  # `strand` changes the epoch from another thread, under it
            if epoch != self._epoch:
                return  # a loop timer left behind on a loop the actor was evacuated from
            self._scheduled = None  # fired: nothing left to cancel or to move (see `leave`)
        if self.cancelled:
            return
        if self._waiting:
            self.skipped += 1
        else:
            self._waiting = True
            if not self._cell.mailbox.put_unbounded(Signal(Tick(self))):
                self.cancelled = True  # the actor has finished
                return
        interval = self.interval
        if interval is None:
            return
        now = self._cell.system.clock.now()
        # Invariant: the next period comes after the one that just fired, even when it fired
        # early (else it re-arms for the same instant: a storm), and after now (late ticks
        # are skipped, not bunched).
        self._period = max(self._period + 1, math.floor((now - self._start) / interval) + 1)
        self._due = self._start + self._period * interval
        if cell.system.clock.runs_on_loop and not cell.on_home_thread():
            # Fired on a loop the actor has been evacuated from meanwhile: re-arm at home.
            with contextlib.suppress(RuntimeError):
                cell.home.loop.call_soon_threadsafe(self.arrive)
            return
        self._schedule()

    def take(self) -> Any:
        """On the home loop, as the tick is handled: the message, or `CANCELLED`."""
        self._waiting = False
        if self.cancelled:
            return CANCELLED
        if self.interval is None:
            self.cancelled = True
            timers = self._cell.timers
            if timers is not None:
                timers.discard(self)
        return self.message
