"""Homes for actors: worker event loops in their own threads, and the host's loop.

Each worker is one thread running one event loop (uvloop when installed, else asyncio).
Idle loops sleep in their selector: no polling, no timers of ours, so an idle worker costs
no CPU. Work reaches a loop from other threads only through ``call_soon_threadsafe``.

Actors spawned from another thread (the host application, another loop) are built on the
spawner's thread and handed to their loop afterwards (`Cell.begin_elsewhere`). While the
factory runs there, the actor's home is a `Staging`: the spawner's thread counts as its
home thread, and the loop calls that must wait for the real loop (timers started by
``__init__``) are deferred. Hand-overs that need the loop (`Home.hand_over`) are batched:
spawns in a row cost one ``call_soon_threadsafe`` per batch, not one per actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

from ._oneshot import Latch, running_worker_loop

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._cell import Cell
    from ._parking import Parking

__all__ = (
    "HOST",
    "DeferredCall",
    "Home",
    "HomeClosed",
    "HostHome",
    "Staging",
    "WorkerHome",
    "new_event_loop",
    "thread_cpu_seconds",
    "uvloop_available",
)

logger = logging.getLogger("actors")

HOST: Final = "host"
_LEFTOVER_GRACE: Final = 1.0  # seconds leftover tasks get to unwind when a worker stops


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        return False
    return True


def new_event_loop(use_uvloop: bool | None) -> asyncio.AbstractEventLoop:
    """uvloop when ``use_uvloop`` is True, or None and uvloop is installed; else asyncio."""
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class HomeClosed(RuntimeError):
    """The home's loop has closed: nothing can be handed to it any more."""


class Home:
    """An event loop that actors live on, with the id of the thread that runs it.

    ``lag`` and ``max_lag`` (seconds a callback posted from another thread waited before it
    ran) are written by the watchdog's probe, on the loop's own thread.
    """

    loop: asyncio.AbstractEventLoop
    thread_id: int
    label: str
    lag: float | None = None
    max_lag: float = 0.0
    # Set by the watchdog when a handler has held the loop past its threshold, cleared by
    # the loop itself when it turns again: senders then move idle actors away (evacuate).
    blocked: bool = False
    turns: int = 0  # fairness turns taken by actors here (home thread): backlog detection
    parking: Parking | None = None  # made by the first actor that parks here (home thread)
    # The actor whose drain (`Cell._drain`, a loop callback, not a task) runs now: written by
    # the home thread around each drain, read racily by the watchdog (a stale read only
    # moves a probe or a report to its next round, as with the current-task registry).
    draining: Cell | None = None

    def __init__(self) -> None:
        # Hand-overs from other threads waiting for the loop to take them (see hand_over).
        self._arrivals_lock = threading.Lock()
        self._arrivals: list[tuple[Callable[..., object], tuple[Any, ...]]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on this loop soon; from another thread.

        Raises:
            HomeClosed: the loop has closed.
        """
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            raise HomeClosed(f"loop {self.label} has closed") from None

    def hand_over(self, callback: Callable[..., object], *args: Any) -> None:
        """As `call_soon`, batched: callbacks handed over in a row share one wake-up.

        For spawns from another thread: many in a row cost about one
        ``call_soon_threadsafe`` (a write to the loop's self-pipe, and a wake-up of its
        thread) per batch instead of one per actor. The callbacks run in hand-over order.

        Raises:
            HomeClosed: the loop has closed (callbacks handed over meanwhile by other
                threads are dropped with this one: nothing will ever run on that loop).
        """
        with self._arrivals_lock:
            arrivals = self._arrivals
            arrivals.append((callback, args))
            # Invariant: a non-empty list has exactly one `_take_arrivals` posted, which will
            # take it whole; so only the hand-over that finds the list empty posts one.
            if len(arrivals) > 1:
                return
        try:
            self.loop.call_soon_threadsafe(self._take_arrivals)
        except RuntimeError:
            with self._arrivals_lock:
                self._arrivals = []
            raise HomeClosed(f"loop {self.label} has closed") from None

    def _take_arrivals(self) -> None:
        # On the loop's thread: the batch, whole, in hand-over order.
        with self._arrivals_lock:
            arrivals, self._arrivals = self._arrivals, []
        for callback, args in arrivals:
            try:
                callback(*args)
            except Exception:  # a bug in one hand-over must not lose the rest of the batch
                logger.exception("a hand-over to loop %s failed", self.label)


class HostHome(Home):
    """The host application's own asyncio loop (placement="host")."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.label = HOST


class DeferredCall:
    """A ``call_later`` made on a `Staging` home: scheduled on the real loop at the hand-over.

    Stands for the loop's handle meanwhile and after: `cancel` before `arm` keeps it from
    being scheduled, after it cancels the real handle. Both are called on the actor's home
    thread (the spawner's thread before the hand-over, the loop's after): the timers that
    hold it cancel loop handles only there.
    """

    __slots__ = ("_args", "_callback", "_cancelled", "_due", "_handle")

    def __init__(
        self, delay: float, callback: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        self._due = time.monotonic() + delay
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._handle: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self._cancelled = True
        if self._handle is not None:
            self._handle.cancel()

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """On ``loop``'s thread: schedule the call for the time it was due (now if past)."""
        if not self._cancelled:
            delay = max(0.0, self._due - time.monotonic())
            self._handle = loop.call_later(delay, self._callback, *self._args)


class _DeferringLoop:
    """The ``loop`` of a `Staging` home: only what an actor's construction may call.

    ``call_soon_threadsafe`` (other threads' requests to the actor) goes to the real loop
    at once; ``call_later`` (a timer started by ``__init__``) waits for the hand-over. Any
    other loop call made while an actor is built elsewhere is a bug of the runtime, and
    fails loudly (AttributeError) rather than touching a loop from a foreign thread.
    """

    __slots__ = ("_loop", "deferred")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.deferred: list[DeferredCall] | None = None

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> object:
        return self._loop.call_soon_threadsafe(callback, *args)

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> object:
        call = DeferredCall(delay, callback, args)
        if self.deferred is None:
            self.deferred = []
        self.deferred.append(call)
        return call


class Staging(Home):
    """The home of an actor while its factory runs on the spawner's thread.

    That thread is the actor's home thread until the hand-over (``thread_id`` is its id), so
    what ``__init__`` may do on the home loop works there too: `Actor.send_after` and
    ``send_every`` (their loop timers are deferred: `deferred`), `Actor.watch`, sending to
    itself. It is the cell's home only for the few microseconds its factory runs; other
    threads that look at the cell meanwhile see the real home's label, and their requests
    (``call_soon_threadsafe``) reach the real loop. It has no batch of its own: hand-overs
    go to the real home (`Home.hand_over`).
    """

    def __init__(self, home: Home) -> None:
        # No Home.__init__: a staging home never takes hand-overs (one per spawn: kept small).
        self.home = home
        self.thread_id = threading.get_ident()
        self.label = home.label
        self._deferring = _DeferringLoop(home.loop)
        self.loop = cast("asyncio.AbstractEventLoop", self._deferring)

    @property
    def deferred(self) -> list[DeferredCall] | None:
        """The timers' loop calls made meanwhile, for `DeferredCall.arm` on the real loop."""
        return self._deferring.deferred


class WorkerHome(Home):
    """A worker thread running its own event loop."""

    def __init__(self, index: int, use_uvloop: bool | None, system_name: str) -> None:
        super().__init__()
        self.index = index
        self.label = str(index)
        self.thread_id = 0
        self._use_uvloop = use_uvloop
        self._lock = threading.Lock()  # guards loop creation against an early request_stop
        self._stop_requested = False
        self._serving = False  # in `run_forever`; read and written on the loop's thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = Latch()
        self._done = Latch()
        self._thread = threading.Thread(
            target=self._main, name=thread_name(system_name, f"worker-{index}"), daemon=True
        )

    async def start(self) -> None:
        self._thread.start()
        error = await self._ready.wait()
        if error is not None:
            raise error

    def _main(self) -> None:
        try:
            loop = new_event_loop(self._use_uvloop)
        except BaseException as error:
            self._ready.set(error)
            self._done.set()
            raise
        with self._lock:
            self.loop = self._loop = loop
            self.thread_id = threading.get_ident()
            if self._stop_requested:  # abandoned while starting: run one idle iteration only
                loop.stop()
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set, None)
        try:
            with running_worker_loop(loop):  # `running_loop` without a system call
                self._serve(loop)
            _cancel_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:
            logger.exception("worker loop %s crashed", self.label)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            self._done.set()

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        # Run the loop until the system asks it to stop, and only then. Code running on the
        # loop can end `run_forever` too: `loop.stop()` called by a handler or a task, or a
        # SystemExit or KeyboardInterrupt raised by a task or callback of the user's (a
        # handler's own are failures of its actor: `Cell._as_failure`). Ending the thread
        # would strand every actor homed here, with their mailboxes, asks and the system's
        # shutdown waiting on a loop that never runs again. So the loop resumes, and says
        # so: what was queued on it runs on, in order.
        while True:
            self._serving = True
            error: BaseException | None = None
            try:
                loop.run_forever()
            except (SystemExit, KeyboardInterrupt) as raised:
                error = raised
            finally:
                self._serving = False
            with self._lock:
                if self._stop_requested:
                    return
            logger.error(
                "worker loop %s was stopped by %s from code running on it; it resumes (only "
                "ActorSystem.shutdown() stops a worker loop)",
                self.label,
                "loop.stop()" if error is None else type(error).__name__,
                exc_info=error,
            )

    def _stop_serving(self) -> None:
        # On the loop's thread, which alone writes `_serving` (in `_serve`). A stop posted
        # just as other code had stopped the loop (`_serve` then found the request under the
        # lock and returned) must not stop the clean-up's `run_until_complete` instead.
        if self._serving:
            self.loop.stop()

    def request_stop(self) -> None:
        """Ask the loop to stop; safe before it exists and after it closed. Any thread."""
        with self._lock:
            self._stop_requested = True
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(self._stop_serving)

    async def wait_stopped(self) -> None:
        if self._thread.ident is None:  # never started
            return
        await self._done.wait()
        self._thread.join()  # the thread is past its last statement: this returns at once


def thread_name(system_name: str, role: str) -> str:
    """``actors-worker-0`` for the default system, ``actors-billing-worker-0`` for another."""
    prefix = "actors" if system_name == "actors" else f"actors-{system_name}"
    return f"{prefix}-{role}"


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    # Tasks still alive here were started by user code and never awaited to the end; every
    # actor has already stopped. Cancel them and let them unwind, as asyncio.run does.
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    # Bounded: a task that swallows cancellation must not keep the worker thread alive.
    loop.run_until_complete(asyncio.wait(tasks, timeout=_LEFTOVER_GRACE))


def thread_cpu_seconds(thread_id: int) -> float | None:
    """CPU seconds the thread ``thread_id`` has used, or None where that is not known."""
    getter = getattr(time, "pthread_getcpuclockid", None)
    if getter is None or not thread_id:
        return None
    try:
        return time.clock_gettime(getter(thread_id))
    except (OSError, OverflowError):  # the thread has ended, or ids are not pthread ids here
        return None
