"""Tells: each ref's stream of pipelined tells, its acknowledged sends, and try_send's credit.

A tell to one remote actor is admitted by the ref's `Credit` (its view of the target's free
room) and then returns before its reply: it joins the ref's stream (``_window``: a
`Window` of frames in flight, seqs 1, 2, ...), and its frame leaves through the pump
(``_pump``). Out of credit, a send waits briefly for a reply due to free a slot
(`Tells.pipeline_at_reply`), else goes as an acknowledged tell of the same stream
(`Tells.send_acked`: its caller waits for the reply). The replies settle the window (one
reply answers every tell up to its seq), give the credit back and report the target's
room; a lost reply or "no responders" stalls the stream, and once the target is known to
be there its unanswered frames are sent again (go-back-N, ``_window``).

try_send decides on the credit view alone and never waits: its frame goes through the pump
(`Tells.try_on_loop`) and its reply only corrects the view; out of credit, a probe asks
the target for its room (`Tells.probe_credit`).

Invariants:

- The seqs of a stream are given on the cluster loop in the order the tells were posted
  there, which is each caller's order: callers append to one deque under ``_posted_lock``,
  and one drain per burst submits them in that order.
- A tell is in the window from its submission until its reply settles it (or its stream
  fails): its credit slot is held as long, and given back once.
- Nothing of a stream leaves while it is stalled; a try_send then is dropped (as full)
  rather than overtake the tells being sent again.
- Loop only, except `pipeline` (any thread: the credit and the posted deque are
  thread-safe), `send_wait` and the counter ``pipelined`` (written under the lock).

Imports: ``_frames``, ``_pump``, ``_requests`` (the owner's answer before a resend); only
``_outbound`` imports this module.
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
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._errors import ActorStopped, MailboxFull, SendTimeout
from .._oneshot import Expired, oneshot
from .._ref import cell_of
from ._frames import Outbound
from ._inbound import NIL, as_wire_error
from ._pump import leaving
from ._remote import credit_of, finish_proxy, stopped_error, target_of, window_of
from ._requests import RETRY_FIRST, RETRY_MAX
from ._window import TELLS_MAX, Tell
from ._wire import (
    GAP,
    MALFORMED,
    OK,
    PROBE,
    TELL,
    TELLS,
    WIRE_VERSION,
    Envelope,
    ErrorInfo,
    NodeDown,
    Reply,
    Told,
    check_frame,
    decoder_for,
    error_from,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._frames import Frames
    from ._membership import Membership
    from ._options import Limits
    from ._pump import Pump
    from ._registry import Registry
    from ._remote import RemoteRef
    from ._replies import Replies
    from ._requests import Requests
    from ._transport import Transport
    from ._window import Sent, Window

__all__ = ("Tells",)

_SEND_GRACE: Final = 1.0  # extra wait for the target's own SendTimeout reply
_TRY_REPLY_TTL: Final = 30.0  # forget a try_send's pending reply after this long

# Seconds a send out of credit waits for a reply due to free a slot before it goes with a
# round trip of its own: a reply answers up to ACK_EVERY tells and comes within a round
# trip (well under a millisecond on a LAN); one much later means a slow or silent target.
_REPLY_WAIT: Final = 0.05


class Tells:
    """The pipelined tells of this node's remote refs, and their replies.

    Example:
        ```python
        tells = Tells(transport, registry, membership, replies, frames, pump, requests,
                      Limits(), 30.0)
        if not tells.pipeline(ref, frames.prepare_tell(ref, Deposit(5), None)):
            ...  # out of credit: `pipeline_at_reply`, else an acknowledged send
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        membership: Membership,
        replies: Replies,
        frames: Frames,
        pump: Pump,
        requests: Requests,
        limits: Limits,
        ack_timeout: float,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._membership = membership
        self._replies = replies
        self._frames = frames
        self._pump = pump
        self._requests = requests
        self._limits = limits
        self._ack_timeout = ack_timeout
        self._replies_decoder: msgspec.msgpack.Decoder[Reply] = decoder_for(Reply, None)
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
        transport.on_reconnected.append(self._on_reconnected)
        membership.on_peer_reconnected.append(self._on_peer_reconnected)

    async def pipeline_at_reply(self, ref: RemoteRef[Any], tell: Tell) -> bool:
        """Wait for the replies due on ``ref`` and pipeline ``tell`` once they free a slot.

        Without this, a producer that used up the credit sent its next tell with a round
        trip of its own (`send_acked`): it waited for every tell before it to be enqueued,
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
            if self.pipeline(ref, tell):
                return True
        return False

    def pipeline(self, ref: RemoteRef[Any], tell: Tell) -> bool:
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
                    self.submit_run(ref, [tell for _, tell in itertools.islice(batch, start, end)])
                    start = end

    def submit_run(
        self,
        ref: RemoteRef[Any],
        tells: list[Tell],
        future: asyncio.Future[None] | None = None,
    ) -> list[Sent]:
        """Give ``tells`` the next seqs of ``ref``'s stream and send them (unless stalled).

        ``future``: the caller waiting for the reply of a single tell (`send_acked`).
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

    async def send_acked(
        self,
        ref: RemoteRef[Any],
        tell: Tell,
        wait: float,
        on_timeout: Callable[[], Exception],
    ) -> None:
        """A tell of the stream whose caller waits for its reply (no credit). Loop only."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (sent,) = self.submit_run(ref, [tell], future)
        try:
            async with asyncio.timeout(wait):  # not `wait_for`: see `Pump.exchange`
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
        first, last = chunk[0], chunk[-1]
        subject = window.subject
        if not subject:
            subject = window.subject = self._frames.subject_of(ref)
        on_reply = functools.partial(
            self._on_stream_reply, ref, window, first.seq, last.seq, window.epoch
        )
        expires = time.monotonic() + self._ack_timeout
        token = self._replies.callback(on_reply, target_of(ref), expires)
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
        self._pump.send_out(frame, token)

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
                        gone = await self._requests.owner_says_gone(ref, None)
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
        target = target_of(ref)
        if target is not None and self._membership.is_dead(target):
            node = target[0]
            return lambda message: NodeDown(f"node {node} is down", message)
        if self._pump.queue is None or self._transport.closing:
            node = self._me.node
            return lambda message: leaving(node, message)
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
            if window.unacked and target_of(ref) == target:
                self._stall(ref, window, probe=False)

    # -- no responders: asking the owner node ------------------------------------------------
    def send_wait(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> tuple[float, Callable[[], Exception]]:
        """How long a send that waits for its acknowledgement waits, and its timeout error."""
        wait = self._ack_timeout if timeout is None else timeout + _SEND_GRACE

        def on_timeout() -> Exception:
            return SendTimeout(
                f"remote actor {ref.path} on node {ref.node} did not acknowledge "
                f"{type(message).__qualname__} within {wait} s; it may or may not have been "
                "enqueued",
                message,
            )

        return wait, on_timeout

    def try_on_loop(self, ref: RemoteRef[Any], out: Outbound) -> None:
        """Publish a try_send's frame, its credit slot taken; its reply corrects the view."""
        if not self._pump.open:
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
                self._requests.read_reply(ref, data, None, out.message)
                credit_of(ref).settle(-1, tried=True)
            except MailboxFull:
                credit_of(ref).settle(0, tried=True)
            except Exception as error:
                credit_of(ref).settle(-1, tried=True)
                self._transport.throttle.warn(
                    "try-error", "try_send to remote actor %s failed: %s", ref.path, error
                )

        target = target_of(ref)
        token = self._replies.callback(on_reply, target, time.monotonic() + _TRY_REPLY_TTL)
        self._pump.send_out(out, token)

    def probe_credit(self, ref: RemoteRef[Any]) -> None:
        """Out of credit: ask ``ref``'s target for its free room (no message)."""
        if not self._pump.open:
            credit_of(ref).settle(-1, probe=True)
            return
        envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self._me.node)
        out = Outbound(self._frames.subject_of(ref), msgspec.msgpack.encode(envelope), [], None)

        def on_reply(data: bytes | None) -> None:
            free = -1
            if data:
                with contextlib.suppress(Exception):
                    reply = self._replies_decoder.decode(data)
                    free = reply.free
            credit_of(ref).settle(free, probe=True)

        target = target_of(ref)
        token = self._replies.callback(on_reply, target, time.monotonic() + _TRY_REPLY_TTL)
        self._pump.send_out(out, token)


def _between(window: Window, first: int, last: int) -> list[Sent]:
    """The unanswered tells of ``window`` with seqs ``first`` to ``last``, in order."""
    return [sent for sent in window.unacked.values() if first <= sent.seq <= last]


def _stopped_as(kind: type[ActorStopped], text: str, message: object) -> ActorStopped:
    return kind(text, message)
