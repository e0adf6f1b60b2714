"""The blocked-loop watchdog (`actors._watchdog`) against a handler that holds the GIL.

Catalogue ID (RELIABILITY.md) F10: a handler that blocks its loop. The other watchdog tests
(tests/test_supervision.py, tests/test_sync_handlers.py, tests/test_placement.py) block with
sleeps and thread events, which release the GIL. A pure-Python busy loop does not: the
watchdog's thread runs only when the interpreter makes the busy thread hand the GIL over
(every ``sys.getswitchinterval()``, 5 ms by default). It must still see the block while it
lasts, on both kinds of worker loop.
"""

from __future__ import annotations

import logging
import time

import anyio
import pytest
from _support import WAIT, wait_until
from test_stress import figures

import actors
from actors import Actor, ActorSystem

pytestmark = pytest.mark.anyio

BUSY = 0.8
"""Seconds the handler holds its loop (and the GIL, but for the forced switches)."""

THRESHOLD = 0.1


class Spin(actors.Request[tuple[float, float]], frozen=True):
    """Busy-loop for `BUSY` seconds; answer with when the loop began and ended."""


class Spinner(Actor[Spin]):
    def receive(self, message: Spin) -> tuple[float, float]:
        began = time.time()
        end = time.perf_counter() + BUSY
        while time.perf_counter() < end:  # no call that releases the GIL
            pass
        return began, time.time()


# The watchdog and the handler run inside the system: one host backend suffices.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio-workers", "uvloop-workers"])
async def test_F10_a_handler_holding_the_gil_is_reported_while_it_blocks(
    use_uvloop: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    async with ActorSystem(workers=1, blocked_threshold=THRESHOLD, use_uvloop=use_uvloop) as system:
        spinner = await system.spawn(Spinner, name="spinner")
        with anyio.fail_after(WAIT):
            began, ended = await spinner.ask(Spin())
            await wait_until(lambda: "was blocked for" in caplog.text)
    reports = [r for r in caplog.records if "blocked for" in r.getMessage()]
    assert [("has been" in r.getMessage(), "was blocked" in r.getMessage()) for r in reports] == [
        (True, False),
        (False, True),
    ]
    during, after = reports
    assert during.__dict__["actor"] == "/user/spinner"
    assert during.__dict__["message_type"] == "Spin"
    # Seen while the block lasted, not only once it was over; then its end.
    assert began + THRESHOLD <= during.created < ended <= after.created
    figures(
        "F10",
        workers="uvloop" if use_uvloop else "asyncio",
        threshold=THRESHOLD,
        detected_after=round(during.created - began, 3),
        blocked=round(ended - began, 3),
    )
