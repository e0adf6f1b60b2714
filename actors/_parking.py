"""Parked run tasks: an actor that runs dry waits for its next message in its own task.

A run task that finds its mailbox empty hands the consumer token back (see `Mailbox`) and
then *parks*: it awaits a future that the next producer resolves instead of starting a new
task. Waking a parked task is a future's callback (the way an ``asyncio.Queue`` consumer is
woken); starting a task costs its creation, its first step and its teardown on top. Actors
that get a message now and then (a ring, a fan-out over many actors) pay the cheaper one.

An idle actor must not keep a task (memory: an idle actor is a cell and a mailbox, about
1 KB), so parking is temporary: each loop sweeps its parked actors every `PARK_IDLE`
seconds, and one still parked since the previous sweep is retired (its task ends; the next
message starts a new one). The sweep is one timer per loop while anything is parked, and
visits only the actors that parked since it last ran.

Only run tasks park: an actor whose handler is synchronous runs as a drain (a loop
callback, `Cell._drain`) and, dry, keeps nothing at all, as a retired actor does; waking it
is a ``call_soon``, cheaper still than resolving a parked task's future.

Home thread only: parking, waking and sweeping all run on the actor's own loop.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import asyncio

    from ._cell import Cell

__all__ = ("PARK_IDLE", "Parking", "Resumed")

PARK_IDLE: Final = 0.1
"""Seconds between sweeps: a parked actor is retired after one to two of them."""


class Resumed(enum.Enum):
    """Why a parked run task resumes: the result of its `Parking.park` future."""

    WOKEN = "woken"
    """By a producer on its own loop: it holds the consumer token now."""
    POSTED = "posted"
    """By a wake-up posted from another thread: it holds the token unless the actor was
    evacuated before the task got to run (it checks under the mailbox lock: `Cell.stay`)."""
    RETIRED = "retired"
    """Parked through a whole sweep: the task ends (the next message starts a new one)."""
    EVACUATED = "evacuated"
    """The actor was moved to another loop meanwhile: the task must touch nothing more."""


class Parking:
    """The parked run tasks of one event loop."""

    __slots__ = ("_generation", "_loop", "_parked", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._generation = 0
        # Each cell once (park_gen >= 0 while listed); a dict so that an actor that ends can
        # leave at once (`forget`) rather than be kept alive until the next sweep.
        self._parked: dict[Cell, None] = {}
        self._timer: asyncio.TimerHandle | None = None

    def park(self, cell: Cell) -> asyncio.Future[Resumed]:
        """Park ``cell``'s run task until a producer, the sweep or an evacuation resumes it."""
        waiter: asyncio.Future[Resumed] = self._loop.create_future()
        cell.parked = waiter
        if cell.park_gen < 0:
            self._parked[cell] = None
            if self._timer is None:
                self._timer = self._loop.call_later(PARK_IDLE, self._sweep)
        cell.park_gen = self._generation
        return waiter

    def forget(self, cell: Cell) -> None:
        """``cell`` has ended: drop it now (an ended actor is not kept for the sweep)."""
        if cell.park_gen >= 0:
            cell.park_gen = -1
            self._parked.pop(cell, None)

    def _sweep(self) -> None:
        self._timer = None
        generation = self._generation
        self._generation = generation + 1
        keep: dict[Cell, None] = {}
        for cell in self._parked:
            retire = None
            # Under the mailbox's lock: a sender may evacuate the actor to another loop
            # while this one was blocked (Cell.evacuate_to); such an actor is no longer ours
            # and its fields are its new loop's.
            with cell.mailbox.lock:
                if cell.home.loop is not self._loop:
                    continue
                waiter = cell.parked
                if waiter is None:  # woken since: listed again when it parks again
                    cell.park_gen = -1
                elif cell.park_gen < generation:  # parked through a whole interval: retire it
                    cell.parked = None
                    cell.park_gen = -1
                    retire = waiter
                else:
                    keep[cell] = None
            if retire is not None and not retire.done():
                retire.set_result(Resumed.RETIRED)
        self._parked = keep
        if keep:
            self._timer = self._loop.call_later(PARK_IDLE, self._sweep)
