"""The typed event bus: publish an event, every subscriber of its type (or a base) gets it.

Design notes:

* **Routing by class.** Subscriptions are keyed by event class. `EventBus.publish` walks
  ``type(event).__mro__``, so a subscriber of a base class gets every subclass's events. An
  actor subscribed to several classes on the path gets one copy, through its most specific
  subscription. The walk's result is cached per concrete event class.
* **Lock-free reads, copy-on-write writes.** The registry (who is subscribed to what) is
  guarded by ``_lock`` and changes only on subscribe/unsubscribe, which are rare. Each change
  publishes a new `_Routes` (one attribute store): a mapping of tuples that is never mutated
  again, with a fresh cache. A publisher reads ``_routes`` once and works on that snapshot
  without a lock; the cache it fills belongs to the same snapshot, so an entry computed from
  stale routes can never end up in a newer cache.
* **Policies.** Delivery goes straight to the subscriber's mailbox (the event's type was
  checked against the subscriber at subscribe time, its sendability once per publish):
  ``drop_newest`` is a ``put_nowait``, ``drop_oldest`` a ``put_evicting`` (the mailbox drops
  its oldest queued event of the subscribed class to make room), ``wait`` a `deliver`, as
  `ActorRef.send` (so an actor publishing to its own full mailbox drops the event rather than
  wait for itself). The non-blocking subscribers of an event are served first, so a slow
  ``wait`` subscriber never delays them.
* **Counts are exact.** Each subscription counts its outcomes under its own lock, so that
  ``delivered + dropped`` is exactly the number of events offered to it, even with publishers
  on several threads (and without the GIL).
* **Dead subscribers.** At the first subscription of an actor the bus hooks its
  ``terminated`` latch; when the actor stops for good, all its subscriptions go. An event
  offered to a subscriber that is stopping meanwhile counts as dropped.
* **The cluster.** A cluster transport (``actors.cluster``) bridges the bus (`bridge`): it
  is handed every event `publish` commits to (checked sendable, past the cooperative
  checkpoint), in publish order per thread, and it hands events from other nodes to
  `publish_local`, which never forwards (no loops). Without a cluster the hook is one
  attribute read and a None test per publish. Policies and counts stay local to each node.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec

from ._checkpoint import checkpoint
from ._delivery import deliver
from ._errors import ActorStopped, MessageTypeError
from ._mailbox import OK
from ._message import Ask
from ._ref import COOPERATIVE_BUDGET, ActorRef, cell_of
from ._sendable import check_sendable

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._cell import Cell
    from ._system import ActorSystem

__all__ = ("EventBus", "Policy", "Subscription")

E = TypeVar("E")

Policy = Literal["drop_newest", "drop_oldest", "wait"]
"""What a subscription does with an event when its subscriber's mailbox is full."""

_POLICIES: Final = ("drop_newest", "drop_oldest", "wait")


class Subscription(msgspec.Struct, frozen=True):
    """A snapshot of one subscription and its counts, from `EventBus.subscriptions`.

    Every event offered to the subscription is either delivered or dropped, so
    ``delivered + dropped`` is the number of events published to it.

    Attributes:
        subscriber: the subscribed actor.
        event_type: the class it subscribed to (it also gets the subclasses' events).
        policy: ``"drop_newest"``, ``"drop_oldest"`` or ``"wait"``.
        delivered: events put in the subscriber's mailbox.
        dropped: events not put in it: the mailbox was full (``drop_newest``; or
            ``drop_oldest`` with nothing to evict) or closed (the subscriber was stopping).
        evicted: for ``drop_oldest``, older events taken out of the mailbox unhandled to
            make room for a newer one; the subscriber handles ``delivered - evicted``.

    Example:
        ```python
        for sub in system.events.subscriptions():
            print(sub.subscriber.path, sub.event_type.__name__, sub.delivered, sub.dropped)
        ```
    """

    subscriber: ActorRef[Any]
    event_type: type[Any]
    policy: str
    delivered: int
    dropped: int
    evicted: int


class _Sub:
    """One subscription: where events go, how, and its counts (under ``lock``)."""

    __slots__ = (
        "active",
        "cell",
        "delivered",
        "dropped",
        "event_type",
        "evicted",
        "is_victim",
        "lock",
        "policy",
        "ref",
    )

    def __init__(self, ref: ActorRef[Any], event_type: type[Any], policy: Policy) -> None:
        self.ref = ref
        self.cell: Cell = cell_of(ref)
        self.event_type = event_type
        # Written under the bus's lock; a publisher holding an older snapshot may still see
        # the previous policy for one event, which is harmless.
        self.policy: Policy = policy
        self.active = True  # False once unsubscribed: in-flight publishers skip it
        self.lock = threading.Lock()
        self.delivered = 0
        self.dropped = 0
        self.evicted = 0

        def is_victim(queued: object) -> bool:
            # An ask envelope is never evicted: its asker would wait for a reply forever.
            return type(queued) is not Ask and isinstance(queued, event_type)

        self.is_victim = is_victim

    def offer_nowait(self, event: object) -> int:
        """Deliver under ``drop_newest`` or ``drop_oldest``; 1 if delivered, else 0."""
        if not self.active:
            return 0
        box = self.cell.mailbox
        if self.policy == "drop_oldest":
            code, victim = box.put_evicting(event, self.is_victim)
            if code == OK:
                with self.lock:
                    self.delivered += 1
                    if victim is not None:
                        self.evicted += 1
                return 1
        elif box.put_nowait(event) == OK:
            with self.lock:
                self.delivered += 1
            return 1
        with self.lock:
            self.dropped += 1
        return 0

    async def offer_waiting(self, event: object) -> int:
        """Deliver under ``wait``: wait for room like `ActorRef.send`; 1 if delivered."""
        if not self.active:
            return 0
        try:
            # FULL only for an actor publishing to itself, which must not wait: a drop.
            code = await deliver(self.cell, event)
        except BaseException:
            # Cancelled while waiting for room: nothing was enqueued.
            with self.lock:
                self.dropped += 1
            raise
        with self.lock:
            if code == OK:
                self.delivered += 1
                return 1
            self.dropped += 1
            return 0

    def snapshot(self) -> Subscription:
        with self.lock:
            return Subscription(
                subscriber=self.ref,
                event_type=self.event_type,
                policy=self.policy,
                delivered=self.delivered,
                dropped=self.dropped,
                evicted=self.evicted,
            )


_Entry = tuple[tuple[_Sub, ...], tuple[_Sub, ...]]  # (drop_* subscriptions, wait ones)


class _Routes:
    """One published state of the registry. ``by_type`` is never mutated once published."""

    __slots__ = ("by_type", "cache")

    def __init__(self, by_type: dict[type[Any], tuple[_Sub, ...]]) -> None:
        self.by_type = by_type
        # Filled by publishers on any thread without a lock: an entry only depends on
        # ``by_type``, so a racing duplicate insert stores an equal value.
        self.cache: dict[type[Any], _Entry] = {}

    def resolve(self, cls: type[Any]) -> _Entry:
        """The subscriptions an event of class ``cls`` goes to: one per subscriber."""
        seen: set[Cell] = set()
        nowait: list[_Sub] = []
        waiting: list[_Sub] = []
        by_type = self.by_type
        for base in cls.__mro__:
            for sub in by_type.get(base, ()):
                if sub.cell in seen:
                    continue  # subscribed to a more specific class as well: one copy
                seen.add(sub.cell)
                (waiting if sub.policy == "wait" else nowait).append(sub)
        entry = (tuple(nowait), tuple(waiting))
        self.cache[cls] = entry
        return entry


class EventBus:
    """A typed publish/subscribe bus: the system's is `ActorSystem.events`.

    Actors subscribe to an event *class*; `publish` delivers an event to the subscribers of
    its class and of its base classes, each subscriber once. `subscribe` and `unsubscribe`
    are synchronous and may be called from anywhere (actors' handlers, the host, threads).
    A subscriber that stops for good is unsubscribed automatically.

    Each subscription has a policy for a subscriber whose mailbox is full:

    * ``"drop_newest"`` (the default): the new event is dropped for that subscriber;
    * ``"drop_oldest"``: the oldest queued event of the subscribed class is taken out of the
      mailbox to make room for the new one (if there is none, the new one is dropped);
    * ``"wait"``: `publish` waits for room, as `ActorRef.send` does (backpressure).

    The first two never make the publisher wait. Drops and evictions are counted per
    subscription: see `subscriptions`.

    Example:
        ```python
        class UserSignedUp(msgspec.Struct, frozen=True):
            name: str

        auditor = await system.spawn(Auditor)  # an Actor[UserSignedUp]
        system.events.subscribe(auditor, UserSignedUp)
        await system.events.publish(UserSignedUp("ada"))
        ```
    """

    __slots__ = ("_forward", "_hooked", "_lock", "_publishes", "_routes", "_subs", "_system")

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._lock = threading.Lock()
        # Under _lock: every subscription, by subscriber then class (in subscription order),
        # and the subscribers whose end is already hooked.
        self._subs: dict[Cell, dict[type[Any], _Sub]] = {}
        self._hooked: set[Cell] = set()
        self._routes = _Routes({})  # replaced, never mutated (see the module docstring)
        # A heuristic shared by every publisher, as ActorRef's: a lost update under a race
        # only shifts a yield.
        self._publishes = 0
        # The cluster's forwarder (`bridge`): one attribute store, read once per publish.
        self._forward: Callable[[object], None] | None = None

    def __repr__(self) -> str:
        with self._lock:
            count = sum(map(len, self._subs.values()))
        return f"<EventBus subscriptions={count}>"

    def subscribe(
        self, ref: ActorRef[E], event_type: type[E], *, policy: Policy = "drop_newest"
    ) -> None:
        """Deliver every later event of class ``event_type`` (or a subclass) to ``ref``.

        Subscribing the same actor to the same class again only changes the policy (its
        counts are kept). An actor subscribed to a class and to its base gets each event
        once, under the more specific subscription.

        Args:
            ref: the subscriber; it must accept every ``event_type`` event.
            event_type: the class of events to get.
            policy: what to do when the subscriber's mailbox is full: ``"drop_newest"``
                (the default), ``"drop_oldest"`` or ``"wait"`` (see `EventBus`).

        Raises:
            MessageTypeError: the actor does not accept ``event_type``.
            ValueError: an unknown policy.
            TypeError: ``ref`` is not an `ActorRef`, or ``event_type`` is not a class.
            ActorStopped: the actor has already stopped.

        Example:
            ```python
            system.events.subscribe(dashboard, PriceChanged, policy="drop_oldest")
            system.events.subscribe(ledger, Trade, policy="wait")  # never misses one
            ```
        """
        if not isinstance(ref, ActorRef):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"subscribe() needs an ActorRef, got {ref!r}")
        if not isinstance(event_type, type):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"subscribe() needs an event class, got {event_type!r}")
        if policy not in _POLICIES:
            raise ValueError(
                f"policy must be one of {', '.join(map(repr, _POLICIES))}, got {policy!r}"
            )
        cell: Cell = cell_of(ref)
        accepts = cell.accepts
        if accepts is not None and not issubclass(event_type, accepts):
            names = " | ".join(t.__qualname__ for t in accepts)
            raise MessageTypeError(
                f"actor {cell.path} cannot subscribe to {event_type.__qualname__}: "
                f"it accepts {names}"
            )
        if cell.terminated.is_set:
            raise ActorStopped(f"actor {cell.path} has stopped; it cannot subscribe")
        with self._lock:
            mine = self._subs.get(cell)
            if mine is None:
                mine = self._subs[cell] = {}
            sub = mine.get(event_type)
            if sub is not None:
                if sub.policy == policy:
                    return
                sub.policy = policy
                self._routes = _Routes(self._routes.by_type)  # a fresh cache
                return
            sub = mine[event_type] = _Sub(ref, event_type, policy)
            by_type = dict(self._routes.by_type)
            by_type[event_type] = (*by_type.get(event_type, ()), sub)
            self._routes = _Routes(by_type)
            hook = cell not in self._hooked
            self._hooked.add(cell)
        if hook:
            # Runs at once if the actor has stopped meanwhile, else on the thread that ends
            # it. Once per actor: the latch keeps its callbacks until it is set.
            cell.terminated.when_set(functools.partial(self._forget, cell))

    def unsubscribe(self, ref: ActorRef[Any], event_type: type[Any] | None = None) -> None:
        """Stop delivering ``event_type`` events (all of them, if None) to ``ref``.

        Subscriptions that do not exist are ignored. A `publish` already under way may still
        deliver one event to it.

        Example:
            ```python
            system.events.unsubscribe(dashboard, PriceChanged)
            system.events.unsubscribe(ledger)  # every subscription of ledger
            ```
        """
        cell: Cell = cell_of(ref)
        with self._lock:
            self._remove_locked(cell, event_type)

    def _forget(self, cell: Cell, reason: object) -> None:
        # The subscriber has stopped for good (its terminated latch is set).
        with self._lock:
            self._hooked.discard(cell)
            self._remove_locked(cell, None)

    def _remove_locked(self, cell: Cell, event_type: type[Any] | None) -> None:
        mine = self._subs.get(cell)
        if not mine:
            return
        kinds = list(mine) if event_type is None else [event_type]
        removed = [mine.pop(kind) for kind in kinds if kind in mine]
        if not mine:
            del self._subs[cell]
        if not removed:
            return
        by_type = dict(self._routes.by_type)
        for sub in removed:
            sub.active = False
            rest = tuple(s for s in by_type[sub.event_type] if s is not sub)
            if rest:
                by_type[sub.event_type] = rest
            else:
                del by_type[sub.event_type]
        self._routes = _Routes(by_type)

    async def publish(self, event: object) -> int:
        """Deliver ``event`` to the subscribers of its class and of its base classes.

        Subscribers with ``drop_newest`` or ``drop_oldest`` are served first and never make
        the call wait; then those with ``wait``, one after the other, each as
        `ActorRef.send` (waiting while its mailbox is full). Events from one publisher
        reach each subscriber in the order they were published. Like ``send``, every
        `COOPERATIVE_BUDGET`-th call yields to the event loop once, before delivering.

        With a cluster (``ActorSystem(cluster=...)``), the event also goes to the
        subscribers on every other node (see ``docs/cluster.md``, "Events across nodes").

        Returns:
            The number of subscribers *on this node* the event was delivered to (deliveries
            on other nodes happen later, and are counted there).

        Raises:
            NotSendableError: the event is mutable (delivered to nobody).

        Cancellation: subscribers already served keep the event; the ``wait`` subscriber
        being waited for (counted as dropped) and those after it do not get it. Once past
        its yield the event has gone to the cluster as well.

        Example:
            ```python
            delivered = await system.events.publish(PriceChanged("ACME", 101.5))
            ```
        """
        check_sendable(event, "event")
        routes = self._routes
        entry = routes.cache.get(type(event))
        if entry is None:
            entry = routes.resolve(type(event))
        publishes = self._publishes + 1
        if publishes >= COOPERATIVE_BUDGET:
            self._publishes = 0  # before the yield: concurrent publishers see the reset
            await checkpoint()  # before delivering: cancelled here, none sent
        else:
            self._publishes = publishes
        forward = self._forward
        if forward is not None:
            forward(event)  # never raises, never waits: see `bridge`
        nowait, waiting = entry
        delivered = 0
        for sub in nowait:
            delivered += sub.offer_nowait(event)
        for sub in waiting:
            delivered += await sub.offer_waiting(event)
        return delivered

    async def publish_local(self, event: object) -> int:
        """Deliver ``event`` to this node's subscribers only, never to the cluster.

        What a cluster transport calls for an event that another node published; the same
        routing and policies as `publish`, without its cooperative yield (the caller is the
        transport's receiving loop).

        Returns:
            The number of local subscribers the event was delivered to.

        Raises:
            NotSendableError: the event is mutable (delivered to nobody).

        Cancellation: as `publish`.

        Example:
            ```python
            await system.events.publish_local(PriceChanged("ACME", 101.5))
            ```
        """
        check_sendable(event, "event")
        routes = self._routes
        nowait, waiting = routes.cache.get(type(event)) or routes.resolve(type(event))
        # The delivery loop of `publish`, repeated rather than shared: a helper coroutine
        # would cost every `publish` one more frame.
        delivered = 0
        for sub in nowait:
            delivered += sub.offer_nowait(event)
        for sub in waiting:
            delivered += await sub.offer_waiting(event)
        return delivered

    def wants(self, cls: type[Any]) -> bool:
        """Whether an event of class ``cls`` would reach any subscriber here right now.

        Lets a cluster transport skip decoding events nobody on this node subscribes to.

        Example:
            ```python
            if system.events.wants(PriceChanged):
                ...
            ```
        """
        routes = self._routes
        nowait, waiting = routes.cache.get(cls) or routes.resolve(cls)
        return bool(nowait or waiting)

    def subscribed_types(self) -> frozenset[type[Any]]:
        """The classes that have at least one subscriber now (a snapshot).

        Example:
            ```python
            assert PriceChanged in system.events.subscribed_types()
            ```
        """
        return frozenset(self._routes.by_type)

    def bridge(self, forward: Callable[[object], None] | None) -> None:
        """Hand every event `publish` commits to ``forward`` too (None: stop); for a cluster.

        ``forward`` is called in the publisher's thread, after the event was checked and
        before any local delivery, in publish order per thread. It must neither raise nor
        wait: an event that cannot cross is the forwarder's to count and log. Events a
        transport receives from other nodes go to `publish_local`, never back here.

        Raises:
            RuntimeError: another forwarder is already bridged (one cluster per system).

        Example:
            ```python
            system.events.bridge(forwarder.forward)  # actors.cluster does this at attach
            system.events.bridge(None)  # ... and this at detach
            ```
        """
        with self._lock:
            if forward is not None and self._forward is not None:
                raise RuntimeError("the event bus is already bridged to a cluster")
            self._forward = forward

    def subscriptions(self, ref: ActorRef[Any] | None = None) -> tuple[Subscription, ...]:
        """A snapshot of the current subscriptions (of ``ref`` only, if given), with counts.

        Grouped by subscriber, each in subscription order. The subscriptions of actors that
        have stopped are gone, with their counts.

        Example:
            ```python
            (sub,) = system.events.subscriptions(dashboard)
            assert sub.delivered + sub.dropped == published
            ```
        """
        with self._lock:
            # An actor whose end was just announced (`join` returned) may not have had its
            # hook run yet (the latch wakes waiters first): it is gone all the same.
            for cell in [cell for cell in self._subs if cell.terminated.is_set]:
                self._remove_locked(cell, None)
            if ref is None:
                subs = [sub for mine in self._subs.values() for sub in mine.values()]
            else:
                mine = self._subs.get(cell_of(ref))
                subs = list(mine.values()) if mine else []
        return tuple(sub.snapshot() for sub in subs)
