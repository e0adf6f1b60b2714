"""Supervision: restart strategies, restart types, backoff, and the death-watch event.

A parent decides what a child's failure means, as in Erlang/OTP's ``supervisor``:

* the child's **restart type** says whether it is restarted at all (`Restart`);
* the parent's **strategy** says which children restart together (`OneForOne`,
  `OneForAll`, `RestForOne`) and how often that may happen (`max_restarts` within
  `within` seconds, counted over all of the parent's children, as OTP counts them);
* an optional `Backoff` spaces restarts out.

This module holds the values users configure and the pure decisions made from them. The
mechanics (suspending a child, rebooting it behind the same mailbox) live in ``_cell.py``.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._validation import check_count, check_seconds

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._ref import Ref

__all__ = (
    "Backoff",
    "OneForAll",
    "OneForOne",
    "RestForOne",
    "Restart",
    "RestartWindow",
    "SupervisionStrategy",
    "Terminated",
)

T = TypeVar("T")


class Restart(enum.Enum):
    """When a child is restarted, with OTP's meaning.

    * ``PERMANENT`` (the default): always restarted, after a failure and after it stopped
      itself normally (`Actor.stop`).
    * ``TRANSIENT``: restarted only after a failure.
    * ``TEMPORARY``: never restarted.

    Whatever the type, an explicit `ActorRef.stop` (and the parent or the system stopping)
    is a final stop, never followed by a restart.

    Example:
        ```python
        worker = await self.spawn(Worker, restart=actors.Restart.TRANSIENT)
        ```
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"

    def wants_restart(self, reason: BaseException | None) -> bool:
        """Whether an exit for ``reason`` (None: a normal exit) calls for a restart."""
        if self is Restart.PERMANENT:
            return True
        return self is Restart.TRANSIENT and reason is not None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between restarts: ``initial * multiplier**n``, capped at ``maximum``.

    ``n`` counts the restarts already made within the strategy's window, so the delay falls
    back to ``initial`` once failures stop. ``jitter`` spreads each delay by up to that
    fraction either way, so that siblings failing together do not restart in lockstep.

    Example:
        ```python
        class Gateway(actors.Actor[Call]):
            supervision = actors.OneForOne(
                max_restarts=10, within=60.0,
                backoff=actors.Backoff(initial=0.1, maximum=5.0, jitter=0.2),
            )
        ```
    """

    initial: float = 0.1
    maximum: float = 5.0
    jitter: float = 0.2
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        check_seconds("Backoff initial", self.initial)
        check_seconds("Backoff maximum", self.maximum)
        for what, value in (("jitter", self.jitter), ("multiplier", self.multiplier)):
            if isinstance(value, bool) or not isinstance(value, int | float):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise TypeError(f"Backoff {what} must be a number, got {value!r}")
        if not (0 <= self.initial <= self.maximum) or not math.isfinite(self.maximum):
            raise ValueError(
                f"Backoff needs 0 <= initial <= maximum < inf, got initial={self.initial}, "
                f"maximum={self.maximum}"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff jitter must be within 0..1, got {self.jitter}")
        if not 1 <= self.multiplier < math.inf:
            raise ValueError(f"Backoff multiplier must be at least 1, got {self.multiplier}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before restart number ``attempt`` (0 for the first) of a window."""
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        if not self.jitter or not base:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return min(self.maximum, max(0.0, base * (1 + spread)))


@dataclass(frozen=True, slots=True)
class SupervisionStrategy:
    """What a parent does when a child fails; see `OneForOne`, `OneForAll`, `RestForOne`.

    Attributes:
        max_restarts: restarts allowed within ``within`` seconds, over all the children.
            The failure that would make one more is not restarted: the parent gives up,
            stops all its children and fails itself (escalating to its own parent).
        within: the length of the sliding window, in seconds.
        backoff: optional delay before each restart.

    Example:
        ```python
        class Bank(actors.Actor[Open]):
            supervision = actors.OneForAll(max_restarts=5, within=10.0)
        ```
    """

    max_restarts: int = 3
    within: float = 5.0
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        check_count("max_restarts", self.max_restarts, minimum=0)
        check_seconds("within", self.within, positive=True)
        if self.backoff is not None and not isinstance(self.backoff, Backoff):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"backoff must be an actors.Backoff or None, got {self.backoff!r}")

    def group(self, children: Sequence[T], failed: T) -> list[T]:
        """The children restarted together with ``failed``, in start order."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class OneForOne(SupervisionStrategy):
    """Restart only the child that failed (the default strategy).

    Example:
        ```python
        class Pool(actors.Actor[Job]):
            supervision = actors.OneForOne(max_restarts=3, within=5.0)
        ```
    """

    def group(self, children: Sequence[T], failed: T) -> list[T]:
        return [failed]


@dataclass(frozen=True, slots=True)
class OneForAll(SupervisionStrategy):
    """Restart every child when one fails: for children that only make sense together.

    The others are stopped in reverse start order, then all start again in start order.

    Example:
        ```python
        class Pipeline(actors.Actor[Batch]):
            supervision = actors.OneForAll(max_restarts=2, within=30.0)
        ```
    """

    def group(self, children: Sequence[T], failed: T) -> list[T]:
        return list(children)


@dataclass(frozen=True, slots=True)
class RestForOne(SupervisionStrategy):
    """Restart the failed child and every child started after it (they depend on it).

    Example:
        ```python
        class Service(actors.Actor[Request]):
            supervision = actors.RestForOne()  # db, then cache, then api
        ```
    """

    def group(self, children: Sequence[T], failed: T) -> list[T]:
        index = list(children).index(failed)
        return list(children[index:])


class RestartWindow:
    """OTP's restart intensity: the times of recent restarts, within a sliding window.

    Owned by one parent and touched only on its home loop (single writer).
    """

    __slots__ = ("_times",)

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._times)

    def admit(self, strategy: SupervisionStrategy, now: float) -> bool:
        """Record one more restart at ``now``; False when it would exceed the intensity."""
        times = self._times
        while times and now - times[0] > strategy.within:
            times.popleft()
        if len(times) >= strategy.max_restarts:
            return False
        times.append(now)
        return True


@dataclass(frozen=True, slots=True)
class Terminated:
    """Delivered to `Actor.on_terminated` when a watched actor has stopped for good.

    Attributes:
        ref: the actor that stopped.
        reason: None for a normal stop, else the exception it failed with.

    Example:
        ```python
        async def on_terminated(self, event: actors.Terminated) -> None:
            if event.reason is not None:
                log.warning("%s died: %r", event.ref.path, event.reason)
        ```
    """

    ref: Ref[Any]
    reason: BaseException | None
