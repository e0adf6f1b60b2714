"""Outbound: the outbox, the courier of remote refs, composed of one part per concept.

`Outbox` is the `Courier` of every `RemoteRef` and `GroupRef` (and of a `DurableRef`'s
asks). Each of its calls decides which part a message takes, once, and hands it on; the
parts, each handed its collaborators:

- ``_frames`` (`Frames`): a message checked and encoded in its caller's thread;
- ``_pump`` (`Pump`): the one FIFO every outbound frame of the node goes through, and the
  reply inbox;
- ``_requests`` (`Requests`): a request whose caller waits for its reply, "no responders"
  ridden out by asking the owner node, and the holds that keep an ask lane from
  overtaking a frame on the cluster connection;
- ``_tells`` (`Tells`): each ref's stream of pipelined tells, acknowledged sends, and
  try_send's credit;
- ``_asks`` (`Asks`): an ask's way out (an ask lane, direct, or the full request);
- ``_lookup`` (`Lookups`): which node serves a public name.

Imports go one way, down this list: ``_frames`` <- ``_pump`` <- ``_requests`` <-
``_tells``, ``_asks``, ``_lookup`` <- ``_outbound``. No part imports this module, and none
imports a part after it in the list. The remote streams (``_streams``) are handed the
lower parts they share (`Frames`, `Pump`, `Requests`), not the outbox, so no circle runs
through them either (``tests/cluster/test_cluster_outbound.py`` checks all of this).

Ordering: every outbound frame of a node goes through the pump, so frames from one sender
to one actor leave in the order sent; an ask to one actor never overtakes the tells of
its ref (`Requests.request` waits for them, a lane is taken only when the ref is quiet).

Threads: the courier's calls run in any thread (the caller's); they check and encode there
(``_frames``) and admit a tell on the ref's credit (thread-safe). Everything else runs on
the cluster loop, reached with `Transport.post` or `Transport.call`.

Hot paths: composing costs no extra Python call per tell or ask over a single class's own
methods. A part calls another's methods on the part (``self._pump.send_out(...)``): one
more attribute load than ``self._send_out(...)`` was, and a call CPython specializes (a
bound method kept in an attribute would not be; callgrind showed it costing more). A
plain `RemoteRef` skips `by_name` on the courier's calls, which more than pays for those
loads (``docs/benchmarks.md``, "The outbound module split").
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from .._checkpoint import checkpoint
from .._errors import MailboxFull
from .._oneshot import ensure_plain_thread
from .._ref import COOPERATIVE_BUDGET
from ._asks import Ask, Asks
from ._frames import Frames, Outbound
from ._lookup import Lookups
from ._pump import Pump
from ._remote import RemoteRef, by_name, credit_of, full_error
from ._requests import Requests
from ._tells import Tells
from ._tracecontext import asked_remotely
from ._wire import TELL, TRY

if TYPE_CHECKING:
    from .._stream import BlockingReplyStream, ReplyStream, StreamRequest
    from ._inbound import Inbound
    from ._lanes import Lanes
    from ._membership import Membership
    from ._options import Limits
    from ._registry import Registry
    from ._replies import Replies
    from ._streams import RemoteStreams
    from ._transport import Transport

__all__ = ("Outbound", "Outbox")

T = TypeVar("T")


class Outbox:
    """Frames to remote actors and groups, through the one outbox, and their replies.

    Example:
        ```python
        outbox = Outbox(transport, registry, inbound, membership, replies, Limits(), 30.0)
        await outbox.listen(client)  # on the cluster loop: the reply inbox and the pump
        await outbox.send(ref, Deposit(5), None)  # from any loop
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        inbound: Inbound,
        membership: Membership,
        replies: Replies,
        limits: Limits,
        ack_timeout: float,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self.ack_timeout = ack_timeout
        self.frames = frames = Frames(transport.me, registry, limits)
        self.pump = pump = Pump(transport, inbound, membership, replies)
        self.requests = requests = Requests(
            transport, registry, membership, frames, pump, limits, ack_timeout
        )
        self.tells = Tells(
            transport, registry, membership, replies, frames, pump, requests, limits, ack_timeout
        )
        self.asks = asks = Asks(transport, membership, replies, frames, pump, requests)
        self.lookups = Lookups(transport, registry, membership, pump, limits)
        self.streams: RemoteStreams | None = None  # streamed replies, set by the node
        self.lanes: Lanes | None = None  # the ask lanes of the callers' loops, set by the node
        # The parts' calls that the node, the other cluster parts and tests make through the
        # outbox. Not for the hot paths below: CPython specializes a method call on its
        # object (``self.tells.pipeline(...)``), not one through a bound method kept in an
        # attribute, which costs a dict lookup and an indirection per call.
        self.prepare = frames.prepare
        self.prepare_tell = frames.prepare_tell
        self.publish = pump.send_out
        self.listen = pump.listen
        self.request = pump.request
        self.cancel_notice = pump.cancel_notice
        self.owner_says_gone = requests.owner_says_gone
        self.lookup = self.lookups.lookup
        self._answer = asks.answer  # handed to every direct `Ask`, not called here

    # The counters the node reports (`ClusterStatistics`).

    @property
    def pipelined(self) -> int:
        """Tells that returned before their reply."""
        return self.tells.pipelined

    @property
    def resent(self) -> int:
        """Frames of streams sent again."""
        return self.tells.resent

    @property
    def undelivered(self) -> int:
        """Pipelined tells that failed after their send returned."""
        return self.tells.undelivered

    # -- the courier of remote refs (any thread) -----------------------------------------------

    async def send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """`RemoteRef.send` (see there): pipelined within the credit, else acknowledged.

        Cancellation: the frame may already be out and then still be enqueued.
        """
        # `type(ref) is RemoteRef` first: a plain ref (the common case) is bound to no name,
        # and this skips `by_name`'s call and its two isinstance checks for it.
        if type(ref) is not RemoteRef and by_name(ref) is not None:
            # A group's: a request to whoever serves the name.
            out = self.frames.prepare(ref, TELL, message, timeout)
            wait, on_timeout = self.tells.send_wait(ref, message, timeout)
            await self._transport.call(self.requests.request(ref, out, wait, None, on_timeout))
            return
        tell = self.frames.prepare_tell(ref, message, timeout)
        tells = self.tells
        if tells.pipeline(ref, tell):
            # As ActorRef.send's cooperative budget: a producer whose sends keep finding
            # credit never waits, and would hold its event loop.
            if tells.pipelined % COOPERATIVE_BUDGET == 0:
                await checkpoint()
            return
        wait, on_timeout = tells.send_wait(ref, message, timeout)
        started = time.monotonic()
        if timeout is None and await tells.pipeline_at_reply(ref, tell):
            return
        wait -= time.monotonic() - started  # one bound for the whole send
        acked = self._transport.call(tells.send_acked(ref, tell, wait, on_timeout))
        await self.requests.held(ref, acked)

    def blocking_send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """`RemoteRef.blocking_send`, from a plain thread."""
        ensure_plain_thread()
        if type(ref) is not RemoteRef and by_name(ref) is not None:  # as in `send`
            out = self.frames.prepare(ref, TELL, message, timeout)
            wait, on_timeout = self.tells.send_wait(ref, message, timeout)
            self._transport.blocking(self.requests.request(ref, out, wait, None, on_timeout))
            return
        tell = self.frames.prepare_tell(ref, message, timeout)
        tells = self.tells
        if tells.pipeline(ref, tell):
            if tells.pipelined % COOPERATIVE_BUDGET == 0:
                time.sleep(0)  # let the GIL go, as ActorRef.blocking_send does
            return
        wait, on_timeout = tells.send_wait(ref, message, timeout)
        with self.requests.holding(ref):
            self._transport.blocking(tells.send_acked(ref, tell, wait, on_timeout))

    async def ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """`RemoteRef.ask` (see there): request-reply with the ask's timeout.

        Made in a handler answering an ask, it waits at most until that ask's deadline; the
        time left travels in the envelope. Cancellation: a `CANCEL` frame follows the
        request, and the owner abandons it (skipped if still queued there; a handler
        running for it is cancelled if its actor opted in); its reply is dropped.
        """
        with asked_remotely(self._registry.system, ref.path, message):
            out, reply_type, on_timeout, left = self.asks.parts(ref, message, timeout)
            # A group's or a durable actor's: whoever serves it (`type` first: see `send`).
            if type(ref) is not RemoteRef and by_name(ref) is not None:
                request = self.requests.request(ref, out, left, reply_type, on_timeout)
                return await self._transport.call(request)
            lanes = self.lanes
            lane = None if lanes is None or out.exports else lanes.current()
            if lane is not None and credit_of(ref).quiet():
                # Its own timeout (not what is left of an inherited deadline): a duration
                # the loop's other asks share, waited for on one shared timer.
                shared = left == timeout
                return await self.asks.on_lane(
                    lane, ref, out, reply_type, on_timeout, left, shared=shared
                )
            asking = Ask(self._answer, ref, out, reply_type, on_timeout, left)
            return await self.requests.held(ref, self.asks.direct(asking))

    def blocking_ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """`RemoteRef.blocking_ask`, from a plain thread."""
        ensure_plain_thread()
        with asked_remotely(self._registry.system, ref.path, message):
            out, reply_type, on_timeout, left = self.asks.parts(ref, message, timeout)
            request = self.requests.request(ref, out, left, reply_type, on_timeout)
            if by_name(ref) is not None:
                return self._transport.blocking(request)
            with self.requests.holding(ref):
                return self._transport.blocking(request)

    def stream(
        self, ref: RemoteRef[Any], request: StreamRequest[T], window: int, timeout: float | None
    ) -> ReplyStream[T]:
        """`RemoteRef.stream`: the reader of a remote stream (see ``_streams``)."""
        assert self.streams is not None
        return self.streams.reader(ref, request, window, timeout)

    def blocking_stream(
        self, ref: RemoteRef[Any], request: StreamRequest[T], window: int, timeout: float | None
    ) -> BlockingReplyStream[T]:
        """`RemoteRef.blocking_stream`, from a plain thread."""
        assert self.streams is not None
        return self.streams.blocking_reader(ref, request, window, timeout)

    def try_send(self, ref: RemoteRef[Any], message: object) -> None:
        """`RemoteRef.try_send`: decide on the credit view, publish, never wait."""
        out = self.frames.prepare(ref, TRY, message, None)
        if not self._transport.connected:
            raise MailboxFull(
                f"node {self._me.node} is not connected to NATS right now; message to remote "
                f"actor {ref.path} not sent",
                message,
            )
        if not credit_of(ref).take():
            self._transport.post(self.tells.probe_credit, ref)
            raise full_error(ref, message)
        self._transport.post(self.tells.try_on_loop, ref, out)
