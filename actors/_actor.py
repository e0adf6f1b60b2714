"""The `Actor` base class that users subclass."""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import types
import typing
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, TypeVar, TypeVarTuple

import anyio.to_thread

from ._ref import cell_of
from ._strategy import OneForOne, Restart, SupervisionStrategy
from ._validation import check_seconds

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ._cell import Cell
    from ._ref import ActorRef, Ref
    from ._strategy import Terminated
    from ._system import ActorSystem, Placement
    from ._timers import Timer

__all__ = (
    "Actor",
    "accepted_types",
    "constructing",
    "is_sync_handler",
    "message_type",
    "message_types",
)

M = TypeVar("M", contravariant=True)
C = TypeVar("C")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

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
    # The declared message type while it names a class not defined yet (``Actor["Pong"]``,
    # Pong further down the module), else None: resolved by `message_types` at the first
    # construction. Set on the declaring class only; subclasses see it through the MRO.
    __actors_unresolved__: ClassVar[object] = None
    # Message types already checked for this class (accepted, and sendable whatever the
    # value): one set per class, shared by its actors; see `Cell.admit`.
    __actors_admitted__: ClassVar[set[type]] = set()
    # Whether ``receive`` is a plain function the runtime calls without awaiting: decided
    # once per class, at its creation (`is_sync_handler`); the run loop branches on it.
    __actors_sync__: ClassVar[bool] = True
    # Whether ``on_terminated`` is a plain function, called without awaiting: a synchronous
    # actor's drain then handles a watch notice in place, without a run task.
    __actors_terminated_sync__: ClassVar[bool] = True
    # Whether no class after Actor in this class's MRO but ``object`` defines ``__new__``:
    # then ``object.__new__`` is what ``super().__new__`` finds, called without making a
    # super object (a spawn's share: docs/benchmarks.md, "The fourth round"). Decided
    # per class, at its creation (`__init_subclass__`).
    __actors_plain_new__: ClassVar[bool] = True
    _actors_cell: Cell

    stash_capacity: ClassVar[int] = 1000
    """How many messages `stash` may hold at once (a class attribute); one more is refused
    with `StashFull`."""

    cancel_abandoned: ClassVar[bool] = False
    """Whether a handler answering an ask is cancelled when its asker gives up (a class
    attribute; default False).

    Whatever its value, an ask whose asker has given up (timeout, cancellation) while it
    was still queued is skipped. A handler already running runs to its end by default,
    since an actor's state must stay consistent, and its reply is dropped. With True it
    gets a cancellation at its next ``await`` instead (anyio cancel scopes inside it are
    respected; its own pending asks are abandoned in turn), and the actor carries on with
    its next message: set it only where a handler can be interrupted at any ``await``
    without leaving the state half-changed. Synchronous handlers never await and always
    run to their end.

    Example:
        ```python
        class Search(actors.Actor[Query]):
            cancel_abandoned = True  # a search nobody waits for is not worth finishing
        ```
    """

    supervision: SupervisionStrategy = OneForOne()
    """How this actor supervises its children (a class attribute; default `OneForOne`)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> typing.Self:
        cell = constructing.get()
        if cell is None:
            raise TypeError(
                f"{cls.__qualname__} is an Actor: create it with "
                f"`await system.spawn({cls.__qualname__})`, which returns its ActorRef; "
                "actor instances are never handed out"
            )
        if cls.__actors_unresolved__ is not None:
            message_types(cls)  # before bind: no message is checked against a pending type
        self = _object_new(cls) if cls.__actors_plain_new__ else super().__new__(cls)
        self._actors_cell = cell
        cell.bind(cls)
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_awaited_hooks(cls)
        cls.__actors_sync__ = is_sync_handler(cls, "receive", cls.receive)
        cls.__actors_terminated_sync__ = is_sync_handler(cls, "on_terminated", cls.on_terminated)
        mro = cls.__mro__
        cls.__actors_plain_new__ = not any(
            "__new__" in vars(base) for base in mro[mro.index(Actor) + 1 : -1]
        )
        declared = _declared_message_type(cls)
        if declared is not _INHERIT:
            try:
                cls.__actors_accepts__ = accepted_types(declared, _namespace_of(cls))
                cls.__actors_unresolved__ = None
            except _Unresolved:
                # A forward reference to a class defined later (or nowhere): resolved at the
                # first spawn. Until then it accepts nothing, should anything read it early.
                cls.__actors_accepts__ = ()
                cls.__actors_unresolved__ = declared
        cls.__actors_admitted__ = set()  # its own, never the base class's

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

    @property
    def parent(self) -> ActorRef[Any]:
        """The ref of the actor that supervises this one (``/user`` for top-level actors)."""
        parent = self._actors_cell.parent
        if parent is None:  # only the root guardian, which user code never sees
            raise RuntimeError(f"actor {self._actors_cell.path} is the root: it has no parent")
        return parent.ref

    @property
    def children(self) -> list[ActorRef[Any]]:
        """This actor's live children, in start order.

        Example:
            ```python
            for child in self.children:
                await child.send(Flush())
            ```
        """
        cell = self._actors_cell
        return [child.ref for child in cell.system.tree.children_of(cell)]

    async def spawn(
        self,
        factory: Callable[[], Actor[C]],
        *,
        name: str | None = None,
        capacity: int | None = None,
        placement: Placement = None,
        restart: Restart = Restart.PERMANENT,
    ) -> ActorRef[C]:
        """Start a child that this actor supervises; the same options as `ActorSystem.spawn`.

        The child's path is this actor's path plus its name, which must be unique among
        its siblings. The child is stopped before this actor's ``on_stop`` runs, and is
        restarted according to ``restart`` and this actor's `supervision` strategy.

        Raises:
            DuplicateName: a sibling has this name.
            ActorStopped: this actor is stopping.
            Exception: whatever the child's factory or ``on_start`` raised.

        Cancellation: as for `ActorSystem.spawn`.

        Example:
            ```python
            async def on_start(self) -> None:
                self.db = await self.spawn(Database, name="db")
                self.cache = await self.spawn(Cache, name="cache", restart=Restart.TRANSIENT)
            ```
        """
        cell = self._actors_cell
        return await cell.system.spawn_child(
            cell, factory, name=name, capacity=capacity, placement=placement, restart=restart
        )

    def spawn_soon(
        self,
        factory: Callable[[], Actor[C]],
        *,
        name: str | None = None,
        capacity: int | None = None,
        placement: Placement = None,
        restart: Restart = Restart.PERMANENT,
    ) -> ActorRef[C]:
        """`spawn` without waiting: start a child and return its ref at once.

        For synchronous handlers (``def receive``), which cannot await `spawn`. The factory
        runs now, as for `spawn`; a child with an ``on_start`` runs it afterwards, and the
        messages sent to it meanwhile wait in its mailbox. Nobody waits for the start, so a
        factory or ``on_start`` that raises does not raise here: the child ends failed (not
        restarted), the error is logged, and watchers get `Terminated` with it. Unlike
        `spawn` it never yields to the event loop.

        Raises:
            DuplicateName: a sibling has this name.
            ActorStopped: this actor is stopping.
            RuntimeError: not called from this actor's own handlers or hooks.

        Example:
            ```python
            def receive(self, message: Job) -> None:
                worker = self.spawn_soon(Worker)
                worker.try_send(message)
            ```
        """
        cell = self._actors_cell
        cell.check_own("spawn_soon", in_init=False)  # in __init__, the parent is not built yet
        return cell.system.spawn_child_soon(
            cell, factory, name=name, capacity=capacity, placement=placement, restart=restart
        )

    def watch(self, ref: Ref[Any]) -> None:
        """Get `on_terminated` when ``ref``'s actor stops for good (at once if it already has).

        Any actor may watch any other, not only its children, and with a cluster an actor on
        another node (its node's end counts as its end). Watching twice is the same as once.
        Call it from this actor's own handlers or hooks.

        Example:
            ```python
            async def on_start(self) -> None:
                self.watch(self.db)
            ```
        """
        cell = self._actors_cell
        _check_home(cell, "watch")
        cell.system.tree.watch(cell, cell_of(ref))

    def unwatch(self, ref: Ref[Any]) -> None:
        """Stop watching ``ref``: no `on_terminated` for it after this returns, even if due.

        Example:
            ```python
            self.unwatch(self.db)
            ```
        """
        cell = self._actors_cell
        _check_home(cell, "unwatch")
        cell.system.tree.unwatch(cell, cell_of(ref))

    def send_after(self, delay: float, message: M) -> Timer:
        """Deliver ``message`` to this actor once, ``delay`` seconds from now.

        The tick is checked like a send (type, sendability) now, and handled by
        ``receive`` like any message. Ticks travel in the control lane: a full mailbox does
        not lose them, and they go before messages already queued. The timer is cancelled
        when the actor stops or restarts. Call it from the actor's own handlers or hooks.

        Raises:
            ValueError: a delay that is negative, nan or infinite (TypeError: not a number).
            MessageTypeError, NotSendableError: as for `ActorRef.send`.

        Example:
            ```python
            async def receive(self, message: Start | Timeout) -> None:
                if isinstance(message, Start):
                    self.deadline = self.send_after(5.0, Timeout())
            ```
        """
        check_seconds("send_after delay", delay)
        cell = self._actors_cell
        _check_home(cell, "send_after")
        return cell.start_timer(message, delay, None)

    def send_every(self, interval: float, message: M) -> Timer:
        """Deliver ``message`` to this actor every ``interval`` seconds until cancelled.

        The first tick falls due one interval after the call, then at every multiple of
        the interval from the call (no drift). A tick that falls due while the previous one
        has not been handled yet is skipped (counted in `Timer.skipped`), not bunched up.
        Otherwise as `send_after`.

        Raises:
            ValueError: an interval that is not positive and finite (TypeError: not a number).
            MessageTypeError, NotSendableError: as for `ActorRef.send`.

        Example:
            ```python
            async def on_start(self) -> None:
                self.flush_timer = self.send_every(0.5, Flush())
            ```
        """
        check_seconds("send_every interval", interval, positive=True)
        cell = self._actors_cell
        _check_home(cell, "send_every")
        return cell.start_timer(message, interval, interval)

    async def run_blocking(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """Run a blocking function in a worker thread and wait for its result.

        A blocking call or CPU-heavy work inside a handler stalls every actor on the same
        event loop (the watchdog logs it). Push it to a thread instead; this actor still
        handles one message at a time, as the handler waits here.

        Cancellation: the wait is abandoned (the thread runs to its end, its result dropped).

        Example:
            ```python
            async def receive(self, message: Resize) -> bytes:
                return await self.run_blocking(resize_image, message.data, 256)
            ```
        """
        call = functools.partial(fn, *args)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)

    def stop(self) -> None:
        """Stop this actor after it has handled what its mailbox already accepted.

        Returns at once; new messages are refused from now on, and ``on_stop`` runs after
        the last one. This is a normal exit: a `Restart.PERMANENT` child is restarted after
        it, as in OTP; a transient or temporary one is not. From outside (or to stop for
        good from inside), use ``await ref.stop()``.

        Example:
            ```python
            async def receive(self, message: Job | Quit) -> None:
                if isinstance(message, Quit):
                    self.stop()
            ```
        """
        self._actors_cell.mailbox.close()  # `Cell.request_stop`, without its call

    def become(self, handler: Callable[[M], Any]) -> None:
        """Hand the next messages to ``handler`` instead of the current one.

        ``handler`` is usually another method of this actor, synchronous or ``async``,
        taking the message and returning the reply as ``receive`` does. It takes effect at
        the next message (the one being handled finishes with the old handler), and lasts
        until the next ``become`` or until the instance ends: a restarted actor starts
        with its class's ``receive`` again. Call it from this actor's own handlers, hooks
        or ``__init__``.

        Raises:
            TypeError: ``handler`` is not callable, or is an async generator.
            RuntimeError: not called from this actor's own handlers or hooks.

        Example:
            ```python
            def receive(self, message: Login | Query) -> None:
                if isinstance(message, Login):
                    self.become(self.authenticated)

            def authenticated(self, message: Login | Query) -> str:
                return self.lookup(message)
            ```
        """
        self._actors_cell.become(handler)

    def stash(self, message: M) -> None:
        """Set aside ``message``, the one being handled, until `unstash_all`.

        For a message the current behaviour cannot take yet (Akka's stash). An asked message
        keeps its asker waiting: the reply is the return value of the handler that takes it
        once unstashed (the current handler's return value is dropped). The stash holds at
        most `stash_capacity` messages. It belongs to the instance: when the actor stops
        or restarts, what is still stashed becomes dead letters (reason ``"stashed"``) and
        stashed asks get `ActorStopped`.

        Raises:
            StashFull: the stash is full; counted in the actor's metrics. Unless caught,
                the handler fails with it, as with any exception.
            RuntimeError: not called from this actor's own handlers or hooks, or while it
                starts (``__init__``) or stops (``on_stop``).

        Example:
            ```python
            def connecting(self, message: Connected | Query) -> None:
                if isinstance(message, Query):
                    self.stash(message)  # answered once connected
                else:
                    self.become(self.connected)
                    self.unstash_all()
            ```
        """
        self._actors_cell.stash(message)

    def unstash_all(self) -> int:
        """Put every stashed message back, to be handled before any message still queued.

        They keep their order, and go to whichever handler is current when they come up
        (so ``become`` then ``unstash_all``, in either order, hands them to the new one).
        Once back they are in the mailbox again: a restart keeps them, a stop handles them
        before it ends (they were accepted already), as it does the queued messages.
        Returns how many were put back.

        Raises:
            RuntimeError: not called from this actor's own handlers or hooks.

        Example:
            ```python
            self.become(self.connected)
            self.unstash_all()
            ```
        """
        return self._actors_cell.unstash_all()

    def receive(self, message: M) -> Any:
        """Handle one message; the return value is the reply when the message was asked.

        Define it either way: ``async def receive`` when the handler awaits (an ask, a
        blocking call in a thread, a backpressured send), or a plain ``def receive`` when it
        never does. The runtime calls a synchronous one directly, with no coroutine per
        message, which is the fastest way to handle messages; from there use the forms that
        do not wait: `ActorRef.try_send`, `spawn_soon`, `send_after`, `stop`, `become`,
        `stash`. A synchronous handler that returns an awaitable (it called ``self.spawn``
        or ``ref.send`` without awaiting) is refused: `SyncHandlerError`, a failure.

        An exception raised here fails the actor (it stops) and, for an ask, is raised in
        the asker too. The reply must be sendable.

        Example:
            ```python
            def receive(self, message: Add | Total) -> int | None:
                match message:
                    case Add(n):
                        self.total += n
                    case Total():
                        return self.total
                return None
            ```
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} must define `def receive(self, message)` "
            "(or `async def receive` if it awaits)"
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

        The actor's children have already stopped. It also runs on the old instance before
        a restart.

        Example:
            ```python
            async def on_stop(self) -> None:
                await self.conn.close()
            ```
        """

    async def on_restart(self, error: BaseException | None) -> None:
        """Runs on a fresh instance after a restart, after its ``on_start``.

        ``error`` is the failure that caused the restart (a sibling's, for `OneForAll` and
        `RestForOne`), or None after a normal exit of a permanent actor.

        Example:
            ```python
            async def on_restart(self, error: BaseException | None) -> None:
                log.warning("%s restarted after %r", self.name, error)
            ```
        """

    def on_terminated(self, event: Terminated) -> Awaitable[None] | None:
        """Runs when an actor this one watches (`watch`) has stopped for good.

        It runs between two messages, like a handler; an exception here fails this actor.
        Define it either way, as ``receive``: ``async def on_terminated`` when it awaits (a
        ``spawn`` to replace the actor, say), or a plain ``def on_terminated`` when it never
        does. An actor with a synchronous ``receive`` handles a notice to a plain one in
        place, without a task; an ``async def`` one runs in a task of the actor's, since its
        code may need one (`asyncio.timeout`, anyio's cancel scopes). The base hook does
        nothing: there is no need to call it (and nothing to await).

        Example:
            ```python
            async def on_terminated(self, event: actors.Terminated) -> None:
                if event.ref == self.db:
                    self.db = await self.spawn(Database, name="db")

            # or, never awaiting:
            def on_terminated(self, event: actors.Terminated) -> None:
                self.workers.discard(event.ref)
            ```
        """
        return None


_INHERIT: Any = object()

_object_new: Final = object.__new__  # see `Actor.__actors_plain_new__`

# The hooks the runtime awaits, with the signature to suggest for each (``receive`` and
# ``on_terminated`` may be either: see `is_sync_handler`).
_AWAITED: Final = {
    "on_start": "async def on_start(self)",
    "on_stop": "async def on_stop(self)",
    "on_restart": "async def on_restart(self, error)",
}

# Serialises the resolution of forward references (once per class; see `message_types`).
_resolving = threading.Lock()


class _Unresolved(TypeError):
    """A forward reference in a message type names nothing (yet); ``name`` is the name."""

    def __init__(self, text: str, name: str | None) -> None:
        super().__init__(text)
        self.name = name


def _check_home(cell: Cell, what: str) -> None:
    if not cell.on_home_thread():
        raise RuntimeError(
            f"{what}() of actor {cell.path} must be called from the actor's own handlers "
            "or hooks, on its event loop"
        )


def _check_awaited_hooks(cls: type) -> None:
    """Refuse a ``receive`` or hook defined without ``async``: the runtime awaits them.

    A plain ``def`` would run its side effects on each message and then fail the actor with
    "object NoneType can't be used in 'await' expression". Only functions are checked (a
    callable object may well return an awaitable); a sync wrapper made with
    `functools.wraps` around an ``async def`` passes, as calling it returns a coroutine.
    """
    for hook, signature in _AWAITED.items():
        if hook not in cls.__dict__:
            continue
        value: object = getattr(cls, hook)  # the function, also under staticmethod
        if inspect.ismethod(value):  # a classmethod
            value = value.__func__
        if not inspect.isfunction(value) or _is_async(value):
            continue
        if inspect.isasyncgenfunction(value):
            problem = "is an async generator (an `async def` with `yield`), not awaitable"
            fix = f"write `{signature}` without `yield`"
        else:
            problem = "is defined without `async`, but the runtime awaits it"
            fix = f"write `{signature}` (only `receive` and `on_terminated` may be synchronous)"
        raise TypeError(f"{cls.__qualname__}.{hook} {problem}: {fix}")


def is_sync_handler(cls: type, name: str, handler: object) -> bool:
    """True when ``handler`` (a ``receive``, or a behaviour given to `Actor.become`) is
    called without awaiting; False when its result is awaited.

    Async: an ``async def`` (also behind `functools.wraps`, or marked with
    `inspect.markcoroutinefunction`). Sync: any other callable. Refused with a TypeError:
    something that is not callable (``receive = 5``), or an async generator.
    """
    if inspect.ismethod(handler):  # a bound behaviour, or a classmethod
        handler = handler.__func__
    if not callable(handler):
        raise TypeError(
            f"{cls.__qualname__}.{name} is {type(handler).__qualname__}, not a handler: "
            f"write `def {name}(self, message)` (or `async def` if it awaits)"
        )
    if inspect.isasyncgenfunction(handler):
        raise TypeError(
            f"{cls.__qualname__}.{name} is an async generator (an `async def` with `yield`), "
            f"not a handler: write `def {name}(self, message)` or `async def` without `yield`"
        )
    callable_object = not inspect.isfunction(handler) and not inspect.isbuiltin(handler)
    if callable_object and _is_async(type(handler).__call__):
        return False
    return not _is_async(handler)


def _is_async(function: Callable[..., object]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    try:
        inner = inspect.unwrap(function)
    except ValueError:  # a cycle of __wrapped__
        return False
    return inspect.iscoroutinefunction(inner)


def _declared_message_type(cls: type) -> object:
    """The ``M`` of ``class X(Actor[M])`` (or of a generic subclass); _INHERIT if none."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        origin = typing.get_origin(base)
        if isinstance(origin, type) and issubclass(origin, Actor):
            (declared,) = typing.get_args(base)
            return declared
    inherit: object = _INHERIT
    return inherit


def _namespace_of(cls: type) -> Mapping[str, Any]:
    module = sys.modules.get(cls.__module__)
    return vars(module) if module is not None else {}


def message_types(cls: type[Actor[Any]]) -> tuple[type, ...] | None:
    """The message classes ``cls`` accepts (None: any), resolving forward references first.

    A forward reference (``Actor["Pong"]``) that did not resolve when the class was created
    is evaluated here, once, in the module of the class that declared it; the finished tuple
    is then stored on that class, so later calls (and the send path) only read it.

    Raises:
        TypeError: a name in the declaration is still not defined (the message says what
            to write instead).
    """
    if cls.__actors_unresolved__ is None:  # the common case: nothing pending, no lock
        return cls.__actors_accepts__
    declaring = next(k for k in cls.__mro__ if "__actors_unresolved__" in k.__dict__)
    owner = typing.cast("type[Actor[Any]]", declaring)
    with _resolving:
        declared = owner.__dict__["__actors_unresolved__"]
        if declared is not None:
            try:
                accepts = accepted_types(declared, _namespace_of(owner))
            except _Unresolved as error:
                raise _explain(owner, declared, error) from None
            # Invariant: the tuple is written before the marker is cleared, so that whoever
            # sees no marker (without the lock) reads the resolved types.
            owner.__actors_accepts__ = accepts
            owner.__actors_unresolved__ = None
    return cls.__actors_accepts__


def message_type(cls: type[Actor[Any]]) -> object:
    """The message type ``cls`` accepts, as one type (a union of classes); Any for any.

    For `ActorSystem.lookup_remote` given the actor class instead of its message type.

    Raises:
        TypeError: as `message_types`.
    """
    accepts = message_types(cls)
    if accepts is None:
        return Any
    union: Any = accepts[0]
    for more in accepts[1:]:
        union = union | more
    return union


def _explain(owner: type, declared: object, error: _Unresolved) -> TypeError:
    shown = (
        repr(declared.__forward_arg__)
        if isinstance(declared, typing.ForwardRef)
        else repr(declared)
    )
    name = error.name
    if name is None:
        return TypeError(f"{owner.__qualname__} declares Actor[{shown}], but {error}")
    if "<locals>" in owner.__qualname__:
        fix = (
            f"{owner.__name__} is defined inside a function, where a string cannot name a "
            f"local class: write the class itself, Actor[{name}], with {name} defined "
            f"before {owner.__name__}, or move both to module level"
        )
    else:
        fix = (
            f"define or import {name} in module {owner.__module__} (above or below "
            f"{owner.__name__}), or write the class itself instead of a string: Actor[{name}]"
        )
    return TypeError(
        f"{owner.__qualname__} declares Actor[{shown}], but {name!r} is not defined: {fix}"
    )


def accepted_types(
    declared: object, namespace: Mapping[str, Any] | None = None
) -> tuple[type, ...] | None:
    """Flatten a message type annotation into classes for ``isinstance``; None for "any".

    Forward references (strings, `typing.ForwardRef`) are evaluated in ``namespace`` (a
    module's globals); one that names nothing there raises a `TypeError`, never gives
    "any".
    """
    if declared is Any or declared is object or isinstance(declared, TypeVar):
        return None
    if isinstance(declared, str | typing.ForwardRef):
        return accepted_types(_evaluate(declared, namespace), namespace)
    origin = typing.get_origin(declared)
    if origin is typing.Union or origin is types.UnionType:
        flat: list[type] = []
        for arg in typing.get_args(declared):
            more = accepted_types(arg, namespace)
            if more is None:
                return None
            flat.extend(more)
        return tuple(flat)
    if origin is typing.Annotated:
        return accepted_types(typing.get_args(declared)[0], namespace)
    if origin is typing.Literal:
        values: tuple[object, ...] = typing.get_args(declared)
        return tuple({type(v) for v in values})
    if isinstance(origin, type):
        return (origin,)
    if isinstance(declared, type):
        return (declared,)
    return None


def _evaluate(ref: str | typing.ForwardRef, namespace: Mapping[str, Any] | None) -> object:
    """The value of a forward reference; raises `_Unresolved` if it has none."""
    if isinstance(ref, typing.ForwardRef):
        text = ref.__forward_arg__
        module = sys.modules.get(ref.__forward_module__ or "")
        if module is not None:
            namespace = vars(module)
    else:
        text = ref
    try:
        value = eval(text, dict(namespace or {}))  # as typing.get_type_hints does
    except NameError as error:
        raise _Unresolved(f"name {error.name!r} is not defined", error.name) from None
    except Exception as error:
        raise _Unresolved(
            f"the forward reference {text!r} does not evaluate: {error!r}", None
        ) from None
    if isinstance(value, str | typing.ForwardRef):
        raise _Unresolved(f"the forward reference {text!r} names a string", None)
    return value
