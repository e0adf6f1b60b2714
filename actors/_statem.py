"""Typed state machines: `StateMachine`, an actor whose behaviour is its current `State`.

In the spirit of OTP's gen_statem (state functions, entry actions, state timeouts,
postponing) and Akka Typed's behaviours, shaped for Python and pyright:

* A state is a value: an instance of a `State` subclass, often a frozen dataclass carrying
  the data of that phase (``Closed(failures=2)``). Its class is the handler of the state:
  ``handle`` takes the messages the state declares (``State[Machine, Connect | Data]``),
  ``on_enter`` is the entry action, ``on_timeout`` the state timeout's handler, ``on_exit``
  the exit action.
* The machine is the actor: ``StateMachine[S, M]`` where ``S`` is the union of its state
  classes and ``M`` the union of the messages it accepts. Data shared by all states lives
  on the machine (``self``), as gen_statem's Data.
* A handler returns a `Transition` made by the machine: ``machine.goto(state)``,
  ``machine.stay()`` or ``machine.postpone()``. ``goto`` is typed with ``S``: pyright
  rejects a transition to anything that is not one of this machine's states, and the
  runtime refuses it too (`UnknownState`), at the call.

Semantics (gen_statem's, with the differences named):

* A *state change* is a ``goto`` to a state that is not equal (``!=``) to the current one;
  ``goto`` to an equal state is the same as ``stay``. On a change: the old state's timeout
  is cancelled, its ``on_exit`` runs, the new state is current, its timeout starts, its
  ``on_enter`` runs, and then the postponed messages are retried.
* Postponed messages are retried after the next state change, in the order they arrived,
  before any message still in the mailbox (they are handled inline, by the same ``receive``
  call that changed the state). One postponed again waits for the next change; one whose
  retry changes the state again puts the messages postponed so far back in front, as
  gen_statem does. The queue is bounded by `StateMachine.postpone_capacity`; a postpone
  beyond it fails the actor with `PostponeOverflow`.
* A state timeout (``State.timeout`` seconds, per class or per instance) starts when the
  state is entered and is cancelled when it is left; it is an ordinary actor timer
  (`Actor.send_after`), so a `ManualClock` drives it in tests. When it fires, the state's
  ``on_timeout`` returns the transition.
* A message the current state does not declare fails the actor with `UnhandledMessage`
  (gen_statem crashes on an unmatched event, too): declare it and ``postpone`` or ``stay``
  explicitly if it may arrive early.
* Nothing is lost: when the actor stops, fails or is restarted, the messages still
  postponed are published as dead letters (reason ``"postponed"``); the fresh instance of
  a restart starts again from ``initial_state``.

Why the machine keeps ``receive``, ``on_start`` and ``on_stop`` for itself (they are
final): the postponed queue and the state timeout must be set up and torn down whatever the
subclass does, and a forgotten ``super()`` call would lose messages silently. Start-up work
goes in the initial state's ``on_enter``; machine-wide clean-up in `StateMachine.on_halt`.

Replies: a handler's ``reply=`` is the reply to an ask, sent once the transition is done
(the new state entered). An asked message may be postponed like a told one: its asker
keeps waiting, and the reply is that of the handler that takes it after a state change
(gen_statem's postponed calls). Its deadline travels with it: retried, its handler sees
what is left (`actors.deadline`), and one whose asker gave up meanwhile is skipped and
counted as a queued one would be. A machine that ends with asks still postponed answers
them with `ActorStopped`; its postponed tells become dead letters. A `StreamRequest`
cannot be postponed (`StateMachineError`): its items come from the handler that takes it.

Presenting the messages. `Actor` reads an actor's message type from ``Actor[M]`` among
its class's bases, and expects one type argument; ``StateMachine[S, M]`` has two. While
`Actor.__init_subclass__` runs for a machine class, the machine shows it
``Actor[M | _StateTimeout]`` instead (the private tick of state timeouts must be admitted
by `Actor.send_after`), and puts the real bases back afterwards. A core hook naming which
type argument is the message type would make this unnecessary.

Invariant: everything per instance runs on the actor's home loop, one message at a time
(the engine is owned by the actor instance; no lock). The per-class caches (resolved state
and message types) are written idempotently: two loops starting the first actors of a
class at once compute the same values.
"""

from __future__ import annotations

import enum
import inspect
import sys
import typing
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, Generic, NoReturn, TypeVar, final

import msgspec

from ._actor import Actor, accepted_types
from ._errors import (
    InvalidStateMachine,
    PostponeOverflow,
    StateMachineError,
    UnhandledMessage,
    UnknownState,
)
from ._message import Ask, payload
from ._ref import cell_of
from ._stream import StreamRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._cell import Cell
    from ._timers import Timer
    from ._tracing import TracingCell

__all__ = (
    "State",
    "StateMachine",
    "StateMachineStatistics",
    "Transition",
    "current_state",
)

S = TypeVar("S")
M = TypeVar("M", contravariant=True)
SM_contra = TypeVar("SM_contra", bound="StateMachine[Any, Any]", contravariant=True)
M_contra = TypeVar("M_contra", contravariant=True)

DEAD_LETTER_REASON: Final = "postponed"
"""The `DeadLetter.reason` of a postponed message its machine never handled."""


# -- transitions -------------------------------------------------------------------------------


class Step(enum.Enum):
    """What a `Transition` does."""

    GOTO = "goto"
    STAY = "stay"
    POSTPONE = "postpone"


@final
@dataclass(frozen=True, slots=True)
class Transition:
    """What a state's handler decided; made by `StateMachine.goto`, ``stay`` or ``postpone``.

    Attributes:
        step: goto, stay or postpone.
        state: the next state (for goto), else None.
        reply: the reply to an ask of the message handled (None for a tell).

    Example:
        ```python
        async def handle(self, machine: Door, message: Push) -> actors.Transition:
            return machine.goto(Opened(), reply="opening")
        ```
    """

    step: Step
    state: object = None
    reply: object = None


# -- states ------------------------------------------------------------------------------------


class State(Generic[SM_contra, M_contra]):
    """One state of a `StateMachine`: ``State[Machine, Messages]``, subclassed per state.

    ``Machine`` is the machine class (a string if it comes later in the module);
    ``Messages`` the union of the messages this state handles: ``handle`` must take exactly
    those, and any other message arriving in this state fails the actor with
    `UnhandledMessage`. A state is a value: make it a frozen dataclass to carry data
    (two states are the same state when they are equal).

    Attributes:
        timeout: seconds after entering the state at which ``on_timeout`` runs, unless the
            state was left before; None (the default) for no state timeout. A class
            attribute, or a dataclass field to set it per instance.

    Example:
        ```python
        @dataclass(frozen=True)
        class Open(actors.State["Breaker", Call]):
            timeout: float | None = 5.0

            async def handle(self, machine: Breaker, message: Call) -> actors.Transition:
                return machine.stay(reply=Rejected())

            async def on_timeout(self, machine: Breaker) -> actors.Transition:
                return machine.goto(HalfOpen())
        ```
    """

    timeout: float | None = None
    # The messages this state's class handles (None: any), resolved at first use.
    __statem_accepts__: ClassVar[tuple[type, ...] | None] = None
    __statem_declared__: ClassVar[object] = None
    __statem_checked__: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, State):
                args = typing.get_args(base)
                cls.__statem_declared__ = args[1] if len(args) == 2 else Any
        cls.__statem_checked__ = False

    def __eq__(self, other: object) -> bool:
        # Two states are the same state when they are of one class and hold equal data
        # (a dataclass's own __eq__ replaces this): ``goto(Open())`` from Open() is a stay.
        if type(other) is not type(self):
            return NotImplemented
        return getattr(self, "__dict__", None) == getattr(other, "__dict__", None)

    def __hash__(self) -> int:
        return hash(type(self))

    async def handle(self, machine: SM_contra, message: M_contra) -> Transition:
        """Handle one message in this state and say what comes next.

        Return ``machine.goto(next_state)``, ``machine.stay()`` or ``machine.postpone()``
        (each takes ``reply=`` for an ask, except postpone). An exception fails the actor.

        Cancellation: only a kill (a drain timeout ran out) cancels it; the actor ends.

        Example:
            ```python
            async def handle(self, machine: Connection, message: Login) -> actors.Transition:
                if message.token != machine.secret:
                    return machine.goto(Closing("bad token"))
                return machine.goto(Active(user=message.user), reply=Welcome())
            ```
        """
        raise NotImplementedError

    async def on_enter(self, machine: SM_contra) -> None:
        """The entry action: runs each time the machine enters this state (and at start).

        It runs after the state became current and its timeout started, before the
        postponed messages are retried. An exception fails the actor.

        Cancellation: only a kill (a drain timeout ran out) cancels it; the actor ends.

        Example:
            ```python
            async def on_enter(self, machine: Connection) -> None:
                machine.log.append("authenticating")
            ```
        """

    async def on_timeout(self, machine: SM_contra) -> Transition:
        """The state timeout fell due (``timeout`` seconds in this state): what comes next.

        Must be defined when ``timeout`` is set. ``postpone`` is not allowed here.

        Cancellation: only a kill (a drain timeout ran out) cancels it; the actor ends.

        Example:
            ```python
            async def on_timeout(self, machine: Connection) -> actors.Transition:
                return machine.goto(Closing("login timed out"))
            ```
        """
        raise NotImplementedError

    async def on_exit(self, machine: SM_contra) -> None:
        """The exit action: runs when the machine leaves this state, and when it stops.

        Cancellation: only a kill (a drain timeout ran out) cancels it; the actor ends.

        Example:
            ```python
            async def on_exit(self, machine: Connection) -> None:
                machine.sessions -= 1
            ```
        """


def _overrides(cls: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(State, name)


def _is_async(function: Any) -> bool:
    if inspect.ismethod(function):
        function = function.__func__
    try:
        inner = inspect.unwrap(function)
    except ValueError:
        inner = function
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(inner)


def _check_state_class(cls: type[State[Any, Any]]) -> None:
    """Refuse a state class the machine cannot run; resolve its message types. Once."""
    if cls.__statem_checked__:
        return
    if not _overrides(cls, "handle"):
        raise InvalidStateMachine(
            f"state {cls.__qualname__} has no handler: define "
            "`async def handle(self, machine, message) -> Transition`"
        )
    for hook in ("handle", "on_enter", "on_timeout", "on_exit"):
        if _overrides(cls, hook) and not _is_async(getattr(cls, hook)):
            raise InvalidStateMachine(
                f"{cls.__qualname__}.{hook} is defined without `async`: the machine awaits it"
            )
    if cls.timeout is not None and not _overrides(cls, "on_timeout"):
        raise InvalidStateMachine(
            f"state {cls.__qualname__} has a timeout of {cls.timeout} s but no "
            "`async def on_timeout(self, machine) -> Transition`"
        )
    cls.__statem_accepts__ = _resolve(cls.__statem_declared__, cls, "messages of state")
    cls.__statem_checked__ = True


class _Unresolved(InvalidStateMachine):
    """A type names a class not defined (yet): retried at the first spawn."""


def _resolve(declared: object, owner: type, what: str) -> tuple[type, ...] | None:
    module = sys.modules.get(owner.__module__)
    try:
        return accepted_types(declared, vars(module) if module is not None else {})
    except TypeError as error:
        raise _Unresolved(f"the {what} {owner.__qualname__}: {error}") from None


# -- the machine -------------------------------------------------------------------------------


class _StateTimeout(msgspec.Struct, frozen=True):
    """The tick of a state timeout; ``epoch`` tells a stale one (of a state left) apart."""

    epoch: int


class StateMachineStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a `StateMachine` (`StateMachine.machine_statistics`).

    Attributes:
        state: the current state's class name (a bounded label for metrics).
        entered_at: when it was entered, on the system's clock.
        transitions: state changes since the actor (this incarnation) started.
        handled: messages a state handled (postponements not counted, retries counted
            once, when handled).
        failed: messages whose handler raised (the actor failed with it).
        postponed: messages waiting for the next state change.
        dead_lettered: postponed messages published as dead letters (this incarnation).
        timeout_due: when the current state's timeout falls due, or None.

    Example:
        ```python
        stats = await testing.inspect(ref, lambda m: m.machine_statistics())
        assert stats.state == "Active" and stats.postponed == 0
        ```
    """

    state: str
    entered_at: float
    transitions: int
    handled: int
    failed: int
    postponed: int
    dead_lettered: int
    timeout_due: float | None


_FINAL_HOOKS: Final = ("receive", "on_start", "on_stop")


class StateMachine(Actor[M], Generic[S, M]):
    """An actor whose behaviour is its current `State`: gen_statem for `actors`.

    ``S`` is the union of its state classes, ``M`` the union of messages it accepts (its
    refs are ``ActorRef[M]``). Define `initial_state`; every message goes to the current
    state's ``handle``, which returns ``self.goto(...)``, ``self.stay()`` or
    ``self.postpone()``. ``receive``, ``on_start`` and ``on_stop`` belong to the machine
    (see the module notes); ``on_restart`` and ``on_terminated`` stay yours.

    Other Parameters:
        postpone_capacity (int): class attribute: how many messages may wait postponed
            (default 1000); one more fails the actor with `PostponeOverflow`.

    Raises:
        InvalidStateMachine: when the class is created (or first spawned), if it or one of
            its states is defined wrongly.

    Example:
        ```python
        class Door(actors.StateMachine["Closed | Opened", Push]):
            def initial_state(self) -> Closed | Opened:
                return Closed()

        door = await system.spawn(Door)
        await door.send(Push())  # Closed.handle decides: machine.goto(Opened())
        ```
    """

    postpone_capacity: ClassVar[int] = 1000
    # The declared S (resolved at the first start: it may name classes defined later).
    __statem_states_declared__: ClassVar[object] = Any
    __statem_states__: ClassVar[tuple[type, ...] | None] = None
    __statem_resolved__: ClassVar[bool] = False
    _statem: _Engine

    def __init_subclass__(cls, **kwargs: Any) -> None:
        for hook in _FINAL_HOOKS:
            if hook in cls.__dict__:
                raise InvalidStateMachine(
                    f"{cls.__qualname__} overrides {hook}, which a StateMachine keeps for "
                    "itself: handle messages in the states, put start-up work in the initial "
                    "state's on_enter and clean-up in on_halt"
                )
        capacity = cls.__dict__.get("postpone_capacity", 0)  # Any: whatever was written
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise InvalidStateMachine(
                f"{cls.__qualname__}.postpone_capacity must be an int >= 0, got {capacity!r}"
            )
        original = cls.__dict__.get("__orig_bases__")
        presented = _present_to_actor(cls, original)
        if presented is None:
            super().__init_subclass__(**kwargs)
        else:
            # Actor's own machinery reads ``Actor[M]`` from the bases: show it the messages
            # (plus the private timeout tick, so that `send_after` admits it), then put the
            # real bases back (see "Presenting the messages" in the module notes).
            type.__setattr__(cls, "__orig_bases__", presented)
            try:
                super().__init_subclass__(**kwargs)
            finally:
                type.__setattr__(cls, "__orig_bases__", original)
        cls.__statem_states__ = None
        cls.__statem_resolved__ = False
        try:
            _resolve_states(cls)
        except _Unresolved:
            # A name defined later in the module (or nowhere): resolved at the first start,
            # which raises if it still names nothing.
            cls.__statem_resolved__ = False

    # -- the user's side

    def initial_state(self) -> S:
        """The state the machine starts in (and restarts in). Must be defined.

        Example:
            ```python
            def initial_state(self) -> Connecting | Active:
                return Connecting(attempt=1)
            ```
        """
        raise InvalidStateMachine(
            f"{type(self).__qualname__} must define `def initial_state(self) -> S`"
        )

    async def on_halt(self) -> None:
        """Machine-wide clean-up: runs when the actor stops or before it restarts.

        It runs after the current state's ``on_exit``, once the postponed messages have
        been dead-lettered. The Actor's ``on_stop``, which a machine keeps for itself.

        Cancellation: only a kill (a drain timeout ran out) cancels it; the actor ends.

        Example:
            ```python
            async def on_halt(self) -> None:
                await self.socket.aclose()
            ```
        """

    @property
    def state(self) -> S:
        """The current state (read-only; change it by returning ``goto`` from a handler).

        Raises:
            StateMachineError: read before the machine started (in ``__init__``).

        Example:
            ```python
            state = await testing.inspect(breaker, lambda m: m.state)
            assert isinstance(state, Open)
            ```
        """
        engine = self.__dict__.get("_statem")
        if engine is None:
            raise StateMachineError(
                f"{type(self).__qualname__} has no state before it starts (read it from a "
                "handler or hook, not from __init__)"
            )
        return typing.cast("S", engine.state)

    def goto(self, state: S, *, reply: object = None) -> Transition:
        """Move to ``state`` (a state change if it differs from the current one).

        Raises:
            UnknownState: ``state`` is not an instance of one of this machine's states.
            InvalidStateMachine: its class is defined wrongly (see `InvalidStateMachine`).

        Example:
            ```python
            return machine.goto(Open(timeout=machine.cooldown), reply=Rejected())
            ```
        """
        _check_state(type(self), state)
        return Transition(Step.GOTO, state, reply)

    def stay(self, *, reply: object = None) -> Transition:
        """Keep the current state: its timeout keeps running, nothing is retried.

        Example:
            ```python
            return machine.stay(reply=machine.balance)
            ```
        """
        return _STAY if reply is None else Transition(Step.STAY, None, reply)

    def postpone(self) -> Transition:
        """Set the message aside until the next state change; then it is handled again.

        Postponed messages are retried in the order they arrived, before the mailbox.

        Example:
            ```python
            case Send():
                return machine.postpone()  # not authenticated yet: after the login
            ```
        """
        return _POSTPONE

    @final
    def become(self, handler: Callable[[M], Any]) -> NoReturn:
        """Refused: a machine's behaviour is its current state, changed by ``goto``.

        A swapped handler would bypass the states, their timeouts and the postponed
        messages, so a machine does not offer `Actor.become`.

        Raises:
            StateMachineError: always, naming the alternative.

        Example:
            ```python
            return machine.goto(Authenticated())  # not self.become(...)
            ```
        """
        raise StateMachineError(
            f"become() of {self.ref.path}: a {type(self).__qualname__} changes behaviour by "
            "state; return machine.goto(NextState(...)) from a state's handler instead"
        )

    def machine_statistics(self) -> StateMachineStatistics:
        """A snapshot of the machine: current state, counters, postponed messages.

        Call it on the actor's loop (from a handler or with `testing.inspect`).

        Example:
            ```python
            stats = await testing.inspect(ref, lambda m: m.machine_statistics())
            print(stats.state, stats.postponed)
            ```
        """
        return self._engine().statistics()

    # -- the Actor hooks, kept by the machine

    @final
    async def on_start(self) -> None:
        """The machine's start: enters `initial_state` (its timeout, its ``on_enter``).

        Final: put start-up work in the initial state's ``on_enter``.

        Raises:
            InvalidStateMachine: the machine or a state is defined wrongly.
            UnknownState: `initial_state` returned something that is not a state.

        Cancellation: the actor does not start (the runtime's rule for ``on_start``).
        """
        cls = type(self)
        if not cls.__statem_resolved__:
            _resolve_states(cls)
        self._statem = engine = _Engine(self)
        await engine.start(self.initial_state())

    @final
    async def receive(self, message: M) -> Any:
        """Hand ``message`` to the current state; the reply is the transition's ``reply``.

        Final: messages are handled by the states.

        Cancellation: as for any handler (a kill): the message in hand is abandoned.
        """
        return await self._engine().receive(message)

    @final
    async def on_stop(self) -> None:
        """The machine's end: dead-letters what is postponed, then ``on_exit``, ``on_halt``.

        Final: put clean-up in `on_halt` (or the states' ``on_exit``).

        Cancellation: the postponed messages are dead-lettered first, before any await.
        """
        engine: _Engine | None = self.__dict__.get("_statem")
        try:
            if engine is not None:
                await engine.halt()
        finally:
            await self.on_halt()

    def _engine(self) -> _Engine:
        engine: _Engine | None = self.__dict__.get("_statem")
        if engine is None:
            raise StateMachineError(f"{type(self).__qualname__} has not started yet")
        return engine


_POSTPONE: Final = Transition(Step.POSTPONE)
_STAY: Final = Transition(Step.STAY)
_STREAM_REQUEST: Final[Any] = StreamRequest  # isinstance without narrowing to Unknown


def _present_to_actor(cls: type[StateMachine[Any, Any]], original: Any) -> tuple[Any, ...] | None:
    """The bases to show `Actor` for ``class X(StateMachine[S, M])``; None if none needed."""
    if original is None:  # no generic bases of its own: it inherits its types
        return None
    bases: tuple[object, ...] = original
    presented: list[Any] = []
    changed = False
    for base in bases:
        origin = typing.get_origin(base)
        if origin is StateMachine:
            states, messages = typing.get_args(base)
            cls.__statem_states_declared__ = states
            actor: Any = Actor  # runtime subscripts: the checkers see StateMachine[S, M]
            union: Any = typing.Union
            presented.append(actor[union[messages, _StateTimeout]])
            changed = True
        elif isinstance(origin, type) and issubclass(origin, StateMachine):
            raise InvalidStateMachine(
                f"{cls.__qualname__} subclasses the generic {origin.__qualname__}[...]: "
                "a machine names its types on StateMachine[S, M] itself"
            )
        else:
            presented.append(base)
    return tuple(presented) if changed else None


def _is_state_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, State)


def _resolve_states(cls: type[StateMachine[Any, Any]]) -> None:
    declared = cls.__statem_states_declared__
    states = _resolve(declared, cls, "states of machine")
    listed: tuple[Any, ...] = states or ()
    for state in listed:
        if not _is_state_class(state):
            raise InvalidStateMachine(
                f"{cls.__qualname__} names {state!r} among its states, which is not a State "
                "subclass"
            )
        _check_state_class(state)
    cls.__statem_states__ = states
    cls.__statem_resolved__ = True


def _check_state(machine: type[StateMachine[Any, Any]], state: object) -> None:
    states = machine.__statem_states__
    allowed = State if states is None else states
    if not isinstance(state, allowed):
        names = " | ".join(s.__qualname__ for s in states) if states else "State"
        raise UnknownState(f"{machine.__qualname__} cannot go to {state!r}: its states are {names}")
    kind: Any = type(state)  # a State subclass: checked just above
    _check_state_class(kind)


class _Engine:
    """The state, the postponed queue, the timeout and the counters of one machine instance.

    A part owned by the actor instance and handed it (the collaborator whose handlers it
    calls and whose timers it uses); one engine per incarnation.

    Invariant: only the actor's home loop touches it, one message at a time.
    Invariant: ``_retry`` holds postponed messages being retried after a state change, in
    arrival order; every message in ``_postponed`` arrived before every one in ``_retry``.
    Both hold a postponed ask as its `Ask` envelope (taken from the cell, which then leaves
    its reply to the engine: `Cell.take_ask`), a postponed tell as the message itself (in a
    tracing system, as its `Traced` envelope: `TracingCell.set_aside`).
    """

    __slots__ = (
        "_cell",
        "_dead_lettered",
        "_entered_at",
        "_epoch",
        "_failed",
        "_handled",
        "_machine",
        "_postponed",
        "_retry",
        "_timeout_due",
        "_timer",
        "_tracing",
        "_transitions",
        "state",
    )

    def __init__(self, machine: StateMachine[Any, Any]) -> None:
        self._machine = machine
        self._cell: Cell = cell_of(machine.ref)
        # A tracing system's cells are all `TracingCell`s: a retry gets a span of its own.
        self._tracing: TracingCell | None = (
            typing.cast("TracingCell", self._cell) if self._cell.system.tracer is not None else None
        )
        self.state: State[Any, Any] = typing.cast("State[Any, Any]", None)
        self._postponed: deque[object] = deque()
        self._retry: deque[object] = deque()
        self._timer: Timer | None = None
        self._timeout_due: float | None = None
        self._epoch = 0
        self._transitions = 0
        self._handled = 0
        self._failed = 0
        self._dead_lettered = 0
        self._entered_at = 0.0

    async def start(self, initial: object) -> None:
        machine = self._machine
        _check_state(type(machine), initial)
        self._enter(typing.cast("State[Any, Any]", initial))
        await self.state.on_enter(machine)

    def _enter(self, state: State[Any, Any]) -> None:
        machine = self._machine
        self.state = state
        self._epoch += 1
        self._entered_at = machine.system.clock.now()
        timeout = state.timeout
        if timeout is not None:
            if not _overrides(type(state), "on_timeout"):
                raise InvalidStateMachine(
                    f"state {state!r} has a timeout of {timeout} s but its class defines no "
                    "`async def on_timeout(self, machine) -> Transition`"
                )
            tick: Any = _StateTimeout(self._epoch)
            self._timer = machine.send_after(timeout, tick)
            self._timeout_due = self._entered_at + timeout

    def _cancel_timeout(self) -> None:
        timer, self._timer = self._timer, None
        self._timeout_due = None
        if timer is not None:
            timer.cancel()

    async def receive(self, message: object) -> object:
        if type(message) is _StateTimeout:
            await self._on_timeout(message.epoch)
            return None
        transition = await self._dispatch(message)
        if transition.step is Step.POSTPONE:
            self._postpone(message)
            return None
        if transition.step is Step.GOTO:
            await self._goto(transition.state)
        return transition.reply

    async def _on_timeout(self, epoch: int) -> None:
        if epoch != self._epoch:
            return  # a state left since (the timer was cancelled; belt and braces)
        self._timer = self._timeout_due = None
        state = self.state
        transition = await state.on_timeout(self._machine)
        if not isinstance(transition, Transition):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _not_a_transition(state, "on_timeout", transition)
        if transition.step is Step.POSTPONE:
            raise StateMachineError(
                f"{type(state).__qualname__}.on_timeout returned postpone(): a timeout is "
                "not a message; return goto(...) or stay()"
            )
        if transition.step is Step.GOTO:
            await self._goto(transition.state)

    async def _dispatch(self, message: object) -> Transition:
        """The current state's transition for ``message``; counts it handled or failed.

        A postponed message is counted neither (it comes back); one whose postponement is
        refused (`_postpone` raises) is counted failed there.
        """
        state = self.state
        try:
            accepts = type(state).__statem_accepts__
            if accepts is not None and not isinstance(message, accepts):
                raise UnhandledMessage(
                    f"state {type(state).__qualname__} of {self._machine.ref.path} does not "
                    f"handle {type(message).__qualname__}: declare it in the state's messages "
                    "(and postpone or stay) if it may arrive now",
                    message,
                    state,
                )
            transition = await state.handle(self._machine, message)
            if not isinstance(transition, Transition):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise _not_a_transition(state, "handle", transition)
        except Exception:
            self._failed += 1
            raise
        if transition.step is not Step.POSTPONE:
            self._handled += 1
        return transition

    def _postpone(self, message: object) -> None:
        if isinstance(message, _STREAM_REQUEST):
            self._failed += 1
            raise StateMachineError(
                f"{type(message).__qualname__} is a StreamRequest: it cannot be postponed, as "
                "its items come from the handler that takes it; stay() and answer now"
            )
        capacity = self._machine.postpone_capacity
        if len(self._postponed) + len(self._retry) >= capacity:
            self._failed += 1
            raise PostponeOverflow(
                f"{self._machine.ref.path}: {capacity} messages are postponed already "
                f"(postpone_capacity) in state {type(self.state).__qualname__}",
                message,
            )
        ask = self._cell.take_ask(message, "postpone")  # an asked one: answered when retried
        self._postponed.append(self._kept(message if ask is None else ask))

    def _kept(self, item: object) -> object:
        """What the postponed queue holds for ``item``: itself, unless the system traces."""
        tracing = self._tracing
        return item if tracing is None else tracing.set_aside(item, "postponed")

    async def _goto(self, state: object) -> None:
        if state == self.state:
            return  # the same state: a stay (gen_statem: no state change)
        await self._change(typing.cast("State[Any, Any]", state))
        await self._retry_postponed()

    async def _change(self, state: State[Any, Any]) -> None:
        machine = self._machine
        self._cancel_timeout()
        await self.state.on_exit(machine)
        self._transitions += 1
        self._enter(state)
        # Retried before anything newer: those postponed so far go in front, in order.
        self._postponed.extend(self._retry)
        self._retry, self._postponed = self._postponed, deque()
        await state.on_enter(machine)

    async def _retry_postponed(self) -> None:
        cell = self._cell
        while self._retry:
            item = self._retry.popleft()
            if type(item) is Ask and cell.skip_abandoned(item):
                continue
            tracing = self._tracing
            if tracing is None:
                await self._retry_one(item)
            else:  # in the retried message's own span, not the one that changed the state
                await tracing.retried(item, self._retry_one)

    async def _retry_one(self, item: object) -> None:
        if type(item) is Ask:
            await self._retry_ask(item)
            return
        message = payload(item)
        try:
            transition = await self._dispatch(message)
        except Exception as error:
            error.add_note(f"raised while retrying the postponed {type(message).__qualname__}")
            raise
        await self._after_retry(item, transition)

    async def _retry_ask(self, ask: Ask) -> None:
        """Retry a postponed ask: its deadline is the handler's, its reply comes once the
        transition is done; an exception reaches its asker and then fails the actor."""
        cell = self._cell
        message = payload(ask.message)
        outer, cell.deadline = cell.deadline, ask.deadline  # what `actors.deadline` reads
        try:
            transition = await self._dispatch(message)
        except Exception as error:
            ask.reply.settle(error=error)
            error.add_note(f"raised while retrying the postponed {type(message).__qualname__}")
            raise
        finally:
            cell.deadline = outer
        try:
            await self._after_retry(ask, transition)
        except Exception as error:  # the state change failed: the reply would be a lie
            if transition.step is not Step.POSTPONE:
                ask.reply.settle(error=error)
            raise
        if transition.step is not Step.POSTPONE:
            cell.answer_taken(ask, transition.reply)  # settles the asker with its error too

    async def _after_retry(self, item: object, transition: Transition) -> None:
        if transition.step is Step.POSTPONE:
            self._postponed.append(self._kept(item))  # already counted against the capacity
        elif transition.step is Step.GOTO and transition.state != self.state:
            await self._change(typing.cast("State[Any, Any]", transition.state))

    async def halt(self) -> None:
        """The actor ends (stop, failure or restart): dead-letter, cancel, run on_exit."""
        # First and synchronously: nothing below may lose them (an await can be cancelled).
        leftovers = [*self._postponed, *self._retry]
        self._postponed.clear()
        self._retry.clear()
        for item in leftovers:
            if type(item) is Ask:
                item.reply.settle(error=self._cell.stopped_error(item.message))
        self._dead_letter(payload(item) for item in leftovers if type(item) is not Ask)
        self._cancel_timeout()
        if self.state is not None:  # pyright: ignore[reportUnnecessaryComparison]
            await self.state.on_exit(self._machine)

    def _dead_letter(self, messages: Iterable[object]) -> None:
        letters = list(messages)
        if letters:
            self._dead_lettered += len(letters)
            machine = self._machine
            machine.system.dead_letters.publish(machine.ref.path, letters, DEAD_LETTER_REASON)

    def statistics(self) -> StateMachineStatistics:
        return StateMachineStatistics(
            state=type(self.state).__qualname__,
            entered_at=self._entered_at,
            transitions=self._transitions,
            handled=self._handled,
            failed=self._failed,
            postponed=len(self._postponed) + len(self._retry),
            dead_lettered=self._dead_lettered,
            timeout_due=self._timeout_due,
        )


def _not_a_transition(state: object, hook: str, value: object) -> StateMachineError:
    return StateMachineError(
        f"{type(state).__qualname__}.{hook} returned {value!r}, not a Transition: return "
        "machine.goto(state), machine.stay() or machine.postpone()"
    )


def current_state(instance: object) -> str:
    """The current state of a `StateMachine` instance, read from another thread; else "".

    The engine replaces its state in one attribute store, so a read sees the old state or
    the new one; a machine that has not started (or is ending) shows "".
    """
    if not isinstance(instance, StateMachine):
        return ""
    try:
        return instance.machine_statistics().state
    except Exception:  # not started yet, or torn mid-restart: nothing to show this time
        return ""
