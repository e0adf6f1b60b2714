"""The actor cell: the runtime side of one actor (mailbox, home loop, run task, lifecycle).

Users see an `Actor` (their state and handlers) and `ActorRef`s (handles). Between them sits
one `Cell` per actor. It owns the mailbox, decides when the actor runs, and carries the
actor's place in the supervision tree. A restart replaces the instance, never the cell:
refs, mailbox and queued messages survive it.

An idle actor has no task. A producer that puts into an idle mailbox takes the mailbox's
consumer token and calls `Cell._wake`, which starts a run on the home loop: directly when
already on that loop's thread, else with one ``call_soon_threadsafe`` (the only cross-thread
syscall, paid once per burst). The run handles messages one at a time, yields to the loop
after ``throughput`` messages so that other actors on the loop get their turn, and ends when
the mailbox is empty, handing the token back.

A run takes one of two forms (issue 17). An actor whose current handler is synchronous runs
as a *drain* (`Cell._drain`): a plain loop callback that calls the handler in place, with no
task, no coroutine and no parked future, so that waking it costs a ``call_soon`` and its
whole life (spawn, a message, a stop) needs no task at all. Everything else is the *run
task* (`Cell._run`), which stays the one owner of the slow cases: async handlers and hooks,
control signals that await (supervision, suspension, kills, a watch notice to an ``async
def on_terminated``), and ends that must await (children to stop, an ``on_stop``). A drain
handles in place the signals whose work is synchronous for its actor: timer ticks (traced
ones too), unstashed items, test-kit calls and watch notices to a plain ``def
on_terminated``, with the order, budget, metrics and failures `_on_control` gives them in a
run task. A drain that meets anything else hands its token, and the signal it popped, to a
new run task (`Cell._hand_to_task`): nothing is lost or reordered. Drain invariants:

* Only the holder of the consumer token schedules or runs a drain, on the home thread, so at
  most one drain or run task of an actor exists at a time; ``task`` is `_DRAIN_DUE` while
  one is scheduled and `_DRAINING` while it runs (`in_handler` is true only then). The
  single-consumer rule of `Mailbox.pop` holds without the GIL: the drain pops only while it
  holds the token, and hands it over (to a task, or back under the mailbox's lock) before it
  returns.
* A drain that spends its budget keeps the token, is *resting* (`Rest.RUN_CHECKS`) and
  continues in `_drain_after_turn`: the watchdog may move the actor meanwhile, as it may a
  run task at its fairness turn. The continuation goes on only if, under the mailbox's lock,
  the actor is still on this thread and ``task`` still holds that turn's own marker: an
  actor evacuated and moved back before the loop turned has a newer run here, and two
  consumers would break the token's protocol (`stay` checks the same for a run task).
* While a drain runs, ``home.draining`` names its actor, so that the watchdog can name an
  actor whose synchronous handler blocks the loop (no task is running then).
* The end of an instance is decided in one place, `_exit_now`, which a drain calls directly
  and a run task through `_exit`; what must be awaited (children, ``on_stop``) continues in a
  task.

Life cycle (``phase``): STARTING -> RUNNING -> (SUSPENDED -> REBOOTING -> RUNNING)* -> ENDED.
An instance that fails or stops itself *ends*: its children are stopped and its ``on_stop``
runs. Then either the cell is suspended, keeping the consumer token (so no run task starts
and messages queue up), and its parent decides (`_supervisor`); or it finishes for good.

The lifecycle verbs, by the transition each makes (``phase``: `Phase`) and the thread it runs
on ("home": the actor's loop; "any": a request that `_at_home` forwards there):

| verb | transition | thread |
| --- | --- | --- |
| `begin`, `begin_here`, `begin_elsewhere` | new -> STARTING: instance built | home / spawner |
| `_live` | STARTING -> RUNNING (`on_start`), or ENDED if it fails | home (task) |
| `_run`, `_run_or_rest` | RUNNING: messages one at a time; the token back when dry | home (task) |
| `_drain`, `_drain_after_turn` | RUNNING, synchronous handler: as `_run`, no task | home |
| `_hand_to_task` | a drain meets a signal or an async handler: a run task takes over | home |
| `fail` | a failure (a handler, a hook; a supervisor past its intensity) -> `_exit` | home |
| `_exit`, `_exit_now` | the instance ended -> `_suspend` (the parent decides) or `_finish` | home |
| `_end_instance` | children stopped, ``on_stop`` run; phase unchanged | home |
| `_suspend` | -> SUSPENDED, keeping the token | home |
| `request_restart` -> `_reboot` | SUSPENDED -> REBOOTING -> RUNNING | any -> home |
| `request_suspend` | RUNNING -> SUSPENDED at the next boundary (a `Suspend` signal) | any -> home |
| `request_stop` | RUNNING: the mailbox closes; drained -> `_exit` | any |
| `stop_for_good` | -> ENDED after a drain (a suspended one: reboot to drain, or end) | any |
| `stop_if_idle` | an idle RUNNING actor -> ENDED in place, no task | home |
| `kill` -> `_kill_here` / `Kill` -> `_killed` | -> ENDED (SUSPENDED if suspending) now | any |
| `_finish` -> `_conclude` | -> ENDED: mailbox, dead letters, `Tree.unregister`, latch | home |
| `finish_proxy` | a cluster proxy's end (it has no instance here) | any |
| `evacuate_to`, `_finish_move` | RUNNING, between two messages: the home changes | any / home |

Single-writer rule: ``task``, ``instance``, ``phase`` and the other lifecycle fields are
written only on the home loop's thread; other threads ask for changes with
``call_soon_threadsafe``. Other threads reach the cell's shared state only through the mailbox
(its lock), the ``terminated`` latch (its lock) and the tree (`Tree`, ``system.tree``: its
lock). The tree's links on the cell (``children``, ``exiting``, ``watchers``, ``watching``)
are written by the `Tree` only; its module docstring says by which thread. The fields most
actors never write live in ``seldom`` (a `Seldom`, made on first write by the home thread,
never unmade). ``path`` is a cache that any thread may fill on first read (`Cell.path`):
every fill stores an equal string.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import inspect
import logging
import sys
import threading
import time
import types
import weakref
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

import anyio
import msgspec

from ._actor import Actor, constructing, is_sync_handler
from ._behaviour import SWITCH, Behaviour, Unstashed
from ._checkpoint import checkpoint, yield_now
from ._control import Call, ChildExit, Kill, RestartDue, Suspend, Tick, WatchedEnded
from ._errors import (
    ActorStopped,
    AskTimeout,
    MailboxFull,
    MessageTypeError,
    SendTimeout,
    StashFull,
    SyncHandlerError,
)
from ._mailbox import DRAINED, EMPTY, FULL, OK, Mailbox, MailboxStatistics, Signal
from ._message import Ask, payload
from ._metrics import HandlerTimes
from ._oneshot import (
    _UNSET,  # pyright: ignore[reportPrivateUsage]
    EXPIRED,
    Expired,
    Latch,
    Oneshot,
    hide_running_loop,
    oneshot,
    show_running_loop,
)
from ._parking import Parking, Resumed
from ._placement import CONTENDED, PINNED, Pinned, Traffic, traffic_of
from ._ref import ActorRef, Ref
from ._request import FlowCounts, running_cell
from ._runtime import Staging
from ._sendable import check_sendable, is_always_sendable, known_sendable
from ._strategy import Restart, RestartWindow, Terminated
from ._stream import Channel, pump, refuse_stream, synchronous_stream
from ._supervisor import on_child_exit, restart_group, stop_children
from ._timers import CANCELLED, Timer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
    from collections.abc import Set as AbstractSet

    from ._clock import Scheduled
    from ._runtime import DeferredCall, Home
    from ._system import ActorSystem

__all__ = ("ActorStatistics", "Cell")

logger = logging.getLogger("actors")


class Phase(enum.Enum):
    """Where an actor is in its life (``Cell.phase``), written on its home thread only."""

    STARTING = "starting"
    RUNNING = "running"
    SUSPENDED = "restarting"  # ended, waiting for the parent's decision or a backoff
    REBOOTING = "rebooting"
    ENDED = "ended"

    @property
    def status(self) -> str:
        """The name `ActorRef.status` reports for this phase while the actor lives."""
        return _STATUS[self]


# As module globals: read on every move and evacuation decision, and an enum member read off
# its class costs about ten global reads (docs/benchmarks.md, "Costs behind the design").
_STATUS: Final = {
    Phase.STARTING: "starting",
    Phase.RUNNING: "running",
    Phase.SUSPENDED: "restarting",
    Phase.REBOOTING: "restarting",
    Phase.ENDED: "stopping",
}

STARTING: Final = Phase.STARTING
RUNNING: Final = Phase.RUNNING
SUSPENDED: Final = Phase.SUSPENDED
REBOOTING: Final = Phase.REBOOTING
ENDED: Final = Phase.ENDED


_BUILT: Final = object()  # _live's prelude: begin_here already made the instance
_SUPERVISING: Final = object()  # `Cell.fail` without a message: a supervisor gave up
_NONE_ADMITTED: Final[AbstractSet[type]] = frozenset()


class _Building:
    """The ``task`` of a cell while its factory runs on another thread (`begin_elsewhere`).

    Not a task: a kill meanwhile (`Cell._kill_here` cancels ``task``) is only noted here,
    on the home thread, and carried out there at the hand-over.
    """

    __slots__ = ("killed",)

    def __init__(self) -> None:
        self.killed = False

    def cancel(self, msg: object = None) -> bool:
        self.killed = True
        return True


class Rest(enum.Enum):
    """Where the run of a cell waits for its loop, as far as an evacuation is concerned.

    The watchdog moves an actor off a blocked loop (`Cell.evacuate_to`) only while nothing
    of it can go on there without a check under the mailbox's lock; this says which check.
    """

    NONE = "none"
    """Running, lingering, or no wake-up posted: not to be moved by the watchdog."""
    WAKE_POSTED = "wake posted"
    """A producer on another thread took the token and posted `Cell.posted_start`, which
    checks: the run task is absent or about to park (it is taken only once parked)."""
    RUN_CHECKS = "run checks"
    """The run task's next step passes `Cell.stay`: resumed or started by `posted_start`,
    or at a fairness turn."""


# The members as module globals: these are read on the wake-up and dispatch paths, and an
# enum member read off its class costs about ten global reads.
WOKEN: Final = Resumed.WOKEN
POSTED: Final = Resumed.POSTED
NOT_RESTING: Final = Rest.NONE
WAKE_POSTED: Final = Rest.WAKE_POSTED
RUN_CHECKS: Final = Rest.RUN_CHECKS


def _overrides(actor_class: type[object], hook: str) -> bool:
    """Whether the class overrides `Actor`'s ``hook`` (``"on_start"``, ``"on_stop"``).

    A class keeping the base hook has nothing to run there: it may start without a task
    (`begin_here`) and be ended by its parent in place (`stop_if_idle`). The paths every
    life takes test ``type(instance).on_start is not _ON_START`` inline instead (no call;
    looked up on each test, so a hook set on the class later still counts).
    """
    return getattr(actor_class, hook, None) is not getattr(Actor, hook)


_TEMPORARY: Final = Restart.TEMPORARY
_TRANSIENT: Final = Restart.TRANSIENT
_ON_START: Final[object] = Actor.__dict__["on_start"]
_ON_STOP: Final[object] = Actor.__dict__["on_stop"]


_LINGER_HITS: Final = 4  # lingers in a row that may miss before an actor stops lingering
_LINGER_RETRY: Final = 32  # idle transitions without lingering before trying again


class ActorStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one actor, from `ActorRef.statistics`.

    Attributes:
        path: the actor's path.
        status: starting, running, restarting, stopping, stopped or failed.
        loop: the worker index it lives on, or "host".
        mailbox: its mailbox's numbers.
        restarts: how many times it was restarted.

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
    restarts: int = 0


class Seldom:
    """The fields of a cell that most actors never write, in one object made on first write.

    A slot store costs every spawn, and a slot every idle actor, so the fields of a stashed
    ask, a suspension and supervision as a parent live here, made by `Cell.seldom_fields`.
    Single-writer rule, as for the cell's lifecycle fields: the cell's home thread makes
    it (``Cell.seldom`` goes from None to this object once, never back) and writes its
    fields; other threads only read them (the watchdog's evacuation, under the mailbox's
    lock, as before).
    """

    __slots__ = ("restart_timer", "restarts", "stashed_ask", "suspending")

    def __init__(self) -> None:
        self.stashed_ask: Ask | None = None  # the ask being answered, if `take_ask` took it
        # The parent waits for this actor to suspend: a latch, since the parent waits twice
        # (the drain timeout, then the kill's grace) and a oneshot settles on its first expiry.
        self.suspending: Latch | None = None
        self.restarts: RestartWindow | None = None  # as a parent: OTP's restart intensity
        self.restart_timer: Scheduled | None = None  # as a parent: a backoff in progress

    def pending(self) -> bool:
        """A suspension or a restart's backoff is in progress: the actor must not move."""
        return self.suspending is not None or self.restart_timer is not None


class Cell(Latch):
    # The mailbox's class: a tracing system's cells (`actors._tracing`) wrap what is sent.
    mailbox_type: ClassVar[type[Mailbox[Any]]] = Mailbox
    # Whether `_handler` is this class's own (a tracing cell wraps handlers in an override):
    # then a drain picks the handler inline, a call less per wake-up (`_drain`).
    plain_handler: ClassVar[bool] = True

    # Whether the tick hooks (`_tick_begins`, `_tick_ends`) are this class's own (a tracing
    # cell links a tick's span in overrides): then a drain handles a tick inline, without
    # the hooks' calls; else through `_traced_tick`, in place too.
    plain_tick: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.plain_handler = cls._handler is Cell._handler
        cls.plain_tick = cls._tick_begins is Cell._tick_begins and cls._tick_ends is Cell._tick_ends

    # A cell is the latch of its own termination (``terminated`` is the cell itself): one
    # object less per actor for the memory and the garbage collector to carry.
    __slots__ = (
        "__weakref__",  # for `running_cell` (see _request.py)
        "_path",
        "_ref",
        "actor_class",
        "behaviour",
        "cancels",
        "children",
        "context",
        "deadline",
        "dequeued",
        "exit_reason",
        "exiting",
        "factory",
        "failed",
        "failed_items",
        "flow",
        "handler_seconds",
        "handling",
        "home",
        "incarnation",
        "instance",
        "kill_pending",
        "linger",
        "mailbox",
        "name",
        "outcome",
        "parent",
        "park_gen",
        "parked",
        "phase",
        "received_seen",
        "restart",
        "resting",
        "seldom",
        "system",
        "task",
        "throughput",
        "timers",
        "times",
        "traffic",
        "watchers",
        "watching",
    )

    def __init__(
        self,
        system: ActorSystem,
        factory: Callable[[], Actor[Any]],
        name: str,
        path: str | None,
        home: Home,
        capacity: int,
        throughput: int,
        parent: Cell | None = None,
        restart: Restart = Restart.PERMANENT,
        pinned: bool = False,
    ) -> None:
        self.system = system
        self.factory = factory
        self.name = name
        # None: made from the parent's on first read (`path`); most actors' is never read.
        self._path = path
        self.home = home
        self.throughput = throughput
        self.parent = parent
        self.restart = restart
        self.mailbox: Mailbox[Any] = self.mailbox_type(capacity, self)
        self.instance: Actor[Any] | None = None
        self.actor_class: type[Actor[Any]] | None = None
        self._ref: Ref[Any] | None = ActorRef(self)  # dropped once ended: see `ref`
        self.task: asyncio.Task[None] | None = None
        # Every task of this actor runs in it; made with the first task (an actor never sent
        # anything keeps none), or kept from construction if __init__ set a variable.
        self.context: contextvars.Context | None = None
        self.phase: Phase = STARTING
        self.incarnation = 0  # bumped by each restart; tells stale supervision events apart
        self.handling: type | None = None  # the message type being handled (for the watchdog)
        self.deadline: float | None = None  # the answered ask's (see _request.py); run task only
        self.behaviour: Behaviour | None = None  # made by the first become or stash
        self.linger = 0  # > 0: linger before going idle (see _run); run task only
        self.parked: asyncio.Future[Resumed] | None = None  # the run task waits (_parking.py)
        # Whether the watchdog may evacuate the actor now, and why (see `Rest`). Written by
        # the home thread, and by a waker on another thread while it holds the token.
        self.resting = NOT_RESTING
        self.park_gen = -1  # the Parking's bookkeeping; -1: not in its list
        # Metrics, written by the run task only (single writer; see _metrics.py).
        self.dequeued = 0  # mailbox items taken, counted per burst
        self.failed = 0  # failures of handlers and hooks
        self.failed_items = 0  # ... of which while handling a mailbox item
        self.flow: FlowCounts | None = None  # asks skipped, handlers cancelled: on first one
        self.handler_seconds = 0.0
        self.received_seen = 0  # written by snapshots (under the metrics lock)
        self.times: HandlerTimes | None = HandlerTimes() if system.handler_timing else None
        self.exit_reason: BaseException | None = None  # why the last instance ended
        # What most actors never write (a stashed ask, a suspension, a restart window and
        # backoff as a parent): made on first write (`seldom_fields`).
        self.seldom: Seldom | None = None
        self.kill_pending = False  # see `kill`: set by any thread, cleared on the home thread
        self.outcome: str | None = None  # STOPPED or FAILED once the actor has ended
        # `terminated`: set once, with the reason (None or the exception). `Latch.__init__`
        # inlined: a call less per spawn.
        self._value = _UNSET
        self._waiters = None
        self._callbacks = None
        # The tree's links, written by the `Tree` only (see _tree.py for its lock and which
        # thread writes what). Created on first use: most actors have no children and no
        # watchers, and an idle actor should stay small.
        self.children: dict[str, Cell] | None = None  # in start order
        self.exiting = False  # the instance is ending: no new children
        # Insertion-ordered (a dict, not a set): Terminated reaches watchers in watch order.
        self.watchers: dict[Cell, None] | None = None
        self.watching: set[Cell] | None = None  # the targets it watches; home thread only
        self.timers: set[Timer] | None = None  # the instance's timers (send_after/send_every)
        # Where its messages come from (_placement.py): None until the first cross-loop
        # wake-up, PINNED for an actor that never moves.
        self.traffic: Traffic | Pinned | None = PINNED if pinned else None

    @property
    def path(self) -> str:
        """The actor's path (``/user/bank/account-7``): its parent's, then its name.

        Made on first read, not at spawn: a string built per actor that most lives never
        read (docs/benchmarks.md, "The third round"). Any thread may read it first: each
        such thread stores an equal string, so the cache needs no lock.
        """
        path = self._path
        if path is None:
            parent = self.parent
            assert parent is not None  # only the root has no parent, and it is given its path
            path = self._path = f"{parent.path}/{self.name}"
        return path

    @property
    def status(self) -> str:
        """starting, running, restarting, stopping, stopped or failed (racy from other threads)."""
        if self.outcome is not None:
            return self.outcome
        status = self.phase.status
        if self.mailbox.closed and status != "restarting":  # a suspended one's is closed too
            return "stopping"
        return status

    def __repr__(self) -> str:
        return f"<Cell {self.path} {self.status}>"

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            path=self.path,
            status=self.status,
            loop=self.home.label,
            mailbox=self.mailbox.statistics(),
            restarts=self.incarnation,
        )

    # -- checks made by senders (any thread) ----------------------------------------------

    @property
    def ref(self) -> ActorRef[Any]:
        """This actor's ref; after it ended, a new one (equal to the old: same cell)."""
        ref = self._ref
        # Only a cluster proxy holds another kind of ref (see `handle`), and nothing asks a
        # proxy for its local ref.
        return ref if isinstance(ref, ActorRef) else ActorRef(self)

    @property
    def handle(self) -> Ref[Any]:
        """The ref watchers are told about: `ref`, or a cluster proxy's remote ref."""
        ref = self._ref
        return ref if ref is not None else ActorRef(self)

    @handle.setter
    def handle(self, ref: Ref[Any]) -> None:  # set once, by the cluster, on its proxies
        self._ref = ref

    @property
    def terminated(self) -> Latch:
        """Set once the actor has ended for good, with the reason (None or the exception).

        The cell itself (one object less per actor), as a property rather than a field
        that would make every cell a reference cycle.
        """
        return self

    @property
    def accepts(self) -> tuple[type, ...] | None:
        """The message types the actor's class accepts (None: any, or not built yet)."""
        actor_class = self.actor_class
        return actor_class.__actors_accepts__ if actor_class is not None else None

    @property
    def admitted(self) -> AbstractSet[type]:
        """Message types already checked for this actor's class (see `admit`)."""
        actor_class = self.actor_class
        return actor_class.__actors_admitted__ if actor_class is not None else _NONE_ADMITTED

    def admit(self, message: object) -> None:
        """Check a message a sender is about to enqueue; raise if this actor must not get it."""
        # One read of the class (any thread; bind may be happening): the check and the
        # cache below must be about the same class.
        actor_class = self.actor_class
        accepts = actor_class.__actors_accepts__ if actor_class is not None else None
        if accepts is not None and not isinstance(message, accepts):
            names = " | ".join(t.__qualname__ for t in accepts)
            raise MessageTypeError(
                f"actor {self.path} ({self._class_name()}) does not accept "
                f"{type(message).__qualname__}; it accepts {names}"
            )
        check_sendable(message, f"message to actor {self.path}")
        refuse_stream(self, message)  # a StreamRequest is never cached below: refused each time
        if actor_class is not None and is_always_sendable(type(message)):
            # The class's set, shared by its actors (admission depends on the class only).
            # A set add is atomic with or without the GIL; a duplicate add is harmless.
            actor_class.__actors_admitted__.add(type(message))

    def admit_all(self, messages: Iterable[object]) -> tuple[object, ...]:
        """`admit` every message of a batch, before any is enqueued; the batch as a tuple.

        The tuple is a snapshot: the batch enqueued is the batch checked, whatever the
        caller does to its list afterwards.
        """
        batch = tuple(messages)
        admitted = self.admitted
        for message in batch:
            if type(message) not in admitted:
                self.admit(message)
        return batch

    def try_send_many(self, batch: Sequence[object]) -> None:
        """Enqueue an admitted batch if there is room for all of it now, else none of it.

        Raises:
            MailboxFull: less free room than the batch needs (``error.message``: the batch).
            ActorStopped: the actor has stopped (``error.message``: the batch).
        """
        code = self.mailbox.put_many_nowait(batch)
        if code == OK:
            return
        if code == FULL:
            raise self._batch_full(batch)
        raise self.stopped_error(batch)

    async def send_many(self, batch: Sequence[object], timeout: float | None = None) -> None:
        """Enqueue an admitted batch, all of it at once, waiting (FIFO) for room for all of it.

        Raises:
            ValueError: the batch is larger than the mailbox's capacity (nothing enqueued).
            SendTimeout: no room for the whole batch within ``timeout`` seconds.
            MailboxFull: the actor sends to itself and its mailbox lacks the room.
            ActorStopped: the actor has stopped, or stopped while we waited.

        Cancellation: if cancelled while waiting, nothing is enqueued.
        """
        box = self.mailbox
        code = box.put_many_nowait(batch)
        if code == FULL:
            if self.in_handler():  # only we could make the room: waiting would deadlock
                raise self._batch_full(batch)
            try:
                code = await box.put_many(batch, timeout)
            except Expired:
                raise SendTimeout(
                    f"mailbox of actor {self.path} had no room for {len(batch)} messages "
                    f"for {timeout} s; none sent",
                    batch,
                ) from None
        if code == OK:
            return
        await checkpoint()  # a refusal is a checkpoint too, as in `ActorRef.send`
        raise self.stopped_error(batch)

    def _batch_full(self, batch: Sequence[object]) -> MailboxFull:
        box = self.mailbox
        return MailboxFull(
            f"mailbox of actor {self.path} lacks room for {len(batch)} messages "
            f"({len(box)}/{box.capacity}); none sent",
            batch,
        )

    def in_handler(self) -> bool:
        """True when called from this actor's own run (run task or drain): its handlers, hooks."""
        task = self.task
        if task is None:
            return False
        home = self.home
        if threading.get_ident() != home.thread_id:
            return False
        # A drain runs outside any task, and only while it runs is ``task`` `_DRAINING`. On
        # the home thread the running loop is the home loop: passing it spares the lookup.
        return task is _DRAINING or asyncio.current_task(home.loop) is task

    def on_home_thread(self) -> bool:
        return threading.get_ident() == self.home.thread_id

    def log_fields(self, message: object = None) -> dict[str, object]:
        """The structured fields of a runtime log record about this actor (``extra=``).

        ``actor`` (its path) and, with ``message``, ``message_type``; a tracing system's
        cells add ``trace_id`` and ``span_id`` (`actors._tracing`).
        """
        if message is None:
            return {"actor": self.path}
        return {"actor": self.path, "message_type": type(payload(message)).__qualname__}

    def stopped_error(self, message: object = None) -> ActorStopped:
        return ActorStopped(
            f"actor {self.path} is {self.status}; message not delivered", payload(message)
        )

    # -- scheduling ------------------------------------------------------------------------

    def _wake(self) -> None:
        # The caller took the mailbox's consumer token: resume or start exactly one run (a
        # run task, or a drain for a synchronous handler).
        home = self.home
        if threading.get_ident() != home.thread_id:
            # The run starts through `posted_start`, which checks under the lock: until then
            # the watchdog may evacuate the actor (the token is ours; the task is absent or
            # about to park: the token is handed back just before parking).
            self.resting = WAKE_POSTED
            if self.traffic is not PINNED:
                # Only cross-loop wake-ups are counted (they already pay for a syscall):
                # the same-loop path below stays as it was.
                placer = self.system.placer
                placer.note_wake(self)
                if home.blocked:  # a handler holds that loop: run this actor elsewhere
                    home = placer.evacuate(self) or home
            home.loop.call_soon_threadsafe(self.posted_start)
            return
        parked = self.parked  # _start_run's common case, inlined: a ring's every hop
        if parked is not None and not parked.done():
            self.parked = None
            parked.set_result(WOKEN)
            return
        if parked is None:  # and its other common case: an idle actor's next message
            # `_drains`, inlined: a synchronous handler's actor runs as a loop callback (the
            # phase is the drain's to check: it hands anything but RUNNING to a task).
            instance = self.instance
            behaviour = self.behaviour
            if instance is not None and (
                instance.__actors_sync__
                if behaviour is None or behaviour.handler is None
                else behaviour.sync
            ):
                self.task = _DRAIN_DUE
                context = self.context
                if context is None:  # `_prepared_context`'s common case, inlined
                    context = self.context = _DRAIN_TEMPLATE.copy()
                    context.run(running_cell.set, weakref.ref(self))
                elif _DRAIN_READY not in context:
                    context = self._prepared_context()
                home.loop.call_soon(self._drain, context=context)
                return
            self._spawn_task(self._run())
            return
        self._start_run()

    # The mailbox wakes its consumer by calling it: the cell itself is the callable, so no
    # bound method is kept per actor (its size: docs/benchmarks.md, "Costs behind the design").
    __call__ = _wake

    def posted_start(self) -> None:
        """`_start_run` posted from another thread (a cross-loop wake-up, a move)."""
        # Decided under the mailbox's lock, since the actor may have been evacuated off this
        # loop meanwhile (`evacuate_to`): then its new loop starts it, and this stale request
        # does nothing. Every post follows a WAKE_POSTED mark, which the first request to run
        # at home consumes: an actor moved away and back before its loop turned has two
        # requests there, and the second does nothing. Otherwise the run is taken here (a
        # parked task, or a marker task while the new one is made, which no evacuation takes)
        # and marked RUN_CHECKS: the task's next step may wait behind a handler that blocks
        # this loop, so an evacuation may still move the actor, and the task passes `stay`
        # before it goes on.
        lock = self.mailbox.lock
        lock.acquire()
        try:
            if self.home.thread_id != threading.get_ident() or self.resting is not WAKE_POSTED:
                return  # moved away since, or a duplicate: an earlier one took this wake-up
            parked = self.parked
            self.parked = None
            drains = False
            if parked is None:
                if self._drains():
                    # Run now, in this callback: no wait the watchdog could move it during.
                    drains = True
                    self.task = _DRAIN_DUE
                    self.resting = NOT_RESTING
                else:
                    if self.task is None:
                        self.task = _CLAIMED
                    self.resting = RUN_CHECKS
            elif not parked.done():
                self.resting = RUN_CHECKS
            else:  # being cancelled: left alone, as in `_start_run`; not to be evacuated
                self.resting = NOT_RESTING
                return
        finally:
            lock.release()
        if drains:
            self._prepared_context().run(self._drain)
        elif parked is None:
            self._spawn_task(self._run(posted=True))
        else:
            parked.set_result(POSTED)

    def _start_run(self) -> None:
        # On the home thread. A parked run task is resumed: it now holds the token. (One
        # being cancelled, its future already done, is left alone: it ends or suspends the
        # actor, and either accounts for the queue.)
        parked = self.parked
        if parked is not None:
            self.parked = None
            if not parked.done():
                parked.set_result(WOKEN)
            return
        self._run_soon()

    def _run_soon(self) -> None:
        # On the home thread, holding the token, no run yet: a drain for a synchronous
        # handler (a loop callback, no task), else a run task.
        if self._drains():
            self.task = _DRAIN_DUE
            self.home.loop.call_soon(self._drain, context=self._prepared_context())
        else:
            self._spawn_task(self._run())

    def _drains(self) -> bool:
        """Whether the actor's run may be a drain now: running, its handler synchronous."""
        instance = self.instance
        if instance is None or self.phase is not RUNNING:
            return False
        behaviour = self.behaviour
        if behaviour is not None and behaviour.handler is not None:
            return behaviour.sync
        return instance.__actors_sync__

    def stay(self) -> bool:
        """After a wait during which `evacuate_to` may have moved the actor: may this run
        task go on? False: the actor lives on another loop now, or it moved away and back
        and a newer run task is its run here; the task must end without touching anything
        (its fields are the new run's)."""
        lock = self.mailbox.lock
        lock.acquire()  # the evacuation decides under it too
        try:
            # Moved away, or away and back: then a newer run task is the actor's here.
            if (
                self.home.thread_id != threading.get_ident()
                or self.task is not asyncio.current_task()
            ):
                return False
            self.resting = NOT_RESTING
            return True
        finally:
            lock.release()

    def _spawn_task(self, coro: Any) -> None:
        # A strong reference in self.task keeps the task alive. The actor's own context,
        # not the waking sender's: context variables (and the async library sniffio
        # reports) must not leak from whoever sent the first message. The task is named
        # after the actor so that the watchdog can name a blocking one.
        context = self.context
        if context is None:
            context = self.context = contextvars.Context()
        if running_cell not in context:  # once per actor: its handlers find it (deadlines)
            # Weakly: copies of the context (tasks, loop callbacks) outlive the actor.
            context.run(running_cell.set, weakref.ref(self))
        # The cached path read first: a run task's creation is on the wake-up path.
        name = self._path or self.path
        self.task = self.home.loop.create_task(coro, name=name, context=context)

    def _prepared_context(self) -> contextvars.Context:
        """The context a drain runs in, made ready once per actor (``_DRAIN_READY`` in it).

        As a run task's (`_spawn_task`), it holds `running_cell`; and sniffio's library, so
        that anyio works in a synchronous handler run by a drain, which is no task (sniffio
        would look for one). Set on the first drain only: an actor that never drains pays
        nothing for it.
        """
        context = self.context
        if context is None:
            # A copy of a context already holding sniffio's library (copies share their
            # contents until written: one C call), then the cell.
            context = self.context = _DRAIN_TEMPLATE.copy()
            context.run(running_cell.set, weakref.ref(self))
        elif _DRAIN_READY not in context:
            context.run(_enter_context, weakref.ref(self))
        return context

    def _at_home(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the home thread: now if already there, else soon.

        A request that reaches a loop the actor has moved away from meanwhile follows it to
        its new home (`_follow`).
        """
        if self.on_home_thread():
            callback(*args)
        else:
            home = self.home
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to do
                home.loop.call_soon_threadsafe(self._follow, home, callback, args)

    def _follow(self, home: Home, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        with self.mailbox.lock:  # an evacuation writes `home` from another thread, under it
            moved = self.home is not home
        if moved:  # since the request was posted
            self._at_home(callback, *args)
        else:
            callback(*args)

    def evacuate_to(self, target: Home, *, stuck_only: bool = False) -> bool:
        """Move this actor off its blocked loop now, between two messages. Any thread.

        Two callers. A sender on another thread that has just taken the consumer token
        (`_wake`): the actor has no run task or a parked one, which only a token holder
        resolves. The watchdog's sweep of a blocked loop (``stuck_only``): any actor whose
        run waits behind the blocking step and is ``resting``, that is, passes a check under
        this lock before it goes on: a wake-up posted from another thread (`posted_start`
        checks), a run task started or resumed by one, or one at a fairness turn (both pass
        `stay`). The caller posts `posted_start` to ``target``.

        The exception to the single-writer rule, and why it is safe: nothing of this actor
        can go on on the old loop without passing this lock (a parked task is told to end:
        its future resolves to `Resumed.EVACUATED`; a resting one fails `stay` and ends).
        That holds even when the old loop turns again meanwhile, which the watchdog cannot
        rule out. A lingering run task (one loop iteration after running dry) is not resting
        (a lock there would slow a request/reply exchange on one loop by a fifth): it waits.
        The fields change under the mailbox's lock, which the old loop's parking sweep,
        request forwarding (`_follow`) and `posted_start` also take before touching them.
        """
        with self.mailbox.lock:
            task, parked = self.task, self.parked
            seldom = self.seldom  # made once, never unmade: one read
            pending = parked is not None and not parked.done()
            if stuck_only:
                # The watchdog's sweep: the old loop may turn again at any moment (the step
                # it saw may just have ended), so only a run that passes a check under this
                # lock before it goes on is taken (see `Rest`).
                resting = self.resting
                waiting = (resting is WAKE_POSTED and (task is None or pending)) or (
                    resting is RUN_CHECKS and parked is None and task is not _CLAIMED
                )
            else:
                # A sender on another thread that has just taken the token: the run task,
                # if any, is parked, and only a token holder resolves it.
                waiting = task is None or pending
            if (
                not waiting
                or self.phase != RUNNING
                or (seldom is not None and seldom.pending())
                or self.kill_pending
                or (task is None and not self.mailbox.scheduled)  # nothing to run: stay
                or (stuck_only and not self.mailbox.scheduled)
            ):
                return False
            old = self.home
            self.task = None
            self.parked = None
            self.park_gen = -1  # the new loop's parking lists it afresh
            self.home = target
            self.resting = WAKE_POSTED  # the caller posts `posted_start` to the target
            if self.context is not None:
                # The stale task still runs one last step in its context when its loop turns,
                # maybe while the new task runs on the new loop: a context can be entered by
                # one thread at a time, so the new tasks get a copy (same variables).
                self.context = self.context.copy()
            timers = [timer for timer in self.timers or () if timer.strand()]
        for timer in timers:
            with contextlib.suppress(RuntimeError):
                target.loop.call_soon_threadsafe(timer.arrive)
        if parked is not None:
            with contextlib.suppress(RuntimeError):
                old.loop.call_soon_threadsafe(_abandon, parked)
        return True

    # -- moving between loops (see _placement.py) --------------------------------------------

    def movable(self) -> bool:
        """Whether this actor may change loops now: home thread, between two messages."""
        seldom = self.seldom
        return (
            self.phase == RUNNING
            and (seldom is None or not seldom.pending())
            and not self.kill_pending
            and not self.mailbox.closed
            and self.system.running
        )

    def request_move(self, target: Home) -> None:
        """Move to ``target`` at the next message boundary (work stealing, tests). Any thread.

        Raises:
            ValueError: the actor is pinned (``spawn(placement=...)`` or host-placed).
        """
        traffic = traffic_of(self)
        if traffic is None:
            raise ValueError(f"actor {self.path} is pinned to loop {self.home.label}")
        traffic.forced = target

    def _finish_move(self, target: Home) -> None:
        # On the old home thread, in a plain callback after the run task ended (not in the
        # actor's context, which the new loop may enter at once).
        # Invariant: this cell holds its mailbox's consumer token and has no task, so no
        # producer reads `home` for a wake-up until the token is released below, under the
        # mailbox's lock: whoever takes it next sees the new home.
        parking = self.home.parking
        if parking is not None:
            parking.forget(self)
        moving = [timer for timer in self.timers or () if timer.leave()]
        with self.mailbox.lock:  # as every write of `home` (see _placement.py)
            self.parked = None
            self.task = None
            self.home = target
        try:
            for timer in moving:
                target.loop.call_soon_threadsafe(timer.arrive)
            if not self.mailbox.release():
                self.resting = WAKE_POSTED  # as a producer on another thread would
                target.loop.call_soon_threadsafe(self.posted_start)
        except RuntimeError:  # the new loop has closed: the system is shutting down
            logger.warning(
                "actor %s could not move to loop %s",
                self.path,
                target.label,
                extra=self.log_fields(),
            )

    def begin(self, started: Oneshot) -> None:
        """Create the actor on its home loop and start it; ``started`` gets the outcome."""
        self._spawn_task(self._live(started, None))

    def begin_here(self, observed: bool = True) -> Oneshot | None:
        """Create the actor now, on its home thread; None when it is already running.

        The fast path of a spawn made on the actor's own loop (a parent spawning on its
        loop, the spawn-heavy programs): an actor without an ``on_start`` needs no task and
        no hand-shake, just its instance. Otherwise (an ``on_start`` to await, or a factory
        that raised) the start-up continues in a task, as `begin`, and the oneshot that
        task settles is returned for the caller to wait on.
        """
        # `_construct`, inlined (a call less per spawn): the factory runs in a context of
        # its own with `constructing` set, which is left set there (the context is dropped
        # unless __init__ set a variable: then the marker is cleared), a reset less.
        context = contextvars.Context()
        context.run(constructing.set, self)
        try:
            instance = context.run(self.factory)
            if not isinstance(instance, Actor) or instance._actors_cell is not self:  # pyright: ignore[reportUnnecessaryIsInstance, reportPrivateUsage]
                raise self._not_an_actor(instance)
        except BaseException as error:
            context.run(constructing.set, None)  # the marker left there
            self.context = context
            return self._start_in_task(self._factory_failure(error), observed)
        self.instance = instance
        if len(context) > 1:  # __init__ set a context variable: its handlers must see it
            context.run(constructing.set, None)  # but not the marker left there
            self.context = context
        if type(instance).on_start is not _ON_START:
            return self._start_in_task(_BUILT, observed)
        self.phase = RUNNING
        # The consumer token has been ours since the cell was made: keep it (and run) if
        # __init__ sent something or a stop came meanwhile, else hand it back.
        if not self.mailbox.release():
            self._start_run()
        return None

    def _start_in_task(self, prelude: BaseException | object, observed: bool) -> Oneshot:
        started = oneshot() if observed else _Unobserved(self.path)
        self._spawn_task(self._live(started, prelude))
        return started

    def begin_elsewhere(self, *, observed: bool = True) -> Oneshot | None:
        """Create the actor now, on this thread (not its home), then hand it to its loop.

        The path of a spawn from the host application or from another loop: the factory
        runs here, in a fresh context as on the home loop, and the spawner does not wait
        for a round trip to the home loop. An actor without an ``on_start`` is handed over
        without waiting, and returns None: with nothing to run yet (the common case) by
        handing its mailbox's consumer token back right here, which costs no call to its
        loop at all; with something to run (``__init__`` sent to itself or started a
        timer, a stop came) in a batch (`Home.hand_over`). An ``on_start``, or a factory
        that raised, continues in a task on the home loop (`_start_at_home`), and the
        oneshot that task settles is returned for the caller to wait on.

        Raises:
            HomeClosed: the home loop has closed (the system has shut down meanwhile).
        """
        home = self.home
        # Invariant (the single-writer rule, before the hand-over): the cell is not on its
        # loop yet, so this thread writes its lifecycle fields and the home thread writes
        # none of them. ``task`` holds a marker, so that a kill meanwhile only notes itself
        # there (`_kill_here` cancels ``task``); a final stop and a restart request act on
        # suspended actors only, and a group restart's request queues a SUSPEND for the run
        # to come. While the factory runs, the actor's home is a `Staging`: this thread
        # counts as its home thread (`send_after`, `watch` work in __init__), and the
        # timers' loop calls wait for the hand-over. The hand-over publishes the fields: the
        # mailbox's lock to a later producer's wake (release below, then put and `_wake`),
        # the loop's queue to a callback handed over.
        building = _Building()
        self.task = cast("asyncio.Task[None]", building)
        staging = Staging(home)
        self.home = staging
        context = contextvars.Context()
        failure: Exception | None = None
        # The spawner's own loop is hidden meanwhile: __init__ must not take it for the
        # actor's (a task or a future made on it would live outside the actor), so
        # `asyncio.get_running_loop()` there raises instead; anyio's objects made there
        # bind to the loop that first uses them.
        spawners_loop = hide_running_loop()
        try:
            context.run(self._construct)
        except Exception as error:
            failure = error
        finally:
            show_running_loop(spawners_loop)
            self.home = home
        if failure is not None or len(context):  # __init__ set a variable: handlers see it
            self.context = context
        deferred = staging.deferred
        if failure is not None:
            return self._continue_at_home(building, failure, deferred, observed)
        if _overrides(type(self.instance), "on_start"):
            return self._continue_at_home(building, _BUILT, deferred, observed)
        self.phase = RUNNING
        # From here on a kill acts at once (it needs a stop or a KILL queued first, so the
        # release below then fails, and `_arrive` defers to it).
        self.task = None
        # The consumer token has been ours since the cell was made: with nothing to run and
        # no timer to schedule, hand it back here; the next producer wakes the actor as
        # usual (`_wake`, one call_soon_threadsafe from another thread).
        if deferred is None and self.mailbox.release():
            return None
        home.hand_over(self._arrive, building, deferred)
        return None

    def _continue_at_home(
        self,
        building: _Building,
        prelude: object,
        deferred: list[DeferredCall] | None,
        observed: bool,
    ) -> Oneshot:
        started = oneshot() if observed else _Unobserved(self.path)
        self.home.call_soon(self._start_at_home, building, started, prelude, deferred)
        return started

    def _start_at_home(
        self,
        building: _Building,
        started: Oneshot,
        prelude: object,
        deferred: list[DeferredCall] | None,
    ) -> None:
        # On the home thread: the start-up of an actor built elsewhere goes on in a task.
        if deferred:
            for call in deferred:
                call.arm(self.home.loop)
        self._spawn_task(self._live(started, prelude))  # replaces the marker
        if building.killed:
            # Killed while its factory ran: now there is a task to cancel, once it has taken
            # its first step (cancelled before it, it would skip _live's handlers).
            self.home.loop.call_soon(self.kill)

    def _arrive(self, building: _Building, deferred: list[DeferredCall] | None) -> None:
        # On the home thread: an actor built elsewhere, without an on_start, that has
        # something to do (a message, a stop, a timer) or was killed meanwhile.
        if deferred:
            for call in deferred:
                call.arm(self.home.loop)
        if self.phase != RUNNING:
            return  # a kill came between the marker's removal and the release: it ends it
        if building.killed:
            self.kill()
        elif not self.mailbox.release():
            self._start_run()

    # -- requests from other actors and threads (any thread) -------------------------------

    def request_stop(self) -> None:
        """The actor stops itself (`Actor.stop`): drain, then end like a normal exit.

        A permanent child is restarted after such an exit, as in OTP.
        """
        self.mailbox.close()

    def stop_for_good(self, *, revive: bool = False) -> None:
        """A final stop (`ActorRef.stop`, the parent or the system): never restarted.

        A running actor drains what its mailbox accepted. One that failed and waits for its
        parent's decision has no instance to drain with: with ``revive`` (a user's
        `ActorRef.stop`, which promises the drain) a fresh instance is booted to drain the
        sealed mailbox; without (its supervisor is ending or gave up on it) it ends with its
        failure, and what it had queued becomes dead letters.
        """
        self.mailbox.close(seal=True)
        self._at_home(self._stop_here, revive)

    def stop_if_idle(self) -> bool:
        """Stop for good, at once, an idle actor of this thread; False if it is not one.

        Idle: running, no task (not even a parked one), nothing queued or stashed, no
        children, no timers, and the class keeps `Actor.on_stop`, so that ending it runs none of the
        user's code and needs no task of its own. Its parent, on this same thread (the
        single-writer rule holds: the child has no task that could write too), ends it here
        and now, without the wake-up, the task and the hand-shake of a normal stop: what
        makes stopping a hundred thousand idle children cost about as much as spawning
        them. Anything else, or a message that arrives first, takes the normal path.
        """
        if not self.on_home_thread():  # first: the fields below are the home thread's
            return False
        instance = self.instance
        behaviour = self.behaviour
        if (
            self.task is not None
            or self.phase != RUNNING
            or self.timers
            or instance is None
            or _overrides(type(instance), "on_stop")
            or (behaviour is not None and behaviour.stash)  # to account for: `_end_instance`
        ):
            return False
        tree = self.system.tree
        # Children refused first, with the look for them (as `_end_instance` refuses them):
        # a child registered from another thread meanwhile would otherwise outlive it.
        if not tree.refuse_children_if_none(self):
            return False
        if not self.mailbox.close_if_idle():
            tree.accept_children(self)  # a message came: the normal stop drains it first
            return False
        self.instance = None
        self.phase = ENDED
        self.exit_reason = None
        self._conclude(None, False)
        return True

    def _stop_here(self, revive: bool) -> None:
        # A suspended actor has no run task to see the closed mailbox.
        if self.phase != SUSPENDED:
            return
        self._cancel_restart_timer()
        if revive:
            self.phase = REBOOTING
            self._spawn_task(self._reboot(self.exit_reason, None))
        else:
            self.phase = ENDED
            self._spawn_task(self._finish(self.exit_reason, run_on_stop=False))

    def kill(self) -> None:
        """Forced stop (drain or suspend timeout exceeded): cancel the run task. Any thread.

        The message in hand cannot be interrupted, but no further one is taken. A handler
        that awaits is cancelled at its await (`_kill_here`, on the home loop). One that
        never awaits keeps its loop busy, so `_kill_here` would only run after the whole
        burst: a KILL signal at the head of the control lane, which the run loop reads
        between any two messages, stops it at the next message boundary instead. Whichever
        of the two runs first carries the kill out (``kill_pending``); the other does nothing.
        """
        self.kill_pending = True
        self.mailbox.interrupt(Signal(Kill()))
        self._at_home(self._kill_here)  # on the home thread: now (the task is suspended)

    def _kill_here(self) -> None:
        if self.terminated.is_set or not self.kill_pending:
            return  # ended, or already killed at a message boundary
        task = self.task
        if (isinstance(task, asyncio.Task) and task.done()) or isinstance(task, _Drain):
            # Between two run tasks: moving to another loop (`_finish_move` is due). The
            # KILL signal waiting in its control lane ends it at its first step there. Or a
            # drain is due or running: it meets the signal at its next message boundary and
            # hands it to a run task, which ends the actor (`_on_kill`).
            return
        if isinstance(task, asyncio.Task) and _not_started(task):
            # Cancelled before its first step, a task would skip its handlers and leave the
            # actor unended (a drain hands over to a new task just so). The KILL signal at
            # the head of the control lane ends it at its first message boundary instead.
            return
        if task is not None:
            # Pending until the cancellation lands (`_killed`): a handler that swallows it
            # (CPython 3.11's `asyncio.wait_for` does when it arrives as the inner awaitable
            # completes) returns normally, and the KILL signal then ends the actor at the
            # next message boundary instead of being taken for a stale one.
            task.cancel()
            return
        self.kill_pending = False
        if self.phase == SUSPENDED:
            self._cancel_restart_timer()
            self.phase = ENDED
            self._spawn_task(self._finish(self.exit_reason, killed=True))
        elif self.phase != ENDED:
            self.phase = ENDED
            self._spawn_task(self._finish(None, killed=True))

    def request_suspend(self, done: Latch) -> None:
        """Ask a running actor to end its instance for a group restart; ``done`` is set then."""
        self._at_home(self._suspend_here, done)

    def _suspend_here(self, done: Latch) -> None:
        if self.phase in (SUSPENDED, ENDED) or self.terminated.is_set:
            done.set()
            return
        seldom = self.seldom_fields()
        seldom.suspending = done
        # The control lane goes before any queued message: the actor suspends at its next
        # message boundary (or is killed into suspension after the timeout).
        if not self.mailbox.put_control(Signal(Suspend())):
            seldom.suspending = None
            done.set()

    def request_restart(self, reason: BaseException | None, done: Oneshot) -> None:
        """Restart a suspended actor: ``done`` gets True, False (not restarted) or the error."""
        self._at_home(self._restart_here, reason, done)

    def _restart_here(self, reason: BaseException | None, done: Oneshot) -> None:
        if self.phase != SUSPENDED or not self.mailbox.reopen():
            done.settle(False)  # stopped for good meanwhile: its final stop wins
            return
        self.phase = REBOOTING
        self._spawn_task(self._reboot(reason, done))

    def call_between_messages(self, fn: Callable[[Any], object], done: Oneshot) -> bool:
        """Run ``fn(instance)`` on the home loop between two messages; ``done`` gets the result.

        For test kits (inspecting an actor's state where it is consistent). False once the
        actor has finished.
        """
        return self.deliver(Signal(Call(fn, done)))

    def deliver(self, signal: Signal) -> bool:
        """Put a control signal in this actor's control lane; False once it has finished."""
        return self.mailbox.put_control(signal)

    # -- the actor's life, on the home loop -------------------------------------------------

    async def _live(self, started: Oneshot, prelude: BaseException | object) -> None:
        # prelude: None (construct here), _BUILT (constructed by begin_here) or the error
        # the factory raised there.
        hook = "factory"
        try:
            if prelude is None:
                self._construct()
            elif isinstance(prelude, BaseException):
                raise prelude
            hook = "on_start"
            instance = self.instance
            assert instance is not None
            await instance.on_start()
        except BaseException as caught:
            error = caught if isinstance(caught, Exception) else self._as_failure(caught, hook=hook)
            if error is None:
                # Killed while starting (shutdown's drain timeout): the spawner was not
                # cancelled and must not receive this task's CancelledError as if it had been.
                await self._finish(None, run_on_stop=False, killed=True)
                started.settle(error=ActorStopped(f"actor {self.path} was stopped while starting"))
                raise
            error.add_note(f"raised while starting actor {self.path}")
            await self._finish(error, run_on_stop=False)
            started.settle(error=error)
            return
        self.phase = RUNNING
        started.settle(self.ref)
        await self._run_or_rest()

    async def _reboot(self, reason: BaseException | None, done: Oneshot | None) -> None:
        """A restart: a fresh instance from the factory, behind the same mailbox.

        ``done`` (the parent waiting) is None for the reboot that drains a sealed mailbox
        after a final stop arrived while the actor was suspended.
        """
        self.incarnation += 1
        if self.seldom is not None:
            self.seldom.restarts = None  # a new instance is a new supervisor: OTP counts afresh
        self.system.tree.accept_children(self)
        hook = "factory or on_start"
        try:
            await self._boot()
            hook = "on_restart"
            instance = self.instance
            assert instance is not None
            await instance.on_restart(reason)
        except BaseException as caught:
            error = caught if isinstance(caught, Exception) else self._as_failure(caught, hook=hook)
            if error is None:  # killed while restarting
                await self._finish(None, run_on_stop=False, killed=True)
                if done is not None:
                    done.settle(False)
                raise
            error.add_note(f"raised while restarting actor {self.path}")
            await self._end_instance(run_on_stop=False)
            if done is None or self.mailbox.sealed:  # stopped for good meanwhile
                await self._finish(error, run_on_stop=False)
                if done is not None:
                    done.settle(False)
                return
            self._suspend(error)
            done.settle(error=error)
            return
        self.phase = RUNNING
        if done is not None:
            done.settle(True)
        await self._run_or_rest()

    async def _run_or_rest(self) -> None:
        # After a start or a restart: run what is queued, or with nothing queued hand the
        # token back and end this task now (not park: a new actor may never hear a thing).
        if self.mailbox.release():
            self.task = None
            return
        await self._run()

    async def _boot(self) -> None:
        self._construct()
        instance = self.instance
        assert instance is not None
        await instance.on_start()

    def _construct(self, reset: bool = True) -> None:
        """Build the instance (``self.factory()``), with `constructing` set to this cell.

        Without ``reset`` the marker stays set afterwards: for a context made for this call
        alone (`begin_here`), which the caller drops, or clears if it keeps it: a reset
        less per spawn.
        """
        token = constructing.set(self)
        try:
            instance = self.factory()
        except Exception:
            raise
        except BaseException as error:
            raise self._factory_failure(error) from error
        finally:
            if reset:
                constructing.reset(token)
        if not isinstance(instance, Actor) or instance._actors_cell is not self:  # pyright: ignore[reportUnnecessaryIsInstance, reportPrivateUsage]
            raise self._not_an_actor(instance)
        self.instance = instance

    def _factory_failure(self, error: BaseException) -> Exception:
        """What the factory's ``error`` fails the actor with: an `Exception` as it is.

        A factory's KeyboardInterrupt or SystemExit (or a CancelledError it raised: a
        synchronous call cannot be cancelled) fails this actor only: passed on as it is, it
        would escape into the spawner (the host application) or take the loop down. It
        becomes a RuntimeError, caused by it.
        """
        if isinstance(error, Exception):
            return error
        failure = RuntimeError(f"the factory of actor {self.path} raised {type(error).__name__}")
        failure.__cause__ = error
        return failure

    def _not_an_actor(self, made: object) -> TypeError:
        return TypeError(
            f"the factory for actor {self.path} must return a new Actor instance, "
            f"got {type(made).__qualname__}"
        )

    def bind(self, actor_class: type[Actor[Any]]) -> None:
        """Called by Actor.__new__, before the user's __init__ can send anything to itself."""
        self.actor_class = actor_class
        # Copied here: read per ask, and a class attribute costs a lookup through the MRO.
        self.cancels = actor_class.cancel_abandoned
        ref = self._ref  # not `ref`'s call: a new cell always has its ActorRef
        if isinstance(ref, ActorRef):
            # The message types the class has already checked (see `ActorRef.__init__`):
            # stored here rather than through a method of the ref, a call less per spawn.
            ref._admitted = actor_class.__actors_admitted__  # pyright: ignore[reportPrivateUsage]
            # And forget the type the ref last admitted by the previous class's set (a
            # factory may return another class on a restart).
            ref._passed = None  # pyright: ignore[reportPrivateUsage]

    async def _run(self, posted: bool = False) -> None:
        # Invariant: this is the only task handling this actor's messages (it holds the
        # mailbox's consumer token), so handlers run one at a time, never re-entered.
        # Every wait at a message boundary that an evacuation may move the actor during
        # (``resting``: started or resumed from another thread, a fairness turn) is followed
        # by `stay`; a task that fails it ends at once, touching nothing.
        if posted and not self.stay():
            return
        # No bound methods of the mailbox kept in locals (each a garbage-collected object for
        # as long as the task lives: a parked actor is walked by every full collection); the
        # slow path looks them up when it runs.
        mailbox = self.mailbox
        receive, sync = self._handler()
        throughput = budget = self.throughput
        times = self.times  # None unless handler_timing: then two clock reads per message
        clock = time.perf_counter
        # Mailbox.pop's lock-free common case, inlined: this loop is the dispatch hot path.
        queue, control, senders, low_water = mailbox.consumer_view()
        started = clock()
        lingered = False
        parking: Parking | None = None
        moving: Home | None = None  # set when the run ends for a move to another loop
        abandoned = False  # evacuated while parked: this task must touch nothing more
        try:
            while True:
                if queue and not control:
                    item: Any = queue.popleft()
                    if senders and len(queue) <= low_water:
                        mailbox.grant_waiting()
                elif not lingered and not queue and not control:
                    # Empty: maybe linger one loop iteration before handing the token back.
                    # In a request/reply exchange on this loop the answer usually arrives in
                    # that iteration, and this task carries on instead of a new one being
                    # created. Where it does not (a ring, fan-out), lingering is a wasted
                    # iteration, so each actor learns: hits keep it lingering, misses stop
                    # it, and it tries again now and then.
                    linger = self.linger
                    if linger > 0:
                        lingered = True
                        self.handler_seconds += clock() - started  # waiting is not handling
                        # Not resting: a lock here would slow a request/reply exchange on
                        # one loop by a fifth. A lingering actor waits out a block (one loop
                        # iteration's bad luck).
                        await yield_now()
                        started = clock()
                        if queue or control:
                            self.linger = _LINGER_HITS
                            lingered = False  # linger again when it runs dry
                        else:
                            self.linger = linger - 1
                        continue
                    self.linger = linger - 1 if linger > -_LINGER_RETRY else 1
                    item = mailbox.pop_slow()  # not lingering: straight on to going idle
                else:
                    item = mailbox.pop_slow()
                    lingered = False
                kind = type(item)  # pyright: ignore[reportUnknownVariableType]
                if kind is Ask:
                    if sync:  # answered in place: no coroutine
                        failure = self._answer_now(item, receive)
                        if failure is not None:
                            budget -= 1  # the failed ask was dequeued too
                            await self.fail(failure, item.message)
                            return
                    elif not await self._answer(item, receive):
                        budget -= 1
                        return
                elif kind is Signal:
                    if item is EMPTY:
                        # Token handed back. Park: the next producer resumes this task rather
                        # than starting one; retired after a while idle (see _parking.py).
                        # The metrics as at the end of a burst: an idle actor's are exact.
                        self.dequeued += throughput - budget
                        budget = throughput
                        self.handler_seconds += clock() - started  # waiting is not handling
                        traffic = self.traffic
                        if type(traffic) is Traffic:
                            traffic.bursts += 1
                            moving = self._should_move(traffic, holding_token=False)
                            if moving is not None:
                                return  # the move is finished after this task (finally)
                        if sync:
                            # A synchronous handler's next run is a drain, not this task:
                            # no parking (the fallback's task ends here).
                            self.task = None
                            return
                        if parking is None:
                            parking = self._parking()
                        woken = await parking.park(self)
                        started = clock()
                        if woken is not WOKEN:
                            if woken is Resumed.EVACUATED or (
                                woken is POSTED and not self.stay()
                            ):  # the actor lives on another loop now
                                abandoned = True
                                return
                            if woken is Resumed.RETIRED:
                                # A producer may already have started a new run task between
                                # the retirement and this resumption: leave its ref.
                                if self.task is asyncio.current_task(self.home.loop):
                                    self.task = None
                                return
                        lingered = False
                        continue
                    if item is DRAINED:
                        rest = self._exit_now(None)  # `_exit`, without its coroutine
                        if rest is not None:
                            await rest
                        return
                    record = item.record
                    if record is SWITCH:  # `become`: the next messages go to the new handler
                        receive, sync = self._handler()
                        budget += 1
                        continue
                    if not await self._on_control(item):
                        if type(record) is Tick:
                            budget -= 1  # a tick is a mailbox item: count the failed one
                        return
                    if type(record) is Unstashed:
                        # Counted once already, when first taken: for the fairness budget
                        # only, not for the metrics.
                        self.dequeued -= 1
                    elif type(record) is not Tick:
                        budget += 1  # control signals are not mailbox items: not counted
                else:
                    self.handling = kind  # one store: what the watchdog reports if we block
                    if times is not None:
                        began = clock()
                    try:
                        if sync:  # called in place: no coroutine, no task switch
                            result: object = receive(item)
                            if (
                                result is not None
                                and _awaitable_kind.get(type(result)) is not False
                            ):
                                _check_not_awaitable(result, self, item)
                        else:
                            await receive(item)
                    except Exception as error:
                        budget -= 1
                        self.failed_items += 1
                        await self.fail(error, item)
                        return
                    except BaseException as error:
                        failure = self._as_failure(error, item)
                        if failure is None:
                            raise
                        budget -= 1
                        self.failed_items += 1
                        await self.fail(failure, item)
                        return
                    if times is not None:
                        times.record(clock() - began)  # pyright: ignore[reportPossiblyUnboundVariable]
                budget -= 1
                if not budget:
                    # Metrics per burst, not per message: the budget counted for us.
                    self.dequeued += throughput
                    turn = clock()
                    self.handler_seconds += turn - started
                    budget = throughput
                    traffic = self.traffic
                    if type(traffic) is Traffic:
                        moving = self._should_move(traffic, holding_token=True)
                        if moving is not None:
                            return  # with the token and the rest of the queue
                    home = self.home
                    turns = home.turns = home.turns + 1  # home thread only
                    self.resting = RUN_CHECKS
                    await yield_now()  # fairness: let the other actors on this loop run
                    if not self.stay():
                        abandoned = True  # its metrics were counted before the turn
                        return
                    started = clock()
                    # Other actors of this loop reached fairness turns meanwhile: a backlog
                    # of runnable actors. An idle loop may take this one (it moves at its
                    # next turn or when it runs dry).
                    if home.turns != turns and started - turn > CONTENDED and traffic is not PINNED:
                        self.system.placer.offer(self)
        except asyncio.CancelledError:
            if self.task is asyncio.current_task():  # not an evacuated actor's old task
                await self._killed()
            raise
        finally:
            if not abandoned:  # else the fields are the new loop's: nothing to count here
                self.dequeued += throughput - budget
                self.handler_seconds += clock() - started
                if moving is not None:
                    self.home.loop.call_soon(self._finish_move, moving)

    def _drain(self) -> None:
        """The run of an actor whose handler is synchronous: a loop callback, not a task.

        Invariants: only the holder of the mailbox's consumer token calls it, on the home
        thread, with ``task`` `_DRAIN_DUE` (`_wake`, `_run_soon`, `posted_start`, a fairness
        turn); it is the only consumer (it pops without the lock, as `_run` does) and no run
        task exists meanwhile. ``task`` is `_DRAINING` while it runs, for `in_handler`, and
        ``home.draining`` names it, for the watchdog. It ends in one of three ways: the
        mailbox ran dry (token handed back under the lock, ``task`` None: the state of a
        retired actor); the budget is spent (a fairness turn: `_drain_after_turn` is
        scheduled, the token kept); or an item only a run task handles (`_hand_to_task`).
        """
        home = self.home
        if self.phase is not RUNNING:  # not started, or ending: the task path's work
            self._hand_to_task(None)
            return
        behaviour = self.behaviour
        instance = self.instance
        if self.plain_handler and instance is not None and behaviour is None:
            receive: Callable[[Any], Any] = instance.receive  # `_handler`, inlined
            sync = instance.__actors_sync__
        else:
            receive, sync = self._handler()
        if not sync:  # became asynchronous since it was scheduled
            self._hand_to_task(None)
            return
        self.task = _DRAINING
        home.draining = self
        mailbox = self.mailbox
        queue, control, senders, low_water = mailbox.consumer_view()
        throughput = budget = self.throughput
        times = self.times
        clock = time.perf_counter
        started = clock()
        try:
            while budget:
                if queue and not control:
                    item: Any = queue.popleft()
                    if senders and len(queue) <= low_water:
                        mailbox.grant_waiting()
                else:
                    item = mailbox.pop_slow()
                kind = type(item)  # pyright: ignore[reportUnknownVariableType]
                if kind is Signal:  # (timer ticks travel in the queue, in order: not only slow)
                    if item is EMPTY:  # the token is handed back: idle, no task
                        self.task = None
                        traffic = self.traffic
                        if type(traffic) is Traffic:
                            traffic.bursts += 1
                            moving = self._should_move(traffic, holding_token=False)
                            if moving is not None:
                                self.task = _DRAIN_DUE  # until `_finish_move` (a kill waits)
                                home.loop.call_soon(self._finish_move, moving)
                        return
                    record = item.record
                    if record is SWITCH:  # `become`: maybe no longer synchronous
                        receive, sync = self._handler()
                        if not sync:
                            self._hand_to_task(None)
                            return
                        continue
                    # The signals whose work is synchronous for this actor are handled here,
                    # as `_on_control` would in a run task (the same order, budget, metrics
                    # and failures); the rest are the run task's. See docs/benchmarks.md,
                    # "Signals in the drain".
                    signal = type(record)  # pyright: ignore[reportUnknownVariableType]
                    if signal is Tick:
                        timer = record.timer
                        if not self.plain_tick:  # a tracing cell: the tick's span is linked
                            failure = self._traced_tick(timer, receive)
                            budget -= 1  # a tick is a mailbox item, as `_run` counts it
                            if failure is not None:
                                self._end_from_drain(self._exit_now(failure))
                                return
                            continue
                        # A timer's tick (`_on_tick` in place): its message is handled as a tell.
                        item = timer.take()
                        if item is CANCELLED:
                            budget -= 1  # a tick is a mailbox item, as `_run` counts it
                            continue
                    elif signal is Unstashed:  # `_replay` in place: a tell or an ask again
                        item = record.item
                        self.dequeued -= 1  # counted when first taken: for the budget only
                    elif signal is Call:  # a test kit's function: not a mailbox item
                        self._call_now(record)
                        continue
                    elif (
                        signal is WatchedEnded
                        and instance is not None  # running: it has one (checked above)
                        and type(instance).__actors_terminated_sync__
                    ):
                        failure = self._terminated_now(record.watched, record.reason)
                        if failure is not None:
                            self._end_from_drain(self._exit_now(failure))
                            return
                        continue  # a notice is not a mailbox item: not counted
                    else:
                        if item is DRAINED:
                            rest = self._exit_now(None)
                            if rest is not None:  # `_end_from_drain`, inlined: every life's end
                                self._spawn_task(self._carry_on(rest))
                        else:
                            # Supervision, suspension, a kill, an async `on_terminated`.
                            self._hand_to_task(item)
                        return
                    kind = type(item)  # pyright: ignore[reportUnknownVariableType]
                if kind is Ask:
                    failure = self._answer_now(item, receive)
                    if failure is not None:
                        budget -= 1
                        self._failed(failure, item.message)
                        self._end_from_drain(self._exit_now(failure))
                        return
                else:
                    self.handling = kind  # what the watchdog reports if we block
                    if times is not None:
                        began = clock()
                    try:
                        result: object = receive(item)
                        if result is not None and _awaitable_kind.get(type(result)) is not False:
                            _check_not_awaitable(result, self, item)
                    except BaseException as error:
                        budget -= 1
                        self.failed_items += 1
                        failure = self._sync_failure(error, item)
                        self._failed(failure, item)
                        self._end_from_drain(self._exit_now(failure))
                        return
                    if times is not None:
                        times.record(clock() - began)  # pyright: ignore[reportPossiblyUnboundVariable]
                budget -= 1
            # Budget spent: a fairness turn, the token kept, so that other actors run.
            traffic = self.traffic
            if type(traffic) is Traffic:
                moving = self._should_move(traffic, holding_token=True)
                if moving is not None:
                    self.task = _DRAIN_DUE  # until `_finish_move`, with the rest of the queue
                    home.loop.call_soon(self._finish_move, moving)
                    return
        finally:
            home.draining = None
            self.dequeued += throughput - budget
            self.handler_seconds += clock() - started
        # Only a fairness turn gets here (every other way out returned above).
        turns = home.turns = home.turns + 1  # home thread only
        # A marker of this turn alone: an evacuation clears ``task``, and an actor moved away
        # and back meanwhile has a new run here, which this callback must not double.
        due: Any = _Drain("due after a turn")
        self.task = due
        context = self.context  # read before resting: an evacuation replaces it
        # Resting, last: from here on the watchdog may move the actor off a loop that blocks
        # before the next drain runs (that drain checks first), so nothing of the cell is
        # touched after this store.
        self.resting = RUN_CHECKS
        home.loop.call_soon(self._drain_after_turn, due, turns, clock(), context=context)

    def _drain_after_turn(self, due: object, turns: int, turn: float) -> None:
        # A drain's next burst after a fairness turn (see `_run`'s turn, which this mirrors):
        # only if the actor is still here and this turn's run is still its run (`stay`, and
        # the turn's own marker: evacuated and moved back, it has another run here).
        lock = self.mailbox.lock
        lock.acquire()  # the evacuation decides under it too
        try:
            if self.task is not due or self.home.thread_id != threading.get_ident():
                return  # evacuated meanwhile: the fields are the new loop's
            self.resting = NOT_RESTING
        finally:
            lock.release()
        home = self.home
        if (
            home.turns != turns
            and time.perf_counter() - turn > CONTENDED
            and self.traffic is not PINNED
        ):
            self.system.placer.offer(self)
        self._drain()

    def _hand_to_task(self, signal: Signal | None) -> None:
        """The drain met what only a run task handles: start one, with the token.

        ``signal`` (popped from the head of the control lane) goes back there first, so the
        task takes it next: nothing is lost or reordered. Producers only append to that lane
        and a kill's signal is put at its head: either way, ahead of what was behind it.
        """
        if signal is not None:
            self.mailbox.interrupt(signal)
        self._spawn_task(self._run())

    def _end_from_drain(self, rest: Coroutine[Any, Any, None] | None) -> None:
        # `_exit_now` from a drain: the end, in place, or its remainder in a run task.
        if rest is not None:
            self._spawn_task(self._carry_on(rest))

    async def _carry_on(self, rest: Coroutine[Any, Any, None]) -> None:
        # A drain's remainder of `_exit` in a task: killed meanwhile, as `_run` would be.
        try:
            await rest
        except asyncio.CancelledError:
            if self.task is asyncio.current_task():
                await self._killed()
            raise

    def _should_move(self, traffic: Traffic, *, holding_token: bool) -> Home | None:
        """The loop to move to now, with the consumer token taken for the move; or None.

        At a message boundary of the run task: the fairness turn (``holding_token``: the run
        task has it, with messages still queued) or running dry (the token was just handed
        back: it is taken back only if nothing arrived meanwhile).
        """
        forced = traffic.forced is not None
        placer = self.system.placer
        target = placer.decide(self, traffic)
        if target is None or (not holding_token and not self.mailbox.claim_if_idle()):
            return None
        placer.moved(self, self.home, target, forced=forced)
        return target

    def _parking(self) -> Parking:
        home = self.home
        parking = home.parking
        if parking is None:
            parking = home.parking = Parking(home.loop)
        return parking

    async def _killed(self) -> None:
        # Our task was cancelled (a timeout ran out): suspend if the parent asked for that,
        # else end for good. Children go first, killed rather than drained.
        self.kill_pending = False  # carried out (see `_kill_here`)
        self.parked = None  # it may have been cancelled while parked
        if self.terminated.is_set or self.phase in (SUSPENDED, ENDED):
            return
        seldom = self.seldom
        if seldom is not None and seldom.suspending is not None and not self.mailbox.sealed:
            await self._end_instance(run_on_stop=True, kill_children=True)
            self._suspend(None)
            return
        await self._finish(None, killed=True)

    def _handler(self) -> tuple[Callable[[Any], Any], bool]:
        """The handler for the next message, and whether it is synchronous (see `become`)."""
        behaviour = self.behaviour
        if behaviour is not None and behaviour.handler is not None:
            return behaviour.handler, behaviour.sync
        instance = self.instance
        assert instance is not None
        return instance.receive, instance.__actors_sync__

    def _answer_now(self, ask: Ask, receive: Callable[[Any], Any]) -> Exception | None:
        """`_answer` for a synchronous handler, in place: None, or the failure to fail with."""
        if ask.reply.abandoned:  # the asker gave up while it was queued
            self._skip(ask)
            return None
        began = self._asked(ask)
        self.deadline = ask.deadline
        try:
            reply: object = receive(ask.message)
            if reply is not None and _awaitable_kind.get(type(reply)) is not False:
                _check_not_awaitable(reply, self, ask.message)
            self._reply(ask, reply, began)
        except BaseException as error:
            return self._ask_failed(ask, error)
        finally:
            self.deadline = None
        return None

    async def _answer(self, ask: Ask, receive: Callable[[Any], Any], watched: bool = False) -> bool:
        # `_asked` and `_reply` inlined: an ask's round trip is a few microseconds, and the
        # two calls cost 2-3% of it (measured, ask-same p50). Invariant: `stash` finds
        # ``ask`` in this frame (`_current_ask`), so nothing is stored per ask for it.
        if ask.reply.abandoned:  # the asker gave up while it was queued: nobody waits
            self._skip(ask)
            return True
        if self.cancels and not watched:
            return await self._answer_cancellable(ask, receive)
        message = ask.message
        self.handling = type(message)
        times = self.times
        began = time.perf_counter() if times is not None else 0.0
        self.deadline = ask.deadline
        try:
            reply = await receive(message)
            self.deadline = None
            if times is not None:
                times.record(time.perf_counter() - began)
            seldom = self.seldom
            if seldom is None or seldom.stashed_ask is not ask:
                if not known_sendable(reply):
                    if type(ask.reply) is Channel:  # a StreamRequest: stream the items
                        reply = await pump(ask.reply, reply, lambda: self.mailbox.closed)
                    else:
                        check_sendable(
                            reply,
                            f"reply of actor {self.path} to {type(payload(message)).__qualname__}",
                        )
                ask.reply.settle(reply)
            else:  # stashed: the reply comes when it is handled again
                seldom.stashed_ask = None
        except BaseException as error:
            self.deadline = None
            await self.fail(self._ask_failed(ask, error), message)
            return False
        return True

    async def _answer_cancellable(self, ask: Ask, receive: Callable[[Any], Any]) -> bool:
        """`_answer` for an actor whose class set ``cancel_abandoned``: the handler is
        cancelled (in a cancel scope of its own) if its asker gives up meanwhile."""
        loop = self.home.loop  # an actor moves only between messages: this one stays here
        scope = anyio.CancelScope()
        answering = True

        def cancel() -> None:  # on this loop: a late notice must not cancel the next one
            if answering:
                scope.cancel()

        def abandoned() -> None:  # on the asker's thread, whichever it is
            with contextlib.suppress(RuntimeError):  # the loop closed: nothing to cancel
                loop.call_soon_threadsafe(cancel)

        reply = ask.reply
        if not reply.watch_abandon(abandoned):
            self._skip(ask)
            return True
        try:
            with scope:
                return await self._answer(ask, receive, watched=True)
        finally:
            answering = False
            reply.watch_abandon(None)
            if scope.cancelled_caught:
                self._counts().handlers_cancelled += 1
        return True  # cancelled: its asker is gone, and the actor carries on

    def _skip(self, ask: Ask) -> None:
        """Drop a queued ask whose asker has given up, counting why."""
        counts = self._counts()
        reply = ask.reply
        if reply.abandoned == EXPIRED:
            counts.expired += 1
        else:
            counts.cancelled += 1
        # Nobody waits for it, but a wrapper of the reply (a tracing span) must still end.
        what = type(payload(ask.message)).__qualname__
        reply.settle(error=AskTimeout(f"actor {self.path} skipped {what}: its asker had given up"))

    def processed(self, dequeued: int | None = None) -> int:
        """Mailbox items handled without an exception (racy outside the run task).

        ``dequeued``: the count read by the caller already (see `actor_metrics`).
        """
        taken = self.dequeued if dequeued is None else dequeued
        flow = self.flow
        return taken - self.failed_items - (flow.skipped if flow is not None else 0)

    def _counts(self) -> FlowCounts:
        counts = self.flow
        if counts is None:
            counts = self.flow = FlowCounts()
        return counts

    def _asked(self, ask: Ask) -> float:
        # Before an ask's handler: what the watchdog reads; the clock if timed.
        self.handling = type(ask.message)
        return time.perf_counter() if self.times is not None else 0.0

    def _reply(self, ask: Ask, reply: object, began: float) -> None:
        times = self.times
        if times is not None:
            times.record(time.perf_counter() - began)
        seldom = self.seldom
        if seldom is not None and seldom.stashed_ask is ask:
            seldom.stashed_ask = None
            return  # stashed: the reply comes when it is handled again
        message = ask.message
        if not known_sendable(reply):  # the description is built only when needed
            if type(ask.reply) is Channel:
                raise synchronous_stream(self, message)
            what = type(payload(message)).__qualname__
            check_sendable(reply, f"reply of actor {self.path} to {what}")
        ask.reply.settle(reply)

    def _ask_failed(self, ask: Ask, error: BaseException) -> Exception:
        """The handler answering ``ask`` raised ``error``: the asker gets it, and the actor
        fails with the result. A kill (the run task's own cancellation) propagates."""
        message = ask.message
        seldom = self.seldom
        owned = seldom is None or seldom.stashed_ask is not ask  # else the stash answers it
        if seldom is not None and not owned:
            seldom.stashed_ask = None
        failure = error if isinstance(error, Exception) else self._as_failure(error, message)
        if failure is None:
            if owned:
                # Killed mid-handler: the asker must not wait for a reply that cannot come.
                ask.reply.settle(error=self.stopped_error(message))
            raise error
        self._note_failure(failure, message)  # before the asker can see the error
        if owned:
            ask.reply.settle(error=failure)
        self.failed_items += 1
        return failure

    async def _on_control(self, signal: Signal) -> bool:
        """Handle a control signal between two messages; False when the run task must end."""
        match signal.record:
            case Tick(timer):
                return await self._on_tick(timer)
            case ChildExit(child, incarnation, reason):
                return await self._guarded(on_child_exit(self, child, incarnation, reason), signal)
            case RestartDue(group, reason):
                if self.seldom is not None:  # made with the timer that sent this
                    self.seldom.restart_timer = None
                return await self._guarded(restart_group(self, list(group), reason), signal)
            case Call():
                self._call_now(signal.record)
                return True
            case WatchedEnded(watched, reason):
                return await self._on_terminated(watched, reason)
            case Suspend():
                return await self._on_suspend()
            case Kill():
                return self._on_kill()
            case Unstashed(item):
                return await self._replay(item)
            case _:
                raise AssertionError(f"actor {self.path}: unknown control signal {signal!r}")

    async def _on_suspend(self) -> bool:
        if self.seldom is None or self.seldom.suspending is None:
            return True  # stale: this actor already suspended (and restarted) since
        await self._end_instance(run_on_stop=True)
        if self.mailbox.sealed:  # stopped for good meanwhile: no restart to wait for
            await self._finish(None, run_on_stop=False)
        else:
            self._suspend(None)
        return False

    def _on_kill(self) -> bool:
        if not self.kill_pending:
            return True  # stale, or `_kill_here` cancelled the task first
        self.kill_pending = False
        # As if cancelled here, between two messages: _run's handler ends the actor.
        raise asyncio.CancelledError

    async def _guarded(self, decision: Any, signal: Signal) -> bool:
        # A supervision step is this actor's own work: if it breaks (a bug, or a strategy
        # object that raises), this actor fails like a handler would.
        try:
            keep_running: bool = await decision
        except Exception as error:
            await self.fail(error, signal)
            return False
        return keep_running

    async def _on_tick(self, timer: Timer) -> bool:
        plain = self.plain_tick
        if not plain:
            self._tick_begins(timer)
        try:
            message = self._take_tick(timer)
            if message is CANCELLED:
                return True
            if await self._outside_run(self._handle(message), message):
                return True
            self.failed_items += 1  # a tick is a mailbox item
            return False
        finally:
            if not plain:
                self._tick_ends(timer)

    def _take_tick(self, timer: Timer) -> object:
        # A tick's message (CANCELLED: none), named for the watchdog while it is handled.
        message = timer.take()
        if message is not CANCELLED:
            self.handling = type(message)
        return message

    def _tick_begins(self, timer: Timer) -> None:
        """Before a tick of ``timer`` is handled (a subclass's hook: a tracing cell links the
        tick's span to the span that started the timer). Synchronous, so that a drain can
        handle the tick in place (`_traced_tick`); ``plain_tick`` says it is not overridden.
        A subclass changes ticks through these hooks only: a drain never calls `_on_tick`."""

    def _tick_ends(self, timer: Timer) -> None:
        """After a tick of ``timer`` was handled, however that ended (see `_tick_begins`)."""

    def _traced_tick(self, timer: Timer, receive: Callable[[Any], Any]) -> Exception | None:
        """`_on_tick` of a subclass with tick hooks, in a drain: None, or the failure (counted
        and logged) that ends the instance."""
        self._tick_begins(timer)
        try:
            message = self._take_tick(timer)
            if message is CANCELLED:
                return None
            try:
                result: object = receive(message)
                if result is not None and _awaitable_kind.get(type(result)) is not False:
                    _check_not_awaitable(result, self, message)
            except BaseException as error:
                failure = self._sync_failure(error, message)
                self.failed_items += 1  # a tick is a mailbox item
                self._failed(failure, message)
                return failure
            return None
        finally:
            self._tick_ends(timer)

    def _call_now(self, call: Call) -> None:
        # A test kit's function between two messages; its error is the caller's mistake,
        # not this actor's failure.
        try:
            call.done.settle(call.fn(self.instance))
        except Exception as error:
            call.done.settle(error=error)

    def _sync_failure(self, error: BaseException, message: object) -> Exception:
        """What a synchronous handler or hook raised, as this actor's failure.

        The cancellation of the actor's own run task (a kill) propagates, as in `_run`; a
        drain is never cancelled, so there everything is a failure (a GeneratorExit too:
        no coroutine of ours is being closed by a plain call).
        """
        if isinstance(error, Exception):
            return error
        failure = self._as_failure(error, message)
        if failure is None:
            if not isinstance(error, GeneratorExit):
                raise error
            failure = RuntimeError(
                f"actor {self.path} raised GeneratorExit while handling "
                f"{type(payload(message)).__qualname__}"
            )
            failure.__cause__ = error
        return failure

    async def _handle(self, message: object) -> None:
        # A message off the hot path (a tick, a replayed tell), to either kind of handler.
        receive, sync = self._handler()
        if sync:
            result = receive(message)
            if result is not None:
                _check_not_awaitable(result, self, message)
        else:
            await receive(message)

    async def _replay(self, item: object) -> bool:
        """Handle an item `unstash_all` put back, with the handler of the moment."""
        if type(item) is Ask:
            receive, sync = self._handler()
            if not sync:
                return await self._answer(item, receive)
            failure = self._answer_now(item, receive)
            if failure is None:
                return True
            await self.fail(failure, item.message)
            return False
        self.handling = type(item)
        if await self._outside_run(self._handle(item), item):
            return True
        self.failed_items += 1  # as `_answer` counts a failed ask
        return False

    def start_timer(self, message: object, delay: float, interval: float | None) -> Timer:
        """On the home thread: a timer delivering ``message`` to this actor."""
        self.admit(message)
        timer = Timer(self, message, delay, interval)
        if self.timers is None:
            self.timers = set()
        self.timers.add(timer)
        return timer

    async def _on_terminated(self, watched: Cell, reason: BaseException | None) -> bool:
        instance = self.instance
        assert instance is not None
        if type(instance).__actors_terminated_sync__:
            failure = self._terminated_now(watched, reason)
            if failure is None:
                return True
            await self._exit(failure)
            return False
        if not self.system.tree.forget_watched(self, watched):
            return True  # unwatched since: Akka's guarantee, no Terminated after unwatch
        event = Terminated(watched.handle, reason)
        hook = instance.on_terminated(event)
        assert hook is not None  # not `__actors_terminated_sync__`: its result is awaited
        return await self._outside_run(hook, event)

    def _terminated_now(self, watched: Cell, reason: BaseException | None) -> Exception | None:
        """A watch notice to a synchronous ``on_terminated``, called in place (by a drain or a
        run task): None, or the failure (counted and logged) that ends the instance."""
        if not self.system.tree.forget_watched(self, watched):
            return None  # unwatched since: Akka's guarantee, no Terminated after unwatch
        instance = self.instance
        assert instance is not None
        event = Terminated(watched.handle, reason)
        self.handling = Terminated  # what the watchdog names if the hook blocks
        try:
            result: object = instance.on_terminated(event)
            if result is not None:
                _check_not_awaitable(result, self, event)
        except BaseException as error:
            failure = self._sync_failure(error, event)
            self._failed(failure, event)
            return failure
        return None

    async def _outside_run(self, handler: Awaitable[object], message: object) -> bool:
        """Await a handler called from a control signal, failing the actor as `_run` would.

        (`_run` inlines the same rules for ordinary messages: it is the hot path.)
        """
        try:
            await handler
        except Exception as error:
            await self.fail(error, message)
            return False
        except BaseException as error:
            failure = self._as_failure(error, message)
            if failure is None:
                raise
            await self.fail(failure, message)
            return False
        return True

    def _as_failure(
        self, error: BaseException, message: object = None, *, hook: str | None = None
    ) -> RuntimeError | None:
        """A non-Exception raised by a handler or a ``hook``, as a failure of this actor;
        None to propagate.

        Only the cancellation of this actor's own task (a kill) and the closing of its
        coroutine (GeneratorExit) propagate. A CancelledError the actor's code raised while
        the actor was *not* being cancelled, and SystemExit or KeyboardInterrupt raised by
        a handler, the factory or a hook (``on_start``, ``on_stop``, ``on_restart``),
        become a RuntimeError caused by them: passed on as they are, the first would make
        an asker believe it was cancelled itself, and the others would take the whole
        worker loop (every actor on it) down.
        """
        if isinstance(error, GeneratorExit):
            # The run coroutine is being closed (its loop is gone and the garbage collector
            # finalizes an abandoned task): nothing may be awaited or logged any more.
            return None
        task = self.task
        if isinstance(error, asyncio.CancelledError) and (task is None or task.cancelling()):
            return None
        stray = isinstance(error, asyncio.CancelledError)
        what = (
            f"the handler of actor {self.path} raised {type(error).__name__} while handling "
            f"{type(payload(message)).__qualname__}"
            if hook is None
            else f"the {hook} of actor {self.path} raised {type(error).__name__}"
        )
        failure = RuntimeError(what + (", without the actor being cancelled" if stray else ""))
        failure.__cause__ = error
        return failure

    def _note_failure(self, error: BaseException, message: object) -> None:
        what = type(payload(message)).__qualname__
        note = f"raised by actor {self.path} while handling {what}"
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)

    async def fail(self, error: Exception, message: object = _SUPERVISING) -> None:
        """The instance failed with ``error``; it ends (`_exit`), escalating to its parent.

        With ``message``: a handler, a hook or a supervision step of this actor raised while
        handling it (counted in the actor's ``failed`` metric, noted on the error). Without:
        as a supervisor that exceeded its restart intensity (`_supervisor`), which is not a
        failure of its own code.
        """
        self._failed(error, message)
        await self._exit(error)

    def _failed(self, error: Exception, message: object = _SUPERVISING) -> None:
        # `fail`'s bookkeeping before the end: counted, noted and logged.
        if message is _SUPERVISING:
            logger.error(
                "actor %s gave up supervising and fails",
                self.path,
                exc_info=error,
                extra=self.log_fields(),
            )
        else:
            self.failed += 1
            self._note_failure(error, message)
            what = type(payload(message)).__qualname__
            logger.error(
                "actor %s failed while handling %s",
                self.path,
                what,
                exc_info=error,
                extra=self.log_fields(message),
            )

    async def _exit(self, reason: Exception | None) -> None:
        """The instance ended (failed, or stopped and drained): restart or finish?"""
        rest = self._exit_now(reason)
        if rest is not None:
            await rest

    def _exit_now(self, reason: Exception | None) -> Coroutine[Any, Any, None] | None:
        """`_exit` as far as it goes without awaiting: None when it is done, else the
        coroutine that completes it, to be awaited (by a run task) right away.

        The one place an instance's end is decided; a drain (no task) calls it directly and
        starts a task for the remainder only when there is one (children to stop, an
        ``on_stop`` to await).
        """
        parent = self.parent
        instance = self.instance
        if not self.children and (instance is None or type(instance).on_stop is _ON_STOP):
            # The common end: no children and no on_stop, so nothing to await. The steps of
            # `_end_instance` in place, inlined, as is the end below: a call costs a life
            # about 1% (docs/benchmarks.md, "An actor's life, instruction by instruction").
            # A child registered from another thread after this look is found below.
            if self.seldom is not None:  # a backoff in progress, maybe
                self._cancel_restart_timer()
            if self.timers:
                for timer in list(self.timers):
                    timer.cancel()
            self.instance = None
            self.kill_pending = False  # as in `_end_instance`: a kill was for this instance
            if self.behaviour is not None:
                self._drop_stash()
            restart = self.restart
            if (
                parent is None
                or restart is _TEMPORARY
                or (restart is _TRANSIENT and reason is None)  # not `wants_restart`
                or self.mailbox.sealed
            ):
                # For good, now. Children are refused and the cell leaves the tree in one
                # critical section (`Tree.end_childless`): one lock round less than
                # `refuse_children`, then `unregister`.
                if reason is not None and parent is self.system.guardian:
                    self.system.record_failure(reason)
                self.phase = ENDED
                self.exit_reason = reason
                watchers = self.system.tree.end_childless(self)
                if watchers is not None:
                    self._conclude(reason, False, watchers)
                    return None
                # A child came meanwhile (a scope's host task): it ends first (`_finish`
                # stops it), and none can follow (refused).
                return self._finish(reason, run_on_stop=False)
            self.system.tree.refuse_children(self)
            return self._exit_decided(reason)
        return self._exit_slowly(reason)

    async def _exit_slowly(self, reason: Exception | None) -> None:
        # `_exit` with children to stop or an ``on_stop`` to await.
        await self._end_instance(run_on_stop=True)
        rest = self._exit_decided(reason)
        if rest is not None:
            await rest

    def _exit_decided(self, reason: Exception | None) -> Coroutine[Any, Any, None] | None:
        # The instance and its children are gone: suspend for a restart, or finish.
        parent = self.parent
        # Read `sealed` only now, after the awaits: a final stop requested meanwhile wins.
        if parent is not None and not self.mailbox.sealed and self.restart.wants_restart(reason):
            self._suspend(reason)
            if parent.deliver(Signal(ChildExit(self, self.incarnation, reason))):
                return None
            # The parent has finished: nobody will restart us.
            self.phase = ENDED
        if reason is not None and parent is self.system.guardian:
            self.system.record_failure(reason)
        if self.instance is None and self.exiting and not self.children:
            self.phase = ENDED  # `_finish` without its coroutine: nothing is left to end
            self.exit_reason = reason
            self._conclude(reason, False)
            return None
        return self._finish(reason, run_on_stop=False)

    def _suspend(self, reason: BaseException | None) -> None:
        # The instance is gone; keep the consumer token so that no run task starts while
        # messages queue up behind the failed one.
        self.phase = SUSPENDED
        self.exit_reason = reason
        self.task = None
        self._suspended()

    def _refuse_and_cancel(self) -> None:
        """The start of an instance's end: no children from now on, no timers, no backoff."""
        self.system.tree.refuse_children(self)
        if self.seldom is not None:
            self._cancel_restart_timer()
        if self.timers:
            for timer in list(self.timers):
                timer.cancel()

    async def _end_instance(self, *, run_on_stop: bool, kill_children: bool = False) -> None:
        """Stop the children (reverse start order), then run the instance's ``on_stop``."""
        self._refuse_and_cancel()
        if self.children:  # else none can come: refused just above
            try:
                await stop_children(self, kill=kill_children)
            except Exception:
                # A bug in the stop path must not leave this actor (and a shutdown) hanging.
                logger.exception(
                    "actor %s: stopping its children failed", self.path, extra=self.log_fields()
                )
        instance, self.instance = self.instance, None
        # The base class's on_stop does nothing: not awaiting it spares a coroutine per life.
        if run_on_stop and instance is not None and _overrides(type(instance), "on_stop"):
            try:
                await instance.on_stop()
            except BaseException as error:
                failure = (
                    error
                    if isinstance(error, Exception)
                    else self._as_failure(error, hook="on_stop")
                )
                if failure is None:
                    raise
                logger.error(
                    "on_stop of actor %s raised",
                    self.path,
                    exc_info=failure,
                    extra=self.log_fields(),
                )
        self.kill_pending = False  # a kill not carried out was for the instance just ended
        if self.behaviour is not None:
            self._drop_stash()

    def _drop_stash(self) -> None:
        """The instance has ended: forget its handler, and account for what it stashed.

        The stash is the instance's, not the mailbox's: a restart starts with an empty one.
        Its tells become dead letters ("stashed"), its asks get `ActorStopped`.
        """
        behaviour = self.behaviour
        assert behaviour is not None
        behaviour.handler = None
        behaviour.sync = True
        stashed = list(behaviour.stash)
        behaviour.stash.clear()
        if stashed:
            self._account_for(stashed, "stashed")

    def _account_for(self, items: Sequence[object], why: str) -> None:
        """Items that will never be handled: asks are answered with `ActorStopped`, tells
        become dead letters (timer ticks are not letters)."""
        tells: list[object] = []
        for item in items:
            if type(item) is Ask:
                item.reply.settle(error=self.stopped_error(item.message))
            elif type(item) is not Signal:
                tells.append(payload(item))
        if tells:
            self.system.dead_letters.publish(self.path, tells, why)

    # -- become and stash (_behaviour.py), from the actor's own handlers -----------------------

    def check_own(self, what: str, *, in_init: bool = True) -> None:
        """Raise unless called by this actor's own handlers or hooks (or, with ``in_init``,
        its ``__init__``)."""
        if not self.in_handler() and not (in_init and constructing.get() is self):
            raise RuntimeError(
                f"{what}() of actor {self.path} must be called from the actor's own handlers "
                "or hooks, while they run"
            )

    def _behaviour(self) -> Behaviour:
        behaviour = self.behaviour
        if behaviour is None:
            behaviour = self.behaviour = Behaviour()
        return behaviour

    def become(self, handler: Callable[[Any], Any]) -> None:
        """From the next message on, ``handler`` takes the messages (see `Actor.become`)."""
        self.check_own("become")
        sync = is_sync_handler(self.actor_class or Actor, "become handler", handler)
        behaviour = self._behaviour()
        behaviour.handler = handler
        behaviour.sync = sync
        # The run loop keeps the handler in a local: tell it at the next message boundary.
        self.mailbox.interrupt(Signal(SWITCH))

    def stash(self, message: object) -> None:
        """Set ``message`` aside (see `Actor.stash`); an ask keeps its asker waiting."""
        self.check_own("stash")
        if self.instance is None:
            raise RuntimeError(
                f"stash() of actor {self.path}: no message is being handled (the actor is "
                "starting or stopping)"
            )
        behaviour = self._behaviour()
        stash = behaviour.stash
        actor_class = self.actor_class
        capacity = actor_class.stash_capacity if actor_class is not None else 0
        if len(stash) >= capacity:
            behaviour.overflows += 1
            raise StashFull(
                f"the stash of actor {self.path} is full ({len(stash)}/{capacity}); "
                "message not stashed",
                message,
            )
        ask = self.take_ask(message, "stash")
        if ask is not None:
            stash.append(ask)
        else:
            if type(message) not in self.admitted:
                self.admit(message)
            stash.append(message)

    def take_ask(self, message: object, what: str) -> Ask | None:
        """The ask being answered whose message is ``message``, taken from the handler: its
        return value is not the reply any more, whoever set it aside answers it later (the
        stash, when it is handled again; a state machine's postponement, `answer_taken`).
        None when ``message`` is not an asked one (a tell, a tick)."""
        ask = _current_ask(self)
        if ask is None or payload(ask.message) is not message:
            return None
        seldom = self.seldom_fields()
        if seldom.stashed_ask is ask:
            raise RuntimeError(f"{what}() of actor {self.path}: this ask is set aside already")
        seldom.stashed_ask = ask
        return ask

    def answer_taken(self, ask: Ask, reply: object) -> None:
        """Answer an ask that `take_ask` set aside, once a handler took it again.

        Raises:
            NotSendableError: ``reply`` is not sendable; the asker gets the error too.
        """
        if not known_sendable(reply):
            what = type(payload(ask.message)).__qualname__
            try:
                check_sendable(reply, f"reply of actor {self.path} to {what}")
            except Exception as error:
                ask.reply.settle(error=error)
                raise
        ask.reply.settle(reply)

    def skip_abandoned(self, ask: Ask) -> bool:
        """Whether the asker of ``ask``, set aside, gave up meanwhile; then it is skipped,
        counted as a queued one would be."""
        if not ask.reply.abandoned:
            return False
        self._skip(ask)
        return True

    def unstash_all(self) -> int:
        """Put every stashed item back, ahead of the queue, in order; how many."""
        self.check_own("unstash_all")
        behaviour = self.behaviour
        if behaviour is None or not behaviour.stash:
            return 0
        items = list(behaviour.stash)
        behaviour.stash.clear()
        mailbox = self.mailbox
        for item in items:
            if not mailbox.put_control(Signal(Unstashed(item))):  # finished: cannot be
                self._account_for([item], "stashed")
        return len(items)

    async def _finish(
        self, reason: BaseException | None, *, run_on_stop: bool = True, killed: bool = False
    ) -> None:
        """The actor ends for good: account for its mailbox, tell watchers, then waiters."""
        self.phase = ENDED
        self.exit_reason = reason
        # Usually `_exit` has just ended the instance and its children: skip the second
        # round of locks then (children left over, say from a kill, are stopped again).
        if self.instance is not None or not self.exiting or self.children:
            await self._end_instance(run_on_stop=run_on_stop, kill_children=killed)
        self._conclude(reason, killed)

    def _conclude(
        self, reason: BaseException | None, killed: bool, watchers: Sequence[Cell] | None = None
    ) -> None:
        """`_finish` once the instance and the children are gone: the mailbox, then the rest.

        ``watchers``: the cell has left the tree already (`Tree.end_childless`), and these
        are its watchers to tell; None: it leaves the tree here (`Tree.unregister`).
        """
        leftovers, signals = self.mailbox.finish()
        if signals:  # usually none (a shared empty tuple: nothing made per life)
            more = list(leftovers)
            for signal in signals:
                record = signal.record
                if type(record) is Call:  # a caller waits on it: it must not hang
                    record.done.settle(error=self.stopped_error())
                elif type(record) is Unstashed:  # back in the mailbox: a leftover as the queue's
                    more.append(record.item)
            leftovers = more
        if leftovers or killed:
            logger.warning(
                "actor %s %s; %d undelivered message(s) dropped",
                self.path,
                "was killed after its drain timeout" if killed else "stopped",
                len(leftovers),
                extra=self.log_fields(),
            )
        if leftovers:
            why = "killed" if killed else ("failed" if reason is not None else "stopped")
            self._account_for(leftovers, why)
        if self.seldom is not None:
            self._suspended()  # a suspension asked for meanwhile: its waiter is told
        self.outcome = "stopped" if reason is None else "failed"
        self.task = None
        self.parked = None
        parking = self.home.parking
        if parking is not None and self.park_gen >= 0:  # parked once: in its list
            parking.forget(self)
        if watchers is None:
            watchers = self.system.tree.unregister(self)
        for watcher in watchers:  # `_announce_end`, inlined
            watcher.deliver(Signal(WatchedEnded(self, reason)))
        # `terminated.set`, without the property's call, and told the running loop: this is
        # the home thread, in its loop (as is every caller of `_conclude`), which spares
        # Python 3.11 the lookup (`running_loop`).
        Latch.set(self, reason, self.home.loop)
        # No reference cycles left behind: with its ref dropped (a new one is made on demand,
        # equal to it) and its mailbox no longer calling it, an ended actor nobody refers to
        # is freed by reference counting, not left for the garbage collector.
        self._ref = None

    def finish_proxy(self, reason: BaseException | None) -> None:
        """End a cluster proxy: the remote actor it stands for has ended. Once; any thread.

        A proxy has no instance, task or children here: its end is the outcome, the exit
        reason and its watchers told, as for any actor (`_conclude`).
        """
        tree = self.system.tree
        with tree.lock:  # the check and the close at once: ended once, whichever thread
            if self.terminated.is_set or self.outcome is not None:
                return
            self.exit_reason = reason
            self.outcome = "stopped" if reason is None else "failed"
            watchers = tree.close_watchers_locked(self)
        self._announce_end(watchers, reason)

    def _announce_end(self, watchers: list[Cell], reason: BaseException | None) -> None:
        for watcher in watchers:
            watcher.deliver(Signal(WatchedEnded(self, reason)))
        Latch.set(self, reason)  # `terminated.set`, without the property's call

    def _cancel_restart_timer(self) -> None:
        seldom = self.seldom
        if seldom is None:
            return
        timer, seldom.restart_timer = seldom.restart_timer, None
        if timer is not None:
            timer.cancel()

    def _suspended(self) -> None:
        # The suspension asked for (`request_suspend`), if any, is done: its waiter is told.
        seldom = self.seldom
        if seldom is None:
            return
        done, seldom.suspending = seldom.suspending, None
        if done is not None:
            done.set()

    def seldom_fields(self) -> Seldom:
        """The fields most actors never write, made now if need be. Home thread only."""
        seldom = self.seldom
        if seldom is None:
            seldom = self.seldom = Seldom()
        return seldom

    def _class_name(self) -> str:
        return self.actor_class.__qualname__ if self.actor_class is not None else "actor"


# Types whose instances are known not to be awaitable (False), filled by
# `_check_not_awaitable`: `inspect.isawaitable` tests an ABC, too slow for every reply of a
# synchronous handler. Generators are never cached (whether one is awaitable depends on its
# code's flags). A racy fill from two loops writes the same value.
_awaitable_kind: Final[dict[type, bool]] = {}

_sniffio_library: contextvars.ContextVar[str | None] | None
try:  # anyio finds its library through sniffio when installed, which looks for a task
    from sniffio import current_async_library_cvar as _sniffio_library
except ImportError:  # pragma: no cover - anyio then asks asyncio for its running loop
    _sniffio_library = None


def _check_not_awaitable(result: object, cell: Cell, message: object) -> None:
    """Refuse what a synchronous handler returned if it is awaitable: nobody would await it.

    A coroutine is closed first, so that Python warns of no coroutine "never awaited": the
    error says all there is to say.
    """
    if not inspect.isawaitable(result):
        kind = type(result)
        if kind is not types.GeneratorType:
            _awaitable_kind[kind] = False
        return
    if inspect.iscoroutine(result):
        result.close()
    raise SyncHandlerError(
        f"the synchronous handler of actor {cell.path} returned "
        f"{type(result).__qualname__} while handling {type(payload(message)).__qualname__}, which "
        "nothing awaits (an async call without `await`?): use the forms that do not wait "
        "(spawn_soon instead of spawn, try_send instead of send), or define the handler "
        "with `async def`"
    )


def _not_started(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` has yet to take its first step."""
    coro = task.get_coro()
    return inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED


def _abandon(parked: asyncio.Future[Resumed]) -> None:
    # On the old loop, once it turns again: end the run task of an evacuated actor.
    if not parked.done():
        parked.set_result(Resumed.EVACUATED)


class _Unobserved(Oneshot):
    """The start-up outcome of a child nobody waits for (`Actor.spawn_soon`): an error is
    logged, as the failure of a running actor is, instead of being raised in a spawner."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        if error is not None and not isinstance(error, ActorStopped):  # not: killed meanwhile
            logger.error(
                "actor %s failed to start", self.path, exc_info=error, extra={"actor": self.path}
            )

    async def wait(self, timeout: float | None = None) -> Any:
        raise RuntimeError(f"nobody waits for the start of actor {self.path}")


# The frames that answer an ask: `stash` looks for the one handling this actor's ask.
_ANSWERING: Final = (
    Cell._answer.__code__,  # pyright: ignore[reportPrivateUsage]
    Cell._answer_now.__code__,  # pyright: ignore[reportPrivateUsage]
)


def _current_ask(cell: Cell) -> Ask | None:
    """The ask whose handler calls `Cell.stash` now, or None (a tell, a tick).

    Found on the call stack, not stored per ask (a store costs about 1% of a same-loop ask
    round trip): the handler runs below `_answer_now`, or below `_answer` in the chain of
    awaiting coroutines, whose frames link to each other while the innermost runs. Only the
    actor's own run task calls `stash` (`check_own`), so the frame is its.
    """
    frame: types.FrameType | None = sys._getframe(2)  # pyright: ignore[reportPrivateUsage]
    while frame is not None:
        if frame.f_code in _ANSWERING and frame.f_locals.get("self") is cell:
            ask: Ask | None = frame.f_locals.get("ask")
            return ask
        frame = frame.f_back
    return None


class _Drain:
    """The ``task`` of a cell whose run is a drain (`Cell._drain`): due, or running now.

    Not a task: nothing to cancel (a kill's signal ends it: `Cell._kill_here`), and never
    being cancelled (a CancelledError a handler raises is its own failure: `_as_failure`).
    """

    __slots__ = ("state",)

    def __init__(self, state: str) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<drain {self.state}>"

    def cancel(self, msg: object = None) -> bool:
        return False

    def cancelling(self) -> int:
        return 0


_DRAIN_DUE: Final[Any] = _Drain("due")
_DRAINING: Final[Any] = _Drain("running")


def _enter_context(cell: weakref.ref[Cell]) -> None:
    # In an actor's context, once before its first drain (see `Cell._prepared_context`).
    if running_cell.get() is None:
        running_cell.set(cell)
    if _sniffio_library is not None:
        _sniffio_library.set("asyncio")  # every home loop is an asyncio (or uvloop) loop


# Present in an actor's context once it is ready for drains (see `_enter_context`).
_DRAIN_READY: Final[contextvars.ContextVar[Any]] = (
    _sniffio_library if _sniffio_library is not None else running_cell
)


def _drain_template() -> contextvars.Context:
    # What `_enter_context` sets in every actor's context but `running_cell`: copied for an
    # actor without a context of its own yet (`Cell._prepared_context`).
    template = contextvars.Context()
    if _sniffio_library is not None:
        template.run(_sniffio_library.set, "asyncio")
    return template


_DRAIN_TEMPLATE: Final = _drain_template()


class _Claimed:
    """The ``task`` of a cell for the instant between claiming its run and starting it."""

    def cancel(self, msg: object = None) -> bool:
        return False  # never seen by a kill: claim and start happen in one synchronous call


_CLAIMED: Final[Any] = _Claimed()
