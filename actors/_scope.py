"""Scoped actors: actors that cannot outlive an ``async with`` block.

crossbeam's ``scope`` and trio's nurseries for actors. Work that belongs to one request or
one computation gets actors that end with it, and a failure among them fails the block:

* ``__aenter__`` spawns a private top-level actor, the *scope actor* (temporary: never
  restarted), that parents every actor the block spawns with `Scope.spawn`. Stopping it
  stops them all, in reverse start order, each drained within the drain timeout: the tree
  already guarantees that no child outlives its parent, so nothing can leak.
* Each child's ``terminated`` latch is hooked. The first child that ends for good with an
  error is the scope's *failure*. The hook runs on the child's thread; it asks the host's
  loop (``call_soon_threadsafe``, or trio's token) to cancel the block's cancel scope, which
  ``__aenter__`` entered in the host task. No helper task is needed, and so no task group
  whose exception groups would wrap the user's errors.
* ``__aexit__`` closes the cancel scope, stops the scope actor (shielded: the drain always
  completes), then raises the failure, if any, in place of the block's own outcome.

Threads: ``_state`` is written on the host's thread only; the hooks (any thread) read it and
record the failure under ``_lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio

from ._actor import Actor
from ._errors import DuplicateName
from ._ref import cell_of
from ._strategy import Restart

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from ._ref import ActorRef
    from ._system import ActorSystem, Placement

__all__ = ("Scope",)

M = TypeVar("M")

_NEW: Final = "new"
_ENTERING: Final = "entering"
_OPEN: Final = "open"
_CLOSING: Final = "closing"
_CLOSED: Final = "closed"

_serial = itertools.count(1)
_serial_lock = threading.Lock()  # itertools.count is not atomic on free-threaded builds


class _Nothing:
    """No message is of this type: the scope actor handles none."""


class _ScopeActor(Actor[_Nothing]):
    """Parents the actors of one scope; handles no messages of its own."""


class Scope:
    """Actors that must not outlive an ``async with`` block, from `ActorSystem.scope`.

    Inside ``async with system.scope() as scope:``, `spawn` starts actors that belong to the
    block. When the block exits, however it exits, every one of them is stopped (drained,
    in reverse start order, each within the system's drain timeout) before the
    ``async with`` statement completes: they cannot leak past it.

    A scope's actors are temporary by default: an actor that fails is not restarted, and
    its failure fails the scope. The block is cancelled at once, its actors stopped, and
    the failure (the same exception object, noted with the actor's path) is raised out of
    the ``async with``. If the block itself raised an exception meanwhile, the failure is
    raised instead, with the block's exception as its ``__context__``; a cancellation from
    outside the scope, ``KeyboardInterrupt`` and ``SystemExit`` propagate unchanged (see
    `failure`). An actor spawned with another restart type is restarted by the scope
    (``OneForOne()``) and fails the scope once it ends for good.

    The scope actor is a top-level actor named ``scope-<n>``; the actors of the scope are
    its children (``/user/scope-1/<name>``). A scope can be entered once.

    Example:
        ```python
        async with system.scope() as scope:
            fetchers = [await scope.spawn(Fetcher) for _ in range(4)]
            pages = [await f.ask(Fetch(url)) for f, url in zip(fetchers, urls)]
        # every Fetcher has stopped here; a Fetcher that crashed raised out of the block
        ```
    """

    __slots__ = ("_cancel", "_failure", "_lock", "_ref", "_soon", "_state", "_system")

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._lock = threading.Lock()
        self._state: str = _NEW
        self._failure: BaseException | None = None
        self._ref: ActorRef[Any] | None = None  # the scope actor
        self._cancel: anyio.CancelScope | None = None  # the block's, entered in __aenter__
        self._soon: Callable[[Callable[[], object]], None] | None = None

    def __repr__(self) -> str:
        path = self._ref.path if self._ref is not None else "(not entered)"
        failure = f" failure={self._failure!r}" if self._failure is not None else ""
        return f"<Scope {path} {self._state}{failure}>"

    @property
    def path(self) -> str | None:
        """The path of the scope actor, parent of the scope's actors (None before entry)."""
        return self._ref.path if self._ref is not None else None

    @property
    def failure(self) -> BaseException | None:
        """The first failure of an actor of this scope, or None.

        It is what the ``async with`` raises, unless the block ended with a cancellation
        from outside the scope, ``KeyboardInterrupt`` or ``SystemExit``: those propagate
        unchanged, and the failure is only kept here (it was logged when it happened).

        Example:
            ```python
            scope = system.scope()
            with anyio.move_on_after(1.0):
                async with scope:
                    ...
            if scope.failure is not None:
                log.error("scope failed: %r", scope.failure)
            ```
        """
        return self._failure

    async def spawn(
        self,
        factory: Callable[[], Actor[M]],
        *,
        name: str | None = None,
        capacity: int | None = None,
        placement: Placement = None,
        restart: Restart = Restart.TEMPORARY,
    ) -> ActorRef[M]:
        """Start an actor that belongs to this scope; the options of `ActorSystem.spawn`.

        The actor is a child of the scope actor and is stopped when the block exits. Its
        restart type defaults to ``TEMPORARY``: if it fails, the scope fails.

        Raises:
            RuntimeError: the scope is not open (not entered yet, or already exited).
            DuplicateName: another actor of this scope has this name.
            Exception: whatever the factory or ``on_start`` raised (the scope does not fail
                then: the caller decides).

        Cancellation: as for `ActorSystem.spawn`: the actor may already be starting; it is
        then stopped again.

        Example:
            ```python
            async with system.scope() as scope:
                worker = await scope.spawn(Worker, name="worker", capacity=16)
            ```
        """
        state = self._state
        ref = self._ref
        if state != _OPEN or ref is None:
            when = "exited" if state in (_CLOSING, _CLOSED) else "entered"
            raise RuntimeError(
                f"Scope.spawn() needs an open scope, inside `async with`; this scope "
                f"{'has ' if when == 'exited' else 'was not '}{when}"
            )
        system = self._system
        child = await system.spawn_child(
            cell_of(ref),
            factory,
            name=name,
            capacity=capacity,
            placement=placement,
            restart=restart,
        )
        cell_of(child).terminated.when_set(self._ended)
        return child

    async def __aenter__(self) -> Scope:
        """Start the scope actor and open the block.

        Raises:
            RuntimeError: the scope was already entered.
            SystemNotRunning: the system is not running.

        Cancellation: nothing is left behind (the scope actor is stopped again).
        """
        with self._lock:
            if self._state != _NEW:
                raise RuntimeError(
                    "a Scope can be entered only once; call system.scope() for a new one"
                )
            self._state = _ENTERING
        try:
            self._soon = _host_scheduler()
            self._ref = await self._spawn_scope_actor()
        except BaseException:
            with self._lock:
                self._state = _CLOSED
            raise
        cell_of(self._ref).terminated.when_set(self._ended)
        # Entered here, exited in __aexit__: the block runs inside it (same task).
        self._cancel = anyio.CancelScope()
        self._cancel.__enter__()
        with self._lock:
            self._state = _OPEN
            failed = self._failure is not None
        if failed:
            self._cancel.cancel()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop the scope's actors (drained, shielded), then raise the scope's failure.

        Cancellation: the actors are still stopped; the drain is shielded.
        """
        with self._lock:
            self._state = _CLOSING  # from now on a failure no longer cancels the block
        cancel, ref = self._cancel, self._ref
        assert cancel is not None
        assert ref is not None
        ours = bool(cancel.__exit__(exc_type, exc, tb))  # True: our own cancellation ended it
        with anyio.CancelScope(shield=True):
            await ref.stop()
        with self._lock:
            self._state = _CLOSED
            failure = self._failure
        if failure is None or failure is exc:
            return ours
        if exc is not None and not ours and not isinstance(exc, Exception):
            return None  # an outside cancellation, KeyboardInterrupt, SystemExit: unchanged
        if ours:
            failure.__suppress_context__ = True  # the context is only our CancelledError
        raise failure

    async def _spawn_scope_actor(self) -> ActorRef[_Nothing]:
        while True:
            with _serial_lock:
                name = f"scope-{next(_serial)}"
            try:
                return await self._system.spawn(_ScopeActor, name=name, restart=Restart.TEMPORARY)
            except DuplicateName:
                continue  # a user's actor took this name: try the next

    def _ended(self, reason: object) -> None:
        """A scope actor (or the scope actor itself) ended for good. Any thread."""
        if not isinstance(reason, BaseException):
            return
        with self._lock:
            if self._failure is not None:
                return
            self._failure = reason
            cancel = self._state == _OPEN
        soon = self._soon
        if cancel and soon is not None:
            soon(self._cancel_block)

    def _cancel_block(self) -> None:
        # On the host's thread, where the block's cancel scope lives.
        if self._state == _OPEN and self._cancel is not None:
            self._cancel.cancel()


def _host_scheduler() -> Callable[[Callable[[], object]], None]:
    """A function that runs a callback soon on the calling task's loop, from any thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:

        def soon(callback: Callable[[], object]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to cancel
                loop.call_soon_threadsafe(callback)

        return soon

    import trio

    token = trio.lowlevel.current_trio_token()

    def soon_trio(callback: Callable[[], object]) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(callback)

    return soon_trio
