"""The driver for `actors` itself, the system under test.

World: ``ActorSystem(workers=2)`` (uvloop or plain asyncio workers), run from a host loop
started by `actors.run` with the same loop kind. The counting actor lives on worker 0.

* same loop: the producer (or the asker) is an actor on worker 0 as well, so every send and
  every ask stays on one loop. The host only hands it the job and gets the result back.
  With ``host=True`` the counter is spawned with ``placement="host"`` instead, and the host
  task itself is the producer/asker: the single-loop shape of the ``asyncio.Queue`` peer.
* cross loop: the producers (or the asker) are actors on the other worker loops (with two
  workers: all on worker 1), so every message crosses threads.

Everything uses the public API with its defaults: ``await ref.send(...)``, ``await
ref.ask(...)`` with the default ask timeout, the default mailbox capacity.
"""

from __future__ import annotations

import asyncio
import time
from array import array
from typing import TYPE_CHECKING, Final

import msgspec

import actors

from .common import (
    CAPACITY,
    REP_TIMEOUT,
    Collect,
    CounterState,
    Echo,
    Inc,
    Place,
    Tally,
    check_echo,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("WORKERS", "ActorsDriver")

WORKERS: Final = 2
"""Worker loops of the benchmarked system (the reference machine has two cores)."""

CounterRef = actors.ActorRef[Inc | Collect | Echo]


class Counter(actors.Actor[Inc | Collect | Echo]):
    """The counting actor."""

    def __init__(self) -> None:
        self.state = CounterState()

    async def receive(self, message: Inc | Collect | Echo) -> Tally | int | None:
        return self.state.handle(message)


class Produce(msgspec.Struct, frozen=True):
    """Send ``Inc(0) .. Inc(n - 1)`` to ``target``; with ``collect``, then return its tally."""

    target: actors.ActorRef[Inc | Collect | Echo]
    n: int
    collect: bool


class Probe(msgspec.Struct, frozen=True):
    """Ask ``target`` ``k`` Echoes in a row; return the round trips (ns, array "q" bytes)."""

    target: actors.ActorRef[Inc | Collect | Echo]
    k: int


class Producer(actors.Actor[Produce | Probe]):
    """Runs a producer or an asker job on its own loop."""

    async def receive(self, message: Produce | Probe) -> Tally | bytes | None:
        if type(message) is Produce:
            return await produce(message.target, message.n, collect=message.collect)
        assert type(message) is Probe
        return await probe(message.target, message.k)


async def produce(target: CounterRef, n: int, *, collect: bool) -> Tally | None:
    send = target.send
    for i in range(n):
        await send(Inc(i))
    if not collect:
        return None
    return await target.ask(Collect(), timeout=REP_TIMEOUT)


async def probe(target: CounterRef, k: int) -> bytes:
    ask = target.ask
    clock = time.perf_counter_ns
    samples = array("q", bytes(8 * k))
    for i in range(k):
        message = Echo(i)
        start = clock()
        reply = await ask(message)
        samples[i] = clock() - start
        check_echo(reply, i)
    return samples.tobytes()


class ActorsDriver:
    """`actors` on uvloop or plain asyncio; see the module docstring for the placements."""

    def __init__(self, *, use_uvloop: bool, host: bool = False) -> None:
        self._use_uvloop = use_uvloop
        self._host = host
        self._system: actors.ActorSystem | None = None
        self._counter: CounterRef | None = None
        self._producers: list[actors.ActorRef[Produce | Probe]] = []
        self._place: Place = "same"

    async def start(self, place: Place, producers: int) -> None:
        if self._host and place != "same":
            raise ValueError("the host placement only has a same-loop variant")
        system = actors.ActorSystem(workers=WORKERS, use_uvloop=self._use_uvloop, name="bench")
        await system.start()
        self._system, self._place = system, place
        home = "host" if self._host else 0
        self._counter = await system.spawn(Counter, placement=home, capacity=CAPACITY)
        if self._host:
            return
        for i in range(producers):
            where = 0 if place == "same" else 1 + i % (WORKERS - 1)
            self._producers.append(await system.spawn(Producer, placement=where))

    async def close(self) -> None:
        if self._system is not None:
            await self._system.shutdown()

    async def tell(self, counts: Sequence[int]) -> Tally:
        counter = self._target()
        if self._place == "same":
            (n,) = counts
            if self._host:
                tally = await produce(counter, n, collect=True)
            else:
                tally = await self._producers[0].ask(
                    Produce(counter, n, collect=True), timeout=REP_TIMEOUT
                )
            assert tally is not None
            return tally
        jobs = [
            producer.ask(Produce(counter, n, collect=False), timeout=REP_TIMEOUT)
            for producer, n in zip(self._producers, counts, strict=True)
        ]
        await asyncio.gather(*jobs)
        return await counter.ask(Collect(), timeout=REP_TIMEOUT)

    async def ask_latencies(self, k: int) -> list[int]:
        counter = self._target()
        if self._host:
            data = await probe(counter, k)
        else:
            data = await self._producers[0].ask(Probe(counter, k), timeout=REP_TIMEOUT)
        return array("q", data).tolist()

    def _target(self) -> CounterRef:
        if self._counter is None:
            raise RuntimeError("driver not started")
        return self._counter
