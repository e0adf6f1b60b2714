"""How fast a client's disconnect cancels a chain of asks across loops and nodes (issue 18).

An HTTP request served by Starlette (uvicorn on 127.0.0.1) asks actor A (node a, loop 0),
which asks B (node a, loop 1), which asks C (node b, over a local nats-server). Each opts in
to `cancel_abandoned`; C waits forever. The client disconnects once C has started; the
endpoint notices the disconnect and cancels its ask, and the cancellation follows the chain:
A's handler, B's ask, B's handler, the remote ask, a CANCEL frame, C's handler. Every handler
notes when its cancellation arrived; a run's latency is the last note minus the disconnect.

    python -m benchmarks.cancel_chain [--runs N] [--url nats://...]

Prints the latency distribution (median, p90, max) of N runs; `docs/benchmarks.md` quotes it.
The asks have 30-s timeouts: a chain that waited for its deadline instead would show it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import actors
from actors.cluster import Nats, register_message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

__all__ = ("Chain", "chain_once", "cli", "main")

ASK_TIMEOUT = 30.0


@register_message(name="bench.cancel_chain.Dig")
class Dig(actors.Request[str], frozen=True):
    run: int


class Chain:
    """What one run's handlers noted, shared by the actors of both nodes (one process)."""

    def __init__(self) -> None:
        self.cancelled: dict[str, float] = {}
        self.finished: list[str] = []

    def cancel(self, name: str) -> None:
        self.cancelled[name] = time.monotonic()


class Link(actors.Actor[Dig]):
    """Asks ``next`` (or, the last one, waits forever), noting its cancellation."""

    cancel_abandoned = True

    def __init__(self, name: str, chain: Chain, downstream: actors.Ref[Dig] | None) -> None:
        self.label = name
        self.chain = chain
        self.downstream = downstream
        self.entered: Callable[[], None] | None = None

    async def receive(self, message: Dig) -> str:
        try:
            if self.entered is not None:
                self.entered()
            if self.downstream is None:
                await anyio.sleep_forever()
            else:
                await self.downstream.ask(message, timeout=ASK_TIMEOUT)
        except BaseException:
            self.chain.cancel(self.label)
            raise
        self.chain.finished.append(self.label)  # orphan work: must never happen here
        return self.label


def app(a: actors.Ref[Dig]) -> Starlette:
    async def dig(request: Request) -> JSONResponse:
        # Starlette does not cancel a handler whose client left: watch for the disconnect
        # and cancel the ask, which abandons it (and, down the chain, everything it asked).
        answer: str | None = None
        async with anyio.create_task_group() as group:

            async def disconnected() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                group.cancel_scope.cancel()

            group.start_soon(disconnected)
            answer = await a.ask(Dig(int(request.query_params["run"])), timeout=ASK_TIMEOUT)
            group.cancel_scope.cancel()
        if answer is None:  # the client left: nobody reads this (nginx's 499)
            return JSONResponse({"error": "client closed request"}, status_code=499)
        return JSONResponse({"answer": answer})

    return Starlette(routes=[Route("/dig", dig)])


async def chain_once(
    url: str, prefix: str, run: int, serve: Callable[[Starlette], Awaitable[Any]] | None = None
) -> tuple[float, Chain, dict[str, actors.ActorMetrics]]:
    """One run: the seconds from the disconnect to the last handler's cancellation, what the
    handlers noted, and the three actors' metrics after it."""
    chain = Chain()
    c_entered = anyio.Event()
    cluster_a = Nats(url, node="a", prefix=prefix)
    cluster_b = Nats(url, node="b", prefix=prefix)
    async with (
        actors.ActorSystem(workers=2, name="a", cluster=cluster_a) as system_a,
        actors.ActorSystem(workers=1, name="b", cluster=cluster_b) as system_b,
    ):
        wake = _waker(c_entered)
        await system_b.spawn(lambda: _entering(Link("c", chain, None), wake), name="c", public=True)
        c = await system_a.lookup_remote("c", Dig)
        b = await system_a.spawn(lambda: Link("b", chain, c), placement=1)
        a = await system_a.spawn(lambda: Link("a", chain, b), placement=0)
        config = uvicorn.Config(
            app(a), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        disconnected = 0.0
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve)
            while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
                await anyio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            async with httpx.AsyncClient(timeout=ASK_TIMEOUT) as http:
                with anyio.CancelScope() as request_scope:

                    async def leave_once_c_works() -> None:
                        await c_entered.wait()
                        request_scope.cancel()  # httpx closes the connection: a disconnect

                    async with anyio.create_task_group() as client:
                        client.start_soon(leave_once_c_works)
                        await http.get(f"http://127.0.0.1:{port}/dig", params={"run": run})
                disconnected = time.monotonic()
            with anyio.fail_after(ASK_TIMEOUT / 2):
                while len(chain.cancelled) < 3:  # noqa: ASYNC110 - noted by three actors
                    await anyio.sleep(0.001)
            server.should_exit = True
        figures = {m.path: m for m in [*system_a.metrics().actors, *system_b.metrics().actors]}
        metrics = {name: figures[ref.path] for name, ref in (("a", a), ("b", b))}
        metrics["c"] = figures["/user/c"]
    latency = max(chain.cancelled.values()) - disconnected
    return latency, chain, metrics


def _waker(event: anyio.Event) -> Callable[[], None]:
    """A thread-safe setter of ``event``, which belongs to the calling (host) loop."""
    import asyncio

    loop = asyncio.get_running_loop()

    def wake() -> None:
        loop.call_soon_threadsafe(event.set)

    return wake


def _entering(link: Link, entered: Callable[[], None]) -> Link:
    link.entered = entered
    return link


async def main_async(url: str | None, runs: int) -> None:
    from benchmarks.cluster import nats_server

    latencies: list[float] = []
    if url is None:
        with nats_server() as started:
            for run in range(runs):
                latency, _, _ = await chain_once(started, f"cc{run}", run)
                latencies.append(latency)
    else:
        for run in range(runs):
            latency, _, _ = await chain_once(url, f"cc{run}", run)
            latencies.append(latency)
    ms = sorted(latency * 1000 for latency in latencies)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    print(
        f"disconnect -> every handler cancelled, {runs} runs: "
        f"median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms"
    )


def cli(description: str, run: Callable[[str | None, int], Awaitable[None]], runs: int) -> None:
    """The command line of a latency benchmark: ``--runs N``, ``--url nats://...``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--url", default=None, help="a running nats-server (default: start one)")
    args = parser.parse_args()
    anyio.run(run, args.url, args.runs, backend="asyncio")


def main() -> None:
    cli("disconnect-to-cancellation latency", main_async, 20)


if __name__ == "__main__":
    main()
