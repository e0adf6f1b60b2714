"""One-shot completions that any thread may settle and any kind of caller may await.

A caller of `actors` can be a task on an asyncio/uvloop loop (a worker loop or the host
application's), a trio task, or a plain thread. Whatever waits (a sender blocked on a full
mailbox, an asker, a spawner, a joiner) creates a `Oneshot` in its own context; whoever
completes the wait (usually code on another loop's thread) calls `settle` from its own
thread. The wake-up is then delivered the way that context needs:

* asyncio: the future is resolved on its own loop, directly when already on that thread,
  otherwise through ``call_soon_threadsafe`` (asyncio futures are not thread-safe);
* trio: through the run's ``TrioToken.run_sync_soon``;
* threads: through a ``threading.Event``.

The first settle wins; later ones are ignored, which is how a late reply after a timeout
or a cancellation is dropped.

A waiter that gives up (its timeout ran out, its task or cancel scope was cancelled) calls
`Oneshot.abandon`, so that the side that would settle it can skip the work: an actor
skips a queued ask whose asker is gone, and an actor that opted in cancels the handler
already running for it (`Oneshot.watch_abandon`). ``abandoned`` is written once, under a
striped lock, and read without one: a stale read sees "not abandoned", which only means
the work runs and its reply is dropped, as if the asker had given up a moment later.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

__all__ = (
    "CANCELLED",
    "EXPIRED",
    "Expired",
    "Latch",
    "Oneshot",
    "ensure_plain_thread",
    "hide_running_loop",
    "oneshot",
    "running_loop",
    "running_worker_loop",
    "show_running_loop",
    "thread_oneshot",
)

_UNSET: Final = object()

# Why a waiter gave up (`Oneshot.abandoned`); 0 while it still waits. Plain ints: the
# reader's test is one truth test.
EXPIRED: Final = 1
CANCELLED: Final = 2

# Abandonment is rare and brief: a few striped locks serve every oneshot (none is held while
# another is taken; the cancel callback runs after release).
_ABANDON_LOCKS: Final = tuple(threading.Lock() for _ in range(16))


class Expired(Exception):
    """Internal: a timed wait ran out. Callers turn it into a specific public error."""


class Oneshot:
    """A value or an error delivered once, from any thread, to one waiting context.

    Subclasses set ``abandoned`` to 0 in ``__init__``; ``_on_abandon`` stays unset until
    `watch_abandon` (one store less per ask).
    """

    __slots__ = ("_on_abandon", "abandoned")

    abandoned: int  # 0, or why the waiter gave up: EXPIRED or CANCELLED
    _on_abandon: Callable[[], object] | None

    def abandon(self, reason: int) -> None:
        """The waiter gave up (``reason``: EXPIRED or CANCELLED); the first reason stays.

        Runs the callback registered by `watch_abandon`, if any, in this thread.
        """
        with _ABANDON_LOCKS[(id(self) >> 4) % len(_ABANDON_LOCKS)]:
            if self.abandoned:
                return
            self.abandoned = reason
            callback: Callable[[], object] | None = getattr(self, "_on_abandon", None)
            self._on_abandon = None
        if callback is not None:
            callback()

    def watch_abandon(self, callback: Callable[[], object] | None) -> bool:
        """Call ``callback`` (quick, thread-safe) if the waiter gives up from now on.

        None unregisters. False, and nothing registered, when the waiter is already gone.
        """
        with _ABANDON_LOCKS[(id(self) >> 4) % len(_ABANDON_LOCKS)]:
            if self.abandoned and callback is not None:
                return False
            self._on_abandon = callback
            return True

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        """Complete the wait with ``value``, or with ``error`` raised in the waiter."""
        raise NotImplementedError

    async def wait(self, timeout: float | None = None) -> Any:
        """Wait for the value; raise the error, or `Expired` after ``timeout`` seconds.

        The timeout is taken to be a duration many waits use (the default ask timeout): it
        may share one timer with them (see `_Deadlines`).
        """
        raise NotImplementedError

    async def wait_once(self, timeout: float) -> Any:
        """`wait` for a one-off duration (what is left of an inherited deadline), which
        must not take a slot in the table of shared timers."""
        return await self.wait(timeout)

    def wait_blocking(self, timeout: float | None = None) -> Any:
        """Block this thread until settled (only for oneshots created outside an event loop)."""
        raise RuntimeError("this wait belongs to an event loop; await it instead")


def _resolve(fut: asyncio.Future[Any], value: object, error: BaseException | None) -> None:
    # Runs on the future's own loop. A done future means the waiter gave up (timeout or
    # cancellation): the late value is dropped here.
    if fut.done():
        return
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(Expired())


class AsyncioOneshot(Oneshot):
    __slots__ = ("_fut", "_loop", "_thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.abandoned = 0
        self._loop = loop
        self._fut: asyncio.Future[Any] = loop.create_future()
        self._thread = threading.get_ident()

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        if threading.get_ident() == self._thread:
            _resolve(self._fut, value, error)
            return
        with contextlib.suppress(RuntimeError):  # the waiter's loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(_resolve, self._fut, value, error)

    async def wait(self, timeout: float | None = None) -> Any:
        # No keyword-only parameter: it would keep the interpreter from specialising the
        # call, on every ask.
        if timeout is None:
            return await self._fut
        deadlines = _deadlines(self._loop, timeout)
        if deadlines is not None:
            deadlines.add(self._fut)  # no timer per wait; see _Deadlines
            return await self._fut
        timer = self._loop.call_later(timeout, _expire, self._fut)
        try:
            return await self._fut
        finally:
            timer.cancel()

    async def wait_once(self, timeout: float) -> Any:
        timer = self._loop.call_later(timeout, _expire, self._fut)
        try:
            return await self._fut
        finally:
            timer.cancel()


class _Deadlines:
    """The timeouts of one loop's waits that share one duration (an ask's 5 s default).

    Waits of equal duration expire in the order they began, so a FIFO and one timer for its
    head replace a timer armed and cancelled per wait (about half a microsecond of a
    same-loop ask). Settled waits are dropped from the head as new ones arrive and when the
    timer fires; one that settles while a slower one is ahead of it stays queued (holding
    its done future) until that one settles or expires. Loop thread only.
    """

    __slots__ = ("_duration", "_loop", "_queue", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, duration: float) -> None:
        self._loop = loop
        self._duration = duration
        self._queue: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, fut: asyncio.Future[Any]) -> None:
        queue = self._queue
        while queue and queue[0][1].done():
            queue.popleft()
        queue.append((self._loop.time() + self._duration, fut))
        if self._timer is None:
            self._timer = self._loop.call_at(queue[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        # Loops round timers to their clock's resolution: a head due within it is due now.
        due = self._loop.time() + _RESOLUTION
        queue = self._queue
        while queue and (queue[0][0] <= due or queue[0][1].done()):
            _, fut = queue.popleft()
            if not fut.done():
                fut.set_exception(Expired())
        if queue:
            self._timer = self._loop.call_at(queue[0][0], self._fire)


_RESOLUTION: Final = 0.001
_MAX_DURATIONS: Final = 8  # per loop; other durations get a timer of their own
_per_thread = threading.local()


def _deadlines(loop: asyncio.AbstractEventLoop, duration: float) -> _Deadlines | None:
    """The shared deadline queue for ``duration`` on ``loop`` (the calling thread's)."""
    # One thread-local read per wait (the loop and its table in one pair), not two.
    held: tuple[asyncio.AbstractEventLoop, dict[float, _Deadlines]] | None = getattr(
        _per_thread, "held", None
    )
    if held is None or held[0] is not loop:
        fresh: dict[float, _Deadlines] = {}
        held = _per_thread.held = (loop, fresh)
    table = held[1]
    found = table.get(duration)
    if found is None:
        if len(table) >= _MAX_DURATIONS or duration <= 0:
            return None
        found = table[duration] = _Deadlines(loop, duration)
    return found


class _LockedOneshot(Oneshot):
    """The part shared by the trio and thread oneshots: a value stored once, under a lock."""

    __slots__ = ("_error", "_lock", "_value")

    def __init__(self) -> None:
        self.abandoned = 0
        self._lock = threading.Lock()
        self._value: object = _UNSET
        self._error: BaseException | None = None

    def _store(self, value: object, error: BaseException | None) -> bool:
        """Keep the first outcome; False when one was already kept (or the wait expired)."""
        with self._lock:
            if self._value is not _UNSET:
                return False
            self._value, self._error = value, error
            return True

    def _outcome(self) -> Any:
        """The kept outcome, raised if an error; `Expired` (for good) when there is none."""
        with self._lock:
            if self._value is _UNSET:
                self._value = None  # settle() from now on is a no-op
                raise Expired()
            if self._error is not None:
                raise self._error
            return self._value


class TrioOneshot(_LockedOneshot):
    __slots__ = ("_event", "_token")

    def __init__(self) -> None:
        import trio

        super().__init__()
        self._token = trio.lowlevel.current_trio_token()
        self._event = trio.Event()

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        import trio

        if self._store(value, error):
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._event.set)

    async def wait(self, timeout: float | None = None) -> Any:
        import trio

        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            await self._event.wait()
        return self._outcome()


class ThreadOneshot(_LockedOneshot):
    __slots__ = ("_event",)

    def __init__(self) -> None:
        super().__init__()
        self._event = threading.Event()

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        if self._store(value, error):
            self._event.set()

    def wait_blocking(self, timeout: float | None = None) -> Any:
        self._event.wait(timeout)
        return self._outcome()


def _in_trio() -> bool:
    trio = sys.modules.get("trio")
    return trio is not None and bool(trio.lowlevel.in_trio_run())


def oneshot() -> Oneshot:
    """A oneshot for the calling async context (an asyncio loop or a trio run).

    Raises:
        RuntimeError: when called from a thread that runs no event loop.
    """
    loop = running_loop()
    if loop is not None:
        return AsyncioOneshot(loop)
    if _in_trio():
        return TrioOneshot()
    raise RuntimeError(
        "this call must be awaited inside an asyncio or trio event loop; "
        "from a plain thread use the blocking_* variant"
    )


def thread_oneshot() -> ThreadOneshot:
    """A oneshot for a plain thread, refusing threads that run an event loop (it would stall it)."""
    ensure_plain_thread()
    return ThreadOneshot()


def ensure_plain_thread() -> None:
    """Raise RuntimeError when the calling thread runs an event loop (blocking would stall it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if not _in_trio():
            return
    raise RuntimeError(
        "a blocking_* call would stall the event loop running in this thread; "
        "await the async variant instead"
    )


# Shared by all latches (see `Latch`): 64 stripes keep unrelated latches from contending.
_LATCH_LOCKS: Final = tuple(threading.Lock() for _ in range(64))
_LATCH_MASK: Final = len(_LATCH_LOCKS) - 1  # a power of two


class Latch:
    """A one-time event with a value, awaited by any number of waiters in any contexts.

    Every actor has one (its termination), so an unused latch is kept small: no lock of its
    own (latches share a few striped locks; none is held while another is taken, and
    callbacks and wake-ups run after the lock is released) and no list until somebody waits.
    `set` and a wait's registration, once per actor's life, take the lock without ``with``,
    which costs more (see `_mailbox`).

    A waiter on an asyncio loop without a timeout (an actor's `join`, the common case) is
    listed as the loop's future itself, not wrapped in a `Oneshot`: `set` resolves it in
    place when it runs on that loop's thread (this thread's running loop is the future's),
    else through the loop's ``call_soon_threadsafe``, as `AsyncioOneshot.settle` would. One
    object and two calls less per join.
    """

    __slots__ = ("_callbacks", "_value", "_waiters")

    def __init__(self) -> None:
        self._value: object = _UNSET
        self._waiters: list[Oneshot | asyncio.Future[Any]] | None = None
        self._callbacks: list[Callable[[Any], object]] | None = None

    @property
    def _lock(self) -> threading.Lock:
        return _LATCH_LOCKS[(id(self) >> 4) & _LATCH_MASK]

    @property
    def is_set(self) -> bool:
        return self._value is not _UNSET

    def set(self, value: object = None, running: object = _UNSET) -> None:
        """Set the value once (later calls do nothing) and wake every waiter.

        ``running``: the asyncio loop this thread runs (or None), when the caller knows it
        without asking (an actor's end, on its home loop: `Cell._conclude`); by default it
        is looked up, once, if a waiter is listed.
        """
        lock = _LATCH_LOCKS[(id(self) >> 4) & _LATCH_MASK]  # `_lock`, without its call
        lock.acquire()
        try:
            if self._value is not _UNSET:
                return
            self._value = value
            waiters, self._waiters = self._waiters, None
            callbacks, self._callbacks = self._callbacks, None
        finally:
            lock.release()
        # Callbacks first: whoever wakes from a wait may rely on their effects (for
        # example, a dead subscriber already gone from the event bus after `join`).
        if callbacks is not None:
            for callback in callbacks:
                callback(value)
        if waiters is not None:
            if running is _UNSET:
                running = running_loop()
            for waiter in waiters:
                if isinstance(waiter, Oneshot):
                    waiter.settle(value)
                elif waiter.get_loop() is running:  # `_wake_future`'s common case, inlined
                    if not waiter.done():  # else its waiter gave up: cancelled
                        waiter.set_result(value)
                else:
                    _wake_future(waiter, value)

    def when_set(self, callback: Callable[[Any], object]) -> None:
        """Call ``callback(value)`` once set: in the setting thread, or now if already set.

        The callback must be quick and thread-safe (it runs wherever `set` was called).
        """
        with self._lock:
            if self._value is _UNSET:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self._value)

    def listen(self) -> asyncio.Future[Any] | None:
        """For a waiter without a timeout on this thread's running asyncio loop: a future of
        that loop that `set` resolves with the value, listed now. None when the latch is set
        already, or when no asyncio loop runs here: then `wait` (which returns at once when
        set). A caller abandoning the future (cancelled) must `forget` it.

        A plain call, not a coroutine: `ActorRef.join` awaits the future itself, one
        coroutine less per join (docs/benchmarks.md, "The third round").
        """
        loop = running_loop()
        if loop is None:
            return None
        lock = _LATCH_LOCKS[(id(self) >> 4) & _LATCH_MASK]  # `_lock`, without its call
        lock.acquire()
        try:
            if self._value is not _UNSET:
                return None
            future = loop.create_future()  # listed itself: see the class
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(future)
        finally:
            lock.release()
        return future

    def forget(self, future: asyncio.Future[Any]) -> None:
        """A `listen` future abandoned (its waiter was cancelled): unlisted, unless `set`
        has taken it meanwhile."""
        self._forget(future)

    async def wait(self, timeout: float | None = None) -> Any:
        """Wait for the value; raise `Expired` after ``timeout`` seconds."""
        if timeout is None:
            future = self.listen()
            if future is not None:
                try:
                    return await future
                except BaseException:
                    self._forget(future)  # cancelled: still listed, unless set meanwhile
                    raise
        waiter: Oneshot | None = self._register(oneshot)
        if waiter is None:
            return self._value
        try:
            value = await waiter.wait(timeout)
        except BaseException:
            self._forget(waiter)  # expired or cancelled: still listed, unless set meanwhile
            raise
        # Settled by `set`, which took the whole list of waiters: nothing to forget.
        return value

    def wait_blocking(self, timeout: float | None = None) -> Any:
        waiter = self._register(thread_oneshot)
        if waiter is None:
            return self._value
        try:
            return waiter.wait_blocking(timeout)
        finally:
            self._forget(waiter)

    def _register(self, make: Any) -> Any:
        lock = _LATCH_LOCKS[(id(self) >> 4) & _LATCH_MASK]  # `_lock`, without its call
        lock.acquire()
        try:
            if self._value is not _UNSET:
                return None
            waiter = make()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            return waiter
        finally:
            lock.release()

    def _forget(self, waiter: Oneshot | asyncio.Future[Any]) -> None:
        with self._lock:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


_get_running_loop = asyncio._get_running_loop  # pyright: ignore[reportPrivateUsage]
_set_running_loop = asyncio._set_running_loop  # pyright: ignore[reportPrivateUsage]


class _WorkerLoop(threading.local):
    """The loop a worker thread of ours runs, while it runs it (`running_worker_loop`)."""

    loop: asyncio.AbstractEventLoop | None = None


_worker = _WorkerLoop()


def _noted_or_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    return _worker.loop or _get_running_loop()  # a loop is never false: `or` is a None test


running_loop: Final[Callable[[], asyncio.AbstractEventLoop | None]] = (
    _get_running_loop if sys.version_info >= (3, 12) else _noted_or_asyncio_loop
)
"""The asyncio loop running in this thread, or None: ``asyncio._get_running_loop()``,
without its cost on a worker thread of Python 3.11.

Python 3.11's lookup checks the process id with a ``getpid`` system call on every call
(about 270 ns here), and every ask, join and latch wake-up asks for the running loop. A
worker thread's loop is known without asking: it is noted in a thread-local for exactly as
long as it runs (`running_worker_loop`), hidden with the loop itself while a factory runs
off its actor's loop (`hide_running_loop`), and dropped in a forked child (which runs no
loop of ours). Other threads (the host application's, a plain thread) ask asyncio. From
3.12 on, asyncio's lookup has no system call (44 ns on 3.13) and is used as it is: the
note would only add a thread-local's lookup.
"""


@contextlib.contextmanager
def running_worker_loop(loop: asyncio.AbstractEventLoop) -> Generator[None]:
    """Note ``loop`` as this thread's running loop for `running_loop`, around a worker
    thread's ``loop.run_forever()``: nothing else runs Python on that thread meanwhile."""
    _worker.loop = loop
    try:
        yield
    finally:
        _worker.loop = None


# What `hide_running_loop` hid: the running loop, and the worker loop noted (or None).
_Hidden = tuple["asyncio.AbstractEventLoop | None", "asyncio.AbstractEventLoop | None"]


def hide_running_loop() -> _Hidden:
    """Hide this thread's running loop, from asyncio and from `running_loop`, while code
    that must not take it for its own runs; returns what `show_running_loop` restores."""
    worker = _worker.loop
    loop = worker if worker is not None else _get_running_loop()
    if loop is not None:
        _set_running_loop(None)
        _worker.loop = None
    return loop, worker


def show_running_loop(hidden: _Hidden) -> None:
    """Undo `hide_running_loop` with what it returned."""
    loop, worker = hidden
    if loop is not None:
        _set_running_loop(loop)
        _worker.loop = worker


def _forget_worker_loop_in_child() -> None:
    # A fork copies the forking thread's thread-local; the child runs none of our loops.
    _worker.loop = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_worker_loop_in_child)


def _wake_future(fut: asyncio.Future[Any], value: object) -> None:
    """Resolve a latch's waiting future with ``value``, from any thread (see `Latch`)."""
    loop = fut.get_loop()
    if running_loop() is loop:  # this thread runs the future's loop
        if not fut.done():  # else its waiter gave up: cancelled
            fut.set_result(value)
        return
    with contextlib.suppress(RuntimeError):  # the waiter's loop is closed: nobody to tell
        loop.call_soon_threadsafe(_resolve, fut, value, None)
