"""Oneshots: the timeouts of asyncio waits (one shared deadline queue per duration); latches."""

from __future__ import annotations

import asyncio
import threading
import time

import anyio
import pytest

from actors._oneshot import Expired, Latch, Oneshot, oneshot

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
