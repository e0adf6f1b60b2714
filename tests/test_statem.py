"""Typed state machines (actors/_statem.py): entry and exit actions, state timeouts on a
ManualClock, postponing (order, bound, dead letters), the errors for bad definitions and bad
transitions, the dead-letter invariant, and the two examples."""

from __future__ import annotations

import contextlib
import re
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT
from hypothesis import given, settings
from hypothesis import strategies as st
from test_examples import run_example

import actors
from actors import (
    ActorSystem,
    InvalidStateMachine,
    ManualClock,
    PostponeOverflow,
    State,
    StateMachine,
    StateMachineError,
    StateMachineStatistics,
    Transition,
    UnhandledMessage,
    UnknownState,
    testing,
)
from actors._statem import DEAD_LETTER_REASON

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


# -- a small machine: Idle <-> Busy, with a timeout in Busy -----------------------------------


class Go(msgspec.Struct, frozen=True):
    pass


class Back(msgspec.Struct, frozen=True):
    pass


class Job(msgspec.Struct, frozen=True):
    n: int


class Boom(msgspec.Struct, frozen=True):
    pass


class Stray(msgspec.Struct, frozen=True):
    """Declared by the machine, handled by no state."""


class Nowhere(msgspec.Struct, frozen=True):
    """Makes a handler go to a state the machine does not have."""


class Ask(actors.Request[str], frozen=True):
    pass


class PostponeAsk(actors.Request[str], frozen=True):
    """Postponed by Idle, answered by Busy (or failing there, with ``fail``)."""

    fail: bool = False


class Lines(actors.StreamRequest[str], frozen=True):
    """A stream request, which a machine cannot postpone."""


Msg = Go | Back | Job | Boom | Stray | Nowhere | Ask | PostponeAsk | Lines


class Idle(State["Worker", Go | Job | Boom | Nowhere | Ask | PostponeAsk | Lines]):
    async def on_enter(self, machine: Worker) -> None:
        machine.log.append("enter Idle")

    async def on_exit(self, machine: Worker) -> None:
        machine.log.append("exit Idle")

    async def handle(
        self, machine: Worker, message: Go | Job | Boom | Nowhere | Ask | PostponeAsk | Lines
    ) -> Transition:
        match message:
            case Go():
                return machine.goto(Busy())
            case Job():
                return machine.postpone()
            case Boom():
                raise RuntimeError("boom")
            case Nowhere():
                elsewhere: Any = Lost()
                return machine.goto(elsewhere)
            case Ask():
                return machine.stay(reply="idle")
            case PostponeAsk():
                if machine.noted is not None:
                    machine.noted.try_send("postponed")
                return machine.postpone()
            case Lines():
                return machine.postpone()


@dataclass(frozen=True)
class Busy(State["Worker", Go | Back | Job | Ask | PostponeAsk]):
    timeout: float | None = 5.0

    async def on_enter(self, machine: Worker) -> None:
        machine.log.append("enter Busy")

    async def on_exit(self, machine: Worker) -> None:
        machine.log.append("exit Busy")

    async def handle(
        self, machine: Worker, message: Go | Back | Job | Ask | PostponeAsk
    ) -> Transition:
        match message:
            case Go():
                return machine.goto(Busy())  # equal: a stay
            case Back():
                return machine.goto(Idle())
            case Job(n):
                if n < 0:
                    raise ValueError(f"negative job {n}")
                machine.log.append(f"job {n}")
                return machine.stay(reply=n)
            case Ask():
                return machine.stay(reply="busy")
            case PostponeAsk(fail):
                machine.log.append("postponed ask")
                if fail:
                    raise ValueError("cannot answer")
                left = actors.deadline()
                return machine.stay(reply=f"later, {left is not None and left > 0}")

    async def on_timeout(self, machine: Worker) -> Transition:
        machine.log.append(f"timeout at {machine.system.clock.now()}")
        return machine.goto(Idle())


class Lost(State["Worker", Go]):
    async def handle(self, machine: Worker, message: Go) -> Transition:
        return machine.stay()


class Worker(StateMachine[Idle | Busy, Msg]):
    postpone_capacity = 3

    def __init__(
        self,
        halted: list[StateMachineStatistics] | None = None,
        noted: actors.Ref[str] | None = None,
    ) -> None:
        self.log: list[str] = []
        self.halted = halted
        self.noted = noted  # told when Idle postpones an ask

    def initial_state(self) -> Idle | Busy:
        return Idle()

    async def on_halt(self) -> None:
        if self.halted is not None:
            self.halted.append(self.machine_statistics())


async def log_of(system: ActorSystem, ref: actors.ActorRef[Any]) -> list[str]:
    await testing.settle(system)  # inspect runs before the messages already queued
    return await testing.inspect(ref, lambda m: list(m.log), kind=Worker)


async def statistics(system: ActorSystem, ref: actors.ActorRef[Any]) -> StateMachineStatistics:
    await testing.settle(system)
    return await testing.inspect(ref, lambda m: m.machine_statistics(), kind=Worker)


@contextlib.asynccontextmanager
async def running() -> AsyncGenerator[tuple[ActorSystem, ManualClock]]:
    """A running system on a ManualClock, within the test's time bound."""
    clock = ManualClock()
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1, clock=clock) as system:
            yield system, clock


async def failure(
    factory: Callable[[], actors.Actor[Any]], *messages: object, wait: float = 0.0
) -> BaseException | None:
    """Why a (temporary) machine ended, after it got ``messages`` and ``wait`` seconds passed."""
    async with running() as (system, _):
        ref = await system.spawn(factory, restart=actors.Restart.TEMPORARY)
        for message in messages:
            await ref.send(message)
        await testing.advance(system, wait)
        return await ref.join()


# -- states, entry and exit actions ------------------------------------------------------------


async def test_entry_and_exit_actions_run_in_order() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker)
        assert await worker.ask(Ask()) == "idle"
        await worker.send(Go())
        assert await worker.ask(Ask()) == "busy"
        await worker.send(Back())
        assert await worker.ask(Ask()) == "idle"
        assert await log_of(system, worker) == [
            "enter Idle",
            "exit Idle",
            "enter Busy",
            "exit Busy",
            "enter Idle",
        ]
        stats = await statistics(system, worker)
        assert stats.state == "Idle"
        assert stats.transitions == 2
        assert stats.handled == 5
        assert stats.postponed == 0
        assert await testing.inspect(worker, lambda m: type(m.state), kind=Worker) is Idle


async def test_stopping_runs_the_exit_action_then_on_halt() -> None:
    ended: list[str] = []

    class Recording(Worker):
        async def on_halt(self) -> None:
            ended.extend(self.log[-1:])  # the last entry: Busy's exit action
            ended.append("halt")

    async with running() as (system, _):
        worker = await system.spawn(Recording)
        await worker.send(Go())
        await worker.stop()
    assert ended == ["exit Busy", "halt"]


async def test_goto_an_equal_state_is_a_stay() -> None:
    async with running() as (system, clock):
        worker = await system.spawn(Worker)
        await worker.send(Go())
        await worker.send(Job(1))  # handled in Busy, not postponed
        await testing.advance(system, 3.0)
        await worker.send(Go())  # Busy -> Busy(): no exit, no entry, timeout keeps going
        await testing.advance(system, 2.0)
        assert clock.now() == 5.0
        assert await log_of(system, worker) == [
            "enter Idle",
            "exit Idle",
            "enter Busy",
            "job 1",
            "timeout at 5.0",
            "exit Busy",
            "enter Idle",
        ]


# -- state timeouts ----------------------------------------------------------------------------


async def test_state_timeout_fires_on_the_manual_clock() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker)
        await worker.send(Go())
        await testing.settle(system)
        stats = await statistics(system, worker)
        assert stats.timeout_due == 5.0
        await testing.advance(system, 4.999)
        assert await worker.ask(Ask()) == "busy"
        await testing.advance(system, 0.001)
        assert await worker.ask(Ask()) == "idle"
        assert (await statistics(system, worker)).timeout_due is None
        assert "timeout at 5.0" in await log_of(system, worker)


async def test_state_timeout_is_cancelled_on_leaving_and_restarts_on_entering() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker)
        await worker.send(Go())
        await testing.advance(system, 4.0)
        await worker.send(Back())  # left at t=4: the timeout due at t=5 never runs
        await testing.advance(system, 10.0)
        assert not any(line.startswith("timeout") for line in await log_of(system, worker))
        await worker.send(Go())  # entered at t=14: due at t=19
        await testing.advance(system, 4.5)
        assert await worker.ask(Ask()) == "busy"
        await testing.advance(system, 0.5)
        assert await worker.ask(Ask()) == "idle"
        assert (await log_of(system, worker)).count("timeout at 19.0") == 1


async def test_timeout_that_postpones_fails_the_actor() -> None:
    class Waiting(State["Sleepy", Go]):
        timeout = 1.0

        async def handle(self, machine: Sleepy, message: Go) -> Transition:
            return machine.stay()

        async def on_timeout(self, machine: Sleepy) -> Transition:
            return machine.postpone()

    class Sleepy(StateMachine[Waiting, Go]):
        def initial_state(self) -> Waiting:
            return Waiting()

    reason = await failure(Sleepy, wait=1.0)
    assert isinstance(reason, StateMachineError)
    assert "a timeout is not a message" in str(reason)


# -- postponing --------------------------------------------------------------------------------


async def test_postponed_messages_are_retried_in_order_before_the_mailbox() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker)
        for n in range(3):
            await worker.send(Job(n))
        assert (await statistics(system, worker)).postponed == 3
        await worker.send(Go())
        await worker.send(Job(3))  # after the change: after the retried ones
        assert await worker.ask(Ask()) == "busy"
        log = await log_of(system, worker)
        assert log[-4:] == ["job 0", "job 1", "job 2", "job 3"]
        stats = await statistics(system, worker)
        assert stats.postponed == 0
        assert stats.handled == 6  # 4 jobs, Go, Ask: postponements are not counted


async def test_postpone_overflow_fails_the_actor_and_dead_letters_the_rest() -> None:
    async with running() as (system, _):
        probe = await testing.Probe.spawn(system)
        system.dead_letters.subscribe(probe)
        halted: list[StateMachineStatistics] = []
        worker = await system.spawn(lambda: Worker(halted), restart=actors.Restart.TEMPORARY)
        for n in range(4):  # capacity 3: the fourth overflows
            await worker.send(Job(n))
        reason = await worker.join()
        assert isinstance(reason, PostponeOverflow)
        assert reason.message == Job(3)
        letters = await probe.receive_n(3)
        assert [letter.message for letter in letters] == [Job(0), Job(1), Job(2)]
        assert {letter.reason for letter in letters} == {DEAD_LETTER_REASON}
        assert {letter.recipient for letter in letters} == {worker.path}
        assert halted[0].dead_lettered == 3


async def test_postponed_messages_are_dead_lettered_on_a_restart() -> None:
    async with running() as (system, _):
        probe = await testing.Probe.spawn(system)
        system.dead_letters.subscribe(probe)
        worker = await system.spawn(Worker)  # permanent: restarted after the failure
        await worker.send(Job(1))
        await worker.send(Job(2))
        await worker.send(Boom())
        letters = await probe.receive_n(2)
        assert [letter.message for letter in letters] == [Job(1), Job(2)]
        # The fresh instance starts from the initial state with nothing postponed.
        assert await worker.ask(Ask()) == "idle"
        assert (await statistics(system, worker)).postponed == 0
        assert await log_of(system, worker) == ["enter Idle"]


# -- postponed asks ------------------------------------------------------------------------------


async def test_a_postponed_ask_is_answered_after_the_state_change() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker)
        async with anyio.create_task_group() as tg:
            answers: list[str] = []

            async def ask() -> None:
                answers.append(await worker.ask(PostponeAsk(), timeout=WAIT))

            tg.start_soon(ask)
            await worker.send(Job(1))  # postponed too, after or before the ask
            assert (await statistics(system, worker)).postponed >= 1
            assert answers == []  # still waiting: postponed, not answered with None
            await worker.send(Go())
        # Retried with its deadline: the handler saw the time its asker still waits.
        assert answers == ["later, True"]
        assert (await statistics(system, worker)).postponed == 0


async def test_a_told_message_that_is_asked_waits_for_its_retry_too() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker)
        async with anyio.create_task_group() as tg:
            answers: list[object] = []

            async def ask() -> None:
                answers.append(await worker.ask(Job(5), timeout=WAIT))

            tg.start_soon(ask)
            await testing.settle(system)
            await worker.send(Go())
        assert answers == [5]  # Busy's reply: not the None of Idle's postpone()
        assert "job 5" in await log_of(system, worker)


async def test_a_postponed_ask_whose_asker_left_is_skipped_and_counted() -> None:
    async with running() as (system, _):
        probe = await testing.Probe.spawn(system)
        worker = await system.spawn(lambda: Worker(noted=probe))
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.ask, PostponeAsk())
                assert await probe.expect(str) == "postponed"
                scope.cancel()  # the asker leaves while its ask waits postponed
        await worker.send(Go())
        await testing.settle(system)
        assert "postponed ask" not in await log_of(system, worker)  # never handled
        (metrics,) = (a for a in system.metrics().actors if a.path == worker.path)
        assert metrics.asks_cancelled == 1


async def test_a_retried_ask_that_raises_reaches_its_asker_and_fails_the_machine() -> None:
    async with running() as (system, _):
        probe = await testing.Probe.spawn(system)
        worker = await system.spawn(lambda: Worker(noted=probe), restart=actors.Restart.TEMPORARY)
        async with anyio.create_task_group() as tg:
            errors: list[BaseException] = []

            async def ask() -> None:
                try:
                    await worker.ask(PostponeAsk(fail=True), timeout=WAIT)
                except ValueError as error:
                    errors.append(error)

            tg.start_soon(ask)
            assert await probe.expect(str) == "postponed"
            await worker.send(Go())
        assert [str(error) for error in errors] == ["cannot answer"]
        reason = await worker.join()
        assert isinstance(reason, ValueError)
        assert "raised while retrying the postponed PostponeAsk" in reason.__notes__


async def test_asks_still_postponed_at_the_end_get_actor_stopped() -> None:
    async with running() as (system, _):
        probe = await testing.Probe.spawn(system)
        letters = await testing.Probe.spawn(system)
        system.dead_letters.subscribe(letters)
        worker = await system.spawn(lambda: Worker(noted=probe))
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                with pytest.raises(actors.ActorStopped, match=worker.path):
                    await worker.ask(PostponeAsk(), timeout=WAIT)

            tg.start_soon(ask)
            assert await probe.expect(str) == "postponed"
            await worker.send(Job(3))
            await worker.stop()
        letter = await letters.expect(actors.DeadLetter)
        assert letter.message == Job(3)  # the told one is a dead letter; the ask is answered
        await letters.expect_no_message(within=None)


async def test_postponing_a_stream_request_is_refused() -> None:
    async with running() as (system, _):
        worker = await system.spawn(Worker, restart=actors.Restart.TEMPORARY)
        with pytest.raises(StateMachineError, match="is a StreamRequest: it cannot be postponed"):
            async for _ in worker.stream(Lines()):
                pass


async def test_become_is_refused_on_a_machine() -> None:
    class Switcher(State["Turncoat", Go]):
        async def handle(self, machine: Turncoat, message: Go) -> Transition:
            machine.become(machine.other)
            return machine.stay()

    class Turncoat(StateMachine[Switcher, Go]):
        def initial_state(self) -> Switcher:
            return Switcher()

        async def other(self, message: Go) -> None:
            pass

    reason = await failure(Turncoat, Go())
    assert isinstance(reason, StateMachineError)
    assert "changes behaviour by state" in str(reason)
    assert "machine.goto" in str(reason)


# -- bad transitions and messages --------------------------------------------------------------


async def test_transition_to_an_unknown_state_is_refused() -> None:
    reason = await failure(Worker, Nowhere())
    assert isinstance(reason, UnknownState)
    assert isinstance(reason, ValueError)
    assert "its states are Idle | Busy" in str(reason)


async def test_a_message_the_state_does_not_declare_fails_the_actor() -> None:
    reason = await failure(Worker, Stray())
    assert isinstance(reason, UnhandledMessage)
    assert reason.message == Stray()
    assert reason.state == Idle()
    assert re.match(r"state Idle of /user/\S+ does not handle Stray", str(reason))


async def test_a_handler_must_return_a_transition() -> None:
    class Sloppy(State["Careless", Go]):
        async def handle(self, machine: Careless, message: Go) -> Transition:
            return typing.cast("Transition", Sloppy())  # not machine.goto(Sloppy())

    class Careless(StateMachine[Sloppy, Go]):
        def initial_state(self) -> Sloppy:
            return Sloppy()

    reason = await failure(Careless, Go())
    assert isinstance(reason, StateMachineError)
    assert "not a Transition" in str(reason)


async def test_a_retried_message_that_raises_fails_the_actor_and_loses_nothing() -> None:
    async with running() as (system, _):
        probe = await testing.Probe.spawn(system)
        system.dead_letters.subscribe(probe)
        worker = await system.spawn(Worker, restart=actors.Restart.TEMPORARY)
        for n in (1, -1, 2):  # Busy refuses a negative job
            await worker.send(Job(n))
        await worker.send(Go())
        reason = await worker.join()
        assert isinstance(reason, ValueError)
        assert "raised while retrying the postponed Job" in reason.__notes__
        letter = await probe.expect(actors.DeadLetter)
        assert letter.message == Job(2)  # the one behind it was not handled: a dead letter
        await probe.expect_no_message(within=None)


# -- bad definitions ---------------------------------------------------------------------------


def define(base: object, **body: object) -> type:
    """``class Machine(base): <body>``, as one expression (for ``pytest.raises``)."""
    return types.new_class("Machine", (base,), {}, lambda namespace: namespace.update(body))


def test_a_state_without_handler_is_refused() -> None:
    class Mute(State[Any, Go]):
        pass

    with pytest.raises(InvalidStateMachine, match=r"state .*Mute has no handler"):
        define(StateMachine[Mute, Go])


def test_a_synchronous_handler_is_refused() -> None:
    class Eager(State[Any, Go]):
        def handle(self, machine: Any, message: Go) -> Transition:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
            raise NotImplementedError

    with pytest.raises(InvalidStateMachine, match=r"handle is defined without `async`"):
        define(StateMachine[Eager, Go])


def test_a_timeout_without_on_timeout_is_refused() -> None:
    class Forgetful(State[Any, Go]):
        timeout = 1.0

        async def handle(self, machine: Any, message: Go) -> Transition:
            raise NotImplementedError

    with pytest.raises(InvalidStateMachine, match=r"timeout of 1.0 s but no"):
        define(StateMachine[Forgetful, Go])


def test_states_must_be_state_classes() -> None:
    with pytest.raises(InvalidStateMachine, match=r"which is not a State subclass"):
        define(StateMachine[Go, Go])


@pytest.mark.parametrize("hook", ["receive", "on_start", "on_stop"])
def test_the_machine_keeps_its_hooks(hook: str) -> None:
    async def override(self: object, *args: object) -> None:
        return None

    with pytest.raises(InvalidStateMachine, match=f"overrides {hook}"):
        define(StateMachine[Idle | Busy, Msg], **{hook: override})


def test_postpone_capacity_must_be_a_count() -> None:
    with pytest.raises(InvalidStateMachine, match="postpone_capacity must be an int"):
        define(StateMachine[Idle | Busy, Msg], postpone_capacity=-1)


async def test_a_machine_without_initial_state_fails_to_spawn() -> None:
    class Blank(StateMachine[Idle | Busy, Msg]):
        pass

    async with running() as (system, _):
        with pytest.raises(InvalidStateMachine, match="must define `def initial_state"):
            await system.spawn(Blank)


async def test_forward_references_resolve_at_the_first_spawn() -> None:
    async with running() as (system, _):
        late = await system.spawn(Late)
        assert await late.ask(Ask()) == "late"
        # The machine's real bases are back after Actor read its message type from them.
        bases: tuple[object, ...] = Late.__dict__["__orig_bases__"]
        assert [typing.get_origin(base) for base in bases] == [StateMachine]


class Late(StateMachine["LateState", Ask]):
    def initial_state(self) -> LateState:
        return LateState()


class LateState(State[Late, Ask]):
    async def handle(self, machine: Late, message: Ask) -> Transition:
        return machine.stay(reply="late")


async def test_state_is_unavailable_before_the_start() -> None:
    seen: list[BaseException] = []

    class Early(Worker):
        def __init__(self) -> None:
            super().__init__()
            try:
                _ = self.state
            except StateMachineError as error:
                seen.append(error)

    async with running() as (system, _):
        await system.spawn(Early)
    assert len(seen) == 1
    assert "no state before it starts" in str(seen[0])


# -- nothing lost: processed + dead-lettered + refused == sent --------------------------------


@pytest.mark.parametrize("crash", [False, True])
async def test_dead_letter_invariant(crash: bool) -> None:
    system = ActorSystem(workers=1, clock=ManualClock(), capacity=4)
    halted: list[StateMachineStatistics] = []
    sent = refused = 0
    with anyio.fail_after(WAIT):
        async with system:
            worker = await system.spawn(lambda: Worker(halted), restart=actors.Restart.TEMPORARY)
            script: list[Msg] = [Job(0), Job(1), Go(), Job(2), Back(), Job(3), Job(4)]
            rounds: list[Msg] = [Go(), Job(5), Back(), Job(6)]
            script += rounds * 3
            if crash:  # in Idle (or, if a Go was refused, a Back in Idle fails it earlier)
                script[-2:-2] = [Boom(), Job(8)]
            for message in script:
                sent += 1
                try:
                    worker.try_send(message)  # a full mailbox refuses, and a failed actor
                except (actors.MailboxFull, actors.ActorStopped):
                    refused += 1
                await anyio.lowlevel.checkpoint()
            await worker.stop()  # drains, then dead-letters what is still postponed
            late: list[Msg] = [Job(7), Go()]
            for message in late:
                sent += 1
                try:
                    worker.try_send(message)
                except actors.ActorStopped:
                    refused += 1
    (final,) = halted
    # A message that fails the actor is handled (and failed); every other accepted message
    # is handled or becomes a dead letter: postponed, or still queued when it failed.
    assert final.handled + final.failed + system.dead_letters.count + refused == sent
    assert final.failed <= 1
    if not final.failed:
        assert final.dead_lettered == system.dead_letters.count  # the mailbox was drained
    assert refused >= 2


# -- postpone order, against a model of gen_statem's semantics -------------------------------


class Item(msgspec.Struct, frozen=True):
    id: int
    ready: int  # the first generation that may handle it; earlier ones postpone it
    advance: bool  # handling it moves to the next generation


class Next(msgspec.Struct, frozen=True):
    pass


class Report(actors.Request[tuple[tuple[int, int], ...]], frozen=True):
    pass


@dataclass(frozen=True)
class Generation(State["Generations", Item | Next | Report]):
    number: int

    async def handle(self, machine: Generations, message: Item | Next | Report) -> Transition:
        match message:
            case Next():
                return machine.goto(Generation(self.number + 1))
            case Report():
                return machine.stay(reply=tuple(machine.handled))
            case Item(id, ready, advance):
                if ready > self.number:
                    return machine.postpone()
                machine.handled.append((id, self.number))
                if advance:
                    return machine.goto(Generation(self.number + 1))
                return machine.stay()


class Generations(StateMachine[Generation, Item | Next | Report]):
    postpone_capacity = 100

    def __init__(self) -> None:
        self.handled: list[tuple[int, int]] = []

    def initial_state(self) -> Generation:
        return Generation(0)


def model(script: list[Item | Next]) -> tuple[list[tuple[int, int]], int]:
    """gen_statem's postpone semantics, by hand: (handled (id, generation), still postponed)."""
    generation = 0
    handled: list[tuple[int, int]] = []
    postponed: list[Item] = []

    def handle(message: Item | Next) -> str:
        nonlocal generation
        if isinstance(message, Next):
            generation += 1
            return "change"
        if message.ready > generation:
            return "postpone"
        handled.append((message.id, generation))
        if message.advance:
            generation += 1
            return "change"
        return "stay"

    for message in script:
        outcome = handle(message)
        if outcome == "postpone":
            assert isinstance(message, Item)
            postponed.append(message)
        elif outcome == "change":
            queue, postponed = postponed, []
            while queue:
                retried = queue.pop(0)
                outcome = handle(retried)
                if outcome == "postpone":
                    postponed.append(retried)
                elif outcome == "change":
                    queue, postponed = postponed + queue, []
    return handled, len(postponed)


BACKENDS = [
    pytest.param("asyncio", {"use_uvloop": False}, id="asyncio"),
    pytest.param("trio", {}, id="trio"),
]

steps = st.one_of(
    st.just(None),  # a Next
    st.tuples(st.integers(0, 4), st.booleans()),  # an Item: ready, advance
)


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@settings(max_examples=40, deadline=None)
@given(plan=st.lists(steps, min_size=1, max_size=30))
def test_postponed_messages_keep_their_order(
    backend: str, options: dict[str, Any], plan: list[tuple[int, bool] | None]
) -> None:
    script: list[Item | Next] = [
        Next() if step is None else Item(i, step[0], step[1]) for i, step in enumerate(plan)
    ]
    expected, waiting = model(script)
    result: dict[str, Any] = {}

    async def main() -> None:
        with anyio.fail_after(WAIT):
            async with ActorSystem(workers=1, clock=ManualClock()) as system:
                machine = await system.spawn(Generations)
                for message in script:
                    await machine.send(message)
                result["handled"] = await machine.ask(Report())
                result["stats"] = await testing.inspect(
                    machine, lambda m: m.machine_statistics(), kind=Generations
                )

    anyio.run(main, backend=backend, backend_options=options)
    handled: tuple[tuple[int, int], ...] = result["handled"]
    assert list(handled) == expected
    assert result["stats"].postponed == waiting
    # The property itself: postponed messages handled in one generation keep their order.
    sent_ready = {m.id: m.ready for m in script if isinstance(m, Item)}
    for generation in {g for _, g in handled}:
        retried = [i for i, g in handled if g == generation and sent_ready[i] > 0]
        assert retried == sorted(retried)


# -- the examples ------------------------------------------------------------------------------


def test_pattern_connection_protocol() -> None:
    lines = run_example("patterns/connection_protocol.py").splitlines()
    assert lines[:9] == [
        "a good login:",
        "  t=   0  wire <- SYN",
        "phase: authenticating",
        "  t=   1  wire <- WELCOME ada",
        "  t=   1  wire <- DATA ada: hello",
        "  t=   1  wire <- DATA ada: world",
        "phase: active as ada",
        "  t=   1  wire <- FIN (closed by the client)",
        "  t=   2  wire <- CLOSED",
    ]
    assert "  t=   3  wire <- FIN (bad token for ada)" in lines
    assert "  t=   3  wire <- DROP hello" in lines
    assert "  t=  14  wire <- FIN (login timed out)" in lines
    assert "phase: closing: login timed out" in lines
    assert lines[-1] == "dead letters: 1"


def test_pattern_circuit_breaker() -> None:
    assert run_example("patterns/circuit_breaker.py").splitlines() == [
        "t= 0   Closed: get a -> Ok(value='A')",
        "t= 0   Closed: get b -> Failed(reason='503 unavailable')",
        "t= 0   Closed: get c -> Failed(reason='503 unavailable')",
        "t= 0   Closed: get d -> Failed(reason='503 unavailable')",
        "t= 0     Open: get e -> Rejected(retry_after=5.0)",
        "t= 5 HalfOpen: get f -> Failed(reason='503 unavailable')",
        "t=15 HalfOpen: get g -> Ok(value='G')",
        "t=15   Closed: get h -> Ok(value='H')",
        "downstream calls: 7",
        "breaker: Closed, 5 transitions, 8 handled",
    ]


async def test_connection_protocol_on_every_backend() -> None:
    """The example's connection, with its timeouts on a ManualClock, from this backend."""
    from test_examples import load_example

    example = load_example("patterns/connection_protocol")
    async with running() as (system, _):
        wire = await testing.Probe.spawn(system)
        conn = await system.spawn(
            lambda: example.Connection(wire, {"ada": "pw"}), restart=actors.Restart.TRANSIENT
        )
        await conn.send(example.Send("early"))
        await testing.advance(system, 4.0)
        await conn.send(example.Connected())
        await testing.advance(system, 9.0)  # 9 s into Authenticating's 10 s
        await conn.send(example.Login("ada", "pw"))
        assert await conn.ask(example.Phase()) == "active as ada"
        frames = [frame.text for frame in await wire.receive_n(3)]
        assert frames == ["SYN", "WELCOME ada", "DATA ada: early"]
        await testing.advance(system, 60.0)  # the session expires, Closing lingers 1 s
        await testing.advance(system, 1.0)
        assert await conn.join() is None
        frames = [frame.text for frame in await wire.receive_n(2)]
        assert frames == ["FIN (session expired)", "CLOSED"]


async def test_circuit_breaker_on_every_backend() -> None:
    """The example's actors, driven from this test's backend (asyncio, uvloop or trio)."""
    from test_examples import load_example

    example = load_example("patterns/circuit_breaker")
    async with running() as (system, _):
        downstream = await system.spawn(example.Downstream)
        breaker = await system.spawn(lambda: example.Breaker(downstream, threshold=2))
        await downstream.send(example.SetHealthy(False))
        for _ in range(2):
            assert isinstance(await breaker.ask(example.Get("x")), example.Failed)
        assert isinstance(await breaker.ask(example.Get("x")), example.Rejected)
        await downstream.send(example.SetHealthy(True))
        await testing.advance(system, 5.0)
        assert await breaker.ask(example.Get("x")) == example.Ok("X")
        assert await downstream.ask(example.Calls()) == 3
