"""Ask lanes (``actors/cluster/_lanes.py``) over a real nats-server: a loop's own NATS
connection for the remote asks made on it.

Asks from worker loops and from an asyncio host take their loop's lane (a trio host keeps
the cluster loop's path); lanes are one per loop, subscribe to one reply subject each, and
close when the node leaves (the server's monitoring port shows the connections); asks after
tells never overtake them; a lane survives a server restart; a node killed with asks in
flight on a lane fails them with `NodeDown` before their deadline; a worker loop blocked in
a handler stalls its own lane only, never the node's heartbeats; cancel notices follow a
lane's asks; malformed and late replies on a lane are counted as on the cluster connection.

Both nodes live in this process unless said otherwise (each with its own connections).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    FLAGS,
    Balance,
    Entries,
    Entry,
    Hold,
    Log,
    NatsServer,
    NodeFactory,
    Pair,
    Park,
    asking,
    connections,
    flag,
    pair_fixture,
    park,
    parts_on_this_loop,
    prefix_fixture,
    running_script,
    server_fixture,
)

import actors
from actors.cluster import Nats, NodeDown, WireError, register_message

pytestmark = pytest.mark.anyio

server = server_fixture(monitor=True)
prefix = prefix_fixture("ln")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0, reconnect_time_wait=0.05)
pair = pair_fixture(node, before=lambda: FLAGS.clear())

LANE_OWNER = Path(__file__).with_name("lane_owner.py")


@register_message
class Ping(actors.Request[int], frozen=True):
    """Reply with ``value``."""

    value: int


@register_message
class Sleep(actors.Request[None], frozen=True):
    """Block the handler's whole loop (``time.sleep``) for ``seconds``."""

    seconds: float


class Owner(actors.Actor[Ping | Park]):
    async def receive(self, message: Ping | Park) -> int | str:
        match message:
            case Ping(value):
                return value
            case Park():
                return await park(message)


@register_message
class AskBalance(actors.Request[int], frozen=True):
    """Ask ``target`` its Balance."""

    target: actors.Ref[Hold | Balance]


@register_message
class AskHold(actors.Request[None], frozen=True):
    """Ask ``target`` to Hold ``seconds``."""

    target: actors.Ref[Hold | Balance]
    seconds: float


@register_message
class AskPark(actors.Request[str], frozen=True):
    """Ask ``target`` to Park on flags "in" and "out"."""

    target: actors.Ref[Ping | Park]


@register_message
class AskMany(actors.Request[int], frozen=True):
    """Ask ``target`` Ping ``count`` times, each within ``timeout``; reply how many came
    back right."""

    target: actors.Ref[Ping | Park]
    count: int
    timeout: float = WAIT


@register_message
class TellThenAsk(actors.Request[int], frozen=True):
    """``rounds`` times: send ``per_round`` Entries to ``log``, then ask it for all of them;
    reply how many asks saw every entry sent before them."""

    log: actors.Ref[Entry | Entries]
    rounds: int
    per_round: int


AskerMsg = AskMany | TellThenAsk | Sleep | AskBalance | AskHold | AskPark


class Asker(actors.Actor[AskerMsg]):
    async def receive(self, message: AskerMsg) -> int | str | None:
        match message:
            case AskBalance(target):
                return await target.ask(Balance(), timeout=WAIT)
            case AskHold(target, seconds):
                await target.ask(Hold(seconds), timeout=2 * WAIT)
                return None
            case AskPark(target):
                return await target.ask(Park("in", "out"), timeout=2 * WAIT)
            case AskMany(target, count, timeout):
                right = 0
                for value in range(count):
                    right += await target.ask(Ping(value), timeout=timeout) == value
                return right
            case TellThenAsk(log, rounds, per_round):
                sent: list[tuple[int, int]] = []
                right = 0
                for round in range(rounds):
                    for seq in range(per_round):
                        await log.send(Entry(round, seq))
                        sent.append((round, seq))
                    right += list(await log.ask(Entries(), timeout=WAIT)) == sent
                return right
            case Sleep(seconds):
                time.sleep(seconds)  # noqa: ASYNC251  # blocks this worker loop, as a bad handler would
                return None


async def ask_until_a_lane_answers(pair: Pair, asker: actors.ActorRef[Any], target: Any) -> None:
    """A loop's first asks go through the cluster loop while its lane connects."""
    before = pair.cluster_b.statistics().lane_asks
    while pair.cluster_b.statistics().lane_asks == before:
        assert await asker.ask(AskMany(target, 1), timeout=WAIT) == 1


async def test_asks_from_worker_loops_and_an_asyncio_host_take_their_loops_lane(
    pair: Pair, anyio_backend_name: str
) -> None:
    with anyio.fail_after(2 * WAIT):
        await pair.a.spawn(Owner, name="owner", public=True)
        target = await pair.b.lookup_remote("owner", Ping | Park)
        askers = [await pair.b.spawn(Asker, placement=index) for index in (0, 1)]
        for asker in askers:
            await ask_until_a_lane_answers(pair, asker, target)
            assert await asker.ask(AskMany(target, 50), timeout=WAIT) == 50
        host_lane = anyio_backend_name == "asyncio"  # trio keeps the cluster loop's path
        if host_lane:  # the host's first asks go through the cluster loop while it connects
            before = pair.cluster_b.statistics().lane_asks
            while pair.cluster_b.statistics().lane_asks == before:
                assert await target.ask(Ping(-1)) == -1
        before = pair.cluster_b.statistics().lane_asks
        for value in range(50):  # the host
            assert await target.ask(Ping(value)) == value
        stats = pair.cluster_b.statistics()
        assert stats.lanes == 2 + host_lane
        assert stats.lane_asks - before == (50 if host_lane else 0)
        # One connection per loop, each with its one reply subscription in b's inbox (and
        # one for the asks of b's actors on that loop, in b's subjects: see
        # test_cluster_owner_lanes.py).
        lanes = pair.lanes_of_b()
        assert len(lanes) == stats.lanes
        incarnation = pair.cluster_b.incarnation
        for name, subjects in lanes.items():
            number = name.rsplit("-", 1)[1]
            assert sorted(subjects) == [
                f"_INBOX.{pair.cluster_b.prefix}.b.{incarnation}.l{number}.*",
                f"{pair.cluster_b.prefix}.actor.b.{incarnation}.l{number}.*",
            ]
        # More asks from the same loops open nothing more.
        for asker in askers:
            assert await asker.ask(AskMany(target, 20), timeout=WAIT) == 20
        assert pair.lanes_of_b().keys() == lanes.keys()


async def test_lanes_close_when_their_node_leaves(server: NatsServer, prefix: str) -> None:
    with anyio.fail_after(2 * WAIT):
        async with (
            actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
        ):
            await a.spawn(Owner, name="owner", public=True)
            async with actors.ActorSystem(
                workers=2, name="b", cluster=node(server.url, "b", prefix)
            ) as b:
                pair = Pair(a, b, server)
                target = await b.lookup_remote("owner", Ping | Park)
                for index in (0, 1):
                    asker = await b.spawn(Asker, placement=index)
                    await ask_until_a_lane_answers(pair, asker, target)
                assert len(pair.lanes_of_b()) >= 2
            # Left: the server has no connection of b's lanes (nor of b) any more.
            await wait_until(lambda: not connections(server, "actors:b"))


async def test_an_ask_never_overtakes_the_tells_before_it(pair: Pair) -> None:
    with anyio.fail_after(3 * WAIT):
        await pair.a.spawn(Owner, name="owner", public=True)
        await pair.a.spawn(Log, name="log", public=True, capacity=4096)
        target = await pair.b.lookup_remote("owner", Ping | Park)
        log = await pair.b.lookup_remote("log", Entry | Entries)
        asker = await pair.b.spawn(Asker, placement=0)
        await ask_until_a_lane_answers(pair, asker, target)
        before = pair.cluster_b.statistics().lane_asks
        # Rounds of pipelined tells, each followed by an ask that must see all of them; and
        # rounds with no tell, whose asks may take the lane.
        assert await asker.ask(TellThenAsk(log, 60, 5), timeout=2 * WAIT) == 60
        assert await asker.ask(TellThenAsk(log, 0, 0), timeout=WAIT) == 0
        assert await asker.ask(AskMany(target, 30), timeout=WAIT) == 30
        entries = await log.ask(Entries())
        assert list(entries) == [(round, seq) for round in range(60) for seq in range(5)]
        assert pair.cluster_b.statistics().lane_asks > before


async def test_an_abandoned_lane_ask_sends_its_cancel_notice_behind_it(pair: Pair) -> None:
    with anyio.fail_after(2 * WAIT):
        owner = await pair.a.spawn(Owner, name="owner", public=True)
        target = await pair.b.lookup_remote("owner", Ping | Park)
        asker = await pair.b.spawn(Asker, placement=0)
        await ask_until_a_lane_answers(pair, asker, target)

        before = pair.cluster_b.statistics().lane_asks
        lanes = pair.lanes_of_b()
        # Park the owner with a local ask, then queue a lane ask that times out.
        async with anyio.create_task_group() as parked:
            parked.start_soon(owner.ask, Park("in", "out"))
            await flag("in").wait()
            with pytest.raises(actors.AskTimeout):
                await asker.ask(AskMany(target, 1, timeout=0.3), timeout=WAIT)
            await wait_until(lambda: asking(pair.a) == 0)  # the owner took the notice
            flag("out").set()
        assert pair.lanes_of_b() == lanes
        assert pair.cluster_b.statistics().lane_asks == before  # timed out: not answered
        assert await asker.ask(AskMany(target, 8), timeout=WAIT) == 8
        assert pair.cluster_b.statistics().lane_asks == before + 8


async def test_lane_asks_in_flight_fail_with_node_down_when_their_owner_is_killed(
    server: NatsServer, prefix: str, anyio_backend_name: str
) -> None:
    if anyio_backend_name == "trio":
        pytest.skip("the lanes under test are the worker loop's; one host suffices")
    heartbeat_timeout = 1.0
    with (
        running_script(str(LANE_OWNER), server.url, prefix) as process,
        anyio.fail_after(3 * WAIT),
    ):
        cluster = node(server.url, "b", prefix, heartbeat_timeout=heartbeat_timeout)
        async with actors.ActorSystem(workers=2, name="b", cluster=cluster) as b:
            account = await b.lookup_remote("account", Hold | Balance, timeout=WAIT)
            asker = await b.spawn(Asker, placement=0)
            before = cluster.statistics().lane_asks
            while cluster.statistics().lane_asks == before:  # until the lane answers
                assert await asker.ask(AskBalance(account), timeout=WAIT) == 0
            outcomes: list[BaseException | None] = []

            async def ask_held(asker: actors.ActorRef[AskerMsg], seconds: float) -> None:
                try:
                    await asker.ask(AskHold(account, seconds), timeout=2 * WAIT)
                    outcomes.append(None)
                except BaseException as error:
                    outcomes.append(error)

            # One ask answered after a moment proves the lane carries Holds; then two
            # parked on the owner when it dies (the actor handles one at a time).
            await asker.ask(AskHold(account, 0.01), timeout=WAIT)
            answered = cluster.statistics().lane_asks
            assert answered > before
            killed = anyio.current_time()
            async with anyio.create_task_group() as askers:
                # Two askers on one loop: two asks in flight on its lane.
                askers.start_soon(ask_held, asker, 30.0)
                askers.start_soon(ask_held, await b.spawn(Asker, placement=0), 30.0)
                await wait_until(lambda: asking_of(cluster) == 2)
                process.kill()
                killed = anyio.current_time()
            # Declared down within the heartbeat timeout, long before the asks' deadline.
            assert anyio.current_time() - killed <= heartbeat_timeout + 1.0
            assert len(outcomes) == 2
            assert all(isinstance(outcome, NodeDown) for outcome in outcomes), outcomes
            assert cluster.statistics().lane_asks == answered


def asking_of(cluster: Nats) -> int:
    """Asks waiting on node ``cluster``'s lanes (a snapshot read from the test's thread)."""
    lanes = cluster._node.lanes._lanes.values()  # pyright: ignore[reportPrivateUsage]
    return sum(len(lane._waiting) for lane in lanes)  # pyright: ignore[reportPrivateUsage]


async def test_a_blocked_worker_loop_stalls_its_own_lane_never_the_heartbeats(
    pair: Pair,
) -> None:
    with anyio.fail_after(3 * WAIT):
        await pair.a.spawn(Owner, name="owner", public=True)
        target = await pair.b.lookup_remote("owner", Ping | Park)
        blocked, free = [await pair.b.spawn(Asker, placement=index) for index in (0, 1)]
        await ask_until_a_lane_answers(pair, blocked, target)
        await ask_until_a_lane_answers(pair, free, target)
        cluster_a = pair.a.cluster
        assert isinstance(cluster_a, Nats)
        block = 3 * 1.0  # three heartbeat timeouts
        done = Flag()

        async def block_the_loop() -> None:
            await blocked.ask(Sleep(block), timeout=2 * WAIT)
            done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(block_the_loop)
            # Meanwhile node a never declares b down, and the other loop's lane asks on.
            while not done.is_set():
                assert "b" in cluster_a.statistics().members
                assert await free.ask(AskMany(target, 1), timeout=WAIT) == 1
                await anyio.sleep(0.05)  # pacing the checks, not synchronising
        assert "b" in cluster_a.statistics().members
        assert await blocked.ask(AskMany(target, 5), timeout=WAIT) == 5
        assert pair.cluster_b.statistics().lanes >= 2


async def test_lane_asks_go_on_across_a_server_restart(prefix: str) -> None:
    FLAGS.clear()
    server = NatsServer(monitor=True)
    server.start()
    try:
        with anyio.fail_after(4 * WAIT):
            async with (
                actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
                actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
            ):
                pair = Pair(a, b, server)
                owner = await a.spawn(Owner, name="owner", public=True)
                target = await b.lookup_remote("owner", Ping | Park)
                asker = await b.spawn(Asker, placement=0)
                await ask_until_a_lane_answers(pair, asker, target)
                outcome: list[str] = []

                async def ask_parked() -> None:
                    outcome.append(await asker.ask(AskPark(target), timeout=2 * WAIT))

                async with anyio.create_task_group() as tasks:
                    # An ask on the lane parked on its owner while the server goes away.
                    tasks.start_soon(owner.ask, Park("in-local", "out"))
                    await flag("in-local").wait()
                    tasks.start_soon(ask_parked)
                    await wait_until(lambda: asking(a) == 1)
                    owner_lanes = pair.lanes_of("a")
                    server.kill()
                    await wait_until(lambda: not pair.cluster_b.statistics().connected)
                    # Disconnected: a short ask times out, whichever way it went.
                    with pytest.raises(actors.AskTimeout):
                        await target.ask(Ping(1), timeout=0.2)
                    server.start()
                    await wait_until(lambda: pair.cluster_b.statistics().reconnects >= 1)
                    await wait_until(lambda: len(pair.lanes_of_b()) == 1, timeout=WAIT)
                    # Each connection comes back on its own: an ask published before the
                    # owner's lane has subscribed again is lost with the outage (core NATS)
                    # and waits for its timeout. The asks below are for after the restart.
                    await wait_until(lambda: pair.lanes_of("a") == owner_lanes, timeout=WAIT)
                    flag("out").set()  # answered after the restart: its reply comes through
                assert outcome == ["released"]
                before = pair.cluster_b.statistics().lane_asks
                assert await asker.ask(AskMany(target, 20), timeout=WAIT) == 20
                assert pair.cluster_b.statistics().lane_asks >= before + 20
    finally:
        server.stop()


async def test_malformed_and_late_replies_on_a_lane_are_counted_and_lose_nothing(
    pair: Pair, anyio_backend_name: str
) -> None:
    if anyio_backend_name == "trio":
        pytest.skip("the forging client is nats-py: an asyncio host")
    import nats

    from actors.cluster._remote import address_of

    with anyio.fail_after(2 * WAIT):
        owner = await pair.a.spawn(Owner, name="owner", public=True)
        target = await pair.b.lookup_remote("owner", Ping | Park)
        asker = await pair.b.spawn(Asker, placement=0)
        await ask_until_a_lane_answers(pair, asker, target)
        forger = await nats.connect(pair.server.url)  # pyright: ignore[reportUnknownMemberType]
        try:

            async def forge(msg: Any) -> None:
                await forger.publish(msg.reply, b"\xc1 not a reply")

            address = address_of(target)  # pyright: ignore[reportArgumentType]
            actor = f"{pair.cluster_b.prefix}.actor.a.{address.incarnation}"
            # The ask goes to the actor's subject, or to its owner's lane (``.l<n>.<id>``).
            for subject in (f"{actor}.{address.id}", f"{actor}.*.{address.id}"):
                await forger.subscribe(subject, cb=forge)  # pyright: ignore[reportUnknownMemberType]
            await forger.flush()
            stats = pair.cluster_b.statistics()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(owner.ask, Park("in", "out"))  # the owner answers late
                await flag("in").wait()
                with pytest.raises(WireError):
                    await asker.ask(AskMany(target, 1), timeout=WAIT)
                await wait_until(lambda: pair.cluster_b.statistics().rejected == stats.rejected + 1)
                flag("out").set()
            # The owner's own reply comes after the forged one: a late reply, dropped.
            await wait_until(lambda: pair.cluster_b.statistics().dropped >= stats.dropped + 1)
        finally:
            await forger.close()
        # The lane goes on.
        assert await asker.ask(AskMany(target, 3), timeout=WAIT) == 3


# -- the order rule, with the outbox's parts around a fake client --------------------------


async def test_an_abandoned_ask_keeps_its_ref_off_the_lanes_until_a_probe_came_back(
    anyio_backend_name: str,
) -> None:
    """An ask that timed out on the cluster connection may still be on its way: no ask of
    its ref takes a lane until a probe, sent behind it and its cancel notice, is answered."""
    if anyio_backend_name == "trio":
        pytest.skip("the test's loop stands for the cluster loop: asyncio only")
    from test_cluster_parts import Parts

    from actors.cluster import RemoteRef
    from actors.cluster._wire import Address

    parts = Parts()
    await parts_on_this_loop(parts)
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            parts.registry.bind(system, parts.outbox, parts.durable)
            ref = parts.registry.ref_for(Address("b", "inc-b", 9, "/user/x", None, 10))
            assert isinstance(ref, RemoteRef)
            await _abandoned_ask_keeps_its_ref_off_the_lanes(parts, ref)


async def _abandoned_ask_keeps_its_ref_off_the_lanes(parts: Any, ref: Any) -> None:
    import asyncio

    from test_cluster_parts import FakeMsg, Total

    from actors.cluster._remote import credit_of
    from actors.cluster._wire import CANCEL, OK, PROBE, WIRE_VERSION, Envelope, Reply

    client = parts.client
    credit = credit_of(ref)
    assert credit.quiet()
    with pytest.raises(actors.AskTimeout):
        await ref.ask(Total(), timeout=0.1)
    assert not credit.quiet()  # the ask may still arrive after a later one
    await wait_until(lambda: len(client.published) == 3)
    kinds = [msgspec.msgpack.decode(m.data, type=Envelope).kind for m in client.published]
    assert kinds[1:] == [CANCEL, PROBE]  # the notice, then the probe, behind the ask
    assert {m.subject for m in client.published} == {"t.actor.b.inc-b.9"}
    assert not credit.quiet()
    probe = client.published[2]
    reply = Reply(WIRE_VERSION, OK, msgspec.Raw(b"\xc0"), 10)
    await client.deliver("_INBOX.t.a.inc-a.*", FakeMsg(probe.reply, msgspec.msgpack.encode(reply)))
    await wait_until(credit.quiet)
    # An ask answered normally holds the ref only while it waits.
    asking = asyncio.ensure_future(ref.ask(Total(), timeout=WAIT))
    await wait_until(lambda: len(client.published) == 4)
    assert not credit.quiet()
    answer = Reply(WIRE_VERSION, OK, msgspec.Raw(msgspec.msgpack.encode(5)), 10)
    await client.deliver(
        "_INBOX.t.a.inc-a.*", FakeMsg(client.published[3].reply, msgspec.msgpack.encode(answer))
    )
    assert await asking == 5
    assert credit.quiet()
