"""Answers: the replies to the remote asks this node's actors answer, without a task per ask.

An ask that arrives for an exported actor is enqueued with an `Answer` as its reply
oneshot. The actor settles it on its own loop; the settle hops to the cluster loop (one
``call_soon_threadsafe``) and `Answers.answer` encodes the reply there and queues it for
the one sender task, which publishes the queued replies in the order they were settled.

Why not a task per ask awaiting the oneshot (as before): the task's first step ran in the
cluster loop's next iteration, right after the frame was enqueued, so the cluster thread
held the GIL a step longer while the actor's loop, just woken, waited for it; and each
ask paid a task, a wait and a timer on the cluster loop. Here the work between enqueueing
and going idle is returning from the frame's callback; answering is one callback.

Invariants (loop only, except `Answer.settle`, callable from any thread):

* An answer is sent once: `Answer.done` is set by the first of the settle, the expiry and
  the node's teardown; the others find it set and do nothing.
* Its CANCEL key leaves `Inbound.asking` when it is done, so the table holds only asks in
  flight (``tests/cluster/test_cluster_request.py`` checks a thousand abandoned asks).
* A reply carrying exported refs leaves only once they are subscribed (`Inbound.respond`).
* It leaves on the connection that received the ask (a server that keeps nodes to their
  subjects lets a node answer only there): the cluster connection's `Answers` is the
  node's; an ask lane that received an ask on its loop's own subject (``_lanes``) has an
  `Answers` of its own, on its loop, publishing on the lane.
* An ask's answer carries its ``home`` hint (`Reply.home`): where the actor's next asks
  may go (``hint``, set by the node: the lane of the actor's loop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .._errors import AskTimeout, MailboxFull
from .._oneshot import EXPIRED, Oneshot
from ._wire import ERROR, OK, WIRE_VERSION, Reply, WireError, error_info

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from ._asking import Asking
    from ._registry import Export, Registry

__all__ = ("Answer", "Answers", "Sender")

_NIL = msgspec.Raw(b"\xc0")


class Sender(Protocol):
    """Who answers: owns the sender task on its loop, and says when it is closing.

    The node's transport (the cluster loop), or an ask lane (its own loop).
    """

    @property
    def closing(self) -> bool:
        """Whether it is going away: no sender task is started any more."""
        ...

    def own(self, coro: Coroutine[Any, Any, Any]) -> object:
        """Run ``coro`` as a task on its loop, cancelled when it goes away."""
        ...


def _no_hint(export: Export) -> int:
    return 0


class Answer(Oneshot):
    """The reply oneshot of one remote ask: settling it sends the reply to the asker.

    Example:
        ```python
        answer = answers.expect(export, message, reply_to, key)  # on the cluster loop
        await deliver(cell, Ask(message, answer, deadline), timeout)
        answers.expire_after(answer, remaining)
        ```
    """

    __slots__ = (
        "_answers",
        "_loop",
        "_thread",
        "done",
        "export",
        "key",
        "message",
        "reply_to",
        "timer",
    )

    def __init__(
        self, answers: Answers, export: Export, message: object, reply_to: str, key: int
    ) -> None:
        self.abandoned = 0
        self._answers = answers
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.export = export
        self.message = message
        self.reply_to = reply_to
        self.key = key
        self.done = False  # loop only, as ``timer``
        self.timer: asyncio.TimerHandle | None = None

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        if threading.get_ident() == self._thread:
            self._answers.answer(self, value, error)
            return
        with contextlib.suppress(RuntimeError):  # the cluster loop has closed: nobody to tell
            self._loop.call_soon_threadsafe(self._answers.answer, self, value, error)


class Answers:
    """Sends the replies of remote asks as their actors settle them (see the module).

    Handed the `Sender` (the transport or a lane: the loop, the task owner), the node's
    name, the registry (encoding replies), what publishes one reply (`Inbound.respond`, or
    the lane's), and the table of asks a CANCEL can still reach (`Inbound.asking`, or the
    lane's). ``hint``: the `Reply.home` of an export's answer (none until the node sets it).
    """

    __slots__ = (
        "_asking",
        "_node",
        "_queue",
        "_registry",
        "_respond",
        "_sender",
        "_transport",
        "_wake",
        "hint",
    )

    def __init__(
        self,
        transport: Sender,
        node: str,
        registry: Registry,
        respond: Callable[[str, Reply, list[int]], Awaitable[None]],
        asking: Asking,
    ) -> None:
        self._transport = transport
        self._node = node
        self._registry = registry
        self._respond = respond
        self._asking = asking
        self.hint: Callable[[Export], int] = _no_hint
        # Loop only: replies settled, not yet published; the sender, and its wake-up.
        self._queue: collections.deque[tuple[str, Reply, list[int]]] = collections.deque()
        self._sender: object = None  # the sender task, once started
        self._wake: asyncio.Future[None] | None = None

    def expect(self, export: Export, message: object, reply_to: str, key: int) -> Answer:
        """The reply oneshot of an ask about to be enqueued. Loop only."""
        return Answer(self, export, message, reply_to, key)

    def expire_after(self, answer: Answer, timeout: float | None) -> None:
        """The asker waits ``timeout`` more seconds (None: for ever). Loop only."""
        if timeout is not None and not answer.done:
            loop = asyncio.get_running_loop()
            answer.timer = loop.call_later(timeout, self._expire, answer, timeout)

    def _expire(self, answer: Answer, timeout: float) -> None:
        if answer.done:
            return
        answer.abandon(EXPIRED)  # skipped if still queued, as a local ask's
        what = type(answer.message).__qualname__
        path = answer.export.cell.path
        error = AskTimeout(f"actor {path} did not answer {what} within {timeout} s")
        self.answer(answer, None, error)

    def answer(self, answer: Answer, value: object, error: BaseException | None) -> None:
        """Send ``answer``'s reply (``value``, or ``error``) unless sent already. Loop only."""
        if answer.done:
            return
        answer.done = True
        if answer.timer is not None:
            answer.timer.cancel()
        self._asking.release(answer.key)
        export = answer.export
        if error is None:
            exports: list[int] = []
            try:
                body = self._registry.encode(value, exports)
            except WireError as failure:
                error = failure
            else:
                home = self.hint(export)
                reply = Reply(WIRE_VERSION, OK, msgspec.Raw(body), export.free(), None, home)
                self._send(answer.reply_to, reply, exports)
                return
        info = error_info(error, export.path, self._node)
        free = 0 if isinstance(error, MailboxFull) else export.free()
        reply = Reply(WIRE_VERSION, ERROR, _NIL, free, info, self.hint(export))
        self._send(answer.reply_to, reply, [])

    def _send(self, reply_to: str, reply: Reply, exports: list[int]) -> None:
        self._queue.append((reply_to, reply, exports))
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)
        elif self._sender is None and not self._transport.closing:
            self._sender = self._transport.own(self._send_queued())

    async def _send_queued(self) -> None:
        """The one sender: publishes the settled replies, in order, for the node's life."""
        queue = self._queue
        while True:
            while queue:
                reply_to, reply, exports = queue.popleft()
                await self._respond(reply_to, reply, exports)
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
