"""The actor cell: the runtime side of one actor (mailbox, home loop, run task, lifecycle).

Users see an `Actor` (their state and handlers) and `ActorRef`s (handles). Between them sits
one `Cell` per actor. It owns the mailbox and decides when the actor runs.

An idle actor has no task. A producer that puts into an idle mailbox takes the mailbox's
consumer token and calls `Cell._wake`, which starts a run task on the home loop: directly when
already on that loop's thread, else with one ``call_soon_threadsafe`` (the only cross-thread
syscall, paid once per burst). The run task handles messages one at a time, yields to the
loop after ``throughput`` messages so that other actors on the loop get their turn, and ends
when the mailbox is empty, handing the token back.

Single-writer rule: ``task``, ``instance`` and the lifecycle fields are written only on the
home loop's thread. Other threads reach the cell only through the mailbox (locked) and the
``terminated`` latch (locked).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ._actor import Actor, constructing
from ._errors import ActorStopped, MessageTypeError
from ._mailbox import DRAINED, EMPTY, Mailbox, MailboxStatistics, Signal
from ._message import Ask
from ._oneshot import Latch, Oneshot
from ._ref import ActorRef
from ._sendable import check_sendable, is_always_sendable

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._runtime import Home
    from ._system import ActorSystem

__all__ = ("ActorStatistics", "Cell")

logger = logging.getLogger("actors")

STARTING: Final = "starting"
RUNNING: Final = "running"
STOPPING: Final = "stopping"
STOPPED: Final = "stopped"
FAILED: Final = "failed"


class ActorStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one actor, from `ActorRef.statistics`.

    Attributes:
        path: the actor's path.
        status: starting, running, stopping, stopped or failed.
        loop: the worker index it lives on, or "host".
        mailbox: its mailbox's numbers.

    Example:
        ```python
        stats = ref.statistics()
        print(stats.mailbox.depth, "of", stats.mailbox.capacity)
        ```
    """

    path: str
    status: str
    loop: str
    mailbox: MailboxStatistics


class Cell:
    __slots__ = (
        "accepts",
        "actor_class",
        "admitted",
        "context",
        "factory",
        "home",
        "instance",
        "mailbox",
        "name",
        "outcome",
        "path",
        "ref",
        "system",
        "task",
        "terminated",
        "throughput",
    )

    def __init__(
        self,
        system: ActorSystem,
        factory: Callable[[], Actor[Any]],
        *,
        name: str,
        path: str,
        home: Home,
        capacity: int,
        throughput: int,
    ) -> None:
        self.system = system
        self.factory = factory
        self.name = name
        self.path = path
        self.home = home
        self.throughput = throughput
        self.mailbox: Mailbox[Any] = Mailbox(capacity, self._wake)
        self.instance: Actor[Any] | None = None
        self.actor_class: type[Actor[Any]] | None = None
        self.accepts: tuple[type, ...] | None = None
        # Message types that need no further check: accepted by this actor and sendable
        # whatever the value. Only ever added to; see `admit`.
        self.admitted: set[type] = set()
        self.ref: ActorRef[Any] = ActorRef(self)
        self.task: asyncio.Task[None] | None = None
        self.context = contextvars.Context()  # every task of this actor runs in it
        self.outcome: str | None = None  # STOPPED or FAILED once the actor has ended
        self.terminated = Latch()  # set once, with the reason: None or the exception

    @property
    def status(self) -> str:
        """starting, running, stopping, stopped or failed (a racy snapshot from other threads)."""
        if self.outcome is not None:
            return self.outcome
        if self.mailbox.closed:
            return STOPPING
        return RUNNING if self.instance is not None else STARTING

    def __repr__(self) -> str:
        return f"<Cell {self.path} {self.status}>"

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            path=self.path,
            status=self.status,
            loop=self.home.label,
            mailbox=self.mailbox.statistics(),
        )

    # -- checks made by senders (any thread) ----------------------------------------------

    def admit(self, message: object) -> None:
        """Check a message a sender is about to enqueue; raise if this actor must not get it."""
        accepts = self.accepts
        if accepts is not None and not isinstance(message, accepts):
            names = " | ".join(t.__qualname__ for t in accepts)
            raise MessageTypeError(
                f"actor {self.path} ({self._class_name()}) does not accept "
                f"{type(message).__qualname__}; it accepts {names}"
            )
        check_sendable(message, f"message to actor {self.path}")
        if is_always_sendable(type(message)):
            # A set add is atomic with or without the GIL; a duplicate add is harmless.
            self.admitted.add(type(message))

    def in_handler(self) -> bool:
        """True when called from this actor's own run task (its handler or hooks)."""
        task = self.task
        return (
            task is not None
            and threading.get_ident() == self.home.thread_id
            and asyncio.current_task() is task
        )

    def stopped_error(self, message: object = None) -> ActorStopped:
        return ActorStopped(f"actor {self.path} is {self.status}; message not delivered", message)

    # -- scheduling ------------------------------------------------------------------------

    def _wake(self) -> None:
        # The caller took the mailbox's consumer token: start exactly one run task.
        home = self.home
        if threading.get_ident() == home.thread_id:
            self._start_run()
        else:
            home.loop.call_soon_threadsafe(self._start_run)

    def _start_run(self) -> None:
        # On the home thread. A strong reference in self.task keeps the task alive. The
        # actor's own context, not the waking sender's: context variables (and the async
        # library sniffio reports) must not leak from whoever sent the first message.
        self.task = self.home.loop.create_task(self._run(), context=self.context)

    def begin(self, started: Oneshot) -> None:
        """Create the actor on its home loop and start it; ``started`` gets the outcome."""
        self.task = self.home.loop.create_task(self._live(started), context=self.context)

    def request_stop(self) -> None:
        """Graceful stop: refuse new messages, drain the accepted ones, run on_stop. Any thread."""
        self.mailbox.close()

    def kill(self) -> None:
        """Forced stop (drain timeout exceeded): cancel the run task. Any thread."""
        with contextlib.suppress(RuntimeError):  # the loop is already closed: nothing to kill
            self.home.loop.call_soon_threadsafe(self._kill_here)

    def _kill_here(self) -> None:
        if self.terminated.is_set:
            return
        if self.task is not None:
            self.task.cancel()
        else:
            self.task = self.home.loop.create_task(self._finish(None), context=self.context)

    # -- the actor's life, on the home loop -------------------------------------------------

    async def _live(self, started: Oneshot) -> None:
        try:
            await self._boot()
        except Exception as error:
            error.add_note(f"raised while starting actor {self.path}")
            await self._finish(error, run_on_stop=False)
            started.settle(error=error)
            return
        except BaseException:
            # Killed while starting (shutdown's drain timeout): the spawner was not cancelled
            # and must not receive this task's CancelledError as if it had been.
            await self._finish(None, run_on_stop=False, killed=True)
            started.settle(error=ActorStopped(f"actor {self.path} was stopped while starting"))
            raise
        started.settle(self.ref)
        await self._run()

    async def _boot(self) -> None:
        token = constructing.set(self)
        try:
            instance = self.factory()
        finally:
            constructing.reset(token)
        if not isinstance(instance, Actor) or instance._actors_cell is not self:  # pyright: ignore[reportUnnecessaryIsInstance, reportPrivateUsage]
            raise TypeError(
                f"the factory for actor {self.path} must return a new Actor instance, "
                f"got {type(instance).__qualname__}"
            )
        self.instance = instance
        await instance.on_start()

    def bind(self, actor_class: type[Actor[Any]]) -> None:
        """Called by Actor.__new__, before the user's __init__ can send anything to itself."""
        self.actor_class = actor_class
        self.accepts = actor_class.__actors_accepts__

    async def _run(self) -> None:
        # Invariant: this is the only task handling this actor's messages (it holds the
        # mailbox's consumer token), so handlers run one at a time, never re-entered.
        pop = self.mailbox.pop
        instance = self.instance
        assert instance is not None
        receive = instance.receive
        budget = self.throughput
        # Mailbox.pop's lock-free common case, inlined: this loop is the dispatch hot path.
        queue, control, senders, grant, low_water = self.mailbox.consumer_view()
        try:
            while True:
                if queue and not control:
                    item: Any = queue.popleft()
                    if senders and len(queue) <= low_water:
                        grant()
                else:
                    item = pop()
                kind = type(item)  # pyright: ignore[reportUnknownVariableType]
                if kind is Ask:
                    if not await self._answer(item, receive):
                        return
                elif kind is Signal:
                    if item is EMPTY:
                        self.task = None  # token handed back: a producer may start a new run
                        return
                    if item is DRAINED:
                        await self._finish(None)
                        return
                    raise AssertionError(f"actor {self.path}: unknown control signal {item!r}")
                else:
                    try:
                        await receive(item)
                    except Exception as error:
                        await self._fail(error, item)
                        return
                    except BaseException as error:
                        failure = self._as_failure(error, item)
                        if failure is None:
                            raise
                        await self._fail(failure, item)
                        return
                budget -= 1
                if not budget:
                    budget = self.throughput
                    await asyncio.sleep(0)  # fairness: let the other actors on this loop run
        except asyncio.CancelledError:
            if not self.terminated.is_set:
                await self._finish(None, killed=True)
            raise

    async def _answer(self, ask: Ask, receive: Callable[[Any], Any]) -> bool:
        message = ask.message
        try:
            reply = await receive(message)
            check_sendable(reply, f"reply of actor {self.path} to {type(message).__qualname__}")
        except Exception as error:
            self._note_failure(error, message)  # before the asker can see the error
            ask.reply.settle(error=error)
            await self._fail(error, message)
            return False
        except BaseException as error:
            failure = self._as_failure(error, message)
            if failure is None:
                # Killed mid-handler: the asker must not wait for a reply that cannot come.
                ask.reply.settle(error=self.stopped_error(message))
                raise
            self._note_failure(failure, message)
            ask.reply.settle(error=failure)
            await self._fail(failure, message)
            return False
        ask.reply.settle(reply)
        return True

    def _as_failure(self, error: BaseException, message: object) -> RuntimeError | None:
        """A non-Exception raised by a handler, as a failure of this actor; None to propagate.

        Only the cancellation of this actor's own task (a kill) propagates. A CancelledError
        the handler raised while the actor was *not* being cancelled, and SystemExit or
        KeyboardInterrupt raised by a handler, become a RuntimeError caused by them: passed
        on as they are, the first would make an asker believe it was cancelled itself, and
        the others would take the whole worker loop (every actor on it) down.
        """
        task = self.task
        if isinstance(error, asyncio.CancelledError) and (task is None or task.cancelling()):
            return None
        stray = isinstance(error, asyncio.CancelledError)
        failure = RuntimeError(
            f"the handler of actor {self.path} raised {type(error).__name__} while handling "
            f"{type(message).__qualname__}"
            + (", without the actor being cancelled" if stray else "")
        )
        failure.__cause__ = error
        return failure

    def _note_failure(self, error: Exception, message: object) -> None:
        note = f"raised by actor {self.path} while handling {type(message).__qualname__}"
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)

    async def _fail(self, error: Exception, message: object) -> None:
        self._note_failure(error, message)
        what = type(message).__qualname__
        logger.error("actor %s failed while handling %s", self.path, what, exc_info=error)
        await self._finish(error)

    async def _finish(
        self, reason: BaseException | None, *, run_on_stop: bool = True, killed: bool = False
    ) -> None:
        """The actor ends: account for what is left in its mailbox, run on_stop, tell waiters."""
        leftovers = self.mailbox.finish()
        for item in leftovers:
            if type(item) is Ask:
                item.reply.settle(error=self.stopped_error(item.message))
        if leftovers or killed:
            logger.warning(
                "actor %s %s; %d undelivered message(s) dropped",
                self.path,
                "was killed after its drain timeout" if killed else "stopped",
                len(leftovers),
            )
        instance = self.instance
        if run_on_stop and instance is not None:
            try:
                await instance.on_stop()
            except Exception:
                logger.exception("on_stop of actor %s raised", self.path)
        self.outcome = STOPPED if reason is None else FAILED
        self.task = None
        self.system._forget(self)  # pyright: ignore[reportPrivateUsage]
        self.terminated.set(reason)

    def _class_name(self) -> str:
        return self.actor_class.__qualname__ if self.actor_class is not None else "actor"
