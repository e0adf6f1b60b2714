"""The table of this node's requests that wait for a reply, by token.

Each outbound frame carries a reply subject ``_INBOX.p.<node>.<incarnation>.<token>``; the
table maps the token to what waits for it: a future (send, probe of a lookup) or a `Waiter`
(an ask, answered straight to its caller's loop) that fails when its target node is declared
down or this node leaves, or a callback (try_send, credit probe) that expires after a while
and is then called with None.

Three parts touch it, and none owns another: the outbox adds and settles entries,
membership fails those of a node declared down and expires old callbacks, the transport's
teardown fails the rest. Loop only.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Replies", "Waiter")

Target = tuple[str, str] | None  # the node incarnation whose end fails the wait (None: any)


class Waiter:
    """What waits for a reply without a task: told the reply frame, or why none will come.

    Loop only, as the table. A waiter never expires: whoever made it gives up on its own
    (and then `Replies.forget` s its token).
    """

    __slots__ = ()

    def reply(self, data: bytes) -> None:
        """The reply frame (`outbound.NO_RESPONDERS`, empty, for "no responders")."""
        raise NotImplementedError

    def fail(self, error: BaseException) -> None:
        """No reply will come: the target node is down, or this node leaves."""
        raise NotImplementedError


class Replies:
    """Pending replies by token: futures, or callbacks with an expiry time.

    Example:
        ```python
        replies = Replies()
        token, future = replies.expect(("b", "1a2b"))
        replies.settle(token, b"...")  # from the reply subscription
        ```
    """

    __slots__ = ("_entries", "_tokens")

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Target, float]] = {}
        self._tokens = itertools.count(1)

    def __len__(self) -> int:
        return len(self._entries)

    def expect(self, target: Target) -> tuple[str, asyncio.Future[bytes]]:
        """A new token and the future its reply settles."""
        token = str(next(self._tokens))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._entries[token] = (future, target, 0.0)
        return token, future

    def wait(self, waiter: Waiter, target: Target) -> str:
        """A new token whose reply goes to ``waiter``."""
        token = str(next(self._tokens))
        self._entries[token] = (waiter, target, 0.0)
        return token

    def callback(
        self, on_reply: Callable[[bytes | None], None], target: Target, expires: float
    ) -> str:
        """A new token whose reply (or None: none came by ``expires``) goes to ``on_reply``."""
        token = str(next(self._tokens))
        self._entries[token] = (on_reply, target, expires)
        return token

    def forget(self, token: str) -> None:
        self._entries.pop(token, None)

    def pop(self, token: str) -> Any:
        """What waits for ``token`` (a future or a callback), or None; it waits no more."""
        entry = self._entries.pop(token, None)
        return None if entry is None else entry[0]

    def fail(self, token: str, error: BaseException) -> None:
        """The frame of ``token`` could not leave: fail its future, or call back with None."""
        waiter = self.pop(token)
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                waiter.set_exception(error)
        elif isinstance(waiter, Waiter):
            waiter.fail(error)
        elif waiter is not None:
            waiter(None)

    def fail_target(self, target: tuple[str, str], error: Callable[[], BaseException]) -> None:
        """Node incarnation ``target`` is gone: fail the futures waiting on it, and call its
        callbacks with None (no reply will come) now rather than at their expiry.

        ``error`` makes one exception per waiter (an exception raised in two tasks would
        collect both tracebacks).
        """
        for token, (waiter, key, _) in list(self._entries.items()):
            if key != target:
                continue
            del self._entries[token]
            if isinstance(waiter, Waiter):
                waiter.fail(error())
            elif not isinstance(waiter, asyncio.Future):
                waiter(None)
            elif not waiter.done():
                waiter.set_exception(error())

    def expire(self, now: float) -> None:
        """Call back, with None, the callbacks whose time has passed."""
        for token, (waiter, _, expires) in list(self._entries.items()):
            if not isinstance(waiter, asyncio.Future | Waiter) and now > expires:
                del self._entries[token]
                waiter(None)

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """This node leaves: fail every future and waiter (callbacks are dropped)."""
        for waiter, _, _ in self._entries.values():
            if isinstance(waiter, Waiter):
                waiter.fail(error())
            elif isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.set_exception(error())
        self._entries.clear()
