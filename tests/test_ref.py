"""`ActorRef`: sending (backpressure, timeouts, cancellation, order), asking, and stopped targets.

Catalogue IDs (RELIABILITY.md) appear in test names where a test implements one.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
from _support import (
    DELIVERIES,
    WAIT,
    Count,
    Flag,
    Hold,
    Recorder,
    Seen,
    Tick,
    park,
    wait_until,
    waiting_senders,
)

import actors
from actors import Actor, ActorRef, ActorSystem, Restart
from actors._ref import cell_of

TEMPORARY = Restart.TEMPORARY

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio


class Echo(actors.Request[str], frozen=True):
    text: str


class Produce(actors.Request[None], frozen=True):
    """Ask a `Producer` to send Tick(0..count-1) to ``target``, one `send` at a time."""

    target: ActorRef[Tick]
    count: int


class Producer(Actor[Produce]):
    async def receive(self, message: Produce) -> None:
        for n in range(message.count):
            await message.target.send(Tick(n))


# -- capacity and backpressure -----------------------------------------------------------------


async def test_capacity_from_spawn_bounds_the_mailbox() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=3, name="small")
        with anyio.fail_after(WAIT):
            release = await park(ref)
            for n in range(3):
                ref.try_send(Tick(n))  # the parked message does not count: 3 fit
            extra = Tick(99)
            with pytest.raises(actors.MailboxFull, match="/user/small") as caught:
                ref.try_send(extra)
            assert caught.value.message is extra
            release.set()
            assert await ref.ask(Seen()) == (0, 1, 2)


@pytest.mark.parametrize(
    ("options", "expected"),
    [({}, actors.DEFAULT_CAPACITY), ({"capacity": 5}, 5)],
    ids=["DEFAULT_CAPACITY", "system-default"],
)
async def test_default_capacity(options: dict[str, Any], expected: int) -> None:
    assert actors.DEFAULT_CAPACITY == 1000
    async with ActorSystem(workers=1, **options) as system:
        ref = await system.spawn(Recorder)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            for n in range(expected):
                ref.try_send(Tick(n))
            with pytest.raises(actors.MailboxFull):
                ref.try_send(Tick(expected))
            release.set()
            assert await ref.ask(Count()) == expected


async def test_send_waits_while_the_mailbox_is_full() -> None:
    """Backpressure: the next send completes only once the handler frees a slot."""
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=2)
        sent = Flag()

        async def send_third() -> None:
            await ref.send(Tick(2))
            sent.set()

        with anyio.fail_after(WAIT):
            release = await park(ref)
            await ref.send(Tick(0))
            await ref.send(Tick(1))
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_third)
                await wait_until(lambda: waiting_senders(ref) == 1)
                with anyio.move_on_after(0.05):  # a chance to complete early, wrongly
                    await sent.wait()
                assert not sent.is_set()
                release.set()
                await sent.wait()
            assert await ref.ask(Seen()) == (0, 1, 2)


async def test_send_timeout_raises_send_timeout_and_enqueues_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1, name="busy")
        with anyio.fail_after(WAIT):
            release = await park(ref)
            await ref.send(Tick(0))
            late = Tick(1)
            with pytest.raises(actors.SendTimeout, match="/user/busy") as caught:
                await ref.send(late, timeout=0.02)
            assert isinstance(caught.value, TimeoutError)
            assert caught.value.message is late
            release.set()
            assert await ref.ask(Seen()) == (0,)


async def test_cancelled_waiting_send_enqueues_nothing() -> None:
    """A cancelled waiting sender leaves no message and no lost slot behind it."""
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1)
        cancel_first = anyio.CancelScope()

        async def first_sender() -> None:
            with cancel_first:
                await ref.send(Tick(1))

        with anyio.fail_after(WAIT):
            release = await park(ref)
            await ref.send(Tick(0))  # full from now on
            async with anyio.create_task_group() as tg:
                tg.start_soon(first_sender)
                await wait_until(lambda: waiting_senders(ref) == 1)
                tg.start_soon(ref.send, Tick(2))  # waits behind the first sender
                await wait_until(lambda: waiting_senders(ref) == 2)
                cancel_first.cancel()
                await wait_until(lambda: waiting_senders(ref) == 1)
                release.set()
            assert cancel_first.cancelled_caught
            assert await ref.ask(Seen()) == (0, 2)


# -- producers and per-sender order ------------------------------------------------------------

PRODUCERS = ["host-task", "same-loop-task", "worker-actor", "same-worker-actor", "plain-thread"]


@pytest.mark.parametrize("producer", PRODUCERS)
async def test_per_sender_order_through_a_tiny_mailbox(
    producer: str, anyio_backend_name: str
) -> None:
    count = 300
    async with ActorSystem(workers=2) as system:
        if producer == "same-loop-task":
            if anyio_backend_name == "trio":
                pytest.skip('placement="host" needs an asyncio host loop')
            consumer = await system.spawn(Recorder, capacity=2, placement="host")
        else:
            consumer = await system.spawn(Recorder, capacity=2, placement=0)
        with anyio.fail_after(WAIT):
            if producer in ("host-task", "same-loop-task"):
                for n in range(count):
                    await consumer.send(Tick(n))
            elif producer == "plain-thread":

                def produce() -> None:
                    for n in range(count):
                        consumer.blocking_send(Tick(n))

                await anyio.to_thread.run_sync(produce)
            else:
                where = 1 if producer == "worker-actor" else 0
                ref = await system.spawn(Producer, placement=where)
                await ref.ask(Produce(consumer, count), timeout=WAIT)
            assert await consumer.ask(Seen()) == tuple(range(count))


async def test_blocking_send_and_ask_from_a_plain_thread() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1)

        def from_thread() -> tuple[int, ...]:
            for n in range(50):
                ref.blocking_send(Tick(n))
            loose: ActorRef[Any] = ref
            with pytest.raises(actors.MessageTypeError):
                loose.blocking_send(Echo("no"))
            return ref.blocking_ask(Seen(), timeout=WAIT)

        with anyio.fail_after(WAIT):
            assert await anyio.to_thread.run_sync(from_thread) == tuple(range(50))


async def test_blocking_send_timeout_from_a_plain_thread() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            await ref.send(Tick(0))
            late = Tick(1)
            with pytest.raises(actors.SendTimeout) as caught:
                await anyio.to_thread.run_sync(
                    functools.partial(ref.blocking_send, late, timeout=0.02)
                )
            assert caught.value.message is late
            with pytest.raises(actors.AskTimeout):
                await anyio.to_thread.run_sync(
                    functools.partial(ref.blocking_ask, Count(), timeout=0.02)
                )
            release.set()
            assert await ref.ask(Seen()) == (0,)


async def test_blocking_send_inside_an_event_loop_raises_runtime_error() -> None:
    """Regression: with room in the mailbox, blocking_send on a loop thread just went through.

    It must refuse consistently (it would stall the loop whenever the mailbox is full), and
    enqueue nothing.
    """
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder)
        with pytest.raises(RuntimeError, match="event loop"):
            ref.blocking_send(Tick(1))
        assert await ref.ask(Count()) == 0


async def test_blocking_ask_inside_an_event_loop_raises_runtime_error() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder)
        with pytest.raises(RuntimeError, match="event loop"):
            ref.blocking_ask(Count())
        assert await ref.ask(Count()) == 0


class Fill(actors.Request[tuple[str, bool]], frozen=True):
    """Ask a `SelfSender` to fill its own mailbox, then send itself one more message."""

    timeout: float | None = None


class SelfSender(Actor[Fill | Tick | Count]):
    def __init__(self) -> None:
        self.ticks = 0

    async def receive(self, message: Fill | Tick | Count) -> Any:
        match message:
            case Fill(timeout):
                self.ref.try_send(Tick())  # capacity 1: now full
                extra = Tick(1)
                try:
                    await self.ref.send(extra, timeout=timeout)  # waiting would deadlock
                except actors.MailboxFull as error:
                    return (str(error), error.message is extra)
                return ("sent", False)
            case Tick():
                self.ticks += 1
            case Count():
                return self.ticks
        return None


@pytest.mark.parametrize("timeout", [None, WAIT])
async def test_C5_self_send_to_a_full_mailbox_raises_mailbox_full_at_once(
    timeout: float | None,
) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(SelfSender, capacity=1, name="narcissus")
        with anyio.fail_after(WAIT / 2):  # "at once": well before any send timeout
            text, handed_back = await ref.ask(Fill(timeout))
        assert "/user/narcissus" in text
        assert handed_back  # the error carries the message that was not sent
        assert await ref.ask(Count()) == 1  # the first self-send was delivered, once


# -- ask ---------------------------------------------------------------------------------------


class Slow(actors.Request[str], frozen=True):
    release: Flag
    entered: Flag


class Service(Actor[Echo | Slow | Count]):
    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: Echo | Slow | Count) -> Any:
        self.handled += 1
        match message:
            case Echo(text):
                return text
            case Slow(release, entered):
                entered.set()
                await release.wait()
                return "late"
            case Count():
                return self.handled
        return None


async def test_ask_returns_the_handler_reply() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Service)
        assert await ref.ask(Echo("hi")) == "hi"
        assert await ref.ask(Count()) == 2


async def test_F13_ask_timeout_drops_the_late_reply_and_the_actor_keeps_working() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Service, name="slowpoke")
        release, entered = Flag(), Flag()
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.AskTimeout, match="/user/slowpoke") as caught:
                await ref.ask(Slow(release, entered), timeout=0.05)
            assert isinstance(caught.value, TimeoutError)
            assert entered.is_set()  # the handler did get the message
            release.set()  # its reply "late" has nowhere to go and is dropped
            assert await ref.ask(Echo("fresh")) == "fresh"
            assert await ref.ask(Count()) == 3


def test_default_ask_timeout_is_five_seconds() -> None:
    assert actors.DEFAULT_ASK_TIMEOUT == 5.0
    for method in (ActorRef.ask, ActorRef.blocking_ask):
        default = inspect.signature(method).parameters["timeout"].default
        assert default == actors.DEFAULT_ASK_TIMEOUT


async def test_ask_timeout_counts_the_wait_for_room_and_enqueues_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            await ref.send(Tick(0))
            with pytest.raises(actors.AskTimeout):
                await ref.ask(Seen(), timeout=0.02)
            release.set()
            assert await ref.ask(Seen()) == (0,)


class Boom(actors.Request[int], frozen=True):
    pass


class Fragile(Actor[Boom | Count]):
    async def receive(self, message: Boom | Count) -> int:
        if isinstance(message, Boom):
            raise ZeroDivisionError("boom")
        return 0


async def test_F1_handler_exception_is_raised_in_the_asker_and_stops_a_temporary_actor() -> None:
    async with ActorSystem(workers=2) as system:
        ref = await system.spawn(Fragile, name="fragile", restart=TEMPORARY)
        with anyio.fail_after(WAIT):
            with pytest.raises(ZeroDivisionError, match="boom") as caught:
                await ref.ask(Boom())
            assert any("/user/fragile" in note for note in caught.value.__notes__)
            assert await ref.join() is caught.value
        assert not ref.is_alive
        with pytest.raises(actors.ActorStopped, match="/user/fragile"):
            await ref.send(Count())
        with pytest.raises(actors.ActorStopped):
            await ref.ask(Count())


class NoteWatcher(ValueError):
    """An error that holds back notes added to it until the asker has looked at it.

    A runtime that adds its note only after handing the error to the asker is caught out:
    the asker sees the error without the note.
    """

    def __init__(self, looked: threading.Event) -> None:
        super().__init__("watched")
        self.looked = looked

    def add_note(self, note: str) -> None:
        self.looked.wait(0.2)  # once the asker has looked, or after a short grace
        super().add_note(note)


class NoteFailing(Actor[Boom]):
    def __init__(self, looked: threading.Event) -> None:
        self.looked = looked

    async def receive(self, message: Boom) -> int:
        raise NoteWatcher(self.looked)


async def test_handler_exception_carries_its_note_when_the_asker_sees_it() -> None:
    """Regression: the note was added after the error was handed to the asker (a race)."""
    looked = threading.Event()
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: NoteFailing(looked), name="noted", restart=TEMPORARY)
        with anyio.fail_after(WAIT), pytest.raises(NoteWatcher) as caught:
            await ref.ask(Boom())
        notes = list(getattr(caught.value, "__notes__", ()))
        looked.set()
        assert any("/user/noted" in note for note in notes)
        with anyio.fail_after(WAIT):
            await ref.join()


class Double(actors.Request[tuple[int, int]], frozen=True):
    n: int


class Relay(actors.Request[tuple[int, int, int]], frozen=True):
    back: ActorRef[Double]
    n: int


class Back(Actor[Double]):
    async def receive(self, message: Double) -> tuple[int, int]:
        return (message.n * 2, threading.get_ident())


class Front(Actor[Relay]):
    async def receive(self, message: Relay) -> tuple[int, int, int]:
        doubled, back_thread = await message.back.ask(Double(message.n))
        return (doubled, back_thread, threading.get_ident())


async def test_ask_from_inside_a_handler_across_loops() -> None:
    async with ActorSystem(workers=2) as system:
        back = await system.spawn(Back, placement=1)
        front = await system.spawn(Front, placement=0)
        with anyio.fail_after(WAIT):
            for n in range(20):
                doubled, back_thread, front_thread = await front.ask(Relay(back, n))
                assert doubled == 2 * n
                assert back_thread != front_thread


@pytest.mark.parametrize("phase", ["waiting-for-room", "enqueued", "handler-running"])
async def test_F12_cancelled_ask_leaves_the_target_consistent(phase: str) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1)
        with anyio.fail_after(WAIT):
            if phase == "handler-running":
                release, entered = Flag(), Flag()
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:

                        async def cancel_once_running() -> None:
                            await entered.wait()
                            scope.cancel()

                        tg.start_soon(cancel_once_running)
                        await ref.ask(Hold(release, entered))
                assert scope.cancelled_caught
                release.set()
                await ref.send(Tick(1))
                assert await ref.ask(Seen()) == (1,)
                return
            release = await park(ref)
            if phase == "waiting-for-room":
                await ref.send(Tick(0))  # now full: the ask must wait for room
            with anyio.move_on_after(0.05) as scope:
                await ref.ask(Tick(1))
            assert scope.cancelled_caught
            release.set()
            # Waiting for room: nothing enqueued. Enqueued: skipped, its asker having left.
            expected = (0,) if phase == "waiting-for-room" else ()
            assert await ref.ask(Seen()) == expected
            await ref.send(Tick(2))
            assert await ref.ask(Seen()) == (*expected, 2)


class AskMyself(actors.Request[str], frozen=True):
    pass


class Introvert(Actor[AskMyself | Count]):
    async def receive(self, message: AskMyself | Count) -> Any:
        if isinstance(message, AskMyself):
            try:
                await self.ref.ask(Count(), timeout=None)  # would wait forever
            except actors.DeadlockError as error:
                return str(error)
            return "answered"
        return 0


async def test_C4_ask_to_itself_raises_deadlock_error_at_once() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Introvert, name="introvert")
        with anyio.fail_after(WAIT):
            assert "/user/introvert" in await ref.ask(AskMyself())
            assert await ref.ask(Count()) == 0  # still alive and well


class Leaky(actors.Request[Any], frozen=True):
    pass


class LeakyActor(Actor[Leaky]):
    def __init__(self) -> None:
        self.state = [1, 2, 3]

    async def receive(self, message: Leaky) -> Any:
        return self.state  # mutable: would share the actor's state with the asker


async def test_reply_must_be_sendable() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(LeakyActor, name="leaky", restart=TEMPORARY)
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.NotSendableError, match="/user/leaky"):
                await ref.ask(Leaky())
            assert isinstance(await ref.join(), actors.NotSendableError)


# -- stopped targets ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", DELIVERIES)
async def test_B5_every_delivery_to_a_stopped_actor_raises_actor_stopped_at_once(how: str) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, name="gone")
        await ref.stop()
        message = Tick(1)
        with (
            anyio.fail_after(WAIT),
            pytest.raises(actors.ActorStopped, match="/user/gone") as caught,
        ):
            await DELIVERIES[how](ref, message)
        assert caught.value.message is message


async def test_B5_senders_blocked_on_a_full_mailbox_are_released_when_the_actor_stops() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=1)
        outcomes: list[str] = []

        async def attempt(deliver: Callable[[], Awaitable[object]]) -> None:
            try:
                await deliver()
                outcomes.append("delivered")
            except actors.ActorStopped:
                outcomes.append("stopped")

        with anyio.fail_after(WAIT):
            release = await park(ref)
            await ref.send(Tick(0))
            async with anyio.create_task_group() as tg:
                blocked = [
                    functools.partial(ref.send, Tick(1)),
                    functools.partial(ref.send, Tick(2), timeout=WAIT),
                    functools.partial(ref.ask, Count()),
                    functools.partial(DELIVERIES["blocking_send"], ref, Tick(3)),
                    functools.partial(DELIVERIES["blocking_ask"], ref, Count()),
                ]
                for deliver in blocked:
                    tg.start_soon(attempt, deliver)
                await wait_until(lambda: waiting_senders(ref) == len(blocked))
                tg.start_soon(ref.stop)
                # Released while the handler is still parked: nobody waits for the drain.
                await wait_until(lambda: len(outcomes) == len(blocked))
                assert outcomes == ["stopped"] * len(blocked)
                release.set()
            assert await ref.join() is None


async def test_a_cancelled_join_leaves_no_waiter_and_a_later_join_gets_the_reason() -> None:
    # On an asyncio loop a join awaits the latch's future itself (`Latch.listen`), on trio a
    # oneshot: either way a cancelled join is unlisted, and the actor is unaffected.
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, restart=TEMPORARY)
        cell = ref._cell  # pyright: ignore[reportPrivateUsage]
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ref.join)
                await wait_until(lambda: len(cell._waiters or ()) == 1)  # pyright: ignore[reportPrivateUsage]
                tg.cancel_scope.cancel()
            assert not cell._waiters  # pyright: ignore[reportPrivateUsage]
            assert ref.is_alive
            await ref.send(Tick(1))
            await ref.stop()
            assert await ref.join() is None  # ended: at once
            assert await ref.join() is None


# -- the handle itself -------------------------------------------------------------------------


class Carry(actors.Request[bool], frozen=True):
    ref: ActorRef[Tick | Count | Seen | Hold]


class RefHolder(Actor[Carry]):
    async def receive(self, message: Carry) -> bool:
        await message.ref.send(Tick(5))
        return message.ref.is_alive


async def test_refs_are_sendable_equal_and_hashable() -> None:
    async with ActorSystem(workers=2) as system:
        target = await system.spawn(Recorder, name="target")
        holder = await system.spawn(RefHolder)
        assert await holder.ask(Carry(target)) is True
        assert await target.ask(Seen()) == (5,)
        assert {target, target} == {target}
        assert target != holder
        assert target.name == "target"
        assert target.path == "/user/target"


async def test_repr_names_the_path_state_mailbox_and_loop() -> None:
    async with ActorSystem(workers=2) as system:
        ref = await system.spawn(Recorder, name="shown", capacity=4, placement=1)
        assert repr(ref) == "<ActorRef /user/shown running mailbox=0/4 loop=1>"
        await ref.stop()
        assert "stopped" in repr(ref)


# -- the cooperative budget ---------------------------------------------------------------------


async def test_senders_sharing_a_ref_share_its_cooperative_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Many tasks sending through one ref at once (children answering their parent) yield
    # once per COOPERATIVE_BUDGET sends between them, not once each: the count is reset
    # before the yield, so those running during it see the reset.
    import actors._ref

    yields = 0
    real = actors._ref.checkpoint  # pyright: ignore[reportPrivateUsage]

    async def counting_checkpoint() -> None:
        nonlocal yields
        yields += 1
        await real()

    monkeypatch.setattr(actors._ref, "checkpoint", counting_checkpoint)
    senders = 8 * actors.COOPERATIVE_BUDGET
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, capacity=senders)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for i in range(senders):
                    tg.start_soon(ref.send, Tick(i))
            assert await ref.ask(Count()) == senders
    assert 1 <= yields <= senders // actors.COOPERATIVE_BUDGET + 1


class Mixed(Actor[Tick | tuple[Any, ...] | Count]):
    """Takes ticks (always sendable) and tuples (sendable or not, by what they hold)."""

    def __init__(self) -> None:
        self.taken = 0

    def receive(self, message: Tick | tuple[Any, ...] | Count) -> int | None:
        if type(message) is Count:
            return self.taken
        self.taken += 1
        return None


@pytest.mark.parametrize("how", ["send", "try_send"])
async def test_admission_after_a_cached_type_still_checks_every_other_message(how: str) -> None:
    # A ref caches the type that last passed admission by its class's admitted set
    # (`ActorRef._passed`): a type whose sendability depends on the instance (a tuple) is
    # never cached, and a cached type does not let any other type through unchecked.
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            ref: ActorRef[Any] = await system.spawn(Mixed)

            async def deliver(message: object) -> None:
                if how == "send":
                    await ref.send(message)
                else:
                    ref.try_send(message)

            await deliver(Tick(1))
            await deliver(Tick(2))  # admitted by the cache
            await deliver((1, "a"))  # checked: sendable, but not for every tuple
            with pytest.raises(actors.NotSendableError):
                await deliver(([1],))  # a list inside: checked again, refused
            with pytest.raises(actors.MessageTypeError):
                await deliver(Untyped())
            await deliver(Tick(3))
            assert await ref.ask(Count()) == 4
            passed = ref._passed  # pyright: ignore[reportAttributeAccessIssue, reportPrivateUsage]
            assert passed is Tick
            assert passed in cell_of(ref).admitted


# -- batch sends through the ref (issue 17) -------------------------------------------------


class Untyped:
    """Not a message any actor here accepts."""


async def test_send_many_enqueues_the_batch_in_order_after_checking_all_of_it() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            recorder = await system.spawn(Recorder, capacity=8)
            await recorder.send_many([Tick(1), Tick(2), Tick(3)])
            with pytest.raises(actors.MessageTypeError):
                await recorder.send_many([Tick(4), Untyped()])  # type: ignore[list-item]
            with pytest.raises(actors.MessageTypeError):
                recorder.try_send_many([Tick(5), [6]])  # type: ignore[list-item]
            recorder.try_send_many([Tick(7)])
            assert await recorder.ask(Seen()) == (1, 2, 3, 7)  # nothing of the refused ones


async def test_a_batch_waits_for_room_for_all_of_it_or_fails_whole() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            recorder = await system.spawn(Recorder, capacity=4)
            release = await park(recorder)
            await recorder.send_many([Tick(1), Tick(2), Tick(3)])  # 3 of 4 slots
            with pytest.raises(actors.MailboxFull) as full:
                recorder.try_send_many([Tick(4), Tick(5)])  # only one slot: none go in
            assert full.value.message == (Tick(4), Tick(5))
            with pytest.raises(actors.SendTimeout):
                await recorder.send_many([Tick(4), Tick(5)], timeout=0.05)
            with pytest.raises(ValueError, match="capacity"):
                await recorder.send_many([Tick(n) for n in range(5)])  # can never fit
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(recorder.send_many, [Tick(4), Tick(5)]))
                await wait_until(lambda: waiting_senders(recorder) == 1)
                release.set()  # room for both: the waiting batch goes in whole
            assert await recorder.ask(Seen()) == (1, 2, 3, 4, 5)


def test_a_type_admitted_by_a_set_a_restart_replaced_meanwhile_is_not_cached() -> None:
    # `Cell.bind` (a restart whose factory returns another class) replaces the ref's
    # admitted set and clears the cached type. A sender that checked by the old set and
    # stores its type after that clearing must take the store back, or the old class's
    # type would pass every later send unchecked. The interleaving is forced here: the
    # old set's membership test runs the bind in the middle of `_admit`.
    from types import SimpleNamespace

    ref: ActorRef[Any] = ActorRef(SimpleNamespace(mailbox=None))  # type: ignore[arg-type]

    class OldSet(frozenset[type]):
        def __contains__(self, item: object) -> bool:
            ref._admitted = frozenset()  # pyright: ignore[reportPrivateUsage]  # the bind,
            ref._passed = None  # pyright: ignore[reportPrivateUsage]  # in its order
            return True

    ref._admitted = OldSet()  # pyright: ignore[reportPrivateUsage]
    ref._admit(Tick(1))  # pyright: ignore[reportPrivateUsage]
    assert ref._passed is None  # pyright: ignore[reportPrivateUsage]
    # Without a bind in between, the type is cached.
    ref._admitted = frozenset({Tick})  # pyright: ignore[reportPrivateUsage]
    ref._admit(Tick(2))  # pyright: ignore[reportPrivateUsage]
    assert ref._passed is Tick  # pyright: ignore[reportPrivateUsage]
