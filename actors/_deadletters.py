"""Dead letters: messages that were accepted by a mailbox but never handled.

A send to a stopped actor fails at the call site (`ActorStopped`), so the sender knows. A
message already in a mailbox when its actor ends for good without draining it (a failure
that is not restarted, a kill after the drain timeout) has nobody left to tell: it is
counted here and published to subscribers, never dropped silently. Asks among such
messages are not dead letters: their askers get `ActorStopped`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import msgspec

from ._errors import ActorStopped, MailboxFull
from ._ref import ActorRef

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("DeadLetter", "DeadLetters")


class DeadLetter(msgspec.Struct, frozen=True):
    """A message that was accepted by an actor's mailbox but never handled.

    Attributes:
        recipient: the path of the actor it was meant for.
        message: the message itself.
        reason: why it was not handled ("failed", "killed" or "stopped").

    Example:
        ```python
        class Auditor(actors.Actor[actors.DeadLetter]):
            async def receive(self, letter: actors.DeadLetter) -> None:
                log.warning("undelivered to %s: %r", letter.recipient, letter.message)
        ```
    """

    recipient: str
    message: Any
    reason: str


class DeadLetters:
    """The system's dead-letter stream: a count, and actors subscribed to it.

    Subscribers get each `DeadLetter` with ``try_send``: a full subscriber misses it (counted
    in `dropped`) rather than stall the actor that is ending; a stopped one is unsubscribed.

    Example:
        ```python
        auditor = await system.spawn(Auditor)
        system.dead_letters.subscribe(auditor)
        ...
        print(system.dead_letters.count, "dead letters so far")
        ```
    """

    __slots__ = ("_count", "_dropped", "_lock", "_subscribers")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._dropped = 0
        self._subscribers: tuple[ActorRef[DeadLetter], ...] = ()

    def __repr__(self) -> str:
        return f"<DeadLetters count={self._count} subscribers={len(self._subscribers)}>"

    @property
    def count(self) -> int:
        """Dead letters so far."""
        return self._count

    @property
    def dropped(self) -> int:
        """Deliveries to subscribers that were skipped because the subscriber was full."""
        return self._dropped

    def subscribe(self, ref: ActorRef[DeadLetter]) -> None:
        """Deliver every later dead letter to ``ref``. Idempotent.

        Example:
            ```python
            system.dead_letters.subscribe(auditor)
            ```
        """
        if not isinstance(ref, ActorRef):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"dead_letters.subscribe() needs an ActorRef, got {ref!r}")
        with self._lock:
            if ref not in self._subscribers:
                self._subscribers = (*self._subscribers, ref)

    def unsubscribe(self, ref: ActorRef[DeadLetter]) -> None:
        """Stop delivering to ``ref``. Unknown refs are ignored.

        Example:
            ```python
            system.dead_letters.unsubscribe(auditor)
            ```
        """
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s != ref)

    def publish(self, recipient: str, messages: Iterable[object], reason: str) -> None:
        """Count ``messages`` and hand them to the subscribers. Any thread."""
        letters = [DeadLetter(recipient, message, reason) for message in messages]
        if not letters:
            return
        with self._lock:
            self._count += len(letters)
            # Copy-on-write tuple: the deliveries below run without the lock.
            subscribers = self._subscribers
        for subscriber in subscribers:
            if subscriber.path == recipient:
                continue  # the ending actor itself cannot take its own dead letters
            for letter in letters:
                try:
                    subscriber.try_send(letter)
                except MailboxFull:
                    with self._lock:
                        self._dropped += 1
                except ActorStopped:
                    self.unsubscribe(subscriber)
                    break
