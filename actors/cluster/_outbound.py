"""Outbound: the outbox, requests and their replies, try_send credit, and lookups.

Ordering: every outbound frame of a node goes through one FIFO (the outbox, emptied by
`_pump`), so frames from one sender to one actor leave in the order sent. Each frame
carries a reply subject ``_INBOX.p.<node>.<incarnation>.<token>``; ``_replies`` maps the
token to what waits for it: a future (send, ask, probe of a lookup) or a callback
(try_send, credit probe; these expire after a while, see `Membership._heartbeat`).
Messages are checked and encoded in the caller's thread (`prepare`; a pipelined tell's
body only, `prepare_tell`: its frame is made on the loop, with its seq); the rest is loop
only.

No responders: a request to an actor's subject that nobody subscribes to right now comes
back as "no responders" (NATS status 503). That is no proof that the actor has stopped: its
node may be reconnecting (after a server restart, whichever node is back first gets 503s
until the others have re-subscribed). So `_request` asks the owner node itself, on its
node subject ``p.actor.<node>.<incarnation>.0`` (no exported actor has id 0), whether the
export still exists (`owner_says_gone`, answered by `_on_node_probe` from the export
table, whatever the state of the subscriptions). Only "gone" finishes the ref; anything
else (the actor is still exported, or the owner does not answer: it is reconnecting, or
dead and soon declared down by the heartbeats) is transient, and the request is published
again, backing off, within its own timeout. A 503 means nobody received the frame, so
publishing it again never duplicates a message.

Ask lanes (``_lanes``): an ask to one actor made on an asyncio or uvloop loop goes over
that loop's own connection when it is connected and the ref is quiet on this one
(`Credit.quiet`: no tell or try_send unanswered, no acknowledged send or ask held by
`Outbox._held`); otherwise, and for everything else, through the outbox as described here.

`Outbox` is the `Courier` of every `RemoteRef` and `GroupRef` (and of a `DurableRef`'s
asks). It is handed the transport (client, loop, counters), the registry (encoding
messages, decoding replies, making the refs a lookup finds), inbound (an exported ref in
a frame is subscribed before the frame leaves), membership (is the target down?) and
the table of pending replies.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import msgspec

from .._actor import accepted_types
from .._checkpoint import checkpoint
from .._errors import (
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    MessageTypeError,
    NotSendableError,
    SendTimeout,
    SystemNotRunning,
)
from .._message import Request
from .._oneshot import Expired, Oneshot, ensure_plain_thread, oneshot
from .._ref import COOPERATIVE_BUDGET, cell_of
from .._request import ask_deadline
from .._sendable import check_sendable, is_always_sendable
from ._asking import ask_key, notice_subject
from ._inbound import NIL, as_wire_error
from ._lanes import NO_RESPONDERS
from ._registry import GROUP_ID, local_only_field
from ._remote import (
    RemoteRef,
    address_of,
    by_name,
    credit_of,
    finish_proxy,
    full_error,
    note_home,
    stopped_error,
    subject_of,
    window_of,
)
from ._replies import Waiter
from ._tracecontext import asked_remotely, traceparent
from ._transport import subscribe
from ._window import TELLS_MAX, Tell
from ._wire import (
    ASK,
    CANCEL,
    DECODING,
    ERROR,
    GAP,
    MALFORMED,
    OK,
    PROBE,
    TELL,
    TELLS,
    TRY,
    WIRE_VERSION,
    Address,
    Envelope,
    ErrorInfo,
    MessageTooLarge,
    NodeDown,
    Reply,
    Told,
    WireError,
    check_frame,
    decoder_for,
    error_from,
    known_name,
    message_name,
    message_type,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Generator

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from .._stream import BlockingReplyStream, ReplyStream, StreamRequest
    from ._inbound import Inbound
    from ._lanes import AskLane, Lanes
    from ._membership import Membership
    from ._options import Limits
    from ._registry import Registry
    from ._replies import Replies
    from ._streams import RemoteStreams
    from ._transport import Transport
    from ._window import Sent, Window

T = TypeVar("T")

_SEND_GRACE: Final = 1.0  # extra wait for the target's own SendTimeout reply
_TRY_REPLY_TTL: Final = 30.0  # forget a try_send's pending reply after this long

# Seconds the first lookup attempt waits for a subscribed owner's answer; each attempt that
# times out doubles it, within the caller's timeout (an owner slow under load is waited for,
# not asked again and again while its first answer is on its way).
_LOOKUP_ANSWER_WAIT = 1.0

_OWNER_ANSWER_WAIT: Final = 1.0  # seconds one probe of an owner node waits for its answer

# Seconds a send out of credit waits for a reply due to free a slot before it goes with a
# round trip of its own: a reply answers up to ACK_EVERY tells and comes within a round
# trip (well under a millisecond on a LAN); one much later means a slow or silent target.
_REPLY_WAIT: Final = 0.05
RETRY_FIRST: Final = 0.05  # after a transient "no responders", the first pause (doubling)
RETRY_MAX: Final = 0.5  # ... up to this

# Bytes the headers of an encoded `Told` take at most: its array's, its name's and its
# trace's (a str header is 1-5 bytes), and its timeout (nil, or a number of up to 9).
_TOLD_HEADERS: Final = 1 + 5 + 9 + 5


# Message types every instance of which is sendable and none of whose fields is typed
# `ActorRef`, by their wire name: `prepare_tell` skips those checks for them (each verdict
# is final: `check_sendable` and `local_only_field` cache it per type too, and a type's
# wire name never changes once used). Written from callers' threads: a race stores the
# same answer twice, and one dict store per key is safe without the GIL.
_PLAIN: dict[type, str] = {}


class _NoResponders(Exception):
    """Internal: nobody subscribes to the subject (NATS status 503)."""


_NO_REPLY: Final = "-"  # the reply token of a frame nobody answers (a cancel notice)

# A publish started by `Outbox._send_out` that waited: the coroutine, and what it waits for.
_Started = tuple["Coroutine[Any, Any, None]", object]


class Outbound:
    """A checked, encoded frame on its way out."""

    __slots__ = ("data", "envelope", "exports", "message", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        exports: list[int],
        message: object,
        envelope: Envelope | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.exports = exports
        self.message = message
        self.envelope = envelope  # kept: an ask's key, a stream request's re-encoding


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
        self._inbound = inbound
        self._membership = membership
        self._replies = replies
        self._limits = limits
        self.ack_timeout = ack_timeout
        # What an `Envelope` adds to the `Told` of its tell, at most: its version, its kind,
        # its sender and four integers of up to 9 bytes (stream, seq, base, key), less the
        # `Told`'s array header, which the envelope's replaces (see `prepare_tell`).
        self._envelope_fields = 2 + len(msgspec.msgpack.encode(self._me.node)) + 4 * 9
        # Loop only.
        # The frames waiting for the pump, each maybe with its publish started (`_send_out`).
        self._outbox: asyncio.Queue[tuple[Outbound, str, _Started | None]] | None = None
        self._pumping = False  # the pump has a frame in its hands (loop only)
        self._replies_decoder: msgspec.msgpack.Decoder[Reply] = decoder_for(Reply, None)
        self._addresses: msgspec.msgpack.Decoder[Address] = decoder_for(Address, None)
        self._seqs: msgspec.msgpack.Decoder[int] = decoder_for(int, None)
        self._refusals: msgspec.msgpack.Decoder[list[tuple[int, ErrorInfo]] | None] = decoder_for(
            list[tuple[int, ErrorInfo]] | None, None
        )
        # The refs with pipelined tells, to send their unanswered frames again after a
        # reconnect (whose replies may have been lost). Loop only.
        self._streaming: weakref.WeakSet[RemoteRef[Any]] = weakref.WeakSet()
        # Pipelined tells posted by callers' threads, not yet on the loop; ``_draining``: a
        # drain is scheduled. Both guarded by the lock.
        self._posted_lock = threading.Lock()
        self._posted: collections.deque[tuple[RemoteRef[Any], Tell]] = collections.deque()
        self._draining = False
        self.pipelined = 0  # tells that returned before their reply (guarded by the lock)
        self.resent = 0  # frames of streams sent again (loop only)
        self.undelivered = 0  # pipelined tells that failed after their send returned
        self.streams: RemoteStreams | None = None  # streamed replies, set by the node
        self.lanes: Lanes | None = None  # the ask lanes of the callers' loops, set by the node
        transport.on_reconnected.append(self._on_reconnected)
        membership.on_peer_reconnected.append(self._on_peer_reconnected)

    def publish(self, out: Outbound, token: str) -> None:
        """Publish ``out`` through the outbox, its replies to ``<inbox>.<token>``. Loop only.

        For a frame whose replies someone else awaits (a stream's, see ``_streams``): a
        frame that cannot leave fails nothing here.
        """
        self._send_out(out, token)

    async def listen(self, client: NatsClient) -> None:
        """Subscribe to this node's reply inbox and start the pump. Loop only."""
        self._outbox = asyncio.Queue()
        await subscribe(client, f"{self._me.inbox}.*", cb=self._on_reply)
        self._transport.own(self._pump())

    # -- the courier of remote refs (any thread) -----------------------------------------------

    async def send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """`RemoteRef.send` (see there): pipelined within the credit, else acknowledged.

        Cancellation: the frame may already be out and then still be enqueued.
        """
        if by_name(ref) is not None:  # a group's: a request to whoever serves the name
            out = self.prepare(ref, TELL, message, timeout)
            wait, on_timeout = self._send_wait(ref, message, timeout)
            await self._transport.call(self._request(ref, out, wait, None, on_timeout))
            return
        tell = self.prepare_tell(ref, message, timeout)
        if self._pipeline(ref, tell):
            # As ActorRef.send's cooperative budget: a producer whose sends keep finding
            # credit never waits, and would hold its event loop.
            if self.pipelined % COOPERATIVE_BUDGET == 0:
                await checkpoint()
            return
        wait, on_timeout = self._send_wait(ref, message, timeout)
        started = time.monotonic()
        if timeout is None and await self._pipeline_at_reply(ref, tell):
            return
        wait -= time.monotonic() - started  # one bound for the whole send
        await self._held(ref, self._transport.call(self._send_acked(ref, tell, wait, on_timeout)))

    async def _pipeline_at_reply(self, ref: RemoteRef[Any], tell: Tell) -> bool:
        """Wait for the replies due on ``ref`` and pipeline ``tell`` once they free a slot.

        Without this, a producer that used up the credit sent its next tell with a round
        trip of its own (`_send_acked`): it waited for every tell before it to be enqueued,
        the stream ran dry meanwhile, and throughput fell to a window per round trip. A
        reply for up to `ACK_EVERY` tells frees room long before that. False when no reply
        is due (the target reported no room: only an acknowledged send learns when it has
        some), when disconnected, or when no reply came within `_REPLY_WAIT` (a slow or
        silent target): then the send is acknowledged, as it always was without credit.
        """
        credit = credit_of(ref)
        deadline = time.monotonic() + _REPLY_WAIT
        while self._transport.connected:
            replied = oneshot()
            if not credit.wait_for_room(replied):
                return False
            try:
                await replied.wait_once(max(0.0, deadline - time.monotonic()))
            except Expired:
                return False
            if not ref.is_alive:  # the stream ended meanwhile: the acknowledged send says so
                return False
            if self._pipeline(ref, tell):
                return True
        return False

    def blocking_send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """`RemoteRef.blocking_send`, from a plain thread."""
        ensure_plain_thread()
        if by_name(ref) is not None:
            out = self.prepare(ref, TELL, message, timeout)
            wait, on_timeout = self._send_wait(ref, message, timeout)
            self._transport.blocking(self._request(ref, out, wait, None, on_timeout))
            return
        tell = self.prepare_tell(ref, message, timeout)
        if self._pipeline(ref, tell):
            if self.pipelined % COOPERATIVE_BUDGET == 0:
                time.sleep(0)  # let the GIL go, as ActorRef.blocking_send does
            return
        wait, on_timeout = self._send_wait(ref, message, timeout)
        with self._holding(ref):
            self._transport.blocking(self._send_acked(ref, tell, wait, on_timeout))

    async def ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """`RemoteRef.ask` (see there): request-reply with the ask's timeout.

        Made in a handler answering an ask, it waits at most until that ask's deadline; the
        time left travels in the envelope. Cancellation: a `CANCEL` frame follows the
        request, and the owner abandons it (skipped if still queued there; a handler
        running for it is cancelled if its actor opted in); its reply is dropped.
        """
        with asked_remotely(self._registry.system, ref.path, message):
            out, reply_type, on_timeout, left = self._ask_parts(ref, message, timeout)
            if by_name(ref) is not None:  # a group's or a durable actor's: whoever serves it
                request = self._request(ref, out, left, reply_type, on_timeout)
                return await self._transport.call(request)
            lanes = self.lanes
            lane = None if lanes is None or out.exports else lanes.current()
            if lane is not None and credit_of(ref).quiet():
                # Its own timeout (not what is left of an inherited deadline): a duration
                # the loop's other asks share, waited for on one shared timer.
                shared = left == timeout
                return await self._ask_on_lane(
                    lane, ref, out, reply_type, on_timeout, left, shared=shared
                )
            asking = _Ask(self._answer, ref, out, reply_type, on_timeout, left)
            return await self._held(ref, self._ask_direct(asking))

    async def _ask_on_lane(
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
        target = _target_of(ref)
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
            request = self._request(ref, out, left, reply_type, on_timeout)
            return await self._held(ref, self._transport.call(request))
        return self._read_reply(ref, data, reply_type, out.message)

    async def _held(self, ref: RemoteRef[Any], call: Awaitable[T]) -> T:
        """``call``: an acknowledged send or an ask of ``ref`` over the cluster connection,
        held in the ref's credit while its frame may be on its way (no ask takes a lane
        past it: `Credit.quiet`).

        Cancellation: the hold ends once the frame can no longer arrive after a later one.
        """
        with self._holding(ref):
            return await call

    @contextlib.contextmanager
    def _holding(self, ref: RemoteRef[Any]) -> Generator[None]:
        """The hold of `_held` around a block (also a plain thread's blocking call)."""
        credit = credit_of(ref)
        credit.hold()
        try:
            yield
        except (AskTimeout, SendTimeout):  # abandoned: the frame may still be on its way
            self._release_when_quiet(ref)
            raise
        except Exception:  # answered (a refusal, a remote error) or never sent
            credit.release()
            raise
        except BaseException:  # cancelled: as abandoned
            self._release_when_quiet(ref)
            raise
        credit.release()

    def _release_when_quiet(self, ref: RemoteRef[Any]) -> None:
        """Release ``ref``'s hold once nothing sent before can arrive after a later frame."""
        try:
            self._transport.post(self._start_quiet_release, ref)
        except SystemNotRunning:  # leaving: no lane takes an ask any more
            credit_of(ref).release()

    def _start_quiet_release(self, ref: RemoteRef[Any]) -> None:
        if self._transport.closing:
            credit_of(ref).release()
            return
        self._transport.own(self._quiet_then_release(ref))

    async def _quiet_then_release(self, ref: RemoteRef[Any]) -> None:
        """Loop only: after the ref's stream drained (an abandoned send stays in it until
        answered), a probe through the outbox comes back behind everything queued before."""
        try:
            await window_of(ref).wait_drained()
            envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self._me.node)
            probe = Outbound(self._subject_of(ref), msgspec.msgpack.encode(envelope), [], None)
            with contextlib.suppress(Exception):  # any answer, or none: the frame is past
                await self._exchange(probe, _target_of(ref), self.ack_timeout)
        finally:
            credit_of(ref).release()

    async def _ask_direct(self, asking: _Ask) -> Any:
        """An ask to one actor without a task: one hop to the cluster loop, one back.

        The caller's oneshot goes with the frame; the reply subscription settles it (the
        reply decoded on the cluster loop, `_answer`), which wakes the caller's loop at
        once: no task, no `wait_for` and no thread-safe future between them. What is not
        the common case (the ref's tells still unanswered, "no responders") continues as
        `_request` in a task of the cluster loop, which settles the same oneshot.

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

    def _post_quietly(self, callback: Callable[[_Ask], None], asking: _Ask) -> None:
        with contextlib.suppress(SystemNotRunning):  # leaving: teardown fails what waits
            self._transport.post(callback, asking)

    def _ask_on_loop(self, asking: _Ask) -> None:
        """Publish a direct ask, or hand it to `_request` (loop only)."""
        outbox, ref = self._outbox, asking.ref
        if outbox is None or self._transport.closing:
            asking.done.settle(error=_leaving(self._me.node, asking.out.message))
            return
        target = _target_of(ref)
        if target is not None and self._membership.is_dead(target):
            asking.done.settle(error=NodeDown(f"node {target[0]} is down", asking.out.message))
            return
        if window_of(ref).unacked:  # it must not overtake them: `_request` waits for them
            self._ask_slowly(asking)
            return
        asking.token = self._replies.wait(asking, target)
        self._send_out(asking.out, asking.token)

    def _answer(self, asking: _Ask, outcome: bytes | BaseException) -> None:
        """The reply frame of a direct ask, or why none will come (loop only)."""
        asking.token = ""
        if isinstance(outcome, BaseException):
            asking.done.settle(error=outcome)
        elif outcome == NO_RESPONDERS:  # nobody received it: `_request` finds out why
            self._ask_slowly(asking)
        else:
            try:
                value = self._read_reply(asking.ref, outcome, asking.reply_type, asking.out.message)
            except Exception as error:
                asking.done.settle(error=error)
            else:
                asking.done.settle(value)

    def _ask_slowly(self, asking: _Ask) -> None:
        left = asking.left
        if left is not None:
            left = max(0.0, left - (time.monotonic() - asking.started))
        request = self._request(asking.ref, asking.out, left, asking.reply_type, asking.on_timeout)
        asking.task = self._transport.own(_settle_with(asking.done, request))

    def _give_up(self, asking: _Ask) -> None:
        """The caller stopped waiting (timeout, cancellation): forget, tell the owner."""
        if asking.task is not None:
            asking.task.cancel()  # `_exchange` sends the cancel notice
        elif asking.token and self._replies.pop(asking.token) is not None:
            asking.token = ""
            envelope = asking.out.envelope
            if envelope is not None and envelope.key:
                self._cancel_remotely(asking.out.subject, envelope.key)

    def blocking_ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """`RemoteRef.blocking_ask`, from a plain thread."""
        ensure_plain_thread()
        with asked_remotely(self._registry.system, ref.path, message):
            out, reply_type, on_timeout, left = self._ask_parts(ref, message, timeout)
            request = self._request(ref, out, left, reply_type, on_timeout)
            if by_name(ref) is not None:
                return self._transport.blocking(request)
            with self._holding(ref):
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
        out = self.prepare(ref, TRY, message, None)
        if not self._transport.connected:
            raise MailboxFull(
                f"node {self._me.node} is not connected to NATS right now; message to remote "
                f"actor {ref.path} not sent",
                message,
            )
        if not credit_of(ref).take():
            self._transport.post(self._probe_credit, ref)
            raise full_error(ref, message)
        self._transport.post(self._try_on_loop, ref, out)

    # -- outbound -----------------------------------------------------------------------------

    def prepare(
        self,
        ref: RemoteRef[Any],
        kind: int,
        message: object,
        timeout: float | None,
        key: int = 0,
    ) -> Outbound:
        """Check and encode in the caller's thread, so that a bad message fails right here."""
        if not ref.is_alive:
            raise stopped_error(ref, message)
        cls = type(message)
        name = _PLAIN.get(cls)
        if name is None:  # not known to need no checks: all of them
            _check_message(ref, message)
            name = message_name(cls)
            if is_always_sendable(cls) and local_only_field(cls) is None:
                _PLAIN[cls] = name
        else:  # sendable, no ref fields: only whether the target accepts it (`prepare_tell`)
            names = address_of(ref).accepts
            if names is not None and name not in names:
                _check_message(ref, message)  # a subclass of one it accepts, or refused
        exports: list[int] = []
        body = self._registry.encode(message, exports)
        envelope = Envelope(
            WIRE_VERSION,
            kind,
            name,
            msgspec.Raw(body),
            timeout,
            self._me.node,
            trace=traceparent(self._registry.system),
            key=key,
        )
        data = msgspec.msgpack.encode(envelope)
        if len(data) > self._limits.max_message_size:
            raise self._too_large(message, len(data))
        return Outbound(subject_of(ref, self._subject_of), data, exports, message, envelope)

    def prepare_tell(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Tell:
        """`prepare` for a tell of ``ref``'s stream: checked and its body encoded, no frame.

        The frame is made on the cluster loop, once the tell has its seq (a `TELL`
        envelope, or an item of a `TELLS` frame): encoding the envelope here as well, and
        formatting the subject, was work done for every tell only to be redone or thrown
        away. The size limit is checked all the same: ``size`` bounds the encoded `Told`
        from above (every header at its widest), and only a tell whose bound, with the
        envelope's own fields, passes the limit is encoded as `prepare` would encode it,
        to decide exactly. So a tell is refused here exactly when `prepare` refuses it.
        """
        if not ref.is_alive:
            raise stopped_error(ref, message)
        exports: list[int] = []
        cls = type(message)
        name = _PLAIN.get(cls)
        if name is None:  # not known to need no checks: all of them, as `prepare`
            _check_message(ref, message)
            body = self._registry.encode(message, exports)
            name = message_name(cls)
            if is_always_sendable(cls) and local_only_field(cls) is None:
                _PLAIN[cls] = name
        else:
            names = address_of(ref).accepts
            if names is not None and name not in names:
                _check_message(ref, message)  # a subclass of one it accepts, or refused
            try:
                body = msgspec.msgpack.encode(message)  # as `Registry.encode` tries first
            except (TypeError, ValueError, OverflowError):
                body = self._registry.encode_refs(message, exports)
        trace = traceparent(self._registry.system)
        size = len(body) + _TOLD_HEADERS
        size += len(name) if name.isascii() else len(name.encode())
        if trace:
            size += len(trace) if trace.isascii() else len(trace.encode())
        told = Told(name, msgspec.Raw(body), timeout, trace)
        if size + self._envelope_fields > self._limits.max_message_size:
            envelope = Envelope(
                WIRE_VERSION, TELL, name, told.body, timeout, self._me.node, trace=trace
            )
            encoded = len(msgspec.msgpack.encode(envelope))
            if encoded > self._limits.max_message_size:
                raise self._too_large(message, encoded)
        return Tell(told, exports, message, size)

    def _too_large(self, message: object, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"{type(message).__qualname__} encodes to {size} bytes, more than the "
            f"limit of {self._limits.max_message_size}; not sent"
        )

    def _subject_of(self, ref: RemoteRef[Any]) -> str:
        # A group's or a durable actor's requests go to the name (whoever serves it now).
        name = by_name(ref)
        if name is not None:
            return self._me.name_subject(name)
        return self._me.actor_subject(address_of(ref))

    def _send_out(self, out: Outbound, token: str) -> None:
        """Into the one FIFO: published now when the pump is idle, else queued behind it.

        An idle pump (nothing queued, no frame in its hands) would take the frame only at
        the loop's next iteration; publishing here saves that iteration (an ask's frame,
        the first frame of a burst). nats-py has no synchronous publish, but its
        ``publish`` only appends to the client's buffer and wakes its flusher unless that
        buffer is full: so it is driven here, without a task. If it waits after all, it
        goes into the outbox half done, first in line, and the pump finishes it before
        anything queued behind it. A frame that exports refs goes through the pump (their
        subscriptions come first). A failure is reported from the next iteration, as the
        pump would, so that no caller is called back in the middle of its own call. Loop
        only.
        """
        outbox, client = self._outbox, self._transport.client
        assert outbox is not None
        if self._pumping or out.exports or client is None or not outbox.empty():
            outbox.put_nowait((out, token, None))
            return
        reply = "" if token is _NO_REPLY else f"{self._me.inbox}.{token}"
        publishing = client.publish(out.subject, out.data, reply=reply)
        try:
            waiting = publishing.send(None)
        except StopIteration:
            return
        except Exception as error:
            asyncio.get_running_loop().call_soon(self._not_published, out, token, error)
            return
        outbox.put_nowait((out, token, (publishing, waiting)))

    async def _pump(self) -> None:
        """The one FIFO every outbound frame of this node goes through (see `_send_out`)."""
        outbox = self._outbox
        assert outbox is not None
        while True:
            out, token, started = await outbox.get()
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
            reply = "" if token is _NO_REPLY else f"{self._me.inbox}.{token}"
            await client.publish(out.subject, out.data, reply=reply)
        except Exception as error:
            self._not_published(out, token, error)

    async def _finish(
        self, out: Outbound, token: str, publishing: Coroutine[Any, Any, None], waiting: object
    ) -> None:
        """Resume a publish `_send_out` started, each time what it waits for is done."""
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

    async def _exchange(
        self, out: Outbound, target: tuple[str, str] | None, wait: float | None
    ) -> bytes:
        """Publish ``out`` through the outbox and wait for its reply frame. Loop only."""
        outbox = self._outbox
        if outbox is None or self._transport.closing:
            raise ActorStopped(f"node {self._me.node} is leaving the cluster", out.message)
        if target is not None and self._membership.is_dead(target):
            raise NodeDown(f"node {target[0]} is down", out.message)
        token, future = self._replies.expect(target)
        self._send_out(out, token)
        answered = False
        try:
            # `asyncio.timeout`, not `wait_for`: on CPython 3.11 `wait_for` can swallow a
            # cancellation that arrives as the future completes (the leave cancels these).
            async with asyncio.timeout(wait):
                data = await future
            answered = True
            return data
        except _NoResponders:
            answered = True  # nobody received it: nothing to cancel
            raise
        finally:
            self._replies.forget(token)
            envelope = out.envelope
            if not answered and envelope is not None and envelope.key:
                self._cancel_remotely(out.subject, envelope.key)

    def _cancel_remotely(self, subject: str, key: int) -> None:
        """The asker gave up on the ask with ``key`` (timeout, cancellation, a failure):
        tell its owner, through the outbox so that the notice follows the ask. Loop only.

        A name's notice goes to every member of its queue group (``_asking``). Best effort:
        lost with a connection.
        """
        outbox = self._outbox
        if outbox is None or self._transport.closing:
            return
        subject, data = self._notice(subject, key)
        self._send_out(Outbound(subject, data, [], None), _NO_REPLY)

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

    async def request(self, subject: str, data: bytes, wait: float) -> bytes:
        """Publish ``data`` on ``subject`` (no actor behind it); its reply frame. Loop only.

        Raises:
            TimeoutError: no reply within ``wait`` seconds.
            _NoResponders: nobody subscribes to ``subject``.
            ActorStopped: this node is leaving.
        """
        return await self._exchange(Outbound(subject, data, [], None), None, wait)

    async def _on_reply(self, msg: Msg) -> None:
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
                    waiter.set_exception(_NoResponders())
                else:
                    cast("asyncio.Future[bytes]", waiter).set_result(msg.data)
        else:
            waiter(NO_RESPONDERS if no_responders else msg.data)

    def _read_reply(
        self, ref: RemoteRef[Any], data: bytes, reply_type: Any, message: object
    ) -> Any:
        try:
            check_frame(data, self._limits.max_message_size, self._limits.max_depth)
            reply = self._replies_decoder.decode(data)
        except MALFORMED as error:
            self._transport.reject(f"a reply from {ref.path}", error)
            raise as_wire_error(error) from None
        credit_of(ref).settle(reply.free)
        note_home(ref, reply.home)  # where its next lane ask goes (``_lanes``)
        if reply.status == OK:
            try:
                return self._registry.decoder(reply_type).decode(reply.body)
            except DECODING as error:
                raise WireError(
                    f"the reply of remote actor {ref.path} on node {ref.node} is not a "
                    f"{_show(reply_type)}: {error}"
                ) from None
        info = reply.error or ErrorInfo("other", "Error", "no detail", ref.path, ref.node)
        failure = error_from(info, message)
        stopped = isinstance(failure, ActorStopped) and not isinstance(failure, NodeDown)
        if stopped and by_name(ref) is None:  # one member stopping ends no name-bound ref
            finish_proxy(cell_of(ref), None)
        raise failure

    async def _request(
        self,
        ref: RemoteRef[Any],
        out: Outbound,
        wait: float | None,
        reply_type: Any,
        on_timeout: Callable[[], Exception],
    ) -> Any:
        target = _target_of(ref)
        deadline = None if wait is None else time.monotonic() + wait
        if target is not None:
            # An ask must not overtake the tells of its ref: one of them may yet have to be
            # sent again (after a lost reply or a reconnect), and would then come after it.
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):  # not `wait_for`: see `_exchange`
                    await window_of(ref).wait_drained()
            except TimeoutError:
                raise on_timeout() from None
        delay = RETRY_FIRST
        retry = False
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if retry and remaining == 0.0:  # publish no frame that could not be waited for
                raise on_timeout()
            retry = True
            try:
                data = await self._exchange(out, target, remaining)
            except _NoResponders:
                name = by_name(ref)
                if name is not None:
                    raise ActorNotFound(
                        f"no node of the cluster serves {name!r} right now; message not delivered",
                        out.message,
                    ) from None
                # Nobody received the frame. Stopped for good only if its node says so.
                if await self.owner_says_gone(ref, deadline):
                    finish_proxy(cell_of(ref), None)
                    raise stopped_error(ref, out.message) from None
                pause = delay if deadline is None else min(delay, deadline - time.monotonic())
                if pause <= 0:
                    raise on_timeout() from None
                await asyncio.sleep(pause)
                delay = min(delay * 2, RETRY_MAX)
                if target is not None and self._membership.is_dead(target):
                    raise NodeDown(f"node {target[0]} is down", out.message) from None
                if not ref.is_alive:  # a down notice came meanwhile
                    raise stopped_error(ref, out.message) from None
                continue
            except TimeoutError:
                raise on_timeout() from None
            return self._read_reply(ref, data, reply_type, out.message)

    # -- pipelined tells: the ref's stream (see ``_window``) -----------------------------------

    def _pipeline(self, ref: RemoteRef[Any], tell: Tell) -> bool:
        """Hand ``tell`` to the stream if the credit allows; True if so. Any thread.

        The admission is the ref's `Credit` (thread-safe); the frame gets its seq on the
        cluster loop, in the order the posts arrive there, which is each caller's order.
        """
        if not self._transport.connected or not credit_of(ref).reserve():
            return False
        # One wake-up of the cluster loop per burst, not per tell: the first poster of a
        # burst schedules the drain, the others only append (in their order, under the lock).
        with self._posted_lock:
            self._posted.append((ref, tell))
            self.pipelined += 1
            scheduled, self._draining = self._draining, True
        if not scheduled:
            try:
                self._transport.post(self._drain_posted)
            except Exception:  # the node is leaving: this tell is refused, not posted
                with self._posted_lock:
                    self._draining = False
                    self._posted.remove((ref, tell))
                    self.pipelined -= 1
                credit_of(ref).settle(-1, tried=True)
                raise
        return True

    def _drain_posted(self) -> None:
        """Submit the tells posted since the last drain, in the order they were posted."""
        while True:
            with self._posted_lock:
                if not self._posted:
                    self._draining = False
                    return
                batch, self._posted = self._posted, collections.deque()
            # Consecutive tells to one ref go out together (`_transmit_all`).
            start = 0
            for end in range(1, len(batch) + 1):
                if end == len(batch) or batch[end][0] is not batch[start][0]:
                    ref = batch[start][0]
                    self._submit_run(ref, [tell for _, tell in itertools.islice(batch, start, end)])
                    start = end

    def _submit_run(
        self,
        ref: RemoteRef[Any],
        tells: list[Tell],
        future: asyncio.Future[None] | None = None,
    ) -> list[Sent]:
        """Give ``tells`` the next seqs of ``ref``'s stream and send them (unless stalled).

        ``future``: the caller waiting for the reply of a single tell (`_send_acked`).
        """
        window = window_of(ref)
        sents = window.add_all(tells, future)
        self._streaming.add(ref)
        ending = self._stream_ending(ref)
        if ending is not None:
            self._fail_stream(ref, window, ending)
        elif not window.stalled:
            self._transmit_all(ref, window, sents)
        return sents

    def _transmit_all(self, ref: RemoteRef[Any], window: Window, sents: list[Sent]) -> None:
        """Send ``sents`` (consecutive seqs) in as few frames as the limits allow."""
        budget = self._limits.max_message_size // 2  # room for the envelope around them
        chunk: list[Sent] = []
        size = 0
        for sent in sents:
            length = sent.tell.size
            if chunk and (len(chunk) == TELLS_MAX or size + length > budget):
                self._transmit_chunk(ref, window, chunk)
                chunk, size = [], 0
            chunk.append(sent)
            size += length
        if chunk:
            self._transmit_chunk(ref, window, chunk)

    async def _send_acked(
        self,
        ref: RemoteRef[Any],
        tell: Tell,
        wait: float,
        on_timeout: Callable[[], Exception],
    ) -> None:
        """A tell of the stream whose caller waits for its reply (no credit). Loop only."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (sent,) = self._submit_run(ref, [tell], future)
        try:
            async with asyncio.timeout(wait):  # not `wait_for`: see `_exchange`
                await asyncio.shield(future)
        except TimeoutError:
            raise on_timeout() from None
        finally:
            if not future.done():  # the caller gave up: an outcome now goes to dead letters
                sent.future = None
                future.cancel()

    def _transmit_chunk(self, ref: RemoteRef[Any], window: Window, chunk: list[Sent]) -> None:
        """One frame: a `TELL` for one tell, a `TELLS` for several consecutive ones.

        Each tell's `Told` was made in its caller's thread and is encoded here, once per
        transmission, inside the frame; the subject is formatted once per ref.
        """
        outbox = self._outbox
        assert outbox is not None
        first, last = chunk[0], chunk[-1]
        subject = window.subject
        if not subject:
            subject = window.subject = self._subject_of(ref)
        on_reply = functools.partial(
            self._on_stream_reply, ref, window, first.seq, last.seq, window.epoch
        )
        expires = time.monotonic() + self.ack_timeout
        token = self._replies.callback(on_reply, _target_of(ref), expires)
        exports: list[int]
        if len(chunk) == 1:
            told = first.tell.told
            envelope = Envelope(
                WIRE_VERSION,
                TELL,
                told.type,
                told.body,
                told.timeout,
                self._me.node,
                window.stream,
                first.seq,
                window.base,
                told.trace,
            )
            exports = first.tell.exports
            if first.token:  # sent again: the earlier transmission's reply no longer matters
                self._replies.forget(first.token)
            first.token = token
        else:
            items: list[Told] = []
            exports = []
            for sent in chunk:  # one pass: the items, their exports, the reply token
                tell = sent.tell
                items.append(tell.told)
                if tell.exports:
                    exports += tell.exports
                if sent.token:  # as above
                    self._replies.forget(sent.token)
                sent.token = token
            body = msgspec.Raw(msgspec.msgpack.encode(items))
            envelope = Envelope(
                WIRE_VERSION,
                TELLS,
                "",
                body,
                None,
                self._me.node,
                window.stream,
                first.seq,
                window.base,
            )
        data = msgspec.msgpack.encode(envelope)
        frame = Outbound(subject, data, exports, first.tell.message)
        self._send_out(frame, token)

    def _on_stream_reply(
        self,
        ref: RemoteRef[Any],
        window: Window,
        first: int,
        seq: int,
        epoch: int,
        data: bytes | None,
    ) -> None:
        """The reply to a frame of the stream holding seqs ``first`` to ``seq``."""
        sent = window.unacked.get(seq)
        if not data:  # no responders, no reply in time, or the target's node is down
            if sent is not None and epoch == window.epoch:
                self._stall(ref, window, probe=data is not None)
            return
        try:
            check_frame(data, self._limits.max_message_size, self._limits.max_depth)
            reply = self._replies_decoder.decode(data)
            expected = self._seqs.decode(reply.body) if reply.status == GAP else 0
            refused = self._refusals.decode(reply.body) if reply.status == OK else None
        except MALFORMED as error:
            self._transport.reject(f"a reply from {ref.path}", error)
            for early in _between(window, first, seq):
                self._settle(ref, window, early, as_wire_error(error))
            return
        if reply.status == GAP:
            if epoch == window.epoch:
                # Everything before ``expected`` had its turn there (its own reply settles
                # it, or was lost); send the rest again from there.
                for early in [s for s in window.unacked.values() if s.seq < expected]:
                    self._settle(ref, window, early, None)
                self._stall(ref, window, probe=False)
            return
        if sent is None:  # a frame sent twice: its first answer settled it
            credit_of(ref).settle(reply.free)
            return
        window.delay = 0.0
        if reply.status == OK:  # for this seq and every earlier one (see `Place`)
            for number, info in refused or ():  # but these were refused
                refusing = window.unacked.get(number) if first <= number <= seq else None
                if refusing is not None and self._refusal(ref, window, refusing, info):
                    credit_of(ref).settle(reply.free)
                    return
            self._settle_run(ref, window, seq, sent, reply.free)
            return
        credit_of(ref).settle(reply.free)
        info = reply.error or ErrorInfo("other", "Error", "no detail", ref.path, ref.node)
        for early in _between(window, first, seq):  # a frame refused whole: each of its tells
            if self._refusal(ref, window, early, info):
                return

    def _refusal(self, ref: RemoteRef[Any], window: Window, sent: Sent, info: ErrorInfo) -> bool:
        """The target refused ``sent``; True if that ended the stream (the actor stopped)."""
        failure = error_from(info, sent.tell.message)
        if isinstance(failure, ActorStopped) and not isinstance(failure, NodeDown):
            finish_proxy(cell_of(ref), None)
            self._fail_stream(ref, window, lambda message: stopped_error(ref, message))
            return True
        self._settle(ref, window, sent, failure)
        return False

    def _settle_run(
        self, ref: RemoteRef[Any], window: Window, seq: int, sent: Sent, free: int
    ) -> None:
        """An OK for ``sent`` (seq ``seq``): every tell up to it is enqueued. As `_settle`
        for each, with the credit they held given back in one step with the room reported
        (one lock, and the senders waiting for room woken once, with the fresh view)."""
        token = sent.token
        answered = 0
        for early in window.remove_through(seq):
            if early.token != token:  # its own frame's reply no longer matters
                self._replies.forget(early.token)
                token = early.token
            if early.pipelined:
                answered += 1
            future = early.future
            if future is not None and not future.done():
                future.set_result(None)
        credit_of(ref).settle(free, tried=answered > 0, answered=answered)

    def _settle(
        self, ref: RemoteRef[Any], window: Window, sent: Sent, failure: BaseException | None
    ) -> None:
        """``sent`` is answered: tell its waiting caller, or count a pipelined failure."""
        if window.remove(sent.seq) is None:
            return
        if sent.pipelined:
            credit_of(ref).settle(-1, tried=True)
        future = sent.future
        if future is not None:
            if not future.done():
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)
            return
        if failure is not None:
            self._undelivered(ref, sent, failure)

    def _undelivered(self, ref: RemoteRef[Any], sent: Sent, failure: BaseException) -> None:
        self.undelivered += 1
        self._transport.throttle.warn(
            "tell-undelivered",
            "a tell to remote actor %s returned, then failed: %s",
            ref.path,
            failure,
        )
        system = self._registry.system
        if system is not None:
            system.dead_letters.publish(ref.path, [sent.tell.message], "undelivered")

    def _fail_stream(
        self, ref: RemoteRef[Any], window: Window, failure: Callable[[object], BaseException]
    ) -> None:
        """The stream ends (the actor stopped, its node is down, this node leaves)."""
        for sent in list(window.unacked.values()):
            self._settle(ref, window, sent, failure(sent.tell.message))
        window.resume()

    def _stall(self, ref: RemoteRef[Any], window: Window, *, probe: bool) -> None:
        """Stop the stream and send its unanswered frames again once it can (go-back-N)."""
        if window.stall():
            self._transport.own(self._recover(ref, window, probe))

    async def _recover(self, ref: RemoteRef[Any], window: Window, probe: bool) -> None:
        ending: Callable[[object], BaseException] | None = None
        try:
            while window.unacked:
                if window.delay:
                    await asyncio.sleep(window.delay)
                window.delay = min(max(window.delay * 2, RETRY_FIRST), RETRY_MAX)
                ending = self._stream_ending(ref)
                if ending is not None:
                    break
                if not self._transport.connected:
                    continue  # a reconnect stalls the stream again: this waits for it
                if probe:
                    try:
                        gone = await self.owner_says_gone(ref, None)
                    except ActorStopped:
                        raise
                    except Exception:  # the probe could not go out (reconnecting): later
                        continue
                    if gone:
                        finish_proxy(cell_of(ref), None)
                        ending = self._stream_ending(ref)
                break
        except ActorStopped as stopped:  # declared down, or leaving, while asking its node
            ending = functools.partial(_stopped_as, type(stopped), str(stopped))
        if ending is not None:
            self._fail_stream(ref, window, ending)
            return
        window.resume()
        unanswered = list(window.unacked.values())
        self.resent += len(unanswered)
        self._transmit_all(ref, window, unanswered)

    def _stream_ending(self, ref: RemoteRef[Any]) -> Callable[[object], BaseException] | None:
        """Why ``ref``'s stream cannot go on (the error of each frame), or None."""
        target = _target_of(ref)
        if target is not None and self._membership.is_dead(target):
            node = target[0]
            return lambda message: NodeDown(f"node {node} is down", message)
        if self._outbox is None or self._transport.closing:
            node = self._me.node
            return lambda message: _leaving(node, message)
        if not ref.is_alive:
            return lambda message: stopped_error(ref, message)
        return None

    def _on_reconnected(self) -> None:
        """Replies may have been lost with the connection: send every stream's rest again."""
        for ref in list(self._streaming):
            window = window_of(ref)
            if window.unacked:
                self._stall(ref, window, probe=False)

    def _on_peer_reconnected(self, target: tuple[str, str]) -> None:
        """Node ``target`` failed over: replies it sent before may be lost. Resend to it.

        Without this, a stream whose last reply died with the target's server (ours stayed
        up, so `_on_reconnected` never runs) would wait ``ack_timeout`` for it, and hold the
        ref's asks as long. Sending again is safe: the target enqueues each seq once.
        """
        for ref in list(self._streaming):
            window = window_of(ref)
            if window.unacked and _target_of(ref) == target:
                self._stall(ref, window, probe=False)

    # -- no responders: asking the owner node ------------------------------------------------

    async def owner_says_gone(self, ref: RemoteRef[Any], deadline: float | None) -> bool:
        """Whether the node owning ``ref``'s actor confirms the actor has stopped.

        False when the owner says the actor is still exported, and when it does not answer
        (it is not connected right now: reconnecting, or dead and soon declared down).

        Raises:
            NodeDown: the owner was declared down meanwhile.
        """
        address = address_of(ref)
        body = msgspec.Raw(msgspec.msgpack.encode(address.id))
        envelope = Envelope(WIRE_VERSION, PROBE, "", body, None, self._me.node)
        out = Outbound(
            self._me.node_subject(address.node, address.incarnation),
            msgspec.msgpack.encode(envelope),
            [],
            None,
        )
        wait = _OWNER_ANSWER_WAIT
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return False
        try:
            frame = await self._exchange(out, _target_of(ref), wait)
            check_frame(frame, self._limits.max_message_size, self._limits.max_depth)
            reply = self._replies_decoder.decode(frame)
        except (_NoResponders, TimeoutError):
            return False
        except MALFORMED as error:
            self._transport.reject(f"the answer of node {address.node} about {address.path}", error)
            return False
        info = reply.error
        return reply.status == ERROR and info is not None and info.type == "ActorStopped"

    def _send_wait(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> tuple[float, Callable[[], Exception]]:
        """How long a send that waits for its acknowledgement waits, and its timeout error."""
        wait = self.ack_timeout if timeout is None else timeout + _SEND_GRACE

        def on_timeout() -> Exception:
            return SendTimeout(
                f"remote actor {ref.path} on node {ref.node} did not acknowledge "
                f"{type(message).__qualname__} within {wait} s; it may or may not have been "
                "enqueued",
                message,
            )

        return wait, on_timeout

    def _ask_parts(
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
        out = self.prepare(ref, ASK, message, left, key=ask_key())
        return out, _reply_type(type(message)), on_timeout, left

    def _try_on_loop(self, ref: RemoteRef[Any], out: Outbound) -> None:
        outbox = self._outbox
        if outbox is None or self._transport.closing:
            return
        window = window_of(ref)
        if window.stalled:  # it would overtake the tells being sent again: dropped, as full
            credit_of(ref).settle(-1, tried=True)
            self._transport.dropped += 1
            self._transport.throttle.warn(
                "try-stalled",
                "try_send to remote actor %s dropped: earlier tells are being sent again",
                ref.path,
            )
            return

        def on_reply(data: bytes | None) -> None:
            if not data:  # no reply, or nobody there
                credit_of(ref).settle(-1, tried=True)
                return
            try:
                self._read_reply(ref, data, None, out.message)
                credit_of(ref).settle(-1, tried=True)
            except MailboxFull:
                credit_of(ref).settle(0, tried=True)
            except Exception as error:
                credit_of(ref).settle(-1, tried=True)
                self._transport.throttle.warn(
                    "try-error", "try_send to remote actor %s failed: %s", ref.path, error
                )

        target = _target_of(ref)
        token = self._replies.callback(on_reply, target, time.monotonic() + _TRY_REPLY_TTL)
        self._send_out(out, token)

    def _probe_credit(self, ref: RemoteRef[Any]) -> None:
        outbox = self._outbox
        if outbox is None or self._transport.closing:
            credit_of(ref).settle(-1, probe=True)
            return
        envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self._me.node)
        out = Outbound(self._subject_of(ref), msgspec.msgpack.encode(envelope), [], None)

        def on_reply(data: bytes | None) -> None:
            free = -1
            if data:
                with contextlib.suppress(Exception):
                    reply = self._replies_decoder.decode(data)
                    free = reply.free
            credit_of(ref).settle(free, probe=True)

        target = _target_of(ref)
        token = self._replies.callback(on_reply, target, time.monotonic() + _TRY_REPLY_TTL)
        self._send_out(out, token)

    async def lookup(self, name: str, timeout: float, *, group: bool = False) -> Any:
        envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self._me.node)
        data = msgspec.msgpack.encode(envelope)
        deadline = time.monotonic() + timeout
        delay = 0.01
        attempts = 0
        answer_wait = _LOOKUP_ANSWER_WAIT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and attempts:
                raise ActorNotFound(
                    f"no node of the cluster serves a public actor named {name!r} "
                    f"(waited {timeout} s)"
                )
            attempts += 1
            out = Outbound(self._me.name_subject(name), data, [], None)
            try:
                # An owner that is subscribed answers at once; under load (a saturated
                # GIL) that can still take a while: "no responders" comes back at once, so
                # a timeout means a slow owner, and the next attempt waits longer for it.
                wait = max(_LOOKUP_ANSWER_WAIT, min(answer_wait, remaining))
                frame = await self._exchange(out, None, wait)
                check_frame(frame, self._limits.max_message_size, self._limits.max_depth)
                reply = self._replies_decoder.decode(frame)
                if reply.status != OK:
                    raise WireError("the lookup was refused")
                address = self._addresses.decode(reply.body)
            except _NoResponders:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.2)
                continue
            except TimeoutError:
                answer_wait *= 2
                continue
            except MALFORMED as error:
                self._transport.reject(f"a lookup answer for {name!r}", error)
                continue
            if self._membership.is_dead((address.node, address.incarnation)):
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            if address.durable and not group:  # durable on every node, the owner's too
                return self._registry.durable_ref(address.durable, address)
            if group or address.id == GROUP_ID:  # a served pool: address the whole group
                return self._registry.group_ref(name, address)
            return self._registry.ref_for(address)


class _Ask(Waiter):
    """A direct ask in flight: its frame, what reads its reply, and its caller's oneshot.

    Made in the caller's thread; from `Outbox._ask_on_loop` on, touched on the cluster
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
        answer: Callable[[_Ask, bytes | BaseException], None],
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


def _target_of(ref: RemoteRef[Any]) -> tuple[str, str] | None:
    """The node incarnation whose end fails ``ref``'s pending calls (None: name-bound)."""
    if by_name(ref) is not None:
        return None
    address = address_of(ref)
    return (address.node, address.incarnation)


def _show(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


# The reply type of each message type asked so far (`_reply_type`): a class's bases never
# change. Written from callers' threads: a race stores the same answer twice, and one dict
# store per key is safe without the GIL.
_REPLY_TYPES: dict[type, Any] = {}


def _reply_type(cls: type) -> Any:
    """``R`` of a ``Request[R]`` subclass; Any when the message declares no reply type."""
    try:
        return _REPLY_TYPES[cls]
    except KeyError:
        reply = _REPLY_TYPES[cls] = _find_reply_type(cls)
        return reply


def _find_reply_type(cls: type) -> Any:
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if getattr(base, "__origin__", None) is Request:
                (reply,) = base.__args__
                return reply
    return Any


def _check_message(ref: RemoteRef[Any], message: object) -> None:
    """The sender-side checks of `Cell.admit`, against what the remote actor accepts."""
    names = address_of(ref).accepts
    if names is not None and known_name(type(message)) not in names:
        known = [message_type(n) for n in names]
        if not any(t is not None and isinstance(message, t) for t in known):
            raise MessageTypeError(
                f"remote actor {ref.path} on node {ref.node} does not accept "
                f"{type(message).__qualname__}; it accepts {' | '.join(names)}"
            )
    try:
        check_sendable(message)
    except NotSendableError:  # the same refusal, naming the target (built only then)
        check_sendable(message, f"message to remote actor {ref.path}")
        raise


def check_accepts(ref: RemoteRef[Any], accepts: Any) -> None:
    """At lookup: every type the caller means to send must be one the remote accepts."""
    names = address_of(ref).accepts
    wanted = accepted_types(accepts)
    if names is None or wanted is None:
        return
    missing = [t.__qualname__ for t in wanted if known_name(t) not in names]
    if missing:
        raise MessageTypeError(
            f"remote actor {ref.path} on node {ref.node} does not accept "
            f"{' | '.join(missing)}; it accepts {' | '.join(names)}"
        )


def _leaving(node: str, message: object) -> ActorStopped:
    return ActorStopped(f"node {node} is leaving the cluster", message)


def _between(window: Window, first: int, last: int) -> list[Sent]:
    """The unanswered tells of ``window`` with seqs ``first`` to ``last``, in order."""
    return [sent for sent in window.unacked.values() if first <= sent.seq <= last]


def _stopped_as(kind: type[ActorStopped], text: str, message: object) -> ActorStopped:
    return kind(text, message)
