"""Streamed replies across nodes: `RemoteRef.stream` over NATS, with credit.

A remote stream reuses the local one at both ends and carries items between them:

* **The reader's node** hands the caller an ordinary `ReplyStream` (or `BlockingReplyStream`)
  whose start (`_RemoteStart`) publishes the request, and whose channel, a
  `CreditChannel`, is filled by this node's cluster loop from the frames that arrive,
  and grants credit to the producer as the caller reads. Every reading
  rule of a local stream (one reader, per-item timeout, leaving early, the producer's error
  after its items) therefore holds unchanged.
* **The producer's node** enqueues the request into the actor as an ask whose reply slot is
  a local `Channel`, as ``ref.stream`` does, and a task of the cluster loop (`_Serving`)
  reads that channel and publishes its items in `StreamFrame`s (several items per frame
  when they are ready together, within the frame size limit), each with the next ``seq``.

The wire: the request goes as an `Envelope` of kind `STREAM` to the actor's subject (or
its name's, for a group or durable ref) with the reply subject ``<inbox>.s.<id>``, where
``id`` is the reader's number for the stream (also in ``Envelope.stream``) and the credit
window rides in ``Envelope.seq``. The frames come back on that subject, each with the
reply subject ``<producer inbox>.c.<n>``, on which the reader sends `StreamControl`
frames: ``STREAM_CREDIT`` with the items read so far, ``STREAM_CANCEL`` when it leaves.
A refusal at the start (unknown actor, wrong type) comes back as an ordinary error
`Reply`, as for an ask; and a request that nobody received ("no responders") is
published again while the owner node says the actor still exists, as an ask's frame is
(`RemoteStreams._nobody_there`).

Invariants:

* **The window holds end to end.** A stream of ``window`` splits it in two: the
  producer's local channel holds ``local = max(1, window // 2)`` items and the credit
  ``credit = max(1, window - local)`` more; the serving task takes an item from the local
  channel only while fewer than ``credit`` items it sent are unread. So the producer never
  runs more than ``local + credit`` items (``window``, for a window of 2 or more) ahead of
  what the remote reader has read; a slow reader pauses the producer through its own
  local channel.
* **Credit is cumulative** (``read`` counts every item read): a lost grant is made good
  by the next; a grant of more than was sent is refused as forged.
* **Every stream ends on both sides, once.** The reader's entry goes at the last frame, on
  the reader leaving, on the producer's node declared down (`NodeDown`, after the items
  received), and when this node leaves; the producer's entry goes at the last frame, on a
  cancel, and on the reader's node declared down. Late frames for an ended stream are
  dropped and counted (``Nats.statistics().dropped``), never an error.
* **Bad frames are dropped**, counted (``rejected``) and logged with a rate limit: a frame
  for an unknown stream, out of sequence, with more items than granted, from another
  producer than the first frame's, malformed or oversized; a control frame for an unknown
  stream, naming another stream than its subject, or granting more than was sent.

Thread rules: the tables, the counters and `_Serving` are loop only; `CreditChannel` adds
to `Channel` a count of items read with one writer, the reader's thread, which posts its
grants to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import msgspec

from .._delivery import deliver
from .._errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    StreamRequestError,
    SystemNotRunning,
)
from .._mailbox import OK as ENQUEUED
from .._message import Ask
from .._oneshot import Expired, ensure_plain_thread
from .._ref import cell_of
from .._stream import (
    END,
    WAITING,
    BlockingReplyStream,
    Channel,
    Reader,
    ReplyStream,
    StreamRequest,
)
from ._remote import address_of, by_name, finish_proxy, stopped_error
from ._requests import RETRY_FIRST, RETRY_MAX  # the same pauses as an ask's
from ._tracecontext import remote_message
from ._transport import subscribe
from ._wire import (
    DECODING,
    ERROR,
    MALFORMED,
    STREAM,
    STREAM_CANCEL,
    STREAM_CREDIT,
    STREAM_END,
    STREAM_FAILED,
    STREAM_MORE,
    WIRE_VERSION,
    ErrorInfo,
    MessageTooLarge,
    NodeDown,
    Reply,
    StreamControl,
    StreamFrame,
    WireError,
    check_frame,
    decoder_for,
    error_from,
    error_info,
    message_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from .._cell import Cell
    from ._frames import Frames, Outbound
    from ._inbound import Inbound
    from ._membership import Membership
    from ._options import Limits
    from ._pump import Pump
    from ._registry import Export, Registry
    from ._remote import RemoteRef
    from ._replies import Replies
    from ._requests import Requests
    from ._transport import Transport
    from ._wire import Envelope

__all__ = ("CreditChannel", "RemoteStreams", "split_window")

T = TypeVar("T")

logger = logging.getLogger("actors.cluster")

MAX_WINDOW: Final = 1 << 16  # a window a peer may ask for at most
_FRAME_SHARE: Final = 2  # a frame's items fill at most 1/_FRAME_SHARE of max_message_size
_FRAME_OVERHEAD: Final = 64  # bytes of a frame besides its items, generously


def split_window(window: int) -> tuple[int, int]:
    """A stream's window as (the producer's local window, the reader's credit)."""
    local = max(1, window // 2)
    return local, max(1, window - local)


def _stream_item_type(cls: type) -> Any:
    """``T`` of a ``StreamRequest[T]`` subclass; Any when it declares none."""
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if getattr(base, "__origin__", None) is StreamRequest:
                (item,) = base.__args__
                return item
    return Any


class CreditChannel(Channel):
    """The reader's channel of a remote stream: it grants credit as the reader takes items.

    ``read`` has one writer, the reader (one task or thread at a time, as `ReplyStream`
    guarantees); every ``step`` items it calls ``grant(read)``, which posts to the loop.
    """

    __slots__ = ("_grant", "_granted", "read", "step", "window_asked")

    def __init__(
        self, path: str, request: object, window: int, grant: Callable[[int], None]
    ) -> None:
        _, credit = split_window(window)
        super().__init__(path, request, credit)
        self.window_asked = window  # the stream's whole window, sent with the request
        self.read = 0
        self.step = max(1, credit // 2)
        self._granted = 0
        self._grant = grant

    def take(self) -> object:
        item = super().take()
        if item is not WAITING:
            self.read += 1
            if self.read - self._granted >= self.step:
                self._granted = self.read
                self._grant(self.read)
        return item


class _Reading:
    """The reader's side of one remote stream, on the reader's node. Loop only."""

    __slots__ = (
        "channel",
        "control",
        "credit",
        "delay",
        "granted",
        "id",
        "item_type",
        "next_seq",
        "out",
        "received",
        "ref",
        "retrying",
        "token",
    )

    def __init__(self, id: int, ref: RemoteRef[Any], channel: CreditChannel, credit: int) -> None:
        self.id = id
        self.out: Outbound | None = None  # the request, to publish again after "no responders"
        self.retrying = False  # a retry is under way (`RemoteStreams._nobody_there`)
        self.delay = RETRY_FIRST  # the next pause before publishing again (doubling)
        self.ref = ref
        self.channel = channel
        self.credit = credit
        self.item_type: Any = _stream_item_type(type(channel.request))
        self.next_seq = 1
        self.received = 0  # items put into the channel
        self.granted = 0  # the latest ``read`` sent to the producer
        self.control = ""  # the producer's control subject, from the first frame
        self.token: str | None = None  # the death-watch entry in the replies table


class _Serving:
    """The producer's side of one remote stream, on the actor's node. Loop only."""

    __slots__ = (
        "cell",
        "channel",
        "credit",
        "id",
        "more",
        "read",
        "reader",
        "reply_to",
        "sent",
        "stream",
        "task",
        "token",
    )

    def __init__(
        self, id: int, cell: Cell, channel: Channel, reply_to: str, stream: int, credit: int
    ) -> None:
        self.id = id
        self.cell = cell
        self.channel = channel
        self.reply_to = reply_to
        self.stream = stream  # the reader's id of the stream
        self.credit = credit
        self.sent = 0
        self.read = 0  # by the reader's latest grant
        self.more = asyncio.Event()  # set by a grant
        self.task: asyncio.Task[None] | None = None
        self.token: str | None = None
        self.reader: tuple[str, str] | None = None


class RemoteStreams:
    """Both sides of the node's remote streams: the readers here and the producers here.

    Example:
        ```python
        streams = RemoteStreams(
            transport, registry, inbound, frames, pump, requests, membership, replies, limits, 30.0
        )
        await streams.listen(client)  # on the cluster loop
        async for item in streams.reader(ref, Tokens("hi"), 16, 30.0):  # any loop
            ...
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        inbound: Inbound,
        frames: Frames,
        pump: Pump,
        requests: Requests,
        membership: Membership,
        replies: Replies,
        limits: Limits,
        ack_timeout: float,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._inbound = inbound
        # The outbox's parts a stream request takes: checked and encoded as any request,
        # published through the node's one FIFO, and the owner asked after "no responders".
        self._prepare = frames.prepare
        self._publish = pump.send_out
        self._owner_says_gone = requests.owner_says_gone
        self._ack_timeout = ack_timeout
        self._membership = membership
        self._replies = replies
        self._limits = limits
        self._ids_lock = threading.Lock()  # ids are drawn in callers' threads
        self._ids = itertools.count(1)
        # Loop only.
        self.reading: dict[int, _Reading] = {}
        self.serving: dict[int, _Serving] = {}
        self._served_ids = itertools.count(1)
        self._frames: msgspec.msgpack.Decoder[StreamFrame] = decoder_for(StreamFrame, None)
        self._controls: msgspec.msgpack.Decoder[StreamControl] = decoder_for(StreamControl, None)
        self._replies_decoder: msgspec.msgpack.Decoder[Reply] = decoder_for(Reply, None)
        transport.on_teardown.append(self._teardown)

    def open_reading(self) -> int:
        """Streams read here right now (any thread: a snapshot)."""
        return len(self.reading)

    def open_serving(self) -> int:
        """Streams served from here right now (any thread: a snapshot)."""
        return len(self.serving)

    async def listen(self, client: NatsClient) -> None:
        """Subscribe to this node's stream frames and stream controls. Loop only."""
        inbox = self._me.inbox
        await subscribe(client, f"{inbox}.s.*", cb=self._on_frame)
        await subscribe(client, f"{inbox}.c.*", cb=self._on_control)

    # -- the reader's side: open (any thread) ---------------------------------------------

    def reader(
        self, ref: RemoteRef[Any], request: StreamRequest[T], window: int, timeout: float | None
    ) -> ReplyStream[T]:
        """The `ReplyStream` of ``request`` to the remote actor of ``ref``; nothing sent yet."""
        id, channel = self._parts(ref, request, window)
        start = _RemoteStart(self, ref, id)
        return ReplyStream(Reader(cell_of(ref), request, window, timeout, channel, start))

    def blocking_reader(
        self, ref: RemoteRef[Any], request: StreamRequest[T], window: int, timeout: float | None
    ) -> BlockingReplyStream[T]:
        """`reader` for plain threads."""
        ensure_plain_thread()
        id, channel = self._parts(ref, request, window)
        start = _RemoteStart(self, ref, id)
        return BlockingReplyStream(Reader(cell_of(ref), request, window, timeout, channel, start))

    def _parts(
        self, ref: RemoteRef[Any], request: object, window: int
    ) -> tuple[int, CreditChannel]:
        if not isinstance(request, StreamRequest):
            raise StreamRequestError(
                f"ref.stream() takes a StreamRequest; {type(request).__qualname__} is not one "
                f"(use send or ask with remote actor {ref.path})"
            )
        request = cast("object", request)  # its item type does not matter here
        with self._ids_lock:
            id = next(self._ids)
        post = self._transport.post

        def grant(read: int) -> None:
            # Posted from the reader's thread; once the node has left there is nobody to
            # grant to (its streams ended with ActorStopped at the teardown).
            with contextlib.suppress(SystemNotRunning):
                post(self._grant, id, read)

        def left() -> None:
            # Also from a finaliser (`ReplyStream.__del__`), at any time: never raise.
            with contextlib.suppress(SystemNotRunning):
                post(self._left, id)

        channel = CreditChannel(ref.path, request, window, grant)
        channel.watch_abandon(left)
        return id, channel

    async def open(
        self, ref: RemoteRef[Any], id: int, channel: CreditChannel, timeout: float | None
    ) -> None:
        """Check, encode and publish the request (the caller's side of ``ReplyStream``).

        Raises:
            ActorStopped: the actor is known to have stopped, or this node is leaving.
            NodeDown: its node is down.
            MessageTypeError, NotSendableError, WireError: as for an ask (nothing sent).
        """
        request = channel.request
        out = self._prepare(ref, STREAM, request, timeout)
        assert out.envelope is not None
        envelope = msgspec.structs.replace(out.envelope, stream=id, seq=channel.window_asked)
        out.data = msgspec.msgpack.encode(envelope)
        await self._transport.call(self._start(ref, id, channel, out))

    def open_blocking(
        self, ref: RemoteRef[Any], id: int, channel: CreditChannel, timeout: float | None
    ) -> None:
        """`open` from a plain thread.

        Raises:
            ActorStopped, NodeDown, MessageTypeError, NotSendableError, WireError: as `open`.
        """
        self._transport.blocking(self.open(ref, id, channel, timeout))

    async def _start(self, ref: RemoteRef[Any], id: int, channel: CreditChannel, out: Any) -> None:
        if self._transport.closing:
            raise ActorStopped(f"node {self._me.node} is leaving the cluster", channel.request)
        target = None if by_name(ref) is not None else _node_of(ref)
        if target is not None and self._membership.is_dead(target):
            raise NodeDown(f"node {target[0]} is down", channel.request)
        reading = _Reading(id, ref, channel, channel.window)
        if channel.abandoned:  # the reader left before the request went out
            return
        self.reading[id] = reading
        reading.out = out
        if target is not None:
            reading.token = self._replies.callback(
                lambda _: self._reader_lost(id, target), target, math.inf
            )
        self._publish(out, f"s.{id}")

    # -- the reader's side: frames (loop only) --------------------------------------------

    async def _on_frame(self, msg: Msg) -> None:
        try:
            id = int(msg.subject.rsplit(".", 1)[-1])
        except ValueError:
            self._transport.reject("a stream frame", WireError(f"bad subject {msg.subject}"))
            return
        reading = self.reading.get(id)
        if reading is None:
            self._transport.dropped += 1  # a late frame of a stream that ended or was left
            self._cancel_unknown(id, msg)
            return
        headers = msg.headers
        if headers is not None and not msg.data and headers.get("Status") == "503":
            if by_name(reading.ref) is not None or reading.next_seq != 1:
                self._end(reading, _nobody(reading))  # a name: as an ask, ActorNotFound now
            elif not reading.retrying:
                reading.retrying = True
                self._transport.own(self._nobody_there(reading))
            return
        try:
            check_frame(msg.data, self._limits.max_message_size, self._limits.max_depth)
            frame = self._frames.decode(msg.data)
        except MALFORMED as error:
            self._refused_at_start(reading, msg.data, error)
            return
        where = f"stream {id} from {reading.ref.path}"
        problem = self._frame_problem(reading, frame, msg.reply)
        if problem:
            self._transport.reject(where, WireError(problem))
            return
        reading.control = msg.reply
        reading.next_seq += 1
        self._take_items(reading, frame)

    async def _nobody_there(self, reading: _Reading) -> None:
        """Nobody received the request ("no responders"): as `ask` does (see ``_requests``),
        ask the owner node whether the actor is gone; if not (its node is reconnecting, say),
        publish the request again after a pause, doubling up to `RETRY_MAX`. A 503 means
        nobody received it, so publishing again never starts the stream twice.

        Ends when the owner says gone (`ActorStopped`), the node is declared down
        (`NodeDown`), the ref learns it stopped, or the reader leaves (its per-item timeout
        bounds the wait for the first item); each retry runs after the previous 503.
        """
        ref, request = reading.ref, reading.channel.request
        try:
            # One probe at a time; the owner answers from its export table. The probe's
            # wire form is the requests' (``_requests``); shared rather than copied.
            gone = await self._owner_says_gone(ref, None)
        except ActorStopped as error:  # the owner's node was declared down, or we leave
            self._end_if_read(reading, error)
            return
        if gone:
            finish_proxy(cell_of(ref), None)
            self._end_if_read(reading, stopped_error(ref, request))
            return
        await asyncio.sleep(reading.delay)
        reading.delay = min(reading.delay * 2, RETRY_MAX)
        reading.retrying = False
        if self.reading.get(reading.id) is not reading:
            return  # ended meanwhile (teardown, the node declared down)
        if reading.channel.abandoned:  # the reader left: nobody to start it for
            self._forget(reading)
            return
        target = _node_of(ref)
        if self._membership.is_dead(target):
            self._end(reading, NodeDown(f"node {target[0]} is down", request))
        elif not ref.is_alive:
            self._end(reading, stopped_error(ref, request))
        elif reading.out is not None:
            self._publish(reading.out, f"s.{reading.id}")

    def _end_if_read(self, reading: _Reading, error: BaseException) -> None:
        if self.reading.get(reading.id) is reading:
            self._end(reading, error)

    def _cancel_unknown(self, id: int, msg: Msg) -> None:
        """A frame of a stream no longer read here: tell its producer to stop, once more.

        Its reader left before the first frame and gave up waiting for it (see `_left`), or
        the cancel was lost. Only to a control subject of this cluster's nodes, so that a
        forged frame cannot make this node publish elsewhere.
        """
        if not msg.reply.startswith(f"_INBOX.{self._me.prefix}."):
            return
        try:
            check_frame(msg.data, self._limits.max_message_size, self._limits.max_depth)
            frame = self._frames.decode(msg.data)
        except MALFORMED:
            return
        if frame.stream != id or frame.end != STREAM_MORE:  # not ours, or over anyway
            return
        cancel = msgspec.msgpack.encode(StreamControl(WIRE_VERSION, STREAM_CANCEL, id, 0))
        self._transport.own(self._inbound.publish_quietly(msg.reply, cancel, []))

    def _frame_problem(self, reading: _Reading, frame: StreamFrame, reply: str) -> str:
        if frame.version != WIRE_VERSION:
            return f"unsupported wire version {frame.version}"
        if frame.stream != reading.id:
            return f"a frame of stream {frame.stream} on the subject of stream {reading.id}"
        if frame.seq != reading.next_seq:
            return f"frame {frame.seq} out of sequence (expected {reading.next_seq})"
        if reading.control and reply != reading.control:
            return "a frame from another producer than the stream's"
        if not reply and frame.end == STREAM_MORE:
            return "a frame with no control subject"
        if reading.received + len(frame.items) > reading.granted + reading.credit:
            return (
                f"{len(frame.items)} items beyond the credit (received {reading.received}, "
                f"granted {reading.granted} + {reading.credit})"
            )
        if frame.end not in (STREAM_MORE, STREAM_END, STREAM_FAILED):
            return f"unknown end {frame.end}"
        return ""

    def _take_items(self, reading: _Reading, frame: StreamFrame) -> None:
        channel = reading.channel
        decoder = self._registry.decoder(reading.item_type)
        for raw in frame.items:
            try:
                item = decoder.decode(raw)
            except DECODING as error:
                ref = reading.ref
                self._cancel_reading(reading)
                self._end(
                    reading,
                    WireError(
                        f"an item of the stream of remote actor {ref.path} on node {ref.node} "
                        f"is not a {_show(reading.item_type)}: {error}"
                    ),
                )
                return
            reading.received += 1
            channel.put(item)
            if channel.abandoned:
                break
        if channel.abandoned and frame.end == STREAM_MORE:
            # The reader left before this frame (the first one, which brought the control
            # subject: see `_left`) or while it was being read: stop the producer.
            self._cancel_reading(reading)
            self._forget(reading)
        elif frame.end == STREAM_END:
            self._end(reading, None)
        elif frame.end == STREAM_FAILED:
            info = frame.error or ErrorInfo(
                "other", "Error", "no detail", reading.ref.path, reading.ref.node
            )
            self._end(reading, error_from(info, channel.request))

    def _refused_at_start(self, reading: _Reading, data: bytes, error: BaseException) -> None:
        """Not a stream frame: an error `Reply` (refused at the start), else malformed."""
        if reading.next_seq == 1:
            with contextlib.suppress(*MALFORMED):
                reply = self._replies_decoder.decode(data)
                if reply.status == ERROR and reply.error is not None:
                    self._end(reading, error_from(reply.error, reading.channel.request))
                    return
        self._transport.reject(f"stream {reading.id} from {reading.ref.path}", error)

    def _end(self, reading: _Reading, error: BaseException | None) -> None:
        self._forget(reading)
        if error is None:
            reading.channel.settle(END)
        else:
            reading.channel.settle(error=error)

    def _forget(self, reading: _Reading) -> None:
        self.reading.pop(reading.id, None)
        if reading.token is not None:
            self._replies.forget(reading.token)
            reading.token = None

    def _reader_lost(self, id: int, target: tuple[str, str]) -> None:
        reading = self.reading.get(id)
        if reading is not None:
            reading.token = None  # the replies table dropped it
            self._end(reading, NodeDown(f"node {target[0]} is down", reading.channel.request))

    def _grant(self, id: int, read: int) -> None:
        """The reader has read ``read`` items: let the producer run on (posted)."""
        reading = self.reading.get(id)
        if reading is None or read <= reading.granted:
            return
        reading.granted = read
        self._control(reading, STREAM_CREDIT, read)

    def _left(self, id: int) -> None:
        """The reader closed the stream (posted): tell the producer, forget the stream.

        Before any frame came the producer's control subject is unknown: the entry stays
        until the first frame, which finds the channel closed and sends the cancel then,
        or for ``ack_timeout`` at most (a frame that never comes: a name-bound ref's
        member that died, with no node to watch).
        """
        reading = self.reading.get(id)
        if reading is None:
            return
        if reading.control:
            self._cancel_reading(reading)
            self._forget(reading)
            return
        loop = asyncio.get_running_loop()
        loop.call_later(self._ack_timeout, self._expire, reading)

    def _expire(self, reading: _Reading) -> None:
        """A reader that left before the first frame: no frame came in time, forget it."""
        if self.reading.get(reading.id) is reading:
            self._forget(reading)

    def _cancel_reading(self, reading: _Reading) -> None:
        self._control(reading, STREAM_CANCEL, reading.granted)

    def _control(self, reading: _Reading, kind: int, read: int) -> None:
        if not reading.control or self._transport.client is None:
            return
        frame = msgspec.msgpack.encode(StreamControl(WIRE_VERSION, kind, reading.id, read))
        # A control lost is made good by the next (grants are cumulative; see `_left`).
        self._transport.own(self._inbound.publish_quietly(reading.control, frame, []))

    # -- the producer's side (loop only) --------------------------------------------------

    async def serve(self, export: Export, envelope: Envelope, reply_to: str) -> None:
        """An inbound `STREAM` request for an exported actor: enqueue it, start serving.

        Raises:
            WireError: a malformed request (bad window, reply subject, or body).
            StreamRequestError: the message is not a `StreamRequest`.
            MessageTypeError: the actor does not accept it.
            AskTimeout: the mailbox stayed full for the request's timeout.
            ActorStopped: the actor has stopped.
            (Each goes back to the reader as an error `Reply`, by the caller.)
        """
        reader = _reader_of(reply_to, envelope.stream)
        window = envelope.seq
        if not 1 <= window <= MAX_WINDOW:
            raise WireError(f"a stream window of {window} (1 to {MAX_WINDOW})")
        message = self._inbound.decode_body(export, envelope)
        cell = export.cell
        if not isinstance(message, StreamRequest):  # pyright: ignore[reportUnknownArgumentType]
            raise StreamRequestError(
                f"{type(message).__qualname__} is not a StreamRequest; actor {cell.path} "
                "streams only for those"
            )
        message = cast("object", message)  # its item type does not matter here
        local, credit = split_window(window)
        channel = Channel(cell.path, message, local)
        ask = Ask(remote_message(cell.system, message, envelope.trace, asked=True), channel)
        timeout = envelope.timeout
        try:
            code = await deliver(cell, ask, timeout)
        except Expired:
            raise AskTimeout(
                f"actor {cell.path} did not take {type(message).__qualname__} within {timeout} s"
            ) from None
        if code != ENQUEUED:
            raise cell.stopped_error(message)
        serving = _Serving(next(self._served_ids), cell, channel, reply_to, envelope.stream, credit)
        serving.reader = reader
        self.serving[serving.id] = serving
        me = (self._me.node, self._me.incarnation)
        if reader is not None and reader != me:  # a group's stream may come from this node
            # Watched from now on: a reader's node that never beats is declared down too.
            self._membership.learn(reader)
            serving.token = self._replies.callback(
                lambda _: self._stop_serving(serving.id), reader, math.inf
            )
        serving.task = self._transport.own(self._serve(serving))

    async def _serve(self, serving: _Serving) -> None:
        channel = serving.channel
        seq = 1
        try:
            # Frame 1, at once and empty: the reader learns the control subject, so that it
            # can cancel a stream whose first item is slow to come.
            if not await self._emit(serving, StreamFrame(WIRE_VERSION, serving.stream, 1, []), []):
                return
            while True:
                while serving.sent - serving.read >= serving.credit:
                    serving.more.clear()
                    await serving.more.wait()
                items: list[msgspec.Raw] = []
                exports: list[int] = []
                end, error = STREAM_MORE, None
                try:
                    item = await channel.get(None)
                    room = serving.credit - (serving.sent - serving.read)
                    size = self._add(items, exports, item, 0)
                    while len(items) < room and size < self._batch_bytes():
                        item = channel.take()
                        if item is WAITING:
                            break
                        size = self._add(items, exports, item, size)
                except StopAsyncIteration:
                    end = STREAM_END
                except Exception as failure:
                    end, error = (
                        STREAM_FAILED,
                        error_info(failure, serving.cell.path, self._me.node),
                    )
                serving.sent += len(items)
                seq += 1
                frame = StreamFrame(WIRE_VERSION, serving.stream, seq, items, end, error)
                if not await self._emit(serving, frame, exports) or end != STREAM_MORE:
                    return
        finally:
            channel.close()  # stops the producer at its next item, if it still runs
            self._drop_serving(serving)

    async def _emit(self, serving: _Serving, frame: StreamFrame, exports: list[int]) -> bool:
        """Publish ``frame``; False if it could not leave (the stream is then over here)."""
        try:
            await self._send_frame(serving, frame, exports)
        except Exception as failure:  # not connected, or leaving: the reader times out
            self._transport.throttle.warn(
                "stream-publish",
                "node %s could not publish a frame of a stream of %s: %s",
                self._me.node,
                serving.cell.path,
                failure,
            )
            return False
        return True

    def _add(self, items: list[msgspec.Raw], exports: list[int], item: object, size: int) -> int:
        """Encode ``item`` into ``items``; the bytes of the batch so far.

        Raises:
            WireError: the item cannot be encoded, or is larger than a frame may be.
        """
        body = self._registry.encode(item, exports)
        if len(body) + _FRAME_OVERHEAD > self._limits.max_message_size:
            raise MessageTooLarge(
                f"an item of {type(item).__qualname__} encodes to {len(body)} bytes, more than "
                f"the limit of {self._limits.max_message_size}; the stream ends here"
            )
        items.append(msgspec.Raw(body))
        return size + len(body)

    def _batch_bytes(self) -> int:
        return self._limits.max_message_size // _FRAME_SHARE

    async def _send_frame(self, serving: _Serving, frame: StreamFrame, exports: list[int]) -> None:
        data = msgspec.msgpack.encode(frame)
        if len(data) > self._limits.max_message_size:  # many items of some overhead each
            info = error_info(
                MessageTooLarge(f"a stream frame of {len(data)} bytes; the stream ends here"),
                serving.cell.path,
                self._me.node,
            )
            frame = StreamFrame(WIRE_VERSION, frame.stream, frame.seq, [], STREAM_FAILED, info)
            data = msgspec.msgpack.encode(frame)
            exports = []  # its items are not sent
        control = f"{self._me.inbox}.c.{serving.id}"
        await self._inbound.publish(serving.reply_to, data, exports, reply=control)

    async def _on_control(self, msg: Msg) -> None:
        where = f"a stream control of node {self._me.node}"
        try:
            id = int(msg.subject.rsplit(".", 1)[-1])
            check_frame(msg.data, 1024, 4)
            control = self._controls.decode(msg.data)
        except (ValueError, *MALFORMED) as error:
            self._transport.reject(where, error)
            return
        serving = self.serving.get(id)
        if serving is None:
            self._transport.dropped += 1  # the stream ended meanwhile
            return
        problem = _control_problem(serving, control)
        if problem:
            self._transport.reject(where, WireError(problem))
            return
        if control.kind == STREAM_CANCEL:
            self._stop_serving(id)
            return
        if control.read > serving.read:
            serving.read = control.read
            serving.more.set()

    def _stop_serving(self, id: int) -> None:
        serving = self.serving.get(id)
        if serving is None:
            return
        serving.channel.close()
        if serving.task is not None:
            serving.task.cancel()
        self._drop_serving(serving)

    def _drop_serving(self, serving: _Serving) -> None:
        self.serving.pop(serving.id, None)
        if serving.token is not None:
            self._replies.forget(serving.token)
            serving.token = None

    def _teardown(self) -> None:
        """This node leaves: end every stream read here (the tasks are cancelled anyway)."""
        for reading in list(self.reading.values()):
            self._end(reading, ActorStopped(f"node {self._me.node} left the cluster"))
        for serving in list(self.serving.values()):
            serving.channel.close()
            self._drop_serving(serving)


class _RemoteStart:
    """The `StreamStart` of a remote stream: the request is published to the actor's node
    (or its name's group), and the reader's channel is fed by this node's loop."""

    __slots__ = ("_id", "_ref", "_streams")

    def __init__(self, streams: RemoteStreams, ref: RemoteRef[Any], id: int) -> None:
        self._streams = streams
        self._ref = ref
        self._id = id

    async def start(self, reader: Reader[Any]) -> None:
        channel = cast("CreditChannel", reader.channel)
        await self._streams.open(self._ref, self._id, channel, reader.timeout)

    def start_blocking(self, reader: Reader[Any]) -> None:
        channel = cast("CreditChannel", reader.channel)
        self._streams.open_blocking(self._ref, self._id, channel, reader.timeout)


def _nobody(reading: _Reading) -> ActorError:
    """The error of a stream request to a name that nobody serves right now, or of a 503
    that comes after the stream's first frame (a confused or forged frame: the stream
    ends rather than starting again)."""
    ref, request = reading.ref, reading.channel.request
    what = type(request).__qualname__
    name = by_name(ref)
    if name is not None:
        return ActorNotFound(
            f"no node of the cluster serves {name!r} right now; stream of {what} not started",
            request,
        )
    return ActorStopped(
        f"nobody serves remote actor {ref.path} on node {ref.node} right now (stopped, or "
        f"its node reconnecting); stream of {what} not started",
        request,
    )


def _control_problem(serving: _Serving, control: StreamControl) -> str:
    if control.version != WIRE_VERSION:
        return f"unsupported wire version {control.version}"
    if control.stream != serving.stream:
        return f"a control frame for stream {control.stream} on the subject of another stream"
    if control.kind not in (STREAM_CREDIT, STREAM_CANCEL):
        return f"unknown stream control kind {control.kind}"
    if control.kind == STREAM_CREDIT and control.read > serving.sent:
        return f"a grant of {control.read} items read, more than the {serving.sent} sent"
    return ""


def _reader_of(reply_to: str, stream: int) -> tuple[str, str] | None:
    """The reader's node incarnation, from its reply subject ``_INBOX.<p>.<node>.<inc>.s.<id>``.

    Raises:
        WireError: the subject is not a stream's reply subject for ``stream``.
    """
    parts = reply_to.split(".")
    if len(parts) < 6 or parts[-2] != "s" or parts[-1] != str(stream) or stream <= 0:
        raise WireError(f"a stream request with the reply subject {reply_to!r}")
    return parts[-4], parts[-3]


def _node_of(ref: RemoteRef[Any]) -> tuple[str, str]:
    address = address_of(ref)
    return address.node, address.incarnation


def _show(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


_ = message_name  # the wire names of items are those of replies: registered on first use
