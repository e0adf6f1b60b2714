"""The naive actor people hand-roll: one task reading one ``asyncio.Queue``.

The handler is a coroutine and an ask a ``(message, future)`` envelope. World: two loop
threads (uvloop or plain asyncio, like the workers of an ``ActorSystem(workers=2)``) driven
from the host loop; the counting actor lives on loop 0.

* same loop: producer tasks on loop 0 ``await queue.put`` directly (the cheapest form a
  wrapper could take) on a queue bounded like the actors mailbox (`CAPACITY`), so both get
  the same backpressure; an ask puts the envelope and awaits the future.
* cross loop: what people write: ``loop.call_soon_threadsafe(queue.put_nowait, message)``
  from tasks on loop 1. That cannot wait for room, so this queue is unbounded (no
  backpressure: an advantage for the peer, and what the overload case shows). The reply of
  a cross-loop ask comes back through ``call_soon_threadsafe`` on the asker's loop.
* Savina programs: every actor a `QueueActor` on loop 0, bounded at `CAPACITY`; a ref's
  ``send`` is the queue's own ``put``.
* spawn from the host (spawn-host): the host task creates the actors on its own loop
  (a `QueueActor` is an ``asyncio.Queue`` and an ``asyncio.create_task``), as an application
  that hand-rolls its actors would.
* multiloop (independent work): the naive loops-in-threads, ``loops`` loop threads (1, 2
  or 4, and no other), unit ``i`` (a counter bounded at `CAPACITY` and a producer task that
  ``await queue.put``s into it, then asks for the tally) on loop ``i % loops``.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, TypeVar

from ..common import (
    CAPACITY,
    REP_TIMEOUT,
    Collect,
    CounterState,
    Echo,
    Inc,
    Place,
    Setup,
    SlowCounterState,
    Tally,
    check_echo,
    new_event_loop,
)
from ..portable import START, Outcome

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from ..portable import Behaviour
    from ..savina import Program

__all__ = ("LoopThread", "QueueActor", "QueueDriver")

T = TypeVar("T")


class _Asked:
    """The envelope of an ask: the message and the future its reply goes to."""

    __slots__ = ("future", "message")

    def __init__(self, message: object, future: asyncio.Future[Any]) -> None:
        self.message = message
        self.future = future


def _resolve(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


class QueueActor:
    """One task reading one ``asyncio.Queue``; create it on the loop it is to live on."""

    def __init__(
        self,
        receive: Callable[[Any], Awaitable[Any]],
        maxsize: int,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.send = self.queue.put  # `await actor.send(message)`, same loop only
        self.stopped = False
        self._receive = receive
        self._on_error = on_error
        self.task = self.loop.create_task(self._run())

    async def ask(self, message: object) -> Any:
        """Same-loop ask."""
        future = self.loop.create_future()
        await self.queue.put(_Asked(message, future))
        return await future

    def tell_threadsafe(self, message: object) -> None:
        """Tell from another thread's loop (the queue must be unbounded)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, message)

    async def ask_threadsafe(self, message: object) -> Any:
        """Ask from another thread's loop."""
        future = asyncio.get_running_loop().create_future()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, _Asked(message, future))
        return await future

    async def _run(self) -> None:
        get, receive, loop = self.queue.get, self._receive, self.loop
        try:
            while not self.stopped:
                item = await get()
                if type(item) is _Asked:
                    reply = await receive(item.message)
                    future = item.future
                    if future.get_loop() is loop:
                        _resolve(future, reply)
                    else:
                        future.get_loop().call_soon_threadsafe(_resolve, future, reply)
                else:
                    await receive(item)
        except Exception as error:
            if self._on_error is None:
                raise
            self._on_error(error)


class LoopThread:
    """A thread running an event loop forever, the way an actor system's worker does."""

    def __init__(self, name: str, *, use_uvloop: bool) -> None:
        self._use_uvloop = use_uvloop
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(REP_TIMEOUT):
            raise RuntimeError(f"loop thread {self._thread.name} did not start")

    def run(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run ``coro`` on this loop; await the result from the host loop."""
        assert self.loop is not None
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(REP_TIMEOUT)

    def _main(self) -> None:
        loop = new_event_loop(self._use_uvloop)
        asyncio.set_event_loop(loop)
        self.loop = loop
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _spawn_counter(maxsize: int, slow: bool = False) -> QueueActor:
    state = SlowCounterState() if slow else CounterState()

    async def receive(message: Any) -> Any:
        return state.handle(message)

    return QueueActor(receive, maxsize)


async def _produce_same(actor: QueueActor, n: int) -> None:
    tell = actor.send
    for i in range(n):
        await tell(Inc(i))


async def _produce_cross(actor: QueueActor, n: int) -> None:
    tell = actor.tell_threadsafe
    for i in range(n):
        tell(Inc(i))


async def _unit(actor: QueueActor, n: int) -> Tally:
    """One multiloop unit on its loop: the counting stream, then the tally."""
    await _produce_same(actor, n)
    return await actor.ask(Collect())


async def probe(ask: Callable[[object], Awaitable[Any]], k: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * k
    for i in range(k):
        message = Echo(i)
        start = clock()
        reply = await ask(message)
        samples[i] = clock() - start
        check_echo(reply, i)
    return samples


# -- the portable model (Savina programs) ----------------------------------------------------


class _Context:
    """A behaviour's ``ctx``. It refers to its actor weakly, as `actors`' adapter does: the
    actor holds the behaviour, and a strong link back would add a reference cycle per actor
    that the program itself does not need (docs/benchmarks.md, "The fourth round"). Its
    ``self_ref`` is the actor itself, as a queue actor's ref is: that link stays.
    """

    __slots__ = ("_actor", "_platform", "self_ref")

    def __init__(self, actor: QueueActor, platform: _Platform) -> None:
        self.self_ref = actor
        self._actor = weakref.ref(actor)
        self._platform = platform

    async def spawn(self, cls: type[Behaviour], *args: Any) -> QueueActor:
        return self._platform.spawn(cls, args)

    def stop(self) -> None:
        actor = self._actor()
        assert actor is not None  # alive: its handler runs
        actor.stopped = True

    def finish(self, value: object) -> None:
        self._platform.outcome.settle(value)


class _Platform:
    def __init__(self) -> None:
        self.outcome = Outcome()

    def spawn(self, cls: type[Behaviour], args: tuple[Any, ...]) -> QueueActor:
        behaviour = cls(*args)
        actor = QueueActor(behaviour.receive, CAPACITY, self.outcome.fail)
        behaviour.ctx = _Context(actor, self)
        return actor


async def run_program_here(program: Program, n: int, timeout: float) -> object:
    """Run one program on the running loop, every actor a `QueueActor`."""
    platform = _Platform()
    main = platform.spawn(program.main, (n,))
    await main.send(START)
    async with asyncio.timeout(timeout):
        return await asyncio.wrap_future(platform.outcome.future)


async def _spawn_idle(k: int) -> float:
    async def receive(message: Any) -> None:
        return None

    start = time.perf_counter()
    actors = [QueueActor(receive, CAPACITY) for _ in range(k)]
    seconds = time.perf_counter() - start
    for actor in actors:
        actor.task.cancel()
    await asyncio.gather(*(a.task for a in actors), return_exceptions=True)
    return seconds


class _Once:
    """The life case's actor: takes one message, then stops (its task ends)."""

    __slots__ = ("actor",)

    def __init__(self) -> None:
        self.actor = QueueActor(self.receive, CAPACITY)

    async def receive(self, message: Any) -> None:
        self.actor.stopped = True


async def _lives(k: int) -> float:
    """``k`` whole lives one after another: create, one message, wait for the task's end."""
    start = time.perf_counter()
    for i in range(k):
        actor = _Once().actor
        await actor.send(Inc(i))
        await actor.task
    return time.perf_counter() - start


async def _stream_here(n: int, window: int) -> int:
    """A producer task and this reader over an ``asyncio.Queue(window)``: items read in order."""
    queue: asyncio.Queue[int | None] = asyncio.Queue(window)

    async def produce() -> None:
        for i in range(n):
            await queue.put(i)
        await queue.put(None)  # the end

    producer = asyncio.create_task(produce())
    expected = 0
    while (item := await queue.get()) is not None:
        if item != expected:
            break
        expected += 1
    await producer
    return expected


class QueueDriver:
    """The naive ``asyncio.Queue`` actor on uvloop or plain asyncio loop threads."""

    def __init__(self, *, use_uvloop: bool, loops: int = 1) -> None:
        self._use_uvloop = use_uvloop
        self._count = loops  # loop threads of the multiloop workload; the others use 2
        self._loops: list[LoopThread] = []
        self._actor: QueueActor | None = None
        self._units: list[tuple[LoopThread, QueueActor]] = []
        self._place: Place = "same"

    async def start(self, setup: Setup) -> None:
        place = setup.place
        for i in range(self._count if setup.units else 2):
            loop = LoopThread(f"bench-queue-{i}", use_uvloop=self._use_uvloop)
            loop.start()
            self._loops.append(loop)
        if setup.units:  # multiloop: only the units, spread evenly over the loops
            for i in range(setup.units):
                home = self._loops[i % len(self._loops)]
                self._units.append((home, await home.run(_spawn_counter(CAPACITY))))
            return
        maxsize = CAPACITY if place == "same" else 0  # 0: unbounded
        self._actor = await self._loops[0].run(_spawn_counter(maxsize, setup.slow))
        self._place = place

    async def stream_items(self, n: int, window: int) -> int:
        if self._place != "same":
            raise ValueError("the asyncio.Queue stream has only a same-loop variant")
        return await self._loops[0].run(_stream_here(n, window))

    async def close(self) -> None:
        for loop in self._loops:
            loop.stop()

    async def tell(self, counts: Sequence[int]) -> Tally:
        actor = self._target()
        if self._place == "same":
            jobs = (self._loops[0].run(_produce_same(actor, n)) for n in counts)
        else:
            jobs = (self._loops[1].run(_produce_cross(actor, n)) for n in counts)
        await asyncio.gather(*jobs)
        if self._place == "same":
            return await self._loops[0].run(actor.ask(Collect()))
        return await actor.ask_threadsafe(Collect())

    def depth(self) -> int:
        return self._target().queue.qsize()

    async def independent(self, counts: Sequence[int]) -> list[Tally]:
        if not self._units:
            raise RuntimeError("driver not started with units")
        jobs = [
            home.run(_unit(actor, n)) for (home, actor), n in zip(self._units, counts, strict=True)
        ]
        return list(await asyncio.gather(*jobs))

    async def ask_latencies(self, k: int) -> list[int]:
        actor = self._target()
        if self._place == "same":
            return await self._loops[0].run(probe(actor.ask, k))
        return await self._loops[1].run(probe(actor.ask_threadsafe, k))

    async def run_program(self, program: Program, n: int, timeout: float) -> object:
        return await self._loops[0].run(run_program_here(program, n, timeout))

    async def spawn_many(self, k: int) -> float:
        return await self._loops[0].run(_spawn_idle(k))

    async def life_many(self, k: int) -> float:
        return await self._loops[0].run(_lives(k))

    async def spawn_from_host(self, k: int) -> float:
        """What an application does by hand: ``asyncio.create_task`` on its own loop."""
        return await _spawn_idle(k)

    def _target(self) -> QueueActor:
        if self._actor is None:
            raise RuntimeError("driver not started")
        return self._actor
