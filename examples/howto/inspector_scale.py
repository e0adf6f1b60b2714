"""How much the live inspector costs: open time with many actors, and throughput overhead.

    python3 dev.py run examples/howto/inspector_scale.py                 # 100,000 actors
    python3 dev.py run examples/howto/inspector_scale.py --actors 2000 --rounds 1

1. **Open time.** Spawns ``--actors`` actors under one parent (the worst case for paging:
   one node with every actor below it), serves the inspector with uvicorn on 127.0.0.1
   and times what a browser does to open the page: the page, ``api/meta``,
   ``api/overview`` (a census of every actor) and the first event of the stream with the
   root and the big parent expanded (a page of 100 children each).
2. **Overhead.** A same-loop tell load (a driver actor telling a sink on its own loop, then
   asking it for the count) runs ``--rounds`` times without and with an open event stream,
   alternately; the medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio
import httpx
import msgspec
import uvicorn

import actors
import actors.inspector


class Hit(msgspec.Struct, frozen=True):
    pass


class Count(actors.Request[int], frozen=True):
    pass


class Run(actors.Request[int], frozen=True):
    n: int


class Sink(actors.Actor[Hit | Count]):
    def __init__(self) -> None:
        self.hits = 0

    async def receive(self, message: Hit | Count) -> int | None:
        if isinstance(message, Count):
            return self.hits
        self.hits += 1
        return None


class Driver(actors.Actor[Run]):
    def __init__(self, sink: actors.ActorRef[Hit | Count]) -> None:
        self.sink = sink

    async def receive(self, message: Run) -> int:
        for _ in range(message.n):
            await self.sink.send(Hit())
        return await self.sink.ask(Count())


class Leaf(actors.Actor[Hit]):
    async def receive(self, message: Hit) -> None:
        pass


class Many(actors.Actor[Hit]):
    def __init__(self, count: int) -> None:
        self.count = count

    async def on_start(self) -> None:
        for i in range(self.count):
            await self.spawn(Leaf, name=f"leaf-{i}")

    async def receive(self, message: Hit) -> None:
        pass


async def first_event(http: httpx.AsyncClient, query: str) -> bytes:
    async with http.stream("GET", f"api/stream?{query}") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                return line.encode()
    raise RuntimeError("the stream ended before its first event")


async def open_page(url: str) -> float:
    """Seconds a browser's first requests take: page, meta, overview, first event."""
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as http:
        (await http.get("")).raise_for_status()
        (await http.get("api/meta")).raise_for_status()
        overview = (await http.get("api/overview")).json()
        root = overview["nodes"][0]["root"]
        await first_event(http, f"watch={root}:0:100&watch={root}/many:0:100")
    return time.perf_counter() - started


async def tell_load(driver: actors.ActorRef[Run], n: int) -> float:
    """Messages per second of one same-loop tell burst of ``n``."""
    started = time.perf_counter()
    assert await driver.ask(Run(n), timeout=120.0) >= n
    return n / (time.perf_counter() - started)


async def main(count: int, rounds: int, messages: int) -> None:
    async with actors.ActorSystem(workers=2, name="scale") as system:
        spawned = time.perf_counter()
        await system.spawn(lambda: Many(count), name="many")
        print(f"spawned {count:,} actors in {time.perf_counter() - spawned:.1f} s")
        config = uvicorn.Config(
            actors.inspector.app(system), host="127.0.0.1", port=0, log_level="warning"
        )
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve)
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
                    await anyio.sleep(0.01)
            url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"

            cold = await open_page(url)
            warm = await open_page(url)
            print(f"open the page: {cold:.2f} s (first), {warm:.2f} s (again)")

            sink = await system.spawn(Sink, placement=0)
            driver = await system.spawn(lambda: Driver(sink), placement=0)
            await tell_load(driver, messages // 10)  # warm up
            without: list[float] = []
            with_stream: list[float] = []
            for _ in range(rounds):
                without.append(await tell_load(driver, messages))
                async with (
                    httpx.AsyncClient(base_url=url, timeout=30.0) as http,
                    anyio.create_task_group() as watching,
                ):
                    flowing = anyio.Event()

                    async def watch(
                        http: httpx.AsyncClient = http, flowing: anyio.Event = flowing
                    ) -> None:
                        query = "watch=/user:0:100&watch=/user/many:0:100"
                        async with http.stream("GET", f"api/stream?{query}") as stream:
                            async for line in stream.aiter_lines():
                                if line.startswith("data: "):
                                    flowing.set()  # the load starts once events flow

                    watching.start_soon(watch)
                    await flowing.wait()
                    with_stream.append(await tell_load(driver, messages))
                    watching.cancel_scope.cancel()
            base, inspected = statistics.median(without), statistics.median(with_stream)
            print(
                f"same-loop tells: {base:,.0f} msg/s without, {inspected:,.0f} msg/s with an "
                f"open event stream ({(base - inspected) / base:+.1%} cost, median of {rounds})"
            )
            server.should_exit = True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The inspector's open time and overhead.")
    parser.add_argument("--actors", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=3_000_000, help="tells per round")
    options = parser.parse_args()
    actors.run(main, options.actors, options.rounds, options.messages)
