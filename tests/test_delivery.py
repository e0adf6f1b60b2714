"""Tests of `actors._delivery.deliver`: the one enqueue with backpressure, deadline and the
self-send check that `ActorRef`, pools and the event bus share.

Most tests drive it on a bare `Mailbox` behind a fake recipient (no actor system): the test is
the consumer, so it decides exactly when room appears. The last ones check that a real actor's
cell is a recipient: a stopped actor refuses, and a handler sending to its own full mailbox gets
FULL at once instead of waiting for itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, Hold, Recorder, Seen, Tick, park, wait_until, waiting_senders

import actors
from actors import Actor, ActorRef, ActorSystem, testing
from actors._delivery import Recipient, deliver
from actors._mailbox import CLOSED, DRAINED, EMPTY, FULL, OK, Mailbox
from actors._oneshot import Expired

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.anyio


class FakeRecipient:
    """A mailbox with no actor behind it; the test pops as the consumer."""

    def __init__(self, capacity: int, *, in_handler: bool = False) -> None:
        self.mailbox: Mailbox[Any] = Mailbox(capacity, lambda: None)
        self.handler = in_handler

    def in_handler(self) -> bool:
        return self.handler


def waiting(recipient: Recipient) -> int:
    return recipient.mailbox.statistics().waiting_senders


def drain(box: Mailbox[Any]) -> list[Any]:
    items: list[Any] = []
    while (item := box.pop()) is not EMPTY and item is not DRAINED:
        items.append(item)
    return items


async def line_up_then(
    recipient: Recipient,
    item: object,
    then: Callable[[], object],
    scope: anyio.CancelScope | None = None,
) -> list[int]:
    """`deliver` ``item`` to a full mailbox in a task of its own; once it waits in line and
    not before, call ``then``; return the code it got (none if it was cancelled)."""
    codes: list[int] = []

    async def send() -> None:
        with scope or anyio.CancelScope():
            codes.append(await deliver(recipient, item, timeout=WAIT))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            await wait_until(lambda: waiting(recipient) == 1)
            assert codes == []  # still waiting for room
            then()
    return codes


async def test_room_enqueues_at_once_without_a_checkpoint() -> None:
    recipient = FakeRecipient(2)
    with anyio.CancelScope() as scope:
        scope.cancel()  # a checkpoint would raise here: there is none without a wait
        assert await deliver(recipient, "a") == OK
    assert drain(recipient.mailbox) == ["a"]


async def test_full_mailbox_waits_in_line_then_enqueues() -> None:
    recipient = FakeRecipient(1)
    box = recipient.mailbox
    assert box.put_nowait("first") == OK
    # Room, by the consumer's pop: the waiting sender is let in.
    assert await line_up_then(recipient, "second", box.pop) == [OK]
    assert drain(box) == ["second"]


async def test_timeout_raises_expired_and_enqueues_nothing() -> None:
    recipient = FakeRecipient(1)
    box = recipient.mailbox
    assert box.put_nowait("first") == OK
    with anyio.fail_after(WAIT), pytest.raises(Expired):
        await deliver(recipient, "late", timeout=0.01)
    assert waiting(recipient) == 0
    assert drain(box) == ["first"]
    assert box.put_nowait("fresh") == OK  # no slot was left reserved for the late sender


async def test_cancelled_while_waiting_enqueues_nothing() -> None:
    recipient = FakeRecipient(1)
    box = recipient.mailbox
    assert box.put_nowait("first") == OK
    scope = anyio.CancelScope()
    assert await line_up_then(recipient, "cancelled", scope.cancel, scope) == []
    assert scope.cancelled_caught
    assert waiting(recipient) == 0
    assert drain(box) == ["first"]
    assert box.put_nowait("fresh") == OK  # the place in line left nothing reserved


async def test_closed_mailbox_refuses_at_once() -> None:
    recipient = FakeRecipient(1)
    recipient.mailbox.close()
    with anyio.fail_after(WAIT):
        assert await deliver(recipient, "refused") == CLOSED


async def test_mailbox_closing_while_waiting_refuses() -> None:
    recipient = FakeRecipient(1)
    box = recipient.mailbox
    assert box.put_nowait("first") == OK
    assert await line_up_then(recipient, "refused", box.close) == [CLOSED]
    assert drain(box) == ["first"]  # the closed mailbox still drains what it accepted


async def test_sender_in_its_own_handler_gets_full_at_once_instead_of_waiting() -> None:
    recipient = FakeRecipient(1, in_handler=True)
    box = recipient.mailbox
    assert box.put_nowait("first") == OK
    with anyio.fail_after(WAIT):
        assert await deliver(recipient, "own", timeout=None) == FULL
    assert waiting(recipient) == 0  # it never lined up
    assert drain(box) == ["first"]


async def test_sender_in_its_own_handler_with_room_enqueues() -> None:
    recipient = FakeRecipient(2, in_handler=True)
    assert await deliver(recipient, "own") == OK  # the check is for a full mailbox only
    assert drain(recipient.mailbox) == ["own"]


# -- a real actor's cell as the recipient ------------------------------------------------------


class SendToSelf(actors.Request[int], frozen=True):
    """Fill the own mailbox with ``fill`` Ticks, then `deliver` one more to the own cell."""

    fill: int


class SelfSender(Actor[SendToSelf | Tick]):
    async def receive(self, message: SendToSelf | Tick) -> int | None:
        match message:
            case SendToSelf(fill):
                cell = self._actors_cell  # pyright: ignore[reportPrivateUsage]
                for n in range(fill):
                    assert cell.mailbox.put_nowait(Tick(n)) == OK
                return await deliver(cell, Tick(-1), timeout=None)
            case Tick():
                return None


async def test_actor_delivering_to_its_own_full_mailbox_gets_full() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(SelfSender, capacity=2)
        with anyio.fail_after(WAIT):
            assert await ref.ask(SendToSelf(fill=2)) == FULL  # at once: it did not line up


async def test_delivery_to_a_stopped_actor_is_refused() -> None:
    async with ActorSystem(workers=1) as system:
        ref: ActorRef[Any] = await system.spawn(Recorder, capacity=1)
        with anyio.fail_after(WAIT):
            await ref.stop()
            cell = ref._cell  # pyright: ignore[reportPrivateUsage]
            assert await deliver(cell, Tick(0)) == CLOSED


async def test_delivery_to_a_busy_actor_waits_then_enqueues() -> None:
    async with ActorSystem(workers=1) as system:
        ref: ActorRef[Any] = await system.spawn(Recorder, capacity=1)
        cell = ref._cell  # pyright: ignore[reportPrivateUsage]
        with anyio.fail_after(WAIT):
            release = await park(ref)
            assert await deliver(cell, Tick(0)) == OK  # fills the one slot
            assert await line_up_then(cell, Tick(1), release.set) == [OK]
            assert await ref.ask(Seen()) == (0, 1)


# -- no room held back from a sender by a consumer that waits ----------------------------------


class Meet(msgspec.Struct, frozen=True):
    peer: ActorRef[Any]


class Pass(msgspec.Struct, frozen=True):
    """To A: tell (or ask) the peer once."""


class Forward(msgspec.Struct, frozen=True):
    """To B: send a `Pass` to the peer (A)."""


class Note(actors.Request[int], frozen=True):
    """To B: counted; asked, answered with the count."""


class Relay(Actor[Meet | Hold | Pass | Forward | Note]):
    def __init__(self, *, asks: bool = False) -> None:
        self.peer: ActorRef[Any] | None = None
        self.asks = asks
        self.notes = 0

    async def receive(self, message: Meet | Hold | Pass | Forward | Note) -> object:
        match message:
            case Meet(peer):
                self.peer = peer
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
            case Pass():
                assert self.peer is not None
                if self.asks:
                    await self.peer.ask(Note(), timeout=WAIT)
                else:
                    await self.peer.send(Note())
            case Forward():
                assert self.peer is not None
                await self.peer.send(Pass())
            case Note():
                self.notes += 1
                return self.notes
        return None


@pytest.mark.parametrize("asks", [False, True], ids=["send", "ask"])
async def test_actors_sending_to_each_other_never_wait_for_room_held_back(asks: bool) -> None:
    # A's mailbox is full and B waits in its line. A pops one message: room for B, but
    # the lock-free pops let waiting senders in only once the queue is down to half. The
    # message makes A wait on B (for room in B's full mailbox, or for B's answer), and B
    # waits on A for that room: A must hand it out before it waits, or neither moves.
    async with ActorSystem(workers=2) as system:
        a = await system.spawn(lambda: Relay(asks=asks), capacity=4, placement=0)
        b = await system.spawn(Relay, capacity=1, placement=1)
        await a.send(Meet(b))
        await b.send(Meet(a))
        release = await park(a)
        for _ in range(4):
            await a.send(Pass())  # A's mailbox: 4 of 4
        await b.send(Forward())  # B's handler waits in A's line
        await wait_until(lambda: waiting_senders(a) == 1)
        if not asks:
            await b.send(Note())  # B's mailbox full: A's first Pass will wait for room
        release.set()
        with anyio.fail_after(WAIT):
            await testing.settle(system)
        notes = await testing.inspect(b, lambda relay: relay.notes, kind=Relay)
        assert notes == (5 if asks else 6)  # every Pass reached B, and the Note sent first
