"""Pipelined remote tells (actors/cluster/_window.py): the receiver's place in each stream on a
fake client, and the whole path over a real server: sends that return before their reply,
exactly once and in order, and a window in flight when the owner's node dies accounted for
(handled there, or a dead letter here)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, park, wait_until, waiting_senders
from cluster_support import (
    Entries,
    Entry,
    Log,
    NatsServer,
    NodeFactory,
    parts_on_this_loop,
    prefix_fixture,
    server_fixture,
)
from test_cluster_parts import (
    FakeMsg,
    Parts,
    Put,
    Total,
    answer,
    answered,
    public_book,
    request,
)

import actors
from actors._oneshot import oneshot
from actors.cluster import Nats, RemoteRef
from actors.cluster._remote import Credit, window_of
from actors.cluster._window import PIPELINED_MAX, STREAMS_PER_ACTOR, Streams, Tell, Window
from actors.cluster._wire import (
    ERROR,
    GAP,
    OK,
    TELL,
    TELLS,
    WIRE_VERSION,
    Address,
    Envelope,
    ErrorInfo,
    Told,
    message_name,
)

if TYPE_CHECKING:
    from actors.cluster._wire import Reply

pytestmark = pytest.mark.anyio

server = server_fixture()
prefix = prefix_fixture("w")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0)

NAME = "t.name.book"
STREAM = 77


def stream_frame(
    seq: int, message: object, *, base: int = 1, stream: int = STREAM, type_name: str = ""
) -> bytes:
    body = msgspec.Raw(msgspec.msgpack.encode(message))
    name = type_name or message_name(type(message))
    envelope = Envelope(WIRE_VERSION, TELL, name, body, None, "b", stream, seq, base)
    return msgspec.msgpack.encode(envelope)


async def tell(parts: Parts, seq: int, message: object, **options: Any) -> Reply:
    return await answer(parts.client, await request(parts, stream_frame(seq, message, **options)))


# -- the receiver's place in a stream (fake client) -------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the parts run on the cluster's asyncio loop


async def test_a_stream_tell_is_enqueued_once_and_only_at_its_turn() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=16) as book:
            assert (await tell(parts, 1, Put(1))).status == OK
            assert (await tell(parts, 2, Put(2))).status == OK
            # Sent again (its reply was lost): answered OK again, enqueued once.
            assert (await tell(parts, 1, Put(1))).status == OK
            # Ahead of its turn (3 was lost): refused with the seq expected, not enqueued.
            gap = await tell(parts, 4, Put(4))
            assert gap.status == GAP
            assert msgspec.msgpack.decode(gap.body) == 3
            assert (await tell(parts, 3, Put(3))).status == OK
            assert (await tell(parts, 4, Put(4))).status == OK
            assert await book.ref.ask(Total()) == 10
            assert book.seen == [1, 2, 3, 4]


async def test_a_refused_stream_tell_is_refused_again_when_sent_again() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=16) as book:
            refused = await tell(parts, 1, Put(1), type_name="nobody.Knows")
            assert refused.status == ERROR
            assert refused.error is not None
            again = await tell(parts, 1, Put(1), type_name="nobody.Knows")
            assert (again.status, again.error) == (ERROR, refused.error)
            # The refusal was the frame's turn: the next one is enqueued.
            assert (await tell(parts, 2, Put(2))).status == OK
            assert await book.ref.ask(Total()) == 2
            assert book.seen == [2]


async def test_a_stream_the_receiver_does_not_know_starts_at_the_frames_base() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=16) as book:
            # The sender heard about 1..4 (from an earlier receiver state, since forgotten).
            assert (await tell(parts, 5, Put(5), base=5)).status == OK
            gap = await tell(parts, 7, Put(7), base=5)
            assert (gap.status, msgspec.msgpack.decode(gap.body)) == (GAP, 6)
            assert await book.ref.ask(Total()) == 5
            assert book.seen == [5]


async def test_an_ok_takes_the_run_it_answers_out_of_the_window_in_seq_order() -> None:
    window = Window()
    sents = [window.add(Tell(told(Put(n)), [], Put(n), 16), None) for n in range(1, 6)]
    assert [sent.seq for sent in sents] == [1, 2, 3, 4, 5]
    window.remove(3)  # refused on its own: a gap in the run
    drained = asyncio.get_running_loop().create_task(window.wait_drained())
    await wait_until(lambda: window.drained is not None)  # the waiter is registered
    assert [sent.seq for sent in window.remove_through(4)] == [1, 2, 4]
    assert list(window.unacked) == [5]
    assert window.base == 5
    assert not drained.done()
    assert [sent.seq for sent in window.remove_through(9)] == [5]
    with anyio.fail_after(WAIT):
        await drained  # the last one out wakes what waits for the stream to drain
    assert window.remove_through(9) == []


async def test_a_drained_run_takes_the_next_seqs_in_order() -> None:
    window = Window()
    window.add(Tell(told(Put(0)), [], Put(0), 16), None)
    run = [Tell(told(Put(n)), [], Put(n), 16) for n in range(1, 4)]
    sents = window.add_all(run, None)
    assert [(sent.seq, sent.tell, sent.pipelined) for sent in sents] == [
        (2, run[0], True),
        (3, run[1], True),
        (4, run[2], True),
    ]
    assert list(window.unacked) == [1, 2, 3, 4]
    waiting = asyncio.get_running_loop().create_future()
    (acked,) = window.add_all([Tell(told(Put(5)), [], Put(5), 16)], waiting)
    assert (acked.seq, acked.future, acked.pipelined) == (5, waiting, False)  # its caller waits
    assert window.next_seq == 6
    waiting.cancel()


def test_a_receiver_remembers_a_bounded_number_of_streams() -> None:
    streams = Streams()
    first = streams.place("b", 1, 1)
    first.expected = 9
    for stream in range(2, STREAMS_PER_ACTOR + 1):
        streams.place("b", stream, 1)
    assert streams.place("b", 1, 1).expected == 9  # still known: now the most recent
    streams.place("b", STREAMS_PER_ACTOR + 1, 1)  # the least recent (stream 2) goes
    assert len(streams) == STREAMS_PER_ACTOR
    assert streams.place("b", 2, 4).expected == 4  # forgotten: starts at its base again


# -- over a real server -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def two_nodes(server: NatsServer, prefix: str) -> Any:
    async with (
        actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
        actors.ActorSystem(workers=2, name="b", cluster=node(server.url, "b", prefix)) as b,
    ):
        yield a, b


def cluster_of(system: actors.ActorSystem) -> Nats:
    cluster = system.cluster
    assert isinstance(cluster, Nats)
    return cluster


async def test_sends_within_the_credit_return_before_their_reply_and_arrive_once_in_order(
    server: NatsServer, prefix: str
) -> None:
    count = 3000
    with anyio.fail_after(WAIT * 3):
        async with two_nodes(server, prefix) as (a, b):
            await a.spawn(Log, name="log", public=True, capacity=1000)
            log = await b.lookup_remote("log", Entry | Entries)
            producers = 3

            def from_a_thread() -> None:
                for seq in range(count):
                    log.blocking_send(Entry(2, seq))

            async def from_a_task(index: int) -> None:
                for seq in range(count):
                    await log.send(Entry(index, seq))

            thread = threading.Thread(target=from_a_thread)
            thread.start()
            try:
                async with anyio.create_task_group() as tg:
                    for index in range(producers - 1):
                        tg.start_soon(from_a_task, index)
            finally:
                await anyio.to_thread.run_sync(thread.join)
            # The ask goes behind every tell of the stream: all of them are in.
            entries = await log.ask(Entries(), timeout=10.0)
            stats = cluster_of(b).statistics()
    assert stats.pipelined > 0  # most sends did not wait for a round trip
    assert stats.undelivered == 0
    for index in range(producers):
        assert [seq for p, seq in entries if p == index] == list(range(count)), index


class Gated(actors.Actor[Entry | Entries]):
    """Blocks on its first entry until released; then remembers the rest, in order."""

    def __init__(self, release: threading.Event, entries: list[tuple[int, int]]) -> None:
        self.release = release
        self.entries = entries

    async def receive(self, message: Entry | Entries) -> Any:
        if isinstance(message, Entries):
            return tuple(self.entries)
        if not self.entries:
            await anyio.to_thread.run_sync(self.release.wait)
        self.entries.append((message.producer, message.seq))
        return None


class Letters(actors.Actor[actors.DeadLetter]):
    def __init__(self, seen: list[actors.DeadLetter]) -> None:
        self.seen = seen

    async def receive(self, message: actors.DeadLetter) -> None:
        self.seen.append(message)


def test_a_sender_refused_by_the_credit_waits_for_a_reply_only_while_one_is_due() -> None:
    async def scenario() -> None:
        credit = Credit(2)
        assert credit.reserve()
        assert credit.reserve()
        assert not credit.reserve()  # no room by the latest view
        first, second = oneshot(), oneshot()
        assert credit.wait_for_room(first)  # two replies are due
        assert credit.wait_for_room(second)
        credit.settle(-1, tried=True)  # one comes: every waiter tries again
        assert await first.wait(1.0) is None
        assert await second.wait(1.0) is None
        assert credit.reserve()
        credit.settle(0, tried=True)
        credit.settle(0, tried=True)  # the target reports no room, nothing is due
        assert not credit.reserve()
        assert not credit.wait_for_room(oneshot())  # only an acknowledged send learns more

    asyncio.run(scenario())


def test_one_reply_gives_back_the_credit_of_the_whole_run_it_answers_in_one_step() -> None:
    async def scenario() -> None:
        credit = Credit(3)
        assert credit.reserve()
        assert credit.reserve()
        assert credit.reserve()
        assert not credit.reserve()
        waiter = oneshot()
        assert credit.wait_for_room(waiter)
        # One OK answers all three: the room it reports and the three slots, at once, so
        # the woken sender finds the fresh view (not one slot and the old room).
        credit.settle(5, tried=True, answered=3)
        assert await waiter.wait(1.0) is None
        for _ in range(5):
            assert credit.reserve()
        assert not credit.reserve()
        credit.settle(-1, tried=True, answered=9)  # never below nothing unanswered
        assert not credit.wait_for_room(oneshot())

    asyncio.run(scenario())


async def test_producers_past_the_window_wait_for_replies_not_for_round_trips_of_their_own(
    server: NatsServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More tells than the window holds, from four tasks: each one past the window waits
    for the reply that frees a slot and is pipelined; none waits for an acknowledgement.

    A loaded machine may answer later than the 50 ms a send waits for a reply before it
    goes acknowledged (the peer that never answers, below, checks that): here the wait
    is as long as the test's, so that what is checked is the waiting itself."""
    monkeypatch.setattr("actors.cluster._tells._REPLY_WAIT", WAIT)
    count, producers = 4 * PIPELINED_MAX, 4
    with anyio.fail_after(WAIT * 3):
        async with two_nodes(server, prefix) as (a, b):
            await a.spawn(Log, name="log", public=True, capacity=count * producers)
            log = await b.lookup_remote("log", Entry | Entries)
            before = cluster_of(b).statistics().pipelined

            async def produce(index: int) -> None:
                for seq in range(count):
                    await log.send(Entry(index, seq))

            async with anyio.create_task_group() as tg:
                for index in range(producers):
                    tg.start_soon(produce, index)
            entries = await log.ask(Entries(), timeout=10.0)
            stats = cluster_of(b).statistics()
    assert stats.pipelined - before == count * producers
    assert stats.undelivered == 0
    for index in range(producers):
        assert [seq for p, seq in entries if p == index] == list(range(count)), index


async def test_a_window_in_flight_when_the_owner_node_vanishes_is_handled_there_or_a_dead_letter(
    server: NatsServer, prefix: str
) -> None:
    release = threading.Event()
    handled: list[tuple[int, int]] = []
    letters: list[actors.DeadLetter] = []
    with anyio.fail_after(WAIT * 3):
        async with two_nodes(server, prefix) as (a, b):
            await a.spawn(lambda: Gated(release, handled), name="gated", public=True)
            gated = await b.lookup_remote("gated", Entry | Entries)
            auditor = await b.spawn(lambda: Letters(letters))
            b.dead_letters.subscribe(auditor)
            returned: list[int] = []
            for seq in itertools.count():  # until the credit runs out and one must wait
                with anyio.move_on_after(0.5) as waited:
                    await gated.send(Entry(0, seq), timeout=5.0)
                if waited.cancelled_caught:
                    break
                returned.append(seq)
            assert cluster_of(b).statistics().pipelined > 1  # without waiting for replies
            # a vanishes without leaving: b's heartbeats declare it down.
            transport = cluster_of(a)._node.transport  # pyright: ignore[reportPrivateUsage]
            client = transport.client
            assert client is not None
            await transport.call(client.close())
            await wait_until(lambda: not gated.is_alive)
            undelivered = cluster_of(b).statistics().undelivered
            await wait_until(lambda: len(letters) >= undelivered)
            release.set()  # what reached a's mailbox is handled there
            await wait_until(lambda: len(handled) + len(letters) >= len(returned))
    dead = [letter.message.seq for letter in letters if isinstance(letter.message, Entry)]
    assert all(letter.reason == "undelivered" for letter in letters)
    here = [seq for _, seq in handled]
    assert here == sorted(set(here))  # in order, none twice
    # Every send that returned is accounted for: handled there, or a dead letter here (an
    # unconfirmed one may be both: enqueued there, its reply lost with the connection).
    assert set(returned) <= set(here) | set(dead)


class _Backlog:
    """A subscription as `Inbound` sees it: how many frames still wait behind this one."""

    def __init__(self) -> None:
        self.pending_msgs = 0


async def test_oks_are_held_back_while_frames_wait_and_one_answers_for_all() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=16) as book:
            export = parts.registry.exported(book.id)
            assert export is not None
            backlog = _Backlog()
            export.subs.append(backlog)  # type: ignore[arg-type]
            backlog.pending_msgs = 2
            first = await request(parts, stream_frame(1, Put(1)))
            backlog.pending_msgs = 1
            second = await request(parts, stream_frame(2, Put(2)))
            assert answered(parts.client, first) is None  # held: more frames wait
            assert answered(parts.client, second) is None
            backlog.pending_msgs = 0
            third = await request(parts, stream_frame(3, Put(3)))
            last = answered(parts.client, third)
            assert last is not None
            assert last.status == OK  # answers for 1, 2 and 3 (see Place)
            assert answered(parts.client, first) is None
            assert answered(parts.client, second) is None
            assert await book.ref.ask(Total()) == 6


def tells_frame(first: int, items: list[Told], *, base: int = 1) -> bytes:
    body = msgspec.Raw(msgspec.msgpack.encode(items))
    envelope = Envelope(WIRE_VERSION, TELLS, "", body, None, "b", STREAM, first, base)
    return msgspec.msgpack.encode(envelope)


def told(message: object, type_name: str = "") -> Told:
    name = type_name or message_name(type(message))
    return Told(name, msgspec.Raw(msgspec.msgpack.encode(message)))


async def test_tells_sent_together_are_enqueued_in_order_and_refusals_named() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=16) as book:
            items = [told(Put(1)), told(Put(2), "nobody.Knows"), told(Put(3))]
            reply = await answer(parts.client, await request(parts, tells_frame(1, items)))
            assert reply.status == OK  # for seqs 1 to 3, but for the refusals in its body
            refused = msgspec.msgpack.decode(reply.body, type=list[tuple[int, ErrorInfo]])
            assert [seq for seq, _ in refused] == [2]
            assert refused[0][1].type == "WireError"
            # The whole frame sent again: the same answer, nothing enqueued twice.
            again = await answer(parts.client, await request(parts, tells_frame(1, items)))
            assert msgspec.msgpack.decode(again.body, type=list[tuple[int, ErrorInfo]]) == refused
            # A frame ahead of its turn: GAP with the seq expected.
            gap = await answer(parts.client, await request(parts, tells_frame(6, items)))
            assert (gap.status, msgspec.msgpack.decode(gap.body)) == (GAP, 4)
            ok = await answer(parts.client, await request(parts, tells_frame(4, [told(Put(4))])))
            assert (ok.status, msgspec.msgpack.decode(ok.body)) == (OK, None)
            assert await book.ref.ask(Total()) == 8
            assert book.seen == [1, 3, 4]


class Slow(actors.Actor[Entry | Entries]):
    """Takes one entry per release: the consumer that falls behind its producers."""

    def __init__(self, gate: threading.Semaphore, entries: list[tuple[int, int]]) -> None:
        self.gate = gate
        self.entries = entries

    async def receive(self, message: Entry | Entries) -> Any:
        if isinstance(message, Entries):
            return tuple(self.entries)
        await anyio.to_thread.run_sync(self.gate.acquire)
        self.entries.append((message.producer, message.seq))
        return None


async def test_a_slow_consumer_bounds_what_its_producers_hold_in_flight(
    server: NatsServer, prefix: str
) -> None:
    gate = threading.Semaphore(0)
    entries: list[tuple[int, int]] = []
    capacity = 32
    with anyio.fail_after(WAIT * 3):
        async with two_nodes(server, prefix) as (a, b):
            await a.spawn(lambda: Slow(gate, entries), name="slow", public=True, capacity=capacity)
            slow = await b.lookup_remote("slow", Entry | Entries)
            cluster_b = cluster_of(b)
            sent = 0
            peak = 0

            async def produce() -> None:
                nonlocal sent
                for seq in range(2000):
                    await slow.send(Entry(0, seq), timeout=30.0)
                    sent += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                for released in range(1, 301):  # the consumer takes 300, one at a time
                    gate.release()
                    await wait_until(lambda n=released: len(entries) >= n)
                    window = await cluster_b._node.transport.call(  # pyright: ignore[reportPrivateUsage]
                        _unanswered(slow)
                    )
                    peak = max(peak, window)
                # Far from done: the producer waits for room instead of piling up frames. It
                # is ahead by at most the mailbox and the credit (the room last reported).
                assert sent <= 300 + 2 * capacity + 1
                tg.cancel_scope.cancel()
            for _ in range(4000):
                gate.release()
    assert 0 < peak <= min(capacity + 1, PIPELINED_MAX)


async def _unanswered(ref: Any) -> int:
    return len(window_of(ref).unacked)


# -- bad input ----------------------------------------------------------------------------


async def test_a_malformed_batch_is_refused_whole_and_moves_nothing() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=16) as book:
            for body in (b"\x05", msgspec.msgpack.encode([["x"]]), msgspec.msgpack.encode({})):
                envelope = Envelope(
                    WIRE_VERSION, TELLS, "", msgspec.Raw(body), None, "b", STREAM, 1, 1
                )
                data = msgspec.msgpack.encode(envelope)
                reply = await answer(parts.client, await request(parts, data))
                assert reply.status == ERROR
                assert reply.error is not None
                assert reply.error.type == "WireError"
            # Nothing enqueued, and the stream still expects its first tell.
            assert (await tell(parts, 1, Put(7))).status == OK
            assert await book.ref.ask(Total()) == 7
            assert parts.transport.rejected == 3


async def test_a_peer_granting_room_it_does_not_have_gets_at_most_a_window_in_flight() -> None:
    parts = Parts()
    client = parts.client
    await parts_on_this_loop(parts)
    # An address whose node claims a billion free slots, and never answers.
    lying = Address("liar", "inc-l", 9, "/user/sink", None, 10**9)
    with anyio.fail_after(10):
        async with public_book(parts):
            ref = parts.registry.ref_for(lying)
            assert isinstance(ref, RemoteRef)
            returned = 0
            while True:
                with anyio.move_on_after(0.3) as waited:  # a send without credit waits
                    await ref.send(Put(returned))
                if waited.cancelled_caught:
                    break
                returned += 1
            await wait_until(lambda: bool(client.published))
    assert returned == PIPELINED_MAX  # pipelined up to the cap, then one waited
    frames = [msg for msg in client.published if msg.subject.startswith("t.actor.liar")]
    told_seqs = []
    for msg in frames:
        envelope = msgspec.msgpack.decode(msg.data, type=Envelope)
        count = len(msgspec.msgpack.decode(envelope.body)) if envelope.kind == TELLS else 1
        told_seqs.extend(range(envelope.seq, envelope.seq + count))
    assert told_seqs == list(range(1, PIPELINED_MAX + 2))  # the window, then the waiting one


async def test_a_frame_of_new_tells_with_room_goes_in_whole_and_a_full_one_one_by_one() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=4) as book:
            release = await park(book.ref)  # the book holds still: its mailbox fills
            first = [told(Put(1)), told(Put(2)), told(Put(3))]
            ok = await answer(parts.client, await request(parts, tells_frame(1, first)))
            assert (ok.status, msgspec.msgpack.decode(ok.body)) == (OK, None)
            # Room for one more only: the next frame's tells take their turns one by one,
            # the second waiting for room, and the frame's answer comes once both are in.
            second = [told(Put(4)), told(Put(5))]
            reply_to = await request_soon(parts, tells_frame(4, second))
            await wait_until(lambda: waiting_senders(book.ref) == 1)
            assert answered(parts.client, reply_to) is None
            release.set()
            assert (await answer(parts.client, reply_to)).status == OK
            assert await book.ref.ask(Total()) == 15
            assert book.seen == [1, 2, 3, 4, 5]


async def request_soon(parts: Parts, data: bytes) -> str:
    """Deliver ``data`` in a task of its own (its handling may wait); its reply subject."""
    reply_to = f"_INBOX.t.b.inc-b.soon-{next(_soon)}"
    delivery = parts.client.deliver(NAME, FakeMsg(NAME, data, reply_to))
    task = asyncio.get_running_loop().create_task(delivery)
    _delivering.add(task)  # held until done: a task only weakly referenced may vanish
    task.add_done_callback(_delivering.discard)
    return reply_to


_soon = itertools.count(1)
_delivering: set[asyncio.Task[None]] = set()
