"""An actor's life in instructions: ``k`` lives in one process, to be counted by callgrind.

Run (the count per life is the difference of two runs, divided by ``k``)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.life_cost 3000
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.life_cost 0

The lives are the bench's own (`benchmarks.subject.lives`: spawn, one message, the actor
stops itself, the spawner joins it), spawned from an actor on worker 0, after 50 lives of
warm-up and with the garbage collector off (a life leaves no garbage: docs/benchmarks.md,
"The third round"). ``--queue`` lives the `asyncio.Queue` actor's lives instead, on uvloop.
The watchdog is off: its thread wakes by the clock, which under valgrind moves the count of
the same code between runs. Run each tree once before counting it: the first run of changed
code compiles its modules, which would fall into one of the two runs only.

``--fib N`` runs ``k`` Savina Fibonacci programs of size ``N`` instead (synchronous handlers,
one worker, after one run of warm-up), with the collector on and a ``gc.collect()`` at the
end counted in, so that garbage left to the collector is paid for: divide by ``k`` times the
program's actors (`benchmarks.savina.fibonacci.calls`; 1,219 for fib(14)).
"""

from __future__ import annotations

import argparse
import asyncio
import gc

import uvloop

import actors

from .peers.queue_actor import _lives as queue_lives  # pyright: ignore[reportPrivateUsage]
from .portable import START
from .savina.fibonacci import PROGRAM as FIBONACCI
from .subject import Lives, Producer, _Platform  # pyright: ignore[reportPrivateUsage]

WARM_UP = 50


async def live(k: int, sync: bool) -> None:
    system = actors.ActorSystem(
        workers=1, use_uvloop=True, name="bench", tracing=False, blocked_threshold=None
    )
    await system.start()
    try:
        producer = await system.spawn(Producer, placement=0)
        await producer.ask(Lives(WARM_UP, sync), timeout=None)
        # timeout=None: under valgrind the lives are slow, and every one must complete.
        await producer.ask(Lives(k, sync), timeout=None)
    finally:
        await system.shutdown()


async def fibonacci(k: int, n: int) -> None:
    system = actors.ActorSystem(
        workers=1, use_uvloop=True, name="bench", tracing=False, blocked_threshold=None
    )
    await system.start()
    try:
        for _ in range(1 + k):  # the first: warm-up
            platform = _Platform(system, lambda: None, sync=True)
            main = await platform.spawn(FIBONACCI.main, (n,))
            await main.send(START)
            result = await asyncio.wrap_future(platform.outcome.future)
            assert result == FIBONACCI.expected(n), result
    finally:
        await system.shutdown()
    gc.collect()


async def live_queue(k: int) -> None:
    await queue_lives(WARM_UP)
    await queue_lives(k)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("k", type=int, help="lives to count (0: the baseline)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--async", dest="sync", action="store_false", help="`async def receive`")
    kind.add_argument("--queue", action="store_true", help="the asyncio.Queue actor's lives")
    kind.add_argument("--fib", type=int, metavar="N", help="k Fibonacci programs of size N")
    opts = parser.parse_args()
    if opts.fib is not None:
        asyncio.run(fibonacci(opts.k, opts.fib))
        raise SystemExit
    gc.disable()
    if opts.queue:
        uvloop.run(live_queue(opts.k))
    else:
        asyncio.run(live(opts.k, opts.sync))
