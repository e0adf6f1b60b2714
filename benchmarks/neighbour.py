"""The blocked-neighbour workload (issue 14): actors beside a handler that blocks its loop.

World: the default ``ActorSystem()`` on uvloop (a worker loop per usable CPU; 2 at least,
since with one loop there is nowhere to go), with two actors pinned to worker 0: a hog,
whose handler blocks its loop with ``time.sleep`` when asked to, and a nest, which spawns
the responders. Children start on their parent's loop, unpinned: the responders start on
worker 0, beside the hog, free to move. The reference without evacuation has the nest spawn
them with ``placement=0`` instead, so they cannot.

One repetition of n asks: the nest spawns `RESPONDERS` fresh responders (an evacuated actor
stays on its new loop, so each repetition starts beside the hog again); the host task asks
them round-robin, one `Echo` every `ASK_EVERY` seconds on a fixed schedule (open loop: an
ask stuck behind the hog does not hold back the next one, so a stall shows in the samples
instead of thinning them), and times each ask from its send to its answer. Meanwhile it
asks the hog for blocks of `BLOCK_FOR` seconds (`block_starts`: the first at `FIRST_BLOCK`,
then about every `BLOCK_EVERY`, those that end within the asks' schedule); the unblocked
variant sends the same asks with ``Block(0.0)``. The responders are stopped afterwards.

What the blocked variant measures: the watchdog marks a loop blocked once one step has held
it for ``EVACUATE_AFTER`` (10 ms; the warning waits for ``blocked_threshold``, 0.1 s), which
it sees within one more half of that. Until then nothing moves: asks sent in that window
wait for it, 10-15 ms. Then the watchdog moves the responders whose run waits behind the
hog to a free loop, and senders move idle ones there when they wake them; they stay there.
So even when evacuation works, the p99 of a repetition counts how many of its asks landed
in the first detection window: with one ask per ms, 10-15 of them, against 1 % of n (the
p99.9 and the maximum show them). The p99 of the asks sent from the second block on
(``later``) leaves that window out: there, responders that were evacuated in the first
block no longer share the hog's loop.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import actors

from .common import REP_TIMEOUT, Echo, Setup
from .subject import ActorsDriver

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "ASK_EVERY",
    "BLOCK_EVERY",
    "BLOCK_FOR",
    "FIRST_BLOCK",
    "LATE",
    "RESPONDERS",
    "Beside",
    "NeighbourDriver",
    "block_starts",
)

ASK_EVERY: Final = 0.001
"""Seconds between two asks of the host's client (round-robin over the responders)."""

RESPONDERS: Final = 4
"""Responders spawned beside the hog for each repetition."""

BLOCK_FOR: Final = 0.2
"""Seconds one `Block` holds the hog's loop (twice the default ``blocked_threshold``)."""

BLOCK_EVERY: Final = 0.4
"""Seconds between the starts of two blocks, plus one `ASK_EVERY` (see `block_starts`)."""

FIRST_BLOCK: Final = 0.1
"""Seconds into a repetition when the first block starts (asks before it see a free loop)."""

LATE: Final = 0.01
"""An ask slower than this many seconds counts as late (the share of late asks is reported)."""


def block_starts(duration: float) -> list[float]:
    """When the blocks of a repetition of ``duration`` seconds start: those that fit in it.

    Each block starts one ask later in the round-robin than a plain `BLOCK_EVERY` would, so
    that the blocks do not all start just after the same responder's ask (the responder
    whose wake-up the loop handles right before the hog's is caught behind it).
    """
    starts: list[float] = []
    at = FIRST_BLOCK
    while at + BLOCK_FOR <= duration + 1e-9:
        starts.append(at)
        at += BLOCK_EVERY + ASK_EVERY
    return starts


class Block(actors.Request[float], frozen=True):
    """Hold the loop for ``seconds``; answer the seconds it took."""

    seconds: float


class Hog(actors.Actor[Block]):
    """A handler that blocks its loop: the footgun the watchdog and evacuation are for."""

    async def receive(self, message: Block) -> float:
        began = time.perf_counter()
        time.sleep(message.seconds)  # noqa: ASYNC251  # on purpose: the loop is held
        return time.perf_counter() - began


class Responder(actors.Actor[Echo]):
    """Answers every `Echo` with its number."""

    async def receive(self, message: Echo) -> int:
        return message.n


class Hatch(actors.Request["tuple[actors.ActorRef[Echo], ...]"], frozen=True):
    """Spawn ``k`` responders as children (beside the nest); ``pinned``: with placement=0."""

    k: int
    pinned: bool


class Nest(actors.Actor[Hatch]):
    """The responders' parent, pinned to worker 0: its children start there."""

    async def receive(self, message: Hatch) -> tuple[actors.ActorRef[Echo], ...]:
        placement = 0 if message.pinned else None
        return tuple([await self.spawn(Responder, placement=placement) for _ in range(message.k)])


@dataclass(frozen=True, slots=True)
class Beside:
    """What one repetition saw: each ask's round trip (ns), where the responders ended."""

    latencies: list[int]
    later: list[int]  # the round trips of the asks sent from the second block on
    blocked: float  # seconds the hog held its loop, over every block
    away: int  # responders on another loop than worker 0 at the end
    wrong: int  # asks answered with another number than their own


class NeighbourDriver(ActorsDriver):
    """`actors` for the blocked-neighbour workload; see the module docstring.

    ``block``: the hog blocks its loop (else it is asked for blocks of 0 s). ``pinned``:
    the responders are spawned with ``placement=0``, so nothing can evacuate them.
    """

    def __init__(self, *, block: bool, pinned: bool = False) -> None:
        super().__init__(use_uvloop=True, loops=None)
        self._block = block
        self._pinned_responders = pinned
        self._hog: actors.ActorRef[Block] | None = None
        self._nest: actors.ActorRef[Hatch] | None = None

    async def start(self, setup: Setup) -> None:
        system = actors.ActorSystem(use_uvloop=True, name="bench")
        if system.workers < 2:  # one usable CPU: no free loop to evacuate to
            system = actors.ActorSystem(workers=2, use_uvloop=True, name="bench")
        await system.start()
        self._system, self._setup = system, setup
        self._hog = await system.spawn(Hog, placement=0)
        self._nest = await system.spawn(Nest, placement=0)

    async def beside_blocked(self, n: int) -> Beside:
        """One repetition of ``n`` asks (see the module docstring)."""
        if self._hog is None or self._nest is None:
            raise RuntimeError("driver not started")
        hog = self._hog
        refs = await self._nest.ask(Hatch(RESPONDERS, self._pinned_responders))
        seconds = BLOCK_FOR if self._block else 0.0
        samples = array("q", bytes(8 * n))
        wrong = 0
        clock = time.perf_counter_ns
        starts = block_starts(n * ASK_EVERY)

        async def one(i: int, ref: actors.ActorRef[Echo]) -> None:
            nonlocal wrong
            began = clock()
            reply = await ref.ask(Echo(i), timeout=REP_TIMEOUT)
            samples[i] = clock() - began
            wrong += reply != i

        async def block(at: float) -> float:
            await _sleep_until(at)
            return await hog.ask(Block(seconds), timeout=REP_TIMEOUT)

        try:
            async with asyncio.TaskGroup() as group:
                start = time.perf_counter()
                blocks = [group.create_task(block(start + at)) for at in starts]
                for i in range(n):
                    await _sleep_until(start + i * ASK_EVERY)
                    group.create_task(one(i, refs[i % len(refs)]))
            away = sum(ref.statistics().loop != "0" for ref in refs)
        finally:
            await _stop(refs)
        latencies = samples.tolist()
        later = latencies[round(starts[1] / ASK_EVERY) :] if len(starts) > 1 else []
        blocked = sum(task.result() for task in blocks)
        return Beside(latencies, later, blocked, away, wrong)


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``deadline`` (at once if it has)."""
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def _stop(refs: Sequence[actors.ActorRef[Echo]]) -> None:
    await asyncio.gather(*(ref.stop() for ref in refs))
