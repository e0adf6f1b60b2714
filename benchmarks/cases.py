"""The workloads, the implementations, and one repetition of a workload on a driver.

Every repetition checks its own result (`CheckFailed` when wrong). `benchmarks.runner`
decides the sizes (`calibrate`) and the order of the repetitions.
"""

from __future__ import annotations

import gc
import importlib.util
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from .common import CheckFailed, Place, check_tally, percentile
from .peers import PykkaDriver, QueueDriver
from .subject import ActorsDriver

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .common import Driver

__all__ = (
    "FULL",
    "IMPLEMENTATIONS",
    "QUICK",
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

Kind = Literal["tell", "ask"]


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    kind: Kind
    place: Place
    producers: int = 1


WORKLOADS: Final = (
    Workload("tell-same", "tell throughput, producer on the counter's loop", "tell", "same"),
    Workload("tell-cross-1", "tell throughput, 1 producer on another loop", "tell", "cross"),
    Workload("tell-cross-4", "tell throughput, 4 producers on another loop", "tell", "cross", 4),
    Workload("ask-same", "ask round trip, asker on the counter's loop", "ask", "same"),
    Workload("ask-cross", "ask round trip, asker on another loop", "ask", "cross"),
)

ALL: Final = tuple(w.name for w in WORKLOADS)
SAME: Final = ("tell-same", "ask-same")


@dataclass(frozen=True)
class Implementation:
    name: str
    description: str
    host_uvloop: bool  # the kind of host loop `actors.run` starts for this implementation
    make: Callable[[], Driver]
    workloads: tuple[str, ...]
    requires: tuple[str, ...] = ()  # importable modules it needs
    baseline: str | None = None  # for a peer: the `actors` implementation it is compared with

    def missing(self) -> str | None:
        """Why it cannot run here, or None."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None


IMPLEMENTATIONS: Final = (
    Implementation(
        "actors-uvloop",
        "actors: ActorSystem(workers=2) on uvloop; producer/asker actor on worker 0 or 1",
        True,
        lambda: ActorsDriver(use_uvloop=True),
        ALL,
        ("uvloop",),
    ),
    Implementation(
        "actors-asyncio",
        "actors: ActorSystem(workers=2, use_uvloop=False); plain asyncio loops",
        False,
        lambda: ActorsDriver(use_uvloop=False),
        ALL,
    ),
    Implementation(
        "actors-host-uvloop",
        'actors: counter spawned with placement="host" in actors.run (uvloop); host task sends',
        True,
        lambda: ActorsDriver(use_uvloop=True, host=True),
        SAME,
        ("uvloop",),
    ),
    Implementation(
        "queue-uvloop",
        "naive actor: a task reading an asyncio.Queue, on uvloop loop threads",
        True,
        lambda: QueueDriver(use_uvloop=True),
        ALL,
        ("uvloop",),
        baseline="actors-uvloop",
    ),
    Implementation(
        "queue-asyncio",
        "naive actor: a task reading an asyncio.Queue, on plain asyncio loop threads",
        False,
        lambda: QueueDriver(use_uvloop=False),
        ALL,
        baseline="actors-asyncio",
    ),
    Implementation(
        "pykka",
        "pykka.ThreadingActor: a thread per actor; producers/asker are plain threads",
        False,
        PykkaDriver,
        ("tell-same", "tell-cross-4", "ask-same"),
        ("pykka",),
        baseline="actors-uvloop",
    ),
)


@dataclass(frozen=True)
class Settings:
    reps: int
    seconds: float  # target duration of one repetition
    min_tells: int
    min_asks: int


FULL: Final = Settings(reps=5, seconds=0.3, min_tells=20_000, min_asks=2_000)
QUICK: Final = Settings(reps=2, seconds=0.05, min_tells=5_000, min_asks=300)

_MAX_N: Final = {"tell": 5_000_000, "ask": 1_000_000}


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

    def samples(self, metric: str) -> list[float]:
        return [rep.metrics[metric] for rep in self.reps if metric in rep.metrics]


def measure_once(kind: Kind, producers: int) -> Callable[[Driver, int], Awaitable[Rep]]:
    """The function that runs one repetition of size n of this kind of workload."""
    if kind == "tell":
        return lambda driver, n: _tell_once(driver, producers, n)
    return _ask_once


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
    """The smallest and largest size of one repetition."""
    smallest = settings.min_tells if kind == "tell" else settings.min_asks
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
