"""Tests of the bounded MPSC mailbox (`actors._mailbox.Mailbox`), the core of every actor.

The mailbox is internal, but every guarantee of `send` rests on it: the bound, FIFO admission
of waiting senders, nothing lost or duplicated when a waiting sender is cancelled, the
consumer-token protocol that wakes an idle actor exactly once, and the control lane. Most tests
drive it directly; a few go through `ActorRef` where the behaviour is visible there.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import _support
import anyio
import anyio.lowlevel
import msgspec
import pytest
from _support import park
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import actors
from actors._mailbox import CLOSED, DRAINED, EMPTY, FULL, OK, Mailbox
from actors._oneshot import Expired, thread_oneshot
from actors._ref import cell_of

if TYPE_CHECKING:
    from collections.abc import Callable

WAIT = 10.0  # seconds: an upper bound for waits that normally take microseconds


class WakeCounter:
    """The `wake` callback of a test mailbox: counts how often the consumer token was handed out."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def new_box(capacity: int, *, scheduled: bool = False) -> tuple[Mailbox[Any], WakeCounter]:
    wake = WakeCounter()
    return Mailbox(capacity, wake, scheduled=scheduled), wake


def slots_in_use(box: Mailbox[Any]) -> int:
    """Messages waiting plus slots granted to senders that have not filled them yet."""
    return len(box) + box._reserved  # pyright: ignore[reportPrivateUsage]


def drain(box: Mailbox[Any]) -> list[Any]:
    """Pop until EMPTY or DRAINED; return the messages popped."""
    items: list[Any] = []
    while (item := box.pop()) is not EMPTY and item is not DRAINED:
        items.append(item)
    return items


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Let other tasks run until ``predicate`` holds (callers bound it with `anyio.fail_after`)."""
    while not predicate():
        await anyio.lowlevel.checkpoint()


def wait_until_blocking(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` from a plain thread until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.0005)


def waiting_senders(box: Mailbox[Any]) -> int:
    return box.statistics().waiting_senders


async def wait_for_senders(box: Mailbox[Any], count: int) -> None:
    await wait_until(lambda: waiting_senders(box) == count)


def wait_for_senders_blocking(box: Mailbox[Any], count: int) -> None:
    wait_until_blocking(lambda: waiting_senders(box) == count)


# -- put_nowait, the bound, statistics -------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_is_rejected(capacity: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Mailbox[int](capacity, WakeCounter())


def test_put_nowait_accepts_up_to_capacity_then_reports_full() -> None:
    box, _ = new_box(3)
    assert [box.put_nowait(i) for i in range(3)] == [OK, OK, OK]
    assert box.put_nowait(3) == FULL
    assert len(box) == 3
    assert drain(box) == [0, 1, 2]


def test_capacity_counts_waiting_messages_only() -> None:
    # The message the consumer has popped (and is handling) frees its slot at once.
    box, _ = new_box(2)
    assert box.put_nowait("a") == OK
    assert box.put_nowait("b") == OK
    assert box.put_nowait("c") == FULL
    assert box.pop() == "a"
    assert box.put_nowait("c") == OK
    assert box.put_nowait("d") == FULL
    assert drain(box) == ["b", "c"]


def test_capacity_one_holds_exactly_one_message() -> None:
    box, _ = new_box(1)
    assert box.put_nowait(1) == OK
    assert box.put_nowait(2) == FULL
    assert box.pop() == 1
    assert box.put_nowait(2) == OK


def test_statistics_is_a_frozen_snapshot_with_high_water() -> None:
    box, _ = new_box(4)
    empty = box.statistics()
    assert empty == actors.MailboxStatistics(
        capacity=4, depth=0, high_water=0, waiting_senders=0, closed=False
    )
    for i in range(3):
        box.put_nowait(i)
    box.pop()
    box.pop()
    box.put_nowait(3)
    stats = box.statistics()
    assert (stats.depth, stats.high_water) == (2, 3)
    for i in range(4, 6):
        box.put_nowait(i)
    assert box.statistics().high_water == 4
    with pytest.raises(AttributeError):
        stats.depth = 0  # pyright: ignore[reportAttributeAccessIssue]
    assert stats.depth == 2  # a snapshot: later puts do not change it
    assert empty.high_water == 0


def test_control_signals_do_not_count_towards_high_water_or_depth() -> None:
    box, _ = new_box(2)
    for signal in range(5):
        assert box.put_control(("signal", signal))
    stats = box.statistics()
    assert (stats.depth, stats.high_water) == (0, 0)


# -- the consumer token and wake-ups ----------------------------------------------------------


def test_put_into_idle_mailbox_wakes_consumer_exactly_once() -> None:
    box, wake = new_box(8)
    assert box.put_nowait(1) == OK
    assert wake.calls == 1
    # The token is taken: a burst to a busy consumer costs no further wake-up.
    for i in range(2, 6):
        box.put_nowait(i)
    assert wake.calls == 1
    assert drain(box) == [1, 2, 3, 4, 5]
    assert wake.calls == 1
    # pop() returned EMPTY and handed the token back: the next put wakes again.
    box.put_nowait(6)
    assert wake.calls == 2
    box.put_nowait(7)
    assert wake.calls == 2


def test_pop_that_finds_messages_keeps_the_token() -> None:
    box, wake = new_box(8)
    box.put_nowait(1)
    box.put_nowait(2)
    assert box.pop() == 1  # not empty: the consumer keeps running, token kept
    box.put_nowait(3)
    assert wake.calls == 1


def test_mailbox_created_scheduled_does_not_wake_until_it_was_found_empty() -> None:
    # An actor's mailbox starts with the token taken by its start-up task.
    box, wake = new_box(8, scheduled=True)
    box.put_nowait(1)
    box.put_control("signal")
    assert wake.calls == 0
    assert box.pop() == "signal"
    assert box.pop() == 1
    assert box.pop() is EMPTY
    box.put_nowait(2)
    assert wake.calls == 1


def test_put_control_into_idle_mailbox_wakes_consumer_once() -> None:
    box, wake = new_box(1)
    assert box.put_control("stop")
    assert box.put_control("again")
    assert wake.calls == 1
    assert box.pop() == "stop"
    assert box.pop() == "again"
    assert box.pop() is EMPTY
    assert box.put_control("third")
    assert wake.calls == 2


def test_wake_is_called_outside_the_lock() -> None:
    # A wake callback may touch the mailbox (e.g. start the consumer inline): no self-deadlock.
    seen: list[actors.MailboxStatistics] = []
    box: Mailbox[int]

    def wake() -> None:
        seen.append(box.statistics())

    box = Mailbox(2, wake, scheduled=False)
    box.put_nowait(1)
    box.pop()
    box.pop()
    box.put_control("signal")
    assert len(seen) == 2


class CountingLock:
    """A mailbox's lock that counts its acquisitions (see `consumer_view`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acquired = 0

    def acquire(self) -> bool:
        self.acquired += 1
        return self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class StaticWake:
    """A wake-up whose class's ``__call__`` is a staticmethod: called without the instance."""

    calls = 0

    @staticmethod
    def __call__() -> None:
        StaticWake.calls += 1


def test_every_kind_of_wake_up_callable_is_called_once_per_token() -> None:
    # The mailbox calls its wake-up as a function and an object (`_wake_call`): an instance
    # whose class defines ``__call__`` in Python (as the cell does) through that function,
    # anything else (a function, a bound method, a staticmethod ``__call__``) as it is.
    counter = WakeCounter()
    calls: list[str] = []

    def function() -> None:
        calls.append("function")

    class Owner:
        def wake(self) -> None:
            calls.append("bound method")

    StaticWake.calls = 0
    for wake in (counter, function, Owner().wake, StaticWake(), lambda: calls.append("lambda")):
        box: Mailbox[int] = Mailbox(2, wake, scheduled=False)
        assert box.put_nowait(1) == OK
        assert box.put_nowait(2) == OK  # the token is taken: no second wake-up
    assert counter.calls == 1
    assert calls == ["function", "bound method", "lambda"]
    assert StaticWake.calls == 1


def test_finish_lets_go_of_the_wake_up_object() -> None:
    # The cell is its mailbox's wake-up object: a finished mailbox must not keep it alive.
    box, wake = new_box(2)
    box.finish()
    assert box._waker is None  # pyright: ignore[reportPrivateUsage]
    assert box.put_nowait(1) == CLOSED
    assert wake.calls == 0


def test_the_first_put_makes_the_consumer_view_so_the_first_run_takes_no_lock() -> None:
    box, _ = new_box(4)
    counting = CountingLock()
    box._lock = counting  # type: ignore[assignment]  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue]
    assert box.put_nowait("a") == OK
    assert counting.acquired == 1
    queue, control, senders, _ = box.consumer_view()
    assert counting.acquired == 1  # the queue and both lists were made by the put
    assert list(queue) == ["a"]
    assert box.put_control("c")  # the view sees what comes later: the same lists
    assert control == ["c"]
    assert senders == []


def test_a_view_taken_before_any_put_sees_the_puts_to_come() -> None:
    box, _ = new_box(4, scheduled=True)  # a run started by a stop or a signal, before any put
    queue, control, senders, _ = box.consumer_view()
    box.put_nowait("a")
    box.put_control("c")
    assert list(queue) == ["a"]
    assert control == ["c"]
    assert senders == []


# -- the control lane -------------------------------------------------------------------------


def test_control_signals_are_popped_before_messages_in_their_own_order() -> None:
    box, _ = new_box(8)
    box.put_nowait("m1")
    box.put_control("c1")
    box.put_nowait("m2")
    box.put_control("c2")
    assert [box.pop() for _ in range(4)] == ["c1", "c2", "m1", "m2"]
    assert box.pop() is EMPTY


def test_control_lane_is_not_limited_by_capacity() -> None:
    box, _ = new_box(1)
    assert box.put_nowait("m") == OK
    assert box.put_nowait("n") == FULL
    assert all(box.put_control(i) for i in range(10))
    assert box.put_nowait("n") == FULL  # control signals take no message slot
    assert [box.pop() for _ in range(11)] == [*range(10), "m"]


# -- close, finish, take_all ------------------------------------------------------------------


def test_close_refuses_new_messages_and_drains_the_accepted_ones() -> None:
    box, _ = new_box(4)
    box.put_nowait(1)
    box.put_nowait(2)
    assert box.close() is True
    assert box.closed
    assert box.statistics().closed
    assert box.close() is False  # only the first call closes
    assert box.put_nowait(3) == CLOSED
    assert box.pop() == 1
    assert box.pop() == 2
    assert box.pop() is DRAINED
    assert box.pop() is DRAINED  # stays drained
    assert box.put_nowait(4) == CLOSED


def test_close_of_full_mailbox_reports_closed_not_full() -> None:
    box, _ = new_box(1)
    box.put_nowait(1)
    box.close()
    assert box.put_nowait(2) == CLOSED


def test_close_wakes_an_idle_consumer_once_so_that_it_sees_drained() -> None:
    box, wake = new_box(4)
    box.close()
    assert wake.calls == 1
    box.close()
    assert wake.calls == 1
    assert box.pop() is DRAINED


def test_close_does_not_wake_a_running_consumer() -> None:
    box, wake = new_box(4)
    box.put_nowait(1)
    assert wake.calls == 1
    box.close()
    assert wake.calls == 1
    assert box.pop() == 1
    assert box.pop() is DRAINED


def test_drained_keeps_the_token() -> None:
    # DRAINED ends the consumer for good: control signals after close do not wake anyone.
    box, wake = new_box(4)
    box.put_nowait(1)
    box.close()
    assert drain(box) == [1]
    assert box.put_control("late")
    assert wake.calls == 1
    assert box.pop() == "late"
    assert box.pop() is DRAINED


def test_control_is_popped_before_drained() -> None:
    box, _ = new_box(4)
    box.close()
    box.put_control("stop")
    assert box.pop() == "stop"
    assert box.pop() is DRAINED


def test_drained_is_found_without_the_lock() -> None:
    # Every life's last pop: a closed, empty mailbox says DRAINED without waiting for its lock
    # (here held by a producer), since nothing can be accepted after the close.
    box, _ = new_box(4)
    box.put_nowait(1)
    box.close()
    assert box.pop() == 1
    popped: list[object] = []
    with box.lock:
        consumer = threading.Thread(target=lambda: popped.append(box.pop_slow()))
        consumer.start()
        consumer.join(WAIT)
        assert popped == [DRAINED]  # still holding the lock: decided without it
    consumer.join(WAIT)


def test_a_reopened_mailbox_is_not_drained() -> None:
    box, _ = new_box(4, scheduled=True)
    box.close()
    assert box.reopen()
    assert box.pop_slow() is EMPTY  # the locked path: the token is handed back
    assert box.put_nowait(1) == OK


def test_finish_returns_leftovers_and_refuses_control_signals() -> None:
    box, _ = new_box(4)
    box.put_nowait("a")
    box.put_nowait("b")
    box.put_control("c")
    assert box.finish() == (["a", "b"], ["c"])
    assert box.closed
    assert box.put_control("late") is False
    assert box.put_nowait("late") == CLOSED
    assert box.pop() is DRAINED
    assert box.finish() == ((), ())


def test_finish_empties_both_lanes_without_waking_the_consumer() -> None:
    box, wakes = new_box(4)
    box.put_nowait("a")
    assert wakes.calls == 1
    assert box.pop() == "a"
    assert box.pop() is EMPTY  # the consumer is idle now
    box.put_nowait("b")
    box.put_control("c")
    assert wakes.calls == 2
    assert box.finish() == (["b"], ["c"])
    assert box.closed
    assert wakes.calls == 2  # finish() woke nobody: the consumer calling it is already running
    assert box.pop() is DRAINED  # the control lane was emptied too


# -- waiting senders (async) ------------------------------------------------------------------


@pytest.mark.anyio
async def test_put_with_room_returns_ok_at_once() -> None:
    box, wake = new_box(2)
    with anyio.fail_after(WAIT):
        assert await box.put("a") == OK
    assert len(box) == 1
    assert wake.calls == 1


@pytest.mark.anyio
async def test_put_on_closed_mailbox_returns_closed() -> None:
    box, _ = new_box(2)
    box.close()
    with anyio.fail_after(WAIT):
        assert await box.put("a") == CLOSED
        assert await box.put("b", timeout=0.01) == CLOSED
    assert len(box) == 0


@pytest.mark.anyio
async def test_waiting_senders_are_admitted_in_fifo_order() -> None:
    senders = 6
    box, _ = new_box(1)
    box.put_nowait("first")
    filled: list[anyio.Event] = [anyio.Event()]
    codes: dict[int, int] = {}

    async def send(index: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        codes[index] = await box.put(index)
        filled[0].set()

    popped: list[Any] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for index in range(senders):
                # start() returns once the sender runs; it blocks in put() before yielding.
                await tg.start(send, index)
                assert waiting_senders(box) == index + 1
            for _ in range(senders):
                filled[0] = anyio.Event()
                popped.append(box.pop())
                # The freed slot is reserved for the oldest waiter: a newcomer cannot overtake.
                assert box.put_nowait("newcomer") == FULL
                await filled[0].wait()
                assert slots_in_use(box) <= box.capacity
            popped.append(box.pop())
    assert popped == ["first", *range(senders)]
    assert codes == dict.fromkeys(range(senders), OK)
    assert box.pop() is EMPTY
    assert box.put_nowait("fresh") == OK


@pytest.mark.anyio
async def test_slots_go_to_senders_in_the_order_they_waited() -> None:
    # Admission is the grant of a slot, and it is FIFO: each pop hands its slot to the oldest
    # waiter. A granted sender appends when its own loop resumes it, so two senders granted
    # in the same instant (here a task on this busy loop and a plain thread) may land in
    # either order, as in tokio's bounded channel; each one's own order is unaffected.
    box, _ = new_box(2)
    box.put_nowait("x")
    box.put_nowait("y")
    codes: list[int] = []

    async def send_early() -> None:
        codes.append(await box.put("early"))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_early)
            await wait_until(lambda: waiting_senders(box) == 1)
            late = SenderThread(box, "late")
            late.start()
            await wait_until(lambda: waiting_senders(box) == 2)
            assert box.pop() == "x"
            # The first slot went to "early" (still asleep on this loop), not to "late".
            assert waiting_senders(box) == 1
            assert box.put_nowait("newcomer") == FULL  # nobody overtakes the waiters
            assert box.pop() == "y"  # the second slot goes to "late"
            assert waiting_senders(box) == 0
            late.finish()
            assert late.code == OK
    assert codes == [OK]
    assert sorted(drain(box)) == ["early", "late"]


@pytest.mark.anyio
async def test_sender_cancelled_while_waiting_enqueues_nothing() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    scope = anyio.CancelScope()
    outcome: list[int] = []

    async def send() -> None:
        with scope:
            outcome.append(await box.put("cancelled"))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await wait_until(lambda: waiting_senders(box) == 1)
            scope.cancel()
    assert scope.cancelled_caught
    assert outcome == []
    assert waiting_senders(box) == 0
    assert box.pop() == "x"
    assert box.pop() is EMPTY
    # No capacity leaked to the cancelled sender: the slot is free again.
    assert slots_in_use(box) == 0
    assert box.put_nowait("fresh") == OK


@pytest.mark.anyio
async def test_cancelled_sender_in_the_middle_keeps_fifo_order_of_the_others() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    scopes = [anyio.CancelScope() for _ in range(3)]
    codes: dict[int, int] = {}
    popped: list[Any] = []

    async def send(index: int) -> None:
        with scopes[index]:
            codes[index] = await box.put(index)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for index in range(3):
                tg.start_soon(send, index)
                await wait_for_senders(box, index + 1)
            scopes[1].cancel()
            await wait_for_senders(box, 2)
            popped.append(box.pop())
            await wait_until(lambda: len(box) == 1)
            popped.append(box.pop())
            await wait_until(lambda: len(box) == 1)
            popped.append(box.pop())
    assert popped == ["x", 0, 2]
    assert codes == {0: OK, 2: OK}
    assert box.pop() is EMPTY
    assert slots_in_use(box) == 0


@pytest.mark.anyio
async def test_sender_cancelled_after_its_slot_was_granted_passes_the_slot_on(
    anyio_backend_name: str,
) -> None:
    # pop() grants the freed slot to the oldest waiter, which is then cancelled before it
    # wakes up to fill it. The slot must go to the next waiter: nothing lost, nothing leaked.
    # anyio's asyncio cancel scopes never interrupt a task whose wait already completed, so on
    # asyncio the cancellation comes from Task.cancel(), as a plain asyncio caller would do.
    box, _ = new_box(1)
    box.put_nowait("x")
    codes: dict[str, int] = {}
    with anyio.fail_after(WAIT):
        if anyio_backend_name == "asyncio":
            first = asyncio.ensure_future(box.put("first"))
            await wait_until(lambda: waiting_senders(box) == 1)
            second = asyncio.ensure_future(box.put("second"))
            await wait_until(lambda: waiting_senders(box) == 2)
            assert box.pop() == "x"  # grants the slot to "first"
            assert slots_in_use(box) == box.capacity  # the slot is reserved, not filled
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            codes["second"] = await second
        else:
            scope = anyio.CancelScope()

            async def send_first() -> None:
                with scope:
                    codes["first"] = await box.put("first")

            async def send_second() -> None:
                codes["second"] = await box.put("second")

            async with anyio.create_task_group() as tg:
                tg.start_soon(send_first)
                await wait_until(lambda: waiting_senders(box) == 1)
                tg.start_soon(send_second)
                await wait_until(lambda: waiting_senders(box) == 2)
                assert box.pop() == "x"  # grants the slot to "first"
                assert slots_in_use(box) == box.capacity  # the slot is reserved, not filled
                scope.cancel()
            assert scope.cancelled_caught
    assert codes == {"second": OK}
    assert box.pop() == "second"
    assert box.pop() is EMPTY
    assert slots_in_use(box) == 0
    assert box.put_nowait("fresh") == OK


@pytest.mark.anyio
async def test_put_timeout_raises_expired_and_enqueues_nothing() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    with anyio.fail_after(WAIT), pytest.raises(Expired):
        await box.put("late", timeout=0.01)
    assert waiting_senders(box) == 0
    assert box.pop() == "x"
    assert box.pop() is EMPTY
    assert slots_in_use(box) == 0
    assert box.put_nowait("fresh") == OK


@pytest.mark.anyio
async def test_put_timeout_that_does_not_expire_returns_ok() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    codes: list[int] = []

    async def send() -> None:
        codes.append(await box.put("y", timeout=WAIT))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await wait_until(lambda: waiting_senders(box) == 1)
            assert box.pop() == "x"
    assert codes == [OK]
    assert box.pop() == "y"


@pytest.mark.anyio
async def test_close_releases_waiting_senders_with_closed() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    codes: dict[int, int] = {}

    async def send(index: int) -> None:
        codes[index] = await box.put(index)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for index in range(3):
                tg.start_soon(send, index)
                await wait_for_senders(box, index + 1)
            assert box.close()
    assert codes == dict.fromkeys(range(3), CLOSED)
    assert waiting_senders(box) == 0
    assert box.pop() == "x"
    assert box.pop() is DRAINED


@pytest.mark.anyio
async def test_sender_granted_a_slot_before_close_gets_closed_and_enqueues_nothing() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    codes: list[int] = []

    async def send() -> None:
        codes.append(await box.put("granted"))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await wait_until(lambda: waiting_senders(box) == 1)
            assert box.pop() == "x"  # the slot goes to the sender, which has not woken yet
            box.close()
    assert codes == [CLOSED]
    assert slots_in_use(box) == 0
    assert box.pop() is DRAINED


@pytest.mark.anyio
async def test_put_blocking_inside_an_event_loop_is_refused_and_leaves_no_trace() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    with pytest.raises(RuntimeError, match="stall the event loop"):
        box.put_blocking("y")
    assert waiting_senders(box) == 0
    assert len(box) == 1
    assert box.pop() == "x"
    assert box.put_nowait("fresh") == OK


# -- put_blocking from plain threads ----------------------------------------------------------


class SenderThread(threading.Thread):
    """A plain thread that calls `put_blocking` once and keeps the outcome."""

    def __init__(self, box: Mailbox[Any], item: object, timeout: float | None = WAIT) -> None:
        super().__init__(name=f"test-sender-{item}", daemon=True)
        self.box = box
        self.item = item
        self.put_timeout = timeout
        self.code: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.code = self.box.put_blocking(self.item, self.put_timeout)
        except BaseException as error:
            self.error = error

    def finish(self) -> None:
        self.join(WAIT)
        assert not self.is_alive(), f"{self.name} is still blocked"


def test_put_blocking_with_room_returns_ok() -> None:
    box, wake = new_box(2)
    sender = SenderThread(box, "a")
    sender.start()
    sender.finish()
    assert (sender.code, sender.error) == (OK, None)
    assert wake.calls == 1
    assert box.pop() == "a"


def test_put_blocking_waits_for_room_then_enqueues() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    sender = SenderThread(box, "y")
    sender.start()
    wait_until_blocking(lambda: waiting_senders(box) == 1)
    assert sender.code is None
    assert box.pop() == "x"
    sender.finish()
    assert (sender.code, sender.error) == (OK, None)
    assert box.pop() == "y"


def test_put_blocking_threads_are_admitted_in_fifo_order() -> None:
    box, _ = new_box(1)
    box.put_nowait("first")
    senders = [SenderThread(box, index) for index in range(4)]
    for index, sender in enumerate(senders):
        sender.start()
        wait_for_senders_blocking(box, index + 1)
    popped = [box.pop()]
    for _ in senders:
        wait_until_blocking(lambda: len(box) == 1)
        popped.append(box.pop())
    for sender in senders:
        sender.finish()
        assert (sender.code, sender.error) == (OK, None)
    assert popped == ["first", 0, 1, 2, 3]


def test_mailboxes_sharing_a_lock_stripe_neither_block_nor_lose_each_other() -> None:
    # Locks are striped: mailboxes 256 apart share one. A sender waiting for room in one
    # must not hold the stripe (it waits outside the lock), and producers on threads
    # filling both must lose nothing.
    boxes = [new_box(1)[0] for _ in range(257)]
    first, twin = boxes[0], next(b for b in boxes[1:] if b._lock is boxes[0]._lock)  # pyright: ignore[reportPrivateUsage]
    first.put_nowait("full")
    waiting = SenderThread(first, "waits")
    waiting.start()
    wait_for_senders_blocking(first, 1)
    assert twin.put_nowait("through") == OK  # the stripe is free while `first` is full
    assert twin.pop() == "through"
    assert first.pop() == "full"
    waiting.finish()
    assert (waiting.code, waiting.error) == (OK, None)
    assert first.pop() == "waits"

    big_first, big_twin = Mailbox[int](10_000, lambda: None), None
    for _ in range(300):  # the next mailbox made on big_first's stripe
        candidate = Mailbox[int](10_000, lambda: None)
        if candidate._lock is big_first._lock:  # pyright: ignore[reportPrivateUsage]
            big_twin = candidate
            break
    assert big_twin is not None

    def produce(box: Mailbox[int], base: int) -> None:
        for i in range(2_000):
            assert box.put_nowait(base + i) == OK

    threads = [
        threading.Thread(target=produce, args=(box, k * 10_000))
        for k, box in enumerate([big_first, big_twin, big_first, big_twin])
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(big_first.finish()[0]) == [*range(2_000), *range(20_000, 22_000)]
    assert sorted(big_twin.finish()[0]) == [*range(10_000, 12_000), *range(30_000, 32_000)]


def test_put_blocking_timeout_raises_expired_and_enqueues_nothing() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    sender = SenderThread(box, "late", timeout=0.01)
    sender.start()
    sender.finish()
    assert isinstance(sender.error, Expired)
    assert sender.code is None
    assert waiting_senders(box) == 0
    assert box.pop() == "x"
    assert box.pop() is EMPTY
    assert box.put_nowait("fresh") == OK


def test_put_blocking_timeout_leaves_the_line_without_disturbing_it() -> None:
    # The second waiter gives up; the first keeps its place and gets the next slot.
    box, _ = new_box(1)
    box.put_nowait("x")
    patient = SenderThread(box, "patient")
    patient.start()
    wait_until_blocking(lambda: waiting_senders(box) == 1)
    hasty = SenderThread(box, "hasty", timeout=0.01)
    hasty.start()
    hasty.finish()
    assert isinstance(hasty.error, Expired)
    assert box.pop() == "x"
    patient.finish()
    assert patient.code == OK
    assert drain(box) == ["patient"]
    assert slots_in_use(box) == 0


def test_close_releases_blocked_threads_with_closed() -> None:
    box, _ = new_box(1)
    box.put_nowait("x")
    senders = [SenderThread(box, index) for index in range(3)]
    for index, sender in enumerate(senders):
        sender.start()
        wait_for_senders_blocking(box, index + 1)
    box.close()
    for sender in senders:
        sender.finish()
        assert (sender.code, sender.error) == (CLOSED, None)
    assert box.pop() == "x"
    assert box.pop() is DRAINED


class PauseBeforeWaiting:
    """Stands in for `thread_oneshot` to hold a blocking sender inside `_enqueue_sender`.

    The sender has found the mailbox full (under the lock) and is about to join the waiting
    line. The consumer's pop takes no lock, so it can run in exactly this window, as it can
    after a thread switch; here the window is held open until the test has popped.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.resume = threading.Event()
        self._real = thread_oneshot

    def __call__(self) -> Any:
        self.entered.set()
        assert self.resume.wait(WAIT)
        return self._real()


def test_a_sender_that_joins_the_line_during_a_pop_gets_the_room_it_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sender found the mailbox full and is about to join the line; the consumer's
    # lock-free pop runs in that window and sees nobody waiting. The sender tests the room
    # again once in line, so it is served now, not at the consumer's next pop: a consumer
    # whose handler waits for this very sender (two actors sending to each other through
    # full mailboxes) would never make that pop (tests/test_stress.py C2 hung so, 1 run
    # in 12 under load).
    pause = PauseBeforeWaiting()
    monkeypatch.setattr("actors._mailbox.thread_oneshot", pause)
    box, wake = new_box(1, scheduled=True)
    box.put_nowait("x")
    sender = SenderThread(box, "late")
    sender.start()
    assert pause.entered.wait(WAIT)
    assert box.pop() == "x"  # lock-free: finds no waiting sender to hand the slot to
    pause.resume.set()
    sender.finish()  # no further pop: the room this one freed is the sender's
    assert (sender.code, sender.error) == (OK, None)
    assert wake.calls == 0  # the consumer token was held throughout: nobody to wake
    assert box.pop() == "late"


def strand_above_the_low_water(box: Mailbox[Any]) -> SenderThread:
    """Fill ``box``, line a sender up, pop one: room is free, the sender still waits (the
    lock-free pops let waiting senders in only once the queue is down to half)."""
    for index in range(box.capacity):
        box.put_nowait(f"x{index}")
    sender = SenderThread(box, "stranded")
    sender.start()
    wait_until_blocking(lambda: waiting_senders(box) == 1)
    assert box.pop() == "x0"
    assert waiting_senders(box) == 1
    return sender


def test_a_consumer_about_to_wait_lets_in_the_senders_its_pops_held_back() -> None:
    box, _ = new_box(4, scheduled=True)
    stranded = strand_above_the_low_water(box)
    box.before_consumer_waits()
    stranded.finish()
    assert (stranded.code, stranded.error) == (OK, None)
    assert drain(box) == ["x1", "x2", "x3", "stranded"]


def test_newcomer_behind_a_stranded_sender_waits_instead_of_spinning() -> None:
    # With room free and a sender waiting, put_nowait() says FULL (waiters go first): a
    # newcomer must join the line (handing the free room to the sender ahead of it) rather
    # than loop between put_nowait() and _enqueue_sender() until the consumer pops again,
    # which on the consumer's own event loop would never happen.
    box, _ = new_box(4, scheduled=True)
    stranded = strand_above_the_low_water(box)
    newcomer = SenderThread(box, "newcomer", timeout=0.01)
    newcomer.start()
    try:
        newcomer.join(1.0)
        assert not newcomer.is_alive(), "put_blocking(timeout=0.01) spun for a second"
        assert isinstance(newcomer.error, Expired)
    finally:
        if newcomer.is_alive():  # the bug is back: a pop releases the spinning newcomer
            box.pop()
        stranded.finish()
        newcomer.finish()
    # Joining the line behind it, the newcomer handed the free room to the stranded sender.
    assert stranded.code == OK
    assert drain(box) == ["x1", "x2", "x3", "stranded"]
    assert slots_in_use(box) == 0


# -- the model-based state machine ------------------------------------------------------------


class MailboxMachine(RuleBasedStateMachine):
    """Drives a Mailbox with non-blocking operations against a plain deque model."""

    def __init__(self) -> None:
        super().__init__()
        self.wake = WakeCounter()
        self.box: Mailbox[int] = Mailbox(1, self.wake, scheduled=False)
        self.capacity = 1
        self.queue: deque[int] = deque()
        self.control: deque[int] = deque()
        self.closed = False
        self.finished = False
        self.scheduled = False  # the model of the consumer token
        self.wakes = 0
        self.high_water = 0
        self.serial = itertools.count()

    @initialize(capacity=st.integers(1, 8))
    def create(self, capacity: int) -> None:
        self.box = Mailbox(capacity, self.wake, scheduled=False)
        self.capacity = capacity

    def _take_token(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.wakes += 1

    @rule()
    def put_nowait(self) -> None:
        item = next(self.serial)
        code = self.box.put_nowait(item)
        if self.closed:
            expected = CLOSED
        elif len(self.queue) >= self.capacity:
            expected = FULL
        else:
            expected = OK
            self.queue.append(item)
            self.high_water = max(self.high_water, len(self.queue))
            self._take_token()
        assert code == expected

    @rule(count=st.integers(0, 9))
    def put_many_nowait(self, count: int) -> None:
        batch = [next(self.serial) for _ in range(count)]
        code = self.box.put_many_nowait(batch)
        if not batch:
            expected = OK  # an empty batch changes nothing, closed or not
        elif self.closed:
            expected = CLOSED
        elif len(self.queue) + count > self.capacity:
            expected = FULL  # all or nothing: none of it
        else:
            expected = OK
            self.queue.extend(batch)
            self.high_water = max(self.high_water, len(self.queue))
            self._take_token()  # one wake-up for the whole batch
        assert code == expected

    @rule()
    def put_control(self) -> None:
        signal = -1 - next(self.serial)
        accepted = self.box.put_control(signal)
        assert accepted is not self.finished
        if accepted:
            self.control.append(signal)
            self._take_token()

    @rule()
    def pop(self) -> None:
        item = self.box.pop()
        if self.control:
            assert item == self.control.popleft()
        elif self.queue:
            assert item == self.queue.popleft()
        elif self.closed:
            assert item is DRAINED
        else:
            assert item is EMPTY
            self.scheduled = False

    @rule()
    def close(self) -> None:
        assert self.box.close() is not self.closed
        if not self.closed:
            self.closed = True
            self._take_token()

    @precondition(lambda self: self.closed)  # type: ignore[misc]
    @rule()
    def finish(self) -> None:
        assert list(self.box.finish()[0]) == list(self.queue)
        self.queue.clear()
        self.control.clear()
        self.finished = True

    @invariant()
    def matches_model(self) -> None:
        assert len(self.box) == len(self.queue) <= self.capacity
        assert self.box.statistics() == actors.MailboxStatistics(
            capacity=self.capacity,
            depth=len(self.queue),
            high_water=self.high_water,
            waiting_senders=0,
            closed=self.closed,
        )
        assert self.wake.calls == self.wakes
        assert open_room(self.box) == expected_open_room(self.box)


def open_room(box: Mailbox[Any]) -> int:
    return box._open  # pyright: ignore[reportPrivateUsage]


def expected_open_room(box: Mailbox[Any]) -> int:
    """What `Mailbox._open` must be after any operation: its fast path admits a newcomer only
    when the full test would."""
    made = box._queue is not actors._mailbox._NO_QUEUE  # pyright: ignore[reportPrivateUsage]
    if box.closed or waiting_senders(box) or not made:
        return 0
    return box.capacity - box._reserved  # pyright: ignore[reportPrivateUsage]


def test_the_shared_empty_queue_refuses_every_append_and_stays_empty() -> None:
    # A fresh mailbox's queue is one shared stand-in; a put that skipped `_room` must fail
    # loudly rather than fill it for every mailbox.
    box: Mailbox[int] = Mailbox(4, lambda: None)
    shared = box._queue  # pyright: ignore[reportPrivateUsage]
    assert shared is actors._mailbox._NO_QUEUE  # pyright: ignore[reportPrivateUsage]
    for add in (shared.append, shared.appendleft):
        with pytest.raises(AssertionError, match="shared empty queue"):
            add(1)
    with pytest.raises(AssertionError, match="shared empty queue"):
        shared.extend([1, 2])
    assert len(shared) == 0
    assert not shared
    assert list(shared) == []
    assert box.put_nowait(1) == OK  # the first put makes the mailbox its own queue
    assert box._queue is not shared
    assert len(shared) == 0


TestMailboxMachine = MailboxMachine.TestCase
TestMailboxMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


# -- an async property: cancelled waiting senders lose and duplicate nothing ------------------


class PendingPut:
    """One `put` in flight that another task may cancel, the way its event loop cancels.

    trio (through anyio's cancel scope) interrupts a blocked task even when the wake-up it waits
    for is already on its way, which is the hand-over race this test is after. anyio's asyncio
    scopes skip tasks whose wait has completed, so on asyncio the task is cancelled directly.
    """

    def __init__(self, native_asyncio: bool) -> None:
        self._native = native_asyncio
        self._scope = anyio.CancelScope()
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    async def run(self, box: Mailbox[Any], item: object) -> int | None:
        """The code returned by `put`, or None when the put was cancelled."""
        if not self._native:
            with self._scope:
                return await box.put(item)
            return None
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        try:
            return await box.put(item)
        except asyncio.CancelledError:
            if not self._cancelled:
                raise
            task.uncancel()
            return None

    def cancel(self) -> None:
        if self._native:
            assert self._task is not None
            self._cancelled = True
            self._task.cancel()
        else:
            self._scope.cancel()


BACKENDS = [
    pytest.param("asyncio", {"use_uvloop": False}, id="asyncio"),
    pytest.param("asyncio", {"use_uvloop": True}, id="uvloop"),
    pytest.param("trio", {}, id="trio"),
]


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@settings(max_examples=50, deadline=None)
@given(
    capacity=st.integers(1, 3),
    plan=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    script=st.lists(st.integers(0, 15), min_size=1, max_size=40),
)
def test_cancelled_senders_lose_and_duplicate_nothing(
    backend: str, options: dict[str, Any], capacity: int, plan: list[int], script: list[int]
) -> None:
    """Producers send numbered sequences into a small mailbox; the consumer cancels waiters.

    ``plan[p]`` is how many items producer ``p`` sends. ``script`` drives the consumer: after
    each message it may cancel one of the puts in flight and then yields a few times.
    """
    sent = {(producer, seq) for producer, count in enumerate(plan) for seq in range(count)}
    enqueued: set[tuple[int, int]] = set()  # put returned OK
    cancelled: set[tuple[int, int]] = set()  # put raised: must not be enqueued
    delivered: list[tuple[int, int]] = []
    steps = itertools.cycle(script)
    in_flight: dict[int, PendingPut] = {}
    # Set by wake(); only ever replaced by the consumer right after pop() returned EMPTY.
    wake_event: list[anyio.Event | None] = [None]
    counts = {"wakes": 0, "empties": 0}

    def wake() -> None:
        counts["wakes"] += 1
        event = wake_event[0]
        assert event is not None
        event.set()

    # The consumer is "running" from the start, so every wake-up answers one EMPTY.
    box: Mailbox[tuple[int, int]] = Mailbox(capacity, wake, scheduled=True)

    async def produce(producer: int, count: int) -> None:
        for seq in range(count):
            pending = PendingPut(native_asyncio=backend == "asyncio")
            in_flight[producer] = pending
            code = await pending.run(box, (producer, seq))
            in_flight.pop(producer, None)  # the consumer removes the ones it cancels
            if code is None:
                cancelled.add((producer, seq))
            else:
                assert code == OK
                enqueued.add((producer, seq))
            await anyio.lowlevel.checkpoint()

    async def consume() -> None:
        while True:
            item = box.pop()
            assert slots_in_use(box) <= capacity
            if item is DRAINED:
                return
            if item is EMPTY:
                counts["empties"] += 1
                wake_event[0] = event = anyio.Event()
                await event.wait()
                continue
            delivered.append(item)
            step = next(steps)
            if step % 2 and in_flight:
                victims = sorted(in_flight)
                in_flight.pop(victims[(step // 2) % len(victims)]).cancel()
            for _ in range(step % 3):
                await anyio.lowlevel.checkpoint()

    async def main() -> None:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                async with anyio.create_task_group() as producers:
                    for producer, count in enumerate(plan):
                        producers.start_soon(produce, producer, count)
                box.close()

    anyio.run(main, backend=backend, backend_options=options)

    assert len(delivered) == len(set(delivered)), "a message was delivered twice"
    assert set(delivered) == enqueued, "delivered messages differ from accepted ones"
    assert enqueued | cancelled == sent
    assert not enqueued & cancelled
    for producer in range(len(plan)):
        seqs = [seq for p, seq in delivered if p == producer]
        assert seqs == sorted(seqs), f"producer {producer} delivered out of order: {seqs}"
    assert counts["wakes"] == counts["empties"]
    assert slots_in_use(box) == 0


# -- cross-thread producers -------------------------------------------------------------------


def test_producers_on_threads_and_event_loops_keep_fifo_and_lose_nothing() -> None:
    per_producer = 200
    blocking_threads = 4
    loop_threads: list[tuple[str, dict[str, Any]]] = [
        ("asyncio", {"use_uvloop": False}),
        ("asyncio", {"use_uvloop": True}),
        ("trio", {}),
    ]
    tasks_per_loop = 2
    woken = threading.Semaphore(0)
    box: Mailbox[tuple[str, int]] = Mailbox(4, woken.release, scheduled=False)
    errors: list[BaseException] = []

    def put_from_thread(producer: str) -> None:
        try:
            for seq in range(per_producer):
                assert box.put_blocking((producer, seq), WAIT) == OK
        except BaseException as error:
            errors.append(error)

    async def put_from_loop(name: str) -> None:
        for seq in range(per_producer):
            assert await box.put((name, seq), WAIT) == OK

    def run_loop(index: int, backend: str, options: dict[str, Any]) -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for task in range(tasks_per_loop):
                    tg.start_soon(put_from_loop, f"loop{index}-task{task}")

        try:
            anyio.run(main, backend=backend, backend_options=options)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=put_from_thread, args=(f"thread{i}",), daemon=True)
        for i in range(blocking_threads)
    ] + [
        threading.Thread(target=run_loop, args=(i, backend, options), daemon=True)
        for i, (backend, options) in enumerate(loop_threads)
    ]
    producers = blocking_threads + len(loop_threads) * tasks_per_loop
    total = producers * per_producer
    for thread in threads:
        thread.start()

    received: list[tuple[str, int]] = []
    while len(received) < total:
        # Each wake-up hands the consumer token over; run until the mailbox is found empty.
        assert woken.acquire(timeout=WAIT), f"no wake-up; errors={errors!r}"
        while (item := box.pop()) is not EMPTY:
            assert item is not DRAINED
            received.append(item)
            assert slots_in_use(box) <= box.capacity
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert errors == []

    box.close()
    assert woken.acquire(timeout=WAIT)  # close() wakes the idle consumer to see DRAINED
    assert box.pop() is DRAINED
    assert not woken.acquire(blocking=False), "the consumer was woken more than once"

    assert len(received) == total == len(set(received))
    by_producer: dict[str, list[int]] = {}
    for producer, seq in received:
        by_producer.setdefault(producer, []).append(seq)
    assert len(by_producer) == producers
    for producer, seqs in by_producer.items():
        assert seqs == list(range(per_producer)), f"{producer} out of order"
    assert box.statistics().high_water <= box.capacity


# -- through the public API -------------------------------------------------------------------


class Hold(msgspec.Struct, frozen=True):
    """Keep the handler busy until the test opens the gate."""


class Note(msgspec.Struct, frozen=True):
    value: int


class Log(actors.Request[tuple[int, ...]], frozen=True):
    pass


class Recorder(actors.Actor[Hold | Note | Log]):
    """Records the notes it handles; `Hold` blocks its worker loop until `gate` opens."""

    def __init__(self, entered: threading.Event, gate: threading.Event) -> None:
        self.entered = entered
        self.gate = gate
        self.notes: list[int] = []

    async def receive(self, message: Hold | Note | Log) -> tuple[int, ...] | None:
        match message:
            case Hold():
                self.entered.set()
                assert self.gate.wait(WAIT)
            case Note(value):
                self.notes.append(value)
            case Log():
                return tuple(self.notes)
        return None


@pytest.mark.anyio
async def test_actor_capacity_counts_waiting_messages_and_waiting_senders_get_in() -> None:
    entered, gate = threading.Event(), threading.Event()
    senders = 5
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            ref = await system.spawn(lambda: Recorder(entered, gate), capacity=2)
            try:
                await ref.send(Hold())
                assert await anyio.to_thread.run_sync(entered.wait, WAIT)
                # The message being handled takes no slot: two more fit, the third does not.
                ref.try_send(Note(-2))
                ref.try_send(Note(-1))
                with pytest.raises(actors.MailboxFull) as full:
                    ref.try_send(Note(99))
                assert full.value.message == Note(99)

                async def send(value: int, *, task_status: anyio.abc.TaskStatus[None]) -> None:
                    task_status.started()
                    await ref.send(Note(value))

                async with anyio.create_task_group() as tg:
                    for value in range(senders):
                        await tg.start(send, value)
                    gate.set()
            finally:
                gate.set()
            notes = await ref.ask(Log())
    assert notes[:2] == (-2, -1)
    # The order among the waiters is not asserted here: on trio, senders granted in the same
    # tick wake in random order (see test_senders_granted_together_enqueue_in_the_order...).
    assert sorted(notes[2:]) == list(range(senders))


# -- batches: put_many_nowait and put_many (issue 17) ------------------------------------------


def test_a_batch_into_an_idle_mailbox_wakes_the_consumer_once() -> None:
    box, wake = new_box(8)
    assert box.put_many_nowait([1, 2, 3]) == OK
    assert wake.calls == 1
    assert box.put_many_nowait([4, 5]) == OK  # the token is taken: no second wake-up
    assert wake.calls == 1
    assert drain(box) == [1, 2, 3, 4, 5]
    assert box.statistics().high_water == 5


def test_a_batch_larger_than_the_free_room_enqueues_nothing() -> None:
    box, _ = new_box(4)
    assert box.put_nowait(0) == OK
    assert box.put_many_nowait([1, 2, 3, 4]) == FULL
    assert len(box) == 1
    assert box.put_many_nowait([1, 2, 3]) == OK
    assert drain(box) == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_put_many_larger_than_the_capacity_is_refused() -> None:
    box, _ = new_box(2)
    with pytest.raises(ValueError, match="can never fit in a mailbox of capacity 2"):
        await box.put_many([1, 2, 3])
    assert len(box) == 0


@pytest.mark.anyio
async def test_put_many_waits_for_room_for_the_whole_batch_in_fifo_order() -> None:
    """A batch at the head of the line holds up the single senders behind it: no overtaking,
    and the batch goes in whole, in order."""
    box, _ = new_box(4, scheduled=True)
    for n in range(4):
        assert box.put_nowait(n) == OK
    codes: list[int] = []

    async def put_many() -> None:
        codes.append(await box.put_many(["a", "b", "c"]))

    async def put_one() -> None:
        codes.append(await box.put("d"))

    popped: list[object] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(put_many)
            await wait_for_senders(box, 1)
            tg.start_soon(put_one)
            await wait_for_senders(box, 2)
            popped += [box.pop(), box.pop()]  # room for two (granted at half): not enough
            assert waiting_senders(box) == 2  # the batch waits, and "d" behind it
            assert box.put_nowait("newcomer") == FULL  # room, but it may not overtake them
            assert open_room(box) == expected_open_room(box) == 0
            popped.append(box.pop())  # room for three: the batch is let in, whole
            await wait_until(lambda: len(box) == 4)
            assert waiting_senders(box) == 1
            popped += [box.pop(), box.pop()]  # and then "d"
            await wait_for_senders(box, 0)
    assert codes == [OK, OK]
    assert popped + drain(box) == [0, 1, 2, 3, "a", "b", "c", "d"]


@pytest.mark.anyio
async def test_a_cancelled_put_many_enqueues_nothing_and_passes_its_room_on() -> None:
    box, _ = new_box(3, scheduled=True)
    for n in range(3):
        box.put_nowait(n)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()

            async def cancelled() -> None:
                with scope:
                    await box.put_many(["x", "y"])

            tg.start_soon(cancelled)
            await wait_for_senders(box, 1)
            tg.start_soon(box.put, "z")
            await wait_for_senders(box, 2)
            scope.cancel()
            await wait_for_senders(box, 1)
            assert [box.pop(), box.pop()] == [0, 1]  # room for two: "z", now first, takes one
            await wait_for_senders(box, 0)
            assert open_room(box) == expected_open_room(box)
    assert drain(box) == [2, "z"]


@pytest.mark.anyio
async def test_put_many_timeout_raises_expired_and_enqueues_nothing() -> None:
    box, _ = new_box(2, scheduled=True)
    box.put_nowait(0)
    with anyio.fail_after(WAIT), pytest.raises(Expired):
        await box.put_many([1, 2], timeout=0.01)
    assert waiting_senders(box) == 0
    assert drain(box) == [0]


@pytest.mark.anyio
async def test_close_releases_a_waiting_batch_with_closed() -> None:
    box, _ = new_box(1, scheduled=True)
    box.put_nowait(0)
    codes: list[int] = []

    async def put_many() -> None:
        codes.append(await box.put_many([1]))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(put_many)
            await wait_for_senders(box, 1)
            box.close()
    assert codes == [CLOSED]
    assert drain(box) == [0]


def take_one(box: Mailbox[Any], seen: list[Any]) -> bool:
    """Pop one message into ``seen``; False if there was none (the token is kept: producers
    never need to wake this consumer, which polls)."""
    item = box.pop()
    if item is not EMPTY:
        seen.append(item)
        return True
    box.put_control(None)  # take the token back, as a woken consumer would
    assert box.pop() is None
    return False


@given(
    capacity=st.integers(1, 6),
    batches=st.lists(st.lists(st.integers(), min_size=0, max_size=6), max_size=12),
)
@settings(max_examples=60, deadline=None)
def test_batches_from_one_sender_keep_their_order_and_the_bound(
    capacity: int, batches: list[list[int]]
) -> None:
    """A sender's batches arrive whole and in order, and the bound is never exceeded, with a
    consumer that pops in between (asyncio, one loop)."""
    batches = [batch[:capacity] for batch in batches]
    box, _ = new_box(capacity, scheduled=True)
    seen: list[int] = []
    peak = 0

    async def main() -> None:
        nonlocal peak

        async def send_all() -> None:
            for batch in batches:
                assert await box.put_many(batch) == OK

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_all)
                await consume()

    async def consume() -> None:
        nonlocal peak
        while len(seen) < sum(map(len, batches)):
            peak = max(peak, len(box))
            if not take_one(box, seen):
                await anyio.lowlevel.checkpoint()

    anyio.run(main)
    assert seen == [item for batch in batches for item in batch]
    assert peak <= capacity


def test_batches_from_many_threads_and_loops_keep_per_sender_order_and_the_bound() -> None:
    """Plain threads (blocking on a loop of their own) and asyncio loops send batches at once;
    one consumer thread drains. Each sender's items arrive in order, none lost or doubled."""
    capacity = 8
    box: Mailbox[tuple[int, int]] = Mailbox(capacity, lambda: None, scheduled=True)
    senders, per_sender = 6, 300
    seen: list[tuple[int, int]] = []
    peak = 0

    def sender(index: int) -> None:
        async def run() -> None:
            n = 0
            while n < per_sender:
                size = 1 + (n + index) % 5
                batch = [(index, k) for k in range(n, min(n + size, per_sender))]
                assert await box.put_many(batch) == OK
                n += len(batch)

        asyncio.run(run())

    def consumer() -> None:
        nonlocal peak
        deadline = time.monotonic() + WAIT
        while len(seen) < senders * per_sender:
            assert time.monotonic() < deadline, "consumer starved"
            peak = max(peak, len(box))
            if not take_one(box, seen):
                time.sleep(0)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    threads.append(threading.Thread(target=consumer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
        assert not thread.is_alive()
    assert peak <= capacity
    for index in range(senders):
        assert [k for i, k in seen if i == index] == list(range(per_sender))


# -- the batch helpers behind ActorRef.send_many / try_send_many ------------------------------


class Item(msgspec.Struct, frozen=True):
    n: int


class Items(actors.Request[tuple[int, ...]], frozen=True):
    pass


class Collector(actors.Actor[Any]):
    """Records the Items it handles; `Hold` parks it in its handler."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def receive(self, message: Any) -> Any:
        if isinstance(message, _support.Hold):
            if message.entered is not None:
                message.entered.set()
            await message.release.wait()
        elif isinstance(message, Items):
            return tuple(self.seen)
        else:
            self.seen.append(message.n)
        return None


@pytest.mark.anyio
async def test_send_many_checks_every_message_before_enqueueing_any() -> None:
    async with actors.ActorSystem(workers=1) as system:
        ref = await system.spawn(Collector, capacity=4)
        cell = cell_of(ref)
        with anyio.fail_after(WAIT):
            with pytest.raises(actors.NotSendableError):
                cell.admit_all([Item(1), ["not", "sendable"]])
            assert ref.statistics().mailbox.depth == 0
            batch = cell.admit_all(Item(n) for n in range(3))  # any iterable; a snapshot
            assert batch == (Item(0), Item(1), Item(2))
            cell.try_send_many(batch)
            await cell.send_many(cell.admit_all([Item(3)]))
            assert await ref.ask(Items()) == (0, 1, 2, 3)
            with pytest.raises(ValueError, match="can never fit"):
                await cell.send_many(tuple(Item(n) for n in range(5)))
            await ref.stop()
            with pytest.raises(actors.ActorStopped) as stopped:
                cell.try_send_many(batch)
            assert stopped.value.message == batch
            with pytest.raises(actors.ActorStopped):
                await cell.send_many(batch)


@pytest.mark.anyio
async def test_try_send_many_is_all_or_nothing_and_send_many_waits() -> None:
    async with actors.ActorSystem(workers=1) as system:
        ref = await system.spawn(Collector, capacity=4)
        cell = cell_of(ref)
        with anyio.fail_after(WAIT):
            release = await park(ref)  # the actor holds in a handler: nothing is taken
            cell.try_send_many(cell.admit_all([Item(0), Item(1)]))
            with pytest.raises(actors.MailboxFull) as full:
                cell.try_send_many(cell.admit_all([Item(2), Item(3), Item(4)]))
            assert full.value.message == (Item(2), Item(3), Item(4))
            assert ref.statistics().mailbox.depth == 2  # none of the batch went in
            with pytest.raises(actors.SendTimeout):
                await cell.send_many(cell.admit_all([Item(2), Item(3), Item(4)]), 0.01)
            async with anyio.create_task_group() as tg:
                tg.start_soon(cell.send_many, cell.admit_all([Item(2), Item(3), Item(4)]))
                await wait_for_senders(cell.mailbox, 1)
                release.set()
            assert await ref.ask(Items()) == (0, 1, 2, 3, 4)
