"""How-to: blocking calls and CPU-bound work inside actors.

Run it with ``python3 dev.py run examples/howto/blocking.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time

import anyio

import actors


# --8<-- [start:thread]
def fetch_rate(currency: str) -> float:
    """Stands for a blocking call: a synchronous database driver or HTTP client."""
    time.sleep(0.05)
    return {"EUR": 1.08, "GBP": 1.27}.get(currency, 1.0)


class Rate(actors.Request[float], frozen=True):
    currency: str


class Rates(actors.Actor[Rate]):
    async def receive(self, message: Rate) -> float:
        # Runs in a thread of anyio's pool; this actor's loop keeps serving the others.
        return await self.run_blocking(fetch_rate, message.currency)


# --8<-- [end:thread]


# --8<-- [start:process]
def count_primes(limit: int) -> int:
    """Pure-Python CPU work: under the GIL, threads would only take turns at it."""
    sieve = bytearray([1]) * limit
    sieve[:2] = b"\0\0"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return sum(sieve)


class Primes(actors.Request[int], frozen=True):
    limit: int


class Sieve(actors.Actor[Primes]):
    def __init__(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        self.pool = pool  # shared by every Sieve: an executor is safe to use from any thread

    async def receive(self, message: Primes) -> int:
        # Handlers always run on asyncio loops, so asyncio's executor API is available.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, count_primes, message.limit)


# --8<-- [end:process]


# --8<-- [start:main]
async def main() -> None:
    # "spawn", not "fork": forking a process that runs threads (the worker loops) is unsafe.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        async with actors.ActorSystem(workers=2) as system:
            rates = await system.spawn(Rates, name="rates")
            sieves = [await system.spawn(lambda: Sieve(pool)) for _ in range(2)]

            print("EUR rate:", await rates.ask(Rate("EUR")))
            results: dict[int, int] = {}

            async def primes(sieve: actors.ActorRef[Primes], limit: int) -> None:
                results[limit] = await sieve.ask(Primes(limit), timeout=60)

            async with anyio.create_task_group() as group:  # both sieves work in parallel
                for sieve, limit in zip(sieves, (100_000, 200_000), strict=True):
                    group.start_soon(primes, sieve, limit)
            for limit, count in sorted(results.items()):
                print(f"primes below {limit:,}: {count:,}")


if __name__ == "__main__":  # required with "spawn": the pool's processes import this file
    actors.run(main)
# --8<-- [end:main]
