"""Streamed replies over NATS (`RemoteRef.stream`): order, the window end to end, leaving
early, errors after items, a producer's node dying mid-stream, forged frames, leaks, memory.

Two nodes of one process talk through a real nats-server; the producing actor reports what
it did through a `Track` it was built with (the test's own object, never on the wire).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    NatsServer,
    NodeFactory,
    lose_down_notices,
    prefix_fixture,
    running_script,
    server_fixture,
)

import actors
from actors._stream import WAITING
from actors.cluster import (
    GroupRef,
    NodeDown,
    RemoteRef,
    WireError,
    lookup_group,
    register_message,
)
from actors.cluster._remote import address_of
from actors.cluster._requests import RETRY_FIRST as RETRY_FIRST  # pyright: ignore[reportPrivateUsage]
from actors.cluster._streams import (
    CreditChannel,
    RemoteStreams,
    _reader_of,  # pyright: ignore[reportPrivateUsage]
    split_window,
)
from actors.cluster._wire import (
    STREAM_CANCEL,
    STREAM_CREDIT,
    STREAM_END,
    WIRE_VERSION,
    StreamControl,
    StreamFrame,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.anyio

server = server_fixture()
prefix = prefix_fixture("rs")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0)

OWNER = Path(__file__).with_name("stream_owner.py")


class Track:
    """What the producer did, readable from the test's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._produced = 0
        self.started = Flag()
        self.closed = Flag()  # the producer's `finally` ran

    @property
    def produced(self) -> int:
        with self._lock:
            return self._produced

    def bump(self) -> None:
        with self._lock:
            self._produced += 1


@register_message(name="stream.Numbers")
class Numbers(actors.StreamRequest[int], frozen=True):
    """Stream 0, 1, 2, ...: ``count`` items (-1: endless); ``fail_at``: raise there."""

    count: int = -1
    fail_at: int = -1
    size: int = 0  # bytes of padding per item (as a string), for the memory test


@register_message(name="stream.Padded")
class Padded(actors.StreamRequest[str], frozen=True):
    count: int
    size: int


class Boom(Exception):
    pass


class Producer(actors.Actor[Numbers | Padded]):
    def __init__(self, track: Track) -> None:
        self.track = track

    async def receive(self, message: Numbers | Padded) -> AsyncIterator[Any]:
        match message:
            case Numbers():
                return self.numbers(message)
            case Padded():
                return self.padded(message)

    async def numbers(self, request: Numbers) -> AsyncIterator[int]:
        track = self.track
        track.started.set()
        try:
            i = 0
            while request.count < 0 or i < request.count:
                if i == request.fail_at:
                    raise Boom(f"failed at {i}")
                track.bump()
                yield i
                i += 1
        finally:
            track.closed.set()

    async def padded(self, request: Padded) -> AsyncIterator[str]:
        track = self.track
        try:
            i = 0
            while request.count < 0 or i < request.count:
                track.bump()
                yield f"{i:08d}" + "x" * request.size
                i += 1
        finally:
            track.closed.set()


class Pair:
    def __init__(self, a: actors.ActorSystem, b: actors.ActorSystem, track: Track) -> None:
        self.a = a  # the producer's node
        self.b = b  # the reader's node
        self.track = track

    async def remote(self, name: str = "producer") -> RemoteRef[Numbers | Padded]:
        await self.a.spawn(lambda: Producer(self.track), name=name, public=True)
        ref = await self.b.lookup_remote(name, Numbers | Padded)
        assert isinstance(ref, RemoteRef)
        return ref


@pytest.fixture
async def pair(server: NatsServer, prefix: str) -> AsyncIterator[Pair]:
    async with (
        actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
        actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
    ):
        yield Pair(a, b, Track())


def streams_of(system: actors.ActorSystem) -> RemoteStreams:
    cluster: Any = system.cluster
    streams: RemoteStreams = cluster._node.streams
    return streams


def pending(system: actors.ActorSystem) -> tuple[int, int, int]:
    """Streams read and served on a node, and its replies table's entries."""
    cluster: Any = system.cluster
    streams = streams_of(system)
    return len(streams.reading), len(streams.serving), len(cluster._node.replies)


async def settled(*systems: actors.ActorSystem) -> None:
    """Wait until no stream is pending on any of ``systems`` (posted work runs on loops)."""
    await wait_until(lambda: all(pending(s)[:2] == (0, 0) for s in systems))


@contextlib.asynccontextmanager
async def raw_client(server: NatsServer) -> AsyncIterator[Any]:
    """A plain nats-py client, to send what no node would (asyncio hosts only)."""
    import nats

    client = await nats.connect(server.url)  # pyright: ignore[reportUnknownMemberType]
    try:
        yield client
    finally:
        await client.close()


async def collect(
    stream: AsyncIterable[Any], on_item: Callable[[Any], Awaitable[None]] | None = None
) -> tuple[list[Any], Exception | None]:
    """Read ``stream`` to its end: the items, and the error it ended with (None: none)."""
    got: list[Any] = []
    try:
        async for item in stream:
            got.append(item)
            if on_item is not None:
                await on_item(item)
    except Exception as error:
        return got, error
    return got, None


def asyncio_only(backend: str) -> None:
    """The raw nats-py client (forged frames) needs an asyncio host; the node runs anywhere."""
    if backend != "asyncio":
        pytest.skip("drives a raw nats-py client or a child process: asyncio hosts only")


# -- order, completeness, the end ----------------------------------------------------------


async def test_items_arrive_in_order_and_complete(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        items = [item async for item in ref.stream(Numbers(200))]
        assert items == list(range(200))
        await settled(pair.a, pair.b)


@pytest.mark.parametrize("window", [1, 2, 3, 16, 100])
async def test_every_window_delivers_everything(pair: Pair, window: int) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        async with ref.stream(Numbers(57), window=window) as numbers:
            assert [n async for n in numbers] == list(range(57))


async def test_an_empty_stream_ends_at_once(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        assert [n async for n in ref.stream(Numbers(0))] == []


async def test_a_plain_thread_reads_a_remote_stream(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()

        def read() -> list[int]:
            with ref.blocking_stream(Numbers(40), window=4) as numbers:
                return list(numbers)

        assert await anyio.to_thread.run_sync(read) == list(range(40))


# -- backpressure: the window holds end to end ---------------------------------------------


@pytest.mark.parametrize("window", [2, 5, 16])
async def test_the_producer_never_runs_more_than_the_window_ahead_of_the_reader(
    pair: Pair, window: int
) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        track = pair.track
        # Credit is granted every half credit window read: up to step - 1 items read are
        # not granted yet, so at rest the producer stands that much short of the window.
        step = max(1, split_window(window)[1] // 2)
        read = 0
        ahead = 0
        async with ref.stream(Numbers(300), window=window) as numbers:
            async for n in numbers:
                assert n == read
                read += 1
                if read % 25 == 0:
                    # Let the producer run as far as it may, then look.
                    reach = min(300, read + window - (step - 1))
                    await wait_until(lambda reach=reach: track.produced >= reach)
                ahead = max(ahead, track.produced - read)
                assert track.produced - read <= window
        assert read == 300
        assert ahead >= window - (step - 1)  # it did run that far ahead: the bound is tight


async def test_a_reader_that_stops_reading_pauses_the_producer(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        track = pair.track
        async with ref.stream(Numbers(-1), window=8) as numbers:
            assert await anext(numbers) == 0
            assert pair.b.cluster is not None
            assert pair.a.cluster is not None
            assert pair.b.cluster.statistics().streams_reading == 1
            assert pair.a.cluster.statistics().streams_serving == 1
            # One item read is less than a grant (every half credit window, 2): the
            # producer runs the window ahead of what was granted (nothing), and stops.
            await wait_until(lambda: track.produced == 8)
            # Still 8 after a full round of NATS traffic: nothing more was granted.
            await pair.b.lookup_remote("producer", timeout=WAIT)
            assert track.produced == 8


# -- leaving early stops the producer ------------------------------------------------------


async def test_break_out_of_async_with_stops_the_producer(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        async with ref.stream(Numbers(-1)) as numbers:
            async for n in numbers:
                if n == 20:
                    break
        await pair.track.closed.wait()
        await settled(pair.a, pair.b)


async def test_aclose_stops_the_producer(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        numbers = ref.stream(Numbers(-1), window=4)
        assert await anext(numbers) == 0
        await numbers.aclose()
        await pair.track.closed.wait()
        await settled(pair.a, pair.b)
        with pytest.raises(actors.StreamClosed):
            await anext(numbers)


async def test_a_cancelled_read_stops_the_producer(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        release = Flag()
        await pair.a.spawn(lambda: Quiet(pair.track, release), name="quiet", public=True)
        ref = await pair.b.lookup_remote("quiet", Numbers)
        numbers = ref.stream(Numbers(-1), timeout=None)
        with anyio.move_on_after(0.3) as scope:
            await anext(numbers)  # waits for an item that does not come
        assert scope.cancelled_caught
        await stopped_at_its_next_item(pair, release)


async def test_a_read_that_times_out_stops_the_producer(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        release = Flag()
        await pair.a.spawn(lambda: Quiet(pair.track, release), name="quiet", public=True)
        ref = await pair.b.lookup_remote("quiet", Numbers)
        numbers = ref.stream(Numbers(-1), timeout=0.3)
        with pytest.raises(actors.AskTimeout, match="no item"):
            await anext(numbers)
        await stopped_at_its_next_item(pair, release)


class Quiet(actors.Actor[Numbers]):
    """Produces its items only once ``release`` is set (the reader has given up by then)."""

    def __init__(self, track: Track, release: Flag) -> None:
        self.track = track
        self.release = release

    async def receive(self, message: Numbers) -> AsyncIterator[int]:
        return self.later()

    async def later(self) -> AsyncIterator[int]:
        try:
            self.track.started.set()
            await self.release.wait()
            while True:
                self.track.bump()
                yield 0
        finally:
            self.track.closed.set()


async def stopped_at_its_next_item(pair: Pair, release: Flag) -> None:
    """The cancel reached the producer's node; released, the producer stops at once."""
    await settled(pair.a, pair.b)
    release.set()
    await pair.track.closed.wait()
    assert pair.track.produced == 1  # its first item found the stream closed


# -- errors ----------------------------------------------------------------------------------


async def test_the_producers_error_comes_after_its_items(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        received, error = await collect(ref.stream(Numbers(100, fail_at=30), window=4))
        assert received == list(range(30))
        assert isinstance(error, actors.RemoteError)
        assert "failed at 30" in str(error)
        assert "producer" in str(error)
        await settled(pair.a, pair.b)


async def test_a_builtin_error_keeps_its_type(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Divider, name="divider", public=True)
        ref = await pair.b.lookup_remote("divider", Numbers)
        got, error = await collect(ref.stream(Numbers(5)))
        assert got == [0, 1, 2]
        assert isinstance(error, ZeroDivisionError)


class Divider(actors.Actor[Numbers]):
    async def receive(self, message: Numbers) -> AsyncIterator[int]:
        return self.items()

    async def items(self) -> AsyncIterator[int]:
        for i in (0, 1, 2):
            yield i
        raise ZeroDivisionError("at the end")


async def test_a_request_the_actor_does_not_accept_is_refused_before_sending(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Divider, name="divider", public=True)
        ref: Any = await pair.b.lookup_remote("divider")
        with pytest.raises(actors.MessageTypeError):
            await anext(ref.stream(Padded(1, 1)))
        with pytest.raises(actors.StreamRequestError):
            ref.stream(object())
        with pytest.raises(ValueError, match="window"):
            ref.stream(Numbers(1), window=0)


async def test_an_actor_that_stops_mid_stream_ends_it_with_actor_stopped(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        local = await pair.a.spawn(lambda: Producer(pair.track), name="producer", public=True)
        ref = await pair.b.lookup_remote("producer", Numbers | Padded)

        async with anyio.create_task_group() as group:

            async def stop_at_10(n: int) -> None:
                # Stopped from another task: the stop waits for the handler, whose producer
                # may be paused until this reader reads on.
                if n == 10:
                    group.start_soon(local.stop)

            got, error = await collect(ref.stream(Numbers(-1), window=4), stop_at_10)
        assert isinstance(error, actors.ActorStopped)
        assert got == list(range(len(got)))
        assert len(got) >= 11
        await settled(pair.a, pair.b)


# -- the producer's node dies ----------------------------------------------------------------


async def test_a_producer_node_killed_mid_stream_ends_it_with_node_down(
    server: NatsServer, prefix: str, anyio_backend_name: str
) -> None:
    asyncio_only(anyio_backend_name)  # a child process: one host is enough
    cluster = node(server.url, "reader", prefix)
    async with actors.ActorSystem(workers=1, cluster=cluster) as system:
        with running_script(str(OWNER), server.url, prefix) as process:
            with anyio.fail_after(3 * WAIT):
                ref = await system.lookup_remote("owner", Numbers, timeout=WAIT)

                async def kill_at_5(n: int) -> None:
                    if n == 5:
                        process.kill()

                stream = ref.stream(Numbers(-1), window=4, timeout=None)
                got, error = await collect(stream, kill_at_5)
                assert isinstance(error, NodeDown), error
                assert got == list(range(len(got)))
                assert len(got) >= 6
                await wait_until(lambda: pending(system)[:2] == (0, 0))


# -- bad input from the network ----------------------------------------------------------------


async def test_forged_frames_are_dropped_and_counted_and_the_stream_goes_on(
    pair: Pair, server: NatsServer, anyio_backend_name: str
) -> None:
    asyncio_only(anyio_backend_name)
    async with raw_client(server) as raw:
        await _forged_frames_are_dropped_and_counted_and_the_stream_goes_on(pair, raw)


async def _forged_frames_are_dropped_and_counted_and_the_stream_goes_on(
    pair: Pair, raw: Any
) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        reader = streams_of(pair.b)
        producer = streams_of(pair.a)
        cluster_b: Any = pair.b.cluster
        cluster_a: Any = pair.a.cluster
        inbox_b = cluster_b._node.me.inbox
        inbox_a = cluster_a._node.me.inbox
        async with ref.stream(Numbers(-1), window=4) as numbers:
            assert await anext(numbers) == 0
            (id,) = reader.reading
            (served,) = producer.serving
            state = reader.reading[id]
            before = pair.b.cluster.statistics().rejected if pair.b.cluster else 0

            def frame(stream: int, seq: int, items: int = 1) -> bytes:
                raws = [msgspec.Raw(msgspec.msgpack.encode(99))] * items
                return msgspec.msgpack.encode(StreamFrame(WIRE_VERSION, stream, seq, raws))

            forged = [
                (f"{inbox_b}.s.{id}", b"\xc1", ""),  # malformed
                (f"{inbox_b}.s.{id}", b"\x91" * 200 + b"\x00", ""),  # too deep
                (f"{inbox_b}.s.{id}", frame(id + 1, 2), "x.c.1"),  # another stream's id
                (f"{inbox_b}.s.{id}", frame(id, 1), "x.c.1"),  # a duplicate seq
                (f"{inbox_b}.s.{id}", frame(id, 50), "x.c.1"),  # a gap
                # In sequence, from the stream's producer, but beyond the credit.
                (f"{inbox_b}.s.{id}", frame(id, state.next_seq, items=100), state.control),
                # In sequence, but from another producer than the stream's.
                (f"{inbox_b}.s.{id}", frame(id, state.next_seq), "x.c.1"),
                (f"{inbox_b}.s.notanumber", frame(id, 2), "x.c.1"),
            ]
            for subject, data, reply in forged:
                await raw.publish(subject, data, reply=reply)
            # Unknown stream: dropped (a late frame), not rejected.
            assert pair.b.cluster is not None
            dropped = pair.b.cluster.statistics().dropped
            await raw.publish(f"{inbox_b}.s.{id + 1000}", frame(id + 1000, 1), reply="x.c.1")
            # ... and answered with a cancel, when its producer is a node of the cluster:
            # the frame of a stream whose reader gave up before the first frame came.
            producer_subject = f"_INBOX.{cluster_b._node.me.prefix}.ghost.1.c.7"
            cancels = await raw.subscribe(producer_subject)
            await raw.publish(f"{inbox_b}.s.{id + 1001}", frame(id + 1001, 2), producer_subject)
            cancel = await cancels.next_msg(timeout=WAIT)
            assert msgspec.msgpack.decode(cancel.data, type=StreamControl) == StreamControl(
                WIRE_VERSION, STREAM_CANCEL, id + 1001, 0
            )
            controls = [
                StreamControl(WIRE_VERSION, STREAM_CREDIT, 123456, 1),  # another stream
                StreamControl(WIRE_VERSION, STREAM_CREDIT, id, 10**9),  # more than sent
                StreamControl(WIRE_VERSION, 99, id, 1),  # unknown kind
            ]
            for control in controls:
                await raw.publish(f"{inbox_a}.c.{served}", msgspec.msgpack.encode(control))
            await raw.publish(f"{inbox_a}.c.{served}", b"\xc1")
            await raw.flush()
            assert pair.b.cluster is not None
            assert pair.a.cluster is not None
            b_cluster = pair.b.cluster
            await wait_until(lambda: b_cluster.statistics().rejected >= before + 8)
            await wait_until(lambda: b_cluster.statistics().dropped == dropped + 2)
            a_cluster = pair.a.cluster
            await wait_until(lambda: a_cluster.statistics().rejected >= 4)
            # The stream itself goes on, in order, within its window.
            got = [await anext(numbers) for _ in range(50)]
            assert got == list(range(1, 51))
            assert pair.track.produced - 51 <= 4
        await pair.track.closed.wait()
        await settled(pair.a, pair.b)


async def test_a_forged_stream_request_is_refused_with_an_error_reply(
    pair: Pair, server: NatsServer, anyio_backend_name: str
) -> None:
    asyncio_only(anyio_backend_name)
    async with raw_client(server) as raw:
        await _a_forged_stream_request_is_refused_with_an_error_reply(pair, raw)


async def _a_forged_stream_request_is_refused_with_an_error_reply(pair: Pair, raw: Any) -> None:
    from actors.cluster._wire import STREAM, Envelope, Reply

    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        cluster_a: Any = pair.a.cluster
        from actors.cluster._remote import address_of

        subject = cluster_a._node.me.actor_subject(address_of(ref))
        body = msgspec.Raw(msgspec.msgpack.encode(Numbers(3)))
        name = "stream.Numbers"
        cases = [
            Envelope(WIRE_VERSION, STREAM, name, body, None, "evil", 1, 0),  # window 0
            Envelope(WIRE_VERSION, STREAM, name, body, None, "evil", 1, 10**9),  # too wide
            Envelope(WIRE_VERSION, STREAM, name, body, None, "evil", 1, 4),  # bad reply subject
        ]
        for envelope in cases:
            answer = await raw.request(subject, msgspec.msgpack.encode(envelope), timeout=WAIT)
            reply = msgspec.msgpack.decode(answer.data, type=Reply)
            assert reply.error is not None
            assert reply.error.type == "WireError"
        assert pending(pair.a)[:2] == (0, 0)
        assert pair.track.produced == 0


# -- leaks and memory ----------------------------------------------------------------------------


async def test_a_thousand_abandoned_remote_streams_leave_nothing_pending(pair: Pair) -> None:
    with anyio.fail_after(6 * WAIT):
        ref = await pair.remote()
        before = pending(pair.b)[2], pending(pair.a)[2]
        for i in range(1000):
            async with ref.stream(Numbers(-1), window=2) as numbers:
                assert await anext(numbers) == 0
                if i % 2:
                    continue  # leave through the block
            await numbers.aclose()
        await settled(pair.a, pair.b)
        assert (pending(pair.b)[2], pending(pair.a)[2]) == before
        # And the actor is free for the next one.
        assert [n async for n in ref.stream(Numbers(3))] == [0, 1, 2]


async def test_memory_stays_flat_for_an_endless_stream_read_slowly(pair: Pair) -> None:
    with anyio.fail_after(6 * WAIT):
        ref = await pair.remote()
        tracemalloc.start()
        try:
            async with ref.stream(Padded(-1, 1000), window=16) as items:
                for _ in range(200):  # warm up: decoders, buffers
                    await anext(items)
                gc.collect()
                start, _ = tracemalloc.get_traced_memory()
                for i in range(3000):
                    await anext(items)
                    if i % 100 == 0:
                        await anyio.lowlevel.checkpoint()  # a slow reader: others run between
                gc.collect()
                end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # 3,000 items of 1 kB passed through: what stayed is far below even a tenth.
        assert end - start < 300_000, (start, end)
        assert pair.track.produced <= 3200 + 16


def test_the_window_split_adds_up() -> None:
    for window in range(2, 200):
        local, credit = split_window(window)
        assert local >= 1
        assert credit >= 1
        assert local + credit == window
    assert split_window(1) == (1, 1)
    assert STREAM_END != STREAM_CANCEL
    assert sys.getrecursionlimit() > 0


def test_the_reader_grants_credit_every_half_credit_window() -> None:
    grants: list[int] = []
    channel = CreditChannel("/user/p", Numbers(), 16, grants.append)  # credit 8, step 4
    assert channel.window == split_window(16)[1] == 8
    for i in range(8):
        channel.put(i)
    taken = [channel.take() for _ in range(8)]
    assert taken == list(range(8))
    assert grants == [4, 8]
    assert channel.take() is WAITING  # nothing there: no grant for it
    assert grants == [4, 8]


def test_a_stream_request_names_its_readers_node_in_its_reply_subject() -> None:
    assert _reader_of("_INBOX.p.b.inc1.s.7", 7) == ("b", "inc1")
    for subject, stream in [
        ("_INBOX.p.b.inc1.s.7", 8),  # another stream
        ("_INBOX.p.b.inc1.x.7", 7),  # not a stream subject
        ("s.7", 7),  # too short
        ("_INBOX.p.b.inc1.s.0", 0),  # no stream
    ]:
        with pytest.raises(WireError, match="reply subject"):
            _reader_of(subject, stream)


async def test_a_plain_thread_leaving_early_stops_the_producer(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()

        def read_three() -> list[int]:
            with ref.blocking_stream(Numbers(-1), window=4) as numbers:
                return [next(numbers) for _ in range(3)]

        assert await anyio.to_thread.run_sync(read_three) == [0, 1, 2]
        await pair.track.closed.wait()
        await settled(pair.a, pair.b)


async def test_a_reader_node_that_leaves_mid_stream_stops_the_producer(
    server: NatsServer, prefix: str
) -> None:
    track = Track()
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(
            workers=1, name="a", cluster=node(server.url, "a", prefix)
        ) as a:
            await a.spawn(lambda: Producer(track), name="producer", public=True)
            async with actors.ActorSystem(
                workers=1, name="b", cluster=node(server.url, "b", prefix)
            ) as b:
                ref = await b.lookup_remote("producer", Numbers)
                numbers = ref.stream(Numbers(-1), window=4)
                assert await anext(numbers) == 0
                await wait_until(lambda: pending(a)[1] == 1)
                # The reader's node leaves without closing its stream.
            # The items it had received come first, then the end.
            rest, error = await collect(numbers)
            assert rest == list(range(1, 1 + len(rest)))
            assert isinstance(error, actors.ActorStopped)
            assert "left the cluster" in str(error)
            await track.closed.wait()  # the producer's node saw the reader's node leave
            await wait_until(lambda: pending(a)[:2] == (0, 0))


async def test_a_group_ref_streams_from_a_node_serving_the_name(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.remote("shared")
        group = await lookup_group(pair.b, "shared", Numbers)
        assert isinstance(group, GroupRef)
        async with group.stream(Numbers(30), window=4) as numbers:
            assert [n async for n in numbers] == list(range(30))
        await settled(pair.a, pair.b)


@register_message(name="stream.Slow")
class Slow(actors.StreamRequest[int], frozen=True):
    """One item, then a wait that only a cancellation ends (flags of `Track`)."""


class CancellableProducer(actors.Actor[Slow | Numbers]):
    cancel_abandoned = True

    def __init__(self, track: Track) -> None:
        self.track = track

    async def receive(self, message: Slow | Numbers) -> AsyncIterator[int]:
        return self.items()

    async def items(self) -> AsyncIterator[int]:
        yield 1
        try:
            self.track.started.set()
            await anyio.sleep_forever()
        finally:
            self.track.closed.set()
        yield 2  # pragma: no cover  # never reached


async def test_a_reader_leaving_cancels_an_opted_in_producer_in_its_own_await(
    pair: Pair,
) -> None:
    # Locally, an actor with cancel_abandoned has its producer cancelled wherever it waits
    # when the reader leaves; the STREAM_CANCEL frame does the same across nodes (closing
    # the producer's local channel runs the cell's abandon watch), not only at its next item.
    with anyio.fail_after(WAIT):
        local = await pair.a.spawn(
            lambda: CancellableProducer(pair.track), name="slow", public=True
        )
        ref = await pair.b.lookup_remote("slow", Slow | Numbers)
        async with ref.stream(Slow(), timeout=None) as items:
            assert await anext(items) == 1
            await pair.track.started.wait()  # in its own await: no next item would stop it
        await pair.track.closed.wait()
        await settled(pair.a, pair.b)

        def figures() -> tuple[int, int]:  # counted once the handler's scope has exited
            found = next(m for m in pair.a.metrics().actors if m.path == local.path)
            return found.handlers_cancelled, found.failed

        await wait_until(lambda: figures() == (1, 0))
        async with ref.stream(Slow(), timeout=None) as items:  # the actor carries on
            assert await anext(items) == 1


async def test_leaving_a_group_stream_cancels_the_member_streaming(pair: Pair) -> None:
    # The cancel goes to the producer's own control subject (from the first frame), so it
    # reaches the member NATS picked, whichever: no notice to the whole group is needed.
    tracks = {"a": Track(), "b": Track()}
    with anyio.fail_after(WAIT):
        for system in (pair.a, pair.b):
            track = tracks[system.name]
            await system.spawn(lambda t=track: CancellableProducer(t), name="both", public=True)
        group = await lookup_group(pair.b, "both", Slow | Numbers)
        async with group.stream(Slow(), timeout=None) as items:
            assert await anext(items) == 1
            await wait_until(lambda: any(t.started.is_set() for t in tracks.values()))
            (member,) = [n for n, t in tracks.items() if t.started.is_set()]
        await tracks[member].closed.wait()
        await settled(pair.a, pair.b)
        (other,) = set(tracks) - {member}
        assert not tracks[other].started.is_set()


# -- "no responders": published again while the owner says the actor exists ---------------------


async def drop_subscription(system: actors.ActorSystem, ref: RemoteRef[Any]) -> Any:
    """Unsubscribe the actor's own subject on its node, as a reconnecting node is for a
    while (its export stays); the server has processed it on return. The export."""
    cluster: Any = system.cluster
    node_a = cluster._node
    export = node_a.registry.exported(address_of(ref).id)
    sub = export.subs.pop(0)  # its own subject's, made first (the name's comes after)
    export.ready = None  # so that `ensure_subscribed` makes it again
    client = node_a.transport.client
    await node_a.transport.call(sub.unsubscribe())
    await node_a.transport.call(client.flush())
    return export


def retried(system: actors.ActorSystem) -> bool:
    """Whether a stream read on ``system`` was published again after "no responders"."""
    return any(r.delay > RETRY_FIRST for r in streams_of(system).reading.values())


async def test_a_stream_nobody_received_is_published_again_until_its_actor_is_back(
    pair: Pair,
) -> None:
    # As for an ask: "no responders" while the owner node says the actor still exists
    # (its node reconnecting, say) is transient, and the request goes out again.
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        export = await drop_subscription(pair.a, ref)
        async with ref.stream(Numbers(5), timeout=None) as numbers:  # published on entry
            await wait_until(lambda: retried(pair.b))
            cluster: Any = pair.a.cluster
            node_a = cluster._node
            await node_a.transport.call(node_a.inbound.ensure_subscribed(export.id))
            assert [n async for n in numbers] == list(range(5))
        assert pair.track.produced == 5  # started once, though published several times
        await settled(pair.a, pair.b)


async def test_a_reader_that_leaves_while_nobody_receives_its_stream_stops_the_retries(
    pair: Pair,
) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.remote()
        await drop_subscription(pair.a, ref)
        numbers = ref.stream(Numbers(5), timeout=0.3)
        with pytest.raises(actors.AskTimeout, match="no item"):
            await anext(numbers)  # the first item never comes: the stream closes
        await settled(pair.b)  # the retries stopped, and the entry went with them
        assert not pair.track.started.is_set()
        assert ref.is_alive  # its owner said it still exists


async def test_a_stream_to_a_stopped_actor_whose_down_notice_was_lost_ends_stopped(
    server: NatsServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # b never hears that the actor stopped; its request gets "no responders", and the
    # owner node, asked, confirms the actor is gone: ActorStopped, and the ref learns it.
    lose_down_notices(monkeypatch, "b")  # before the nodes subscribe
    track = Track()
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            local = await a.spawn(
                lambda: Producer(track),
                name="mortal",
                public=True,
                restart=actors.Restart.TEMPORARY,
            )
            ref = await b.lookup_remote("mortal", Numbers)
            await drop_subscription(a, ref)
            await local.stop()
            cluster_a = a.cluster
            assert cluster_a is not None
            await wait_until(lambda: cluster_a.statistics().exported == 0)
            assert ref.is_alive  # b has not heard
            got, error = await collect(ref.stream(Numbers(5), timeout=None))
            assert got == []
            assert isinstance(error, actors.ActorStopped)
            assert not isinstance(error, NodeDown)
            assert not ref.is_alive  # the owner's answer finished the ref
            await settled(b)
