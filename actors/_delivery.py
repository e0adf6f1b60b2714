"""Delivery: putting one item into an actor's mailbox, waiting for room while it is full.

`Mailbox` offers the two halves, ``put_nowait`` (never waits: OK, FULL or CLOSED) and ``put``
(waits in line for room). `deliver` is the one place that joins them into "enqueue with
backpressure": `ActorRef.send` and `ActorRef.ask` (after their inlined ``put_nowait``), a
pool's asks and the event bus's ``wait`` subscriptions all go through it, so the rules below
hold for every sender in the same way.

Invariants:

* Room first, line second: a mailbox with room takes the item at once, with no checkpoint.
  Only a full one makes the sender wait, in FIFO order behind the senders already waiting
  (the mailbox's rule: a newcomer never overtakes them).
* A sender never waits on itself. An actor's own handler sending to its own full mailbox would
  wait for room that only that handler can make, by returning: `deliver` answers FULL at once
  instead, and the caller says how that fails (`MailboxFull` for a send, a drop for an event).
  Asks refuse every self-ask earlier (`DeadlockError`): their reply would never come anyway.
* A waiting actor holds back no room: an actor's handler about to wait for room first lets
  in the senders waiting for its own mailbox (`Mailbox.before_consumer_waits`), or two
  actors sending to each other could both wait, one of them for room there is.
* All or nothing: OK means the item is in the mailbox. Every other outcome (FULL, CLOSED,
  `Expired`, a cancellation) means it is not, so the caller can hand the message back on its
  error or route it elsewhere.
* Codes, not errors: the outcome is the mailbox's own code, and each caller maps it to the
  errors of its API (`SendTimeout` for a send, `AskTimeout` for an ask, a count for an
  event), as each words its failures differently. The mapping is the caller's; the waiting,
  the deadline and the deadlock check are only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ._mailbox import FULL
from ._request import running_cell

if TYPE_CHECKING:
    from ._mailbox import Mailbox

__all__ = ("Recipient", "deliver")


class Recipient(Protocol):
    """What `deliver` needs of the actor it delivers to: a `Cell`, or a fake in a test."""

    @property
    def mailbox(self) -> Mailbox[Any]:
        """The actor's mailbox."""
        ...

    def in_handler(self) -> bool:
        """True when called from the actor's own run task (its handler or hooks)."""
        ...


async def deliver(recipient: Recipient, item: object, timeout: float | None = None) -> int:
    """Put ``item`` into ``recipient``'s mailbox, waiting in line for room while it is full.

    A caller with a lock-free fast path of its own (`ActorRef.send`) may try ``put_nowait``
    first and call this only when that did not return OK: the one extra try here costs a
    lock round trip on a path that is about to wait or fail anyway (`Mailbox.put` retries
    the same way).

    Args:
        recipient: the actor (its cell).
        item: what to enqueue: a message, or an envelope around one (``Ask``).
        timeout: seconds to wait for room; None waits as long as it takes. The caller has
            checked it (`check_timeout`).

    Returns:
        ``OK``: enqueued. ``CLOSED``: refused, at once or while waiting (the actor has stopped
        or is stopping). ``FULL``: the mailbox is full and the caller is the recipient's own
        run task, which must not wait for itself. Only OK enqueued anything.

    Raises:
        Expired: still no room after ``timeout`` seconds; nothing was enqueued.

    Cancellation: only a full mailbox makes this wait; if cancelled then, nothing is
    enqueued and the place in line is given up (a slot already granted passes on to the
    next waiting sender). Without a wait it is not a checkpoint.
    """
    box = recipient.mailbox
    code = box.put_nowait(item)
    if code != FULL:
        return code
    # Invariant: only the recipient's own run task pops its mailbox, so if that is us, no
    # room can come while we wait.
    if recipient.in_handler():
        return FULL
    # An actor about to wait for room: the room its own mailbox holds back goes out first.
    running = running_cell.get()
    sender = running() if running is not None else None
    if sender is not None:
        sender.mailbox.before_consumer_waits()
    return await box.put(item, timeout)
