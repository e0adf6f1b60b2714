"""Inbound: frames for local actors and served pools, and the replies they get.

Each exported actor has its own subscription, which nats-py serves with one task in arrival
order; a tell is acknowledged only once enqueued, and an ask is enqueued in order but
answered from a task of its own. So frames from one sender to one actor are enqueued in the
order sent, and a full mailbox delays only that actor's traffic. A pool served under a
public name (`serve_pool`) joins that name's queue group, and `_inbound_pool` routes each
frame the server hands it into the pool.

Every refusal goes back to the sender as an error reply (the sender learns why); a
malformed frame also counts as rejected. The node's own subject (id 0) answers whether one
of its exports still exists (`Inbound.on_node_probe`, see ``_requests`` for why).

An ask can also arrive on an ask lane, the NATS connection of the loop its actor lives on
(``_lanes``): `Inbound.on_lane_frame` checks and enqueues it there, on that loop, with the
same steps (`open`, `decode_body`, `_enqueue_ask`) and the lane's own answers, cancel
table and decoders.

`Inbound` is handed the transport (the client; owning its answer tasks) and the registry
(the exports, decoding message bodies, encoding replies). Loop only, except
`on_lane_frame` and what it calls (`open`, `decode_body` with a lane's decoders,
`_enqueue_ask` with a lane's tables): any thread, touching only what is thread-safe (the
export table under its lock, the transport's counters through the cluster loop, the
mailbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from typing import TYPE_CHECKING, Any, Final

import anyio
import msgspec

from .._delivery import deliver
from .._errors import ActorStopped, AskTimeout, MailboxFull, MessageTypeError
from .._mailbox import OK as ENQUEUED
from .._message import Ask
from .._oneshot import Expired
from .._ref import cell_of
from ._answers import Answers
from ._asking import Asking, is_notices, name_notices
from ._registry import GROUP_ID, Export
from ._tracecontext import remote_context, remote_message
from ._transport import NODE_ID, SUB_PENDING_MSGS, subscribe
from ._window import ACK_EVERY
from ._wire import (
    ASK,
    CANCEL,
    DECODING,
    ERROR,
    GAP,
    MALFORMED,
    OK,
    PROBE,
    STREAM,
    TELL,
    TELLS,
    TRY,
    WIRE_VERSION,
    Address,
    Envelope,
    Reply,
    Told,
    WireError,
    check_frame,
    decoder_for,
    error_info,
    message_name,
    message_type,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from .._pool import Pool
    from ._lanes import AskLane
    from ._options import Limits
    from ._registry import Registry
    from ._transport import Transport
    from ._window import Place, Streams
    from ._wire import ErrorInfo

Decoders = dict[Any, msgspec.msgpack.Decoder[Any]]  # message decoders by type, one loop's

_POOL_ASKS: Final = 1024  # asks a served pool answers at once, per node (then: push back)

NIL: Final = msgspec.Raw(b"\xc0")


class _Served:
    """A local `Pool` serving a public name in the name's queue group (loop only)."""

    __slots__ = ("accepts", "asks", "name", "notices", "pool", "sub")

    def __init__(self, pool: Pool[Any], name: str) -> None:
        self.pool = pool
        self.name = name
        self.asks = asyncio.Semaphore(_POOL_ASKS)
        self.sub: Subscription | None = None
        self.notices: Subscription | None = None  # the name's cancel notices (``_asking``)
        # What the workers accept, taken while they exist (a stopped pool lists none).
        workers = pool.workers
        self.accepts: tuple[type, ...] | None = cell_of(workers[0]).accepts if workers else None

    @property
    def path(self) -> str:
        return self.pool.path

    def free(self) -> int:
        """Free room summed over the workers' mailboxes (a hint for remote try_sends)."""
        free = 0
        for worker in self.pool.workers:
            with contextlib.suppress(Exception):
                box = worker.statistics().mailbox
                free += max(0, box.capacity - box.depth)
        return free


class Inbound:
    """Subscriptions of exported actors and served pools, and the frames they receive.

    Example:
        ```python
        inbound = Inbound(transport, registry, Limits(), connect_timeout=5.0)
        await inbound.register("account-7", address.id)  # on the cluster loop
        ```
    """

    def __init__(
        self, transport: Transport, registry: Registry, limits: Limits, connect_timeout: float
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._limits = limits
        self._connect_timeout = connect_timeout
        self._envelopes: msgspec.msgpack.Decoder[Envelope] = decoder_for(Envelope, None)
        self._tolds: msgspec.msgpack.Decoder[list[Told]] = decoder_for(list[Told], None)
        # Loop only, for the inspector: the public names served here (those of stopped
        # actors are pruned when listed) and the pools served under a name.
        self.public: dict[str, int] = {}
        self.served: dict[_Served, None] = {}
        # Loop only: the asks answered here now, by the key their CANCEL would present,
        # with what abandons each (see ``_asking``). Bounded by the asks in flight.
        self.asking = Asking()
        # Sends the replies of the asks enqueued here, as their actors settle them.
        self.answers = Answers(transport, self._me.node, registry, self.respond, self.asking)
        # Serves an inbound STREAM request (``_streams``), set by the node. Loop only.
        self.on_stream: Callable[[Export, Envelope, str], Awaitable[None]] | None = None

    async def listen(self, client: NatsClient) -> None:
        """Answer probes on this node's own subject (whether an export still exists)."""
        me = self._me
        await subscribe(client, me.node_subject(me.node, me.incarnation), cb=self.on_node_probe)

    async def ensure_subscribed(self, id: int) -> None:
        export = self._registry.exported(id)
        client = self._transport.client
        if export is None or client is None:
            return
        if export.ready is not None:
            await export.ready
            return
        export.ready = asyncio.get_running_loop().create_future()
        try:
            address = Address(self._me.node, self._me.incarnation, id, export.cell.path, None, 0)
            sub = await subscribe(
                client,
                self._me.actor_subject(address),
                cb=functools.partial(self._inbound, export),
                pending_msgs_limit=SUB_PENDING_MSGS,
            )
            export.subs.append(sub)
        finally:
            export.ready.set_result(None)

    async def ensure_all_subscribed(self, ids: list[int]) -> None:
        """`ensure_subscribed` for each of ``ids`` (the refs a reply carries). Loop only."""
        for id in ids:
            await self.ensure_subscribed(id)

    async def register(self, name: str, id: int) -> None:
        client = self._transport.client
        export = self._registry.exported(id)
        if client is None or export is None:
            raise ActorStopped(f"actor {name} stopped before it could be made public")
        await self.ensure_subscribed(id)
        sub = await subscribe(
            client,
            self._me.name_subject(name),
            queue=self._me.prefix,
            cb=functools.partial(self._inbound, export),
            pending_msgs_limit=SUB_PENDING_MSGS,
        )
        export.subs.append(sub)
        notices = await subscribe(
            client, name_notices(self._me.name_subject(name)), cb=self._notice
        )
        export.subs.append(notices)
        self.public[name] = id
        await client.flush(timeout=max(1, int(self._connect_timeout)))

    async def serve_pool(self, name: str, pool: Pool[Any]) -> None:
        client = self._transport.client
        if client is None:
            raise ActorStopped(f"node {self._me.node} is leaving the cluster")
        served = _Served(pool, name)
        served.sub = await subscribe(
            client,
            self._me.name_subject(name),
            queue=self._me.prefix,
            cb=functools.partial(self._inbound_pool, served),
            pending_msgs_limit=SUB_PENDING_MSGS,
        )
        served.notices = await subscribe(
            client, name_notices(self._me.name_subject(name)), cb=self._notice
        )
        self.served[served] = None
        self._transport.own(self._unserve_when_stopped(served))
        await client.flush(timeout=max(1, int(self._connect_timeout)))

    async def _unserve_when_stopped(self, served: _Served) -> None:
        try:
            await served.pool.join()
        finally:
            self.served.pop(served, None)
            if served.notices is not None:
                with contextlib.suppress(Exception):
                    await served.notices.unsubscribe()
            # Drain, not unsubscribe: frames already delivered here still get their answer
            # (ActorStopped, nothing enqueued) instead of leaving their senders to time out.
            if served.sub is not None:
                drain: Any = served.sub.drain  # untyped in nats-py
                with contextlib.suppress(Exception):
                    await drain()

    def open(self, data: bytes) -> Envelope:
        """A frame's envelope: size and depth checked before decoding, our wire version.

        Raises:
            WireError, msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError: refused
                (`MALFORMED`).
        """
        check_frame(data, self._limits.max_message_size, self._limits.max_depth)
        envelope = self._envelopes.decode(data)
        if envelope.version != WIRE_VERSION:
            raise WireError(f"unsupported wire version {envelope.version}")
        return envelope

    async def _inbound_pool(self, served: _Served, msg: Msg) -> None:
        """A frame for a served pool: route it into the pool (one member of the group)."""
        reply_to = msg.reply
        try:
            envelope = self.open(msg.data)
        except MALFORMED as error:
            self._transport.reject(served.path, error)
            await self._answer_error(reply_to, served, as_wire_error(error))
            return
        pool = served.pool
        if envelope.kind == CANCEL:
            self._cancel(envelope.key)
            return
        try:
            if not pool.is_alive:  # stopped; its subscription is being drained
                raise ActorStopped(f"pool {pool.path} has stopped; message not delivered")
            if envelope.kind == PROBE:
                accepts = served.accepts
                names = None if accepts is None else tuple(message_name(t) for t in accepts)
                address = Address(
                    self._me.node, self._me.incarnation, GROUP_ID, pool.path, names, served.free()
                )
                await self.respond(
                    reply_to, Reply(WIRE_VERSION, OK, _raw(address), address.free), []
                )
                return
            message = self.decode_body(served, envelope)
            system = self._registry.system
            if envelope.kind == TELL:
                with remote_context(system, envelope.trace):
                    await pool.send(message, timeout=envelope.timeout)
                await self.respond(reply_to, Reply(WIRE_VERSION, OK, NIL, served.free()), [])
            elif envelope.kind == TRY:
                try:
                    with remote_context(system, envelope.trace):
                        pool.try_send(message)
                except MailboxFull:
                    self._transport.dropped += 1
                    raise
                await self.respond(reply_to, Reply(WIRE_VERSION, OK, NIL, served.free()), [])
            elif envelope.kind == ASK:
                # Answered in a task of its own, so this subscription goes on routing the
                # next frames meanwhile; the semaphore bounds the asks in flight.
                await served.asks.acquire()
                self._transport.own(self._answer_pool_ask(served, message, envelope, reply_to))
            else:
                raise WireError(f"unknown envelope kind {envelope.kind}")
        except WireError as error:
            self._transport.reject(served.path, error)
            await self._answer_error(reply_to, served, error)
        except Exception as error:  # refused by the pool: the sender learns why
            await self._answer_error(reply_to, served, error)

    async def _answer_pool_ask(
        self, served: _Served, message: object, request: Envelope, reply_to: str
    ) -> None:
        key = request.key
        scope = anyio.CancelScope()
        self.asking.hold(key, scope.cancel)  # the pool ask abandons its worker's request
        try:
            with scope:
                try:
                    with remote_context(self._registry.system, request.trace):
                        value = await served.pool.ask(message, timeout=request.timeout)
                except Exception as error:
                    await self._answer_error(reply_to, served, error)
                    return
                await self._answer_value(reply_to, served, value)
        finally:
            self.asking.release(key)
            served.asks.release()

    def _cancel(self, key: int) -> None:
        """A CANCEL frame behind its ask: its asker gave up on the ask with ``key``, if
        still answered here (else ignored: a cancel is a hint, never an error)."""
        self.asking.cancel(key)

    async def _notice(self, msg: Msg) -> None:
        """A CANCEL notice on a public name's notice subject, heard by every member of its
        queue group: only the one answering the ask acts (see ``_asking``)."""
        try:
            envelope = self.open(msg.data)
            if envelope.kind != CANCEL:
                raise WireError(f"a frame of kind {envelope.kind} on a cancel notice subject")
        except MALFORMED as error:
            self._transport.reject(f"a cancel notice on {msg.subject}", error)
            return
        self.asking.cancel(envelope.key, broadcast=True)

    # -- inbound: frames for a local actor ---------------------------------------------------

    async def _inbound(self, export: Export, msg: Msg) -> None:
        try:
            await self._frame(export, msg)
        finally:
            # The subscription has nothing more for this actor: send the OKs held back.
            if export.streams.holding and not _more_waiting(export):
                await self.release_held(export)

    async def _frame(self, export: Export, msg: Msg) -> None:
        reply_to = msg.reply
        try:
            envelope = self.open(msg.data)
        except MALFORMED as error:
            self._transport.reject(export.cell.path, error)
            await self._answer_error(reply_to, export, as_wire_error(error))
            return
        if envelope.kind == CANCEL:
            self._cancel(envelope.key)
            return
        try:
            if envelope.kind == PROBE:
                address, _ = self._registry.export(export.ref)
                await self.respond(
                    reply_to, Reply(WIRE_VERSION, OK, _raw(address), address.free), []
                )
                return
            if envelope.kind == TELL and envelope.stream:
                await self._stream_tell(export, envelope, reply_to)
                return
            if envelope.kind == TELLS and envelope.stream:
                await self._stream_tells(export, envelope, reply_to)
                return
            if envelope.kind == STREAM and self.on_stream is not None:
                await self.on_stream(export, envelope, reply_to)
                return
            message = self.decode_body(export, envelope)
            ref = export.ref
            if envelope.kind == TELL:
                with remote_context(export.cell.system, envelope.trace):
                    await ref.send(message, timeout=envelope.timeout)
                await self.respond(reply_to, Reply(WIRE_VERSION, OK, NIL, export.free()), [])
            elif envelope.kind == TRY:
                try:
                    with remote_context(export.cell.system, envelope.trace):
                        ref.try_send(message)
                except MailboxFull:
                    self._transport.dropped += 1
                    self._transport.throttle.warn(
                        "try-full",
                        "node %s: a remote try_send found actor %s full; dropped",
                        self._me.node,
                        export.cell.path,
                    )
                    raise
                await self.respond(reply_to, Reply(WIRE_VERSION, OK, NIL, export.free()), [])
            elif envelope.kind == ASK:
                await self._enqueue_ask(export, message, envelope, reply_to)
            else:
                raise WireError(f"unknown envelope kind {envelope.kind}")
        except WireError as error:
            self._transport.reject(export.cell.path, error)
            await self._answer_error(reply_to, export, error)
        except Exception as error:  # refused by the target: the sender learns why
            await self._answer_error(reply_to, export, error)

    # -- inbound: asks on a loop's own subject (an ask lane, see ``_lanes``) ------------------

    async def on_lane_frame(self, lane: AskLane, msg: Msg) -> None:
        """An ask, or its cancel notice, on ask lane ``lane``'s subject, on its loop.

        The checks of `_frame` for an ask (the export, the frame, the type, the deadline,
        the trace), answered on the lane (the connection that received it). The actor is
        whichever export the subject's last token names; if it is no longer homed on this
        loop (the watchdog moved it) the ask is enqueued all the same (a mailbox takes
        items from any thread) and the answer's hint names its new home.
        """
        reply_to = msg.reply
        id = _lane_target(msg.subject)
        if id is None:
            error = WireError(f"no actor id in the subject {msg.subject!r}")
            self._transport.reject(lane.name, error)
            info = error_info(error, "", self._me.node)
            await lane.respond(reply_to, Reply(WIRE_VERSION, ERROR, NIL, 0, info), [])
            return
        export = self._registry.exported(id)
        if export is None:
            gone = ActorStopped(f"exported actor #{id} of node {self._me.node} has stopped")
            info = error_info(gone, "", self._me.node)
            await lane.respond(reply_to, Reply(WIRE_VERSION, ERROR, NIL, 0, info), [])
            return
        try:
            envelope = self.open(msg.data)
        except MALFORMED as error:
            self._transport.reject(export.cell.path, error)
            await lane.respond(reply_to, self._error_reply(export, as_wire_error(error)), [])
            return
        if envelope.kind == CANCEL:
            lane.asking.cancel(envelope.key)
            return
        try:
            if envelope.kind != ASK:
                raise WireError(f"a frame of kind {envelope.kind} on an ask lane's subject")
            message = self.decode_body(export, envelope, lane.decoders)
            await self._enqueue_ask(export, message, envelope, reply_to, lane.answers, lane.asking)
            lane.served += 1
        except Exception as error:  # refused: the sender learns why, on the lane
            if isinstance(error, WireError):
                self._transport.reject(export.cell.path, error)
            await lane.respond(reply_to, self._error_reply(export, error), [])

    async def _stream_tell(self, export: Export, envelope: Envelope, reply_to: str) -> None:
        """A pipelined tell (see ``_window``): enqueued once, at its turn in its stream."""
        streams = export.streams
        place = streams.place(envelope.sender, envelope.stream, envelope.base)
        seq = envelope.seq
        if seq != place.expected and place.held:  # answered at once: the held OK goes first
            await self._release(streams, place, export.free())
        if seq < place.expected:  # sent again: answer as the first time, enqueue nothing
            info = place.refused.get(seq)
            status = OK if info is None else ERROR
            await self.respond(reply_to, Reply(WIRE_VERSION, status, NIL, export.free(), info), [])
            return
        if seq > place.expected:  # one before it was lost: the sender goes back to it
            reply = Reply(WIRE_VERSION, GAP, _raw(place.expected), export.free())
            await self.respond(reply_to, reply, [])
            return
        # Its turn is now, whatever the outcome: a refusal is final for this seq.
        place.expected = seq + 1
        try:
            message = self.decode_body(export, envelope)
            with remote_context(export.cell.system, envelope.trace):
                await export.ref.send(message, timeout=envelope.timeout)
        except Exception as error:  # refused: the sender learns why, now and if it asks again
            if place.held:  # the OK held back answers for the seqs before this one: first
                await self._release(streams, place, export.free())
            if isinstance(error, WireError):
                self._transport.reject(export.cell.path, error)
            info = error_info(error, export.path, self._me.node)
            place.refuse(seq, info)
            free = 0 if isinstance(error, MailboxFull) else export.free()
            await self.respond(reply_to, Reply(WIRE_VERSION, ERROR, NIL, free, info), [])
            return
        # This OK answers for the one held back too (see `Place`): it replaces it.
        place.held, place.held_count = reply_to, place.held_count + 1
        streams.holding.add(place)
        if place.held_count >= ACK_EVERY:
            await self._release(streams, place, export.free())

    async def _stream_tells(self, export: Export, envelope: Envelope, reply_to: str) -> None:
        """Several consecutive tells of a stream: each as `_stream_tell`, one reply for all."""
        try:
            items = told_items = self._tolds.decode(envelope.body)
        except DECODING as error:
            raise WireError(f"malformed tells: {error}") from None
        streams = export.streams
        place = streams.place(envelope.sender, envelope.stream, envelope.base)
        first = envelope.seq
        if first > place.expected:  # one before them was lost: the sender goes back to it
            if place.held:
                await self._release(streams, place, export.free())
            reply = Reply(WIRE_VERSION, GAP, _raw(place.expected), export.free())
            await self.respond(reply_to, reply, [])
            return
        refused: list[tuple[int, ErrorInfo]] = []
        if self._enqueue_at_once(export, place, first, items):
            items = []  # all of them are in, at their turn: only the reply is left
        for seq, told in enumerate(items, start=first):
            if seq < place.expected:  # sent again: only its refusal, if it was refused, counts
                info = place.refused.get(seq)
                if info is not None:
                    refused.append((seq, info))
                continue
            place.expected = seq + 1  # its turn, whatever the outcome
            try:
                message = self.decode_body(export, told)
                with remote_context(export.cell.system, told.trace):
                    await export.ref.send(message, timeout=told.timeout)
            except Exception as error:
                if isinstance(error, WireError):
                    self._transport.reject(export.cell.path, error)
                info = error_info(error, export.path, self._me.node)
                place.refuse(seq, info)
                refused.append((seq, info))
        if refused:  # answered now, with the refusals (the held OK first: it is older)
            if place.held:
                await self._release(streams, place, export.free())
            reply = Reply(WIRE_VERSION, OK, _raw(refused), export.free())
            await self.respond(reply_to, reply, [])
            return
        place.held, place.held_count = reply_to, place.held_count + len(told_items)
        streams.holding.add(place)
        if place.held_count >= ACK_EVERY:
            await self._release(streams, place, export.free())

    def _enqueue_at_once(self, export: Export, place: Place, first: int, items: list[Told]) -> bool:
        """The common case in one step: every tell of the frame new, well-formed, accepted,
        and room for all of them now. Then they go in as one batch (one lock, one wake-up of
        the actor) and the stream moves past them; else nothing happened, and the tells take
        their turns one by one (waits, refusals)."""
        if first != place.expected or export.cell.system.tracer is not None:
            return False  # a tracing node enqueues each in its sender's context (slow path)
        # The tells of a frame are mostly of one type: its checks (registered, accepted)
        # and its decoder are looked up once per type, not once per tell.
        decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}

        def decode(told: Told) -> object:
            decoder = decoders.get(told.type)
            if decoder is None:
                decoder = decoders[told.type] = self._body_decoder(export, told.type)
            return decoder.decode(told.body)

        try:
            batch = export.cell.admit_all(decode(told) for told in items)
        except Exception:  # a refusal among them: the slow path names it
            return False
        if export.cell.mailbox.put_many_nowait(batch) != ENQUEUED:
            return False
        place.expected = first + len(items)
        return True

    async def release_held(self, export: Export) -> None:
        """Send the OKs held back for ``export``'s streams (nothing more waits for it)."""
        streams = export.streams
        if streams.holding:
            free = export.free()
            for place in list(streams.holding):
                await self._release(streams, place, free)

    async def _release(self, streams: Streams, place: Place, free: int) -> None:
        reply_to, place.held, place.held_count = place.held, "", 0
        streams.holding.discard(place)
        await self.respond(reply_to, Reply(WIRE_VERSION, OK, NIL, free), [])

    def decode_body(
        self,
        export: Export | _Served,
        envelope: Envelope | Told,
        decoders: Decoders | None = None,
    ) -> object:
        """The message of ``envelope`` for ``export``; ``decoders``: the calling loop's cache
        of decoders by type (the registry's, the cluster loop's, by default)."""
        try:
            return self._body_decoder(export, envelope.type, decoders).decode(envelope.body)
        except DECODING as error:
            raise WireError(f"malformed {envelope.type!r}: {error}") from None

    def _body_decoder(
        self, export: Export | _Served, name: str, decoders: Decoders | None = None
    ) -> msgspec.msgpack.Decoder[Any]:
        """The decoder of message type ``name`` for ``export``.

        Raises:
            WireError: no type is registered under ``name`` here.
            MessageTypeError: ``export`` does not accept that type.
        """
        cls = message_type(name)
        if cls is None:
            raise WireError(f"unknown message type {name!r}; register it on this node")
        accepts = export.accepts
        if accepts is not None and not issubclass(cls, accepts):
            raise MessageTypeError(
                f"actor {export.path} does not accept {name!r}; it accepts "
                + " | ".join(message_name(t) for t in accepts)
            )
        if decoders is None:
            return self._registry.decoder(cls)
        decoder = decoders.get(cls)
        if decoder is None:
            decoder = decoders[cls] = self._registry.new_decoder(cls)
        return decoder

    async def _enqueue_ask(
        self,
        export: Export,
        message: object,
        request: Envelope,
        reply_to: str,
        answers: Answers | None = None,
        asking: Asking | None = None,
    ) -> None:
        # As ActorRef.ask, but the reply is sent when the actor settles it (`Answers`), so
        # that this subscription goes on enqueueing the next frames in order meanwhile.
        # ``answers`` and ``asking``: the receiving connection's (the node's by default).
        answers = self.answers if answers is None else answers
        asking = self.asking if asking is None else asking
        cell = export.cell
        if type(message) not in cell.admitted:
            cell.admit(message)
        reply = answers.expect(export, message, reply_to, request.key)
        timeout = request.timeout  # the time its asker still waits: the deadline, here
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        traced = remote_message(cell.system, message, request.trace, asked=True)
        envelope = Ask(traced, reply, deadline)
        try:
            code = await deliver(cell, envelope, timeout)  # a node task: never a self-send
        except Expired:
            raise AskTimeout(
                f"actor {cell.path} did not take {type(message).__qualname__} within {timeout} s"
            ) from None
        if code != ENQUEUED:
            raise cell.stopped_error(message)
        if reply.done:  # answered while this task waited for room: nothing left to track
            return
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        # A CANCEL on this subscription comes after this; a group's, heard on the name's
        # notice subject, may have come first: then the ask is abandoned here at once.
        asking.hold(request.key, reply.cancel)
        answers.expire_after(reply, remaining)

    async def _answer_value(self, reply_to: str, export: Export | _Served, value: object) -> None:
        exports: list[int] = []
        try:
            body = self._registry.encode(value, exports)
        except WireError as error:
            await self._answer_error(reply_to, export, error)
            return
        await self.respond(
            reply_to, Reply(WIRE_VERSION, OK, msgspec.Raw(body), export.free()), exports
        )

    async def publish(self, subject: str, data: bytes, exports: list[int], reply: str = "") -> None:
        """Publish ``data`` once the refs exported in it are subscribed (a message sent to
        one of them must find its subscription). Loop only.

        Raises:
            ActorStopped: this node is leaving (no client).
            Exception: what the NATS client raised (not connected, say).
        """
        client = self._transport.client
        if client is None:
            raise ActorStopped(f"node {self._me.node} is leaving the cluster")
        for id in exports:
            await self.ensure_subscribed(id)
        await client.publish(subject, data, reply=reply)

    async def publish_quietly(self, subject: str, data: bytes, exports: list[int]) -> None:
        """`publish` for a frame whose loss its receiver survives (a reply: its asker times
        out; a stream control: the next one makes it good): failures are dropped."""
        with contextlib.suppress(Exception):
            await self.publish(subject, data, exports)

    async def respond(self, reply_to: str, reply: Reply, exports: list[int]) -> None:
        if reply_to and self._transport.client is not None:
            await self.publish_quietly(reply_to, msgspec.msgpack.encode(reply), exports)

    async def _answer_error(
        self, reply_to: str, export: Export | _Served, error: BaseException
    ) -> None:
        await self.respond(reply_to, self._error_reply(export, error), [])

    def _error_reply(self, export: Export | _Served, error: BaseException) -> Reply:
        info = error_info(error, export.path, self._me.node)
        free = export.free() if not isinstance(error, MailboxFull) else 0
        return Reply(WIRE_VERSION, ERROR, NIL, free, info)

    async def on_node_probe(self, msg: Msg) -> None:
        """Another node asks whether one of our exported actors still exists.

        Answered from the export table (an export is retired, and its subscription removed,
        once its actor has stopped): OK while it exists, an `ActorStopped` error once not.
        """
        reply_to = msg.reply
        try:
            envelope = self.open(msg.data)
            if envelope.kind != PROBE:
                raise WireError(f"unexpected frame (kind {envelope.kind}), not a probe")
            id = msgspec.msgpack.decode(envelope.body, type=int)
        except MALFORMED as error:
            self._transport.reject(f"a probe of node {self._me.node}", error)
            return
        export = None if id == NODE_ID else self._registry.exported(id)
        if export is not None and not export.cell.terminated.is_set:
            reply = Reply(WIRE_VERSION, OK, NIL, export.free())
        else:
            gone = ActorStopped(f"exported actor #{id} of node {self._me.node} has stopped")
            reply = Reply(WIRE_VERSION, ERROR, NIL, 0, error_info(gone, "", self._me.node))
        await self.respond(reply_to, reply, [])


def _more_waiting(export: Export) -> bool:
    """Whether frames wait in the actor's subscriptions (then an OK may be held back).

    Not its name's notice subscription: a notice is handled by `Inbound._notice`, which
    releases no OK, so an OK held back for it would wait for the actor's next frame.
    """
    return any(
        getattr(sub, "pending_msgs", 0) and not is_notices(getattr(sub, "subject", ""))
        for sub in export.subs
    )


def _lane_target(subject: str) -> int | None:
    """The export id an ask lane's subject names (``<lane subject>.<id>``), if well-formed."""
    token = subject.rsplit(".", 1)[-1]
    return int(token) if token.isdecimal() and len(token) < 20 else None


def _raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(value))


def as_wire_error(error: BaseException) -> WireError:
    return error if isinstance(error, WireError) else WireError(f"malformed frame: {error}")
