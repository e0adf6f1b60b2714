"""The owner's side of the ask lanes (``actors/cluster/_lanes.py``) over a real nats-server.

An ask for an actor living on a worker loop arrives, once its asker holds the hint of an
earlier answer, on that loop's own lane (``<prefix>.actor.<node>.<incarnation>.l<n>.<id>``)
and is answered there, on the connection that received it: no thread hop on the owner's
side either. The owner's loop gets its lane when its first answer is given, whether or not
it asks itself. Every check of the cluster connection's path holds there (the export, the
frame, the type, the deadline, cancel notices); a stale hint is forwarded and answered
with a fresh one; a hint that finds nobody takes the full path; asks never overtake the
tells sent before them; a blocked owner loop stalls its own lane only; a lane closes when
its node leaves and serves again after a server restart.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    FLAGS,
    Entries,
    Entry,
    HowLong,
    Log,
    NatsServer,
    NodeFactory,
    Pair,
    Park,
    asking,
    connections,
    flag,
    how_long,
    pair_fixture,
    park,
    prefix_fixture,
    server_fixture,
)

import actors
from actors.cluster import Nats, RemoteRef, register_message
from actors.cluster._remote import address_of, credit_of, home_of, note_home
from actors.cluster._wire import (
    ASK,
    ERROR,
    OK,
    TELL,
    WIRE_VERSION,
    Envelope,
    Reply,
    message_name,
)

pytestmark = pytest.mark.anyio

server = server_fixture(monitor=True)
prefix = prefix_fixture("ol")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0, reconnect_time_wait=0.05)
pair = pair_fixture(node, before=lambda: FLAGS.clear())


@register_message
class Echo(actors.Request[int], frozen=True):
    """Reply with ``value``."""

    value: int


@register_message
class Block(actors.Request[None], frozen=True):
    """Set flag "blocking", then block the handler's whole loop (``time.sleep``) for
    ``seconds``."""

    seconds: float


@register_message
class Child(actors.Request[actors.Ref["OwnerMsg"]], frozen=True):
    """Spawn a child `Owner` and reply with its ref (exported by the reply)."""


@register_message
class Count(actors.Request[int], frozen=True):
    """Reply how many messages were handled, this one included."""


@register_message
class Unwanted(actors.Request[int], frozen=True):
    """Registered, but no `Owner` accepts it."""


OwnerMsg = Echo | HowLong | Park | Block | Child | Count


class Owner(actors.Actor[OwnerMsg]):
    cancel_abandoned = True

    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: OwnerMsg) -> object:
        self.handled += 1
        match message:
            case Echo(value):
                return value
            case HowLong():
                return how_long()
            case Park():
                return await park(message)
            case Block(seconds):
                flag("blocking").set()
                time.sleep(seconds)  # noqa: ASYNC251  # blocks this worker loop, as a bad handler would
                return None
            case Child():
                return await self.spawn(Owner)
            case Count():
                return self.handled
        return None


class SyncOwner(actors.Actor[OwnerMsg]):
    """A synchronous handler: it runs as a callback of its loop (a drain), no task."""

    def receive(self, message: OwnerMsg) -> object:
        return message.value if isinstance(message, Echo) else None


@register_message
class AskMany(actors.Request[int], frozen=True):
    """Ask ``target`` Echo ``count`` times; reply how many came back right."""

    target: actors.Ref[OwnerMsg]
    count: int


@register_message
class AskOnce(actors.Request[object], frozen=True):
    """Ask ``target`` ``message`` within ``timeout``; reply the answer."""

    target: actors.Ref[OwnerMsg]
    message: Echo | HowLong | Park | Child | Count
    timeout: float


@register_message
class TellThenAsk(actors.Request[int], frozen=True):
    """``rounds`` times: send ``per_round`` Entries to ``log``, wait until they are all
    answered (then the ask may take a lane), then ask it for all of them; reply how many
    asks saw every entry sent before them."""

    log: actors.Ref[Entry | Entries]
    rounds: int
    per_round: int


AskerMsg = AskMany | AskOnce | TellThenAsk


class Asker(actors.Actor[AskerMsg]):
    async def receive(self, message: AskerMsg) -> object:
        match message:
            case AskMany(target, count):
                right = 0
                for value in range(count):
                    right += await target.ask(Echo(value), timeout=WAIT) == value
                return right
            case AskOnce(target, asked, timeout):
                return await target.ask(asked, timeout=timeout)
            case TellThenAsk(log, rounds, per_round):
                sent: list[tuple[int, int]] = []
                right = 0
                for round in range(rounds):
                    for seq in range(per_round):
                        await log.send(Entry(round, seq))
                        sent.append((round, seq))
                    assert isinstance(log, RemoteRef)
                    await wait_until(credit_of(log).quiet)
                    right += list(await log.ask(Entries(), timeout=WAIT)) == sent
                return right
        return None


def served(system: actors.ActorSystem) -> int:
    cluster = system.cluster
    assert isinstance(cluster, Nats)
    return cluster.statistics().lane_served


async def ask_until_its_lane_serves(
    pair: Pair, asker: actors.ActorRef[AskerMsg], target: RemoteRef[Any]
) -> int:
    """Ask until ``target``'s owner takes the asks on its loop's lane; its lane number.

    The owner's loop starts its lane at its first answer, the asker's loop at its first
    ask: the asks go the full way meanwhile.
    """
    before = served(pair.a)
    while served(pair.a) == before:
        assert await asker.ask(AskMany(target, 1), timeout=WAIT) == 1
    home = home_of(target)
    assert home > 0
    return home


async def owners(pair: Pair) -> tuple[list[RemoteRef[Any]], actors.ActorRef[AskerMsg]]:
    """Owners "o0" and "o1" on node a's worker loops 0 and 1, as node b's refs, and an
    asker on b whose asks of both take their loops' lanes."""
    for index in (0, 1):
        await pair.a.spawn(Owner, name=f"o{index}", public=True, placement=index)
    targets = [await pair.b.lookup_remote(f"o{index}", OwnerMsg) for index in (0, 1)]
    asker = await pair.b.spawn(Asker, placement=0)
    for target in targets:
        assert isinstance(target, RemoteRef)
        await ask_until_its_lane_serves(pair, asker, target)
    return targets, asker  # pyright: ignore[reportReturnType]


async def test_asks_for_an_actor_on_a_worker_loop_are_taken_on_its_loops_lane(
    pair: Pair,
) -> None:
    with anyio.fail_after(2 * WAIT):
        (t0, t1), asker = await owners(pair)
        assert home_of(t0) != home_of(t1)  # one lane per loop
        before = served(pair.a)
        assert await asker.ask(AskMany(t1, 100), timeout=WAIT) == 100
        assert served(pair.a) - before == 100
        # Node a never asked: its loops got their lanes to answer. Each subscribes to its
        # replies and to the asks for the actors of its loop, inside a's own subjects.
        lanes = pair.lanes_of("a")
        assert len(lanes) == 2
        incarnation = pair.cluster_a.incarnation
        for name, subjects in lanes.items():
            number = name.rsplit("-", 1)[1]
            assert sorted(subjects) == [
                f"_INBOX.{pair.cluster_a.prefix}.a.{incarnation}.l{number}.*",
                f"{pair.cluster_a.prefix}.actor.a.{incarnation}.l{number}.*",
            ]
        assert {home_of(t0), home_of(t1)} == {int(n.rsplit("-", 1)[1]) for n in lanes}


async def test_a_synchronous_actor_answers_its_lane_asks_from_its_drain(pair: Pair) -> None:
    with anyio.fail_after(2 * WAIT):
        await pair.a.spawn(SyncOwner, name="sync", public=True, placement=1)
        target = await pair.b.lookup_remote("sync", OwnerMsg)
        assert isinstance(target, RemoteRef)
        asker = await pair.b.spawn(Asker, placement=0)
        await ask_until_its_lane_serves(pair, asker, target)
        before = served(pair.a)
        assert await asker.ask(AskMany(target, 50), timeout=WAIT) == 50
        assert served(pair.a) == before + 50


async def test_asks_on_the_owners_lane_never_overtake_the_tells_before_them(
    pair: Pair,
) -> None:
    with anyio.fail_after(3 * WAIT):
        await pair.a.spawn(Log, name="log", public=True, capacity=4096, placement=1)
        log = await pair.b.lookup_remote("log", Entry | Entries)
        asker = await pair.b.spawn(Asker, placement=0)
        while served(pair.a) == 0:  # until its asks take the owner's lane
            assert await asker.ask(TellThenAsk(log, 1, 0), timeout=WAIT) == 1
        before = served(pair.a)
        # Rounds of pipelined tells (on the cluster connection), each followed, once
        # they are answered (enqueued), by an ask on the owner's lane that must see them.
        assert await asker.ask(TellThenAsk(log, 40, 5), timeout=2 * WAIT) == 40
        entries = await log.ask(Entries())
        assert list(entries) == [(round, seq) for round in range(40) for seq in range(5)]
        assert served(pair.a) == before + 40


async def test_a_lane_answer_carrying_a_ref_leaves_once_the_ref_is_subscribed(
    pair: Pair,
) -> None:
    with anyio.fail_after(2 * WAIT):
        (t0, _), asker = await owners(pair)
        before = served(pair.a)
        child = await asker.ask(AskOnce(t0, Child(), WAIT), timeout=WAIT)
        assert served(pair.a) == before + 1  # answered on o0's lane
        assert isinstance(child, RemoteRef)
        # Its subscription was made (on a's cluster loop) before the answer left.
        assert await asker.ask(AskOnce(child, Echo(5), 1.0), timeout=WAIT) == 5


async def test_a_stale_hint_is_forwarded_and_answered_with_a_fresh_one(pair: Pair) -> None:
    with anyio.fail_after(2 * WAIT):
        (t0, t1), asker = await owners(pair)
        right = home_of(t0)
        note_home(t0, home_of(t1))  # as if o0 had moved to loop 1 since its last answer
        before = served(pair.a)
        assert await asker.ask(AskOnce(t0, Echo(7), WAIT), timeout=WAIT) == 7
        assert served(pair.a) == before + 1  # taken on loop 1's lane, enqueued for o0
        assert home_of(t0) == right  # the answer named o0's loop's lane
        assert await asker.ask(AskMany(t0, 10), timeout=WAIT) == 10
        assert served(pair.a) == before + 11


async def test_a_hint_that_finds_nobody_takes_the_full_path(pair: Pair) -> None:
    with anyio.fail_after(2 * WAIT):
        (t0, _), asker = await owners(pair)
        right = home_of(t0)
        note_home(t0, 99)  # no lane 99 on node a: "no responders"
        before = served(pair.a)
        assert await asker.ask(AskOnce(t0, Echo(3), WAIT), timeout=WAIT) == 3
        assert served(pair.a) == before  # answered over the cluster connections
        assert home_of(t0) == right  # whose answer named the right lane again
        assert await asker.ask(AskMany(t0, 5), timeout=WAIT) == 5
        assert served(pair.a) == before + 5


async def test_a_lane_ask_carries_its_deadline_and_its_cancel_notice(pair: Pair) -> None:
    with anyio.fail_after(2 * WAIT):
        (t0, _), asker = await owners(pair)
        before = served(pair.a)
        left = await asker.ask(AskOnce(t0, HowLong(), 3.0), timeout=WAIT)
        assert isinstance(left, float)
        assert 1.0 < left <= 3.0  # the time left, as a duration
        # Given up by its asker while its handler runs: the notice follows it on the
        # lane, and the owner cancels the handler (it opted in).
        with pytest.raises(actors.AskTimeout):
            await asker.ask(AskOnce(t0, Park("in", "out", "cancelled"), 0.3), timeout=WAIT)
        assert flag("in").is_set()
        await flag("cancelled").wait()
        await wait_until(lambda: asking(pair.a) == 0)
        assert served(pair.a) >= before + 2
        assert await asker.ask(AskMany(t0, 3), timeout=WAIT) == 3


async def test_hostile_frames_on_a_lanes_subject_are_refused_and_lose_nothing(
    pair: Pair, anyio_backend_name: str
) -> None:
    if anyio_backend_name == "trio":
        pytest.skip("the forging client is nats-py: an asyncio host")
    import nats

    with anyio.fail_after(2 * WAIT):
        (t0, _), asker = await owners(pair)
        address = address_of(t0)
        lane = f"{pair.cluster_a.prefix}.actor.a.{address.incarnation}.l{home_of(t0)}"
        forger = await nats.connect(pair.server.url)  # pyright: ignore[reportUnknownMemberType]
        try:

            async def request(subject: str, data: bytes) -> Reply:
                msg = await forger.request(subject, data, timeout=WAIT)
                return msgspec.msgpack.decode(msg.data, type=Reply)

            def envelope(kind: int, name: str, body: object) -> bytes:
                raw = msgspec.Raw(msgspec.msgpack.encode(body))
                frame = Envelope(WIRE_VERSION, kind, name, raw, WAIT, "x", key=12345)
                return msgspec.msgpack.encode(frame)

            rejected = pair.cluster_a.statistics().rejected
            handled = await asker.ask(AskOnce(t0, Count(), WAIT), timeout=WAIT)
            expected: list[tuple[str, bytes, str]] = [
                (f"{lane}.{address.id}", b"\xc1 not a frame", "WireError"),
                (f"{lane}.{address.id}", envelope(TELL, message_name(Echo), Echo(1)), "WireError"),
                (f"{lane}.{address.id}", envelope(ASK, "no.such.Type", Echo(1)), "WireError"),
                (f"{lane}.{address.id}", envelope(ASK, message_name(Echo), [1, 2]), "WireError"),
                (f"{lane}.notanid", envelope(ASK, message_name(Echo), Echo(1)), "WireError"),
                (f"{lane}.{address.id}", envelope(ASK, message_name(Unwanted), Unwanted()), ""),
                (f"{lane}.987654", envelope(ASK, message_name(Echo), Echo(1)), "ActorStopped"),
            ]
            for subject, data, error in expected:
                reply = await request(subject, data)
                assert reply.status == ERROR, subject
                assert reply.error is not None
                if error:
                    assert reply.error.type == error, (subject, reply.error)
                else:
                    assert reply.error.type == "MessageTypeError"
            # Counted on a's cluster loop, a moment after each refusal.
            await wait_until(lambda: pair.cluster_a.statistics().rejected == rejected + 5)
            # A well-formed ask on the same subject is answered.
            reply = await request(
                f"{lane}.{address.id}", envelope(ASK, message_name(Echo), Echo(42))
            )
            assert reply.status == OK
            assert msgspec.msgpack.decode(reply.body) == 42
            # Nothing else was enqueued: Echo(42) and this Count since the last Count.
            assert await asker.ask(AskOnce(t0, Count(), WAIT), timeout=WAIT) == handled + 2
        finally:
            await forger.close()
        assert await asker.ask(AskMany(t0, 2), timeout=WAIT) == 2


async def test_a_blocked_owner_loop_stalls_its_own_lane_never_the_heartbeats(
    pair: Pair,
) -> None:
    with anyio.fail_after(3 * WAIT):
        (t0, t1), asker = await owners(pair)
        block = 3 * 1.0  # three heartbeat timeouts
        done = Flag()
        direct = await pair.a.lookup_remote("o1", OwnerMsg)  # a's own: its local ref

        async def block_the_loop() -> None:
            await direct.ask(Block(block), timeout=2 * WAIT)
            done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(block_the_loop)
            before = served(pair.a)
            await flag("blocking").wait()
            # An ask for o1 waits unread on the blocked loop's lane and times out; its
            # asker forgets the hint, so that the next goes through the cluster connection.
            with pytest.raises(actors.AskTimeout):
                await asker.ask(AskOnce(t1, Echo(1), 0.3), timeout=WAIT)
            assert home_of(t1) == 0
            # Meanwhile node b never declares a down, and loop 0's lane answers on.
            while not done.is_set():
                assert "a" in pair.cluster_b.statistics().members
                assert await asker.ask(AskMany(t0, 1), timeout=WAIT) == 1
                await anyio.sleep(0.05)  # pacing the checks, not synchronising
            assert served(pair.a) > before
        assert "a" in pair.cluster_b.statistics().members
        assert await asker.ask(AskMany(t1, 5), timeout=WAIT) == 5


async def test_a_leaving_owner_closes_its_lanes_and_its_askers_learn_it(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(3 * WAIT):
        async with actors.ActorSystem(
            workers=2, name="b", cluster=node(server.url, "b", prefix)
        ) as b:
            async with actors.ActorSystem(
                workers=2, name="a", cluster=node(server.url, "a", prefix)
            ) as a:
                pair = Pair(a, b, server)
                (t0, _), asker = await owners(pair)
                assert len(connections(server, "actors:a:lane-")) == 2
            # Left: no lane of a is connected; its actors' askers learn they stopped.
            assert not connections(server, "actors:a")
            with pytest.raises(actors.ActorStopped):
                await asker.ask(AskOnce(t0, Echo(1), WAIT), timeout=WAIT)


async def test_the_owners_lanes_serve_again_after_a_server_restart(prefix: str) -> None:
    FLAGS.clear()
    server = NatsServer(monitor=True)
    server.start()
    try:
        with anyio.fail_after(4 * WAIT):
            async with (
                actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
                actors.ActorSystem(workers=2, name="b", cluster=node(server.url, "b", prefix)) as b,
            ):
                pair = Pair(a, b, server)
                (t0, _), asker = await owners(pair)
                server.kill()
                await wait_until(lambda: not pair.cluster_a.statistics().connected)
                server.start()
                await wait_until(lambda: pair.cluster_a.statistics().reconnects >= 1)
                await wait_until(lambda: len(pair.lanes_of("a")) == 2, timeout=WAIT)
                # Asks made meanwhile took the full path or timed out; now the lanes again.
                before = served(a)
                while served(a) == before:
                    with anyio.move_on_after(WAIT / 4):
                        await asker.ask(AskMany(t0, 1), timeout=WAIT)
                assert await asker.ask(AskMany(t0, 20), timeout=WAIT) == 20
    finally:
        server.stop()
