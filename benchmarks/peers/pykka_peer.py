"""pykka: ``pykka.ThreadingActor``, a thread per actor, with its own ``tell`` and ``ask``.

Pykka has no event loop: its "same loop" producer or asker is the calling thread, and its
cross variants use one plain thread per producer. In Savina programs each actor is a
``ThreadingActor`` whose ``on_receive`` runs the portable handler to completion (`drive`);
a ref's ``send`` is pykka's ``tell``. pykka is imported only when it is benchmarked.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ..common import (
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
from ..portable import READY, START, Outcome, drive

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..portable import Behaviour
    from ..savina import Program

__all__ = ("PykkaDriver", "in_threads")


def _pykka_counter(slow: bool) -> Any:
    import pykka

    class PykkaCounter(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.state = SlowCounterState() if slow else CounterState()

        def on_receive(self, message: Any) -> Any:
            return self.state.handle(message)

    return PykkaCounter.start()


def _tell_many(ref: Any, n: int) -> None:
    tell = ref.tell
    for i in range(n):
        tell(Inc(i))


def in_threads(target: Callable[[int], None], counts: Sequence[int]) -> None:
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


# -- the portable model (Savina programs) ----------------------------------------------------


class _Ref:
    __slots__ = ("ref",)

    def __init__(self, ref: Any) -> None:
        self.ref = ref

    def send(self, message: object) -> Any:
        self.ref.tell(message)
        return READY


_host_class: Any = None


def _host() -> Any:
    """The pykka actor class that hosts a behaviour (made once, on first use)."""
    global _host_class
    if _host_class is None:
        import pykka

        class Host(pykka.ThreadingActor):
            def __init__(self, cls: type[Behaviour], args: Any, platform: _Platform) -> None:
                super().__init__()
                self.platform = platform
                behaviour = cls(*args)
                behaviour.ctx = _Context(self, platform)
                self.handle = behaviour.receive

            def on_receive(self, message: Any) -> Any:
                try:
                    drive(self.handle(message))
                except Exception as error:
                    self.platform.outcome.fail(error)

        _host_class = Host
    return _host_class


class _Context:
    """A behaviour's ``ctx``. It refers to its actor weakly, as `actors`' adapter does: the
    actor holds the behaviour, and a strong link back would add a reference cycle per actor
    that the program itself does not need (docs/benchmarks.md, "The fourth round")."""

    __slots__ = ("_actor", "_platform", "self_ref")

    def __init__(self, actor: Any, platform: _Platform) -> None:
        self.self_ref = _Ref(actor.actor_ref)
        self._actor = weakref.ref(actor)
        self._platform = platform

    async def spawn(self, cls: type[Behaviour], *args: Any) -> _Ref:
        return self._platform.spawn(cls, args)

    def stop(self) -> None:
        self._actor().stop()

    def finish(self, value: object) -> None:
        self._platform.outcome.settle(value)


class _Platform:
    def __init__(self) -> None:
        self.outcome = Outcome()

    def spawn(self, cls: type[Behaviour], args: tuple[Any, ...]) -> _Ref:
        return _Ref(_host().start(cls, args, self))


class PykkaDriver:
    """``pykka.ThreadingActor``; the host thread blocks in pykka's calls (nothing else runs)."""

    def __init__(self) -> None:
        self._ref: Any = None
        self._setup = Setup()

    async def start(self, setup: Setup) -> None:
        self._setup = setup
        if setup.producers or setup.slow:
            self._ref = _pykka_counter(setup.slow)

    async def close(self) -> None:
        if self._ref is not None:
            self._ref.stop(timeout=REP_TIMEOUT)
        import pykka

        pykka.ActorRegistry.stop_all(timeout=REP_TIMEOUT)

    async def tell(self, counts: Sequence[int]) -> Tally:
        ref = self._ref
        if self._setup.place == "same" and len(counts) == 1:
            _tell_many(ref, counts[0])
        else:
            in_threads(lambda n: _tell_many(ref, n), counts)
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

    async def run_program(self, program: Program, n: int, timeout: float) -> object:
        platform = _Platform()
        platform.spawn(program.main, (n,)).send(START)
        return platform.outcome.result(timeout)

    async def spawn_many(self, k: int) -> float:
        import pykka

        class Idle(pykka.ThreadingActor):
            pass

        start = time.perf_counter()
        refs = [Idle.start() for _ in range(k)]
        seconds = time.perf_counter() - start
        for ref in refs:
            ref.stop(timeout=REP_TIMEOUT)
        return seconds

    def depth(self) -> int:
        inbox = getattr(self._ref, "actor_inbox", None)
        return inbox.qsize() if inbox is not None else 0
