"""Worker pools: a supervised group of identical workers behind one routing handle.

Shape (``/user/pool-3`` with four workers and pull routing)::

    /user/pool-3                 _PoolSupervisor (temporary top-level actor; strategy = the
    ├── worker-0 .. worker-3     user's workers, permanent, spread over the loops)
    └── dispatcher               _Dispatcher, pull routing only: its mailbox is the shared queue

* **Routing happens in the caller.** `Pool` is a handle like `ActorRef`: it holds a snapshot
  of the worker refs (`_Routes`) and picks a worker per message on the caller's own thread,
  with no hop through the supervisor. Refs survive restarts, so the snapshot only changes on
  `Pool.resize` and when the pool ends. The routing is one router object chosen when the pool
  is built (see "routers" below); `Pool` itself holds no per-routing branch.
* **The supervisor is the single writer** of that snapshot. It publishes a new immutable
  `_Routes` under ``_PoolState.lock``; callers read ``state.routes`` without the lock (one
  attribute read sees the old snapshot or the new one, never a mix). A caller that raced a
  shrink and hit a worker that is being removed sees the refusal (nothing was enqueued) and
  routes again on the new snapshot.
* **Pull routing** reuses the actor machinery rather than a new queue: the shared bounded
  queue is the mailbox of an internal dispatcher actor, so ``send`` waits, ``try_send``
  raises `MailboxFull`, timeouts and stops behave exactly as for any actor. The dispatcher
  takes one job at a time and waits (inside its handler, so its mailbox keeps filling and
  pushes back on producers) until some worker is idle, then asks that worker in a task it
  owns and joins in ``on_stop``. Each worker thus holds at most the one message it handles.
* **Asks are split in two**: `_enqueue` puts an ``Ask`` envelope with a oneshot into the
  routed mailbox (through `deliver`, as every waiting sender), and the caller waits on the
  oneshot. `Pool.map_stream` keeps a window of such oneshots and waits on the oldest, so a
  parallel map needs no helper tasks at all: it works the same from asyncio, trio and actor
  handlers, and abandoning it leaves nothing running (the replies of items in flight are
  dropped, as after a cancelled ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from bisect import bisect
from collections import deque
from collections.abc import AsyncIterable
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    NoReturn,
    Protocol,
    TypeVar,
    overload,
)

import anyio.lowlevel

from ._actor import Actor
from ._delivery import deliver
from ._errors import ActorStopped, AskTimeout, DeadlockError, MailboxFull, SendTimeout
from ._mailbox import OK
from ._message import Ask, Request
from ._oneshot import CANCELLED, EXPIRED, Expired, Oneshot, oneshot
from ._ref import DEFAULT_ASK_TIMEOUT, cell_of
from ._request import ask_deadline
from ._runtime import HOST
from ._sendable import Moved
from ._strategy import OneForOne, Restart, SupervisionStrategy
from ._validation import check_count, check_name, check_timeout

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ("Pool", "Routing", "spawn_pool")

logger = logging.getLogger("actors")

M = TypeVar("M", contravariant=True)
R = TypeVar("R")

Routing = Literal["round-robin", "least-loaded", "consistent-hash", "broadcast", "pull"]
"""How a `Pool` picks the worker for each message.

* ``"round-robin"`` (the default): each worker in turn.
* ``"least-loaded"``: the worker with the fewest messages waiting in its mailbox.
* ``"consistent-hash"``: the worker that owns ``key(message)`` on a hash ring, so equal keys
  always reach the same worker (per-key state, per-key order); resizing moves few keys.
* ``"broadcast"``: every worker gets every ``send``; ``ask_all`` collects every reply.
* ``"pull"``: messages wait in one shared bounded queue and the next idle worker takes
  the next one, which balances irregular work.

Example:
    ```python
    pool = await system.spawn_pool(Worker, size=4, routing="least-loaded")
    ```
"""

_ROUTINGS: Final = ("round-robin", "least-loaded", "consistent-hash", "broadcast", "pull")
_WINDOW: Final = 5.0  # seconds: the default strategy's restart window
_VNODES: Final = 64  # points per worker on the hash ring: keys spread within about +-15 %
_MASK: Final = (1 << 64) - 1


def _mix(value: int) -> int:
    """splitmix64's finaliser: spreads a Python hash (the identity on small ints) over 64 bits."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


class _Routes:
    """An immutable snapshot of the workers (and their hash ring): replaced, never changed."""

    __slots__ = ("owners", "points", "workers")

    def __init__(self, workers: tuple[ActorRef[Any], ...], hashed: bool) -> None:
        self.workers = workers
        ring: list[tuple[int, int]] = []
        if hashed:
            # A worker's points depend on its name only, so a resize moves only the keys
            # of the ring arcs that the added or removed workers gain or lose (about 1/n).
            for index, worker in enumerate(workers):
                ring.extend((_mix(hash((worker.name, v)) & _MASK), index) for v in range(_VNODES))
            ring.sort()
        self.points = [point for point, _ in ring]
        self.owners = [owner for _, owner in ring]


class _PoolState:
    """What the `Pool` handle and the pool's internal actors share.

    ``routes``, ``closed`` and ``dispatcher`` are written under ``lock`` (by the pool's
    supervisor, or by `Pool.stop`) and read without it: each is one attribute read. ``path``
    (the supervisor's, for errors) is written once by `spawn_pool`, before the handle exists;
    ``routing`` (the name the pool was spawned with, for tools) at construction.
    """

    __slots__ = (
        "closed",
        "dispatcher",
        "hashed",
        "listeners",
        "lock",
        "path",
        "routes",
        "routing",
    )

    def __init__(self, hashed: bool, routing: Routing = "round-robin") -> None:
        self.lock = threading.Lock()
        self.hashed = hashed
        self.routing = routing
        self.path = ""
        self.routes = _Routes((), hashed)
        self.closed = False
        self.dispatcher: ActorRef[_Job] | None = None
        self.listeners: list[Callable[[], object]] = []

    def publish(self, workers: tuple[ActorRef[Any], ...]) -> None:
        routes = _Routes(workers, self.hashed)
        with self.lock:
            self.routes = routes
            listeners = list(self.listeners)
        for listener in listeners:
            listener()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            listeners = list(self.listeners)
        for listener in listeners:
            listener()

    def stopped(self, message: object) -> ActorStopped:
        return ActorStopped(f"pool {self.path} is stopped; message not delivered", message)

    def dispatcher_for(self, message: object) -> ActorRef[_Job]:
        """The pull pool's dispatcher; raises that the pool has stopped if there is none."""
        dispatcher = self.dispatcher
        if dispatcher is None:
            raise self.stopped(message)
        return dispatcher

    def raise_unless_removed(self, worker: ActorRef[Any], message: object) -> None:
        """``worker`` refused ``message``: raise that the pool has stopped, unless a resize
        removed the worker meanwhile (a broadcast goes on to the others)."""
        if worker in self.routes.workers and not self.closed:
            raise self.stopped(message) from None


class _Job:
    """Internal envelope of a message in a pull pool's shared queue, and where its reply goes."""

    __slots__ = ("message", "reply")
    __actors_sendable__: Final = True  # carries an already-checked message and a oneshot

    def __init__(self, message: object, reply: Oneshot | None) -> None:
        self.message = message
        self.reply = reply


class _Resize(Request["Moved[BaseException] | None"], frozen=True):
    size: int


async def _enqueue(worker: ActorRef[Any], ask: Ask, timeout: float | None) -> bool:
    """Put ``ask`` into ``worker``'s mailbox, waiting for room.

    False when the mailbox refused it (the worker has stopped): nothing was enqueued.
    Raises `Expired` when no room came within ``timeout``.
    """
    cell = cell_of(worker)
    message = ask.message
    if type(message) not in cell.admitted:
        cell.admit(message)
    if cell.in_handler():
        raise DeadlockError(
            f"actor {cell.path} asked its own pool and was routed to itself; "
            "it would wait forever for its own reply"
        )
    # FULL cannot come back: it is for a sender in the worker's own handler, refused above.
    return await deliver(cell, ask, timeout) == OK


# -- routers ----------------------------------------------------------------------------------
#
# A pool's `Routing` is decided once, when the pool is built (`_router`), as one router object:
# `_Unicast` (one worker per message, picked by a picker: `_RoundRobin`, `_LeastLoaded` or
# `_ConsistentHash`), `_Broadcast` or `_Pull`. `Pool` only loops over snapshots; where a
# message goes, and what a refusal means, is the router's. Each attempt works on one `_Routes`
# snapshot and answers True (done) or False (a worker of that snapshot has stopped and nothing
# was enqueued: `Pool` routes again if a resize replaced the snapshot meanwhile, else the pool
# has stopped). Errors other than a refusal are raised as `Pool.send` documents them.


class _Router(Protocol):
    """How a pool delivers: one implementation per `Routing`, chosen by `_router`."""

    @property
    def routing(self) -> Routing:
        """The name it was chosen by."""
        ...

    async def send(self, routes: _Routes, message: object, timeout: float | None) -> bool:
        """`Pool.send` on one snapshot."""
        ...

    def try_send(self, routes: _Routes, message: object) -> bool:
        """`Pool.try_send` on one snapshot."""
        ...

    async def issue(self, routes: _Routes, ask: Ask, timeout: float | None) -> bool:
        """Enqueue one ask on one snapshot; raises `Expired` when no room came in time."""
        ...

    def check_asks(self, what: str) -> None:
        """Raise TypeError if this routing has no single reply per message (for ``what``)."""
        ...


class _Picker(Protocol):
    """Picks the one worker of a `_Unicast` router."""

    def pick(self, routes: _Routes, message: object) -> int:
        """The index in ``routes.workers`` (not empty) of the worker for ``message``."""
        ...


class _RoundRobin:
    """Each worker in turn.

    ``turn`` is a heuristic shared by every caller of the pool: a lost update under a race
    only sends two messages to the same worker.
    """

    __slots__ = ("turn",)

    def __init__(self) -> None:
        self.turn = 0

    def pick(self, routes: _Routes, message: object) -> int:
        turn = self.turn
        self.turn = turn + 1
        return turn % len(routes.workers)


class _LeastLoaded:
    """The worker with the shortest mailbox; ties go to the first from a rotating start.

    len() of a mailbox is one lock-free read; the message a worker is handling is not counted.
    """

    __slots__ = ("ties",)

    def __init__(self, ties: _RoundRobin) -> None:
        self.ties = ties

    def pick(self, routes: _Routes, message: object) -> int:
        start = self.ties.pick(routes, message)
        workers = routes.workers
        count = len(workers)
        best, best_depth = start, -1
        for step in range(count):
            index = (start + step) % count
            depth = len(cell_of(workers[index]).mailbox)
            if depth == 0:
                return index
            if best_depth < 0 or depth < best_depth:
                best, best_depth = index, depth
        return best


class _ConsistentHash:
    """The owner of ``key(message)`` on the snapshot's hash ring."""

    __slots__ = ("key",)

    def __init__(self, key: Callable[[Any], object]) -> None:
        self.key = key

    def pick(self, routes: _Routes, message: object) -> int:
        point = _mix(hash(self.key(message)) & _MASK)
        slot = bisect(routes.points, point)
        return routes.owners[slot % len(routes.owners)]


class _Unicast:
    """One worker per message, the one ``picker`` picks. With ``spill``, `try_send` passes a
    full worker over for the next ones (not for consistent hashing: a key has one owner)."""

    __slots__ = ("picker", "routing", "spill", "state")

    def __init__(self, state: _PoolState, routing: Routing, picker: _Picker, spill: bool) -> None:
        self.state = state
        self.routing: Routing = routing
        self.picker = picker
        self.spill = spill

    async def send(self, routes: _Routes, message: object, timeout: float | None) -> bool:
        worker = routes.workers[self.picker.pick(routes, message)]
        try:
            await worker.send(message, timeout=timeout)
        except ActorStopped:
            return False
        return True

    def try_send(self, routes: _Routes, message: object) -> bool:
        workers = routes.workers
        first = self.picker.pick(routes, message)
        try:
            if not self.spill:
                workers[first].try_send(message)
                return True
            for step in range(len(workers)):
                try:
                    workers[(first + step) % len(workers)].try_send(message)
                    return True
                except MailboxFull:
                    continue
        except ActorStopped:
            return False
        raise MailboxFull(
            f"every worker of pool {self.state.path} is full ({len(workers)} workers); "
            "message not sent",
            message,
        )

    async def issue(self, routes: _Routes, ask: Ask, timeout: float | None) -> bool:
        worker = routes.workers[self.picker.pick(routes, ask.message)]
        return await _enqueue(worker, ask, timeout)

    def check_asks(self, what: str) -> None:
        pass


class _Broadcast:
    """Every worker gets every message. Never repeated on a new snapshot: a worker that a
    resize removed meanwhile is skipped, the others still get it."""

    __slots__ = ("state",)
    routing: Routing = "broadcast"

    def __init__(self, state: _PoolState) -> None:
        self.state = state

    async def send(self, routes: _Routes, message: object, timeout: float | None) -> bool:
        for worker in routes.workers:
            try:
                await worker.send(message, timeout=timeout)
            except ActorStopped:
                self.state.raise_unless_removed(worker, message)
        return True

    def try_send(self, routes: _Routes, message: object) -> bool:
        workers = routes.workers
        full = 0
        for worker in workers:
            try:
                worker.try_send(message)
            except MailboxFull:
                full += 1
            except ActorStopped:
                self.state.raise_unless_removed(worker, message)
        if full:
            raise MailboxFull(
                f"{full} of the {len(workers)} workers of pool {self.state.path} were "
                "full and did not get the message; the others did",
                message,
            )
        return True

    async def issue(self, routes: _Routes, ask: Ask, timeout: float | None) -> bool:
        self.check_asks("use ask_all() to collect them")

    def check_asks(self, what: str) -> NoReturn:
        raise TypeError(
            f"pool {self.state.path} broadcasts: one message has one reply per worker; {what}"
        )


class _Pull:
    """Messages wait in one shared queue, the dispatcher's mailbox, for the next idle worker."""

    __slots__ = ("state",)
    routing: Routing = "pull"

    def __init__(self, state: _PoolState) -> None:
        self.state = state

    async def send(self, routes: _Routes, message: object, timeout: float | None) -> bool:
        try:
            await self.state.dispatcher_for(message).send(_Job(message, None), timeout=timeout)
        except ActorStopped:
            return False
        return True

    def try_send(self, routes: _Routes, message: object) -> bool:
        try:
            self.state.dispatcher_for(message).try_send(_Job(message, None))
        except ActorStopped:
            return False
        return True

    async def issue(self, routes: _Routes, ask: Ask, timeout: float | None) -> bool:
        message = ask.message
        try:
            await self.state.dispatcher_for(message).send(_Job(message, ask.reply), timeout=timeout)
        except SendTimeout:
            raise Expired() from None
        except ActorStopped:
            raise self.state.stopped(message) from None
        return True

    def check_asks(self, what: str) -> None:
        pass


def _router(state: _PoolState, routing: Routing, key: Callable[[Any], object] | None) -> _Router:
    """The router for ``routing``: the one place that tells the routings apart by name."""
    match routing:
        case "round-robin":
            return _Unicast(state, routing, _RoundRobin(), spill=True)
        case "least-loaded":
            return _Unicast(state, routing, _LeastLoaded(ties=_RoundRobin()), spill=True)
        case "consistent-hash" if key is not None:
            return _Unicast(state, routing, _ConsistentHash(key), spill=False)
        case "broadcast":
            return _Broadcast(state)
        case "pull":
            return _Pull(state)
        case _:
            raise AssertionError(routing)  # spawn_pool checked routing and key


class Pool(Generic[M]):
    """A pool of identical workers behind one handle that routes each message to a worker.

    Made by `ActorSystem.spawn_pool`, which returns once every worker has started. Like an
    `ActorRef`, a pool is cheap, immutable and sendable, and works from any loop or thread;
    ``send``, ``try_send`` and ``ask`` check the message (type, sendability) and route it by
    the pool's `Routing` on the caller's side, with no hop through a middleman (except pull
    routing's shared queue).

    The workers are spread over the worker loops and supervised by the pool: a worker that
    crashes is restarted behind the same ref, so the pool keeps routing to it (its queued
    messages wait for the new instance). The default strategy, ``OneForOne(max_restarts=size,
    within=5.0)``, tolerates a burst of one crash per worker; beyond that the pool gives up,
    stops its workers and fails (escalating to the system like a top-level actor that is not
    restarted); sends then raise `ActorStopped`.

    Order: messages from one sender reach one worker in order, but different workers run in
    parallel, so a pool keeps no order between messages, except with ``consistent-hash``
    routing, which keeps each key's messages in order.

    Example:
        ```python
        pool = await system.spawn_pool(Resizer, size=8, routing="least-loaded")
        await pool.send(Warm())
        thumb = await pool.ask(Resize(image, 256))
        thumbs = await pool.map([Resize(i, 256) for i in images], timeout=10.0)
        await pool.resize(16)
        await pool.stop()
        ```
    """

    __slots__ = ("_router", "_state", "_supervisor")
    __actors_sendable__: Final = True  # an immutable handle over thread-safe state

    def __init__(self, state: _PoolState, supervisor: ActorRef[_Resize], router: _Router) -> None:
        self._state = state
        self._supervisor = supervisor
        self._router = router

    # -- introspection ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name (``pool-<n>`` unless given to `ActorSystem.spawn_pool`)."""
        return self._supervisor.name

    @property
    def path(self) -> str:
        """The path of the pool's supervisor, such as ``/user/pool-3``; workers live below it."""
        return self._supervisor.path

    @property
    def routing(self) -> Routing:
        """The pool's `Routing`."""
        return self._router.routing

    @property
    def workers(self) -> tuple[ActorRef[M], ...]:
        """The current workers' refs, in slot order (empty once the pool has stopped).

        Example:
            ```python
            for worker in pool.workers:
                print(worker.path, worker.statistics().mailbox.depth)
            ```
        """
        return self._state.routes.workers

    @property
    def size(self) -> int:
        """The current number of workers (0 once the pool has stopped)."""
        return len(self._state.routes.workers)

    @property
    def is_alive(self) -> bool:
        """False once the pool has stopped or given up."""
        return self._supervisor.is_alive

    def __repr__(self) -> str:
        return f"<Pool {self.path} {self._router.routing} size={self.size}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pool) and other._state is self._state

    def __hash__(self) -> int:
        return id(self._state)

    # -- routing ---------------------------------------------------------------------------

    def _stopped(self, message: object) -> ActorStopped:
        return self._state.stopped(message)

    def _live_routes(self, message: object) -> _Routes:
        state = self._state
        routes = state.routes
        if state.closed or not routes.workers:
            raise self._stopped(message)
        return routes

    def _admit(self, routes: _Routes, message: object) -> None:
        # Every worker comes from the same factory: one check stands for all, before the
        # key function (or the shared queue) sees the message.
        cell = cell_of(routes.workers[0])
        if type(message) not in cell.admitted:
            cell.admit(message)

    def _reroute(self, routes: _Routes, message: object) -> None:
        """An attempt on ``routes`` was refused: raise that the pool has stopped, unless a
        resize replaced the snapshot meanwhile (the chosen worker is being removed): then the
        caller routes again on the new one."""
        state = self._state
        if state.routes is routes or state.closed:
            raise self._stopped(message)

    async def send(self, message: M, *, timeout: float | None = None) -> None:
        """Route ``message`` to a worker and enqueue it, waiting while that worker is full.

        With ``broadcast`` routing every worker gets it, one after the other; with ``pull``
        it waits in the shared queue for the next idle worker.

        Raises:
            MessageTypeError: the workers do not accept this type (nothing enqueued).
            NotSendableError: the message is mutable (nothing enqueued).
            ActorStopped: the pool has stopped.
            SendTimeout: no room within ``timeout`` seconds (for broadcast: at some worker;
                the workers before it got the message).
            Exception: whatever the ``key`` function raised (consistent-hash).

        Cancellation: if cancelled while waiting for room, nothing is enqueued (for
        broadcast: at that worker; the workers before it got the message).

        Example:
            ```python
            await pool.send(Job(42))
            ```
        """
        if timeout is not None:
            check_timeout("timeout", timeout)
        router = self._router
        while True:
            try:
                routes = self._live_routes(message)
            except ActorStopped:
                await anyio.lowlevel.checkpoint()  # a refusal is a checkpoint, as for refs
                raise
            self._admit(routes, message)
            try:
                if await router.send(routes, message, timeout):
                    return
            except (SendTimeout, MailboxFull) as error:
                error.message = message  # hand back the caller's message, not an envelope
                raise
            self._reroute(routes, message)

    def try_send(self, message: M) -> None:
        """Enqueue ``message`` if a worker has room right now; never waits.

        Round-robin and least-loaded pools try the other workers when the chosen one is
        full, so `MailboxFull` means every worker was full. Consistent-hash tries only the
        key's worker; pull tries the shared queue; broadcast tries every worker and raises
        `MailboxFull` if any was full (the others got the message).

        Raises:
            MailboxFull: no room (``error.message`` is the message).
            ActorStopped: the pool has stopped.
            MessageTypeError, NotSendableError: as for `send`.

        Example:
            ```python
            try:
                pool.try_send(Sample(value))
            except actors.MailboxFull:
                dropped += 1
            ```
        """
        router = self._router
        while True:
            routes = self._live_routes(message)
            self._admit(routes, message)
            try:
                if router.try_send(routes, message):
                    return
            except MailboxFull as error:
                error.message = message
                raise
            self._reroute(routes, message)

    async def _issue(
        self, message: object, reply: Oneshot, timeout: float | None, deadline: float | None
    ) -> None:
        """Route one ask: enqueue ``message`` with ``reply`` as its reply; do not wait for it.

        Raises `Expired` when no room came within ``timeout``.
        """
        router = self._router
        ask = Ask(message, reply, deadline)  # reusable: a refused attempt enqueued nothing
        while True:
            routes = self._live_routes(message)
            self._admit(routes, message)
            if await router.issue(routes, ask, timeout):
                return
            self._reroute(routes, message)

    def _ask_timeout(
        self, message: object, timeout: float | None, inherited_from: str | None = None
    ) -> AskTimeout:
        what = type(message).__qualname__
        if inherited_from is None:
            return AskTimeout(f"pool {self.path} did not answer {what} within {timeout} s")
        return AskTimeout(
            f"pool {self.path} did not answer {what} before the deadline of the ask actor "
            f"{inherited_from} is answering"
        )

    @overload
    async def ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    async def ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    async def ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """Route ``message`` to one worker and wait for its reply, as `ActorRef.ask`.

        ``timeout`` bounds the whole call (the wait for room, in the shared queue for pull
        routing, and for the reply). A broadcast pool has no single reply: use `ask_all`.

        Raises:
            AskTimeout: no reply in time.
            ActorStopped: the pool has stopped, or the worker stopped before answering.
            TypeError: the pool broadcasts.
            DeadlockError: a worker was routed its own ask.
            MessageTypeError, NotSendableError: as for `send`.
            Exception: whatever the worker's handler raised (the worker is restarted).

        The worker's handler reads the ask's deadline (`actors.deadline`), and a pool ask
        made in a handler inherits that handler's deadline, as for `ActorRef.ask`.

        Cancellation: as a timeout, it abandons the request; still queued, it is skipped
        (as for `ActorRef.ask`).

        Example:
            ```python
            thumb = await pool.ask(Resize(image, 256), timeout=2.0)
            ```
        """
        if timeout is not DEFAULT_ASK_TIMEOUT:
            check_timeout("timeout", timeout)
        deadline = ask_deadline(timeout)
        if deadline.timeout is not None and deadline.timeout <= 0.0:
            raise self._ask_timeout(message, 0.0, deadline.inherited_from)
        reply = oneshot()
        try:
            await self._issue(message, reply, deadline.timeout, deadline.at)
            left = deadline.left()
            # A timer of its own: what is left after routing is a one-off duration.
            return await (reply.wait(None) if left is None else reply.wait_once(left))
        except Expired:
            reply.abandon(EXPIRED)
            raise self._ask_timeout(message, timeout, deadline.inherited_from) from None
        except ActorStopped:
            await anyio.lowlevel.checkpoint()
            raise
        except BaseException:
            reply.abandon(CANCELLED)
            raise

    @overload
    async def ask_all(self, message: Request[R], *, timeout: float | None = ...) -> list[R]: ...
    @overload
    async def ask_all(self, message: M, *, timeout: float | None = ...) -> list[Any]: ...
    async def ask_all(
        self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT
    ) -> list[Any]:
        """Ask every worker (whatever the routing) and return their replies in worker order.

        For questions to each worker rather than to the pool: its statistics, its share of
        sharded state. The asks are sent to every worker first, then awaited; ``timeout``
        bounds the whole call.

        Raises:
            AskTimeout: some worker did not answer in time.
            ActorStopped: the pool has stopped, or a worker stopped before answering.
            Exception: the first failure, in worker order, of a worker's handler.
            MessageTypeError, NotSendableError: as for `send`.

        Cancellation: the asks already enqueued are still handled; their replies are dropped.

        Example:
            ```python
            counts = await pool.ask_all(Count())  # one int per worker
            ```
        """
        check_timeout("timeout", timeout)
        try:
            routes = self._live_routes(message)
        except ActorStopped:
            await anyio.lowlevel.checkpoint()
            raise
        self._admit(routes, message)
        started = time.monotonic()
        replies: list[Oneshot] = []
        try:
            for worker in routes.workers:
                reply = oneshot()
                remaining = (
                    None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                )
                if not await _enqueue(worker, Ask(message, reply), remaining):
                    raise cell_of(worker).stopped_error(message)
                replies.append(reply)
            results: list[Any] = []
            for reply in replies:
                remaining = (
                    None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                )
                results.append(await reply.wait(remaining))
        except Expired:
            raise self._ask_timeout(message, timeout) from None
        return results

    # -- parallel map ------------------------------------------------------------------------

    @overload
    async def map(
        self,
        messages: Iterable[Request[R]] | AsyncIterable[Request[R]],
        *,
        max_in_flight: int | None = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[R]: ...
    @overload
    async def map(
        self,
        messages: Iterable[Request[R]] | AsyncIterable[Request[R]],
        *,
        max_in_flight: int | None = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[True],
    ) -> list[R | BaseException]: ...
    @overload
    async def map(
        self,
        messages: Iterable[M] | AsyncIterable[M],
        *,
        max_in_flight: int | None = ...,
        timeout: float | None = ...,
        return_exceptions: bool = ...,
    ) -> list[Any]: ...
    async def map(
        self,
        messages: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Ask the pool about every message, in parallel; return the replies in input order.

        A parallel map over the workers (and so over the loops), like Rayon's ``par_iter``:
        at most ``max_in_flight`` asks are outstanding at a time (default: twice the pool's
        size), so the workers stay busy while the mailboxes stay short. ``timeout`` bounds
        each item's ask (None: no limit). For inputs too large to hold, and to consume
        results as they come, use `map_stream`.

        Args:
            messages: the requests; any iterable or async iterable.
            max_in_flight: the most asks outstanding at once (at least 1).
            timeout: seconds each item may take, from when it is sent; None waits forever.
            return_exceptions: put each failed item's exception in its place in the list
                instead of raising it.

        Raises:
            Exception: the first failed item's exception (in input order), with a note
                naming its index; the items still in flight are abandoned (still handled,
                replies dropped). `AskTimeout` for an item that took too long.
            ActorStopped: the pool has stopped (raised for the first item sent after that).
            TypeError: the pool broadcasts.
            ValueError: ``max_in_flight`` below 1.

        Cancellation: the items in flight are still handled; their replies are dropped.

        Example:
            ```python
            sizes = await pool.map([Compress(block) for block in blocks], timeout=5.0)
            outcomes = await pool.map(jobs, return_exceptions=True)
            failed = [o for o in outcomes if isinstance(o, Exception)]
            ```
        """
        self._check_map()
        check_timeout("timeout", timeout)
        stream = self._stream(messages, self._window(max_in_flight), timeout, return_exceptions)
        return [result async for result in stream]

    @overload
    def map_stream(
        self,
        messages: Iterable[Request[R]] | AsyncIterable[Request[R]],
        *,
        max_in_flight: int | None = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[False] = ...,
    ) -> AsyncIterator[R]: ...
    @overload
    def map_stream(
        self,
        messages: Iterable[Request[R]] | AsyncIterable[Request[R]],
        *,
        max_in_flight: int | None = ...,
        timeout: float | None = ...,
        return_exceptions: Literal[True],
    ) -> AsyncIterator[R | BaseException]: ...
    @overload
    def map_stream(
        self,
        messages: Iterable[M] | AsyncIterable[M],
        *,
        max_in_flight: int | None = ...,
        timeout: float | None = ...,
        return_exceptions: bool = ...,
    ) -> AsyncIterator[Any]: ...
    def map_stream(
        self,
        messages: Iterable[Any] | AsyncIterable[Any],
        *,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> AsyncIterator[Any]:
        """`map` as an async iterator: replies in input order, with bounded memory.

        It reads the input lazily, only when fewer than ``max_in_flight`` items are in
        flight, so a huge (or endless) input, or the output of another `map_stream`, flows
        through with at most ``max_in_flight`` items in memory. Results come in input order:
        a slow item holds back the ones behind it (while they still run) until it is done,
        and no new item is sent meanwhile. The options are `map`'s.

        It runs no background task: items are sent and their replies collected as you
        iterate, from whatever loop or thread you iterate in. Stopping early (``break``,
        an exception) abandons the items in flight: still handled, replies dropped.

        Raises:
            TypeError: the pool broadcasts.
            ValueError: ``max_in_flight`` below 1.
            Exception: while iterating, as `map`.

        Cancellation: as `map`.

        Example:
            ```python
            async for digest in pool.map_stream(Hash(chunk) async for chunk in read(path)):
                out.write(digest)
            ```
        """
        self._check_map()
        check_timeout("timeout", timeout)
        return self._stream(messages, self._window(max_in_flight), timeout, return_exceptions)

    def _check_map(self) -> None:
        self._router.check_asks("map needs one reply per item")

    def _window(self, max_in_flight: int | None) -> int:
        if max_in_flight is None:
            return max(1, 2 * self.size)
        return check_count("max_in_flight", max_in_flight)

    async def _stream(
        self,
        messages: Iterable[Any] | AsyncIterable[Any],
        window: int,
        timeout: float | None,
        return_exceptions: bool,
    ) -> AsyncIterator[Any]:
        # Items in flight, oldest first: (index, message, reply or the error of sending it,
        # deadline). Invariant: len(pending) <= window.
        pending: deque[tuple[int, object, Oneshot | BaseException, float | None]] = deque()
        if isinstance(messages, AsyncIterable):
            source, items = aiter(messages), None
        else:
            source, items = None, iter(messages)
        index = 0
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        if items is not None:
                            message = next(items)
                        else:
                            assert source is not None
                            message = await anext(source)
                    except (StopIteration, StopAsyncIteration):
                        exhausted = True
                        break
                    deadline = None if timeout is None else time.monotonic() + timeout
                    reply = oneshot()
                    outcome: Oneshot | BaseException = reply
                    try:
                        await self._issue(message, reply, timeout, deadline)
                    except Expired:
                        outcome = self._ask_timeout(message, timeout)
                    except Exception as refused:
                        outcome = refused
                    pending.append((index, message, outcome, deadline))
                    index += 1
                if not pending:
                    return
                item, message, outcome, deadline = pending.popleft()
                if isinstance(outcome, BaseException):
                    failed: BaseException = outcome
                else:
                    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        value = await outcome.wait(remaining)
                    except Expired:
                        failed = self._ask_timeout(message, timeout)
                    except Exception as failure:
                        failed = failure
                    else:
                        yield value
                        continue
                failed.add_note(f"raised for item {item} of map() on pool {self.path}")
                if not return_exceptions:
                    raise failed
                yield failed
        finally:
            # Left early (the consumer stopped iterating, a failure raised): the items still
            # in flight are abandoned, so workers skip those not started yet.
            for _, _, left_behind, _ in pending:
                if isinstance(left_behind, Oneshot):
                    left_behind.abandon(CANCELLED)

    # -- lifecycle ---------------------------------------------------------------------------

    async def resize(self, size: int) -> None:
        """Grow or shrink the pool to ``size`` workers; returns once it has that many.

        New workers are spread over the loops like the first ones and start receiving
        messages once started. Removed workers (the last ones) stop routing at once and are
        stopped gracefully: they handle what their mailboxes accepted first. Keys of a
        consistent-hash pool move only between the removed or added workers and the rest.
        With the default strategy, the restart limit follows the size.

        Raises:
            ValueError: ``size`` below 1.
            ActorStopped: the pool has stopped.
            DeadlockError: a worker shrank its own pool so that it would be removed.
            Exception: whatever a new worker's factory or ``on_start`` raised (the workers
                that did start are kept).

        Cancellation: once the request has reached the pool, the resize still completes;
        only the wait is abandoned.

        Example:
            ```python
            await pool.resize(pool.size * 2)
            ```
        """
        check_count("size", size)
        if self._state.closed:
            await anyio.lowlevel.checkpoint()
            raise self._stopped(_Resize(size))
        for slot, worker in enumerate(self._state.routes.workers):
            if slot >= size and cell_of(worker).in_handler():
                raise DeadlockError(
                    f"worker {worker.path} resized its pool to {size}, which stops it; it "
                    "would wait forever for its own stop"
                )
        try:
            failure = await self._supervisor.ask(_Resize(size), timeout=None)
        except ActorStopped:
            raise self._stopped(_Resize(size)) from None
        if failure is not None:
            raise failure.value

    async def stop(self) -> None:
        """Stop the pool: refuse new messages, let the workers drain, then stop them.

        What the workers' mailboxes (and a pull pool's shared queue) accepted is handled
        first. Stopping a stopped pool returns at once. Called from one of the pool's own
        workers, it only requests the stop (the worker cannot wait for its own drain).

        Cancellation: the stop still happens; only the wait is abandoned.

        Example:
            ```python
            await pool.stop()
            assert not pool.is_alive
            ```
        """
        state = self._state
        state.close()
        supervisor = cell_of(self._supervisor)
        if any(cell_of(w).in_handler() for w in state.routes.workers):
            supervisor.stop_for_good(revive=True)  # the dispatcher, started last, stops first
            return
        dispatcher = state.dispatcher
        if dispatcher is not None:
            await dispatcher.stop()  # drains the shared queue into the live workers
        await self._supervisor.stop()

    async def join(self) -> BaseException | None:
        """Wait until the pool has stopped; return None, or the error it gave up with.

        Cancellation: only the wait is abandoned.

        Example:
            ```python
            reason = await pool.join()  # a SupervisionError if the workers kept crashing
            ```
        """
        return await self._supervisor.join()


# -- the pool's actors -----------------------------------------------------------------------


class _PoolSupervisor(Actor[_Resize]):
    """Starts and supervises the workers (and the dispatcher); publishes their refs."""

    def __init__(
        self,
        state: _PoolState,
        factory: Callable[[], Actor[Any]],
        size: int,
        strategy: SupervisionStrategy | None,
        capacity: int | None,
        pull: bool,
    ) -> None:
        self.supervision = strategy or OneForOne(max_restarts=size, within=_WINDOW)
        self._follow_size = strategy is None
        self._state = state
        self._factory = factory
        self._initial = size
        self._capacity = capacity
        self._pull = pull
        self._serial = itertools.count()
        self._workers: list[ActorRef[Any]] = []
        cell = self._actors_cell
        home = cell.home
        # Spread: worker slot i lives on loop (offset + i) % loops, starting next to the
        # supervisor's own loop so that several small pools do not pile onto loop 0.
        self._offset = int(home.label) + 1 if home.label != HOST else 0
        self._spread = cell.system.default_placement != HOST

    async def on_start(self) -> None:
        failure = await self._grow(self._initial)
        if failure is not None:
            raise failure
        if self._pull:
            dispatcher = await self.spawn(
                lambda: _Dispatcher(self._state), name="dispatcher", capacity=self._capacity
            )
            with self._state.lock:
                self._state.dispatcher = dispatcher

    async def receive(self, message: _Resize) -> Moved[BaseException] | None:
        size = message.size
        failure: BaseException | None = None
        if size > len(self._workers):
            failure = await self._grow(size - len(self._workers))
        elif size < len(self._workers):
            removed = self._workers[size:]
            del self._workers[size:]
            self._state.publish(tuple(self._workers))  # route away first, then stop
            for worker in reversed(removed):
                await worker.stop()
        if self._follow_size:
            self.supervision = OneForOne(max_restarts=len(self._workers), within=_WINDOW)
        return Moved(failure) if failure is not None else None

    async def _grow(self, count: int) -> BaseException | None:
        """Start ``count`` more workers at once; publish those that started."""
        loops = self.system.workers
        first = len(self._workers)
        spawns = [
            self.spawn(
                self._factory,
                name=f"worker-{next(self._serial)}",
                capacity=self._capacity,
                placement=(self._offset + first + i) % loops if self._spread else None,
            )
            for i in range(count)
        ]
        outcomes = await asyncio.gather(*spawns, return_exceptions=True)
        failure: BaseException | None = None
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                failure = failure or outcome
            else:
                self._workers.append(outcome)
        self._state.publish(tuple(self._workers))
        return failure

    async def on_stop(self) -> None:
        # The children have stopped by now. Sends through the handle fail from here on.
        self._state.close()
        self._state.publish(())


class _Dispatcher(Actor[_Job]):
    """Pull routing: its mailbox is the pool's shared queue; it feeds idle workers.

    Everything here runs on the dispatcher's home loop (its handler and the job tasks it
    owns), so ``_busy`` and ``_free`` need no lock. ``_poke`` is the one entry point from
    other threads (a resize, a stop).
    """

    def __init__(self, state: _PoolState) -> None:
        self._state = state
        self._busy: set[ActorRef[Any]] = set()
        self._free = asyncio.Event()  # binds to the loop that first waits on it: ours
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = 0

    async def on_start(self) -> None:
        # The home loop is known here, not in __init__ (which runs on the spawner's thread).
        self._loop = asyncio.get_running_loop()
        with self._state.lock:
            self._state.listeners.append(self._poke)

    def _poke(self) -> None:
        # Any thread: the workers changed; wake an idle-worker wait to look again.
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(self._free.set)

    async def receive(self, message: _Job) -> None:
        # Waiting here is the point: while every worker is busy this handler does not
        # return, the shared queue (this mailbox) fills, and producers feel backpressure.
        worker = await self._idle_worker()
        if worker is None:
            self._fail(message, None)
            return
        self._busy.add(worker)
        task = self._loop.create_task(self._run(worker, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _idle_worker(self) -> ActorRef[Any] | None:
        """The next idle worker (rotating), waiting for one; None when none is left."""
        while True:
            workers = self._state.routes.workers
            count = len(workers)
            alive = False
            for step in range(count):
                worker = workers[(self._turn + step) % count]
                if not worker.is_alive:
                    continue
                alive = True
                if worker not in self._busy:
                    self._turn += step + 1
                    return worker
            if not alive:
                return None
            self._free.clear()
            await self._free.wait()

    async def _run(self, worker: ActorRef[Any], job: _Job) -> None:
        """Ask ``worker`` to handle ``job``; pass the outcome on. Owned by this actor."""
        done = False
        try:
            while True:
                reply = oneshot()
                if await _enqueue(worker, Ask(job.message, reply), None):
                    break
                # The worker stopped for good before taking it (a shrink, or the pool
                # stopping with this worker gone first): nothing was enqueued, try another.
                self._busy.discard(worker)
                next_worker = await self._idle_worker()
                if next_worker is None:
                    self._fail(job, worker)
                    done = True
                    return
                worker = next_worker
                self._busy.add(worker)
            try:
                value = await reply.wait()
            except Exception as error:  # the worker's handler failed: it is restarted
                if job.reply is not None:
                    job.reply.settle(error=error)
            else:
                if job.reply is not None:
                    job.reply.settle(value)
            done = True
        finally:
            if not done:  # cancelled (a kill): the asker must not wait for nothing
                self._fail(job, worker)
            self._busy.discard(worker)
            self._free.set()

    def _fail(self, job: _Job, worker: ActorRef[Any] | None) -> None:
        if job.reply is not None:
            where = worker.path if worker is not None else self.parent.path
            job.reply.settle(
                error=ActorStopped(f"pool {where} stopped; message not handled", job.message)
            )
        else:
            logger.warning(
                "pool %s stopped with %s still queued; message dropped",
                self.parent.path,
                type(job.message).__qualname__,
            )

    async def on_stop(self) -> None:
        # Graceful: the handler already dispatched every queued job; wait for them to finish.
        with self._state.lock, contextlib.suppress(ValueError):
            self._state.listeners.remove(self._poke)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def spawn_pool(
    system: ActorSystem,
    factory: Callable[[], Actor[M]],
    *,
    size: int,
    routing: Routing,
    key: Callable[[Any], object] | None,
    supervision: SupervisionStrategy | None,
    name: str | None,
    capacity: int | None,
) -> Pool[M]:
    """`ActorSystem.spawn_pool`: check the options, start the supervisor, return the handle."""
    check_count("size", size)
    if routing not in _ROUTINGS:
        raise ValueError(
            f"unknown routing {routing!r}; choose one of {', '.join(map(repr, _ROUTINGS))}"
        )
    if routing == "consistent-hash" and key is None:
        raise ValueError(
            'routing="consistent-hash" needs key=, a function of the message that returns '
            "the value to hash (such as lambda m: m.user_id)"
        )
    if key is not None and routing != "consistent-hash":
        raise ValueError(f'key= is only used by routing="consistent-hash", not {routing!r}')
    if supervision is not None and not isinstance(supervision, OneForOne):
        # The workers are independent by definition; a group restart would also take the
        # pull dispatcher down while it waits for the workers it would restart.
        raise TypeError(
            "a pool's supervision must be a OneForOne (choose its max_restarts, within and "
            f"backoff), got {supervision!r}"
        )
    if capacity is not None:
        check_count("capacity", capacity)
    if name is not None:
        check_name("name", name)
    if name is None:
        name = f"pool-{system.next_serial()}"
    state = _PoolState(hashed=key is not None, routing=routing)  # a key: consistent-hash only
    router = _router(state, routing, key)
    pull = isinstance(router, _Pull)
    supervisor = await system.spawn(
        lambda: _PoolSupervisor(state, factory, size, supervision, capacity, pull),
        name=name,
        restart=Restart.TEMPORARY,  # a pool that gave up stays down: its refs would be stale
    )
    state.path = supervisor.path
    return Pool(state, supervisor, router)
