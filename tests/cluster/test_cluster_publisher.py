"""Pipelined durable sends (``actors/cluster/_publisher.py``) against a real nats-server -js.

A durable `send` returns once its node's publish window holds the message; `flush` waits
for the PubAcks. The faults are made with the server process itself: paused (SIGSTOP: the
connection stays up, nothing is read or answered, so PubAcks do not come), killed (SIGKILL)
and restarted on the same port with the same storage. Lost PubAcks of stored messages are
made by dropping them in the node. Each test has its own server (it pauses or kills it).
"""

from __future__ import annotations

import asyncio
import itertools
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
from actors.cluster._publisher import Publish, Publisher
from actors.cluster._wire import WireError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
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


# The paused server leaves the stream unmade: the publisher's JetStream request waits
# max(1 s, connect_timeout) for its answer (5 s by default) before the message is given up on.
@pytest.mark.parametrize("pair_options", [{"ack_timeout": 0.3, "connect_timeout": 1.0}])
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


# -- the publisher alone, around a fake client: bursts, refusals, retries, expiry -------------


class _FakeMsg:
    def __init__(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.subject, self.data, self.headers = subject, data, headers


class _FakeClient:
    """What the publisher calls on a nats-py client; PubAcks are injected by the test."""

    def __init__(self) -> None:
        self.is_connected = True
        self.published: list[tuple[int, str]] = []  # (number, Nats-Msg-Id) in publish order
        self.callback: Any = None
        self.sent = asyncio.Event()

    async def publish(self, subject: str, data: bytes, reply: str, headers: Any) -> None:
        self.published.append((int(reply.rsplit(".", 1)[-1]), headers["Nats-Msg-Id"]))
        self.sent.set()

    async def subscribe(self, subject: str, **options: Any) -> object:
        self.callback = options["cb"]
        return object()

    async def answer(self, number: int, body: dict[str, Any] | None = None) -> None:
        """The server's answer to message ``number``: a PubAck, an error, or (None) 503."""
        if body is None:
            await self.callback(_FakeMsg(f"_INBOX.d.{number}", b"", {"Status": "503"}))
            return
        await self.callback(_FakeMsg(f"_INBOX.d.{number}", msgspec.json.encode(body)))

    async def next_publishes(self, count: int) -> list[int]:
        """Wait until ``count`` more messages are published; their numbers."""
        start = len(self.published)
        with anyio.fail_after(WAIT):
            while len(self.published) < start + count:
                self.sent.clear()
                await self.sent.wait()
        return [number for number, _ in self.published[start : start + count]]


class _Ref:
    """Stands for a DurableRef: the publisher reads its name and path only."""

    def __init__(self, name: str) -> None:
        self.name, self.path = name, f"/user/{name}"


class _Letters:
    def __init__(self) -> None:
        self.letters: list[tuple[str, list[object], str]] = []

    def publish(self, path: str, messages: list[object], reason: str) -> None:
        self.letters.append((path, messages, reason))


class _Unit:
    """A Publisher over a fake client and transport, on the running asyncio loop."""

    def __init__(self, ack_timeout: float = 30.0, outstanding: int = 1024) -> None:
        from actors.cluster import DurableOptions
        from actors.cluster._transport import Identity, Transport

        self.client = _FakeClient()
        self.transport = Transport(Identity("b", "t", "inc"), ["nats://fake"], {}, 1.0)
        self.transport.client = self.client  # type: ignore[assignment]
        self.transport.connected = True
        self.transport.loop = asyncio.get_running_loop()
        self.dead = _Letters()
        registry: Any = type("Registry", (), {"system": type("S", (), {"dead_letters": self.dead})})
        self.publisher = Publisher(
            self.transport,
            registry,
            DurableOptions(outstanding=outstanding),
            ack_timeout,
            self._ensure_stream,
            lambda number: f"b.inc.{number}",
        )
        self.ref: Any = _Ref("ledger")
        self.numbers = itertools.count(1)

    async def _ensure_stream(self) -> None:
        return None

    def send(self, message: object) -> Publish:
        from actors.cluster._frames import Outbound

        item = Publish(
            self.ref, Outbound("t.durable.ledger", b"x", [], message), next(self.numbers)
        )
        assert self.publisher.admit(item)
        return item

    async def flush(self, wait: float | None = None) -> None:
        await self.publisher.flush(self.ref, wait)


def _unit(scenario: Callable[[_Unit], Coroutine[Any, Any, None]], **options: Any) -> None:
    async def main() -> None:
        unit = _Unit(**options)
        try:
            await asyncio.wait_for(scenario(unit), WAIT)
        finally:
            await unit.publisher.close(0.0)

    asyncio.run(main())


STORED = {"stream": "t_DURABLE", "seq": 1}


def test_one_burst_at_a_time_the_next_gathers_while_one_is_in_flight() -> None:
    async def scenario(unit: _Unit) -> None:
        for n in range(3):
            unit.send(n)
        assert await unit.client.next_publishes(3) == [1, 2, 3]  # one burst
        unit.send(3)
        unit.send(4)
        await asyncio.sleep(0.05)  # a burst in flight: nothing more may go meanwhile
        assert len(unit.client.published) == 3
        for number in (1, 2, 3):
            await unit.client.answer(number, STORED)
        assert await unit.client.next_publishes(2) == [4, 5]
        assert [message_id for _, message_id in unit.client.published] == [
            f"b.inc.{n}" for n in range(1, 6)
        ]

    _unit(scenario)


def test_unavailable_answers_publish_the_unsettled_again_first_with_the_same_ids() -> None:
    async def scenario(unit: _Unit) -> None:
        for n in range(4):
            unit.send(n)
        assert await unit.client.next_publishes(4) == [1, 2, 3, 4]
        unit.send(4)  # newer: must wait behind the ones published again
        await unit.client.answer(1, STORED)
        await unit.client.answer(2, None)  # no responders: JetStream not there right now
        await unit.client.answer(3, {"error": {"code": 503, "err_code": 10008}})
        await unit.client.answer(4, STORED)
        # Again, oldest first, the newer one behind them in the same burst.
        assert await unit.client.next_publishes(3) == [2, 3, 5]
        ids = [message_id for number, message_id in unit.client.published if number == 2]
        assert ids == ["b.inc.2", "b.inc.2"]
        await unit.client.answer(2, {"stream": "t_DURABLE", "seq": 2, "duplicate": True})
        await unit.client.answer(3, STORED)
        await unit.client.answer(5, STORED)
        await unit.flush()
        publisher = unit.publisher
        assert (publisher.published, publisher.deduplicated, publisher.retried) == (5, 1, 2)
        assert publisher.outstanding == 0

    _unit(scenario)


def test_a_refusal_for_good_is_given_up_as_a_dead_letter_and_flush_raises_it() -> None:
    async def scenario(unit: _Unit) -> None:
        unit.send("ok")
        unit.send("refused")
        assert await unit.client.next_publishes(2) == [1, 2]
        await unit.client.answer(1, STORED)
        limit = {"code": 400, "err_code": 10054, "description": "maximum payload exceeded"}
        await unit.client.answer(2, {"error": limit})
        with pytest.raises(WireError, match="maximum payload exceeded"):
            await unit.flush()  # given up before the call: reported all the same
        await unit.flush()  # reported once
        assert unit.dead.letters == [("/user/ledger", ["refused"], "undelivered")]
        assert (unit.publisher.undelivered, unit.publisher.outstanding) == (1, 0)
        await asyncio.sleep(0.05)
        assert len(unit.client.published) == 2  # never published again

    _unit(scenario)


def test_silence_publishes_the_burst_again_and_expiry_gives_it_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher_module, "PUBLISH_TRY", 0.05)

    async def scenario(unit: _Unit) -> None:
        unit.send("lost")
        assert await unit.client.next_publishes(1) == [1]
        assert await unit.client.next_publishes(1) == [1]  # no PubAck: the same id again
        with pytest.raises(actors.SendTimeout, match="may or may not"):
            await unit.flush()  # ack_timeout passed: given up on
        assert unit.dead.letters == [("/user/ledger", ["lost"], "undelivered")]
        await unit.client.answer(1, STORED)  # a late PubAck of a message given up on
        assert unit.publisher.published == 0  # ignored: the outcome was already told

    _unit(scenario, ack_timeout=0.3)


def test_a_flush_times_out_without_losing_the_messages() -> None:
    async def scenario(unit: _Unit) -> None:
        unit.send(0)
        await unit.client.next_publishes(1)
        with pytest.raises(actors.SendTimeout, match="may still be"):
            await unit.flush(0.05)
        await unit.client.answer(1, STORED)
        await unit.flush(1.0)  # the same message, stored after all
        assert unit.publisher.published == 1

    _unit(scenario)


def test_malformed_pubacks_are_rejected_and_the_message_goes_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(publisher_module, "PUBLISH_TRY", 0.05)

    async def scenario(unit: _Unit) -> None:
        unit.send(0)
        await unit.client.next_publishes(1)
        await unit.client.callback(_FakeMsg("_INBOX.d.1", b"{not json"))
        await unit.client.callback(_FakeMsg("_INBOX.d.x", b"{}"))  # not a number: ignored
        assert unit.transport.rejected == 1
        assert await unit.client.next_publishes(1) == [1]
        await unit.client.answer(1, STORED)
        await unit.flush()

    _unit(scenario)
