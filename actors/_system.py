"""`ActorSystem`: worker loops, placement, spawning and orderly shutdown.

The supervision tree itself (registration, children, watchers, lookups by path) is the
system's `Tree` (``system.tree``, `actors._tree`); the system's own few fields (its run state,
failures, the round-robin counter) are guarded by the tree's lock, as the tree's docstring
explains.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast, overload

import anyio

from ._actor import Actor, message_type
from ._cell import Cell
from ._checkpoint import checkpoint
from ._clock import Clock
from ._deadletters import DeadLetters
from ._errors import SystemNotRunning
from ._events import EventBus
from ._metrics import SystemMetrics, collect
from ._oneshot import Latch, Oneshot, oneshot
from ._placement import Placer
from ._pool import Pool, Routing, spawn_pool
from ._ref import COOPERATIVE_BUDGET
from ._runtime import HOST, Home, HomeClosed, HostHome, WorkerHome, thread_name
from ._scope import Scope
from ._strategy import OneForOne, Restart, SupervisionStrategy
from ._tree import Tree
from ._validation import check_count, check_flag, check_name, check_seconds
from ._watchdog import DEFAULT_BLOCKED_THRESHOLD, Watchdog

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from opentelemetry.trace import TracerProvider

    from ._ref import ActorRef, Ref
    from ._seam import ClusterBackend

__all__ = ("DEFAULT_CAPACITY", "DEFAULT_DRAIN_TIMEOUT", "DEFAULT_THROUGHPUT", "ActorSystem")

logger = logging.getLogger("actors")

M = TypeVar("M")

# The homes a child may share with its parent (`_place`'s locality; not a `Staging`).
_PLACED: Final = (WorkerHome, HostHome)

DEFAULT_CAPACITY: Final = 1000
"""Default mailbox capacity: messages waiting, not counting the one being handled."""

DEFAULT_DRAIN_TIMEOUT: Final = 5.0
"""Seconds each actor gets at shutdown to handle what its mailbox accepted."""

DEFAULT_THROUGHPUT: Final = 256
"""Messages an actor handles before yielding its loop to the other actors on it."""

Placement = int | Literal["host"] | None
Escalation = Literal["stop", "shutdown"]

_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"


class _Nothing:
    """No message is of this type: the root guardian accepts none."""


class _Guardian(Actor[_Nothing]):
    """The root of the tree (``/user``): supervises the top-level actors, handles nothing."""

    def __init__(self, strategy: SupervisionStrategy) -> None:
        self.supervision = strategy


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
        supervision: the strategy for top-level actors (default ``OneForOne()``).
        escalation: what happens when a top-level actor fails for good (not restarted,
            or its restart intensity exceeded): ``"stop"`` (the default) leaves it stopped,
            logs the error with its chain of causes and records it in `failures`;
            ``"shutdown"`` records it and shuts the whole system down.
        blocked_threshold: seconds a handler may hold its worker loop without yielding
            before the watchdog logs a warning; None turns the watchdog off.
        clock: the time source for timers, restart intensity and backoff (default `Clock`;
            tests inject a `ManualClock` to move time by hand).
        placement: where `spawn` puts actors by default: ``"spread"`` (round-robin over
            the worker loops) or ``"host"`` (every actor, the root guardian included, on
            the host's asyncio loop: one thread, deterministic order, for tests).
        handler_timing: time every handler for the latency histograms of `metrics`
            (two clock reads per message); counters and per-burst times are always on.
        cluster: a transport that joins this system to others (`actors.cluster.Nats`):
            ``spawn(public=True)`` and `lookup_remote` work through it.
        tracing: OpenTelemetry traces (needs ``actors[otel]``): True uses the global tracer
            provider, or pass a ``TracerProvider``. Each handled message gets a span whose
            parent is the span current where it was sent; an ask gets a client span at the
            caller. False (the default) runs without any of it, at no cost.

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

    _spawns = 0  # spawns since the last cooperative yield (see `_spawn_turn`)

    def __init__(
        self,
        *,
        workers: int | None = None,
        capacity: int = DEFAULT_CAPACITY,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        throughput: int = DEFAULT_THROUGHPUT,
        use_uvloop: bool | None = None,
        name: str = "actors",
        supervision: SupervisionStrategy | None = None,
        escalation: Escalation = "stop",
        blocked_threshold: float | None = DEFAULT_BLOCKED_THRESHOLD,
        clock: Clock | None = None,
        placement: Literal["spread", "host"] = "spread",
        handler_timing: bool = False,
        cluster: ClusterBackend | None = None,
        tracing: bool | TracerProvider = False,
    ) -> None:
        # Every setting is checked here, before any thread starts: a bad one found later
        # would fail on a worker loop (a drain timeout at shutdown) where nobody sees it.
        count = _usable_cpus() if workers is None else check_count("workers", workers)
        check_count("capacity", capacity)
        drain_timeout = check_seconds("drain_timeout", drain_timeout)
        check_count("throughput", throughput)
        check_flag("use_uvloop", use_uvloop, optional=True)
        check_name("name", name)
        if supervision is not None and not isinstance(supervision, SupervisionStrategy):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"supervision must be OneForOne, OneForAll or RestForOne, got {supervision!r}"
            )
        if escalation not in ("stop", "shutdown"):
            raise ValueError(f'escalation must be "stop" or "shutdown", got {escalation!r}')
        if blocked_threshold is not None:
            blocked_threshold = check_seconds("blocked_threshold", blocked_threshold, positive=True)
        if clock is not None and not isinstance(clock, Clock):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"clock must be an actors.Clock (or ManualClock), got {clock!r}")
        if placement not in ("spread", "host"):
            raise ValueError(f'placement must be "spread" or "host", got {placement!r}')
        check_flag("handler_timing", handler_timing)
        self.tracer: object | None = None
        """The OpenTelemetry tracer of a tracing system (see `actors._tracing`), else None."""
        self.cell_type: type[Cell] = Cell
        """The class of this system's cells: a tracing system's wrap messages in spans."""
        if tracing is not False:
            self.tracer, self.cell_type = _tracing_parts(tracing)
        self.name = name
        self.capacity = capacity
        self.drain_timeout = drain_timeout
        self.throughput = throughput
        self.supervision = supervision if supervision is not None else OneForOne()
        self.escalation: Escalation = escalation
        self.clock = clock if clock is not None else Clock()
        self._default_placement: Placement = HOST if placement == "host" else None
        self.handler_timing = handler_timing
        self.cluster = cluster
        self.events = EventBus(self)
        """The typed event bus (publish/subscribe), see `EventBus`."""
        self.dead_letters = DeadLetters()
        """Messages accepted by a mailbox but never handled: a count and subscribers."""
        self._workers = [WorkerHome(i, use_uvloop, name) for i in range(count)]
        # Each worker loop by its thread's id, filled at start: where a spawn from a handler
        # goes by default (`_start_spawn`, without `_place`'s calls).
        self._worker_here: dict[int, WorkerHome] = {}
        self.placer = Placer(self._workers, lambda: self.cells()[1:])
        """Where actors move to follow their traffic (see `actors._placement`)."""
        self._host: HostHome | None = None
        self.tree = Tree()
        """The supervision tree (see `actors._tree`); its lock also guards the fields below
        marked so."""
        self._metrics_lock = threading.Lock()
        self._state = _NEW  # the tree's lock; written with `tree.closed` (`_set_state_locked`)
        self._stopped = Latch()  # set once the system has fully shut down
        self._failures: list[BaseException] = []  # the tree's lock
        self._failed = Latch()  # set with the first failure of a top-level actor
        self._escalation: threading.Thread | None = None  # an escalated shutdown; the tree's lock
        self._round_robin = itertools.count()  # the tree's lock
        self._watchdog = (
            None
            if blocked_threshold is None
            else Watchdog(
                self._workers,
                blocked_threshold,
                self._describe_task,
                thread_name(name, "watchdog"),
                on_blocked=self.placer.evacuate_blocked,
                fields=self._task_fields,
            )
        )

    def __repr__(self) -> str:
        return (
            f"<ActorSystem {self.name} {self._state} "
            f"workers={len(self._workers)} actors={max(0, len(self.cells()) - 1)}>"
        )

    @property
    def guardian(self) -> Cell | None:
        """Internal: the root of the tree, parent of the top-level actors."""
        return self.tree.root

    @property
    def failures(self) -> list[BaseException]:
        """Failures of top-level actors that were not (or no longer) restarted, oldest first.

        Each is the error with its whole chain of causes (``__cause__``): a
        `SupervisionError` for a restart intensity exceeded at some level of the tree.

        Example:
            ```python
            for error in system.failures:
                log.error("top-level actor failed for good: %r", error)
            ```
        """
        with self.tree.lock:
            return list(self._failures)

    async def wait_failure(self) -> BaseException:
        """Wait until a top-level actor fails for good; return the first such failure.

        Cancellation: only the wait is abandoned.

        Example:
            ```python
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_http)
                failure = await system.wait_failure()
                log.critical("giving up: %r", failure)
                tg.cancel_scope.cancel()
            ```
        """
        failure: BaseException = await self._failed.wait()
        return failure

    def metrics(self) -> SystemMetrics:
        """A snapshot of every live actor's counters and every loop's gauges.

        Cheap enough to call every few seconds (it walks the actors once); the numbers are
        maintained on the hot path without locks (see `ActorMetrics`).

        Example:
            ```python
            snapshot = system.metrics()
            for actor in snapshot.actors:
                print(actor.path, actor.processed, actor.mailbox_high_water)
            ```
        """
        cells = self.cells()[1:]  # not the guardian
        homes: list[Home] = list(self._workers)
        host = self._host
        if host is not None and any(cell.home is host for cell in cells):
            homes.append(host)
        with self._metrics_lock:  # snapshots write the cells' monotonic floors
            return collect(cells, homes, self.dead_letters.count, self.placer.statistics())

    def lookup(self, path: str) -> ActorRef[Any] | None:
        """The live actor at ``path`` (such as ``/user/bank/account-7``), or None.

        Example:
            ```python
            account = system.lookup("/user/bank/account-7")
            if account is not None:
                await account.send(Deposit(5))
            ```
        """
        cell = self.tree.find(path)
        return cell.ref if cell is not None else None

    def cells(self) -> list[Cell]:
        """Internal: every live actor, the root guardian first (`Tree.cells`)."""
        return self.tree.cells()

    @property
    def running(self) -> bool:
        """True between `start` and the beginning of `shutdown`."""
        return self._state == _RUNNING

    def next_serial(self) -> int:
        """Internal: the next number for a generated name (actors, pools, probes)."""
        return self.tree.next_serial()

    @property
    def default_placement(self) -> Placement:
        """Internal: where top-level actors go by default (``HOST`` or None: worker loops)."""
        return self._default_placement

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
        with self.tree.lock:
            if self._state != _NEW:
                if self._state == _RUNNING:
                    return
                raise SystemNotRunning(f"actor system {self.name} was shut down; create a new one")
            self._set_state_locked(_RUNNING)
        try:
            self._host = HostHome(asyncio.get_running_loop())
        except RuntimeError:  # a trio host: actors cannot live on its loop
            self._host = None
        try:
            for worker in self._workers:
                await worker.start()
            self.placer.started()
            self._worker_here = {worker.thread_id: worker for worker in self._workers}
            await self._start_guardian()
            if self.cluster is not None:
                await self.cluster.attach(self)
        except BaseException:
            # Failed or cancelled half-way: take down every thread already started, shielded
            # so that a cancelled host cannot leave one behind.
            with anyio.CancelScope(shield=True):
                guardian = self.tree.root
                if guardian is not None:
                    guardian.stop_for_good()
                    await guardian.terminated.wait()
                await self._stop_workers()
            with self.tree.lock:
                self._mark_stopped_locked()
            raise
        if self._watchdog is not None:
            self._watchdog.start()

    async def _start_guardian(self) -> None:
        strategy = self.supervision
        on_host = self._default_placement == HOST and self._host is not None
        home: Home = self._host if on_host and self._host is not None else self._workers[0]
        guardian = self.cell_type(
            self,
            lambda: _Guardian(strategy),
            name="user",
            path="/user",
            home=home,
            capacity=1,
            throughput=self.throughput,
            pinned=True,
        )
        self.tree.plant(guardian)
        started = oneshot()
        if threading.get_ident() == home.thread_id:
            guardian.begin(started)
        else:
            home.loop.call_soon_threadsafe(guardian.begin, started)
        await started.wait()

    async def spawn(
        self,
        factory: Callable[[], Actor[M]],
        *,
        name: str | None = None,
        capacity: int | None = None,
        placement: Placement = None,
        restart: Restart = Restart.PERMANENT,
        public: bool = False,
        durable: bool = False,
    ) -> ActorRef[M]:
        """Create a top-level actor from ``factory``, run its ``on_start``, return its ref.

        ``factory`` is any zero-argument callable returning a new actor: the class itself,
        a lambda, a ``functools.partial``. It is called here, on the spawner's thread (in a
        fresh `contextvars.Context`, the actor's own), and again on the actor's home loop
        for every restart; ``on_start`` and the handlers always run on the home loop. Top-level
        actors are children of the root guardian (``/user``), which supervises them with
        the system's ``supervision`` strategy.

        Returns once the actor can receive: after its ``on_start`` if it has one; without
        one, at once, without a round trip to the home loop (an actor with nothing to do
        costs that loop nothing yet). Every 128th spawn (`COOPERATIVE_BUDGET`) yields to the
        event loop first, so that a loop of spawns does not monopolise it.

        Args:
            factory: makes the actor instance.
            name: unique among its siblings; default ``<ClassName>-<n>`` when the
                factory is a class, ``actor-<n>`` otherwise (``n`` counts spawns).
            capacity: mailbox capacity (default: the system's, `DEFAULT_CAPACITY`).
            placement: None (round-robin), a worker index, or ``"host"``.
            restart: when the actor is restarted (`Restart`; default permanent).
            public: also make it reachable by ``name`` from every node of the system's
                cluster (`lookup_remote`) before this returns; needs ``cluster=`` and a name.
            durable: public, and its messages from other nodes go through a durable,
                at-least-once mailbox of the cluster (JetStream for `actors.cluster.Nats`):
                see the cluster docs. Implies ``public``.

        Raises:
            SystemNotRunning: the system is not running.
            DuplicateName: ``name`` is taken.
            ValueError: a bad capacity or placement.
            Exception: whatever the factory or ``on_start`` raised; then no actor is left
                registered (the name is free again).
            RuntimeError: the factory raised KeyboardInterrupt or SystemExit (its
                ``__cause__``): a failure of this actor only, never the spawner's.

        Cancellation: cancelled at the cooperative yield, nothing was spawned. Cancelled
        while waiting for ``on_start``, the actor is stopped again.

        Example:
            ```python
            greeter = await system.spawn(Greeter, name="greeter", capacity=64)
            pinned = await system.spawn(lambda: Greeter("hi"), placement=1)
            local = await system.spawn(Greeter, placement="host")  # on the app's own loop
            ```
        """
        guardian = self.tree.root
        if guardian is None or self._state != _RUNNING:
            raise SystemNotRunning(f"actor system {self.name} is {self._state}; cannot spawn")
        cluster = self.cluster
        public = public or durable
        if public and (cluster is None or name is None):
            flag = "durable" if durable else "public"
            raise ValueError(f"spawn({flag}=True) needs a name and an ActorSystem(cluster=...)")
        spawns = self._spawns + 1  # `_spawn_turn`, inlined: a call less per spawn
        if spawns < COOPERATIVE_BUDGET:
            self._spawns = spawns
        else:
            self._spawns = 0
            await checkpoint()  # before anything is registered: cancelled here, nothing spawned
        # Not through _spawn: one coroutine less on the common path (an actor built in place).
        cell, started = self._start_spawn(guardian, factory, name, capacity, placement, restart)
        if started is not None:
            await self._started(cell, started)
        # The ref it was made with, without the property's call; None once it has ended
        # (meanwhile, or already on its own loop): then `ref` makes a new, equal one.
        # Not `cast`: a call of its own at run time. A new cell's `_ref` is its `ActorRef`.
        made: Any = cell._ref  # pyright: ignore[reportPrivateUsage]
        ref: ActorRef[M] = made if made is not None else cell.ref
        if public and cluster is not None and name is not None:
            try:
                await cluster.register(name, ref, durable=durable)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await ref.stop()
                raise
        return ref

    @overload
    async def lookup_remote(
        self, name: str, accepts: type[Actor[M]], *, timeout: float = 5.0
    ) -> Ref[M]: ...

    @overload
    async def lookup_remote(
        self, name: str, accepts: type[M], *, timeout: float = 5.0
    ) -> Ref[M]: ...

    @overload
    async def lookup_remote(
        self, name: str, accepts: Any = Any, *, timeout: float = 5.0
    ) -> Ref[Any]: ...

    async def lookup_remote(
        self, name: str, accepts: Any = Any, *, timeout: float = 5.0
    ) -> Ref[Any]:
        """A ref to the public actor ``name``, on whichever node of the cluster spawned it.

        ``accepts`` is the message type the ref is for (``AccountMsg``), or the actor class
        that was spawned under the name (``Account``: its message type is taken); the remote
        actor must accept every class in it. Waits up to ``timeout`` seconds for the name to
        appear.

        Raises:
            ValueError: this system has no cluster.
            ActorNotFound: no node has a public actor of that name within ``timeout``.
            MessageTypeError: the remote actor does not accept a type of ``accepts``.

        Cancellation: only the wait is abandoned.

        Example:
            ```python
            account = await system.lookup_remote("account-7", AccountMsg)
            await account.send(Deposit(5))
            same = await system.lookup_remote("account-7", Account)  # Ref[AccountMsg]
            ```
        """
        cluster = self.cluster
        if cluster is None:
            raise ValueError(f"actor system {self.name} has no cluster; pass cluster=...")
        if isinstance(accepts, type) and issubclass(accepts, Actor):
            # The actor class, not a message class (an actor is never a message). Narrowed
            # from Any, its type argument is unknown: what matters is the class's own.
            accepts = message_type(accepts)  # pyright: ignore[reportUnknownArgumentType]
        check_seconds("timeout", timeout)
        found: Ref[Any] = await cluster.lookup(name, accepts, timeout)
        return found

    async def spawn_child(
        self,
        parent: Cell,
        factory: Callable[[], Actor[M]],
        *,
        name: str | None,
        capacity: int | None,
        placement: Placement,
        restart: Restart,
    ) -> ActorRef[M]:
        """Internal: spawn a child of ``parent`` (`Actor.spawn`, scopes); checked already.

        Cancellation: as `spawn`: cancelled at the cooperative yield, nothing was spawned;
        cancelled while waiting for ``on_start``, the child is stopped again.
        """
        if self._spawn_turn():
            await checkpoint()
        cell, started = self._start_spawn(parent, factory, name, capacity, placement, restart)
        if started is not None:
            await self._started(cell, started)
        return cell.ref

    def spawn_child_soon(
        self,
        parent: Cell,
        factory: Callable[[], Actor[M]],
        *,
        name: str | None,
        capacity: int | None,
        placement: Placement,
        restart: Restart,
    ) -> ActorRef[M]:
        """Internal: `spawn_child` without waiting (`Actor.spawn_soon`).

        No cooperative yield and no wait for ``on_start``: a start-up that fails is logged
        by the child (`Cell.begin_here` with ``observed=False``), as nobody waits for it.
        """
        cell, _ = self._start_spawn(
            parent, factory, name, capacity, placement, restart, observed=False
        )
        made: Any = cell._ref  # pyright: ignore[reportPrivateUsage]  # as in `spawn`
        ref: ActorRef[M] = made if made is not None else cell.ref
        return ref

    def _spawn_turn(self) -> bool:
        """True for every `COOPERATIVE_BUDGET`-th spawn: the spawner yields to its loop first.

        A spawn that needs no round trip (an actor without ``on_start``) never waits, so a
        loop of them would hold its event loop for as long as it runs; as `ActorRef.send`,
        it yields now and then. The count is shared by every spawner, without a lock: a lost
        update under a race only shifts a yield.
        """
        spawns = self._spawns + 1
        if spawns < COOPERATIVE_BUDGET:
            self._spawns = spawns
            return False
        self._spawns = 0
        return True

    def _start_spawn(
        self,
        parent: Cell,
        factory: Callable[[], Actor[M]],
        name: str | None,
        capacity: int | None,
        placement: Placement,
        restart: Restart,
        *,
        observed: bool = True,
    ) -> tuple[Cell, Oneshot | None]:
        """Register and start a cell; the oneshot to wait on, or None if it already runs."""
        if not isinstance(restart, Restart):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"restart must be a Restart, got {restart!r}")
        here = threading.get_ident()
        home: Home | None = None
        if placement is None and self._state == _RUNNING:
            # `_place`'s common cases, inlined: a child starts beside its parent; a
            # top-level actor spawned from a handler starts on that handler's loop. From
            # elsewhere (None here), `_place` decides.
            if parent is not self.tree.root:
                home = parent.home
                if not isinstance(home, _PLACED):
                    home = None
            elif self._default_placement is None:
                home = self._worker_here.get(here)
        if home is None:
            home = self._place(placement, parent)
        if capacity is None:
            size = self.capacity
        elif type(capacity) is int and capacity >= 1:  # `check_count`'s success, inlined
            size = capacity
        else:
            size = check_count("capacity", capacity)
        if name is not None:
            check_name("name", name)
        # Pinned: placed on purpose (placement=, or the host's loop): never moved.
        pinned = placement is not None or not isinstance(home, WorkerHome)
        cell = self.tree.register(parent, factory, name, home, size, restart, pinned)
        if here == home.thread_id:
            # On the actor's own loop: build it now; no task at all without an on_start.
            return cell, cell.begin_here(observed)
        # From another thread (the host, another loop): build it here as well, and hand it
        # over to its loop without waiting unless it has an on_start to run there.
        try:
            return cell, cell.begin_elsewhere(observed=observed)
        except HomeClosed:
            self.tree.unregister(cell)
            raise SystemNotRunning(f"actor system {self.name} is shutting down") from None

    @staticmethod
    async def _started(cell: Cell, started: Oneshot) -> None:
        try:
            await started.wait()
        except BaseException:
            cell.stop_for_good()
            raise

    async def spawn_pool(
        self,
        factory: Callable[[], Actor[M]],
        *,
        size: int,
        routing: Routing = "round-robin",
        key: Callable[[Any], object] | None = None,
        supervision: SupervisionStrategy | None = None,
        name: str | None = None,
        capacity: int | None = None,
    ) -> Pool[M]:
        """Start a pool of ``size`` workers made by ``factory``; see `Pool`.

        Returns once every worker has started. The workers are spread over the worker loops
        and supervised by the pool; the returned `Pool` routes ``send``, ``try_send`` and
        ``ask`` to them and fans work out with ``map``.

        Args:
            factory: makes one worker, as for `spawn` (called again at each restart).
            size: the number of workers, at least 1 (`Pool.resize` changes it).
            routing: how each message finds its worker (`Routing`).
            key: for ``"consistent-hash"`` routing only, and required there: a function of
                the message whose (hashable) value picks the worker.
            supervision: a `OneForOne` for the workers; default
                ``OneForOne(max_restarts=size, within=5.0)``, one crash per worker.
            name: the pool's name (default ``pool-<n>``); workers are ``<name>/worker-<i>``.
            capacity: each worker's mailbox capacity; with pull routing, also the shared
                queue's (default: the system's).

        Raises:
            ValueError: ``size`` below 1, an unknown routing, ``key`` missing for (or given
                without) consistent-hash, a capacity below 1.
            TypeError: ``supervision`` is not a `OneForOne`.
            SystemNotRunning, DuplicateName: as for `spawn`.
            Exception: whatever a worker's factory or ``on_start`` raised.

        Cancellation: workers already started are stopped again.

        Example:
            ```python
            pool = await system.spawn_pool(Resizer, size=8, routing="least-loaded")
            thumbnails = await pool.map([Resize(img) for img in images])
            ```
        """
        return await spawn_pool(
            self,
            factory,
            size=size,
            routing=routing,
            key=key,
            supervision=supervision,
            name=name,
            capacity=capacity,
        )

    def scope(self) -> Scope:
        """A scope for actors that must not outlive a block; see `Scope`.

        Example:
            ```python
            async with system.scope() as scope:
                crawler = await scope.spawn(Crawler)
                await crawler.ask(Crawl(url))
            # every actor spawned in the scope has stopped here
            ```
        """
        return Scope(self)

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
        with self.tree.lock:
            state = self._state
            if state == _NEW:
                self._mark_stopped_locked()
            elif state == _RUNNING:
                self._set_state_locked(_STOPPING)
        if state != _RUNNING:
            await self._stopped.wait()  # someone else is (or was) shutting it down
            escalation = self._escalation
            if escalation is not None and escalation is not threading.current_thread():
                await anyio.to_thread.run_sync(escalation.join)
            return
        with anyio.CancelScope(shield=True):
            if self.cluster is not None:
                await self.cluster.detach()
            guardian = self.tree.root
            if guardian is not None:
                # The guardian stops the top-level actors in reverse start order, each
                # stopping its own children first (each within the drain timeout).
                guardian.stop_for_good()
                await guardian.terminated.wait()
            if self._watchdog is not None:
                self._watchdog.stop()
            await self._stop_workers()
            with self.tree.lock:
                self._mark_stopped_locked()

    async def _stop_workers(self) -> None:
        for worker in self._workers:  # all at once, then wait: they stop in parallel
            worker.request_stop()
        for worker in self._workers:
            await worker.wait_stopped()

    def _mark_stopped_locked(self) -> None:
        self._set_state_locked(_STOPPED)
        self._stopped.set()

    def _set_state_locked(self, state: str) -> None:
        # The tree refuses top-level actors unless running, in the same critical section.
        self._state = state
        self.tree.closed = (
            None if state == _RUNNING else f"actor system {self.name} is {state}; cannot spawn"
        )

    def _place(self, placement: Placement, parent: Cell | None = None) -> Home:
        if self._state != _RUNNING:
            raise SystemNotRunning(f"actor system {self.name} is {self._state}; cannot spawn")
        if placement is None and parent is not None and parent is not self.tree.root:
            # Locality by default: a child starts beside its parent, which usually talks
            # to it first (Erlang's spawn does the same: the caller's scheduler).
            home = parent.home
            if isinstance(home, WorkerHome | HostHome):
                return home
        if placement is None and self._default_placement is None:
            # A top-level actor spawned from inside a handler starts on that handler's loop
            # too (its spawner talks to it first); only spawns from the application spread.
            caller = self.placer.worker_of_current_thread()
            if caller is not None:
                return caller
        if placement is None:
            placement = self._default_placement
        if placement is None:
            with self.tree.lock:  # itertools.count is not atomic on free-threaded builds
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

    def record_failure(self, error: BaseException) -> None:
        """Internal: a top-level actor failed for good: keep it, and apply the escalation policy."""
        with self.tree.lock:
            self._failures.append(error)
        self._failed.set(error)
        if self.escalation == "shutdown":
            logger.critical("actor system %s shuts down after: %r", self.name, error)
            # From a thread of its own: shutdown joins the worker loops, this one included.
            thread = threading.Thread(
                target=anyio.run, args=(self.shutdown,), name=thread_name(self.name, "escalation")
            )
            with self.tree.lock:
                if self._escalation is not None:
                    return
                self._escalation = thread
            thread.start()

    def _task_fields(self, task_name: str) -> dict[str, object]:
        """The log fields of the actor running as task ``task_name`` (the watchdog's)."""
        cell = self.tree.find(task_name)
        if cell is None:
            return {}
        fields = cell.log_fields()
        handling = cell.handling
        if handling is not None:
            fields["message_type"] = handling.__qualname__
        return fields

    def _describe_task(self, task_name: str) -> str | None:
        cell = self.tree.find(task_name)
        if cell is None:
            return None  # a task that is not an actor's
        handling = cell.handling
        what = handling.__qualname__ if handling is not None else "its start-up or a hook"
        return f"actor {cell.path} handling {what}"


def _usable_cpus() -> int:
    """CPUs this process may run on (affinity and container limits), not the machine's total."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if counter is not None:
        return counter() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _tracing_parts(tracing: object) -> tuple[object, type[Cell]]:
    """The tracer and cell class for ``ActorSystem(tracing=...)``: OpenTelemetry's import."""
    provider = None
    if tracing is not True:
        if isinstance(tracing, bool) or not hasattr(tracing, "get_tracer"):
            raise TypeError(
                f"tracing must be True, False or an OpenTelemetry TracerProvider, got {tracing!r}"
            )
        provider = tracing
    try:
        from ._tracing import TracingCell, tracer_for  # only when tracing
    except ImportError as error:
        raise ImportError(
            "ActorSystem(tracing=...) needs OpenTelemetry's API: pip install 'actors[otel]'"
        ) from error
    return tracer_for(cast("TracerProvider | None", provider)), TracingCell
