"""`ActorSystem`: worker loops, placement, spawning and orderly shutdown."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import anyio

from ._cell import Cell
from ._errors import DuplicateName, SystemNotRunning
from ._oneshot import Expired, Latch, oneshot
from ._runtime import HOST, Home, HostHome, WorkerHome

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._actor import Actor
    from ._ref import ActorRef

__all__ = ("DEFAULT_CAPACITY", "DEFAULT_DRAIN_TIMEOUT", "DEFAULT_THROUGHPUT", "ActorSystem")

logger = logging.getLogger("actors")

M = TypeVar("M")

DEFAULT_CAPACITY: Final = 1000
"""Default mailbox capacity: messages waiting, not counting the one being handled."""

DEFAULT_DRAIN_TIMEOUT: Final = 5.0
"""Seconds each actor gets at shutdown to handle what its mailbox accepted."""

DEFAULT_THROUGHPUT: Final = 256
"""Messages an actor handles before yielding its loop to the other actors on it."""

_KILL_GRACE: Final = 1.0  # seconds a killed actor gets to run on_stop

Placement = int | Literal["host"] | None

_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"


class ActorSystem:
    """A set of worker event loops, each in its own thread, that actors are spawned onto.

    Use it as an async context manager inside any asyncio, uvloop or trio application:
    leaving the block stops every actor gracefully and joins the worker threads.

    Args:
        workers: number of worker loops; None means the CPUs this process may use
            (``os.process_cpu_count()``, or the affinity mask on Python 3.11/3.12).
        capacity: default mailbox capacity for `spawn`.
        drain_timeout: seconds each actor gets at shutdown to drain its mailbox before it
            is cancelled.
        throughput: messages an actor handles in a row before yielding its loop.
        use_uvloop: True requires uvloop, False never uses it, None uses it when installed.
        name: a label for logs and thread names.

    Placement: actors are spread round-robin over the worker loops in spawn order, so N
    actors on N workers use every worker. ``spawn(placement=i)`` pins to worker ``i``;
    ``placement="host"`` runs the actor on the host application's own asyncio loop.

    Example:
        ```python
        async with ActorSystem(workers=2) as system:
            greeter = await system.spawn(Greeter, name="greeter")
            await greeter.send(Greet("ada"))
        ```
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        capacity: int = DEFAULT_CAPACITY,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        throughput: int = DEFAULT_THROUGHPUT,
        use_uvloop: bool | None = None,
        name: str = "actors",
    ) -> None:
        count = workers if workers is not None else _usable_cpus()
        if count < 1:
            raise ValueError(f"an ActorSystem needs at least one worker, got workers={workers}")
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        if throughput < 1:
            raise ValueError(f"throughput must be at least 1, got {throughput}")
        self.name = name
        self.capacity = capacity
        self.drain_timeout = drain_timeout
        self.throughput = throughput
        self._workers = [WorkerHome(i, use_uvloop, name) for i in range(count)]
        self._host: HostHome | None = None
        self._lock = threading.Lock()
        self._state = _NEW
        self._stopped = Latch()  # set once the system has fully shut down
        self._cells: dict[Cell, None] = {}  # live actors, in spawn order
        self._names: dict[str, Cell] = {}
        self._round_robin = itertools.count()
        self._serial = itertools.count(1)

    def __repr__(self) -> str:
        return (
            f"<ActorSystem {self.name} {self._state} "
            f"workers={len(self._workers)} actors={len(self._cells)}>"
        )

    @property
    def workers(self) -> int:
        """The number of worker loops."""
        return len(self._workers)

    async def __aenter__(self) -> ActorSystem:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: a cancelled host (Ctrl-C, a timeout) still gets an orderly shutdown.
        with anyio.CancelScope(shield=True):
            await self.shutdown()

    async def start(self) -> None:
        """Start the worker loops. Called by ``async with``; idempotent only before shutdown.

        Raises:
            SystemNotRunning: the system was already shut down.

        Cancellation: the worker threads already started are stopped and joined (shielded),
        and the system ends up shut down.
        """
        with self._lock:
            if self._state != _NEW:
                if self._state == _RUNNING:
                    return
                raise SystemNotRunning(f"actor system {self.name} was shut down; create a new one")
            self._state = _RUNNING
        try:
            self._host = HostHome(asyncio.get_running_loop())
        except RuntimeError:  # a trio host: actors cannot live on its loop
            self._host = None
        try:
            for worker in self._workers:
                await worker.start()
        except BaseException:
            # Failed or cancelled half-way: take down every thread already started, shielded
            # so that a cancelled host cannot leave one behind.
            with anyio.CancelScope(shield=True):
                await self._stop_workers()
            with self._lock:
                self._mark_stopped_locked()
            raise

    async def spawn(
        self,
        factory: Callable[[], Actor[M]],
        *,
        name: str | None = None,
        capacity: int | None = None,
        placement: Placement = None,
    ) -> ActorRef[M]:
        """Create an actor from ``factory`` on a loop, run its ``on_start``, return its ref.

        ``factory`` is any zero-argument callable returning a new actor: the class itself,
        a lambda, a ``functools.partial``. It is called on the actor's home loop.

        Args:
            factory: makes the actor instance.
            name: unique among top-level actors; default ``<ClassName>-<n>`` when the
                factory is a class, ``actor-<n>`` otherwise (``n`` counts spawns).
            capacity: mailbox capacity (default: the system's, `DEFAULT_CAPACITY`).
            placement: None (round-robin), a worker index, or ``"host"``.

        Raises:
            SystemNotRunning: the system is not running.
            DuplicateName: ``name`` is taken.
            ValueError: a bad capacity or placement.
            Exception: whatever the factory or ``on_start`` raised.

        Cancellation: the actor may already be starting; it is then stopped again.

        Example:
            ```python
            greeter = await system.spawn(Greeter, name="greeter", capacity=64)
            pinned = await system.spawn(lambda: Greeter("hi"), placement=1)
            local = await system.spawn(Greeter, placement="host")  # on the app's own loop
            ```
        """
        home = self._place(placement)
        size = self.capacity if capacity is None else capacity
        if size < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {size}")
        cell = self._register(factory, name, home, size)
        started = oneshot()
        try:
            if threading.get_ident() == home.thread_id:
                cell.begin(started)
            else:
                home.loop.call_soon_threadsafe(cell.begin, started)
        except RuntimeError:
            self._forget(cell)
            raise SystemNotRunning(f"actor system {self.name} is shutting down") from None
        try:
            await started.wait()
        except BaseException:
            cell.request_stop()
            raise
        return cell.ref

    async def shutdown(self) -> None:
        """Stop every actor gracefully, then the worker loops; join their threads.

        Actors stop one by one in reverse spawn order (the last spawned first): each
        handles what its mailbox accepted, within ``drain_timeout``, then runs ``on_stop``.
        An actor still busy after its drain timeout is cancelled. Idempotent: a second call,
        concurrent or later, returns once the system has stopped.

        Cancellation: the shutdown itself runs shielded and always completes; a cancelled
        caller only stops waiting for it.

        Example:
            ```python
            system = ActorSystem(drain_timeout=2.0)
            await system.start()
            try:
                ...
            finally:
                await system.shutdown()
            ```
        """
        with self._lock:
            state = self._state
            if state == _NEW:
                self._mark_stopped_locked()
            elif state == _RUNNING:
                self._state = _STOPPING
            cells = list(self._cells)
        if state != _RUNNING:
            await self._stopped.wait()  # someone else is (or was) shutting it down
            return
        with anyio.CancelScope(shield=True):
            for cell in reversed(cells):
                await self._stop_cell(cell)
            await self._stop_workers()
            with self._lock:
                self._mark_stopped_locked()

    async def _stop_workers(self) -> None:
        for worker in self._workers:  # all at once, then wait: they stop in parallel
            worker.request_stop()
        for worker in self._workers:
            await worker.wait_stopped()

    def _mark_stopped_locked(self) -> None:
        self._state = _STOPPED
        self._stopped.set()

    async def _stop_cell(self, cell: Cell) -> None:
        cell.request_stop()
        try:
            await cell.terminated.wait(self.drain_timeout)
            return
        except Expired:
            logger.warning(
                "actor %s did not stop within its drain timeout (%s s); cancelling it",
                cell.path,
                self.drain_timeout,
            )
        cell.kill()
        try:
            await cell.terminated.wait(_KILL_GRACE)
        except Expired:
            logger.error("actor %s ignored cancellation; abandoning it", cell.path)

    def _place(self, placement: Placement) -> Home:
        if self._state != _RUNNING:
            raise SystemNotRunning(f"actor system {self.name} is {self._state}; cannot spawn")
        if placement is None:
            with self._lock:  # itertools.count is not atomic on free-threaded builds
                index = next(self._round_robin)
            return self._workers[index % len(self._workers)]
        if placement == HOST:
            if self._host is None:
                raise ValueError(
                    'placement="host" needs an asyncio host loop; this system was started from trio'
                )
            return self._host
        if isinstance(placement, int) and not isinstance(placement, bool):  # pyright: ignore[reportUnnecessaryIsInstance]
            if 0 <= placement < len(self._workers):
                return self._workers[placement]
            raise ValueError(
                f"placement={placement} but this system has workers 0..{len(self._workers) - 1}"
            )
        raise ValueError(f'placement must be None, a worker index or "host", got {placement!r}')

    def _register(
        self, factory: Callable[[], Actor[Any]], name: str | None, home: Home, capacity: int
    ) -> Cell:
        with self._lock:
            if self._state != _RUNNING:
                raise SystemNotRunning(f"actor system {self.name} is {self._state}; cannot spawn")
            if name is None:
                base = factory.__name__ if isinstance(factory, type) else "actor"
                name = f"{base}-{next(self._serial)}"
            elif not name or "/" in name:
                raise ValueError(
                    f"an actor name must be non-empty and contain no '/', got {name!r}"
                )
            if name in self._names:
                raise DuplicateName(
                    f"an actor named {name!r} already exists in actor system {self.name}"
                )
            cell = Cell(
                self,
                factory,
                name=name,
                path=f"/user/{name}",
                home=home,
                capacity=capacity,
                throughput=self.throughput,
            )
            self._names[name] = cell
            self._cells[cell] = None
            return cell

    def _forget(self, cell: Cell) -> None:
        # Called by a cell when it has ended, from its home thread.
        with self._lock:
            self._cells.pop(cell, None)
            if self._names.get(cell.name) is cell:
                del self._names[cell.name]


def _usable_cpus() -> int:
    """CPUs this process may run on (affinity and container limits), not the machine's total."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return counter() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
