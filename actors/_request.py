"""Request flow: the deadline a handler inherits from the ask it answers, and the counts of
asks skipped and handlers cancelled because their askers gave up.

An ask carries its deadline (`Ask.deadline`, an instant of this process's monotonic clock).
While an actor answers it, the deadline is readable in the handler (`deadline`), and an ask
the handler makes waits at most until then. An asker that gives up marks its reply slot
abandoned (`Oneshot.abandon`); the actor then skips the ask if it is still queued, and, if
the actor's class opted in (``Actor.cancel_abandoned``), cancels the handler already
running for it, whose own asks are abandoned in turn.

Invariants:

* `running_cell` is set once per actor, in the context its tasks run in (`Cell`'s
  ``context``): reading it costs one context lookup and no store per message. It holds
  a weak reference, since copies of that context (tasks, loop callbacks) may outlive the
  actor and must not keep it alive. Tasks a handler starts copy the context, so they see
  the cell as well; the deadline is inherited only by the actor's run itself, its run
  task or its drain (``Cell.in_handler``), since a task the handler left running outlives
  the ask.
* ``Cell.deadline`` is written by the run (task or drain) alone: the ask's deadline while
  its handler runs, None otherwise. Read by that same run.
* `FlowCounts` are written by the run task alone and read racily by metrics snapshots.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import weakref

    from ._cell import Cell

__all__ = (
    "AskDeadline",
    "FlowCounts",
    "ask_deadline",
    "deadline",
    "inherited_deadline",
    "running_cell",
)

running_cell: ContextVar[weakref.ref[Cell] | None] = ContextVar("actors_running_cell", default=None)


class FlowCounts:
    """Per actor, made on first use: asks skipped, handlers cancelled (run task only)."""

    __slots__ = ("cancelled", "expired", "handlers_cancelled")

    def __init__(self) -> None:
        self.expired = 0  # queued asks skipped: the asker's timeout had run out
        self.cancelled = 0  # queued asks skipped: the asker was cancelled
        self.handlers_cancelled = 0  # running handlers cancelled (opted-in actors only)

    @property
    def skipped(self) -> int:
        return self.expired + self.cancelled + self.handlers_cancelled


def inherited_deadline() -> float | None:
    """The deadline of the ask the calling actor's handler answers, or None.

    None outside an actor, in a tell's handler, in an ask without a timeout, and in a task
    the handler started (see the module's invariants).
    """
    running = running_cell.get()
    cell = running() if running is not None else None
    if cell is None:
        return None
    instant = cell.deadline
    if instant is None or not cell.in_handler():
        return None
    return instant


def deadline() -> float | None:
    """Seconds left before the asker of the message being handled gives up, or None.

    Inside an actor's handler answering an ask with a timeout: how long its asker still
    waits (0.0 once the deadline has passed). None when nobody waits for an answer: a
    tell, an ask with ``timeout=None``, or code running outside an actor's handler. An
    ask made in the handler already waits at most this long; use it to size other work
    (a database query's timeout, a batch's length).

    Example:
        ```python
        class Search(actors.Actor[Query]):
            async def receive(self, message: Query) -> list[str]:
                left = actors.deadline()  # seconds, or None
                return await self.index.search(message.text, timeout=left)
        ```
    """
    instant = inherited_deadline()
    if instant is None:
        return None
    return max(0.0, instant - time.monotonic())


class AskDeadline:
    """When an ask made now must end: its own timeout or its handler's deadline, the sooner."""

    __slots__ = ("at", "inherited_from", "timeout")

    def __init__(self, at: float | None, timeout: float | None, inherited_from: str | None):
        self.at = at  # the monotonic instant, or None: no end
        self.timeout = timeout  # seconds from now (<= 0: already passed)
        self.inherited_from = inherited_from  # the path of the actor it came from, if inherited

    def left(self) -> float | None:
        """Seconds left now, never negative; None without a deadline."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())


def ask_deadline(timeout: float | None) -> AskDeadline:
    """The deadline of an ask made now with ``timeout`` (checked by the caller).

    `ActorRef.ask` inlines this (it is on the hot path); pools and the cluster call it.
    """
    now = time.monotonic()
    at = None if timeout is None else now + timeout
    inherited = inherited_deadline()
    if inherited is not None and (at is None or inherited < at):
        running = running_cell.get()
        cell = running() if running is not None else None
        return AskDeadline(inherited, inherited - now, cell.path if cell is not None else None)
    return AskDeadline(at, timeout, None)
