"""Oneshots: the timeouts of asyncio waits (one shared deadline queue per duration)."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from actors._oneshot import Expired, Oneshot, oneshot

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
