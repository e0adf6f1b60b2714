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
* Deadlines share one timer per `Answers`: a heap of (deadline, seq, answer) and one
  loop timer armed for its earliest entry. An answer sent before its deadline leaves its
  entry behind (skipped when it surfaces); the heap is rebuilt without them once they are
  over half of it, so it holds at most about twice the asks in flight. Why: a loop timer
  per ask (``call_later``, then ``cancel`` when answered, as before) was the largest
  item of an owner's Python per ask (a pure-Python handle, a heap push with Python
  comparisons, the cancelled handle's later removal); an entry here is one C heap push.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import threading
from typing import TYPE_CHECKING, Any, Final, Protocol

import msgspec

from .._errors import AskTimeout, MailboxFull
from .._oneshot import CANCELLED, EXPIRED, Oneshot
from ._wire import ERROR, OK, WIRE_VERSION, Reply, WireError, error_info

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from ._asking import Asking
    from ._registry import Export, Registry

__all__ = ("Answer", "Answers", "Sender")

_NIL = msgspec.Raw(b"\xc0")
_COMPACT_MIN: Final = 64  # answered entries in the deadline heap before it is rebuilt


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
        "timeout",
    )

    def __init__(
        self,
        answers: Answers,
        loop: asyncio.AbstractEventLoop,
        thread: int,
        export: Export,
        message: object,
        reply_to: str,
        key: int,
    ) -> None:
        self.abandoned = 0
        self._answers = answers
        self._loop = loop
        self._thread = thread
        self.export = export
        self.message = message
        self.reply_to = reply_to
        self.key = key
        self.done = False  # loop only, as ``timeout``
        # The seconds its asker waited when its deadline entered the heap; None: no entry.
        self.timeout: float | None = None

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        if threading.get_ident() == self._thread:
            self._answers.answer(self, value, error)
            return
        with contextlib.suppress(RuntimeError):  # the cluster loop has closed: nobody to tell
            self._loop.call_soon_threadsafe(self._answers.answer, self, value, error)

    def cancel(self) -> None:
        """Its asker's cancel notice came: give it up (skipped if still queued)."""
        self.abandon(CANCELLED)


class Answers:
    """Sends the replies of remote asks as their actors settle them (see the module).

    Handed the `Sender` (the transport or a lane: the loop, the task owner), the node's
    name, the registry (encoding replies), what publishes one reply (`Inbound.respond`, or
    the lane's), and the table of asks a CANCEL can still reach (`Inbound.asking`, or the
    lane's). ``hint``: the `Reply.home` of an export's answer (none until the node sets it).
    """

    __slots__ = (
        "_asking",
        "_deadlines",
        "_home",
        "_node",
        "_order",
        "_queue",
        "_registry",
        "_respond",
        "_sender",
        "_stale",
        "_timer",
        "_timer_at",
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
        # Loop only: its loop and thread (at the first ask), and the deadline heap (see the
        # module): entries, their tie-breaker, answered entries left in it, the one timer.
        self._home: tuple[asyncio.AbstractEventLoop, int] | None = None
        self._deadlines: list[tuple[float, int, Answer]] = []
        self._order = itertools.count()
        self._stale = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def expect(self, export: Export, message: object, reply_to: str, key: int) -> Answer:
        """The reply oneshot of an ask about to be enqueued. Loop only."""
        home = self._home
        if home is None:
            home = self._home = (asyncio.get_running_loop(), threading.get_ident())
        return Answer(self, home[0], home[1], export, message, reply_to, key)

    def expire_after(self, answer: Answer, timeout: float | None) -> None:
        """The asker waits ``timeout`` more seconds (None: for ever). Loop only."""
        if timeout is None or answer.done:
            return
        loop = answer._loop  # pyright: ignore[reportPrivateUsage]  # its owner's
        at = loop.time() + timeout
        answer.timeout = timeout
        heapq.heappush(self._deadlines, (at, next(self._order), answer))
        if self._timer is None or at < self._timer_at:
            self._arm(loop, at)

    def pending(self) -> int:
        """Entries in the deadline heap, answered ones not yet dropped included (tests)."""
        return len(self._deadlines)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._expire_due, loop)
        self._timer_at = at

    def _expire_due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: expire every ask whose deadline has come, re-arm for the next."""
        self._timer = None
        heap = self._deadlines
        now = loop.time()
        while heap:
            at, _, answer = heap[0]
            if not answer.done and at > now:
                self._arm(loop, at)
                return
            heapq.heappop(heap)
            if answer.done:
                self._stale -= 1
                continue
            timeout = answer.timeout
            answer.timeout = None  # out of the heap: not counted as a stale entry
            assert timeout is not None
            self._expire(answer, timeout)

    def _drop_answered(self) -> None:
        """Rebuild the heap without answered entries, once they are over half of it."""
        heap = self._deadlines
        if 2 * self._stale <= len(heap):
            return
        heap[:] = [entry for entry in heap if not entry[2].done]
        heapq.heapify(heap)
        self._stale = 0

    def _expire(self, answer: Answer, timeout: float) -> None:
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
        if answer.timeout is not None:  # its deadline entry stays behind, answered
            self._stale += 1
            if self._stale >= _COMPACT_MIN:
                self._drop_answered()
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
