"""thespian, on its in-process base (``simpleSystemBase``).

The simple base runs every actor in the calling thread: ``ActorSystem.tell`` delivers the
message and every message that follows from it, to completion, before it returns; an
``ask`` runs until the reply comes. Thespian's multi-process bases put every actor in its
own process and would measure pickling and sockets instead; the simple base is the fastest
thespian there is. Messages are passed by reference (no copy).

* tell/ask: the host thread is the producer (``system.tell``) or asker (``system.ask``).
* Savina programs: each actor a thespian ``Actor`` that runs the portable handler to
  completion (`drive`). Sends go through the thespian actor handling the current message
  (``self.send(address, message)``), which the simple base makes unambiguous: it handles
  one message at a time, in one thread. Spawning is ``createActor`` followed by an init
  message that carries the behaviour (thespian actors take no constructor arguments).
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

from ..common import REP_TIMEOUT, Collect, CounterState, Echo, Inc, Setup, Tally, check_echo
from ..portable import READY, START, Outcome, drive

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..portable import Behaviour
    from ..savina import Program

__all__ = ("ThespianDriver",)


class _Init:
    __slots__ = ("args", "cls", "platform")

    def __init__(self, cls: type[Behaviour], args: tuple[Any, ...], platform: _Platform) -> None:
        self.cls = cls
        self.args = args
        self.platform = platform


class _State:
    current: Any = None  # the thespian actor handling the current message


_classes: dict[str, Any] = {}


def _actor_classes() -> dict[str, Any]:
    """Thespian actor classes, made once thespian is imported."""
    if not _classes:
        from thespian.actors import Actor, ActorSystemMessage

        class Counter(Actor):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.state = CounterState()

            def receiveMessage(self, message: Any, sender: Any) -> None:
                if isinstance(message, ActorSystemMessage):
                    return
                reply = self.state.handle(message)
                if reply is not None:
                    self.send(sender, reply)

        class Host(Actor):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.handle: Any = None
                self.platform: Any = None

            def receiveMessage(self, message: Any, sender: Any) -> None:
                if type(message) is _Init:
                    self.platform = message.platform
                    behaviour = message.cls(*message.args)
                    behaviour.ctx = _Context(self, message.platform)
                    self.handle = behaviour.receive
                    return
                if isinstance(message, ActorSystemMessage):
                    return
                previous, _State.current = _State.current, self
                try:
                    drive(self.handle(message))
                except Exception as error:
                    self.platform.outcome.fail(error)
                finally:
                    _State.current = previous

        class Idle(Actor):  # type: ignore[misc]
            def receiveMessage(self, message: Any, sender: Any) -> None:
                pass

        _classes.update(Counter=Counter, Host=Host, Idle=Idle)
    return _classes


class _Ref:
    __slots__ = ("address",)

    def __init__(self, address: Any) -> None:
        self.address = address

    def send(self, message: object) -> Any:
        _State.current.send(self.address, message)
        return READY


class _Context:
    """A behaviour's ``ctx``. It refers to its actor weakly, as `actors`' adapter does: the
    actor holds the behaviour, and a strong link back would add a reference cycle per actor
    that the program itself does not need (docs/benchmarks.md, "The fourth round")."""

    __slots__ = ("_actor", "_platform", "self_ref")

    def __init__(self, actor: Any, platform: _Platform) -> None:
        self.self_ref = _Ref(actor.myAddress)
        self._actor = weakref.ref(actor)
        self._platform = platform

    async def spawn(self, cls: type[Behaviour], *args: Any) -> _Ref:
        actor = self._actor()
        address = actor.createActor(_actor_classes()["Host"])
        actor.send(address, _Init(cls, args, self._platform))
        return _Ref(address)

    def stop(self) -> None:
        from thespian.actors import ActorExitRequest

        actor = self._actor()
        actor.send(actor.myAddress, ActorExitRequest())

    def finish(self, value: object) -> None:
        self._platform.outcome.settle(value)


class _Platform:
    def __init__(self) -> None:
        self.outcome = Outcome()


class ThespianDriver:
    """thespian's ``simpleSystemBase``, driven from the host thread."""

    def __init__(self) -> None:
        self._system: Any = None
        self._counter: Any = None

    async def start(self, setup: Setup) -> None:
        from thespian.actors import ActorSystem

        self._system = ActorSystem("simpleSystemBase")
        self._counter = self._system.createActor(_actor_classes()["Counter"])

    async def close(self) -> None:
        if self._system is not None:
            self._system.shutdown()

    async def tell(self, counts: Sequence[int]) -> Tally:
        tell, counter = self._system.tell, self._counter
        for n in counts:
            for i in range(n):
                tell(counter, Inc(i))
        tally: Tally = self._system.ask(counter, Collect(), REP_TIMEOUT)
        return tally

    async def ask_latencies(self, k: int) -> list[int]:
        ask, counter = self._system.ask, self._counter
        clock = time.perf_counter_ns
        samples = [0] * k
        for i in range(k):
            message = Echo(i)
            start = clock()
            reply = ask(counter, message, REP_TIMEOUT)
            samples[i] = clock() - start
            check_echo(reply, i)
        return samples

    async def run_program(self, program: Program, n: int, timeout: float) -> object:
        platform = _Platform()
        system = self._system
        main = system.createActor(_actor_classes()["Host"])
        system.tell(main, _Init(program.main, (n,), platform))
        system.tell(main, START)  # runs the whole program before it returns
        return platform.outcome.result(0)

    async def spawn_many(self, k: int) -> float:
        from thespian.actors import ActorExitRequest

        system, idle = self._system, _actor_classes()["Idle"]
        start = time.perf_counter()
        addresses = [system.createActor(idle) for _ in range(k)]
        seconds = time.perf_counter() - start
        for address in addresses:
            system.tell(address, ActorExitRequest())
        return seconds

    def depth(self) -> int:
        return 0
