"""xoscar, with an in-process actor pool (``create_actor_pool(n_process=0)``).

The pool lives on the host loop of the benchmark's world, in this process; actors in it
handle one message at a time. Sub-process pools would add pickling and sockets to every
message, so the in-process pool is the fastest xoscar there is.

* tell/ask: the host task calls the counter's ``handle`` method with ``.tell(message)``
  (fire and forget, still awaited until delivered) or as a call (an ask).
* Savina programs: each actor an ``xoscar.Actor`` whose ``deliver`` method awaits the
  portable handler; a ref's ``send`` is ``ref.deliver.tell(message)``. Spawning is
  ``xoscar.create_actor`` in the same pool; stopping, ``xoscar.destroy_actor`` in a task
  once the handler has returned.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import weakref
from typing import TYPE_CHECKING, Any

from ..common import Collect, CounterState, Echo, Inc, Setup, Tally, check_echo
from ..portable import START, Outcome

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..portable import Behaviour
    from ..savina import Program

__all__ = ("XoscarDriver",)

_platforms: dict[int, _Platform] = {}  # actors find their platform by key (args may be pickled)
_keys = itertools.count()
_classes: dict[str, Any] = {}


def _actor_classes() -> dict[str, Any]:
    if not _classes:
        import xoscar

        class Counter(xoscar.Actor):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.state = CounterState()

            async def handle(self, message: Any) -> Any:
                return self.state.handle(message)

        class Host(xoscar.Actor):  # type: ignore[misc]
            def __init__(self, cls: type[Behaviour], args: tuple[Any, ...], key: int) -> None:
                super().__init__()
                self.platform = _platforms[key]
                behaviour = cls(*args)
                self.behaviour = behaviour

            async def __post_create__(self) -> None:
                self.behaviour.ctx = _Context(self, self.platform)
                self.handle = self.behaviour.receive

            async def deliver(self, message: Any) -> None:
                try:
                    await self.handle(message)
                except Exception as error:
                    self.platform.outcome.fail(error)

        class Idle(xoscar.Actor):  # type: ignore[misc]
            pass

        _classes.update(Counter=Counter, Host=Host, Idle=Idle)
    return _classes


class _Ref:
    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def send(self, message: object) -> Any:
        return self.ref.deliver.tell(message)


class _Context:
    """A behaviour's ``ctx``. It refers to its actor weakly, as `actors`' adapter does: the
    actor holds the behaviour, and a strong link back would add a reference cycle per actor
    that the program itself does not need (docs/benchmarks.md, "The fourth round")."""

    __slots__ = ("_actor", "_platform", "self_ref")

    def __init__(self, actor: Any, platform: _Platform) -> None:
        self.self_ref = _Ref(actor.ref())
        self._actor = weakref.ref(actor)
        self._platform = platform

    async def spawn(self, cls: type[Behaviour], *args: Any) -> _Ref:
        return await self._platform.spawn(cls, args)

    def stop(self) -> None:
        import xoscar

        task = asyncio.get_running_loop().create_task(xoscar.destroy_actor(self._actor().ref()))
        self._platform.tasks.add(task)
        task.add_done_callback(self._platform.tasks.discard)

    def finish(self, value: object) -> None:
        self._platform.outcome.settle(value)


class _Platform:
    def __init__(self, address: str) -> None:
        self.outcome = Outcome()
        self.address = address
        self.key = next(_keys)
        self.tasks: set[asyncio.Task[Any]] = set()
        _platforms[self.key] = self

    async def spawn(self, cls: type[Behaviour], args: tuple[Any, ...]) -> _Ref:
        import xoscar

        host = _actor_classes()["Host"]
        return _Ref(await xoscar.create_actor(host, cls, args, self.key, address=self.address))

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        _platforms.pop(self.key, None)


class XoscarDriver:
    """xoscar with an in-process pool on the world's host loop."""

    def __init__(self) -> None:
        self._pool: Any = None
        self._counter: Any = None

    async def start(self, setup: Setup) -> None:
        import xoscar

        self._pool = await xoscar.create_actor_pool("127.0.0.1:0", n_process=0)
        self._counter = await xoscar.create_actor(
            _actor_classes()["Counter"], address=self._address()
        )

    def _address(self) -> str:
        return str(self._pool.external_address)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.stop()

    async def tell(self, counts: Sequence[int]) -> Tally:
        tell = self._counter.handle.tell
        for n in counts:
            for i in range(n):
                await tell(Inc(i))
        tally: Tally = await self._counter.handle(Collect())
        return tally

    async def ask_latencies(self, k: int) -> list[int]:
        ask = self._counter.handle
        clock = time.perf_counter_ns
        samples = [0] * k
        for i in range(k):
            message = Echo(i)
            start = clock()
            reply = await ask(message)
            samples[i] = clock() - start
            check_echo(reply, i)
        return samples

    async def run_program(self, program: Program, n: int, timeout: float) -> object:
        platform = _Platform(self._address())
        try:
            main = await platform.spawn(program.main, (n,))
            await main.send(START)
            async with asyncio.timeout(timeout):
                return await asyncio.wrap_future(platform.outcome.future)
        finally:
            await platform.close()

    async def spawn_many(self, k: int) -> float:
        import xoscar

        idle, address = _actor_classes()["Idle"], self._address()
        start = time.perf_counter()
        refs = [await xoscar.create_actor(idle, address=address) for _ in range(k)]
        seconds = time.perf_counter() - start
        for ref in refs:
            await xoscar.destroy_actor(ref)
        return seconds

    def depth(self) -> int:
        return 0
