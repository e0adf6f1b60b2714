"""Pipelined durable sends (``actors/cluster/_publisher.py``) against a real nats-server -js.

A durable `send` returns once its node's publish window holds the message; `flush` waits
for the PubAcks. The faults are made with the server process itself: paused (SIGSTOP: the
connection stays up, nothing is read or answered, so PubAcks do not come), killed (SIGKILL)
and restarted on the same port with the same storage. Lost PubAcks of stored messages are
made by dropping them in the node. Each test has its own server (it pauses or kills it).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, wait_until
from cluster_support import NatsServer, NodeFactory, prefix_fixture

import actors
from actors.cluster import DurableRef, Nats, register_message
from actors.cluster import _publisher as publisher_module
from actors.cluster._publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

prefix = prefix_fixture("pub")
node = NodeFactory(
    heartbeat_interval=0.1,
    heartbeat_timeout=5.0,
    reconnect_time_wait=0.05,
    durable_ack_wait=1.0,
    durable_retry_delay=0.05,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    running = NatsServer("-js", "-sd", str(tmp_path / "jetstream"))
    running.start()
    try:
        yield running
    finally:
        running.kill()  # a paused process too


@register_message(name="publisher-test.Entry")
class Entry(msgspec.Struct, frozen=True):
    sender: int
    seq: int


class Ledger(actors.Actor[Entry]):
    """Records every Entry it handles, in handling order (a list the test owns)."""

    def __init__(self, seen: list[Entry]) -> None:
        self.seen = seen

    async def receive(self, message: Entry) -> None:
        self.seen.append(message)


class Letters(actors.Actor[actors.DeadLetter]):
    def __init__(self, letters: list[actors.DeadLetter]) -> None:
        self.letters = letters

    async def receive(self, message: actors.DeadLetter) -> None:
        self.letters.append(message)


class Pair:
    """The owner of the durable ledger (a) and a sending node (b), with the ledger's ref."""

    def __init__(
        self, a: actors.ActorSystem, b: actors.ActorSystem, ledger: DurableRef[Entry]
    ) -> None:
        self.a, self.b, self.ledger = a, b, ledger
        cluster = b.cluster
        assert isinstance(cluster, Nats)
        self.sender = cluster

    def stats(self) -> Any:
        return self.sender.statistics()


@pytest.fixture
async def pair_options() -> dict[str, Any]:
    return {}


@pytest.fixture
async def pair(
    server: NatsServer, prefix: str, pair_options: dict[str, Any]
) -> AsyncIterator[tuple[Pair, list[Entry]]]:
    seen: list[Entry] = []
    async with (
        actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
        actors.ActorSystem(
            workers=1, name="b", cluster=node(server.url, "b", prefix, **pair_options)
        ) as b,
    ):
        await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
        ledger = await b.lookup_remote("ledger", Entry)
        assert isinstance(ledger, DurableRef)
        yield Pair(a, b, ledger), seen


def entries(sender: int, count: int) -> list[Entry]:
    return [Entry(sender, seq) for seq in range(count)]


# -- sends return before the PubAck; flush waits for it ---------------------------------------


async def test_a_send_returns_before_its_puback_and_flush_waits_for_storage(
    server: NatsServer, pair: tuple[Pair, list[Entry]]
) -> None:
    link, seen = pair
    with anyio.fail_after(WAIT):
        server.pause()
        try:
            for entry in entries(1, 10):
                await link.ledger.send(entry)  # no PubAck can come: returns all the same
            assert link.stats().durable_outstanding == 10
            with pytest.raises(actors.SendTimeout, match="'ledger'"):
                await link.ledger.flush(timeout=0.2)
        finally:
            server.resume()
        await link.ledger.flush()
        stats = link.stats()
        assert (stats.durable_published, stats.durable_outstanding) == (10, 0)
        await wait_until(lambda: len(seen) == 10)
        assert seen == entries(1, 10)  # stored, and handled, in the order sent
        await link.ledger.flush()  # nothing pending: returns at once


async def test_blocking_send_and_flush_from_a_plain_thread(
    pair: tuple[Pair, list[Entry]],
) -> None:
    link, seen = pair

    def from_thread() -> None:
        for entry in entries(2, 5):
            link.ledger.blocking_send(entry)
        link.ledger.blocking_flush(timeout=WAIT)

    with anyio.fail_after(WAIT):
        await anyio.to_thread.run_sync(from_thread)
        assert link.stats().durable_published == 5
        await wait_until(lambda: len(seen) == 5)
    assert seen == entries(2, 5)
    with pytest.raises(RuntimeError):
        link.ledger.blocking_flush()  # from a thread that runs an event loop


async def test_bad_input_is_refused_before_anything_is_admitted(
    pair: tuple[Pair, list[Entry]],
) -> None:
    link, _ = pair
    with anyio.fail_after(WAIT):
        with pytest.raises(actors.MessageTypeError, match="ledger"):
            await link.ledger.send("not an entry")  # type: ignore[arg-type]
        with pytest.raises(actors.MessageTypeError):
            link.ledger.try_send(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout"):
            await link.ledger.flush(timeout=-1.0)
        with pytest.raises(ValueError, match="timeout"):
            await link.ledger.send(Entry(0, 0), timeout=float("nan"))
        assert link.stats().durable_outstanding == 0
        assert link.stats().durable_published == 0


# -- a full window ------------------------------------------------------------------------------


@pytest.mark.parametrize("pair_options", [{"durable_outstanding": 4}])
async def test_a_full_window_makes_send_wait_and_try_send_fail_fast(
    server: NatsServer, pair: tuple[Pair, list[Entry]]
) -> None:
    link, seen = pair
    late: list[Entry] = []
    with anyio.fail_after(WAIT):
        server.pause()
        try:
            for entry in entries(1, 4):
                await link.ledger.send(entry)
            with pytest.raises(actors.MailboxFull, match="await their PubAck") as full:
                link.ledger.try_send(Entry(9, 0))
            assert full.value.message == Entry(9, 0)  # handed back, nothing lost silently
            with pytest.raises(actors.SendTimeout) as timed_out:
                await link.ledger.send(Entry(9, 1), timeout=0.1)
            assert timed_out.value.message == Entry(9, 1)
            assert link.stats().durable_outstanding == 4

            async def waiting_send() -> None:
                await link.ledger.send(Entry(1, 4))  # waits for room, then is admitted
                late.append(Entry(1, 4))

            async with anyio.create_task_group() as group:
                group.start_soon(waiting_send)
                await wait_until(lambda: _waiting_for_room(link) == 1)
                assert not late
                server.resume()
        finally:
            server.resume()
        await link.ledger.flush()
        await wait_until(lambda: len(seen) == 5)
    assert seen == entries(1, 5)  # the refused ones never went; the waiting one did, in order
    assert link.stats().durable_published == 5


def _waiting_for_room(link: Pair) -> int:
    cluster: Any = link.sender
    publisher: Publisher = cluster._node.durable.publisher
    return len(publisher._room)  # pyright: ignore[reportPrivateUsage]


# -- faults: a window in flight at a broker kill; lost PubAcks; never stored --------------------


async def test_a_window_in_flight_when_the_broker_is_killed_is_stored_once_in_order(
    server: NatsServer, prefix: str
) -> None:
    senders, count = 3, 100
    seen: list[Entry] = []
    with anyio.fail_after(30):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            ledger = await b.lookup_remote("ledger", Entry)
            assert isinstance(ledger, DurableRef)
            sender = b.cluster
            assert isinstance(sender, Nats)
            await ledger.send(Entry(-1, 0))
            await ledger.flush()  # the stream and the PubAck subscription are ready
            server.pause()  # what is published now is read by nobody ...

            async def send_all(index: int) -> None:
                for entry in entries(index, count):
                    await ledger.send(entry)

            async with anyio.create_task_group() as group:
                for index in range(senders):
                    group.start_soon(send_all, index)
            assert sender.statistics().durable_outstanding == senders * count
            server.kill()  # ... and lost with the process
            await wait_until(lambda: not sender.statistics().connected)
            server.start()  # the same port, the same storage
            await ledger.flush(timeout=20.0)
            await wait_until(lambda: len(seen) >= 1 + senders * count, timeout=20.0)
            stats = sender.statistics()
    assert len(seen) == 1 + senders * count  # each handled once
    for index in range(senders):
        assert [e.seq for e in seen if e.sender == index] == list(range(count))
    assert stats.durable_published == 1 + senders * count
    assert stats.durable_retried >= 1  # published again after the reconnect
    assert stats.durable_undelivered == 0


async def test_a_broker_killed_mid_flow_loses_nothing_and_keeps_each_senders_order(
    server: NatsServer, prefix: str
) -> None:
    # Enough messages that the window (1024) fills and drains while the kill lands: bursts
    # are in flight, some stored, some lost, PubAcks missing, senders waiting for room.
    senders, count = 3, 1500
    seen: list[Entry] = []
    with anyio.fail_after(60):
        owner_cluster = node(server.url, "a", prefix, durable_window=32)
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=owner_cluster) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            ledger = await b.lookup_remote("ledger", Entry)
            assert isinstance(ledger, DurableRef)
            sender = b.cluster
            assert isinstance(sender, Nats)

            async def send_all(index: int) -> None:
                for entry in entries(index, count):
                    await ledger.send(entry)

            async with anyio.create_task_group() as group:
                for index in range(senders):
                    group.start_soon(send_all, index)
                await wait_until(lambda: sender.statistics().durable_published >= count)
                server.kill()
                await wait_until(lambda: not sender.statistics().connected)
                server.start()
            await ledger.flush(timeout=30.0)
            total = senders * count
            await wait_until(lambda: len({(e.sender, e.seq) for e in seen}) == total, 30.0)
            stats = sender.statistics()
    assert len(seen) == senders * count  # none handled twice
    for index in range(senders):
        assert [e.seq for e in seen if e.sender == index] == list(range(count))
    assert stats.durable_published == senders * count
    assert stats.durable_undelivered == 0
    print(  # the figures docs/cluster-durable.md quotes
        f"\nbroker killed mid-flow: {senders * count} sends, "
        f"{stats.durable_retried} publishes repeated, "
        f"{stats.durable_deduplicated} dropped as copies by the stream"
    )


async def test_lost_pubacks_are_published_again_and_dropped_as_duplicates(
    server: NatsServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "PUBLISH_TRY", 0.2)
    original = Publisher._on_puback  # pyright: ignore[reportPrivateUsage]
    dropped: set[str] = set()

    async def losing(self: Publisher, msg: Any) -> None:
        if msg.subject not in dropped:  # the first PubAck of each message is lost
            dropped.add(msg.subject)
            return
        await original(self, msg)

    monkeypatch.setattr(Publisher, "_on_puback", losing)
    seen: list[Entry] = []
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            ledger = await b.lookup_remote("ledger", Entry)
            assert isinstance(ledger, DurableRef)
            for entry in entries(1, 5):
                await ledger.send(entry)
            await ledger.flush()
            await wait_until(lambda: len(seen) == 5)
            sender = b.cluster
            assert isinstance(sender, Nats)
            stats = sender.statistics()
    assert len(dropped) == 5
    assert seen == entries(1, 5)  # stored once: the copies were dropped by the stream
    assert stats.durable_published == 5
    assert stats.durable_retried >= 5
    assert stats.durable_deduplicated == 5


@pytest.mark.parametrize("pair_options", [{"ack_timeout": 0.3}])
async def test_a_message_never_stored_is_an_undelivered_dead_letter(
    server: NatsServer, pair: tuple[Pair, list[Entry]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher_module, "PUBLISH_TRY", 0.1)
    link, _ = pair
    letters: list[actors.DeadLetter] = []
    with anyio.fail_after(WAIT):
        collector = await link.b.spawn(lambda: Letters(letters))
        link.b.dead_letters.subscribe(collector)
        server.pause()
        try:
            await link.ledger.send(Entry(1, 0))
            with pytest.raises(actors.SendTimeout, match="may or may not") as failed:
                await link.ledger.flush()  # the outcome: given up on
            assert failed.value.message == Entry(1, 0)
            stats = link.stats()
            assert (stats.durable_undelivered, stats.durable_outstanding) == (1, 0)
            await wait_until(lambda: bool(letters))
        finally:
            server.resume()
    (letter,) = letters
    assert (letter.message, letter.reason) == (Entry(1, 0), "undelivered")
    assert letter.recipient == link.ledger.path


async def test_a_node_that_leaves_dead_letters_what_it_could_not_store(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(
            workers=1, name="a", cluster=node(server.url, "a", prefix)
        ) as a:
            await a.spawn(lambda: Ledger([]), name="ledger", durable=True)
            sender_cluster = node(server.url, "b", prefix, ack_timeout=0.3)
            async with actors.ActorSystem(workers=1, name="b", cluster=sender_cluster) as b:
                ledger = await b.lookup_remote("ledger", Entry)
                assert isinstance(ledger, DurableRef)
                await ledger.send(Entry(0, 0))
                await ledger.flush()
                server.pause()
                for entry in entries(1, 3):
                    await ledger.send(entry)
                # Leaving waits for the PubAcks (bounded), then gives the rest up.
            server.resume()
            stats = sender_cluster.statistics()
            assert (stats.durable_undelivered, stats.durable_outstanding) == (3, 0)
            with pytest.raises(actors.ActorError):
                await ledger.send(Entry(1, 9))  # the node has left


async def test_a_stopped_owner_gets_the_messages_sent_meanwhile_when_spawned_again(
    pair: tuple[Pair, list[Entry]],
) -> None:
    link, seen = pair
    with anyio.fail_after(WAIT):
        owner = link.a.lookup("/user/ledger")
        assert owner is not None
        await owner.stop()
        for entry in entries(1, 3):
            await link.ledger.send(entry)  # no owner: the stream keeps them
        await link.ledger.flush()
        assert not seen
        await link.a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
        await wait_until(lambda: len(seen) == 3)
    assert seen == entries(1, 3)


async def test_concurrent_senders_from_threads_keep_their_own_order(
    pair: tuple[Pair, list[Entry]],
) -> None:
    link, seen = pair
    threads, count = 3, 50
    errors: list[BaseException] = []

    def sender(index: int) -> None:
        try:
            for entry in entries(index, count):
                link.ledger.blocking_send(entry)
        except BaseException as error:  # reported to the test below
            errors.append(error)

    with anyio.fail_after(WAIT):
        workers = [threading.Thread(target=sender, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            await anyio.to_thread.run_sync(worker.join)
        await link.ledger.flush()
        await wait_until(lambda: len(seen) == threads * count)
    assert not errors
    for index in range(threads):
        assert [e.seq for e in seen if e.sender == index] == list(range(count))
