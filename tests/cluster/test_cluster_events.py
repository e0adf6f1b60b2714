"""``system.events`` across nodes (docs/cluster.md, "Events across nodes").

Nodes on a real nats-server: delivery by class and by base class on every node, never twice
on the publisher's own node; per-publisher order with two publishers; a type that cannot
cross refused for the cluster (and delivered locally); a malformed frame on the events
subject rejected and counted; a stopped subscriber no longer counted; three node processes
with one leaving and rejoining. `EventRelay` alone with the fake client of
test_cluster_parts.py. The tests with in-process nodes run on every host (asyncio, uvloop,
trio); those with child processes or the fake client on asyncio only.

Run as a script (``python test_cluster_events.py URL PREFIX NODE``), this file is a node
process: it answers every `Ping` it receives with a `Pong` event of its own, and leaves when
its stdin closes.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec

import actors
from actors import testing
from actors.cluster import Nats, register_message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from actors._events import Policy

# -- events (named explicitly: the child processes import this file as __main__) ------------


@register_message(name="events.Market")
class Market(msgspec.Struct, frozen=True):
    symbol: str


@register_message(name="events.PriceChanged")
class PriceChanged(Market, frozen=True):
    price: float


@register_message(name="events.Trade")
class Trade(Market, frozen=True):
    size: int


@register_message(name="events.Numbered")
class Numbered(msgspec.Struct, frozen=True):
    publisher: str
    seq: int


@register_message(name="events.Ping")
class Ping(msgspec.Struct, frozen=True):
    seq: int


@register_message(name="events.Pong")
class Pong(msgspec.Struct, frozen=True):
    node: str
    seq: int


class LocalOnly(msgspec.Struct, frozen=True):
    """Cannot cross: a field typed ActorRef (a local-only handle)."""

    owner: actors.ActorRef[Any]


class Collector(actors.Actor[Any]):
    """Records every event it gets, in order."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def receive(self, message: Any) -> None:
        self.seen.append(message)


class Ponger(actors.Actor[Ping]):
    """Answers each Ping with a Pong event on its own node's bus."""

    def __init__(self, node: str) -> None:
        self.node = node

    async def receive(self, message: Ping) -> None:
        await self.system.events.publish(Pong(self.node, message.seq))


async def node_main(url: str, prefix: str, name: str) -> None:
    cluster = Nats(url, node=name, prefix=prefix, heartbeat_interval=0.1, heartbeat_timeout=2.0)
    async with actors.ActorSystem(workers=1, name=name, cluster=cluster) as system:
        ponger = await system.spawn(lambda: Ponger(name), capacity=10_000)
        system.events.subscribe(ponger, Ping, policy="wait")
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the test closes stdin


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(node_main, sys.argv[1], sys.argv[2], sys.argv[3])
    sys.exit(0)


# -- the tests --------------------------------------------------------------------------------

import asyncio  # noqa: E402
import functools  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from _support import WAIT, wait_until  # noqa: E402
from cluster_support import (  # noqa: E402
    NatsServer,
    NodeFactory,
    prefix_fixture,
    running_script,
    server_fixture,
)
from test_cluster_parts import FakeMsg, Parts  # noqa: E402

from actors.cluster import Limits  # noqa: E402
from actors.cluster._events import EventRelay, frame_of  # noqa: E402

HERE = Path(__file__).resolve()


async def collector(
    system: actors.ActorSystem, *types: type, policy: Policy = "drop_newest"
) -> tuple[actors.ActorRef[Any], list[object]]:
    seen: list[object] = []
    ref = await system.spawn(lambda: Collector(seen), capacity=100_000)
    for event_type in types:
        system.events.subscribe(ref, event_type, policy=policy)
    return ref, seen


def statistics(system: actors.ActorSystem) -> Any:
    cluster = system.cluster
    assert isinstance(cluster, Nats)
    return cluster.statistics()


async def publish_until(
    system: actors.ActorSystem, event: object, condition: Any, timeout: float = WAIT
) -> None:
    """Publish ``event`` again and again until ``condition()``: a node that just joined has
    no way to say it listens (events are at most once, not stored)."""
    with anyio.fail_after(timeout):
        while not condition():
            await system.events.publish(event)
            await anyio.sleep(0.02)  # the pace of the retries, not a synchronisation


pytestmark = pytest.mark.anyio

server = server_fixture()
prefix = prefix_fixture("e")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=2.0)
# The tests with child processes or the fake client: the transport is asyncio whatever the
# host, and the tests with in-process nodes cover every host.
asyncio_only = pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})])


@pytest.fixture
async def trio_of_nodes(
    server: NatsServer, prefix: str
) -> AsyncIterator[tuple[actors.ActorSystem, actors.ActorSystem, actors.ActorSystem]]:
    async with (
        actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
        actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        actors.ActorSystem(workers=1, name="c", cluster=node(server.url, "c", prefix)) as c,
    ):
        yield a, b, c


async def joined(*systems: actors.ActorSystem) -> None:
    """Each node's events reach every other node: probed with a marker event."""
    for publisher in systems:
        marks: list[tuple[actors.ActorRef[Any], list[object]]] = []
        for other in systems:
            if other is not publisher:
                marks.append(await collector(other, Ping))
        await publish_until(publisher, Ping(-1), functools.partial(all_seen, marks))
        for ref, _ in marks:
            await ref.stop()


# -- in-process nodes, every host -------------------------------------------------------------


def all_seen(marks: list[tuple[actors.ActorRef[Any], list[object]]]) -> bool:
    return all(seen for _, seen in marks)


async def test_an_event_reaches_subscribers_on_every_node_by_class_and_base(
    trio_of_nodes: tuple[actors.ActorSystem, actors.ActorSystem, actors.ActorSystem],
) -> None:
    a, b, c = trio_of_nodes
    with anyio.fail_after(WAIT):
        await joined(a, b, c)
        _, on_a = await collector(a, PriceChanged)
        _, prices_b = await collector(b, PriceChanged)
        _, market_b = await collector(b, Market)
        _, trades_c = await collector(c, Trade)
        _, both_c = await collector(c, Market, PriceChanged)  # one copy, as locally
        # The count is this node's deliveries only.
        assert await a.events.publish(PriceChanged("ACME", 1.5)) == 1
        assert await a.events.publish(Trade("ACME", 7)) == 0
        assert await c.events.publish(PriceChanged("XYZ", 2.0)) == 1
        await wait_until(lambda: len(market_b) == 3 and len(both_c) == 3 and len(on_a) == 2)
        await wait_until(lambda: len(prices_b) == 2 and len(trades_c) == 1)
        assert on_a == [PriceChanged("ACME", 1.5), PriceChanged("XYZ", 2.0)]  # never twice

        def of(seen: list[object], symbol: str) -> list[object]:
            # Order holds per publisher: a's events (ACME) in a's order, c's (XYZ) in c's.
            return [e for e in seen if isinstance(e, Market) and e.symbol == symbol]

        assert (
            of(market_b, "ACME")
            == of(both_c, "ACME")
            == [PriceChanged("ACME", 1.5), Trade("ACME", 7)]
        )
        assert of(market_b, "XYZ") == of(both_c, "XYZ") == [PriceChanged("XYZ", 2.0)]
        assert sorted(prices_b, key=repr) == [PriceChanged("ACME", 1.5), PriceChanged("XYZ", 2.0)]
        assert trades_c == [Trade("ACME", 7)]
        stats_a = statistics(a)
        assert stats_a.events_published >= 2
        assert stats_a.events_refused == stats_a.events_dropped == stats_a.events_rejected == 0
        assert statistics(b).events_received >= 3


async def test_each_publishers_events_arrive_in_order_on_every_node(
    trio_of_nodes: tuple[actors.ActorSystem, actors.ActorSystem, actors.ActorSystem],
) -> None:
    a, b, c = trio_of_nodes
    count = 2000
    with anyio.fail_after(3 * WAIT):
        await joined(a, b, c)
        _, on_a = await collector(a, Numbered, policy="wait")
        _, on_b = await collector(b, Numbered, policy="wait")

        async def produce(system: actors.ActorSystem, name: str) -> None:
            for seq in range(count):
                await system.events.publish(Numbered(name, seq))

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce, a, "a")
            tg.start_soon(produce, c, "c")
        await wait_until(lambda: len(on_b) == 2 * count, timeout=2 * WAIT)
        await wait_until(lambda: len(on_a) == 2 * count, timeout=2 * WAIT)
        for seen in (on_a, on_b):
            for name in ("a", "c"):
                seqs = [e.seq for e in seen if isinstance(e, Numbered) and e.publisher == name]
                assert seqs == list(range(count))
        assert statistics(b).events_lost == 0


async def test_an_event_that_cannot_cross_is_refused_for_the_cluster_and_delivered_locally(
    trio_of_nodes: tuple[actors.ActorSystem, actors.ActorSystem, actors.ActorSystem],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, _ = trio_of_nodes
    with anyio.fail_after(WAIT):
        await joined(a, b)
        owner, on_a = await collector(a, LocalOnly)
        _, on_b = await collector(b, LocalOnly, Ping)
        with caplog.at_level(logging.WARNING, logger="actors.cluster"):
            assert await a.events.publish(LocalOnly(owner)) == 1
            assert await a.events.publish(LocalOnly(owner)) == 1
        await wait_until(lambda: on_a == [LocalOnly(owner), LocalOnly(owner)])
        assert statistics(a).events_refused == 2
        (record,) = [r for r in caplog.records if "cannot cross" in r.getMessage()]
        assert "LocalOnly.owner is typed ActorRef" in record.getMessage()
        # Events of one publisher arrive in order: once the Ping is there, so would be
        # anything published before it.
        await a.events.publish(Ping(1))
        await wait_until(lambda: Ping(1) in on_b)
        assert on_b == [Ping(1)]


@asyncio_only  # a raw nats-py client: asyncio only
async def test_a_malformed_frame_on_the_events_subject_is_rejected_and_counted(
    trio_of_nodes: tuple[actors.ActorSystem, actors.ActorSystem, actors.ActorSystem],
    server: NatsServer,
    prefix: str,
) -> None:
    import nats

    a, b, _ = trio_of_nodes
    client = await nats.connect(server.url)  # pyright: ignore[reportUnknownMemberType]
    try:
        with anyio.fail_after(WAIT):
            await joined(a, b)
            _, on_b = await collector(b, Ping)
            before = statistics(b)
            bogus = [
                b"\xc1",  # not MessagePack
                b"\x91" * 100 + b"\xc0",  # too deep
                msgspec.msgpack.encode([1, "x"]),  # not a frame
                frame_of("inc", 0, []),  # no such sequence number
                frame_of("inc", 1, [("events.Ping", b"\xa1x")]),  # a body that is no Ping
            ]
            for data in bogus:
                await client.publish(f"{prefix}.events.mallory", data)
            await client.flush()
            await wait_until(lambda: statistics(b).events_rejected == before.events_rejected + 5)
            assert statistics(b).rejected >= before.rejected + 5
            assert on_b == []
            await a.events.publish(Ping(2))  # the subscription still works
            await wait_until(lambda: on_b == [Ping(2)])
    finally:
        await client.close()


async def test_a_stopped_subscriber_is_no_longer_counted_on_its_node(
    trio_of_nodes: tuple[actors.ActorSystem, actors.ActorSystem, actors.ActorSystem],
) -> None:
    a, b, _ = trio_of_nodes
    with anyio.fail_after(WAIT):
        await joined(a, b)
        gone, on_gone = await collector(b, Ping)
        _, on_b = await collector(b, Ping)
        await a.events.publish(Ping(1))
        await wait_until(lambda: len(on_b) == 1 and len(on_gone) == 1)
        await gone.stop()
        assert [s.subscriber for s in b.events.subscriptions()] != [gone]
        assert all(s.subscriber is not gone for s in b.events.subscriptions())
        await a.events.publish(Ping(2))
        await wait_until(lambda: len(on_b) == 2)
        assert on_gone == [Ping(1)]
        (sub,) = b.events.subscriptions()
        assert sub.delivered == 2


# -- three node processes: one leaves and rejoins ---------------------------------------------


@pytest.mark.timeout(120)
@asyncio_only
async def test_three_node_processes_with_one_leaving_and_rejoining(
    server: NatsServer, prefix: str
) -> None:
    def child(name: str) -> Any:
        return running_script(str(HERE), server.url, prefix, name)

    pongs: list[Pong] = []

    def from_(name: str) -> list[int]:
        return [p.seq for p in pongs if p.node == name]

    with anyio.fail_after(90):
        async with actors.ActorSystem(
            workers=1, name="a", cluster=node(server.url, "a", prefix)
        ) as a:
            _, seen = await collector(a, Pong, policy="wait")
            with child("b"), child("c") as c_process:
                pongs_of: Any = seen
                del pongs_of

                def sync() -> None:
                    pongs[:] = [p for p in seen if isinstance(p, Pong)]

                def answered(*names: str) -> bool:
                    sync()
                    return all(from_(n) for n in names)

                await publish_until(a, Ping(0), lambda: answered("b", "c"))
                for seq in range(1, 201):
                    await a.events.publish(Ping(seq))
                await wait_until(lambda: answered() and 200 in from_("b") and 200 in from_("c"))
                for name in ("b", "c"):  # each publisher's order, at a: increasing
                    seqs = [s for s in from_(name) if s > 0]
                    assert seqs == list(range(1, 201))
                # c leaves; b keeps answering, a notices nothing but c's absence.
                assert c_process.stdin is not None
                c_process.stdin.close()
                await anyio.to_thread.run_sync(c_process.wait, 30)
                await wait_until(lambda: "c" not in statistics(a).members)
                await a.events.publish(Ping(300))
                await wait_until(lambda: answered() and 300 in from_("b"))
                assert 300 not in from_("c")
                with child("c"):  # c rejoins: its new incarnation gets events again
                    await publish_until(a, Ping(400), lambda: answered() and 400 in from_("c"))
                    await a.events.publish(Ping(401))
                    await wait_until(lambda: answered() and 401 in from_("c"))
            stats = statistics(a)
            assert stats.events_dropped == stats.events_refused == stats.events_rejected == 0


# -- EventRelay alone, with the fake client --------------------------------------------------


class RelayParts(Parts):
    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(limits=limits)
        self.relay = EventRelay(self.transport, self.registry, self.inbound, limits or Limits())


async def relay_on(parts: RelayParts, system: actors.ActorSystem) -> None:
    parts.transport.loop = asyncio.get_running_loop()
    parts.registry.bind(system, parts.outbox, parts.durable)
    await parts.relay.listen(parts.client)  # type: ignore[arg-type]


async def stop_relay(parts: RelayParts) -> None:
    await parts.relay.leave()
    for task in list(parts.transport._tasks):  # pyright: ignore[reportPrivateUsage]
        task.cancel()


@asyncio_only
async def test_the_relay_sends_events_in_order_batched_on_its_own_subject() -> None:
    parts = RelayParts()
    async with actors.ActorSystem(workers=1) as system:
        await relay_on(parts, system)
        assert "t.events.*" in parts.client.subs
        with anyio.fail_after(WAIT):
            for seq in range(5):
                await system.events.publish(Ping(seq))
            await wait_until(lambda: parts.relay.published == 5)
        frames = [msgspec.msgpack.decode(m.data) for m in parts.client.published]
        assert {m.subject for m in parts.client.published} == {"t.events.a"}
        seqs = [frame[2] for frame in frames]
        names = [event[0] for frame in frames for event in frame[3]]
        bodies = [
            msgspec.msgpack.decode(msgspec.msgpack.encode(e[1])) for f in frames for e in f[3]
        ]
        assert names == ["events.Ping"] * 5
        assert bodies == [{"seq": n} for n in range(5)]
        assert seqs[0] == 1
        assert sum(len(frame[3]) for frame in frames) == 5
        # A frame is what queued while the previous one went out: seqs follow on.
        expected = 1
        for frame in frames:
            assert frame[2] == expected
            expected += len(frame[3])
        await stop_relay(parts)
        assert system.events._forward is None  # pyright: ignore[reportPrivateUsage]


@asyncio_only
async def test_the_relay_delivers_others_events_locally_and_counts_what_it_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = RelayParts()
    relay = parts.relay
    async with actors.ActorSystem(workers=1) as system:
        await relay_on(parts, system)
        _, seen = await collector(system, Market)
        deliver = parts.client.subs["t.events.*"]
        price = msgspec.msgpack.encode(PriceChanged("ACME", 1.0))
        with anyio.fail_after(WAIT):
            # Ours (echoed by the server): ignored, it was delivered when published.
            await deliver(
                FakeMsg("t.events.a", frame_of("inc-a", 1, [("events.PriceChanged", price)]))
            )
            assert relay.received == 0
            # Another node's, with an event nobody here wants (not even decoded).
            frame = frame_of("x1", 1, [("events.PriceChanged", price), ("events.Ping", b"\xa1x")])
            await deliver(FakeMsg("t.events.b", frame))
            await wait_until(lambda: len(seen) == 1)
            assert seen == [PriceChanged("ACME", 1.0)]
            assert (relay.received, relay.rejected, relay.lost) == (2, 0, 0)
            # A gap is counted as lost; going backwards is refused.
            await deliver(
                FakeMsg("t.events.b", frame_of("x1", 5, [("events.PriceChanged", price)]))
            )
            await wait_until(lambda: len(seen) == 2)
            assert relay.lost == 2
            await deliver(
                FakeMsg("t.events.b", frame_of("x1", 5, [("events.PriceChanged", price)]))
            )
            assert relay.rejected == 1
            assert parts.transport.rejected == 1
            # A new incarnation of b starts again at 1.
            await deliver(
                FakeMsg("t.events.b", frame_of("x2", 1, [("events.PriceChanged", price)]))
            )
            await wait_until(lambda: len(seen) == 3)
            # A subclass known here only as the subclass of a subscribed class.
            sub = msgspec.msgpack.encode(Unnamed("Z", 3))
            await deliver(FakeMsg("t.events.b", frame_of("x2", 2, [(_default(Unnamed), sub)])))
            await wait_until(lambda: len(seen) == 4)
            assert seen[3] == Unnamed("Z", 3)
            # Refused for the cluster: counted, logged once per class, delivered locally.
            with caplog.at_level(logging.WARNING, logger="actors.cluster"):
                owner, mine = await collector(system, LocalOnly)
                await system.events.publish(LocalOnly(owner))
                await system.events.publish(LocalOnly(owner))
                await wait_until(lambda: len(mine) == 2)
            assert relay.refused == 2
            assert len([r for r in caplog.records if "cannot cross" in r.getMessage()]) == 1
        await stop_relay(parts)


@asyncio_only
async def test_the_relay_refuses_an_event_larger_than_a_frame_and_splits_batches() -> None:
    parts = RelayParts(Limits(max_message_size=1024))
    async with actors.ActorSystem(workers=1) as system:
        await relay_on(parts, system)
        with anyio.fail_after(WAIT):
            await system.events.publish(Market("x" * 2000))
            assert parts.relay.refused == 1
            for _ in range(20):
                await system.events.publish(Market("y" * 200))
            await wait_until(lambda: parts.relay.published == 20)
        sizes = [len(m.data) for m in parts.client.published]
        assert max(sizes) <= 1024
        assert len(sizes) >= 5  # 20 events of ~220 bytes cannot share fewer frames
        await stop_relay(parts)


class Unnamed(Market, frozen=True):
    """Never registered: known to a receiver only as a subclass of a subscribed class."""

    n: int


def _default(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


class Bystander(msgspec.Struct, frozen=True):
    """Never registered, and no subscribed class above it but ``object``."""

    n: int


@asyncio_only
async def test_a_subscription_to_object_does_not_open_every_class_to_peers() -> None:
    parts = RelayParts()
    async with actors.ActorSystem(workers=1) as system:
        await relay_on(parts, system)
        _, seen = await collector(system, object)
        deliver = parts.client.subs["t.events.*"]
        body = msgspec.msgpack.encode(Bystander(1))
        with anyio.fail_after(WAIT):
            await deliver(FakeMsg("t.events.b", frame_of("x1", 1, [(_default(Bystander), body)])))
            register_message(Bystander, name="events.Bystander")  # once registered, it may
            frame = frame_of("x1", 2, [("events.Bystander", body)])
            await deliver(FakeMsg("t.events.b", frame))
            await wait_until(lambda: len(seen) >= 1)
            await testing.settle(system)  # whatever else was delivered has been handled
        assert seen == [Bystander(1)]  # the unregistered one was never decoded
        assert parts.relay.received == 2
        await stop_relay(parts)
