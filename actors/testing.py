"""Test kit for code built on `actors`: probes, state inspection, settling, time control.

Import it in tests only (``from actors import testing``); nothing in the runtime imports it.

* `Probe`: an actor that records what it receives, and is also an `ActorRef` (pass it where
  the code under test expects a ref). ``await probe.expect(Type)`` takes the next message and
  fails the test (``AssertionError``) if it is of another type or does not come in time.
* `inspect`: run a function on an actor's instance between two of its messages, on its own
  loop, where its state is consistent. Tests only: production code asks.
* `settle`: wait until every actor of a system is idle (nothing queued, no handler running).
* `advance`: move a `ManualClock` forward one due timer at a time, settling in between, so
  that every timer that falls due is handled at its own time, in order.
* `deterministic_system`: an `ActorSystem` whose actors all run on the test's own asyncio
  loop, on a `ManualClock`: one thread, the same interleaving on every run.

Design notes. A probe's actor runs wherever the system places it (a worker loop, or the host
loop), while the test waits on its own loop (asyncio, uvloop or trio). The received messages
therefore sit in a small queue behind a lock (`_Inbox`); the handler appends and settles the
waiting test's one-shot, which wakes the test on its own loop, whatever it is. Messages are
taken only once they are all there: a wait that runs out or is cancelled takes nothing.

`inspect` and `Probe.watch` reach an actor through its control lane
(``Cell.call_between_messages``): the function runs on the actor's loop at its next message
boundary, before the messages already queued. A call still queued when the actor finishes is
dropped with the lane, so `inspect` also waits for the actor's end and reports it.

`settle` only looks: an actor is busy while its mailbox's consumer token is taken. It polls
rather than sending a signal to wait for, because any signal keeps the actor's run loop
going a little longer (it lingers for more work once its mailbox runs dry).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar, overload

import anyio
import anyio.lowlevel

from ._actor import Actor
from ._cell import SUSPENDED
from ._clock import ManualClock
from ._errors import ActorStopped, DeadlockError
from ._oneshot import Expired, Oneshot, oneshot
from ._ref import ActorRef, Ref, cell_of
from ._system import DEFAULT_CAPACITY, DEFAULT_DRAIN_TIMEOUT, DEFAULT_THROUGHPUT, ActorSystem
from ._validation import check_seconds, check_timeout

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from ._cell import Cell
    from ._strategy import SupervisionStrategy, Terminated
    from ._system import Escalation, Placement

__all__ = (
    "DEFAULT_TIMEOUT",
    "ManualClock",
    "Probe",
    "advance",
    "deterministic_system",
    "inspect",
    "settle",
)

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A", bound=Actor[Any])

DEFAULT_TIMEOUT: Final = 3.0
"""Seconds a call of the kit waits by default before it fails the test (as Akka's TestKit)."""

_YIELDS: Final = 50  # looks at a busy system in `settle` with a bare yield, then...
_POLL: Final = 0.001  # ... seconds between two looks


# -- probes ------------------------------------------------------------------------------------


class _Inbox:
    """What a probe received and the test has not taken yet.

    Any thread appends (the probe's handler, on its home loop); the test takes, from its own
    asyncio or trio loop. Everything is under one lock; a waiting test parks on a one-shot
    of its own context, settled by the next append.
    """

    __slots__ = ("_items", "_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[Any] = deque()
        self._waiters: list[Oneshot] = []

    def put(self, message: object) -> None:
        with self._lock:
            self._items.append(message)
            waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.settle()

    def snapshot(self) -> tuple[Any, ...]:
        with self._lock:
            return tuple(self._items)

    def take(self, count: int) -> tuple[Any, ...]:
        """The first ``count`` messages (the caller made sure they are there)."""
        with self._lock:
            return tuple(self._items.popleft() for _ in range(min(count, len(self._items))))

    async def wait_for(self, count: int, timeout: float | None) -> bool:
        """Wait until at least ``count`` messages are here; False if not within ``timeout``."""
        await anyio.lowlevel.checkpoint()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self._items) >= count:
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                waiter = oneshot()
                self._waiters.append(waiter)
            try:
                await waiter.wait(remaining)
            except Expired:
                pass
            finally:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)


class _ProbeActor(Actor[Any]):
    """The actor behind a `Probe`: records every message (and `Terminated` event)."""

    def __init__(self, inbox: _Inbox, reply: Callable[[Any], object] | None) -> None:
        self._inbox = inbox
        self._reply = reply

    async def receive(self, message: Any) -> Any:
        self._inbox.put(message)
        return None if self._reply is None else self._reply(message)

    async def on_terminated(self, event: Terminated) -> None:
        self._inbox.put(event)


class Probe(ActorRef[Any]):
    """An actor that records what it receives, for tests to check; it is also an `ActorRef`.

    Create one with `Probe.spawn`. It accepts any sendable message, so pass it wherever the
    code under test expects a ref (``ActorRef[Reply]``, a ``reply_to`` field, a subscriber),
    then check what arrived with `expect`, `expect_no_message` or `receive_n`. Messages are
    taken in the order they arrived; a failed expectation takes nothing, except that
    `expect` takes the message it rejects. An `ask` to a probe is answered with None, or
    by the ``reply`` function given to `spawn`.

    Example:
        ```python
        probe = await Probe.spawn(system)
        await account.send(Withdraw(500, reply_to=probe))
        refusal = await probe.expect(Refused)
        assert refusal.balance == 100
        await probe.expect_no_message(within=0.05)
        ```
    """

    __slots__ = ("_inbox",)

    def __init__(self, cell: Cell, inbox: _Inbox) -> None:
        super().__init__(cell)
        self._inbox = inbox

    @classmethod
    async def spawn(
        cls,
        system: ActorSystem,
        *,
        name: str | None = None,
        capacity: int | None = None,
        placement: Placement = None,
        reply: Callable[[Any], object] | None = None,
    ) -> Self:
        """Start a probe in ``system`` and return it (a top-level actor).

        Args:
            system: the running system to spawn the probe's actor in.
            name: the actor's name (default ``probe-<n>``).
            capacity: its mailbox capacity (default: the system's).
            placement: as for `ActorSystem.spawn`.
            reply: called with every message the probe is asked (`ActorRef.ask`), on the
                probe's loop; its return value is the reply, and must be sendable. Without
                it, asks are answered with None. Every message is recorded first.

        Raises:
            SystemNotRunning, DuplicateName: as for `ActorSystem.spawn`.

        Cancellation: as for `ActorSystem.spawn`: a probe already starting is stopped again.

        Example:
            ```python
            probe = await Probe.spawn(system, name="listener")
            prices = await Probe.spawn(system, reply=lambda request: 42)  # answers asks
            ```
        """
        inbox = _Inbox()
        if name is None:
            # Numbered like the system's own default names: the same on every run.
            name = f"probe-{system.next_serial()}"
        ref = await system.spawn(
            lambda: _ProbeActor(inbox, reply), name=name, capacity=capacity, placement=placement
        )
        return cls(cell_of(ref), inbox)

    def __repr__(self) -> str:
        cell = self._cell
        return f"<Probe {cell.path} {cell.status} unread={len(self._inbox.snapshot())}>"

    @property
    def messages(self) -> tuple[Any, ...]:
        """The messages received and not taken yet, oldest first (a snapshot; takes nothing).

        Example:
            ```python
            await testing.settle(system)
            assert probe.messages == (Deposited(50), Deposited(20))
            ```
        """
        return self._inbox.snapshot()

    async def expect(
        self,
        kind: type[T],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        where: Callable[[T], bool] | None = None,
    ) -> T:
        """Take the next message, and return it if it is a ``kind`` (and satisfies ``where``).

        ``expect(object)`` takes the next message whatever it is.

        Args:
            kind: the class the next message must be an instance of.
            timeout: seconds to wait for a message (None: forever).
            where: an extra condition on the message, such as ``lambda m: m.amount == 5``.

        Raises:
            AssertionError: no message within ``timeout`` (nothing is taken); or the next
                message is not a ``kind`` or fails ``where`` (it is taken, and named in the
                error with both types).

        Cancellation: nothing is taken.

        Example:
            ```python
            receipt = await probe.expect(Receipt, where=lambda r: r.total == 30)
            anything = await probe.expect(object, timeout=0.5)
            ```
        """
        check_timeout("timeout", timeout)
        if not await self._inbox.wait_for(1, timeout):
            raise AssertionError(
                f"probe {self.path} expected {kind.__qualname__} within {timeout} s, got nothing"
            )
        (message,) = self._inbox.take(1)
        if not isinstance(message, kind):
            raise AssertionError(
                f"probe {self.path} expected {kind.__qualname__}, "
                f"got {type(message).__qualname__}: {message!r}"
            )
        if where is not None and not where(message):
            raise AssertionError(
                f"probe {self.path} got {message!r}, which does not satisfy the `where` condition"
            )
        return message

    async def expect_no_message(self, *, within: float | None = 0.1) -> None:
        """Fail if a message arrives within ``within`` seconds (or is already waiting).

        With ``within=None`` there is no sleeping: the call waits until the whole system is
        idle (`settle`) and then checks. That is exact in a `deterministic_system` and
        faster anywhere, but it does not wait for timers (see `advance`).

        Raises:
            AssertionError: a message arrived; it is named, and stays in the probe.
            TimeoutError: with ``within=None``, as for `settle`.

        Cancellation: nothing is taken.

        Example:
            ```python
            await probe.expect_no_message(within=0.05)
            await probe.expect_no_message(within=None)  # once everything settled
            ```
        """
        check_timeout("within", within)
        if within is None:
            await settle(self._cell.system)
            arrived = bool(self._inbox.snapshot())
        else:
            arrived = await self._inbox.wait_for(1, within)
        if arrived:
            first = self._inbox.snapshot()[0]
            waited = "once the system settled" if within is None else f"within {within} s"
            raise AssertionError(
                f"probe {self.path} expected no message {waited}, "
                f"got {type(first).__qualname__}: {first!r}"
            )

    async def receive_n(
        self, count: int, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> tuple[Any, ...]:
        """Take the next ``count`` messages, whatever their types, in arrival order.

        ``timeout`` bounds the whole call.

        Raises:
            AssertionError: fewer than ``count`` arrived in time (nothing is taken; the
                error lists those that did).

        Cancellation: nothing is taken.

        Example:
            ```python
            first, second = await probe.receive_n(2)
            ```
        """
        check_timeout("timeout", timeout)
        if count < 0:
            raise ValueError(f"receive_n needs a count >= 0, got {count}")
        if not await self._inbox.wait_for(count, timeout):
            got = self._inbox.snapshot()
            raise AssertionError(
                f"probe {self.path} expected {count} messages within {timeout} s, "
                f"got {len(got)}: {list(got)!r}"
            )
        return self._inbox.take(count)

    async def watch(self, ref: Ref[Any]) -> None:
        """Record a `Terminated` event in this probe when ``ref``'s actor stops for good.

        The death watch of `Actor.watch`, for tests: ``await probe.expect(Terminated)``.

        Raises:
            ActorStopped: the probe itself has stopped.

        Cancellation: the watch may still be set up.

        Example:
            ```python
            await probe.watch(worker)
            await worker.stop()
            event = await probe.expect(actors.Terminated)
            assert event.ref == worker and event.reason is None
            ```
        """
        await inspect(self, lambda probe: probe.watch(ref))


# -- state inspection ----------------------------------------------------------------------


@overload
async def inspect(
    ref: ActorRef[Any], fn: Callable[[Any], R], *, timeout: float | None = ...
) -> R: ...
@overload
async def inspect(
    ref: ActorRef[Any], fn: Callable[[A], R], *, kind: type[A], timeout: float | None = ...
) -> R: ...
async def inspect(
    ref: ActorRef[Any],
    fn: Callable[[Any], R],
    *,
    kind: type[Actor[Any]] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> R:
    """Run ``fn(actor)`` on the actor behind ``ref`` between two of its messages; return it.

    The function runs on the actor's own loop, at its next message boundary (before the
    messages already queued, after the one being handled), so it sees consistent state. It
    must be quick and synchronous, and should return plain values or copies
    (``lambda a: list(a.items)``), never the instance or its mutable parts: those belong to
    the actor. Tests only: production code asks the actor. With ``kind``, the instance is
    checked to be one and ``fn`` is typed with it.

    Raises:
        ActorStopped: the actor has stopped, or stopped before the function could run.
        DeadlockError: an actor inspecting itself from its own handler.
        TimeoutError: the actor did not reach a message boundary within ``timeout`` (a
            handler still busy, or an actor waiting for its restart).
        TypeError: the instance is not a ``kind``.
        Exception: whatever ``fn`` raised.

    Cancellation: the function may still run; its result is dropped.

    Example:
        ```python
        balance = await testing.inspect(account, lambda a: a.balance)
        history = await testing.inspect(account, lambda a: tuple(a.history), kind=Account)
        ```
    """
    check_timeout("timeout", timeout)
    cell: Cell = cell_of(ref)
    if cell.in_handler():
        raise DeadlockError(f"actor {cell.path} inspected itself from its own handler")
    call = fn if kind is None else _checked(fn, kind, cell.path)
    done = oneshot()
    if not cell.call_between_messages(call, done):
        await anyio.lowlevel.checkpoint()
        raise ActorStopped(f"actor {cell.path} has stopped: there is no state to inspect")
    try:
        value: Any = await done.wait(timeout)
    except Expired:
        raise TimeoutError(
            f"actor {cell.path} did not reach a message boundary within {timeout} s "
            "(a handler still running, or the actor waits for its restart)"
        ) from None
    except ActorStopped:  # the runtime settles a call still queued when the actor ends
        raise ActorStopped(f"actor {cell.path} stopped before it could be inspected") from None
    result: R = value
    return result


def _checked(fn: Callable[[Any], R], kind: type[Actor[Any]], path: str) -> Callable[[Any], R]:
    def call(instance: Any) -> R:
        if not isinstance(instance, kind):
            raise TypeError(
                f"actor {path} is a {type(instance).__qualname__}, not a {kind.__qualname__}"
            )
        return fn(instance)

    return call


# -- settling and time -----------------------------------------------------------------------


def _busy(system: ActorSystem) -> list[Cell]:
    """The actors of ``system`` with something to do: a run task, or work queued for one.

    An actor is idle when its mailbox's consumer token is free (no run task, nothing
    queued, see `Mailbox`). A suspended actor keeps the token while it waits for its
    restart; it counts as idle, since only its parent (busy, then) or a backoff timer (on
    the clock) can move it on.
    """
    cells = system.cells()
    return [cell for cell in cells if cell.mailbox.scheduled and cell.phase != SUSPENDED]


def _describe(cell: Cell) -> str:
    last = cell.handling
    handling = f", last handling {last.__qualname__}" if last is not None else ""
    return f"{cell.path} ({cell.status}{handling})"


async def settle(system: ActorSystem, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until every actor of ``system`` is idle: no handler running, nothing queued.

    Then everything the actors were going to do in reaction to what happened so far has
    happened, and a test can check the outcome. Time-driven work (timers, restart backoff)
    is not waited for: move the clock with `advance`. The check is exact in a
    `deterministic_system`; with worker loops it requires two consecutive idle snapshots
    of every actor, which a chain of work that keeps hopping between loops could in theory
    slip through.

    Raises:
        TimeoutError: still busy after ``timeout`` seconds (the error names the busy actors,
            such as one parked in a handler).

    Cancellation: only the wait is abandoned.

    Example:
        ```python
        await counter.send(Add(1))
        await testing.settle(system)
        assert await testing.inspect(counter, lambda c: c.total) == 1
        ```
    """
    check_seconds("timeout", timeout)
    deadline = time.monotonic() + timeout
    looks = 0
    idle_snapshots = 0
    while True:
        busy = _busy(system)
        if not busy:
            idle_snapshots += 1
            if idle_snapshots == 2:
                return
            await anyio.lowlevel.checkpoint()
            continue
        idle_snapshots = 0
        if time.monotonic() >= deadline:
            names = ", ".join(_describe(cell) for cell in busy[:5])
            more = f" and {len(busy) - 5} more" if len(busy) > 5 else ""
            raise TimeoutError(f"actors still busy after {timeout} s: {names}{more}")
        # Polling: there is no event for "idle", and a signal sent to wait for an actor's
        # next message boundary would itself keep its run loop going. A few bare yields
        # first (enough when the actors share this loop), then short sleeps.
        looks += 1
        if looks < _YIELDS:
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.sleep(_POLL)


async def advance(system: ActorSystem, seconds: float, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Move ``system``'s `ManualClock` forward by ``seconds``, letting the actors keep up.

    First the system settles (so that a timer a handler is about to start is counted). Then
    time moves to each due time in turn, and the system settles after each: every timer
    falls due at its own time and is handled before the next one fires, as in real time.
    ``clock.advance(3.0)`` alone would fire everything due within those 3 s at once, in
    the calling thread, before any actor has run: a periodic timer would then deliver one
    tick and skip the others (it never lets ticks bunch up).

    Raises:
        TypeError: the system does not run on a `ManualClock`.
        ValueError: negative ``seconds``.
        TimeoutError: as for `settle`.

    Cancellation: time may have moved part of the way.

    Example:
        ```python
        async with testing.deterministic_system() as system:
            ticker = await system.spawn(Ticker)  # send_every(1.0, Tick()) in on_start
            await testing.advance(system, 3.0)   # three ticks, each handled at its time
        ```
    """
    if isinstance(seconds, int | float) and seconds < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"a clock cannot go back: advance({seconds})")
    check_seconds("seconds", seconds)  # finite, and a number
    check_seconds("timeout", timeout)
    clock = system.clock
    if not isinstance(clock, ManualClock):
        raise TypeError(
            "advance() needs a system built with clock=ManualClock() "
            f"(or testing.deterministic_system()), not {type(clock).__name__}"
        )
    await settle(system, timeout=timeout)
    target = clock.now() + seconds
    while (due := clock.next_due) is not None and due <= target:
        _move_to(clock, due)
        await settle(system, timeout=timeout)
    if clock.now() < target:
        clock.advance(target - clock.now())
        await settle(system, timeout=timeout)


def _move_to(clock: ManualClock, when: float) -> None:
    """Advance ``clock`` to at least ``when`` (never short of it by a rounding error)."""
    step = max(0.0, when - clock.now())
    while clock.now() + step < when:
        step = math.nextafter(step, math.inf)
    clock.advance(step)


# -- deterministic mode --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def deterministic_system(
    *,
    clock: ManualClock | None = None,
    capacity: int = DEFAULT_CAPACITY,
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    throughput: int = DEFAULT_THROUGHPUT,
    name: str = "actors",
    supervision: SupervisionStrategy | None = None,
    escalation: Escalation = "stop",
) -> AsyncGenerator[ActorSystem, None]:
    """An `ActorSystem` for reproducible tests: one loop, one thread, time by hand.

    Every actor, the root guardian included, runs on the test's own asyncio loop
    (``placement="host"``), and the system runs on a `ManualClock` (``system.clock``; pass
    your own as ``clock``). Handlers never run in parallel with the test or with each other,
    and asyncio runs ready tasks in FIFO order, so the same test interleaves the actors'
    messages the same way on every run. The watchdog is off (a test's breakpoint is not a
    blocked loop). Leaving the block shuts the system down.

    What stays non-deterministic: real-time timeouts (``ask``'s, a probe's ``expect``),
    actors pinned to a worker with ``spawn(placement=i)``, plain threads, and the relative
    order of `Terminated` events for several watchers of one actor. It needs an asyncio (or
    uvloop) host; under trio, use a normal system with `settle` and `advance`.

    Raises:
        RuntimeError: not running on an asyncio loop (a trio host).

    Example:
        ```python
        async with testing.deterministic_system() as system:
            probe = await testing.Probe.spawn(system)
            pinger = await system.spawn(lambda: Pinger(probe))
            await testing.advance(system, 1.0)
            await probe.expect(Ping)
        ```
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "deterministic_system() runs every actor on the host's asyncio loop, and this is "
            "not an asyncio (or uvloop) loop; under trio use ActorSystem(clock=ManualClock()) "
            "with testing.settle() and testing.advance()"
        ) from None
    system = ActorSystem(
        workers=1,
        capacity=capacity,
        drain_timeout=drain_timeout,
        throughput=throughput,
        use_uvloop=False,
        name=name,
        supervision=supervision,
        escalation=escalation,
        blocked_threshold=None,
        clock=clock if clock is not None else ManualClock(),
        placement="host",
    )
    async with system:
        yield system
