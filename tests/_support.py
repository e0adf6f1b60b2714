"""Test-only building blocks shared by the runtime tests (not part of the package).

Actors live on asyncio loops in worker threads, while a test's own task may run on asyncio,
uvloop or trio. The helpers here synchronise those worlds with events, never with sleeps:

* `Flag`: a one-time event that any thread sets and any task (asyncio, trio) or plain thread
  waits for. Actors use it to park inside a handler until the test releases them.
* `ThreadGate`: parks a worker loop's *thread* (a synchronous wait inside a handler), so that
  the test can queue work for that loop and know that none of it has run yet.

Both deliberately avoid anyio inside actors, so that a test about one behaviour does not
fail because of how anyio detects its backend on a worker loop (that has its own test).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec

import actors

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = (
    "DELIVERIES",
    "WAIT",
    "Count",
    "Countdown",
    "Down",
    "Flag",
    "Flip",
    "Hold",
    "Recorder",
    "Seen",
    "Switch",
    "ThreadGate",
    "Tick",
    "Up",
    "park",
    "wait_until",
    "waiting_senders",
)

WAIT = 10.0
"""Seconds any single wait in a test may take before it counts as a hang."""


class Flag:
    """A one-time event: set from any thread; awaited from asyncio or trio, or blocked on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._wakers: list[Callable[[], object]] = []

    def set(self) -> None:
        with self._lock:
            self._event.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            with contextlib.suppress(RuntimeError):  # the waiter's loop is gone
                wake()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until set. Cancellable."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            await self._wait_trio()
            return
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve)

        if not self._register(wake):
            return
        try:
            await future
        finally:
            self._unregister(wake)

    async def _wait_trio(self) -> None:
        import trio

        event = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake() -> None:
            token.run_sync_soon(event.set)

        if not self._register(wake):
            await trio.lowlevel.checkpoint()
            return
        try:
            await event.wait()
        finally:
            self._unregister(wake)

    def wait_blocking(self, timeout: float = WAIT) -> None:
        """Block this thread until set; fail after ``timeout`` seconds."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"flag not set within {timeout} s")

    def _register(self, wake: Callable[[], object]) -> bool:
        with self._lock:
            if self._event.is_set():
                return False
            self._wakers.append(wake)
            return True

    def _unregister(self, wake: Callable[[], object]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._wakers.remove(wake)


class Countdown:
    """Counts events from any thread; `done` is set when ``total`` of them have happened."""

    def __init__(self, total: int) -> None:
        self._lock = threading.Lock()
        self._left = total
        self.done = Flag()
        if total <= 0:
            self.done.set()

    def tick(self) -> None:
        with self._lock:
            self._left -= 1
            finished = self._left == 0
        if finished:
            self.done.set()


class ThreadGate:
    """Blocks the thread of a worker loop from inside a handler until the test opens it.

    While it is closed nothing else runs on that loop, so callbacks other threads queue for
    the loop (wake-ups, replies) pile up in order and run only after `open`.
    """

    def __init__(self) -> None:
        self.entered = Flag()
        self._opened = threading.Event()

    def block(self) -> None:
        """Call from a handler: park this thread until `open` (or fail after `WAIT`)."""
        self.entered.set()
        if not self._opened.wait(WAIT):
            raise TimeoutError("ThreadGate was never opened")

    def open(self) -> None:
        self._opened.set()


# A Flag is a synchronisation handle shared on purpose: let it travel inside messages.
actors.register_sendable(Flag)
actors.register_sendable(Countdown)


# Messages and an actor shared by several test modules; each module defines the rest locally.


class Tick(msgspec.Struct, frozen=True):
    """A plain tell; `Recorder` remembers its ``n``."""

    n: int = 0


class Count(actors.Request[int], frozen=True):
    """Ask how many Ticks the receiver handled."""


class Seen(actors.Request[tuple[int, ...]], frozen=True):
    """Ask for the ``n`` of every Tick handled, in order."""


class Hold(actors.Request[None], frozen=True):
    """Park the receiver inside its handler until ``release`` is set (after setting ``entered``)."""

    release: Flag
    entered: Flag | None = None


class Recorder(actors.Actor[Tick | Count | Seen | Hold]):
    """Records Ticks in order; can be parked in a handler with `Hold`."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def receive(self, message: Tick | Count | Seen | Hold) -> object:
        match message:
            case Tick(n):
                self.seen.append(n)
            case Count():
                return len(self.seen)
            case Seen():
                return tuple(self.seen)
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
        return None


class Flip(msgspec.Struct, frozen=True):
    """Toggle a `Switch` between `Down` and `Up`."""


class Down(actors.State["Switch", Flip]):
    async def handle(self, machine: Switch, message: Flip) -> actors.Transition:
        return machine.goto(Up())


class Up(actors.State["Switch", Flip]):
    async def handle(self, machine: Switch, message: Flip) -> actors.Transition:
        return machine.goto(Down())


class Switch(actors.StateMachine[Down | Up, Flip]):
    """A two-state machine that starts `Down`; every `Flip` moves it to the other state."""

    def initial_state(self) -> Down | Up:
        return Down()


async def send_via_send(ref: actors.ActorRef[Any], message: object) -> object:
    return await ref.send(message)


async def send_via_try_send(ref: actors.ActorRef[Any], message: object) -> object:
    return ref.try_send(message)


async def send_via_ask(ref: actors.ActorRef[Any], message: object) -> object:
    return await ref.ask(message)


async def send_via_blocking_send(ref: actors.ActorRef[Any], message: object) -> object:
    return await anyio.to_thread.run_sync(functools.partial(ref.blocking_send, message))


async def send_via_blocking_ask(ref: actors.ActorRef[Any], message: object) -> object:
    return await anyio.to_thread.run_sync(functools.partial(ref.blocking_ask, message))


DELIVERIES: dict[str, Callable[[actors.ActorRef[Any], object], Awaitable[object]]] = {
    "send": send_via_send,
    "try_send": send_via_try_send,
    "ask": send_via_ask,
    "blocking_send": send_via_blocking_send,
    "blocking_ask": send_via_blocking_ask,
}
"""Every way to hand a message to a ref; the blocking ones from a plain thread."""


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll a condition that the code under test offers no event for (use sparingly)."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110  # no event exists for these conditions
            await anyio.sleep(0.001)


def waiting_senders(ref: actors.ActorRef[Any]) -> int:
    """Senders blocked on the full mailbox of ``ref``."""
    return ref.statistics().mailbox.waiting_senders


async def park(ref: actors.ActorRef[Hold]) -> Flag:
    """Park ``ref`` in a handler; return the flag that releases it (once it is parked)."""
    release, entered = Flag(), Flag()
    await ref.send(Hold(release, entered))
    await entered.wait()
    return release
