"""Message-side types: `Request[R]`, which carries its reply type, and the ask envelope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

import msgspec

if TYPE_CHECKING:
    from ._oneshot import Oneshot

__all__ = ("Ask", "Request")

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
