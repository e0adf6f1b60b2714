"""The event bus: typed subscriptions by class (and base class), the three full-mailbox
policies and their counts, automatic removal of dead subscribers, bad input, and a stress
test with publishers on several loops where every count adds up."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT, Hold, Seen, park, wait_until, waiting_senders
from test_examples import run_example

import actors
from actors import Actor, ActorRef, ActorSystem, EventBus

pytestmark = pytest.mark.anyio


# -- events and actors ---------------------------------------------------------------------


class Event(msgspec.Struct, frozen=True):
    n: int = 0


class Price(Event, frozen=True):
    symbol: str = "ACME"


class Trade(Event, frozen=True):
    qty: int = 1


class Other(msgspec.Struct, frozen=True):
    pass


class Note(msgspec.Struct):  # not frozen: not sendable
    text: str = ""


class Listener(Actor[Event | Other | Seen | Hold]):
    """Records the ``n`` of every Event it handles, in order (-1 for an Other)."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def receive(self, message: Event | Other | Seen | Hold) -> Any:
        match message:
            case Event(n=n):
                self.seen.append(n)
            case Other():
                self.seen.append(-1)
            case Seen():
                return tuple(self.seen)
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
        return None


class PriceOnly(Actor[Price | Seen]):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def receive(self, message: Price | Seen) -> Any:
        if isinstance(message, Seen):
            return tuple(self.seen)
        self.seen.append(message.n)
        return None


def counts(bus: EventBus, ref: ActorRef[Any]) -> tuple[int, int, int]:
    (sub,) = bus.subscriptions(ref)
    return sub.delivered, sub.dropped, sub.evicted


# -- delivery by class ---------------------------------------------------------------------


async def test_publish_reaches_subscribers_of_the_class_and_of_its_bases() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            bus = system.events
            everything = await system.spawn(Listener)
            prices = await system.spawn(PriceOnly)
            bus.subscribe(everything, Event)
            bus.subscribe(prices, Price)
            assert await bus.publish(Price(1)) == 2
            assert await bus.publish(Trade(2)) == 1  # not a Price
            assert await bus.publish(Event(3)) == 1
            assert await bus.publish(Other()) == 0  # nobody subscribed to Other
            assert await everything.ask(Seen()) == (1, 2, 3)
            assert await prices.ask(Seen()) == (1,)
            assert counts(bus, everything) == (3, 0, 0)


async def test_a_subscriber_of_a_class_and_its_base_gets_each_event_once() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            listener = await system.spawn(Listener)
            bus.subscribe(listener, Event)
            bus.subscribe(listener, Price)
            assert await bus.publish(Price(1)) == 1
            assert await bus.publish(Trade(2)) == 1
            assert await listener.ask(Seen()) == (1, 2)
            by_type = {sub.event_type: sub.delivered for sub in bus.subscriptions(listener)}
            assert by_type == {Event: 1, Price: 1}  # the most specific subscription served


async def test_subscribing_again_changes_the_policy_and_keeps_the_counts() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            listener = await system.spawn(Listener)
            bus.subscribe(listener, Event)
            await bus.publish(Event(1))
            bus.subscribe(listener, Event)  # the same again: nothing changes
            bus.subscribe(listener, Event, policy="wait")
            (sub,) = bus.subscriptions()
            assert (sub.policy, sub.delivered, sub.subscriber) == ("wait", 1, listener)
            assert await bus.publish(Event(2)) == 1
            assert counts(bus, listener) == (2, 0, 0)
            assert "subscriptions=1" in repr(bus)


async def test_unsubscribe_one_class_or_all() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            listener = await system.spawn(Listener)
            bus.subscribe(listener, Price)
            bus.subscribe(listener, Trade)
            bus.subscribe(listener, Other)
            bus.unsubscribe(listener, Price)
            bus.unsubscribe(listener, Price)  # unknown now: ignored
            assert await bus.publish(Price(1)) == 0
            assert await bus.publish(Trade(2)) == 1
            bus.unsubscribe(listener)
            assert bus.subscriptions() == ()
            assert await bus.publish(Trade(3)) == 0
            assert await bus.publish(Other()) == 0
            assert await listener.ask(Seen()) == (2,)


async def test_publish_from_inside_an_actor() -> None:
    class Relay(Actor[Trade]):
        async def receive(self, message: Trade) -> None:
            await self.system.events.publish(Price(message.n * 10))

    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            listener = await system.spawn(Listener)
            relay = await system.spawn(Relay)
            system.events.subscribe(listener, Price, policy="wait")
            system.events.subscribe(relay, Trade)
            await system.events.publish(Trade(4))
            await wait_until(lambda: counts(system.events, listener)[0] == 1)
            assert await listener.ask(Seen()) == (40,)


# -- bad input -----------------------------------------------------------------------------


async def test_an_unsendable_event_is_refused_even_without_subscribers() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            with pytest.raises(actors.NotSendableError, match="event of type Note"):
                await system.events.publish(Note("x"))
            listener = await system.spawn(Listener)
            system.events.subscribe(listener, Event)
            with pytest.raises(actors.NotSendableError):
                await system.events.publish([Event(1)])
            assert counts(system.events, listener) == (0, 0, 0)


async def test_subscribe_refuses_bad_input() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            prices = await system.spawn(PriceOnly)
            with pytest.raises(actors.MessageTypeError, match="cannot subscribe to Trade"):
                bus.subscribe(prices, Trade)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
            with pytest.raises(actors.MessageTypeError):
                bus.subscribe(prices, Event)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]  # a base: not every Event is a Price
            with pytest.raises(ValueError, match="policy must be one of"):
                bus.subscribe(prices, Price, policy="drop_all")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
            with pytest.raises(TypeError, match="needs an event class"):
                bus.subscribe(prices, Price(1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
            with pytest.raises(TypeError, match="needs an ActorRef"):
                bus.subscribe("prices", Price)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
            await prices.stop()
            with pytest.raises(actors.ActorStopped):
                bus.subscribe(prices, Price)
            assert bus.subscriptions() == ()


# -- dead subscribers ----------------------------------------------------------------------


async def test_a_subscriber_that_stops_or_fails_is_unsubscribed() -> None:
    class Fragile(Actor[Event]):
        async def receive(self, message: Event) -> None:
            if message.n < 0:
                raise ValueError("negative")

    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            bus = system.events
            stopped = await system.spawn(Listener)
            fragile = await system.spawn(Fragile, restart=actors.Restart.TEMPORARY)
            kept = await system.spawn(Listener)
            for ref in (stopped, fragile, kept):
                bus.subscribe(ref, Event)
            await stopped.stop()
            assert await bus.publish(Event(-1)) == 2  # fragile gets it, and fails
            assert isinstance(await fragile.join(), ValueError)
            assert [sub.subscriber for sub in bus.subscriptions()] == [kept]
            assert await bus.publish(Event(2)) == 1


async def test_a_restarted_subscriber_stays_subscribed() -> None:
    class Fragile(Actor[Event | Seen]):
        def __init__(self) -> None:
            self.seen: list[int] = []

        async def receive(self, message: Event | Seen) -> Any:
            if isinstance(message, Seen):
                return tuple(self.seen)
            if message.n < 0:
                raise ValueError("negative")
            self.seen.append(message.n)
            return None

    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            fragile = await system.spawn(Fragile)  # permanent: restarted behind the same ref
            system.events.subscribe(fragile, Event, policy="wait")
            await system.events.publish(Event(-1))
            await system.events.publish(Event(1))
            assert await fragile.ask(Seen()) == (1,)
            assert counts(system.events, fragile) == (2, 0, 0)


# -- full mailboxes: the policies ----------------------------------------------------------


async def test_drop_newest_keeps_the_oldest_and_counts_the_drops() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            listener = await system.spawn(Listener, capacity=2)
            system.events.subscribe(listener, Event)  # drop_newest is the default
            release = await park(listener)
            delivered = [await system.events.publish(Event(n)) for n in range(5)]
            assert delivered == [1, 1, 0, 0, 0]  # never waited
            assert counts(system.events, listener) == (2, 3, 0)
            release.set()
            assert await listener.ask(Seen()) == (0, 1)


async def test_drop_oldest_evicts_the_oldest_event_of_the_subscribed_class() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            listener = await system.spawn(Listener, capacity=3)
            bus.subscribe(listener, Price, policy="drop_oldest")
            release = await park(listener)
            await listener.send(Other())  # not a Price: never evicted
            delivered = [await bus.publish(Price(n)) for n in range(6)]
            assert delivered == [1] * 6
            assert counts(bus, listener) == (6, 0, 4)  # 4 older prices made room
            release.set()
            assert await listener.ask(Seen()) == (-1, 4, 5)


async def test_drop_oldest_drops_the_new_event_when_nothing_can_be_evicted() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            listener = await system.spawn(Listener, capacity=2)
            bus.subscribe(listener, Price, policy="drop_oldest")
            release = await park(listener)
            await listener.send(Other())
            await listener.send(Trade(7))  # an Event, but not a Price: not evictable
            assert await bus.publish(Price(1)) == 0
            assert counts(bus, listener) == (0, 1, 0)
            release.set()
            assert await listener.ask(Seen()) == (-1, 7)


async def test_drop_oldest_never_evicts_an_ask() -> None:
    class Sink(Actor[object]):
        async def receive(self, message: object) -> Any:
            if isinstance(message, Hold):
                message.entered.set() if message.entered is not None else None
                await message.release.wait()
            return None

    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            sink = await system.spawn(Sink, capacity=1)
            bus.subscribe(sink, object, policy="drop_oldest")
            release = await park(sink)
            async with anyio.create_task_group() as tg:
                tg.start_soon(sink.ask, Seen())  # fills the mailbox with an ask
                await wait_until(lambda: sink.statistics().mailbox.depth == 1)
                assert await bus.publish(Price(1)) == 0  # the ask stays
                release.set()
            assert counts(bus, sink) == (0, 1, 0)


async def test_wait_applies_backpressure_to_the_publisher() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            slow = await system.spawn(Listener, capacity=1)
            fast = await system.spawn(Listener, capacity=10)
            bus.subscribe(slow, Event, policy="wait")
            bus.subscribe(fast, Event)
            release = await park(slow)
            await bus.publish(Event(0))  # fills slow's mailbox
            done = anyio.Event()

            async def publish() -> None:
                await bus.publish(Event(1))
                done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                await wait_until(lambda: waiting_senders(slow) == 1)
                assert not done.is_set()
                # The non-waiting subscriber was served before the publisher began to wait.
                assert counts(bus, fast)[0] == 2
                release.set()
            assert await slow.ask(Seen()) == (0, 1)
            assert counts(bus, slow) == (2, 0, 0)


async def test_a_publish_cancelled_while_waiting_delivers_nothing_and_counts_a_drop() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            slow = await system.spawn(Listener, capacity=1)
            bus.subscribe(slow, Event, policy="wait")
            release = await park(slow)
            await bus.publish(Event(0))
            with anyio.move_on_after(0.05) as cancelled:
                await bus.publish(Event(1))
            assert cancelled.cancelled_caught
            assert counts(bus, slow) == (1, 1, 0)
            release.set()
            assert await slow.ask(Seen()) == (0,)


async def test_a_wait_subscriber_stopping_while_the_publisher_waits() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            bus = system.events
            slow = await system.spawn(Listener, capacity=1)
            bus.subscribe(slow, Event, policy="wait")
            release = await park(slow)
            await bus.publish(Event(0))
            async with anyio.create_task_group() as tg:

                async def publish() -> None:
                    assert await bus.publish(Event(1)) == 0  # released by the stop

                tg.start_soon(publish)
                await wait_until(lambda: waiting_senders(slow) == 1)
                tg.start_soon(slow.stop)
                await wait_until(lambda: slow.statistics().mailbox.closed)
                release.set()
            assert bus.subscriptions() == ()


async def test_an_actor_publishing_to_its_own_full_mailbox_drops_instead_of_deadlocking() -> None:
    class Echo(Actor[Event | Seen]):
        def __init__(self) -> None:
            self.results: list[int] = []

        async def receive(self, message: Event | Seen) -> Any:
            if isinstance(message, Seen):
                return tuple(self.results)
            if message.n == 0:
                with contextlib.suppress(actors.MailboxFull):  # full already: fine too
                    self.ref.try_send(Event(1))  # now its mailbox (capacity 1) is full
                self.results.append(await self.system.events.publish(Event(99)))
            return None

    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            echo = await system.spawn(Echo, capacity=1)
            system.events.subscribe(echo, Event, policy="wait")
            await echo.send(Event(0))
            await wait_until(lambda: counts(system.events, echo) == (0, 1, 0))
            assert await echo.ask(Seen()) == (0,)


# -- stress ----------------------------------------------------------------------------------


class Go(actors.Request[int], frozen=True):
    publisher: int
    count: int


class Tagged(msgspec.Struct, frozen=True):
    publisher: int
    seq: int


class Publisher(Actor[Go]):
    async def receive(self, message: Go) -> int:
        bus = self.system.events
        for seq in range(message.count):
            await bus.publish(Tagged(message.publisher, seq))
        return message.count


class Report(actors.Request[tuple[int, bool]], frozen=True):
    pass


class Tally(Actor[Tagged | Report]):
    """Counts the events it handles and checks that each publisher's stay in order."""

    def __init__(self) -> None:
        self.handled = 0
        self.last: dict[int, int] = {}
        self.in_order = True

    async def receive(self, message: Tagged | Report) -> Any:
        match message:
            case Tagged(publisher, seq):
                self.handled += 1
                if seq <= self.last.get(publisher, -1):
                    self.in_order = False
                self.last[publisher] = seq
            case Report():
                return (self.handled, self.in_order)
        return None


async def test_stress_publishers_on_several_loops_counts_add_up() -> None:
    per_publisher, loops = 1500, 3
    with anyio.fail_after(WAIT * 2):
        async with ActorSystem(workers=loops) as system:
            bus = system.events
            subscribers = {
                policy: await system.spawn(Tally, capacity=8, placement=i % loops)
                for i, policy in enumerate(("drop_newest", "drop_oldest", "wait"))
            }
            for policy, ref in subscribers.items():
                bus.subscribe(ref, Tagged, policy=policy)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
            publishers = [await system.spawn(Publisher, placement=i) for i in range(loops)]

            async def from_host() -> None:
                for seq in range(per_publisher):
                    await bus.publish(Tagged(loops, seq))

            async with anyio.create_task_group() as tg:
                for i, publisher in enumerate(publishers):
                    tg.start_soon(
                        functools.partial(publisher.ask, Go(i, per_publisher), timeout=None)
                    )
                tg.start_soon(from_host)
            published = per_publisher * (loops + 1)
            for policy, ref in subscribers.items():
                delivered, dropped, evicted = counts(bus, ref)
                handled, in_order = await ref.ask(Report())
                assert delivered + dropped == published, policy
                assert handled == delivered - evicted, policy
                assert in_order, policy
                if policy == "wait":
                    assert (handled, dropped) == (published, 0)


# -- the docs page's example -----------------------------------------------------------------


def test_the_docs_example_runs() -> None:
    assert run_example("patterns/events.py").splitlines() == [
        "published 10 prices and 3 trades",
        "dashboard showed [107, 108, 109]",
        "ledger position 13",
        "audit logged [('PriceChanged', 10), ('TradeExecuted', 3)]",
        "dashboard <- PriceChanged (drop_oldest): delivered 10, dropped 0, evicted 7",
        "ledger <- TradeExecuted (wait): delivered 3, dropped 0, evicted 0",
        "audit <- MarketEvent (drop_newest): delivered 13, dropped 0, evicted 0",
        "MessageTypeError: actor /user/ledger cannot subscribe to PriceChanged: "
        "it accepts TradeExecuted | Summary",
        "a mutable event is refused: NotSendableError",
        "['dashboard', 'ledger']",
    ]
