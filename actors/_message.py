"""Message-side types: `Request[R]`, which carries its reply type, and the envelopes.

Invariant: an envelope (`Ask`, `Traced`) is the runtime's, never the user's. Whatever the
user can see of a queued item (a handler's argument, a dead letter, an error's ``message``,
the type a failure log or the watchdog names) is the message inside (`payload`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

if TYPE_CHECKING:
    from ._oneshot import Oneshot

__all__ = ("Ask", "Request", "Traced", "payload")

R = TypeVar("R")


class Request(msgspec.Struct, Generic[R], frozen=True):
    """Base class of messages that expect a reply of type ``R``.

    ``await ref.ask(message)`` of a ``Request[R]`` is typed ``R`` for pyright and mypy. The
    reply is whatever the actor's ``receive`` returns for it, and must be sendable.

    Example:
        ```python
        class Balance(actors.Request[int], frozen=True):
            account: str

        balance: int = await bank.ask(Balance("ada"))
        ```
    """


class Ask:
    """Internal envelope of an ask: the message, where its reply goes, and its deadline.

    Tells travel as the bare message (no envelope, no allocation); the consumer tells the
    two apart with one ``type(item) is Ask`` test. ``deadline`` is a `time.monotonic`
    instant (this process's clock: it never crosses a process boundary as such; the
    cluster sends the time left instead), or None for an ask that waits forever.
    """

    __slots__ = ("deadline", "message", "reply")

    def __init__(self, message: object, reply: Oneshot, deadline: float | None = None) -> None:
        self.message = message
        self.reply = reply
        self.deadline = deadline


class Traced:
    """Internal envelope of a message sent while the system traces (`actors._tracing`).

    ``context`` is the OpenTelemetry context current where the message was sent, the
    parent of the span its handling makes; ``enqueued`` the ``time.perf_counter()`` of the
    send, for the mailbox wait. A tell is queued as ``Traced(message)``, an ask as
    ``Ask(Traced(message), reply)``. A system that does not trace never makes one.
    ``links``: for a message set aside (stashed, postponed) and handled again, the
    OpenTelemetry links of its next span: the span that set it aside, the one that released
    it; written on the actor's home thread only, which owns the envelope once dequeued.
    """

    __slots__ = ("asked", "context", "enqueued", "links", "message")

    def __init__(self, message: object, context: object, enqueued: float, asked: bool) -> None:
        self.message = message
        self.context = context
        self.enqueued = enqueued
        self.asked = asked
        self.links: list[object] | None = None


def payload(item: object) -> object:
    """The user's message in a queued item or an ask's message: ``item`` unless `Traced`.

    For the paths that show a message to the user (errors, dead letters, logs), never the
    dispatch hot path: a system that does not trace has no `Traced` to unwrap.
    """
    return item.message if type(item) is Traced else item
