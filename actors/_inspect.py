"""A read-only view of a running system, for the live inspector (`actors.inspector`).

`SystemView` answers the inspector's questions about one `ActorSystem` from any thread:
the children of one actor (paged: the tree is never sent whole), one actor, the loops, the
pools, the event bus's subscriptions and the recent dead letters. Every answer is an
immutable msgspec Struct, so a web app encodes it to JSON as it is.

Consistency. Nothing here stops the system or waits on its loops: a view reads what other
threads write, the way `ActorSystem.metrics` does. The tree's links are read under the
tree's lock (one short critical section per page), a mailbox's depth and high water under
the mailbox's lock, and the rest (status, counters, the loop's lag) as single attribute
reads of fields that have one writer each. So a snapshot may be slightly torn (an actor's
count taken a burst before its depth, a child that ends while its page is built shows its
last state) but it never raises because the system moved underneath it, and every counter
it shows only grows.

Bounded cost. A page costs its size, not the system's: `children` copies a slice of one
parent's children under the lock. What needs the whole tree (actors per loop, the busiest
actors, the pools) comes from a *census*, one walk over every actor, reused until it is
older than twenty times what it took (at least a second): on a 100,000-actor system a walk
of some 100 ms runs at most every two seconds, under 5 % of one core, however many clients
look. Rates (messages per second, a loop's CPU) are differences between two readings at
least a second apart.

Nodes. An `Overview` lists nodes: this process's first (``local``), then, when the system's
cluster can be inspected (`actors._seam.InspectableCluster`, such as `actors.cluster.Nats`),
one `NodeView` per other node, as that node last answered its inspection subject. The
cluster never makes `overview` wait on the network: it hands back the answers it has and,
at most once a second, asks again in the background; a cluster nobody inspects asks
nothing. The core only sees the seam's one method; pages and actors carry their node's name.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, NamedTuple

import msgspec

from ._actor import Actor
from ._deadletters import DeadLetter
from ._errors import DuplicateName, SystemNotRunning
from ._pool import _PoolSupervisor  # pyright: ignore[reportPrivateUsage]
from ._ref import cell_of
from ._runtime import thread_cpu_seconds, thread_name
from ._seam import InspectableCluster
from ._statem import current_state

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._cell import Cell
    from ._runtime import Home
    from ._system import ActorSystem

__all__ = (
    "MAX_LISTED",
    "ActorView",
    "BlockedWarning",
    "ChildrenPage",
    "DeadLetterView",
    "DeadLettersPage",
    "DurableView",
    "GroupView",
    "LoopView",
    "NodeView",
    "Overview",
    "PoolView",
    "PublicActorView",
    "SubscriptionView",
    "SubscriptionsPage",
    "SystemView",
    "TopOrder",
)

MAX_PAGE: Final = 500
"""The most actors (or subscriptions) one page holds."""

MAX_LISTED: Final = 200
"""The most public actors, groups or durable mailboxes one `NodeView` lists (each)."""

TopOrder = Literal["rate", "depth", "failed", "restarts"]
"""What `SystemView.top` ranks actors by."""

_TOP_ORDERS: Final = ("rate", "depth", "failed", "restarts")
_RATE_WINDOW: Final = 1.0  # seconds between the two readings a rate is taken from
_RATES_KEPT: Final = 20_000  # actors whose last reading is kept for rates (least recent go)
_CENSUS_FACTOR: Final = 20  # a census is reused for this many times what it took ...
_CENSUS_MIN_AGE: Final = 1.0  # ... and at least this long
_DEAD_LETTERS_KEPT: Final = 200
_WARNINGS_KEPT: Final = 50
_REPR_LIMIT: Final = 200


# -- the records ---------------------------------------------------------------------------


class ActorView(msgspec.Struct, frozen=True):
    """One actor as the inspector shows it.

    Attributes:
        node: the node it lives on (``SystemView.node``).
        path: its path, such as ``/user/bank/account-7``.
        name: the last part of the path.
        type: its actor class's qualified name ("" before its first instance is built).
        loop: the worker loop it lives on ("0", "1", ...) or "host".
        status: starting, running, restarting, stopping, stopped or failed.
        mailbox_depth: messages waiting now.
        mailbox_high_water: the largest depth seen.
        mailbox_capacity: the mailbox's bound.
        processed: messages handled without an exception (updated once per burst).
        rate: messages handled per second over the last second or so (0.0 at first sight).
        failed: handler failures.
        restarts: times it was restarted.
        children: its live children now.
        machine_state: for a `StateMachine`, the class name of its current state ("" for
            other actors, and before the machine started).

    Example:
        ```python
        view = actors.inspector.SystemView.of(system).actor("/user/bank")
        print(view.type, view.mailbox_depth, view.rate)
        ```
    """

    node: str
    path: str
    name: str
    type: str
    loop: str
    status: str
    mailbox_depth: int
    mailbox_high_water: int
    mailbox_capacity: int
    processed: int
    rate: float
    failed: int
    restarts: int
    children: int
    machine_state: str = ""


class ChildrenPage(msgspec.Struct, frozen=True):
    """One page of one actor's children, in start order.

    Attributes:
        node: the node the parent lives on.
        parent: the parent itself.
        offset: the index of the first child on this page.
        limit: the most children the page could hold.
        total: the parent's live children now (all pages).
        actors: the children on this page.

    Example:
        ```python
        page = view.children("/user", offset=0, limit=100)
        more = page.offset + len(page.actors) < page.total
        ```
    """

    node: str
    parent: ActorView
    offset: int
    limit: int
    total: int
    actors: tuple[ActorView, ...]


class LoopView(msgspec.Struct, frozen=True):
    """One event loop of a node.

    Attributes:
        loop: the worker index, or "host".
        actors: actors living on it at the last census.
        cpu_percent: CPU its thread used over the last second or so, in percent of one
            core (None where the OS cannot tell, or at first sight).
        lag_seconds: how long the watchdog's last probe waited to run on it (None with the
            watchdog off or before it first looked).
        max_lag_seconds: the largest lag seen.
        blocked: True while a handler holds the loop past the watchdog's short limit.

    Example:
        ```python
        stuck = [loop.loop for loop in view.overview().nodes[0].loops if loop.blocked]
        ```
    """

    loop: str
    actors: int
    cpu_percent: float | None
    lag_seconds: float | None
    max_lag_seconds: float
    blocked: bool


class BlockedWarning(msgspec.Struct, frozen=True):
    """A warning of the watchdog: a handler held a worker loop too long.

    Attributes:
        at: when it was logged (seconds since the epoch).
        message: the warning as logged (names the loop, the actor and its message type).

    Example:
        ```python
        for warning in view.overview().nodes[0].warnings:
            print(time.ctime(warning.at), warning.message)
        ```
    """

    at: float
    message: str


class PublicActorView(msgspec.Struct, frozen=True):
    """An actor a node serves under a public name (``spawn(public=True)``).

    Attributes:
        name: the public name other nodes look it up by.
        path: its path on its node.
        type: its actor class's qualified name.

    Example:
        ```python
        names = [actor.name for actor in view.overview().nodes[0].public]
        ```
    """

    name: str
    path: str
    type: str


class GroupView(msgspec.Struct, frozen=True):
    """A pool a node serves under a public name (`actors.cluster.serve_pool`).

    Every node serving the name is a member of the name's group; each node lists its own
    pool, so the group's members are the nodes whose `NodeView.groups` hold the name.

    Attributes:
        name: the public name of the group.
        path: the path of the pool's supervisor on this node.
        size: the pool's workers now.
        workers: the paths of its first workers (at most `MAX_LISTED`).

    Example:
        ```python
        serving = [n.name for n in overview.nodes if any(g.name == "resize" for g in n.groups)]
        ```
    """

    name: str
    path: str
    size: int
    workers: tuple[str, ...]


class DurableView(msgspec.Struct, frozen=True):
    """A durable mailbox a node consumes (``spawn(durable=True)``).

    Attributes:
        name: the actor's public name (also the mailbox's).
        path: the actor's path on its node.
        in_flight: messages fetched from the stream and not yet acknowledged (the stream's
            own depth would cost a server round trip, so it is not shown).

    Example:
        ```python
        busy = [d.name for d in overview.nodes[0].durable if d.in_flight]
        ```
    """

    name: str
    path: str
    in_flight: int


class NodeView(msgspec.Struct, frozen=True):
    """One node (one `ActorSystem`) in an `Overview`.

    Attributes:
        name: the node's name (the system's ``name``).
        local: True for the system this process runs (the only node without a cluster).
        running: whether the system is running.
        actors: live actors at the last census (the root guardian excluded).
        top_level: the root guardian's live children now.
        root: the path of the root guardian, where the tree starts.
        loops: its event loops.
        dead_letters: dead letters so far.
        pools: worker pools at the last census.
        subscriptions: event bus subscriptions now.
        warnings: the latest blocked-loop warnings, oldest first.
        census_age: seconds since the census that ``actors``, ``loops`` and ``pools``
            come from.
        public: with a cluster, its public actors (the first `MAX_LISTED` by name).
        groups: with a cluster, the pools it serves under a public name (`MAX_LISTED`).
        durable: with a cluster, its durable mailboxes (the first `MAX_LISTED`).
        listed_total: public actors, groups and durable mailboxes in all, when some were
            left out of the lists above.
        age: for another node, seconds since its answer was received (0.0 for this one).
        error: for another node, why its summary is missing or old ("" when it answered).

    Example:
        ```python
        node = view.overview().nodes[0]
        print(node.name, node.actors, node.dead_letters)
        ```
    """

    name: str
    local: bool
    running: bool
    actors: int
    top_level: int
    root: str
    loops: tuple[LoopView, ...]
    dead_letters: int
    pools: int
    subscriptions: int
    warnings: tuple[BlockedWarning, ...]
    census_age: float
    public: tuple[PublicActorView, ...] = ()
    groups: tuple[GroupView, ...] = ()
    durable: tuple[DurableView, ...] = ()
    listed_total: int = 0
    age: float = 0.0
    error: str = ""


class Overview(msgspec.Struct, frozen=True):
    """What the inspector's header shows: the nodes, each with its loops and counts.

    Attributes:
        at: when it was taken (seconds since the epoch).
        nodes: the nodes; without a cluster, just this one.

    Example:
        ```python
        overview = actors.inspector.SystemView.of(system).overview()
        print(msgspec.json.encode(overview).decode())
        ```
    """

    at: float
    nodes: tuple[NodeView, ...]


class PoolView(msgspec.Struct, frozen=True):
    """A worker pool and (the first page of) its workers.

    Attributes:
        node: the node it lives on.
        path: the path of its supervisor (``/user/<name>``).
        routing: the routing the pool was spawned with: ``"round-robin"``,
            ``"least-loaded"``, ``"consistent-hash"``, ``"broadcast"`` or ``"pull"``.
        size: its workers now.
        queued: for pull routing, messages waiting in the shared queue; else 0.
        workers: the first `MAX_PAGE` workers.

    Example:
        ```python
        for pool in view.pools():
            print(pool.path, pool.routing, sum(w.mailbox_depth for w in pool.workers))
        ```
    """

    node: str
    path: str
    routing: str
    size: int
    queued: int
    workers: tuple[ActorView, ...]


class SubscriptionView(msgspec.Struct, frozen=True):
    """One event bus subscription (`actors.Subscription`, with names instead of objects).

    Attributes:
        subscriber: the subscribed actor's path.
        event_type: the qualified name of the class subscribed to.
        policy: ``"drop_newest"``, ``"drop_oldest"`` or ``"wait"``.
        delivered: events put in the subscriber's mailbox.
        dropped: events not put in it.
        evicted: older events taken out unhandled to make room (``drop_oldest``).

    Example:
        ```python
        lossy = [s for s in view.subscriptions().subscriptions if s.dropped]
        ```
    """

    subscriber: str
    event_type: str
    policy: str
    delivered: int
    dropped: int
    evicted: int


class SubscriptionsPage(msgspec.Struct, frozen=True):
    """A page of the event bus's subscriptions.

    Attributes:
        offset: the index of the first one on this page.
        total: subscriptions now (all pages).
        subscriptions: those on this page.

    Example:
        ```python
        page = view.subscriptions(offset=0, limit=50)
        ```
    """

    offset: int
    total: int
    subscriptions: tuple[SubscriptionView, ...]


class DeadLetterView(msgspec.Struct, frozen=True):
    """One dead letter as the inspector shows it.

    Attributes:
        seq: its number in this view's stream (1, 2, ...): ask for those after the last.
        at: when the inspector got it (seconds since the epoch).
        recipient: the path of the actor it was meant for.
        type: the message's qualified class name.
        message: the message's ``repr``, cut at 200 characters.
        reason: "failed", "killed" or "stopped".

    Example:
        ```python
        page = view.dead_letters(after=last_seq)
        last_seq = page.letters[-1].seq if page.letters else last_seq
        ```
    """

    seq: int
    at: float
    recipient: str
    type: str
    message: str
    reason: str


class DeadLettersPage(msgspec.Struct, frozen=True):
    """The recent dead letters after a given sequence number.

    Attributes:
        total: dead letters of the system so far (also those before the view watched).
        letters: those kept (the latest 200) with a ``seq`` above the one asked for.

    Example:
        ```python
        page = view.dead_letters(after=0)
        print(page.total, [letter.recipient for letter in page.letters])
        ```
    """

    total: int
    letters: tuple[DeadLetterView, ...]


# -- the parts -----------------------------------------------------------------------------


class _Rates:
    """Per-key rates from counters read at least `_RATE_WINDOW` apart; thread-safe.

    Keeps the latest `_RATES_KEPT` keys (least recently read go first), so a client paging
    through a huge tree cannot make it grow without bound.
    """

    def __init__(self, kept: int = _RATES_KEPT) -> None:
        self._lock = threading.Lock()
        self._kept = kept
        # key -> (time of the reading, the counter then, the rate found at that reading)
        self._last: collections.OrderedDict[str, tuple[float, float, float]] = (
            collections.OrderedDict()
        )

    def rate(self, key: str, counter: float, now: float) -> float | None:
        """The counter's rate per second; None at the first reading of ``key``."""
        with self._lock:
            last = self._last.get(key)
            if last is None:
                self._last[key] = (now, counter, -1.0)
                if len(self._last) > self._kept:
                    self._last.popitem(last=False)
                return None
            self._last.move_to_end(key)
            at, value, rate = last
            if now - at < _RATE_WINDOW:
                return rate if rate >= 0.0 else None
            rate = max(0.0, (counter - value) / (now - at))
            self._last[key] = (now, counter, rate)
            return rate


class _Row(NamedTuple):
    cell: Cell
    processed: int
    depth: int
    failed: int
    restarts: int


_RANKS: Final[dict[str, Callable[[_Row], int]]] = {
    "rate": lambda row: row.depth,  # without two censuses yet: the fullest mailboxes
    "depth": lambda row: row.depth,
    "failed": lambda row: row.failed,
    "restarts": lambda row: row.restarts,
}


class _Census:
    """What needs every actor: counts per loop, the pools, and the counters for `top`."""

    __slots__ = ("actors", "cost", "per_home", "pools", "processed", "rows", "taken")

    def __init__(self, cells: list[Cell], taken: float, cost: float) -> None:
        self.taken = taken
        self.cost = cost
        self.actors = len(cells)
        self.per_home: dict[int, tuple[Home, int]] = {}
        self.pools: list[Cell] = []
        self.rows: list[_Row] = []  # per actor, for `top`
        self.processed: dict[int, int] = {}  # id(cell) -> processed, for the next census
        per_home = self.per_home
        rows = self.rows
        for cell in cells:
            home = cell.home
            seen = per_home.get(id(home))
            per_home[id(home)] = (home, 1 if seen is None else seen[1] + 1)
            if cell.actor_class is _PoolSupervisor:
                self.pools.append(cell)
            processed = cell.processed()
            rows.append(_Row(cell, processed, len(cell.mailbox), cell.failed, cell.incarnation))
            self.processed[id(cell)] = processed


class _DeadLetterTap(Actor[DeadLetter]):
    """Subscribed to the system's dead letters: keeps the latest ones for the inspector."""

    def __init__(self, buffer: _LetterBuffer) -> None:
        self._buffer = buffer

    async def receive(self, message: DeadLetter) -> None:
        self._buffer.add(message)


class _LetterBuffer:
    """The latest dead letters, numbered; written by the tap's loop, read by any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._letters: collections.deque[DeadLetterView] = collections.deque(
            maxlen=_DEAD_LETTERS_KEPT
        )
        self._seq = 0

    def add(self, letter: DeadLetter) -> None:
        message = _short_repr(letter.message)
        with self._lock:
            self._seq += 1
            self._letters.append(
                DeadLetterView(
                    seq=self._seq,
                    at=time.time(),
                    recipient=letter.recipient,
                    type=type(letter.message).__qualname__,
                    message=message,
                    reason=letter.reason,
                )
            )

    def after(self, seq: int) -> tuple[DeadLetterView, ...]:
        with self._lock:
            return tuple(letter for letter in self._letters if letter.seq > seq)


class _WatchdogLog(logging.Filter):
    """Keeps the latest blocked-loop warnings of every system's watchdog, by thread name.

    A filter on the ``actors`` logger rather than a handler: it sees each record logged
    there and lets it through unchanged, so adding it changes nothing about where the
    application's logs go (a handler would, for an application without logging set up).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._by_thread: dict[str, collections.deque[BlockedWarning]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and (record.threadName or "").endswith("-watchdog"):
            warning = BlockedWarning(at=record.created, message=record.getMessage())
            with self._lock:
                kept = self._by_thread.get(record.threadName or "")
                if kept is None:
                    kept = self._by_thread[record.threadName or ""] = collections.deque(
                        maxlen=_WARNINGS_KEPT
                    )
                kept.append(warning)
        return True

    def of(self, thread: str, since: float) -> tuple[BlockedWarning, ...]:
        """The warnings of the watchdog thread named ``thread`` logged at ``since`` or later.

        Watchdogs are told apart by thread name, which holds the system's name: two systems
        of the same name running at once share their warnings.
        """
        with self._lock:
            kept = self._by_thread.get(thread, ())
            return tuple(warning for warning in kept if warning.at >= since)


_WATCHDOG_LOG: Final = _WatchdogLog()
_watchdog_log_lock = threading.Lock()
_watchdog_log_installed = False


def _install_watchdog_log() -> None:
    global _watchdog_log_installed
    with _watchdog_log_lock:
        if not _watchdog_log_installed:
            logging.getLogger("actors").addFilter(_WATCHDOG_LOG)
            _watchdog_log_installed = True


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception as error:  # a user's __repr__ that fails must not break the view
        text = f"<{type(value).__qualname__}: repr failed: {error!r}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 1] + "…"


def check_page(offset: int, limit: int) -> None:
    """Raise ValueError unless ``0 <= offset`` and ``1 <= limit <= MAX_PAGE``."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")


# -- the view ------------------------------------------------------------------------------


class SystemView:
    """A read-only, thread-safe view of one `ActorSystem` for inspectors.

    Get the one view of a system with `SystemView.of` (it keeps state across calls: the
    readings rates are taken from, the census, the dead letters seen). Every method may be
    called from any thread or event loop, while the system runs or after it stopped; none
    waits on the system's loops. See the module docstring of `actors._inspect` for the
    consistency offered (slightly torn, never crashing) and the bounded cost.

    Example:
        ```python
        view = actors.inspector.SystemView.of(system)
        page = view.children("/user", limit=20)
        for child in page.actors:
            print(child.path, child.type, child.mailbox_depth, child.rate)
        ```
    """

    _views: ClassVar[weakref.WeakKeyDictionary[ActorSystem, SystemView]] = (
        weakref.WeakKeyDictionary()
    )
    _views_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._rates = _Rates()
        self._cpu = _Rates(kept=1024)
        self._census_lock = threading.Lock()
        self._census: _Census | None = None
        self._previous: _Census | None = None
        self._letters = _LetterBuffer()
        self._tap_lock = threading.Lock()
        self._tapped = False
        self._watchdog_thread = thread_name(system.name, "watchdog")
        self._born = time.time()  # warnings logged before are an earlier system's
        _install_watchdog_log()

    @classmethod
    def of(cls, system: ActorSystem) -> SystemView:
        """The view of ``system`` (made at the first call, shared by later ones).

        Example:
            ```python
            view = SystemView.of(system)
            assert SystemView.of(system) is view
            ```
        """
        with cls._views_lock:
            view = cls._views.get(system)
            if view is None:
                view = cls._views[system] = cls(system)
            return view

    def __repr__(self) -> str:
        return f"<SystemView {self.node}>"

    @property
    def node(self) -> str:
        """The name of the node this view shows (the system's name)."""
        return self._system.name

    @property
    def system(self) -> ActorSystem:
        """The system this view shows."""
        return self._system

    # -- the tree --------------------------------------------------------------------------

    def _cell(self, path: str) -> Cell:
        cell = self._system.tree.find(path)
        if cell is None:
            raise LookupError(f"no live actor at {path!r} in actor system {self.node}")
        return cell

    def _view(self, cell: Cell, now: float) -> ActorView:
        box = cell.mailbox.statistics()
        processed = cell.processed()
        rate = self._rates.rate(cell.path, processed, now)
        actor_class = cell.actor_class
        children = cell.children
        return ActorView(
            node=self.node,
            path=cell.path,
            name=cell.name,
            type=actor_class.__qualname__ if actor_class is not None else "",
            loop=cell.home.label,
            status=cell.status,
            mailbox_depth=box.depth,
            mailbox_high_water=box.high_water,
            mailbox_capacity=box.capacity,
            processed=processed,
            rate=round(rate, 2) if rate is not None else 0.0,
            failed=cell.failed,
            restarts=cell.incarnation,
            children=len(children) if children else 0,
            machine_state=current_state(cell.instance),
        )

    def root(self) -> str:
        """The path of the root guardian (``/user``), where the tree starts.

        Raises:
            LookupError: the system has not started.

        Example:
            ```python
            page = view.children(view.root())
            ```
        """
        root = self._system.tree.root
        if root is None:
            raise LookupError(f"actor system {self.node} has not started")
        return root.path

    def actor(self, path: str) -> ActorView:
        """The live actor at ``path``.

        Raises:
            LookupError: no live actor there.

        Example:
            ```python
            bank = view.actor("/user/bank")
            ```
        """
        return self._view(self._cell(path), time.monotonic())

    def children(self, path: str, *, offset: int = 0, limit: int = 100) -> ChildrenPage:
        """A page of the live children of the actor at ``path``, in start order.

        Costs the page, not the parent's children: one slice under the tree's lock.

        Raises:
            LookupError: no live actor at ``path``.
            ValueError: ``offset`` below 0, or ``limit`` not within 1..`MAX_PAGE`.

        Example:
            ```python
            page = view.children("/user", offset=100, limit=100)  # the second hundred
            ```
        """
        check_page(offset, limit)
        parent = self._cell(path)
        tree = self._system.tree
        with tree.lock:
            children = parent.children
            total = len(children) if children else 0
            cells = (
                list(itertools.islice(children.values(), offset, offset + limit))
                if children
                else []
            )
        now = time.monotonic()
        return ChildrenPage(
            node=self.node,
            parent=self._view(parent, now),
            offset=offset,
            limit=limit,
            total=total,
            actors=tuple(self._view(cell, now) for cell in cells),
        )

    # -- what needs the whole tree ---------------------------------------------------------

    def _take_census(self) -> _Census:
        """The current census, or a new one if it is older than its cost allows."""
        with self._census_lock:
            census = self._census
            now = time.monotonic()
            if census is not None and now - census.taken < max(
                _CENSUS_MIN_AGE, _CENSUS_FACTOR * census.cost
            ):
                return census
            cells = self._system.cells()[1:]  # not the root guardian
            fresh = _Census(cells, now, 0.0)
            fresh.cost = time.monotonic() - now
            self._previous, self._census = census, fresh
            return fresh

    def _loops(self, census: _Census, now: float) -> tuple[LoopView, ...]:
        system = self._system
        homes: list[Home] = [system.placer.worker(i) for i in range(system.workers)]
        known = {id(home) for home in homes}
        homes += [home for key, (home, _) in census.per_home.items() if key not in known]
        loops: list[LoopView] = []
        for home in homes:
            seen = census.per_home.get(id(home))
            cpu = thread_cpu_seconds(home.thread_id)
            share = None if cpu is None else self._cpu.rate(home.label, cpu, now)
            loops.append(
                LoopView(
                    loop=home.label,
                    actors=seen[1] if seen is not None else 0,
                    cpu_percent=None if share is None else round(100.0 * share, 1),
                    lag_seconds=home.lag,
                    max_lag_seconds=home.max_lag,
                    blocked=home.blocked,
                )
            )
        return tuple(loops)

    def overview(self) -> Overview:
        """The nodes, their loops and counts: this system's first, then, with a cluster,
        the latest answers of the other nodes (see the module notes).

        Example:
            ```python
            node = view.overview().nodes[0]
            print(f"{node.actors} actors on {len(node.loops)} loops")
            ```
        """
        local = self.local_node()
        cluster = self._system.cluster
        if isinstance(cluster, InspectableCluster):
            return Overview(at=time.time(), nodes=cluster.inspect(local))
        return Overview(at=time.time(), nodes=(local,))

    def local_node(self) -> NodeView:
        """This system's node alone, without what a cluster adds (what a node answers).

        Example:
            ```python
            print(view.local_node().actors)
            ```
        """
        system = self._system
        census = self._take_census()
        now = time.monotonic()
        root = system.tree.root
        children = root.children if root is not None else None
        return NodeView(
            name=self.node,
            local=True,
            running=system.running,
            actors=census.actors,
            top_level=len(children) if children else 0,
            root=root.path if root is not None else "",
            loops=self._loops(census, now),
            dead_letters=system.dead_letters.count,
            pools=len(census.pools),
            subscriptions=len(system.events.subscriptions()),
            warnings=_WATCHDOG_LOG.of(self._watchdog_thread, since=self._born),
            census_age=round(now - census.taken, 3),
        )

    def top(self, by: TopOrder = "rate", *, limit: int = 20) -> tuple[ActorView, ...]:
        """The ``limit`` actors ranked first by ``by``, from the census (see the module notes).

        ``"rate"`` ranks by messages handled per second between the last two censuses.

        Raises:
            ValueError: an unknown ``by``, or ``limit`` not within 1..`MAX_PAGE`.

        Example:
            ```python
            for actor in view.top("depth", limit=10):
                print(actor.path, actor.mailbox_depth)
            ```
        """
        if by not in _TOP_ORDERS:
            raise ValueError(f"by must be one of {', '.join(_TOP_ORDERS)}, got {by!r}")
        check_page(0, limit)
        census = self._take_census()
        key: Callable[[_Row], int] = _RANKS[by]
        previous = self._previous
        if by == "rate" and previous is not None:
            # The previous census still holds its cells, so no id in it has been reused.
            before = previous.processed

            def handled_since(row: _Row) -> int:
                return row.processed - before.get(id(row.cell), row.processed)

            key = handled_since

        chosen = heapq.nlargest(limit, census.rows, key=key)
        now = time.monotonic()
        return tuple(self._view(row[0], now) for row in chosen)

    def pools(self) -> tuple[PoolView, ...]:
        """The worker pools (at the last census) with the first page of their workers.

        Example:
            ```python
            for pool in view.pools():
                print(pool.path, pool.routing, pool.size)
            ```
        """
        census = self._take_census()
        now = time.monotonic()
        found: list[PoolView] = []
        for cell in census.pools:
            instance: Any = cell.instance  # one read: None while it restarts or after it ended
            if instance is None:
                continue
            state = instance._state  # the pool's shared state: lock-free reads
            workers = state.routes.workers
            dispatcher = state.dispatcher
            routing: str = state.routing
            queued = 0
            if dispatcher is not None:
                queued = len(cell_of(dispatcher).mailbox)
            views: list[ActorView] = []
            for worker in workers[:MAX_PAGE]:
                with_cell = self._system.tree.find(worker.path)
                if with_cell is not None:
                    views.append(self._view(with_cell, now))
            found.append(
                PoolView(
                    node=self.node,
                    path=cell.path,
                    routing=routing,
                    size=len(workers),
                    queued=queued,
                    workers=tuple(views),
                )
            )
        return tuple(found)

    def subscriptions(self, *, offset: int = 0, limit: int = 100) -> SubscriptionsPage:
        """A page of the event bus's subscriptions, with their counts.

        Raises:
            ValueError: ``offset`` below 0, or ``limit`` not within 1..`MAX_PAGE`.

        Example:
            ```python
            for sub in view.subscriptions().subscriptions:
                print(sub.subscriber, sub.event_type, sub.delivered, sub.dropped)
            ```
        """
        check_page(offset, limit)
        every = self._system.events.subscriptions()
        return SubscriptionsPage(
            offset=offset,
            total=len(every),
            subscriptions=tuple(
                SubscriptionView(
                    subscriber=sub.subscriber.path,
                    event_type=sub.event_type.__qualname__,
                    policy=sub.policy,
                    delivered=sub.delivered,
                    dropped=sub.dropped,
                    evicted=sub.evicted,
                )
                for sub in every[offset : offset + limit]
            ),
        )

    # -- dead letters ----------------------------------------------------------------------

    async def watch_dead_letters(self) -> bool:
        """Start keeping the system's dead letters (the latest 200) for `dead_letters`.

        Spawns one small actor, ``/user/inspector-dead-letters``, subscribed to
        ``system.dead_letters`` (dead letters before this call are counted, not kept).
        Idempotent; False if the system is not running (nothing to watch).

        Cancellation: cancelled while the actor starts, it is stopped again and a later
        call tries anew.

        Example:
            ```python
            await view.watch_dead_letters()
            letters = view.dead_letters(after=0).letters
            ```
        """
        with self._tap_lock:
            if self._tapped:
                return True
            self._tapped = True
        buffer = self._letters
        try:
            tap = await self._system.spawn(
                lambda: _DeadLetterTap(buffer), name="inspector-dead-letters", capacity=1000
            )
        except (SystemNotRunning, DuplicateName):
            with self._tap_lock:
                self._tapped = False
            return False
        except BaseException:
            with self._tap_lock:
                self._tapped = False
            raise
        self._system.dead_letters.subscribe(tap)
        return True

    def dead_letters(self, *, after: int = 0) -> DeadLettersPage:
        """The dead letters kept since `watch_dead_letters` with a ``seq`` above ``after``.

        Example:
            ```python
            page = view.dead_letters(after=last_seq)
            ```
        """
        return DeadLettersPage(
            total=self._system.dead_letters.count, letters=self._letters.after(after)
        )
