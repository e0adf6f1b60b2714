"""The pump: the one FIFO every outbound frame of a node goes through, and its reply inbox.

Ordering: frames from one sender to one actor leave in the order they entered the pump
(`Pump.send_out`), so whatever decides an order (a ref's stream of tells, an ask behind
the tells of its ref, a cancel notice behind its ask) only has to hand frames in that
order. Each frame carries a reply subject ``_INBOX.p.<node>.<incarnation>.<token>``; the
node's `Replies` maps the token to what waits for it, and `Pump.on_reply` settles that
when the reply frame comes (a "no responders" status becomes `NO_RESPONDERS`, or
`NoResponders` on a future).

Invariants:

- Loop only (the cluster loop of the node), except `cancel_notice`, which only encodes.
- A frame is published by `send_out` only when the pump is idle (nothing queued, no frame
  in its hands); otherwise it goes behind the queued ones. A publish that had to wait
  goes into the queue half done, first in line, and the pump finishes it before anything
  behind it. So the FIFO holds whatever path a frame takes.
- A frame that exports refs goes through the pump's task, which subscribes the exports
  before the frame leaves.
- A frame that cannot be published fails its reply's waiter from the next iteration, never
  in the middle of the call that handed it in.

Imports: ``_frames`` (the `Outbound`), the transport, the inbound (exports) and the reply
table; ``_requests``, ``_tells``, ``_asks``, ``_lookup`` and ``_outbound`` import this
module, never the reverse.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from .._errors import ActorStopped, MailboxFull
from ._asking import notice_subject
from ._frames import Outbound
from ._inbound import NIL
from ._lanes import NO_RESPONDERS
from ._replies import Waiter
from ._transport import subscribe
from ._wire import CANCEL, WIRE_VERSION, Envelope, NodeDown

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from ._inbound import Inbound
    from ._membership import Membership
    from ._replies import Replies
    from ._transport import Transport

__all__ = ("NO_REPLY", "NoResponders", "Pump", "leaving")

NO_REPLY: Final = "-"  # the reply token of a frame nobody answers (a cancel notice)

# A publish started by `Pump.send_out` that waited: the coroutine, and what it waits for.
_Started = tuple["Coroutine[Any, Any, None]", object]


class NoResponders(Exception):
    """Internal: nobody subscribes to the subject (NATS status 503)."""


class Pump:
    """The node's outbound FIFO and reply inbox. Loop only.

    Example:
        ```python
        pump = Pump(transport, inbound, membership, replies)
        await pump.listen(client)  # on the cluster loop: the reply inbox and the pump's task
        data = await pump.exchange(out, ("b", "1a2b"), 5.0)  # out, and its reply frame
        ```
    """

    def __init__(
        self, transport: Transport, inbound: Inbound, membership: Membership, replies: Replies
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._inbound = inbound
        self._membership = membership
        self._replies = replies
        # The frames waiting for the pump, each maybe with its publish started (`send_out`).
        # None until `listen`.
        self.queue: asyncio.Queue[tuple[Outbound, str, _Started | None]] | None = None
        self._pumping = False  # the pump has a frame in its hands

    @property
    def open(self) -> bool:
        """Frames may go out: the pump is listening and the node is not leaving."""
        return self.queue is not None and not self._transport.closing

    async def listen(self, client: NatsClient) -> None:
        """Subscribe to this node's reply inbox and start the pump."""
        self.queue = asyncio.Queue()
        await subscribe(client, f"{self._me.inbox}.*", cb=self.on_reply)
        self._transport.own(self._pump())

    def send_out(self, out: Outbound, token: str) -> None:
        """Into the one FIFO: published now when the pump is idle, else queued behind it.

        An idle pump (nothing queued, no frame in its hands) would take the frame only at
        the loop's next iteration; publishing here saves that iteration (an ask's frame,
        the first frame of a burst). nats-py has no synchronous publish, but its
        ``publish`` only appends to the client's buffer and wakes its flusher unless that
        buffer is full: so it is driven here, without a task. If it waits after all, it
        goes into the queue half done, first in line, and the pump finishes it before
        anything queued behind it. A frame that exports refs goes through the pump (their
        subscriptions come first). A failure is reported from the next iteration, as the
        pump would, so that no caller is called back in the middle of its own call.
        """
        queue, client = self.queue, self._transport.client
        assert queue is not None
        if self._pumping or out.exports or client is None or not queue.empty():
            queue.put_nowait((out, token, None))
            return
        reply = "" if token is NO_REPLY else f"{self._me.inbox}.{token}"
        publishing = client.publish(out.subject, out.data, reply=reply)
        try:
            waiting = publishing.send(None)
        except StopIteration:
            return
        except Exception as error:
            asyncio.get_running_loop().call_soon(self._not_published, out, token, error)
            return
        queue.put_nowait((out, token, (publishing, waiting)))

    async def _pump(self) -> None:
        """The one FIFO every outbound frame of this node goes through (see `send_out`)."""
        queue = self.queue
        assert queue is not None
        while True:
            out, token, started = await queue.get()
            self._pumping = True
            try:
                if started is None:
                    await self._publish(out, token)
                else:
                    await self._finish(out, token, *started)
            finally:
                self._pumping = False

    async def _publish(self, out: Outbound, token: str) -> None:
        client = self._transport.client
        try:
            if client is None:
                raise ActorStopped(f"node {self._me.node} is leaving the cluster")
            for id in out.exports:
                await self._inbound.ensure_subscribed(id)
            reply = "" if token is NO_REPLY else f"{self._me.inbox}.{token}"
            await client.publish(out.subject, out.data, reply=reply)
        except Exception as error:
            self._not_published(out, token, error)

    async def _finish(
        self, out: Outbound, token: str, publishing: Coroutine[Any, Any, None], waiting: object
    ) -> None:
        """Resume a publish `send_out` started, each time what it waits for is done."""
        try:
            while True:
                try:
                    if isinstance(waiting, asyncio.Future):
                        await waiting
                    else:  # a bare yield: one iteration
                        await asyncio.sleep(0)
                except BaseException as error:  # handed in, as its task would (cancellation)
                    waiting = publishing.throw(error)
                else:
                    waiting = publishing.send(None)
        except StopIteration:
            pass
        except Exception as error:
            self._not_published(out, token, error)
        finally:
            publishing.close()

    def _not_published(self, out: Outbound, token: str, error: BaseException) -> None:
        failure = MailboxFull(
            f"node {self._me.node} could not publish ({type(error).__name__}: {error}); "
            "message not sent",
            out.message,
        )
        self._replies.fail(token, failure)

    async def exchange(
        self, out: Outbound, target: tuple[str, str] | None, wait: float | None
    ) -> bytes:
        """Publish ``out`` through the pump and wait for its reply frame.

        Raises:
            TimeoutError: no reply within ``wait`` seconds (an ask's owner is told).
            NoResponders: nobody subscribes to the frame's subject.
            NodeDown: ``target`` is down.
            ActorStopped: this node is leaving.
        """
        if not self.open:
            raise ActorStopped(f"node {self._me.node} is leaving the cluster", out.message)
        if target is not None and self._membership.is_dead(target):
            raise NodeDown(f"node {target[0]} is down", out.message)
        token, future = self._replies.expect(target)
        self.send_out(out, token)
        answered = False
        try:
            # `asyncio.timeout`, not `wait_for`: on CPython 3.11 `wait_for` can swallow a
            # cancellation that arrives as the future completes (the leave cancels these).
            async with asyncio.timeout(wait):
                data = await future
            answered = True
            return data
        except NoResponders:
            answered = True  # nobody received it: nothing to cancel
            raise
        finally:
            self._replies.forget(token)
            envelope = out.envelope
            if not answered and envelope is not None and envelope.key:
                self.cancel_remotely(out.subject, envelope.key)

    async def request(self, subject: str, data: bytes, wait: float) -> bytes:
        """Publish ``data`` on ``subject`` (no actor behind it); its reply frame.

        Raises:
            TimeoutError: no reply within ``wait`` seconds.
            NoResponders: nobody subscribes to ``subject``.
            ActorStopped: this node is leaving.
        """
        return await self.exchange(Outbound(subject, data, [], None), None, wait)

    def cancel_remotely(self, subject: str, key: int) -> None:
        """The asker gave up on the ask with ``key`` (timeout, cancellation, a failure):
        tell its owner, through the pump so that the notice follows the ask.

        A name's notice goes to every member of its queue group (``_asking``). Best effort:
        lost with a connection.
        """
        if not self.open:
            return
        subject, data = self._notice(subject, key)
        self.send_out(Outbound(subject, data, [], None), NO_REPLY)

    def cancel_notice(self, out: Outbound) -> tuple[str, bytes] | None:
        """The subject and frame of the cancel notice of ask ``out`` (None: it has no key).

        For an ask lane, which publishes the notice itself, behind the ask. Any thread.
        """
        envelope = out.envelope
        if envelope is None or not envelope.key:
            return None
        return self._notice(out.subject, envelope.key)

    def _notice(self, subject: str, key: int) -> tuple[str, bytes]:
        notice = Envelope(WIRE_VERSION, CANCEL, "", NIL, None, self._me.node, key=key)
        return notice_subject(self._me.prefix, subject), msgspec.msgpack.encode(notice)

    async def on_reply(self, msg: Msg) -> None:
        """A frame on the reply inbox: settle what waits for its token."""
        token = msg.subject.rsplit(".", 1)[-1]
        waiter = self._replies.pop(token)
        if waiter is None:
            self._transport.dropped += 1  # a late reply (the caller gave up) or a stray one
            return
        headers = msg.headers
        no_responders = headers is not None and not msg.data and headers.get("Status") == "503"
        if isinstance(waiter, Waiter):
            waiter.reply(NO_RESPONDERS if no_responders else msg.data)
        elif isinstance(waiter, asyncio.Future):
            if not waiter.done():
                if no_responders:
                    waiter.set_exception(NoResponders())
                else:
                    cast("asyncio.Future[bytes]", waiter).set_result(msg.data)
        else:
            waiter(NO_RESPONDERS if no_responders else msg.data)


def leaving(node: str, message: object) -> ActorStopped:
    """The error of a frame that cannot leave because node ``node`` is leaving."""
    return ActorStopped(f"node {node} is leaving the cluster", message)
