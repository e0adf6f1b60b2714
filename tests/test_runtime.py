"""The worker loops (`actors._runtime`): only the system stops one.

Catalogue IDs (RELIABILITY.md) appear in test names where a test implements one. F11 asks what
happens when a worker's loop dies under its actors: here, code running on the loop stops it
(`loop.stop()`) or raises SystemExit or KeyboardInterrupt out of it, and the loop resumes,
with every actor on it, instead of stranding them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

import actors
from actors import Actor, ActorRef, ActorSystem

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

pytestmark = pytest.mark.anyio

LOOP_KINDS = [pytest.param(False, id="asyncio-workers"), pytest.param(True, id="uvloop-workers")]


class Stop(actors.Request[int], frozen=True):
    """Stop the loop the actor runs on, then answer with the count of messages handled."""


class Raise(actors.Request[int], frozen=True):
    """Start a task on the actor's loop that raises ``error`` out of the loop."""

    error: str  # "SystemExit" or "KeyboardInterrupt"


class Ping(actors.Request[int], frozen=True):
    """Answer with the count of messages handled."""


class Tell(msgspec.Struct, frozen=True):
    """A tell, counted; with ``stop``, it stops the loop first, as `Stop` does."""

    stop: bool = False


def _raise(name: str) -> None:
    raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[name]("injected")


class Saboteur(Actor[Stop | Raise | Ping | Tell]):
    """Does to its own loop what a careless handler might."""

    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: Stop | Raise | Ping | Tell) -> int | None:
        self.handled += 1
        if type(message) is Stop or (type(message) is Tell and message.stop):
            asyncio.get_running_loop().stop()
            # The loop stops at the end of this iteration: still answered, after it resumes.
            await asyncio.sleep(0)
        elif type(message) is Raise:
            asyncio.get_running_loop().call_soon(_raise, message.error)
        return None if type(message) is Tell else self.handled


SaboteurRef = ActorRef[Stop | Raise | Ping | Tell]


def _resumed(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "it resumes" in r.getMessage()]


@contextlib.asynccontextmanager
async def _saboteur_and_neighbour(
    use_uvloop: bool,
) -> AsyncGenerator[tuple[SaboteurRef, SaboteurRef]]:
    # Two actors on one worker loop, in a system that must shut down in time.
    with anyio.fail_after(20):
        async with ActorSystem(workers=1, use_uvloop=use_uvloop) as system:
            yield await system.spawn(Saboteur), await system.spawn(Saboteur)


@pytest.mark.parametrize("use_uvloop", LOOP_KINDS)
async def test_F11_a_handler_stopping_its_loop_does_not_strand_its_actors(
    use_uvloop: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="actors")
    async with _saboteur_and_neighbour(use_uvloop) as (saboteur, neighbour):
        for round_ in range(1, 4):
            # Tells queued behind the stop are handled after the loop resumes, in order.
            assert await saboteur.ask(Stop()) == 2 * round_ - 1
            saboteur.try_send(Tell())
            assert await neighbour.ask(Ping()) == round_
        assert await saboteur.ask(Ping()) == 7
        # Shutdown was not held up: every actor on the loop ended, and the loop with them.
        assert [r.getMessage().split(" was ")[0] for r in _resumed(caplog)] == ["worker loop 0"] * 3
        assert "loop.stop()" in _resumed(caplog)[0].getMessage()


@pytest.mark.parametrize("use_uvloop", LOOP_KINDS)
@pytest.mark.parametrize("error", ["SystemExit", "KeyboardInterrupt"])
async def test_F11_a_system_exit_out_of_a_loop_callback_does_not_end_the_loop(
    use_uvloop: bool, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="actors")
    async with _saboteur_and_neighbour(use_uvloop) as (saboteur, neighbour):
        assert await saboteur.ask(Raise(error)) == 1
        for _ in range(5):
            saboteur.try_send(Tell())
        assert await saboteur.ask(Ping()) == 7
        assert await neighbour.ask(Ping()) == 1
        [record] = _resumed(caplog)
        assert record.exc_info is not None
        raised = record.exc_info[1]
        assert type(raised).__name__ == error
        assert error in record.getMessage()


@pytest.mark.parametrize("use_uvloop", LOOP_KINDS)
async def test_F11_shutdown_racing_loop_stops_ends_cleanly(
    use_uvloop: bool, caplog: pytest.LogCaptureFixture
) -> None:
    # Handlers stop their loop over and over while the system shuts down: the shutdown's own
    # stop must win once it is asked for, and the loop's clean-up must not be stopped by it.
    caplog.set_level(logging.ERROR, logger="actors")
    rng = random.Random(11)
    for _ in range(5):
        with anyio.fail_after(20):
            system = ActorSystem(workers=2, use_uvloop=use_uvloop)
            await system.start()
            saboteurs = [await system.spawn(Saboteur, placement=i % 2) for i in range(4)]
            for saboteur in saboteurs:
                for _ in range(rng.randrange(1, 30)):
                    saboteur.try_send(Tell(stop=rng.random() < 0.5))
            await system.shutdown()
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]
