"""Streamed replies (`actors.StreamRequest`, `Ref.stream`): order, backpressure, leaving early,
errors after items, stops, misuse, leaks; on every backend, same loop and across loops."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import hypothesis
import hypothesis.strategies as st
import pytest
from _support import WAIT, Flag, Hold, park, wait_until

import actors
from actors import Actor, ActorSystem
from actors._ref import cell_of
from actors._stream import END, Channel

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = pytest.mark.anyio


class Track:
    """What a producer did, readable from the test's thread (counters under a lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._produced = 0
        self.started = Flag()
        self.closed = Flag()  # the producer's `finally` ran
        self.paused = Flag()  # set by `Numbers.pause_at`

    @property
    def produced(self) -> int:
        with self._lock:
            return self._produced

    def bump(self) -> None:
        with self._lock:
            self._produced += 1


actors.register_sendable(Track)


class Numbers(actors.StreamRequest[int], frozen=True):
    """Stream 0, 1, 2, ...: ``count`` items (-1: endless); see the fields for faults."""

    track: Track
    count: int = -1
    fail_at: int = -1  # raise ValueError instead of producing this item
    pause_at: int = -1  # before this item, wait for ``resume`` (after setting track.paused)
    resume: Flag | None = None
    stop_at: int = -1  # the actor stops itself before producing this item
    bad_at: int = -1  # produce a list (not sendable) at this index


class Ping(actors.Request[str], frozen=True):
    pass


class Tasks(actors.Request[int], frozen=True):
    """The tasks of the actor's loop, counted by the actor on its loop."""


class Plain(actors.StreamRequest[int], frozen=True):
    """Answered with a plain value rather than an async iterable."""


class Streamer(Actor[Numbers | Ping | Plain | Hold | Tasks]):
    async def receive(self, message: Numbers | Ping | Plain | Hold | Tasks) -> Any:
        match message:
            case Tasks():
                return len(asyncio.all_tasks())
            case Numbers():
                return numbers(message, self.stop)
            case Ping():
                return "pong"
            case Plain():
                return 42
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
        return None


async def numbers(request: Numbers, stop: Callable[[], None]) -> AsyncIterator[Any]:
    track = request.track
    track.started.set()
    try:
        for n in itertools.count() if request.count < 0 else range(request.count):
            if n == request.fail_at:
                raise ValueError(f"failed at {n}")
            if n == request.stop_at:
                stop()
            if n == request.pause_at and request.resume is not None:
                track.paused.set()
                await request.resume.wait()
            track.bump()
            yield [n] if n == request.bad_at else n
    finally:
        track.closed.set()


class SyncStreamer(Actor[Numbers]):
    def receive(self, message: Numbers) -> Any:
        return numbers(message, self.stop)


class Relay(actors.StreamRequest[int], frozen=True):
    """Re-stream the items of ``source`` (an actor on another loop), doubled."""

    source: actors.ActorRef[Numbers]
    request: Numbers


class Relayer(Actor[Relay]):
    async def receive(self, message: Relay) -> AsyncIterator[int]:
        return self.relay(message)

    async def relay(self, message: Relay) -> AsyncIterator[int]:
        async with message.source.stream(message.request, window=3) as items:
            async for item in items:
                yield 2 * item


async def streamer(system: ActorSystem, **options: Any) -> actors.ActorRef[Any]:
    return await system.spawn(Streamer, **options)


async def produced_at_least(track: Track, count: int) -> None:
    await wait_until(lambda: track.produced >= count)


async def collect(stream: actors.ReplyStream[int], into: list[int]) -> None:
    """Read ``stream`` to its end into ``into`` (which keeps what came before an error)."""
    async for item in stream:
        into.append(item)


# -- order and the ordinary end -------------------------------------------------------------


async def test_items_arrive_in_order_and_the_stream_ends() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        with anyio.fail_after(WAIT):
            items = [n async for n in ref.stream(Numbers(track, count=100), window=4)]
            assert items == list(range(100))
            await track.closed.wait()
            assert await ref.ask(Ping()) == "pong"  # the actor goes on


async def test_an_empty_stream_ends_at_once() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        with anyio.fail_after(WAIT):
            assert [n async for n in ref.stream(Numbers(Track(), count=0))] == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stream_on_the_callers_own_loop() -> None:
    # placement="host": producer and consumer share one loop and one thread.
    async with ActorSystem(workers=1, placement="host") as system:
        ref = await streamer(system)
        with anyio.fail_after(WAIT):
            items = [n async for n in ref.stream(Numbers(Track(), count=50), window=1)]
            assert items == list(range(50))


async def test_an_actor_streams_from_an_actor_on_another_loop() -> None:
    async with ActorSystem(workers=2) as system:
        source = await system.spawn(Streamer, placement=0)
        relay = await system.spawn(Relayer, placement=1)
        track = Track()
        with anyio.fail_after(WAIT):
            request = Relay(source, Numbers(track, count=40))
            items = [n async for n in relay.stream(request, window=2)]
            assert items == [2 * n for n in range(40)]
            await track.closed.wait()


# -- backpressure ---------------------------------------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 5, 16])
async def test_the_producer_stays_within_the_window(window: int) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        with anyio.fail_after(WAIT):
            async with ref.stream(Numbers(track), window=window) as items:
                taken = 0
                async for _ in items:
                    taken += 1
                    # Invariant: never more than `window` items produced and not taken.
                    assert track.produced <= taken + window
                    if taken in (1, 10):  # a slow consumer: the producer fills the window
                        # (resumed only once the consumer drained half of it, so it may be
                        # up to half a window short of `taken + window` here)
                        await produced_at_least(track, taken + window - window // 2)
                    if taken == 30:
                        break
            await track.closed.wait()
            assert track.produced <= 30 + window


# -- leaving early ----------------------------------------------------------------------------


async def test_break_from_an_unnamed_stream_stops_the_producer() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        with anyio.fail_after(WAIT):
            async for n in ref.stream(Numbers(track), window=2):
                if n == 5:
                    break
            await track.closed.wait()  # the stream was garbage: its producer closed
            assert await ref.ask(Ping()) == "pong"


async def test_leaving_the_async_with_block_stops_the_producer() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        with anyio.fail_after(WAIT):
            async with ref.stream(Numbers(track), window=2) as items:
                async for n in items:
                    if n == 3:
                        break
            await track.closed.wait()  # `items` still refers to the stream: not garbage
            assert repr(items).endswith("closed>")
            assert await ref.ask(Ping()) == "pong"
            assert track.produced <= 4 + 2


async def test_a_cancelled_read_closes_the_stream() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track, resume = Track(), Flag()
        stream = ref.stream(Numbers(track, pause_at=3, resume=resume))
        seen: list[int] = []
        with anyio.fail_after(WAIT):
            with anyio.CancelScope() as scope:
                async for n in stream:
                    seen.append(n)
                    if n == 2:
                        await track.paused.wait()  # the next read waits for an item
                        scope.cancel()
            assert seen == [0, 1, 2]
            with pytest.raises(actors.StreamClosed, match="is closed"):
                await stream.__anext__()
            resume.set()  # the producer's next item finds nobody: it is closed there
            await track.closed.wait()
            assert await ref.ask(Ping()) == "pong"


async def test_a_timed_out_read_closes_the_stream_and_raises_ask_timeout() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track, resume = Track(), Flag()
        stream = ref.stream(Numbers(track, pause_at=1, resume=resume), timeout=0.05)
        with anyio.fail_after(WAIT):
            assert await stream.__anext__() == 0
            with pytest.raises(actors.AskTimeout, match="sent no item of Numbers"):
                await stream.__anext__()
            with pytest.raises(actors.StreamClosed):
                await stream.__anext__()
            resume.set()
            await track.closed.wait()
            assert await ref.ask(Ping()) == "pong"


async def test_aclose_wakes_a_paused_producer() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        stream = ref.stream(Numbers(track), window=3)
        with anyio.fail_after(WAIT):
            assert await stream.__anext__() == 0
            await wait_until(lambda: track.produced >= 3)  # the window filled up: paused
            await stream.aclose()
            await track.closed.wait()
            assert track.produced <= 1 + 3
            await stream.aclose()  # idempotent


async def test_a_request_abandoned_while_queued_never_starts_its_producer() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        with anyio.fail_after(WAIT):
            release = await park(ref)
            stream = ref.stream(Numbers(track), timeout=0.05)
            with pytest.raises(actors.AskTimeout):
                await stream.__anext__()  # queued behind the parked message
            release.set()
            assert await ref.ask(Ping()) == "pong"  # handled after the stream request
            assert not track.started.is_set()  # its generator was closed unstarted
            (figures,) = (a for a in system.metrics().actors if a.path == ref.path)
            assert figures.asks_cancelled == 1  # skipped as an abandoned ask


class Slow(actors.StreamRequest[int], frozen=True):
    """One item, then (after setting ``waiting``) a wait that only a cancellation ends."""

    waiting: Flag
    cancelled: Flag


class CancellableStreamer(Actor[Slow | Ping]):
    cancel_abandoned = True

    async def receive(self, message: Slow | Ping) -> object:
        if isinstance(message, Ping):
            return "pong"
        return self.items(message)

    async def items(self, message: Slow) -> AsyncIterator[int]:
        yield 1
        try:
            message.waiting.set()
            await anyio.sleep_forever()
        finally:
            message.cancelled.set()
        yield 2  # pragma: no cover  # never reached


async def test_an_opted_in_actor_cancels_a_producer_busy_in_its_own_await() -> None:
    # Without cancel_abandoned a producer is stopped at its next item only; with it, the
    # consumer leaving cancels the producer wherever it waits.
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(CancellableStreamer)
        waiting, cancelled = Flag(), Flag()
        with anyio.fail_after(WAIT):
            async with ref.stream(Slow(waiting, cancelled)) as items:
                assert await items.__anext__() == 1
                await waiting.wait()  # in its own await: no next item would stop it
            await cancelled.wait()
            assert await ref.ask(Ping()) == "pong"  # the actor carries on
            (figures,) = (a for a in system.metrics().actors if a.path == ref.path)
            assert (figures.handlers_cancelled, figures.failed) == (1, 0)


# -- errors after items, stops ---------------------------------------------------------------


async def test_a_producer_error_comes_after_its_items_and_fails_the_actor() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, restart=actors.Restart.TEMPORARY)
        seen: list[int] = []
        with anyio.fail_after(WAIT):
            with pytest.raises(ValueError, match="failed at 3") as caught:
                await collect(ref.stream(Numbers(Track(), fail_at=3), window=8), seen)
            assert seen == [0, 1, 2]
            assert any(ref.path in note for note in getattr(caught.value, "__notes__", ()))
            assert await ref.join() is caught.value  # the actor failed, as for an ask


async def test_an_unsendable_item_ends_the_stream_with_not_sendable_error() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, restart=actors.Restart.TEMPORARY)
        seen: list[int] = []
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.NotSendableError, match="item of the stream"):
                await collect(ref.stream(Numbers(Track(), bad_at=2)), seen)
            assert seen == [0, 1]


async def test_an_actor_stopping_mid_stream_ends_it_with_actor_stopped() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, restart=actors.Restart.TEMPORARY)
        track = Track()
        seen: list[int] = []
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.ActorStopped, match="ended after 3 item"):
                await collect(ref.stream(Numbers(track, stop_at=2), window=8), seen)
            assert seen == [0, 1, 2]
            await track.closed.wait()
            assert await ref.join() is None


async def test_a_stop_from_outside_ends_the_stream_after_its_items() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()
        seen: list[int] = []
        with anyio.fail_after(WAIT):
            stream = ref.stream(Numbers(track), window=2)
            async with anyio.create_task_group() as group:
                seen.append(await stream.__anext__())
                group.start_soon(ref.stop)
                with pytest.raises(actors.ActorStopped):
                    await collect(stream, seen)
            assert seen == list(range(len(seen)))  # in order, nothing skipped
            await track.closed.wait()


async def test_a_killed_actor_ends_the_stream_with_actor_stopped() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, restart=actors.Restart.TEMPORARY)
        track, resume = Track(), Flag()
        stream = ref.stream(Numbers(track, pause_at=1, resume=resume))
        with anyio.fail_after(WAIT):
            assert await stream.__anext__() == 0
            await track.paused.wait()
            cell_of(ref).kill()
            with pytest.raises(actors.ActorStopped):
                await stream.__anext__()
            await track.closed.wait()


async def test_a_stream_to_a_stopped_actor_raises_actor_stopped() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        await ref.stop()
        with anyio.fail_after(WAIT), pytest.raises(actors.ActorStopped):
            await ref.stream(Numbers(Track())).__anext__()


# -- misuse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["send", "ask"])
async def test_a_stream_request_sent_or_asked_is_refused(verb: str) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        with anyio.fail_after(WAIT):
            for _ in range(2):  # refused every time: never cached as admitted
                with pytest.raises(actors.StreamRequestError, match=r"ref\.stream"):
                    await getattr(ref, verb)(Numbers(Track()))
            assert ref.statistics().mailbox.depth == 0
            assert await ref.ask(Ping()) == "pong"


async def test_a_pool_refuses_a_stream_request() -> None:
    async with ActorSystem(workers=1) as system:
        pool = await system.spawn_pool(Streamer, size=2)
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.StreamRequestError, match="StreamRequest"):
                await pool.ask(Numbers(Track()))
            with pytest.raises(actors.StreamRequestError, match="StreamRequest"):
                await pool.send(Numbers(Track()))
            assert await pool.ask(Ping()) == "pong"


async def test_try_send_of_a_stream_request_raises_at_once() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        with pytest.raises(actors.StreamRequestError, match="Numbers is a StreamRequest"):
            ref.try_send(Numbers(Track()))


async def test_a_stream_is_consumed_once() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        stream = ref.stream(Numbers(Track(), count=3))
        with anyio.fail_after(WAIT):
            assert [n async for n in stream] == [0, 1, 2]
            with pytest.raises(actors.StreamClosed, match="already consumed"):
                async for _ in stream:
                    pass
            async with ref.stream(Numbers(Track(), count=1)) as items:
                with pytest.raises(actors.StreamClosed, match="already opened"):
                    await items.__aenter__()


async def test_two_tasks_reading_one_stream_are_refused() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track, resume = Track(), Flag()
        stream = ref.stream(Numbers(track, pause_at=0, resume=resume, count=1))
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(stream.__anext__)
                await track.paused.wait()
                with pytest.raises(actors.StreamClosed, match="another task"):
                    await stream.__anext__()
                resume.set()


async def test_stream_refuses_bad_arguments() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        with pytest.raises(actors.StreamRequestError, match="takes a StreamRequest"):
            ref.stream(Ping())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="window must be at least 1"):
            ref.stream(Numbers(Track()), window=0)
        with pytest.raises(TypeError, match="window must be an int"):
            ref.stream(Numbers(Track()), window=2.0)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout"):
            ref.stream(Numbers(Track()), timeout=-1)
        with pytest.raises(actors.MessageTypeError, match="does not accept"):
            ref.stream(Relay(ref, Numbers(Track())))
        assert ref.statistics().mailbox.depth == 0
        with anyio.fail_after(WAIT):
            assert await ref.ask(Ping()) == "pong"


async def test_a_handler_returning_a_plain_value_fails_with_a_clear_error() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.StreamRequestError, match="return an async iterable"):
                async for _ in ref.stream(Plain()):
                    pass
            assert isinstance(await ref.join(), actors.StreamRequestError)


async def test_a_synchronous_handler_cannot_stream() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(SyncStreamer, restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.StreamRequestError, match="async def receive"):
                async for _ in ref.stream(Numbers(Track())):
                    pass


async def test_an_actor_streaming_from_itself_gets_deadlock_error() -> None:
    class Loop(actors.StreamRequest[int], frozen=True):
        pass

    class Selfish(Actor[Loop | Ping]):
        async def receive(self, message: Loop | Ping) -> Any:
            if isinstance(message, Ping):
                try:
                    async for _ in self.ref.stream(Loop()):
                        pass
                except actors.DeadlockError as error:
                    return str(error)
            return None

    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Selfish)
        with anyio.fail_after(WAIT):
            assert "opened a stream to itself" in await ref.ask(Ping())


async def test_a_ref_that_cannot_stream_says_so() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        with pytest.raises(actors.StreamNotSupported, match="not supported by ActorRef"):
            actors.Ref.stream(ref, Numbers(Track()))


# -- the channel alone ------------------------------------------------------------------------


async def test_channel_ends_after_its_items_and_raises_its_error_once() -> None:
    channel = Channel("/user/x", Plain(), 4)
    assert channel.put(1) == 0
    channel.settle(error=ValueError("boom"))
    channel.settle(END)  # the first end wins
    assert await channel.get(None) == 1
    with pytest.raises(ValueError, match="boom"):
        await channel.get(None)
    with pytest.raises(StopAsyncIteration):
        await channel.get(None)


async def test_channel_close_marks_it_abandoned_and_refuses_items() -> None:
    channel = Channel("/user/x", Plain(), 2)
    assert not channel.abandoned
    channel.put(1)
    channel.close()
    assert channel.abandoned
    assert channel.put(2) == 2  # _GONE
    assert not await channel.room()
    with pytest.raises(actors.StreamRequestError, match="returned int"):
        channel.settle(7)


# -- properties and leaks ---------------------------------------------------------------------


class Paced(actors.StreamRequest[int], frozen=True):
    count: int
    producer_yields: tuple[int, ...]  # checkpoints before each item, cycled


class Pacer(Actor[Paced]):
    async def receive(self, message: Paced) -> AsyncIterator[int]:
        return self.items(message)

    async def items(self, message: Paced) -> AsyncIterator[int]:
        pauses = itertools.cycle(message.producer_yields or (0,))
        for n in range(message.count):
            for _ in range(next(pauses)):
                await asyncio.sleep(0)
            yield n


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    windows=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    count=st.integers(0, 60),
    producer_yields=st.lists(st.integers(0, 3), max_size=5).map(tuple),
    consumer_yields=st.lists(st.integers(0, 3), max_size=5),
    stop_after=st.none() | st.integers(1, 60),
    leave_by=st.sampled_from(["break", "cancel"]),
)
def test_items_keep_their_order_whatever_the_window_and_speeds(
    windows: list[int],
    count: int,
    producer_yields: tuple[int, ...],
    consumer_yields: list[int],
    stop_after: int | None,
    leave_by: str,
) -> None:
    # Several streams from one actor in a row: each request waits behind the one before,
    # so every stream also proves that the previous producer ended, however it was left.
    async def main() -> None:
        async with ActorSystem(workers=1) as system:
            ref = await system.spawn(Pacer)
            pauses = itertools.cycle(consumer_yields or [0])
            with anyio.fail_after(WAIT):
                for window in windows:
                    seen: list[int] = []
                    with anyio.CancelScope() as scope:
                        async with ref.stream(Paced(count, producer_yields), window=window) as s:
                            async for n in s:
                                seen.append(n)
                                if len(seen) == stop_after:
                                    if leave_by == "break":
                                        break
                                    scope.cancel()  # takes effect at the next wait
                                for _ in range(next(pauses)):
                                    await anyio.lowlevel.checkpoint()
                    expected = count if stop_after is None else min(count, stop_after)
                    assert seen == list(range(len(seen)))  # in order, no gap, no duplicate
                    if leave_by == "break" or stop_after is None:
                        assert len(seen) == expected
                    else:
                        assert expected <= len(seen) <= count

    anyio.run(main)


def _channels() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is Channel)


async def test_ten_thousand_abandoned_streams_leak_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        tasks_before = _tasks()
        channels_before = _channels()
        with anyio.fail_after(60):
            worker_tasks_before = await ref.ask(Tasks())
            for _ in range(10_000):
                async for _n in ref.stream(Numbers(Track()), window=2):
                    break
            assert await ref.ask(Ping()) == "pong"  # after every abandoned stream ended
            assert await ref.ask(Tasks()) <= worker_tasks_before  # the actor's loop
        assert ref.statistics().mailbox.depth == 0
        assert _channels() == channels_before  # no channel (window, reply slot) left
        assert _tasks() <= tasks_before  # the host's loop (asyncio hosts)


def _tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # trio: the worker loops' tasks are counted by the actor system
        return 0


class Blobs(actors.StreamRequest[bytes], frozen=True):
    """An endless stream of 4 KiB items."""


class Blobber(Actor[Blobs]):
    async def receive(self, message: Blobs) -> AsyncIterator[bytes]:
        return self.blobs()

    async def blobs(self) -> AsyncIterator[bytes]:
        for n in itertools.count():
            yield n.to_bytes(8, "little") * 512


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the RSS in /proc")
async def test_memory_stays_flat_for_an_endless_stream_read_slowly() -> None:
    # A reader slower than its producer: without backpressure the 40,000 items of 4 KiB read
    # here (160 MiB) would pile up; with a window of 16 at most 64 KiB are in flight.
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Blobber)
        with anyio.fail_after(60):
            async with ref.stream(Blobs(), window=16) as blobs:
                read = 0
                async for blob in blobs:
                    assert int.from_bytes(blob[:8], "little") == read
                    read += 1
                    for _ in range(3):  # the slow part: the producer always waits for room
                        await anyio.lowlevel.checkpoint()
                    if read == 4_000:
                        gc.collect()
                        base = _rss_bytes()
                    if read == 40_000:
                        break
            gc.collect()
            growth = _rss_bytes() - base  # pyright: ignore[reportPossiblyUnboundVariable]
            assert growth < 16 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB"


class Stubborn(actors.StreamRequest[int], frozen=True):
    """A producer that keeps yielding after its reader left (it swallows GeneratorExit)."""


class StubbornActor(Actor[Stubborn]):
    async def receive(self, message: Stubborn) -> AsyncIterator[int]:
        return self.items()

    async def items(self) -> AsyncIterator[int]:
        try:
            yield 0
            yield 1
        except GeneratorExit:
            yield 2  # an item for a reader that has left


async def test_a_producer_that_ignores_its_closing_fails_the_actor_loudly() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(StubbornActor, restart=actors.Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            async with ref.stream(Stubborn(), window=1) as items:
                assert await items.__anext__() == 0
            reason = await ref.join()
            assert isinstance(reason, RuntimeError)
            assert "ignored GeneratorExit" in str(reason)


# -- plain threads ----------------------------------------------------------------------------


async def test_a_plain_thread_reads_a_stream() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()

        def read() -> list[int]:
            return list(ref.blocking_stream(Numbers(track, count=50), window=3))

        with anyio.fail_after(WAIT):
            assert await anyio.to_thread.run_sync(read) == list(range(50))
            await track.closed.wait()


async def test_a_plain_thread_leaving_early_stops_the_producer() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        track = Track()

        def read() -> list[int]:
            seen: list[int] = []
            with ref.blocking_stream(Numbers(track), window=2) as items:
                for n in items:
                    seen.append(n)
                    if n == 4:
                        break
            with pytest.raises(actors.StreamClosed, match="is closed"):
                next(items)
            with pytest.raises(actors.StreamClosed, match="already consumed"):
                iter(items)
            return seen

        with anyio.fail_after(WAIT):
            assert await anyio.to_thread.run_sync(read) == [0, 1, 2, 3, 4]
            await track.closed.wait()
            assert await ref.ask(Ping()) == "pong"


async def test_a_plain_thread_gets_errors_after_the_items_and_timeouts() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, restart=actors.Restart.TEMPORARY)
        track, resume = Track(), Flag()

        def read_quiet() -> int:
            items = ref.blocking_stream(Numbers(track, pause_at=1, resume=resume), timeout=0.05)
            first = next(items)
            with pytest.raises(actors.AskTimeout, match="sent no item"):
                next(items)
            return first

        def read_failing(seen: list[int]) -> None:
            for n in ref.blocking_stream(Numbers(Track(), fail_at=2)):
                seen.append(n)

        with anyio.fail_after(WAIT):
            assert await anyio.to_thread.run_sync(read_quiet) == 0
            resume.set()
            await track.closed.wait()
            seen: list[int] = []
            with pytest.raises(ValueError, match="failed at 2"):
                await anyio.to_thread.run_sync(read_failing, seen)
            assert seen == [0, 1]


async def test_blocking_stream_refuses_an_event_loop_thread() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system)
        with pytest.raises(RuntimeError, match="would stall the event loop"):
            ref.blocking_stream(Numbers(Track()))
        with pytest.raises(actors.StreamNotSupported):
            actors.Ref.blocking_stream(ref, Numbers(Track()))


# -- opening on a full mailbox (RELIABILITY.md F12 (i), for streams) ---------------------------


async def test_opening_on_a_full_mailbox_waits_and_a_timeout_enqueues_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, capacity=1)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            ref.try_send(Ping())  # the mailbox is full now
            track = Track()
            stream = ref.stream(Numbers(track, count=3), timeout=0.05)
            with pytest.raises(actors.AskTimeout, match="stayed full"):
                await stream.__anext__()
            with pytest.raises(actors.StreamClosed):
                await stream.__anext__()
            assert ref.statistics().mailbox.depth == 1  # only the Ping: nothing enqueued
            release.set()
            assert await ref.ask(Ping()) == "pong"
            assert not track.started.is_set()


async def test_a_read_cancelled_while_waiting_for_room_enqueues_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await streamer(system, capacity=1)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            ref.try_send(Ping())
            track = Track()
            stream = ref.stream(Numbers(track, count=3))
            async with anyio.create_task_group() as group:
                group.start_soon(stream.__anext__)
                await wait_until(lambda: ref.statistics().mailbox.waiting_senders == 1)
                group.cancel_scope.cancel()
            assert ref.statistics().mailbox.waiting_senders == 0
            assert ref.statistics().mailbox.depth == 1
            release.set()
            assert await ref.ask(Ping()) == "pong"
            assert not track.started.is_set()
            # A fresh stream is served as usual afterwards.
            assert [n async for n in ref.stream(Numbers(Track(), count=2))] == [0, 1]


def test_remote_refs_stream_over_the_cluster() -> None:
    from actors.cluster import RemoteRef

    # RemoteRef streams across nodes (tests/cluster/test_cluster_stream.py); only a kind of
    # ref that overrides neither keeps Ref's StreamNotSupported (tested above).
    assert RemoteRef.stream is not actors.Ref.stream
    assert RemoteRef.blocking_stream is not actors.Ref.blocking_stream
