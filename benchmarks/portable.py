"""A portable actor model: the Savina programs are written once, against this.

A program is a set of `Behaviour` classes: an ``async def receive(self, message)`` and
plain attributes for state. A behaviour reaches the outside only through ``self.ctx`` (a
`Context`): its own ref, ``spawn``, ``stop`` and ``finish`` (hand the program's result to
the driver). A ref has one method, ``send``, whose result is awaited: ``await
ref.send(message)``. Every implementation (`actors`, the naive ``asyncio.Queue`` actor,
the callback actor, pykka, thespian, xoscar) provides these with its own native machinery
and as little glue as it can:

* `actors`: the behaviour class is mixed into an `actors.Actor` subclass, so its
  ``receive`` *is* the actor's ``receive``, and a ref is a plain `actors.ActorRef`:
  ``await ref.send(m)`` is the library's own call, with no wrapper.
* the ``asyncio.Queue`` actor: a ref's ``send`` is the queue's own ``put``.
* the synchronous peers (callback actor, pykka, thespian): their send does not wait, so a
  ref's ``send`` does the native call and returns `READY`, an awaitable that is already
  done; a handler's coroutine never suspends and is run to completion with `drive`.
* xoscar: a ref's ``send`` is xoscar's own ``ref.deliver.tell(message)``.

Programs send frozen msgspec Structs. Fields holding refs are annotated `Ref`, which is
`actors.ActorRef`: what an `actors` user writes, so that the library's sendable check judges
those fields once per type, as it would in an application. The other implementations put
their own ref objects there; msgspec does not check field types on construction.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

import actors

if TYPE_CHECKING:
    from collections.abc import Awaitable, Coroutine, Generator

__all__ = (
    "EXIT",
    "READY",
    "START",
    "Behaviour",
    "Context",
    "Exit",
    "Outcome",
    "Ref",
    "Start",
    "drive",
)

Ref = actors.ActorRef[Any]
"""The annotation of a field that holds a ref (see the module docstring)."""


class Start(msgspec.Struct, frozen=True):
    """The driver sends it to a program's main behaviour to start the run."""


class Exit(msgspec.Struct, frozen=True):
    """Asks a behaviour to stop (programs stop every actor they made before finishing)."""


START: Final = Start()
EXIT: Final = Exit()


class PortableRef(Protocol):
    def send(self, message: Any) -> Awaitable[None]: ...


class Context(Protocol):
    """What a behaviour may do besides handling its message."""

    self_ref: Any  # this actor's ref, to put in messages

    async def spawn(self, cls: type[Behaviour], *args: Any) -> Any:
        """A new actor running ``cls(*args)``, ready to receive; returns its ref."""
        ...

    def stop(self) -> None:
        """Stop this actor after the current message."""
        ...

    def finish(self, value: object) -> None:
        """Hand the program's result to the driver (the run ends when it has it)."""
        ...


class Behaviour:
    """Base of a program's actors. Subclasses define ``receive`` and their own ``__init__``.

    Attribute names that `actors.Actor` defines (``ref``, ``name``, ``system``, ``parent``,
    ``children``, ``spawn``, ``stop``, ``watch``, ``on_start``, ...) must not be used: with
    `actors` the behaviour is mixed into an Actor.
    """

    ctx: Context

    async def receive(self, message: Any) -> None:
        raise NotImplementedError


class _Ready:
    """An awaitable that is already done: what a send that never waits returns."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


READY: Final = _Ready()


def drive(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a handler's coroutine to completion; it must not suspend (synchronous peers)."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a handler suspended on a synchronous peer")


class Outcome:
    """The result of one program run, settled once from any thread."""

    __slots__ = ("_future", "_lock")

    def __init__(self) -> None:
        self._future: concurrent.futures.Future[object] = concurrent.futures.Future()
        self._lock = threading.Lock()

    @property
    def future(self) -> concurrent.futures.Future[object]:
        return self._future

    def done(self) -> bool:
        return self._future.done()

    def settle(self, value: object) -> None:
        with self._lock:
            if not self._future.done():
                self._future.set_result(value)

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if not self._future.done():
                self._future.set_exception(error)

    def result(self, timeout: float) -> object:
        return self._future.result(timeout)
