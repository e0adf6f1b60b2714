"""The callback actor: a synchronous handler invoked from a deque, the practical ceiling.

No coroutine per message, no lock, no bound: a send appends to a deque and, if the actor is
idle, schedules one drain with ``loop.call_soon``; the drain calls the handler for every
message waiting. Nothing in pure Python moves a message from one object to another for
less, so this is the ceiling any Python actor library is measured against. It is not a
usable library (no backpressure, no cross-thread sends, a handler cannot await), which is
why it is not counted among the peers `actors` must beat.

* tell/ask (same loop only): producer tasks call the synchronous ``tell`` and yield to the
  loop every `CAPACITY` messages, so at most that many wait (the same bound as the others).
* Savina programs: one run queue of ``(handler, message)`` pairs for all actors, drained in
  a loop; a handler's coroutine never suspends (its sends return `READY`), so it is run to
  completion with `drive`, which costs about what ``await receive(m)`` does elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Any

from ..common import CAPACITY, Collect, CounterState, Inc, Setup, Tally
from ..portable import READY, START, Outcome, drive
from .queue_actor import probe

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

    from ..portable import Behaviour
    from ..savina import Program

__all__ = ("CallbackDriver",)


class CallbackActor:
    """A deque and a synchronous handler, drained by one loop callback per burst."""

    __slots__ = ("_handle", "_loop", "_queue", "_scheduled")

    def __init__(self, handle: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[Any] = collections.deque()
        self._handle = handle
        self._scheduled = False

    def tell(self, message: object) -> None:
        self._queue.append(message)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def ask(self, message: object) -> Awaitable[Any]:
        future = self._loop.create_future()
        self.tell((message, future))
        return future

    def _drain(self) -> None:
        queue, handle = self._queue, self._handle
        popleft = queue.popleft
        while queue:
            item = popleft()
            if type(item) is tuple:
                message, future = item
                future.set_result(handle(message))
            else:
                handle(item)
        self._scheduled = False


async def _produce(actor: CallbackActor, n: int) -> None:
    tell = actor.tell
    for base in range(0, n, CAPACITY):
        for i in range(base, min(n, base + CAPACITY)):
            tell(Inc(i))
        await asyncio.sleep(0)  # let the drain run: at most CAPACITY messages wait


# -- the portable model (Savina programs) ----------------------------------------------------


class _Ref:
    __slots__ = ("_queue", "receive")

    def __init__(self, queue: collections.deque[Any]) -> None:
        self._queue = queue
        self.receive: Any = None

    def send(self, message: object) -> Any:
        self._queue.append((self.receive, message))
        return READY


class _Context:
    __slots__ = ("_platform", "self_ref")

    def __init__(self, ref: _Ref, platform: _Platform) -> None:
        self.self_ref = ref
        self._platform = platform

    async def spawn(self, cls: type[Behaviour], *args: Any) -> _Ref:
        return self._platform.spawn(cls, args)

    def stop(self) -> None:
        pass  # nothing to stop: an actor is an object in the run queue's messages

    def finish(self, value: object) -> None:
        self._platform.outcome.settle(value)


class _Platform:
    def __init__(self) -> None:
        self.outcome = Outcome()
        self.queue: collections.deque[Any] = collections.deque()

    def spawn(self, cls: type[Behaviour], args: tuple[Any, ...]) -> _Ref:
        ref = _Ref(self.queue)
        behaviour = cls(*args)
        behaviour.ctx = _Context(ref, self)
        ref.receive = behaviour.receive
        return ref

    def run(self) -> None:
        queue = self.queue
        popleft = queue.popleft
        while queue:
            receive, message = popleft()
            drive(receive(message))


class CallbackDriver:
    """The callback actor on the host loop (it has no cross-loop form)."""

    def __init__(self) -> None:
        self._actor: CallbackActor | None = None

    async def start(self, setup: Setup) -> None:
        if setup.place != "same":
            raise ValueError("the callback actor only has a same-loop form")
        self._actor = CallbackActor(CounterState().handle)

    async def close(self) -> None:
        pass

    async def tell(self, counts: Sequence[int]) -> Tally:
        actor = self._target()
        await asyncio.gather(*(_produce(actor, n) for n in counts))
        tally: Tally = await actor.ask(Collect())
        return tally

    async def ask_latencies(self, k: int) -> list[int]:
        return await probe(self._target().ask, k)

    async def run_program(self, program: Program, n: int, timeout: float) -> object:
        platform = _Platform()
        main = platform.spawn(program.main, (n,))
        main.send(START)
        platform.run()
        return platform.outcome.result(0)

    async def spawn_many(self, k: int) -> float:
        start = time.perf_counter()
        actors = [CallbackActor(_ignore) for _ in range(k)]
        seconds = time.perf_counter() - start
        del actors
        return seconds

    def depth(self) -> int:
        return 0

    def _target(self) -> CallbackActor:
        if self._actor is None:
            raise RuntimeError("driver not started")
        return self._actor


def _ignore(message: object) -> None:
    return None
