"""The workloads, the implementations, and one repetition of a workload on a driver.

Every repetition checks its own result (`CheckFailed` when wrong). `benchmarks.runner`
decides the sizes (`calibrate`, or a fixed size scaled to the implementation's speed) and
the order of the repetitions.
"""

from __future__ import annotations

import fnmatch
import gc
import importlib.util
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, cast

from .common import CAPACITY, CheckFailed, Place, RssSampler, Setup, check_tally, percentile
from .neighbour import LATE, NeighbourDriver
from .peers import (
    BareDriver,
    CallbackDriver,
    PykkaDriver,
    QueueDriver,
    ThespianDriver,
    XoscarDriver,
)
from .savina import PROGRAMS, Program
from .subject import ActorsDriver

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .common import (
        Driver,
        HostSpawnDriver,
        LifeDriver,
        PairDriver,
        StreamDriver,
        UnitsDriver,
    )

__all__ = (
    "BLOCKED",
    "BLOCKED_PINNED",
    "DEFAULT",
    "FULL",
    "IMPLEMENTATIONS",
    "MULTILOOP_LOOPS",
    "MULTILOOP_UNITS",
    "QUICK",
    "SYNC",
    "UNBLOCKED",
    "WORKLOADS",
    "CaseResult",
    "Implementation",
    "Rep",
    "Settings",
    "Workload",
    "calibrate",
    "measure_once",
    "size_limits",
)

Kind = Literal[
    "tell",
    "ask",
    "pingpong",
    "program",
    "spawn",
    "spawn-host",
    "life",
    "overload",
    "memory",
    "scale",
    "multiloop",
    "blocked",
    "stream",
]
Group = Literal["micro", "savina", "resources"]


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    kind: Kind
    place: Place = "same"
    producers: int = 1
    program: Program | None = None
    units: int = 0  # multiloop: the independent producer->counter pairs

    @property
    def group(self) -> Group:
        if self.kind == "program":
            return "savina"
        if self.kind in ("memory", "scale", "overload", "spawn", "spawn-host", "life"):
            return "resources"
        return "micro"

    def setup(self) -> Setup:
        return Setup(
            self.place,
            self.producers,
            slow=self.kind == "overload",
            units=self.units,
            pair=self.kind == "pingpong",
        )


FAN_IN: Final = 64

STREAM_WINDOW: Final = 16
"""Items in flight in the stream workloads (`actors.DEFAULT_WINDOW`; the queue's maxsize)."""

MULTILOOP_UNITS: Final = 4
"""Independent producer->counter pairs of the multiloop workload, the same for 1, 2 and 4 loops."""

MULTILOOP_LOOPS: Final = (1, 2, 4)

WORKLOADS: Final = (
    Workload("tell-same", "tell throughput, producer on the counter's loop", "tell"),
    Workload("tell-cross-1", "tell throughput, 1 producer on another loop", "tell", "cross"),
    Workload("tell-cross-4", "tell throughput, 4 producers on another loop", "tell", "cross", 4),
    Workload("tell-cross-8", "tell throughput, 8 producers on another loop", "tell", "cross", 8),
    Workload(
        "fan-in",
        f"tell throughput, {FAN_IN} producers on the counter's loop",
        "tell",
        "same",
        FAN_IN,
    ),
    Workload("ask-same", "ask round trip, asker on the counter's loop", "ask"),
    Workload("ask-cross", "ask round trip, asker on another loop", "ask", "cross"),
    Workload(
        "stream-same",
        f"streamed reply: items/s of one stream (window {STREAM_WINDOW}), reader on the "
        "producer's loop",
        "stream",
    ),
    Workload(
        "stream-cross",
        f"streamed reply: items/s of one stream (window {STREAM_WINDOW}), reader on another loop",
        "stream",
        "cross",
    ),
    Workload(
        "multiloop",
        "independent work on N loops: total throughput vs one loop",
        "multiloop",
        units=MULTILOOP_UNITS,
    ),
    Workload(
        "pingpong-app",
        "ping-pong of two actors the application spawned (top-level, default placement): "
        "n round trips, 2n messages",
        "pingpong",
    ),
    *(Workload(f"savina-{p.name}", p.title, "program", program=p) for p in PROGRAMS),
    Workload("spawn", "spawn rate: idle actors spawned one after another, same loop", "spawn"),
    Workload(
        "spawn-host",
        "spawn rate from the host: idle actors spawned one after another by the application's "
        "own task (asyncio.Queue actor: asyncio.create_task on that loop)",
        "spawn-host",
    ),
    Workload(
        "life",
        "an actor's whole life, k times one after another on one loop: spawn, one message, "
        "the actor stops itself; until it has ended (garbage collector on)",
        "life",
    ),
    Workload(
        "overload",
        "4 producers on another loop, a consumer ~20x slower than them",
        "overload",
        "cross",
        4,
    ),
    Workload(
        "blocked-neighbour",
        "ask round trips to actors that start on a loop whose hog actor blocks it "
        "(time.sleep), one ask per ms",
        "blocked",
    ),
    Workload("memory", "memory per idle actor (tracemalloc and RSS, own process)", "memory"),
    Workload("scale", "throughput and memory as the number of busy actors grows", "scale"),
)

MICRO_SAME: Final = ("tell-same", "ask-same", "fan-in")
MICRO: Final = (*MICRO_SAME, "tell-cross-*", "ask-cross")
RESOURCES: Final = ("spawn", "spawn-host", "overload", "memory")

SYNC: Final = "actors-uvloop-sync"
"""actors-uvloop with synchronous handlers (``def receive``) where the workload allows."""

DEFAULT: Final = "actors-uvloop-default"
"""The default `ActorSystem()`: one loop per usable CPU, actors placed (and moved) by default."""

BLOCKED: Final = "actors-uvloop-default-blocked"
"""blocked-neighbour: the default `ActorSystem()`, the hog blocking the responders' loop."""

UNBLOCKED: Final = "actors-uvloop-default-unblocked"
"""blocked-neighbour: the same, the hog never blocking (the baseline of the target)."""

BLOCKED_PINNED: Final = "actors-uvloop-default-blocked-pinned"
"""blocked-neighbour: the hog blocking, the responders pinned beside it (no evacuation)."""


@dataclass(frozen=True)
class Implementation:
    name: str
    description: str
    host_uvloop: bool  # the kind of host loop `actors.run` starts for this implementation
    make: Callable[[], Driver]
    workloads: tuple[str, ...]  # shell patterns of the workloads it runs
    requires: tuple[str, ...] = ()  # importable modules it needs
    baseline: str | None = None  # for a peer: the `actors` implementation it is compared with
    scale: float = 1.0  # speed relative to `actors`: fixed-size workloads are scaled by it
    note: str | None = None  # shown when its rows are skipped

    def runs(self, workload: str) -> bool:
        return any(fnmatch.fnmatchcase(workload, p) for p in self.workloads)

    def missing(self) -> str | None:
        """Why it cannot run here, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install '.[bench]')"
        return None


IMPLEMENTATIONS: Final = (
    Implementation(
        "actors-uvloop",
        "actors on uvloop: ActorSystem(workers=1), 2 for cross-loop cases",
        True,
        lambda: ActorsDriver(use_uvloop=True),
        (*MICRO, "stream-*", "pingpong-app", "multiloop", "savina-*", *RESOURCES, "life", "scale"),
        ("uvloop",),
    ),
    Implementation(
        SYNC,
        "actors on uvloop with synchronous handlers (def receive): the counter, the life "
        "case's actors, and the Savina behaviours with the waiting taken out "
        "(benchmarks/synchronous.py: try_send, spawn_soon); otherwise as actors-uvloop",
        True,
        lambda: ActorsDriver(use_uvloop=True, sync=True),
        (*MICRO_SAME, "savina-*", "life"),
        ("uvloop",),
    ),
    Implementation(
        "actors-uvloop-traced",
        "actors-uvloop with ActorSystem(tracing=provider): the OpenTelemetry SDK records a "
        "span per message (two per ask) and a batch processor discards them "
        "(benchmarks/tracing_cost.py)",
        True,
        lambda: ActorsDriver(use_uvloop=True, traced=True),
        ("tell-same", "ask-same"),
        ("uvloop", "opentelemetry.sdk"),
    ),
    Implementation(
        "actors-asyncio",
        "actors on plain asyncio: ActorSystem(use_uvloop=False)",
        False,
        lambda: ActorsDriver(use_uvloop=False),
        (*MICRO, "stream-*", "savina-*", "spawn"),
    ),
    Implementation(
        "actors-uvloop-on-loop",
        "reference for spawn-host: the same spawns made by an actor on the loop the new "
        "actors live on (the spawn case's path), in the same run",
        True,
        lambda: ActorsDriver(use_uvloop=True, spawn_on_loop=True),
        ("spawn-host",),
        ("uvloop",),
        baseline="actors-uvloop",
    ),
    Implementation(
        "actors-host-uvloop",
        'actors: counter spawned with placement="host" in actors.run (uvloop); host task sends',
        True,
        lambda: ActorsDriver(use_uvloop=True, host=True),
        ("tell-same", "ask-same"),
        ("uvloop",),
    ),
    Implementation(
        DEFAULT,
        "actors on uvloop, the default ActorSystem() (one worker loop per usable CPU): "
        "Savina actors and the ping-pong pair placed by default (round-robin, not pinned), "
        "so co-location can move partners onto one loop",
        True,
        lambda: ActorsDriver(use_uvloop=True, loops=None),
        ("savina-*", "pingpong-app"),
        ("uvloop",),
    ),
    Implementation(
        "actors-uvloop-2loops",
        "actors on uvloop, ActorSystem(workers=2): Savina actors and the ping-pong pair "
        "pinned round-robin over 2 loops (placement=i % 2: no co-location); multiloop units "
        "pinned evenly (placement=i % 2)",
        True,
        lambda: ActorsDriver(use_uvloop=True, loops=2, pinned=True),
        ("savina-*", "pingpong-app", "multiloop"),
        ("uvloop",),
    ),
    Implementation(
        "actors-uvloop-4loops",
        "actors on uvloop, ActorSystem(workers=4): Savina actors pinned round-robin over "
        "4 loops (placement=i % 4: no co-location); multiloop units pinned evenly "
        "(placement=i % 4)",
        True,
        lambda: ActorsDriver(use_uvloop=True, loops=4, pinned=True),
        ("savina-*", "multiloop"),
        ("uvloop",),
    ),
    Implementation(
        UNBLOCKED,
        "blocked-neighbour baseline: the default ActorSystem() on uvloop, responders spawned "
        "beside a hog actor (worker 0) that is asked for blocks of 0 s",
        True,
        lambda: NeighbourDriver(block=False),
        ("blocked-neighbour",),
        ("uvloop",),
    ),
    Implementation(
        BLOCKED,
        "blocked-neighbour: the default ActorSystem() on uvloop, responders spawned unpinned "
        "beside a hog actor (worker 0) whose handler blocks the loop (time.sleep)",
        True,
        lambda: NeighbourDriver(block=True),
        ("blocked-neighbour",),
        ("uvloop",),
    ),
    Implementation(
        BLOCKED_PINNED,
        "blocked-neighbour reference without evacuation: as blocked, the responders pinned "
        "beside the hog (placement=0)",
        True,
        lambda: NeighbourDriver(block=True, pinned=True),
        ("blocked-neighbour",),
        ("uvloop",),
    ),
    Implementation(
        "queue-uvloop",
        "naive actor: a task reading an asyncio.Queue, on uvloop loop threads",
        True,
        lambda: QueueDriver(use_uvloop=True),
        (*MICRO, "stream-same", "multiloop", "savina-*", *RESOURCES, "life", "scale"),
        ("uvloop",),
        baseline="actors-uvloop",
    ),
    *(
        Implementation(
            f"queue-uvloop-{n}loops",
            f"naive loops-in-threads: {n} uvloop threads, each running its share of the "
            "multiloop units as asyncio.Queue actors",
            True,
            lambda n=n: QueueDriver(use_uvloop=True, loops=n),
            ("multiloop",),
            ("uvloop",),
            baseline=f"actors-uvloop-{n}loops",
        )
        for n in MULTILOOP_LOOPS
        if n > 1
    ),
    Implementation(
        "queue-asyncio",
        "naive actor: a task reading an asyncio.Queue, on plain asyncio loop threads",
        False,
        lambda: QueueDriver(use_uvloop=False),
        (*MICRO, "stream-same", "savina-*"),
        baseline="actors-asyncio",
    ),
    Implementation(
        "callback",
        "callback actor: a synchronous handler called from a deque (the ceiling), on uvloop",
        True,
        CallbackDriver,
        (*MICRO_SAME, "savina-*", "spawn", "memory"),
        ("uvloop",),
        baseline="actors-uvloop",
    ),
    Implementation(
        "bare-uvloop",
        "bare cross-thread future round trip between two uvloop threads (the floor)",
        True,
        lambda: BareDriver(use_uvloop=True),
        ("ask-cross",),
        ("uvloop",),
        baseline="actors-uvloop",
    ),
    Implementation(
        "pykka",
        "pykka.ThreadingActor: a thread per actor; producers/asker are plain threads",
        False,
        PykkaDriver,
        (
            "tell-same",
            "tell-cross-4",
            "tell-cross-8",
            "fan-in",
            "ask-same",
            "savina-*",
            "spawn",
            "overload",
            "memory",
        ),
        ("pykka",),
        baseline="actors-uvloop",
        scale=0.05,
    ),
    Implementation(
        "thespian",
        "thespian's in-process simpleSystemBase, driven from the host thread",
        False,
        ThespianDriver,
        ("tell-same", "ask-same", "savina-*", "spawn", "memory"),
        ("thespian",),
        baseline="actors-uvloop",
        scale=0.1,
    ),
    Implementation(
        "xoscar",
        "xoscar with an in-process actor pool (n_process=0) on the host loop",
        False,
        XoscarDriver,
        ("tell-same", "ask-same", "savina-*", "spawn", "memory"),
        ("xoscar",),
        baseline="actors-uvloop",
        scale=0.03,
    ),
)


@dataclass(frozen=True)
class Settings:
    reps: int  # repetitions of the micro-cases
    seconds: float  # target duration of one calibrated repetition
    min_tells: int
    min_asks: int
    program_reps: int  # repetitions of each Savina program
    program_scale: float  # program sizes relative to `Program.size`
    program_timeout: float
    spawn_k: int
    overload_n: int
    memory_k: int
    scale_max: int  # the largest actor count of the scale case
    multiloop_n: int  # messages of one multiloop repetition, over all its units
    blocked_asks: int  # asks of one blocked-neighbour repetition (one per ms)


FULL: Final = Settings(
    reps=5,
    seconds=0.3,
    min_tells=20_000,
    min_asks=2_000,
    program_reps=3,
    program_scale=1.0,
    program_timeout=60.0,
    spawn_k=20_000,
    overload_n=100_000,
    memory_k=20_000,
    scale_max=100_000,
    multiloop_n=800_000,
    blocked_asks=2_000,
)
QUICK: Final = Settings(
    reps=2,
    seconds=0.05,
    min_tells=5_000,
    min_asks=300,
    program_reps=1,
    program_scale=0.05,
    program_timeout=20.0,
    spawn_k=2_000,
    overload_n=10_000,
    memory_k=2_000,
    scale_max=1_000,
    multiloop_n=40_000,
    blocked_asks=400,
)

_MAX_N: Final = {"tell": 5_000_000, "ask": 1_000_000, "pingpong": 1_000_000, "stream": 5_000_000}


@dataclass(frozen=True)
class Rep:
    """One repetition: its size, its wall time and the metrics derived from it."""

    n: int
    seconds: float
    metrics: dict[str, float]


@dataclass
class CaseResult:
    workload: Workload
    implementation: Implementation
    n: int = 0
    reps: list[Rep] = field(default_factory=list[Rep])
    error: str | None = None  # the case failed (a wrong result, an exception)
    skipped: str | None = None  # the case could not run here
    extra: dict[str, object] = field(default_factory=dict[str, object])  # e.g. scale series

    def samples(self, metric: str) -> list[float]:
        return [rep.metrics[metric] for rep in self.reps if metric in rep.metrics]


def fixed_size(workload: Workload, impl: Implementation, settings: Settings) -> int | None:
    """The size of a fixed-size workload for this implementation; None: calibrate."""
    if workload.program is not None:
        return workload.program.size_for(impl.scale * settings.program_scale)
    if workload.kind in ("spawn", "spawn-host", "life"):
        return max(50, round(settings.spawn_k * impl.scale))
    if workload.kind == "overload":
        return max(2 * CAPACITY, round(settings.overload_n * min(1.0, impl.scale * 4)))
    if workload.kind == "multiloop":  # the same work for every number of loops
        return max(workload.units, round(settings.multiloop_n * impl.scale))
    if workload.kind == "blocked":  # paced: n asks take n ms whatever the implementation
        return settings.blocked_asks
    return None


def measure_once(workload: Workload, settings: Settings) -> Callable[[Driver, int], Awaitable[Rep]]:
    """The function that runs one repetition of size n of this workload."""
    if workload.kind == "tell":
        return lambda driver, n: _tell_once(driver, workload.producers, n)
    if workload.kind == "ask":
        return _ask_once
    if workload.kind == "pingpong":
        return _pingpong_once
    if workload.kind == "spawn":
        return _spawn_once
    if workload.kind == "spawn-host":
        return _spawn_host_once
    if workload.kind == "life":
        return _life_once
    if workload.kind == "overload":
        return lambda driver, n: _overload_once(driver, workload.producers, n)
    if workload.kind == "multiloop":
        return lambda driver, n: _multiloop_once(driver, workload.units, n)
    if workload.kind == "blocked":
        return _blocked_once
    if workload.kind == "stream":
        return _stream_once
    program = workload.program
    assert program is not None
    return lambda driver, n: _program_once(driver, program, n, settings.program_timeout)


async def calibrate(
    once: Callable[[int], Awaitable[Rep]], smallest: int, seconds: float, largest: int
) -> int:
    """A size whose repetition takes about ``seconds``, found by growing probe runs.

    The probes double as warm-up. The result is at least ``smallest`` and at most ``largest``.
    """
    n = max(1, smallest // 10)
    while True:
        elapsed = (await once(n)).seconds
        if elapsed >= seconds / 4 or n >= largest:
            break
        n = min(largest, max(2 * n, int(n * seconds / 2 / max(elapsed, 1e-6))))
    return min(largest, max(smallest, _round(n * seconds / elapsed)))


def size_limits(kind: Kind, settings: Settings) -> tuple[int, int]:
    """The smallest and largest size of one calibrated repetition."""
    smallest = settings.min_tells if kind in ("tell", "stream") else settings.min_asks
    return smallest, _MAX_N[kind]


def _round(n: float) -> int:
    """``n`` rounded to two significant digits, so that sizes read well."""
    value = max(1, int(n))
    scale = 10 ** max(0, len(str(value)) - 2)
    return max(1, round(value / scale)) * scale


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


async def _tell_once(driver: Driver, producers: int, n: int) -> Rep:
    counts = _split(n, producers)
    gc.collect()
    start = time.perf_counter()
    tally = await driver.tell(counts)
    seconds = time.perf_counter() - start
    check_tally(tally, counts)
    return Rep(n, seconds, {"msgs_per_s": n / seconds})


async def _ask_once(driver: Driver, n: int) -> Rep:
    gc.collect()
    start = time.perf_counter()
    samples = await driver.ask_latencies(n)
    seconds = time.perf_counter() - start
    if len(samples) != n:
        raise CheckFailed(f"{len(samples)} round trips measured, {n} expected")
    ordered = sorted(samples)
    metrics = {
        "p50_us": percentile(ordered, 0.50) / 1000,
        "p90_us": percentile(ordered, 0.90) / 1000,
        "p99_us": percentile(ordered, 0.99) / 1000,
        "p999_us": percentile(ordered, 0.999) / 1000,
        "mean_us": sum(ordered) / n / 1000,
        "max_us": ordered[-1] / 1000,
        "asks_per_s": n / seconds,
    }
    return Rep(n, seconds, metrics)


def _placement(driver: Driver) -> dict[str, float]:
    """`actors`' placement counters so far and its loops (``loops``); empty for a peer."""
    return driver.placement() if isinstance(driver, ActorsDriver) else {}


def _moved(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The placement counters of one repetition: what changed between two readings."""
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()}
    if "loops" in after:  # a setting, not a counter
        delta["loops"] = after["loops"]
    return delta


async def _pingpong_once(driver: Driver, n: int) -> Rep:
    pair = cast("PairDriver", driver)
    gc.collect()
    before = _placement(driver)
    start = time.perf_counter()
    returned = await pair.rally(n)
    seconds = time.perf_counter() - start
    if returned != n:
        raise CheckFailed(f"ping counted {returned!r} answers to {n} balls")
    metrics = {"msgs_per_s": 2 * n / seconds, **_moved(before, _placement(driver))}
    if isinstance(driver, ActorsDriver):  # 1.0: the pair ended the rally on one loop
        ping, pong = driver.pair_loops()
        metrics["same_loop"] = float(ping == pong)
    return Rep(n, seconds, metrics)


async def _program_once(driver: Driver, program: Program, n: int, timeout: float) -> Rep:
    gc.collect()
    before = _placement(driver)
    start = time.perf_counter()
    result = await driver.run_program(program, n, timeout)
    seconds = time.perf_counter() - start
    wrong = program.check(n, result)
    if wrong is not None:
        raise CheckFailed(wrong)
    metrics = {"ops_per_s": program.ops(n) / seconds, **_moved(before, _placement(driver))}
    return Rep(n, seconds, metrics)


async def _spawn_once(driver: Driver, k: int) -> Rep:
    gc.collect()
    seconds = await driver.spawn_many(k)
    return Rep(k, seconds, {"actors_per_s": k / seconds})


async def _spawn_host_once(driver: Driver, k: int) -> Rep:
    gc.collect()
    seconds = await cast("HostSpawnDriver", driver).spawn_from_host(k)
    return Rep(k, seconds, {"actors_per_s": k / seconds})


async def _life_once(driver: Driver, k: int) -> Rep:
    gc.collect()  # then on, as in an application: the lives' garbage is collected as it goes
    seconds = await cast("LifeDriver", driver).life_many(k)
    return Rep(k, seconds, {"actors_per_s": k / seconds})


OVERLOAD_RSS_LIMIT_MB: Final = 32.0
"""Growth of the RSS during an overload repetition beyond which `actors` fails the case."""


async def _overload_once(driver: Driver, producers: int, n: int) -> Rep:
    counts = _split(n, producers)
    gc.collect()
    with RssSampler(driver.depth) as sampler:
        start = time.perf_counter()
        tally = await driver.tell(counts)
        seconds = time.perf_counter() - start
    check_tally(tally, counts)  # nothing lost, nothing duplicated
    growth = (sampler.peak - sampler.base) / 2**20
    if isinstance(driver, ActorsDriver):  # the bounded mailbox must keep memory flat
        if sampler.max_depth > CAPACITY:
            raise CheckFailed(f"mailbox depth reached {sampler.max_depth} > {CAPACITY}")
        if growth > OVERLOAD_RSS_LIMIT_MB:
            raise CheckFailed(f"RSS grew by {growth:.1f} MB under overload")
    return Rep(
        n,
        seconds,
        {"msgs_per_s": n / seconds, "rss_growth_mb": growth, "max_depth": sampler.max_depth},
    )


async def _multiloop_once(driver: Driver, units: int, n: int) -> Rep:
    """All units at once, each on its own loop's share; every unit's tally checked."""
    counts = _split(n, units)
    gc.collect()
    start = time.perf_counter()
    tallies = await cast("UnitsDriver", driver).independent(counts)
    seconds = time.perf_counter() - start
    if len(tallies) != units:
        raise CheckFailed(f"{len(tallies)} units reported, {units} expected")
    for i, (tally, count) in enumerate(zip(tallies, counts, strict=True)):
        try:
            check_tally(tally, [count])
        except CheckFailed as error:
            raise CheckFailed(f"unit {i}: {error}") from None
    return Rep(n, seconds, {"msgs_per_s": n / seconds})


async def _blocked_once(driver: Driver, n: int) -> Rep:
    """n paced asks to responders that start beside a hog; their latencies, what moved."""
    gc.collect()
    before = _placement(driver)
    start = time.perf_counter()
    seen = await cast("NeighbourDriver", driver).beside_blocked(n)
    seconds = time.perf_counter() - start
    if len(seen.latencies) != n:
        raise CheckFailed(f"{len(seen.latencies)} round trips measured, {n} expected")
    if seen.wrong:
        raise CheckFailed(f"{seen.wrong} of {n} asks answered with another number")
    ordered = sorted(seen.latencies)
    metrics = {
        "p50_us": percentile(ordered, 0.50) / 1000,
        "p90_us": percentile(ordered, 0.90) / 1000,
        "p99_us": percentile(ordered, 0.99) / 1000,
        "p999_us": percentile(ordered, 0.999) / 1000,
        "max_us": ordered[-1] / 1000,
        "late_share": sum(ns > LATE * 1e9 for ns in ordered) / n,
        "blocked_s": seen.blocked,
        "away": float(seen.away),
        **_moved(before, _placement(driver)),
    }
    if seen.later:  # a repetition with a second block
        metrics["later_p99_us"] = percentile(sorted(seen.later), 0.99) / 1000
    return Rep(n, seconds, metrics)


async def _stream_once(driver: Driver, n: int) -> Rep:
    """One stream of ``n`` items read to its end; the reader checks their order."""
    gc.collect()
    start = time.perf_counter()
    read = await cast("StreamDriver", driver).stream_items(n, STREAM_WINDOW)
    seconds = time.perf_counter() - start
    if read != n:
        raise CheckFailed(f"{read} items read in order, {n} expected")
    return Rep(n, seconds, {"items_per_s": n / seconds})
