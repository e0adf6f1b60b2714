"""The driver for `actors` itself, the system under test.

World: an ``ActorSystem`` (uvloop or plain asyncio workers), run from a host loop started
by `actors.run` with the same loop kind. ``loops`` worker loops (1 by default; the
cross-loop workloads get at least 2). The counting actor lives on worker 0.

* same loop: the producers (or the asker) are actors on worker 0 as well, so every send
  and every ask stays on one loop. The host only hands them the job and gets the result
  back. With ``host=True`` the counter is spawned with ``placement="host"`` instead, and
  the host task itself is the producer/asker: the single-loop shape of the
  ``asyncio.Queue`` peer.
* cross loop: the producers (or the asker) are actors on the other worker loops (with two
  workers: all on worker 1), so every message crosses threads.
* Savina programs: the behaviours are mixed into `actors.Actor` subclasses (their
  ``receive`` is the actor's), spawned as top-level actors (``system.spawn``). With the
  default placement they start round-robin over the workers, unpinned, so the runtime may
  move partners that talk across loops onto one loop (co-location): with one loop, all on
  worker 0. With ``pinned=True`` the n-th actor of the world is pinned to worker ``n %
  loops`` (``placement=``): the same spread, but nothing moves (what happens without
  co-location).
* ping-pong of app-spawned actors (pingpong-app): the host task spawns a pong actor and
  a ping actor with ``system.spawn`` and the default placement (consecutive top-level
  spawns: on different loops when there are several), once for the whole workload, so the
  calibration runs are their warm-up; each repetition is one rally of n round trips. With
  ``pinned=True`` they are pinned to workers 0 and 1.
* ``loops=None``: the default ``ActorSystem()``, one worker loop per usable CPU.
* spawn from the host (spawn-host): the host task itself spawns the idle actors onto the
  worker loop (default placement), as an application's startup would; the reference row
  (``spawn_on_loop=True``) has the producer actor on worker 0 spawn them, as in spawn.
* multiloop (independent work): ``Setup.units`` producer->counter pairs, unit ``i``'s
  producer and counter both pinned to worker ``i % loops`` (``placement=`` a worker
  index), so no message crosses loops; the host starts every unit at once.

Everything uses the public API with its defaults: ``await ref.send(...)``, ``await
ref.ask(...)`` with the default ask timeout, the default mailbox capacity.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import types
import weakref
from array import array
from typing import TYPE_CHECKING, Any, Final

import msgspec

import actors

from .common import (
    CAPACITY,
    REP_TIMEOUT,
    Collect,
    CounterState,
    Echo,
    Inc,
    Setup,
    SlowCounterState,
    Tally,
    check_echo,
)
from .portable import START, Outcome
from .synchronous import synchronous

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from .portable import Behaviour
    from .savina import Program

__all__ = ("ActorsDriver",)

# A counter may live on another node (benchmarks/cluster.py): a remote ref is a `Ref`, the
# part of `ActorRef` every ref honours.
CounterRef = actors.Ref[Inc | Collect | Echo]


class Counter(actors.Actor[Inc | Collect | Echo]):
    """The counting actor."""

    def __init__(self) -> None:
        self.state = CounterState()

    async def receive(self, message: Inc | Collect | Echo) -> Tally | int | None:
        return self.state.handle(message)


class SyncCounter(actors.Actor[Inc | Collect | Echo]):
    """The counting actor with a synchronous handler (``def receive``: no coroutine)."""

    def __init__(self) -> None:
        self.state = CounterState()

    def receive(self, message: Inc | Collect | Echo) -> Tally | int | None:
        return self.state.handle(message)


class SlowCounter(Counter):
    """The overload case's consumer."""

    def __init__(self) -> None:
        self.state = SlowCounterState()


class Idle(actors.Actor[Inc]):
    """An actor that is never sent anything (spawn rate, memory)."""

    async def receive(self, message: Inc) -> None:
        return None


class Once(actors.Actor[Inc]):
    """The life case's actor: takes one message, then stops itself."""

    async def receive(self, message: Inc) -> None:
        self.stop()


class SyncOnce(actors.Actor[Inc]):
    """`Once` with a synchronous handler."""

    def receive(self, message: Inc) -> None:
        self.stop()


class Produce(msgspec.Struct, frozen=True):
    """Send ``Inc(0) .. Inc(n - 1)`` to ``target``."""

    target: CounterRef
    n: int


class Probe(msgspec.Struct, frozen=True):
    """Ask ``target`` ``k`` Echoes in a row; return the round trips (ns, array "q" bytes)."""

    target: CounterRef
    k: int


class SpawnIdle(actors.Request[float], frozen=True):
    """Spawn ``k`` idle actors on this loop one after another; return the seconds it took."""

    k: int


class Lives(actors.Request[float], frozen=True):
    """Live ``k`` short lives on this loop (`lives`); return the seconds it took."""

    k: int
    sync: bool


class Producer(actors.Actor[Produce | Probe | SpawnIdle | Lives]):
    """Runs a producer, asker or spawner job on its own loop."""

    async def receive(self, message: Produce | Probe | SpawnIdle | Lives) -> bytes | float | None:
        if type(message) is Produce:
            send = message.target.send
            for i in range(message.n):
                await send(Inc(i))
            return None
        if type(message) is Probe:
            return await probe(message.target, message.k)
        if type(message) is Lives:
            return await lives(self.system, message.k, SyncOnce if message.sync else Once)
        assert type(message) is SpawnIdle
        return await spawn_idle(self.system, message.k, self.ref.statistics().loop)


ProducerRef = actors.ActorRef[Produce | Probe | SpawnIdle | Lives]


class Items(actors.StreamRequest[int], frozen=True):
    """Stream ``0 .. n - 1``."""

    n: int


class Source(actors.Actor[Items]):
    async def receive(self, message: Items) -> AsyncIterator[int]:
        return count_to(message.n)


async def count_to(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


class Read(actors.Request[int], frozen=True):
    """Read the stream of ``Items(n)`` from ``source``; return the items that came in order."""

    source: actors.ActorRef[Items]
    n: int
    window: int


class Reader(actors.Actor[Read]):
    async def receive(self, message: Read) -> int:
        expected = 0
        async for item in message.source.stream(Items(message.n), window=message.window):
            if item != expected:
                break
            expected += 1
        return expected


# -- ping-pong between two actors the application spawned ------------------------------------


class Rally(msgspec.Struct, frozen=True):
    """Play ``n`` round trips with the pong actor, then settle `Rallies.outcome` with n."""

    n: int


class Back(msgspec.Struct, frozen=True):
    """Pong's answer to a `Hit`."""


class Hit(msgspec.Struct, frozen=True):
    """Ping's ball: the pong actor answers ``reply_to`` with `Back`."""

    reply_to: actors.ActorRef[Rally | Back]


BACK: Final = Back()


class Rallies:
    """Where the ping actor reports the end of a rally; the host sets a fresh outcome first.

    Invariant: the host writes ``outcome`` before it sends the `Rally`, and the ping actor
    reads it after taking that message from its mailbox, whose lock orders the two.
    """

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = Outcome()


class Ping(actors.Actor[Rally | Back]):
    """Savina's pinger, without the portable model: one `Hit` per round trip."""

    def __init__(self, pong: actors.ActorRef[Hit], rallies: Rallies) -> None:
        self.pong = pong
        self.rallies = rallies
        self.left = 0
        self.returned = 0

    async def receive(self, message: Rally | Back) -> None:
        if type(message) is Back:
            self.returned += 1
            if self.left:
                self.left -= 1
                await self.pong.send(Hit(self.ref))
                return
            self.rallies.outcome.settle(self.returned)
            return
        assert type(message) is Rally
        self.left, self.returned = message.n - 1, 0
        await self.pong.send(Hit(self.ref))


class Pong(actors.Actor[Hit]):
    """Savina's ponger: answers every `Hit`."""

    async def receive(self, message: Hit) -> None:
        await message.reply_to.send(BACK)


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


async def spawn_idle(system: actors.ActorSystem, k: int, loop: str | None) -> float:
    """Spawn ``k`` idle actors one after another on ``loop`` (None: the default placement)."""
    placement: Any = loop if loop is None or loop == "host" else int(loop)
    spawn = system.spawn
    start = time.perf_counter()
    refs = [await spawn(Idle, placement=placement) for _ in range(k)]
    seconds = time.perf_counter() - start
    await asyncio.gather(*(ref.stop() for ref in refs))
    return seconds


async def lives(system: actors.ActorSystem, k: int, kind: type[actors.Actor[Inc]]) -> float:
    """``k`` whole lives on this loop, one after another: spawn, one message, the actor stops
    itself; timed until every one has ended."""
    spawn = system.spawn
    start = time.perf_counter()
    for i in range(k):
        ref = await spawn(kind, **_ONCE)
        await ref.send(Inc(i))
        await ref.join()
    return time.perf_counter() - start


# -- the portable model (Savina programs) ----------------------------------------------------


# Savina's actors end for good when they stop. Where `actors` has restart policies (and
# restarts a permanent actor after a normal exit, as OTP does), they are spawned temporary.
_ONCE: Final[dict[str, Any]] = (
    {"restart": actors.Restart.TEMPORARY} if hasattr(actors, "Restart") else {}  # type: ignore[attr-defined]
)


class _Mixin(actors.Actor[Any]):
    """The `actors.Actor` side of a behaviour class (see `_Platform.actor_class`)."""


class _Context:
    """A behaviour's ``ctx``: what `actors.Actor` gives a handler (``self.ref``, ``self.stop()``).

    It refers to its actor weakly: the actor holds it (``actor.ctx``), and a strong link back
    would make every actor a reference cycle, freed by the garbage collector instead of by
    reference counting, which an actor written directly on `actors` (no ``ctx``) is not.
    The peers' adapters hold their actor the same way (docs/benchmarks.md, "The fourth
    round").
    """

    __slots__ = ("_actor", "_platform", "self_ref")

    def __init__(self, actor: actors.Actor[Any], platform: _Platform) -> None:
        self.self_ref = actor.ref
        self._actor = weakref.ref(actor)
        self._platform = platform

    async def spawn(self, cls: type[Behaviour], *args: Any) -> actors.ActorRef[Any]:
        return await self._platform.spawn(cls, args)

    def stop(self) -> None:
        self._actor().stop()  # type: ignore[union-attr]  # alive: its handler runs

    def finish(self, value: object) -> None:
        self._platform.outcome.settle(value)


class _SyncContext(_Context):
    """The context of a synchronous behaviour (`synchronous`): its spawn does not wait."""

    __slots__ = ()

    def spawn(self, cls: type[Behaviour], *args: Any) -> actors.ActorRef[Any]:  # type: ignore[override]
        actor = self._actor()
        assert actor is not None  # alive: its handler runs
        return self._platform.spawn_soon(actor, cls, args)


# try_send never waits for room: a synchronous program's actors get a mailbox as large as
# its largest fan-out (the peers' queues are unbounded).
SYNC_CAPACITY: Final = 1 << 24


class _Platform(logging.Handler):
    """Spawns behaviours as actors; fails the run when an actor fails (logged at ERROR).

    ``pin`` gives each next actor's ``placement=`` (None: the default placement).
    """

    def __init__(
        self, system: actors.ActorSystem, pin: Callable[[], int | None], *, sync: bool = False
    ) -> None:
        super().__init__(logging.ERROR)
        self.system = system
        self.outcome = Outcome()
        self._pin = pin
        self._sync = sync
        self._classes: dict[type[Behaviour], type[actors.Actor[Any]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        cause = record.exc_info[1] if record.exc_info else None
        error = RuntimeError(f"{record.getMessage()}: {cause!r}")
        error.__cause__ = cause
        self.outcome.fail(error)

    def actor_class(self, cls: type[Behaviour]) -> type[actors.Actor[Any]]:
        """``cls`` mixed into an Actor: its ``receive`` is the actor's, no wrapper call."""
        klass = self._classes.get(cls)
        if klass is None:
            behaviour = synchronous(cls) if self._sync else cls
            klass = types.new_class(cls.__name__, (behaviour, _Mixin))
            self._classes[cls] = klass
        return klass

    def _factory(self, cls: type[Behaviour], args: tuple[Any, ...]) -> Callable[[], Any]:
        klass = self.actor_class(cls)
        context = _SyncContext if self._sync else _Context

        def factory() -> actors.Actor[Any]:
            actor = klass(*args)
            actor.ctx = context(actor, self)  # type: ignore[attr-defined]
            return actor

        return factory

    async def spawn(self, cls: type[Behaviour], args: tuple[Any, ...]) -> actors.ActorRef[Any]:
        capacity = SYNC_CAPACITY if self._sync else None
        factory = self._factory(cls, args)
        return await self.system.spawn(factory, placement=self._pin(), capacity=capacity, **_ONCE)

    def spawn_soon(
        self, parent: actors.Actor[Any], cls: type[Behaviour], args: tuple[Any, ...]
    ) -> actors.ActorRef[Any]:
        """A synchronous behaviour's spawn: a child, returned at once (`spawn_soon`)."""
        factory = self._factory(cls, args)
        return parent.spawn_soon(factory, placement=self._pin(), capacity=SYNC_CAPACITY, **_ONCE)


class ActorsDriver:
    """`actors` on uvloop or plain asyncio; see the module docstring for the placements."""

    def __init__(
        self,
        *,
        use_uvloop: bool,
        loops: int | None = 1,
        host: bool = False,
        spawn_on_loop: bool = False,
        pinned: bool = False,
        sync: bool = False,
        traced: bool = False,
        watchdog: bool = True,
    ) -> None:
        self._use_uvloop = use_uvloop
        # False: no blocked-loop watchdog thread (`benchmarks.savina_instructions`: its
        # thread wakes by the wall clock, so under callgrind its count is noise).
        self._watchdog = watchdog
        # ActorSystem(tracing=...) with the OpenTelemetry SDK recording every span, handed to
        # an exporter that discards them (`tracing_provider`): the cost of making them.
        self._traced = traced
        self._provider: Any = None
        self._loops = loops  # None: ActorSystem's default, one worker loop per usable CPU
        self._host = host
        # spawn-host's reference row: spawn_from_host spawns from an actor on worker 0 instead.
        self._spawn_on_loop = spawn_on_loop
        # Savina actors and the ping-pong pair pinned round-robin: the spread, no co-location.
        self._pinned = pinned
        # Synchronous handlers (``def receive``): the counters, the life case's actors, and
        # the Savina behaviours (`synchronous`).
        self._sync = sync
        self._spawned = itertools.count()  # the pinned actors so far (round-robin)
        self._system: actors.ActorSystem | None = None
        self._counter: CounterRef | None = None
        self._producers: list[ProducerRef] = []
        self._units: list[tuple[CounterRef, ProducerRef]] = []
        self._pair: tuple[actors.ActorRef[Rally | Back], actors.ActorRef[Hit]] | None = None
        self._rallies = Rallies()
        self._setup = Setup()
        self._stream: tuple[actors.ActorRef[Items], actors.ActorRef[Read]] | None = None

    async def start(self, setup: Setup) -> None:
        if self._host and setup.place != "same":
            raise ValueError("the host placement only has a same-loop variant")
        loops = self._loops
        if setup.place != "same":
            loops = max(2, loops or 2)
        # workers=None is ActorSystem's own default (the usable CPUs).
        if self._traced:
            from .tracing_cost import tracing_provider  # the SDK only for this variant

            self._provider = tracing_provider()
        system = actors.ActorSystem(
            workers=loops,
            use_uvloop=self._use_uvloop,
            name="bench",
            tracing=self._provider if self._provider is not None else False,
            **({} if self._watchdog else {"blocked_threshold": None}),
        )
        await system.start()
        self._system, self._setup = system, setup
        workers = system.workers
        if setup.pair:  # pingpong-app: two top-level actors, spawned by the host task
            pong = await system.spawn(Pong, placement=self._pin())
            rallies = self._rallies
            ping = await system.spawn(lambda: Ping(pong, rallies), placement=self._pin())
            self._pair = (ping, pong)
            return
        if setup.units:  # multiloop: only the units, spread evenly over the workers
            for i in range(setup.units):
                worker = i % workers
                counter = await system.spawn(Counter, placement=worker, capacity=CAPACITY)
                producer = await system.spawn(Producer, placement=worker)
                self._units.append((counter, producer))
            return
        home = "host" if self._host else 0
        counter: type[actors.Actor[Inc | Collect | Echo]] = (
            SlowCounter if setup.slow else SyncCounter if self._sync else Counter
        )
        self._counter = await system.spawn(counter, placement=home, capacity=CAPACITY)
        for i in range(setup.producers):
            if self._host:
                where: int | str = "host"
            else:
                where = 0 if setup.place == "same" else 1 + i % (workers - 1)
            self._producers.append(await system.spawn(Producer, placement=where))  # type: ignore[arg-type]

    async def close(self) -> None:
        if self._system is not None:
            await self._system.shutdown()
        if self._provider is not None:
            self._provider.shutdown()

    async def tell(self, counts: Sequence[int]) -> Tally:
        counter = self._target()
        if self._host:
            for n in counts:  # the host task is the one producer
                send = counter.send
                for i in range(n):
                    await send(Inc(i))
        else:
            jobs = [
                producer.ask(Produce(counter, n), timeout=REP_TIMEOUT)
                for producer, n in zip(self._producers, counts, strict=True)
            ]
            await asyncio.gather(*jobs)
        return await counter.ask(Collect(), timeout=REP_TIMEOUT)

    async def independent(self, counts: Sequence[int]) -> list[Tally]:
        async def unit(counter: CounterRef, producer: ProducerRef, n: int) -> Tally:
            await producer.ask(Produce(counter, n), timeout=REP_TIMEOUT)
            return await counter.ask(Collect(), timeout=REP_TIMEOUT)

        if not self._units:
            raise RuntimeError("driver not started with units")
        jobs = [unit(c, p, n) for (c, p), n in zip(self._units, counts, strict=True)]
        return list(await asyncio.gather(*jobs))

    async def ask_latencies(self, k: int) -> list[int]:
        counter = self._target()
        if self._host:
            data = await probe(counter, k)
        else:
            data = await self._producers[0].ask(Probe(counter, k), timeout=REP_TIMEOUT)
        return array("q", data).tolist()

    async def rally(self, n: int) -> object:
        """One rally of ``n`` round trips between the pair; the round trips ping counted."""
        if self._pair is None:
            raise RuntimeError("driver not started with a pair")
        ping, _ = self._pair
        outcome = self._rallies.outcome = Outcome()
        await ping.send(Rally(n))
        async with asyncio.timeout(REP_TIMEOUT):
            return await asyncio.wrap_future(outcome.future)

    async def stream_items(self, n: int, window: int) -> int:
        system = self._system
        assert system is not None
        if self._stream is None:  # the reader on the source's loop, or on the next one
            source = await system.spawn(Source, placement=0)
            reader = await system.spawn(Reader, placement=0 if self._setup.place == "same" else 1)
            self._stream = (source, reader)
        source, reader = self._stream
        return await reader.ask(Read(source, n, window), timeout=REP_TIMEOUT)

    def pair_loops(self) -> tuple[str | None, str | None]:
        """The loops the ping and the pong actor are on now (racy; between rallies: exact)."""
        if self._pair is None:
            raise RuntimeError("driver not started with a pair")
        ping, pong = self._pair
        return ping.statistics().loop, pong.statistics().loop

    def placement(self) -> dict[str, float]:
        """The system's placement counters so far (every field), and its worker loops."""
        assert self._system is not None
        counters = msgspec.structs.asdict(self._system.metrics().placement)
        return {
            **{f"placement_{key}": float(value) for key, value in counters.items()},
            "loops": self._system.workers,
        }

    def _pin(self) -> int | None:
        """``placement=`` for the next Savina actor or pair member: None (default) unless pinned."""
        if not self._pinned:
            return None
        assert self._system is not None
        return next(self._spawned) % self._system.workers

    async def run_program(self, program: Program, n: int, timeout: float) -> object:
        assert self._system is not None
        platform = _Platform(self._system, self._pin, sync=self._sync)
        logger = logging.getLogger("actors")
        logger.addHandler(platform)
        try:
            main = await platform.spawn(program.main, (n,))
            await main.send(START)
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(platform.outcome.future)
        finally:
            logger.removeHandler(platform)

    async def spawn_many(self, k: int) -> float:
        if self._host:
            assert self._system is not None
            return await spawn_idle(self._system, k, "host")
        return await self._producers[0].ask(SpawnIdle(k), timeout=REP_TIMEOUT)

    async def life_many(self, k: int) -> float:
        """``k`` actors' whole lives (`lives`) on worker 0; the seconds they took."""
        return await self._producers[0].ask(Lives(k, self._sync), timeout=REP_TIMEOUT)

    async def spawn_from_host(self, k: int) -> float:
        """The host task spawns ``k`` idle actors with the default placement (worker 0)."""
        if self._spawn_on_loop:
            return await self.spawn_many(k)
        assert self._system is not None
        return await spawn_idle(self._system, k, None)

    def depth(self) -> int:
        return self._target().statistics().mailbox.depth

    def _target(self) -> CounterRef:
        if self._counter is None:
            raise RuntimeError("driver not started")
        return self._counter
