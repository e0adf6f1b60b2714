"""Oneshots: the timeouts of asyncio waits (one shared deadline queue per duration); latches."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import warnings

import anyio
import pytest

import actors._oneshot
from actors import Actor, ActorRef, ActorSystem
from actors._oneshot import (
    Expired,
    Latch,
    Oneshot,
    _noted_or_asyncio_loop,  # pyright: ignore[reportPrivateUsage]
    oneshot,
    running_loop,
    running_worker_loop,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the shared deadline queues are asyncio's; trio waits use trio's timeouts


async def _outcome(wait: Oneshot, timeout: float) -> object:
    try:
        return await wait.wait(timeout)
    except Expired:
        return "expired"


async def test_waits_of_one_duration_expire_unless_settled_whatever_the_order() -> None:
    waits = [oneshot() for _ in range(5)]
    with anyio.fail_after(5):
        started = time.monotonic()
        jobs = [asyncio.ensure_future(_outcome(w, 0.2)) for w in waits]
        await asyncio.sleep(0)
        waits[1].settle("one")  # settled while an older wait is still pending ahead of it
        waits[4].settle("four")
        results = await asyncio.gather(*jobs)
        elapsed = time.monotonic() - started
    assert results == ["expired", "one", "expired", "expired", "four"]
    assert 0.19 <= elapsed < 2.0  # they expired at their deadline, not before


async def test_a_settled_wait_at_the_head_is_not_expired_later() -> None:
    with anyio.fail_after(5):
        first = oneshot()
        job = asyncio.ensure_future(_outcome(first, 0.1))
        await asyncio.sleep(0)
        first.settle("answered")
        assert await job == "answered"
        second = oneshot()
        assert await _outcome(second, 0.1) == "expired"  # the timer still serves later waits


async def test_many_durations_each_expire_on_time() -> None:
    # More distinct durations than the shared queues keep: the rest get timers of their own.
    durations = [0.05 + 0.01 * i for i in range(12)]
    with anyio.fail_after(5):
        started = time.monotonic()
        results = await asyncio.gather(*(_outcome(oneshot(), d) for d in durations))
        elapsed = time.monotonic() - started
    assert results == ["expired"] * len(durations)
    assert max(durations) - 0.01 <= elapsed < 2.0


# -- Latch: a settled wait has nothing to forget; an expired or cancelled one is forgotten --


def _listed(latch: Latch) -> int:
    return len(latch._waiters or ())  # pyright: ignore[reportPrivateUsage]


async def test_latch_set_wakes_every_waiter_and_keeps_none() -> None:
    latch = Latch()
    with anyio.fail_after(5):
        plain = asyncio.ensure_future(latch.wait())  # the join fast path: no timeout
        timed = asyncio.ensure_future(latch.wait(5.0))  # through the oneshot's own wait
        await asyncio.sleep(0)
        assert _listed(latch) == 2
        latch.set("done")
        assert await plain == "done"
        assert await timed == "done"
    assert _listed(latch) == 0
    assert await latch.wait() == "done"  # set already: no waiter made


async def test_latch_forgets_an_expired_wait_and_still_serves_the_others() -> None:
    latch = Latch()
    with anyio.fail_after(5):
        other = asyncio.ensure_future(latch.wait())
        with pytest.raises(Expired):
            await latch.wait(0.01)
        assert _listed(latch) == 1  # only the other's
        latch.set(7)
        assert await other == 7


async def test_latch_forgets_a_cancelled_wait() -> None:
    latch = Latch()
    with anyio.fail_after(5):
        waiting = asyncio.ensure_future(latch.wait())
        await asyncio.sleep(0)
        assert _listed(latch) == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert _listed(latch) == 0


async def test_latch_lists_a_plain_asyncio_wait_as_its_future() -> None:
    latch = Latch()
    with anyio.fail_after(5):
        plain = asyncio.ensure_future(latch.wait())
        await asyncio.sleep(0)
        (listed,) = latch._waiters or ()  # pyright: ignore[reportPrivateUsage]
        assert isinstance(listed, asyncio.Future)  # no Oneshot around it: one object less
        latch.set(3)
        assert listed.result() == 3  # resolved in place: this thread runs its loop
        assert await plain == 3


async def test_latch_listen_lists_a_future_of_this_loop_until_set() -> None:
    latch = Latch()
    with anyio.fail_after(5):
        future = latch.listen()  # what `ActorRef.join` awaits: no coroutine of the latch's
        assert future is not None
        assert future.get_loop() is asyncio.get_running_loop()
        assert _listed(latch) == 1
        latch.set("ended")
        assert await future == "ended"
    assert _listed(latch) == 0
    assert latch.listen() is None  # set already: nothing listed, the value is `wait`'s


async def test_latch_forget_unlists_an_abandoned_listen() -> None:
    latch = Latch()
    first, second = latch.listen(), latch.listen()
    assert first is not None
    assert second is not None
    first.cancel()
    latch.forget(first)
    assert _listed(latch) == 1
    latch.forget(first)  # twice: nothing more to do
    latch.set(1)
    assert second.result() == 1


def test_latch_listen_without_a_running_loop_is_none() -> None:
    latch = Latch()
    assert latch.listen() is None  # a plain thread (or trio): `wait` or `wait_blocking`
    assert _listed(latch) == 0


async def test_latch_set_from_another_thread_wakes_a_plain_wait_on_its_loop() -> None:
    latch = Latch()
    with anyio.fail_after(5):
        plain = asyncio.ensure_future(latch.wait())
        await asyncio.sleep(0)
        setter = threading.Thread(target=latch.set, args=("from a thread",))
        setter.start()
        await anyio.to_thread.run_sync(setter.join)
        assert await plain == "from a thread"


def test_latch_set_after_the_waiters_loop_closed_does_not_raise() -> None:
    latch = Latch()
    loop = asyncio.new_event_loop()
    listed = latch._register(loop.create_future)  # pyright: ignore[reportPrivateUsage]
    loop.close()  # with the wait still listed: nobody is left to tell
    latch.set(None)
    assert latch.is_set
    assert not listed.done()


# -- the running loop without a system call (`running_loop`) ---------------------------------


class _LoopSeen(Actor[str]):
    """Answers what `running_loop` gives in a handler, in a factory spawned from here for
    another worker, and after that spawn; counts asyncio's own lookups on its thread."""

    async def receive(self, message: str) -> tuple[bool, ...]:
        here = running_loop()
        child = await self.system.spawn(_FactorySeen, placement=1)
        seen_by_factory = await child.ask("seen")
        after = running_loop()
        return (
            here is asyncio.get_running_loop(),
            seen_by_factory,
            after is here,
        )


class _FactorySeen(Actor[str]):
    def __init__(self) -> None:
        self.seen = running_loop()  # built on the spawner's worker thread: hidden there

    def receive(self, message: str) -> bool:
        return self.seen is None


class _Asker(Actor[tuple[ActorRef[str], int]]):
    async def receive(self, message: tuple[ActorRef[str], int]) -> int:
        target, count = message
        for _ in range(count):
            await target.ask("seen")
        ref = await self.system.spawn(_FactorySeen, placement=0)
        await ref.ask("seen")
        await ref.stop()
        await ref.join()
        return threading.get_ident()


@pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="asyncio's lookup makes no system call from 3.12 on"
)
async def test_a_worker_thread_knows_its_running_loop_without_asking_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Python 3.11's lookup makes a getpid system call each time; asks, joins and latch
    # wake-ups on a worker thread must not need it.
    asked_from: list[int] = []
    lookup = actors._oneshot._get_running_loop  # pyright: ignore[reportPrivateUsage]

    def counted() -> asyncio.AbstractEventLoop | None:
        asked_from.append(threading.get_ident())
        return lookup()

    monkeypatch.setattr(actors._oneshot, "_get_running_loop", counted)
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(10):
            target = await system.spawn(_FactorySeen, placement=0)
            asker = await system.spawn(_Asker, placement=0)
            worker = await asker.ask((target, 50))
            during_work = list(asked_from)  # the worker's own end asks asyncio: it may
    assert worker not in during_work


async def test_a_factory_run_off_its_loop_sees_no_running_loop_then_it_is_back() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(10):
            seer = await system.spawn(_LoopSeen, placement=0)
            assert await seer.ask("go") == (True, True, True)


def test_the_worker_loop_is_noted_only_while_it_runs() -> None:
    # The note (what `running_loop` reads first on 3.11) lasts exactly as long as the
    # `with`; `running_loop` itself agrees with asyncio inside and after the loop's run.
    loop = asyncio.new_event_loop()
    noted: list[object] = []
    running: list[object] = []
    try:

        def in_thread() -> None:
            loop.call_soon(lambda: running.append(running_loop()))
            loop.call_soon(loop.stop)
            with running_worker_loop(loop):
                noted.append(_noted_or_asyncio_loop())
                loop.run_forever()
            noted.append(_noted_or_asyncio_loop())
            running.append(running_loop())

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join(10)
        assert noted == [loop, None]
        assert running == [loop, None]
        assert _noted_or_asyncio_loop() is None  # another thread's note is not this one's
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_of_a_worker_thread_runs_no_noted_loop() -> None:
    loop = asyncio.new_event_loop()
    status: list[int] = []
    try:

        def in_thread() -> None:
            with running_worker_loop(loop), warnings.catch_warnings():
                # Python 3.12+ warns that forking a threaded process may deadlock the
                # child: this child only reads a thread-local and exits.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
                if pid == 0:
                    os._exit(0 if _noted_or_asyncio_loop() is None else 1)
                status.append(os.waitpid(pid, 0)[1])

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join(10)
        assert status == [0]
    finally:
        loop.close()
