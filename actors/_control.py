"""Control records: what the runtime tells an actor between two of its messages.

Supervision, death watch, timers and requests from other threads reach an actor through its
mailbox's control lane (or, for timer ticks, its queue), wrapped in a `Signal`. Each record
names its fields; the run loop dispatches on the record's type (`Cell._on_control`), so the
shape of every signal is written here once, not in comments beside tuple unpackings.

Invariants: records are immutable and built by the runtime only; a record that a caller
waits on (`Call`) is settled exactly once, by the actor or, if it ends first, by its end
(`Cell._conclude`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._cell import Cell
    from ._oneshot import Oneshot
    from ._timers import Timer

__all__ = ("Call", "ChildExit", "Kill", "RestartDue", "Suspend", "Tick", "WatchedEnded")


@dataclass(frozen=True, slots=True)
class ChildExit:
    """To a parent: its child ended (``reason`` None: it stopped) in that incarnation."""

    child: Cell
    incarnation: int  # tells a stale exit (of an incarnation restarted since) apart
    reason: BaseException | None


@dataclass(frozen=True, slots=True)
class RestartDue:
    """To a parent: the backoff before restarting ``group`` (its children) has passed."""

    group: Sequence[Cell]
    reason: BaseException | None


@dataclass(frozen=True, slots=True)
class WatchedEnded:
    """To a watcher: an actor it watches (``Actor.watch``) has ended."""

    watched: Cell
    reason: BaseException | None


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn`` on the actor's instance between two messages; its result settles ``done``."""

    fn: Callable[[Any], object]
    done: Oneshot


@dataclass(frozen=True, slots=True)
class Suspend:
    """From the parent: end the instance and wait for a restart (OneForAll, RestForOne)."""


@dataclass(frozen=True, slots=True)
class Kill:
    """From another thread: end now, at the next message boundary (ahead of the queue)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer's tick (`Actor.send_after`, `send_every`): in the queue, counted as an item."""

    timer: Timer
