"""Asks: a remote ask's way out, by the caller's loop's lane or by the cluster loop, no task.

An ask to one actor takes one of three ways, chosen by `Outbox.ask`:

- an ask lane (``_lanes``): the caller's own loop's connection, when it is connected and
  the ref is quiet (`Credit.quiet`: nothing sent on the cluster connection may still
  arrive after it); `Asks.on_lane`, which falls back to the full path on "no responders";
- directly (`Asks.direct`): one hop to the cluster loop, which publishes the frame through
  the pump, and one back: the reply subscription settles the caller's oneshot (`Ask`),
  which wakes the caller's loop at once, with no task, no `wait_for` and no thread-safe
  future between them;
- the full path (`Requests.request`) in a task of the cluster loop, for what is not the
  common case: the ref's tells still unanswered, "no responders", a group or durable name.

Invariants:

- An ask never overtakes the tells of its ref: a direct ask whose ref has unanswered tells
  is handed to `Requests.request`, which waits for them.
- An `Ask` is made in its caller's thread; from `Asks._ask_on_loop` on, its ``token`` and
  ``task`` are touched on the cluster loop only; the caller only waits on ``done``.
- A caller that stops waiting (timeout, cancellation) posts `Asks._give_up`: the table
  forgets the ask and its owner gets a cancel notice behind it, through the pump.

Imports: ``_frames``, ``_pump``, ``_requests``; only ``_outbound`` imports this module.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from .._errors import AskTimeout, SystemNotRunning
from .._oneshot import Expired, Oneshot, oneshot
from .._request import ask_deadline
from ._asking import ask_key
from ._frames import reply_type
from ._lanes import NO_RESPONDERS
from ._pump import leaving
from ._remote import target_of, window_of
from ._replies import Waiter
from ._wire import ASK, NodeDown

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Coroutine

    from ._frames import Frames, Outbound
    from ._lanes import AskLane
    from ._membership import Membership
    from ._pump import Pump
    from ._remote import RemoteRef
    from ._replies import Replies
    from ._requests import Requests
    from ._transport import Transport

__all__ = ("Ask", "Asks")


class Asks:
    """The ways of a remote ask out of its caller, and its reply back.

    Example:
        ```python
        asks = Asks(transport, membership, replies, frames, pump, requests)
        out, reply_type, on_timeout, left = asks.parts(ref, Balance(), 5.0)
        value = await asks.direct(Ask(asks.answer, ref, out, reply_type, on_timeout, left))
        ```
    """

    def __init__(
        self,
        transport: Transport,
        membership: Membership,
        replies: Replies,
        frames: Frames,
        pump: Pump,
        requests: Requests,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._membership = membership
        self._replies = replies
        self._frames = frames
        self._pump = pump
        self._requests = requests

    async def on_lane(
        self,
        lane: AskLane,
        ref: RemoteRef[Any],
        out: Outbound,
        reply_type: Any,
        on_timeout: Callable[[], Exception],
        left: float | None,
        *,
        shared: bool = False,
    ) -> Any:
        """An ask over the caller's loop's own connection: no thread hop (see ``_lanes``).

        ``shared``: ``left`` is the ask's own timeout, not a one-off remainder (`AskLane.request`).

        Cancellation: the lane forgets the ask and sends the owner a cancel notice.
        """
        target = target_of(ref)
        if target is not None and self._membership.is_dead(target):
            raise NodeDown(f"node {target[0]} is down", out.message)
        started = time.monotonic()
        try:
            data = await lane.request(out, target, left, ref, shared)
        except Expired:
            raise on_timeout() from None
        if data is None or data == NO_RESPONDERS:
            # Not sent (the lane just dropped), or nobody received it: the full path, which
            # finds out whether the actor is still there and retries within the deadline.
            if left is not None:
                left = max(0.0, left - (time.monotonic() - started))
            request = self._requests.request(ref, out, left, reply_type, on_timeout)
            return await self._requests.held(ref, self._transport.call(request))
        return self._requests.read_reply(ref, data, reply_type, out.message)

    async def direct(self, asking: Ask) -> Any:
        """An ask to one actor without a task: one hop to the cluster loop, one back.

        The caller's oneshot goes with the frame; the reply subscription settles it (the
        reply decoded on the cluster loop, `answer`), which wakes the caller's loop at
        once: no task, no `wait_for` and no thread-safe future between them. What is not
        the common case (the ref's tells still unanswered, "no responders") continues as
        `Requests.request` in a task of the cluster loop, which settles the same oneshot.

        Cancellation: the cluster loop forgets the ask and tells the owner (`_give_up`).
        """
        self._transport.post(self._ask_on_loop, asking)
        left = asking.left
        try:
            return await (asking.done.wait() if left is None else asking.done.wait_once(left))
        except Expired:
            self._post_quietly(self._give_up, asking)
            raise asking.on_timeout() from None
        except BaseException:
            self._post_quietly(self._give_up, asking)
            raise

    def _post_quietly(self, callback: Callable[[Ask], None], asking: Ask) -> None:
        with contextlib.suppress(SystemNotRunning):  # leaving: teardown fails what waits
            self._transport.post(callback, asking)

    def _ask_on_loop(self, asking: Ask) -> None:
        """Publish a direct ask, or hand it to `Requests.request` (loop only)."""
        ref = asking.ref
        if self._pump.queue is None or self._transport.closing:
            asking.done.settle(error=leaving(self._me.node, asking.out.message))
            return
        target = target_of(ref)
        if target is not None and self._membership.is_dead(target):
            asking.done.settle(error=NodeDown(f"node {target[0]} is down", asking.out.message))
            return
        if window_of(ref).unacked:  # it must not overtake them: `Requests.request` waits
            self._ask_slowly(asking)
            return
        asking.token = self._replies.wait(asking, target)
        self._pump.send_out(asking.out, asking.token)

    def answer(self, asking: Ask, outcome: bytes | BaseException) -> None:
        """The reply frame of a direct ask, or why none will come (loop only)."""
        asking.token = ""
        if isinstance(outcome, BaseException):
            asking.done.settle(error=outcome)
        elif outcome == NO_RESPONDERS:  # nobody received it: `Requests.request` finds out why
            self._ask_slowly(asking)
        else:
            try:
                value = self._requests.read_reply(
                    asking.ref, outcome, asking.reply_type, asking.out.message
                )
            except Exception as error:
                asking.done.settle(error=error)
            else:
                asking.done.settle(value)

    def _ask_slowly(self, asking: Ask) -> None:
        left = asking.left
        if left is not None:
            left = max(0.0, left - (time.monotonic() - asking.started))
        request = self._requests.request(
            asking.ref, asking.out, left, asking.reply_type, asking.on_timeout
        )
        asking.task = self._transport.own(_settle_with(asking.done, request))

    def _give_up(self, asking: Ask) -> None:
        """The caller stopped waiting (timeout, cancellation): forget, tell the owner."""
        if asking.task is not None:
            asking.task.cancel()  # `Pump.exchange` sends the cancel notice
        elif asking.token and self._replies.pop(asking.token) is not None:
            asking.token = ""
            envelope = asking.out.envelope
            if envelope is not None and envelope.key:
                self._pump.cancel_remotely(asking.out.subject, envelope.key)

    def parts(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> tuple[Outbound, Any, Callable[[], Exception], float | None]:
        """The ask's frame, reply type, timeout error, and how long it may wait."""
        deadline = ask_deadline(timeout)  # its own timeout, or its handler's deadline
        left = deadline.timeout
        inherited = deadline.inherited_from
        what = type(message).__qualname__

        def on_timeout() -> Exception:
            if inherited is None:
                return AskTimeout(
                    f"remote actor {ref.path} on node {ref.node} did not answer {what} "
                    f"within {timeout} s"
                )
            return AskTimeout(
                f"remote actor {ref.path} on node {ref.node} did not answer {what} before "
                f"the deadline of the ask actor {inherited} is answering"
            )

        if left is not None and left <= 0.0:
            raise on_timeout()  # the inherited deadline has passed: nothing is sent
        out = self._frames.prepare(ref, ASK, message, left, key=ask_key())
        return out, reply_type(type(message)), on_timeout, left


class Ask(Waiter):
    """A direct ask in flight: its frame, what reads its reply, and its caller's oneshot.

    Made in the caller's thread; from `Asks._ask_on_loop` on, touched on the cluster
    loop only (``token``, ``task``); the caller only waits on ``done``.
    """

    __slots__ = (
        "answer",
        "done",
        "left",
        "on_timeout",
        "out",
        "ref",
        "reply_type",
        "started",
        "task",
        "token",
    )

    def __init__(
        self,
        answer: Callable[[Ask, bytes | BaseException], None],
        ref: RemoteRef[Any],
        out: Outbound,
        reply_type: Any,
        on_timeout: Callable[[], Exception],
        left: float | None,
    ) -> None:
        self.answer = answer
        self.ref = ref
        self.out = out
        self.reply_type = reply_type
        self.on_timeout = on_timeout
        self.left = left
        self.started = time.monotonic()
        self.done: Oneshot = oneshot()
        self.token = ""  # while its reply is awaited in the table
        self.task: asyncio.Task[None] | None = None  # when `_request` took it over

    def reply(self, data: bytes) -> None:
        self.answer(self, data)

    def fail(self, error: BaseException) -> None:
        self.answer(self, error)


async def _settle_with(done: Oneshot, request: Coroutine[Any, Any, Any]) -> None:
    """Run ``request`` and hand its outcome to ``done`` (cancellation: left to the caller)."""
    try:
        value = await request
    except Exception as error:
        done.settle(error=error)
    else:
        done.settle(value)
