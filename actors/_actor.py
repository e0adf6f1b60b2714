"""The `Actor` base class that users subclass."""

from __future__ import annotations

import types
import typing
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from ._cell import Cell
    from ._ref import ActorRef
    from ._system import ActorSystem

__all__ = ("Actor", "accepted_types", "constructing")

M = TypeVar("M", contravariant=True)

# Set by the runtime while it calls a spawn factory on the actor's home loop, so that
# Actor.__new__ can bind the new instance to its cell before the user's __init__ runs.
constructing: ContextVar[Cell | None] = ContextVar("actors_constructing", default=None)


class Actor(Generic[M]):
    """Base class of actors. ``M`` is the type (usually a union) of messages it accepts.

    Subclass it, keep state in ``self``, and handle messages in `receive`. The instance is
    never handed out: `ActorSystem.spawn` returns an `ActorRef`, the only handle. The runtime
    calls ``receive`` one message at a time on the actor's home loop; its return value is the
    reply to `ActorRef.ask`.

    Example:
        ```python
        class Counter(Actor[Add | Get]):
            def __init__(self) -> None:
                self.total = 0

            async def receive(self, message: Add | Get) -> int | None:
                match message:
                    case Add(n):
                        self.total += n
                    case Get():
                        return self.total
                return None

        counter = await system.spawn(Counter)
        ```
    """

    __actors_accepts__: ClassVar[tuple[type, ...] | None] = None
    _actors_cell: Cell

    def __new__(cls, *args: Any, **kwargs: Any) -> typing.Self:
        cell = constructing.get()
        if cell is None:
            raise TypeError(
                f"{cls.__qualname__} is an Actor: create it with "
                f"`await system.spawn({cls.__qualname__})`, which returns its ActorRef; "
                "actor instances are never handed out"
            )
        self = super().__new__(cls)
        self._actors_cell = cell
        cell.bind(cls)
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        accepts = _declared_message_types(cls)
        if accepts is not _INHERIT:
            cls.__actors_accepts__ = accepts

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own `ActorRef` (to pass to others, or to send to itself)."""
        return self._actors_cell.ref

    @property
    def system(self) -> ActorSystem:
        """The `ActorSystem` this actor lives in."""
        return self._actors_cell.system

    @property
    def name(self) -> str:
        """This actor's name."""
        return self._actors_cell.name

    def stop(self) -> None:
        """Ask this actor to stop after it has handled what its mailbox already accepted.

        Returns at once; new messages are refused from now on, and ``on_stop`` runs after
        the last one. From outside, use ``await ref.stop()``.

        Example:
            ```python
            async def receive(self, message: Job | Quit) -> None:
                if isinstance(message, Quit):
                    self.stop()
            ```
        """
        self._actors_cell.request_stop()

    async def receive(self, message: M) -> Any:
        """Handle one message; the return value is the reply when the message was asked.

        An exception raised here fails the actor (it stops) and, for an ask, is raised in
        the asker too. The reply must be sendable.

        Example:
            ```python
            async def receive(self, message: Add | Total) -> int | None:
                match message:
                    case Add(n):
                        self.total += n
                    case Total():
                        return self.total
                return None
            ```
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} must define `async def receive(self, message)`"
        )

    async def on_start(self) -> None:
        """Runs on the home loop before the first message; ``spawn`` returns after it.

        An exception here makes ``spawn`` raise it, and the actor never runs.

        Example:
            ```python
            async def on_start(self) -> None:
                self.conn = await connect(self.url)
            ```
        """

    async def on_stop(self) -> None:
        """Runs on the home loop after the last message, when the actor stops or fails.

        Example:
            ```python
            async def on_stop(self) -> None:
                await self.conn.close()
            ```
        """


_INHERIT: Any = object()


def _declared_message_types(cls: type) -> tuple[type, ...] | None:
    """The message classes named in ``class X(Actor[A | B])``; None accepts anything."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Actor):
            (declared,) = typing.get_args(base)
            return accepted_types(declared)
    inherit: tuple[type, ...] | None = _INHERIT
    return inherit


def accepted_types(declared: object) -> tuple[type, ...] | None:
    """Flatten a message type annotation into classes for ``isinstance``; None for "any"."""
    if declared is Any or declared is object or isinstance(declared, TypeVar):
        return None
    origin = typing.get_origin(declared)
    if origin is typing.Union or origin is types.UnionType:
        flat: list[type] = []
        for arg in typing.get_args(declared):
            more = accepted_types(arg)
            if more is None:
                return None
            flat.extend(more)
        return tuple(flat)
    if origin is typing.Annotated:
        return accepted_types(typing.get_args(declared)[0])
    if origin is typing.Literal:
        values: tuple[object, ...] = typing.get_args(declared)
        return tuple({type(v) for v in values})
    if isinstance(origin, type):
        return (origin,)
    if isinstance(declared, type):
        return (declared,)
    return None
