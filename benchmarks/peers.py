"""The peers: what people use instead of `actors`.

`QueueDriver`, the naive asyncio actor that people hand-roll: one task per actor reading
one ``asyncio.Queue``, the handler a coroutine, an ask a ``(message, future)`` envelope.
World: two loop threads (uvloop or plain asyncio, like the workers of ``ActorSystem
(workers=2)``) driven from the host loop; the counting actor lives on loop 0.

* same loop: a producer task on loop 0 ``await``s ``queue.put`` directly (the cheapest form
  a wrapper could take) on a queue bounded like the actors mailbox (`CAPACITY`), so both get
  the same backpressure; an ask puts the envelope and awaits the future.
* cross loop: what people write: ``loop.call_soon_threadsafe(queue.put_nowait, message)``
  from tasks on loop 1. That cannot wait for room, so this queue is unbounded (no
  backpressure: an advantage for the peer). The reply of a cross-loop ask comes back
  through ``call_soon_threadsafe`` on the asker's loop.

`PykkaDriver`: ``pykka.ThreadingActor``, a thread per actor, with its own ``tell`` and
blocking ``ask``. Pykka has no event loop, so its "same loop" producer/asker is the calling
thread and its cross variant uses one plain thread per producer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any, TypeVar

from .common import (
    CAPACITY,
    REP_TIMEOUT,
    Collect,
    CounterState,
    Echo,
    Inc,
    Place,
    Tally,
    check_echo,
    new_event_loop,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

__all__ = ("LoopThread", "PykkaDriver", "QueueActor", "QueueDriver")

T = TypeVar("T")


# -- the naive asyncio.Queue actor ---------------------------------------------------------


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

    def __init__(self, receive: Callable[[Any], Awaitable[Any]], maxsize: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self.tell = self.queue.put  # `await actor.tell(message)`, same loop only
        self._receive = receive
        self._task = self.loop.create_task(self._run())

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
        while True:
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


class LoopThread:
    """A thread running an event loop forever, the way an actor system's worker does."""

    def __init__(self, name: str, *, use_uvloop: bool) -> None:
        self._use_uvloop = use_uvloop
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(REP_TIMEOUT):
            raise RuntimeError(f"loop thread {self._thread.name} did not start")

    def run(self, coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
        """Run ``coro`` on this loop; await the result from the host loop."""
        assert self._loop is not None
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(REP_TIMEOUT)

    def _main(self) -> None:
        loop = new_event_loop(self._use_uvloop)
        asyncio.set_event_loop(loop)
        self._loop = loop
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


async def _spawn_counter(maxsize: int) -> QueueActor:
    state = CounterState()

    async def receive(message: Any) -> Any:
        return state.handle(message)

    return QueueActor(receive, maxsize)


async def _produce_same(actor: QueueActor, n: int) -> Tally:
    tell = actor.tell
    for i in range(n):
        await tell(Inc(i))
    return await actor.ask(Collect())


async def _produce_cross(actor: QueueActor, n: int) -> None:
    tell = actor.tell_threadsafe
    for i in range(n):
        tell(Inc(i))


async def _probe(ask: Callable[[object], Awaitable[Any]], k: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = [0] * k
    for i in range(k):
        message = Echo(i)
        start = clock()
        reply = await ask(message)
        samples[i] = clock() - start
        check_echo(reply, i)
    return samples


class QueueDriver:
    """The naive ``asyncio.Queue`` actor on uvloop or plain asyncio loop threads."""

    def __init__(self, *, use_uvloop: bool) -> None:
        self._use_uvloop = use_uvloop
        self._loops: list[LoopThread] = []
        self._actor: QueueActor | None = None
        self._place: Place = "same"

    async def start(self, place: Place, producers: int) -> None:
        for i in range(2):
            loop = LoopThread(f"bench-queue-{i}", use_uvloop=self._use_uvloop)
            loop.start()
            self._loops.append(loop)
        maxsize = CAPACITY if place == "same" else 0  # 0: unbounded
        self._actor = await self._loops[0].run(_spawn_counter(maxsize))
        self._place = place

    async def close(self) -> None:
        for loop in self._loops:
            loop.stop()

    async def tell(self, counts: Sequence[int]) -> Tally:
        actor = self._target()
        if self._place == "same":
            (n,) = counts
            return await self._loops[0].run(_produce_same(actor, n))
        await asyncio.gather(*(self._loops[1].run(_produce_cross(actor, n)) for n in counts))
        return await actor.ask_threadsafe(Collect())

    async def ask_latencies(self, k: int) -> list[int]:
        actor = self._target()
        if self._place == "same":
            return await self._loops[0].run(_probe(actor.ask, k))
        return await self._loops[1].run(_probe(actor.ask_threadsafe, k))

    def _target(self) -> QueueActor:
        if self._actor is None:
            raise RuntimeError("driver not started")
        return self._actor


# -- pykka ---------------------------------------------------------------------------------


def _pykka_counter() -> Any:
    """Start a pykka counting actor (pykka is imported only when it is benchmarked)."""
    import pykka

    class PykkaCounter(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.state = CounterState()

        def on_receive(self, message: Any) -> Any:
            return self.state.handle(message)

    return PykkaCounter.start()


def _tell_many(ref: Any, n: int) -> None:
    tell = ref.tell
    for i in range(n):
        tell(Inc(i))


def _in_threads(target: Callable[[int], None], counts: Sequence[int]) -> None:
    """Run ``target(n)`` for each ``n`` in its own thread; re-raise the first error."""
    errors: list[BaseException] = []

    def main(n: int) -> None:
        try:
            target(n)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=main, args=(n,), name="bench-producer") for n in counts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REP_TIMEOUT)
    if errors:
        raise errors[0]


class PykkaDriver:
    """``pykka.ThreadingActor``; the host thread blocks in pykka's calls (nothing else runs)."""

    def __init__(self) -> None:
        self._ref: Any = None
        self._place: Place = "same"

    async def start(self, place: Place, producers: int) -> None:
        self._ref = _pykka_counter()
        self._place = place

    async def close(self) -> None:
        if self._ref is not None:
            self._ref.stop(timeout=REP_TIMEOUT)

    async def tell(self, counts: Sequence[int]) -> Tally:
        ref = self._ref
        if self._place == "same":
            (n,) = counts
            _tell_many(ref, n)
        else:
            _in_threads(lambda n: _tell_many(ref, n), counts)
        tally: Tally = ref.ask(Collect(), timeout=REP_TIMEOUT)
        return tally

    async def ask_latencies(self, k: int) -> list[int]:
        ask = self._ref.ask
        clock = time.perf_counter_ns
        samples = [0] * k
        for i in range(k):
            message = Echo(i)
            start = clock()
            reply = ask(message)
            samples[i] = clock() - start
            check_echo(reply, i)
        return samples
