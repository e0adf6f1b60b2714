"""Outbound: the outbox, requests and their replies, try_send credit, and lookups.

Ordering: every outbound frame of a node goes through one FIFO (the outbox, emptied by
`_pump`), so frames from one sender to one actor leave in the order sent. Each frame
carries a reply subject ``_INBOX.p.<node>.<incarnation>.<token>``; ``_replies`` maps the
token to what waits for it: a future (send, ask, probe of a lookup) or a callback
(try_send, credit probe; these expire after a while, see `Membership._heartbeat`).
Messages are checked and encoded in the caller's thread (`_prepare`); the rest is loop only.

No responders: a request to an actor's subject that nobody subscribes to right now comes
back as "no responders" (NATS status 503). That is no proof that the actor has stopped: its
node may be reconnecting (after a server restart, whichever node is back first gets 503s
until the others have re-subscribed). So `_request` asks the owner node itself, on its
node subject ``p.actor.<node>.<incarnation>.0`` (no exported actor has id 0), whether the
export still exists (`_owner_says_gone`, answered by `_on_node_probe` from the export
table, whatever the state of the subscriptions). Only "gone" finishes the ref; anything
else (the actor is still exported, or the owner does not answer: it is reconnecting, or
dead and soon declared down by the heartbeats) is transient, and the request is published
again, backing off, within its own timeout. A 503 means nobody received the frame, so
publishing it again never duplicates a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec

from .._actor import accepted_types
from .._errors import (
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    MessageTypeError,
    SendTimeout,
)
from .._message import Request
from .._sendable import check_sendable
from ._inbound import NIL, Inbound, as_wire_error
from ._registry import GROUP_ID
from ._remote import RemoteRef, by_name, finish_proxy
from ._wire import (
    ASK,
    DECODING,
    ERROR,
    MALFORMED,
    OK,
    PROBE,
    TELL,
    WIRE_VERSION,
    Address,
    Envelope,
    ErrorInfo,
    MessageTooLarge,
    NodeDown,
    Reply,
    WireError,
    check_frame,
    error_from,
    error_info,
    known_name,
    message_name,
    message_type,
)

if TYPE_CHECKING:
    import itertools
    from collections.abc import Callable

    from nats.aio.msg import Msg

_SEND_GRACE: Final = 1.0  # extra wait for the target's own SendTimeout reply
_TRY_REPLY_TTL: Final = 30.0  # forget a try_send's pending reply after this long

_LOOKUP_ANSWER_WAIT = 1.0  # seconds one lookup attempt waits for a subscribed owner

NODE_ID: Final = 0  # the id of a node's own subject p.actor.<node>.<incarnation>.0
_OWNER_ANSWER_WAIT: Final = 1.0  # seconds one probe of an owner node waits for its answer
_RETRY_FIRST: Final = 0.05  # after a transient "no responders", the first pause (doubling)
_RETRY_MAX: Final = 0.5  # ... up to this


class _NoResponders(Exception):
    """Internal: nobody subscribes to the subject (NATS status 503)."""


class Outbound:
    """A checked, encoded frame on its way out."""

    __slots__ = ("data", "exports", "message", "subject")

    def __init__(self, subject: str, data: bytes, exports: list[int], message: object) -> None:
        self.subject = subject
        self.data = data
        self.exports = exports
        self.message = message


class Outbox(Inbound):
    """Frames to remote actors and groups, through the one outbox, and their replies."""

    ack_timeout: float
    # Loop only.
    _tokens: itertools.count[int]
    _outbox: asyncio.Queue[tuple[Outbound, str]] | None
    _replies_decoder: msgspec.msgpack.Decoder[Reply]
    _addresses: msgspec.msgpack.Decoder[Address]

    # -- outbound -----------------------------------------------------------------------------

    def _prepare(
        self, ref: RemoteRef[Any], kind: int, message: object, timeout: float | None
    ) -> Outbound:
        """Check and encode in the caller's thread, so that a bad message fails right here."""
        if not ref.is_alive:
            raise ref.stopped_error(message)
        _check_message(ref, message)
        exports: list[int] = []
        body = self._encode(message, exports)
        envelope = Envelope(
            WIRE_VERSION, kind, message_name(type(message)), msgspec.Raw(body), timeout, self.node
        )
        data = msgspec.msgpack.encode(envelope)
        if len(data) > self.max_message_size:
            raise MessageTooLarge(
                f"{type(message).__qualname__} encodes to {len(data)} bytes, more than the "
                f"limit of {self.max_message_size}; not sent"
            )
        return Outbound(self._subject_of(ref), data, exports, message)

    def _subject_of(self, ref: RemoteRef[Any]) -> str:
        # A group's or a durable actor's requests go to the name (whoever serves it now).
        name = by_name(ref)
        if name is not None:
            return self._name_subject(name)
        return self._actor_subject(ref.address)

    async def _pump(self) -> None:
        """The one FIFO every outbound frame of this node goes through."""
        outbox, client = self._outbox, self._nc
        assert outbox is not None
        assert client is not None
        while True:
            out, token = await outbox.get()
            try:
                for id in out.exports:
                    await self._ensure_subscribed(id)
                await client.publish(out.subject, out.data, reply=f"{self._inbox}.{token}")
            except Exception as error:
                entry = self._replies.pop(token, None)
                if entry is None:
                    continue
                failure = MailboxFull(
                    f"node {self.node} could not publish ({type(error).__name__}: {error}); "
                    "message not sent",
                    out.message,
                )
                waiter = entry[0]
                if isinstance(waiter, asyncio.Future):
                    if not waiter.done():
                        waiter.set_exception(failure)
                else:
                    waiter(None)

    async def _exchange(
        self, out: Outbound, target: tuple[str, str] | None, wait: float | None
    ) -> bytes:
        """Publish ``out`` through the outbox and wait for its reply frame. Loop only."""
        outbox = self._outbox
        if outbox is None or self._closing:
            raise ActorStopped(f"node {self.node} is leaving the cluster", out.message)
        if target is not None and target in self._dead:
            raise NodeDown(f"node {target[0]} is down", out.message)
        token = str(next(self._tokens))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[token] = (future, target, 0.0)
        outbox.put_nowait((out, token))
        try:
            if wait is None:
                return await future
            return await asyncio.wait_for(future, wait)
        finally:
            self._replies.pop(token, None)

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        entry = self._replies.pop(token, None)
        if entry is None:
            self._dropped += 1  # a late reply (the caller gave up) or a stray one
            return
        waiter = entry[0]
        headers = msg.headers
        no_responders = headers is not None and not msg.data and headers.get("Status") == "503"
        if isinstance(waiter, asyncio.Future):
            if not waiter.done():
                if no_responders:
                    waiter.set_exception(_NoResponders())
                else:
                    cast("asyncio.Future[bytes]", waiter).set_result(msg.data)
        else:
            waiter(None if no_responders else msg.data)

    def _read_reply(
        self, ref: RemoteRef[Any], data: bytes, reply_type: Any, message: object
    ) -> Any:
        try:
            check_frame(data, self.max_message_size, self.max_depth)
            reply = self._replies_decoder.decode(data)
        except MALFORMED as error:
            self._reject(f"a reply from {ref.path}", error)
            raise as_wire_error(error) from None
        ref.settle_credit(reply.free)
        if reply.status == OK:
            try:
                return self._decoder(reply_type).decode(reply.body)
            except DECODING as error:
                raise WireError(
                    f"the reply of remote actor {ref.path} on node {ref.node} is not a "
                    f"{_show(reply_type)}: {error}"
                ) from None
        info = reply.error or ErrorInfo("other", "Error", "no detail", ref.path, ref.node)
        failure = error_from(info, message)
        stopped = isinstance(failure, ActorStopped) and not isinstance(failure, NodeDown)
        if stopped and by_name(ref) is None:  # one member stopping ends no name-bound ref
            finish_proxy(ref._cell, None)  # pyright: ignore[reportPrivateUsage]
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
        delay = _RETRY_FIRST
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
                if await self._owner_says_gone(ref, deadline):
                    finish_proxy(ref._cell, None)  # pyright: ignore[reportPrivateUsage]
                    raise ref.stopped_error(out.message) from None
                pause = delay if deadline is None else min(delay, deadline - time.monotonic())
                if pause <= 0:
                    raise on_timeout() from None
                await asyncio.sleep(pause)
                delay = min(delay * 2, _RETRY_MAX)
                if target is not None and target in self._dead:
                    raise NodeDown(f"node {target[0]} is down", out.message) from None
                if not ref.is_alive:  # a down notice came meanwhile
                    raise ref.stopped_error(out.message) from None
                continue
            except TimeoutError:
                raise on_timeout() from None
            return self._read_reply(ref, data, reply_type, out.message)

    # -- no responders: asking the owner node ------------------------------------------------

    def _node_subject(self, node: str, incarnation: str) -> str:
        """The subject on which node incarnation ``node`` answers `_owner_says_gone`."""
        return f"{self.prefix}.actor.{node}.{incarnation}.{NODE_ID}"

    async def _owner_says_gone(self, ref: RemoteRef[Any], deadline: float | None) -> bool:
        """Whether the node owning ``ref``'s actor confirms the actor has stopped.

        False when the owner says the actor is still exported, and when it does not answer
        (it is not connected right now: reconnecting, or dead and soon declared down).

        Raises:
            NodeDown: the owner was declared down meanwhile.
        """
        address = ref.address
        body = msgspec.Raw(msgspec.msgpack.encode(address.id))
        envelope = Envelope(WIRE_VERSION, PROBE, "", body, None, self.node)
        out = Outbound(
            self._node_subject(address.node, address.incarnation),
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
            check_frame(frame, self.max_message_size, self.max_depth)
            reply = self._replies_decoder.decode(frame)
        except (_NoResponders, TimeoutError):
            return False
        except MALFORMED as error:
            self._reject(f"the answer of node {address.node} about {address.path}", error)
            return False
        info = reply.error
        return reply.status == ERROR and info is not None and info.type == "ActorStopped"

    async def _on_node_probe(self, msg: Msg) -> None:
        """Another node asks whether one of our exported actors still exists.

        Answered from the export table (an export is retired, and its subscription removed,
        once its actor has stopped): OK while it exists, an `ActorStopped` error once not.
        """
        reply_to = msg.reply
        try:
            envelope = self._open(msg.data)
            if envelope.kind != PROBE:
                raise WireError(f"unexpected frame (kind {envelope.kind}), not a probe")
            id = msgspec.msgpack.decode(envelope.body, type=int)
        except MALFORMED as error:
            self._reject(f"a probe of node {self.node}", error)
            return
        with self._lock:
            export = None if id == NODE_ID else self._exports.get(id)
        if export is not None and not export.cell.terminated.is_set:
            reply = Reply(WIRE_VERSION, OK, NIL, export.free())
        else:
            gone = ActorStopped(f"exported actor #{id} of node {self.node} has stopped")
            reply = Reply(WIRE_VERSION, ERROR, NIL, 0, error_info(gone, "", self.node))
        await self._respond(reply_to, reply, [])

    def _send_parts(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> tuple[Outbound, float, Callable[[], Exception]]:
        out = self._prepare(ref, TELL, message, timeout)
        wait = self.ack_timeout if timeout is None else timeout + _SEND_GRACE

        def on_timeout() -> Exception:
            return SendTimeout(
                f"remote actor {ref.path} on node {ref.node} did not acknowledge "
                f"{type(message).__qualname__} within {wait} s; it may or may not have been "
                "enqueued",
                message,
            )

        return out, wait, on_timeout

    def _ask_parts(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> tuple[Outbound, Any, Callable[[], Exception]]:
        out = self._prepare(ref, ASK, message, timeout)

        def on_timeout() -> Exception:
            return AskTimeout(
                f"remote actor {ref.path} on node {ref.node} did not answer "
                f"{type(message).__qualname__} within {timeout} s"
            )

        return out, _reply_type(type(message)), on_timeout

    def _try_on_loop(self, ref: RemoteRef[Any], out: Outbound) -> None:
        outbox = self._outbox
        if outbox is None or self._closing:
            return
        token = str(next(self._tokens))

        def on_reply(data: bytes | None) -> None:
            if data is None:  # no reply, or nobody there
                ref.settle_credit(-1, tried=True)
                return
            try:
                self._read_reply(ref, data, None, out.message)
                ref.settle_credit(-1, tried=True)
            except MailboxFull:
                ref.settle_credit(0, tried=True)
            except Exception as error:
                ref.settle_credit(-1, tried=True)
                self._throttle.warn(
                    "try-error", "try_send to remote actor %s failed: %s", ref.path, error
                )

        target = _target_of(ref)
        self._replies[token] = (on_reply, target, time.monotonic() + _TRY_REPLY_TTL)
        outbox.put_nowait((out, token))

    def _probe_credit(self, ref: RemoteRef[Any]) -> None:
        outbox = self._outbox
        if outbox is None or self._closing:
            ref.settle_credit(-1, probe=True)
            return
        envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self.node)
        out = Outbound(self._subject_of(ref), msgspec.msgpack.encode(envelope), [], None)
        token = str(next(self._tokens))

        def on_reply(data: bytes | None) -> None:
            free = -1
            if data is not None:
                with contextlib.suppress(Exception):
                    reply = self._replies_decoder.decode(data)
                    free = reply.free
            ref.settle_credit(free, probe=True)

        target = _target_of(ref)
        self._replies[token] = (on_reply, target, time.monotonic() + _TRY_REPLY_TTL)
        outbox.put_nowait((out, token))

    async def _lookup(self, name: str, timeout: float, *, group: bool = False) -> Any:
        envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self.node)
        data = msgspec.msgpack.encode(envelope)
        deadline = time.monotonic() + timeout
        delay = 0.01
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and attempts:
                raise ActorNotFound(
                    f"no node of the cluster serves a public actor named {name!r} "
                    f"(waited {timeout} s)"
                )
            attempts += 1
            out = Outbound(self._name_subject(name), data, [], None)
            try:
                # An owner that is subscribed answers at once; under load (a saturated
                # GIL) that can still take a while, so one attempt waits up to a second.
                frame = await self._exchange(out, None, _LOOKUP_ANSWER_WAIT)
                check_frame(frame, self.max_message_size, self.max_depth)
                reply = self._replies_decoder.decode(frame)
                if reply.status != OK:
                    raise WireError("the lookup was refused")
                address = self._addresses.decode(reply.body)
            except (_NoResponders, TimeoutError):
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.2)
                continue
            except MALFORMED as error:
                self._reject(f"a lookup answer for {name!r}", error)
                continue
            if (address.node, address.incarnation) in self._dead:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            if address.durable and not group:  # durable on every node, the owner's too
                return self._durable_ref(address.durable, address)
            if group or address.id == GROUP_ID:  # a served pool: address the whole group
                return self._group_ref(name, address)
            return self._ref_for(address)


def _target_of(ref: RemoteRef[Any]) -> tuple[str, str] | None:
    """The node incarnation whose end fails ``ref``'s pending calls (None: name-bound)."""
    if by_name(ref) is not None:
        return None
    address = ref.address
    return (address.node, address.incarnation)


def _show(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


def _reply_type(cls: type) -> Any:
    """``R`` of a ``Request[R]`` subclass; Any when the message declares no reply type."""
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if getattr(base, "__origin__", None) is Request:
                (reply,) = base.__args__
                return reply
    return Any


def _check_message(ref: RemoteRef[Any], message: object) -> None:
    """The sender-side checks of `Cell.admit`, against what the remote actor accepts."""
    names = ref.address.accepts
    if names is not None and known_name(type(message)) not in names:
        known = [message_type(n) for n in names]
        if not any(t is not None and isinstance(message, t) for t in known):
            raise MessageTypeError(
                f"remote actor {ref.path} on node {ref.node} does not accept "
                f"{type(message).__qualname__}; it accepts {' | '.join(names)}"
            )
    check_sendable(message, f"message to remote actor {ref.path}")


def check_accepts(ref: RemoteRef[Any], accepts: Any) -> None:
    """At lookup: every type the caller means to send must be one the remote accepts."""
    names = ref.address.accepts
    wanted = accepted_types(accepts)
    if names is None or wanted is None:
        return
    missing = [t.__qualname__ for t in wanted if known_name(t) not in names]
    if missing:
        raise MessageTypeError(
            f"remote actor {ref.path} on node {ref.node} does not accept "
            f"{' | '.join(missing)}; it accepts {' | '.join(names)}"
        )
