"""Parked run tasks: an actor that runs dry keeps its task for a while (`actors._parking`).

The retirement of an idle actor's task is in tests/test_system.py
(test_an_idle_actor_parks_its_task_then_has_none).
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from _support import WAIT, Count, Recorder, Tick, wait_until

import actors
from actors import ActorRef, ActorSystem

pytestmark = pytest.mark.anyio


def _task_of(ref: ActorRef[Any]) -> object:
    return ref._cell.task  # pyright: ignore[reportPrivateUsage]


def _parked(ref: ActorRef[Any]) -> bool:
    return ref._cell.parked is not None  # pyright: ignore[reportPrivateUsage]


async def test_a_parked_actor_is_woken_from_another_thread_in_the_same_task() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder)
        with anyio.fail_after(WAIT):
            await ref.send(Tick(0))
            assert await ref.ask(Count()) == 1
            await wait_until(lambda: _parked(ref))
            task = _task_of(ref)

            def from_a_thread() -> int:
                for n in range(1, 51):
                    ref.blocking_send(Tick(n))
                return ref.blocking_ask(Count())

            assert await anyio.to_thread.run_sync(from_a_thread) == 51
            assert _task_of(ref) is task  # resumed, not replaced


async def test_a_parked_actor_stops_at_once_and_drains() -> None:
    async with ActorSystem(workers=1, drain_timeout=WAIT) as system:
        ref = await system.spawn(Recorder)
        with anyio.fail_after(WAIT):
            await ref.send(Tick(0))
            assert await ref.ask(Count()) == 1
            await wait_until(lambda: _parked(ref))
            await ref.stop()
            assert not ref.is_alive
            assert _task_of(ref) is None
            assert not _parked(ref)


async def test_metrics_of_a_parked_actor_are_exact() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, name="parked")
        with anyio.fail_after(WAIT):
            for n in range(10):
                await ref.send(Tick(n))
            assert await ref.ask(Count()) == 10
            await wait_until(lambda: _parked(ref))
            (metrics,) = [a for a in system.metrics().actors if a.path == "/user/parked"]
            assert metrics.received == metrics.processed == 11


async def test_shutdown_with_many_parked_actors_is_prompt() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            refs = [await system.spawn(Recorder) for _ in range(200)]
            for ref in refs:
                await ref.send(Tick(1))
            for ref in refs:
                assert await ref.ask(Count()) == 1
            await wait_until(lambda: sum(_parked(r) for r in refs) > 100)
    assert all(not r.is_alive for r in refs)


async def test_parked_actors_under_producers_on_threads_and_loops_lose_nothing() -> None:
    # Many actors going dry and being woken again, by producers on both worker loops, the
    # host and plain threads: every message handled exactly once, none stuck.
    targets = 20
    per_producer = 300
    async with ActorSystem(workers=2) as system:
        refs = [await system.spawn(Recorder) for _ in range(targets)]

        def thread_producer(offset: int) -> None:
            for n in range(per_producer):
                refs[(n + offset) % targets].blocking_send(Tick(n))

        class Producer(actors.Actor[Tick]):
            async def receive(self, message: Tick) -> None:
                for n in range(per_producer):
                    await refs[(n + message.n) % targets].send(Tick(n))

        producers = [await system.spawn(Producer, placement=i % 2) for i in range(2)]
        with anyio.fail_after(WAIT * 4):
            threads = [threading.Thread(target=thread_producer, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            async with anyio.create_task_group() as tg:
                for i, producer in enumerate(producers):  # an ask returns once it sent all
                    tg.start_soon(producer.ask, Tick(i))
                for n in range(per_producer):
                    await refs[n % targets].send(Tick(n))
            await anyio.to_thread.run_sync(lambda: [t.join() for t in threads])
            total = 5 * per_producer
            counts = [await ref.ask(Count()) for ref in refs]
            assert sum(counts) == total


class Retire(actors.Request[None], frozen=True):
    """Run the target's loop's parking sweep twice, then send the target a Tick at once."""

    target: ActorRef[Any]


class Sweeper(actors.Actor[Retire]):
    async def receive(self, message: Retire) -> None:
        cell = message.target._cell  # pyright: ignore[reportPrivateUsage]
        parking = cell.home.parking
        assert parking is not None
        assert cell.parked is not None
        parking._sweep()  # pyright: ignore[reportPrivateUsage]  # ages it
        parking._sweep()  # pyright: ignore[reportPrivateUsage]  # retires it
        assert cell.parked is None
        message.target.try_send(Tick(2))  # before the retired task has resumed


async def test_a_message_between_retirement_and_resumption_keeps_one_live_task() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, placement=0)
        sweeper = await system.spawn(Sweeper, placement=0)
        with anyio.fail_after(WAIT):
            await ref.send(Tick(1))
            assert await ref.ask(Count()) == 1
            await wait_until(lambda: _parked(ref))
            await sweeper.ask(Retire(ref))
            assert await ref.ask(Count()) == 2
            await wait_until(lambda: _parked(ref))
            # The new run task (parked now) is the cell's: the retired one did not clear it.
            assert _task_of(ref) is not None
