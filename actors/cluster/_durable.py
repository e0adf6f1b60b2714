"""Durable mailboxes: at-least-once tells to actors spawned with ``durable=True``, on JetStream.

Core NATS is at most once. A durable actor's tells go through JetStream instead:

* **One stream per cluster prefix**, ``<PREFIX>_DURABLE`` over ``p.durable.*``, file storage,
  work-queue retention (a message is removed once its actor acknowledged it), with a
  duplicate window. Whichever node needs it creates it (idempotent); the owning node of a
  durable actor also brings its configuration up to date.
* **Sending** (`DurableRef.send`): the message is checked, encoded and given its
  ``Nats-Msg-Id`` (this node, its incarnation, a node-wide sequence number) in the
  caller's thread, then admitted into this node's publish window (`Publisher`, see
  ``_publisher``) and ``send`` returns: the window publishes it, again with the same id
  until the PubAck comes (the stream's duplicate window drops the copies), one burst at a
  time so that one sender's messages are stored in order across a broker restart too.
  What is never stored is a dead letter (``"undelivered"``); `flush` waits for storage.
* **Receiving**: the owning node has a durable pull consumer per durable actor, named after
  the actor, so a restarted node resumes the same one. Explicit acks, ``max_ack_pending``
  = ``durable_window``, ``ack_wait`` = ``durable_ack_wait``, ``max_deliver`` =
  ``durable_max_deliver``. Each fetched message goes through the wire checks (size and
  depth before decoding, then a typed decode against what the actor accepts); a malformed
  one is terminated, counted as rejected and logged. The others are enqueued in stream
  order into the actor's FIFO mailbox as asks (the reply is the handler's outcome), and
  each is acknowledged only after its handler returned. A handler that raises gets the
  message again after ``durable_retry_delay`` (doubling), up to ``durable_max_deliver``
  attempts; then it is terminated, counted, logged and published as a dead letter.
  While a handler runs, the message is kept alive with in-progress acks, so a long handler
  is not redelivered behind its back; a node that dies stops sending them, and the server
  redelivers after ``ack_wait`` to whoever binds the consumer next.
* **Handled ids**: the stream sequences of the last messages handled here are remembered,
  so a redelivery whose only fault was a lost ack (a broker restart between the handler and
  the ack) is acknowledged without running the handler twice.

`DurableMailboxes` is the `DurableCourier` of every `DurableRef` (which carries it). It is
handed the transport, the registry (the exports; the system, for dead letters), inbound
(opening and decoding fetched frames; the name subscription of the owner) and the outbox
(checking and encoding a message as for any remote tell), and makes its `Publisher`.
Loop only, except the message-id counter (guarded by `Identity.lock`) and the courier
methods, which only check, encode and admit (the publisher's admission is thread-safe).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
from typing import TYPE_CHECKING, Any, Final

from .._checkpoint import checkpoint
from .._delivery import deliver
from .._errors import ActorStopped, MailboxFull, MessageTypeError, NotSendableError
from .._mailbox import OK as ENQUEUED
from .._message import Ask
from .._oneshot import ensure_plain_thread, oneshot
from .._ref import COOPERATIVE_BUDGET
from ._publisher import Publish, Publisher
from ._tracecontext import remote_message
from ._transport import ClusterError, logger
from ._wire import MALFORMED, TELL, WireError

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._inbound import Inbound
    from ._options import DurableOptions, Limits
    from ._outbound import Outbox
    from ._registry import Export, Registry
    from ._remote import DurableRef
    from ._transport import Transport

_FETCH_WAIT: Final = 1.0  # seconds one pull request lingers on the server
_HANDLED: Final = 4096  # stream sequences remembered per durable actor (ack-lost redeliveries)
_RETRY_CAP: Final = 60.0  # longest delay before a failed message is redelivered
_HEADROOM: Final = 1024  # bytes a stored message may have beyond max_message_size (headers)
_LEAVE_WAIT: Final = 5.0  # longest a leaving node waits for its durable handlers to finish

_ALREADY_IN_USE: Final = 10058  # JetStream: stream name in use with another configuration


class _Consumer:
    """The JetStream consumer of one durable actor on this node (loop only)."""

    __slots__ = ("export", "freed", "handled", "name", "order", "pending", "settling", "sub")

    def __init__(self, name: str, export: Export) -> None:
        self.name = name
        self.export = export
        self.sub: Any = None  # a nats-py PullSubscription, bound by the fetch loop
        self.pending: set[int] = set()  # stream sequences enqueued, not yet settled
        self.settling: set[asyncio.Task[None]] = set()  # their waits for the handler
        self.freed = asyncio.Event()  # a pending message was settled: room to fetch
        self.handled: set[int] = set()
        self.order: collections.deque[int] = collections.deque()

    def remember(self, seq: int) -> None:
        self.handled.add(seq)
        self.order.append(seq)
        if len(self.order) > _HANDLED:
            self.handled.discard(self.order.popleft())


class DurableMailboxes:
    """Durable mailboxes: publishing into the stream, and a consumer per durable actor.

    Example:
        ```python
        durable = DurableMailboxes(transport, registry, inbound, outbox, options, limits, 30.0)
        await durable.send(ref, Deposit(5), None)  # a DurableRef's send, from any loop
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        inbound: Inbound,
        outbox: Outbox,
        options: DurableOptions,
        limits: Limits,
        ack_timeout: float,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._inbound = inbound
        self._outbox = outbox
        self.options = options
        self._limits = limits
        self.ack_timeout = ack_timeout
        self._durable_ids = itertools.count(1)  # guarded by me.lock
        # Loop only.
        self._js: Any = None  # the nats-py JetStreamContext, made on first use
        self._stream_ready = False
        self._stream_lock: asyncio.Lock | None = None
        self._consumers: set[_Consumer] = set()
        self._admitted = 0  # sends admitted at once, to pace checkpoints (racy by design)
        self._leaving = False  # set by `leave`: the fetch loops end (loop only)
        self.publisher = Publisher(
            transport,
            registry,
            options,
            ack_timeout,
            functools.partial(self._ensure_stream, update=False),
            self._msg_id,
        )
        self.handled = 0
        self.redelivered = 0
        self.terminated = 0

    # -- the courier of durable refs (any thread) ---------------------------------------------

    async def send(self, ref: DurableRef[Any], message: object, timeout: float | None) -> None:
        """`DurableRef.send` (see there): admit into the publish window, waiting for room.

        Cancellation: while waiting for room, nothing is admitted; once admitted, the
        message is published and stored whatever happens to the caller.
        """
        item = self._publish_of(ref, message)
        if self.publisher.admit(item):
            self._admitted += 1  # a racy tally only paces the checkpoints
            if self._admitted % COOPERATIVE_BUDGET == 0:
                # As ActorRef.send's cooperative budget: a producer whose sends keep finding
                # room never waits, and would hold its event loop.
                await checkpoint()
            return
        await self._transport.call(self.publisher.admit_waiting(item, timeout))

    def blocking_send(self, ref: DurableRef[Any], message: object, timeout: float | None) -> None:
        """`DurableRef.blocking_send`, from a plain thread."""
        ensure_plain_thread()
        item = self._publish_of(ref, message)
        if not self.publisher.admit(item):
            self._transport.blocking(self.publisher.admit_waiting(item, timeout))

    def try_send(self, ref: DurableRef[Any], message: object) -> None:
        """`DurableRef.try_send`: admit into the publish window if it has room; never waits."""
        item = self._publish_of(ref, message)
        if not self._transport.connected:
            raise MailboxFull(
                f"node {self._me.node} is not connected to NATS right now; message to durable "
                f"actor {ref.name!r} not sent",
                message,
            )
        if not self.publisher.admit(item):
            raise MailboxFull(
                f"{self.publisher.capacity} durable messages of node {self._me.node} await "
                f"their PubAck; message to durable actor {ref.name!r} not sent",
                message,
            )

    async def flush(self, ref: DurableRef[Any], timeout: float | None) -> None:
        """`DurableRef.flush`: wait for the outcome of the ref's earlier sends.

        Cancellation: only the wait is abandoned; the messages are stored all the same.
        """
        await self._transport.call(self.publisher.flush(ref, timeout))

    def blocking_flush(self, ref: DurableRef[Any], timeout: float | None) -> None:
        """`DurableRef.blocking_flush`, from a plain thread."""
        ensure_plain_thread()
        self._transport.blocking(self.publisher.flush(ref, timeout))

    @property
    def published(self) -> int:
        """Durable sends of this node stored by JetStream (their PubAck came)."""
        return self.publisher.published

    @property
    def retried(self) -> int:
        """Durable publishes made again (a missing PubAck, JetStream unavailable)."""
        return self.publisher.retried

    @property
    def deduplicated(self) -> int:
        """Publishes JetStream reported as duplicates of a stored message."""
        return self.publisher.deduplicated

    # -- names ----------------------------------------------------------------------------

    @property
    def durable_stream(self) -> str:
        """The JetStream stream of this cluster prefix's durable mailboxes."""
        return f"{self._me.prefix}_DURABLE"

    def _msg_id(self, number: int) -> str:
        # The incarnation keeps a restarted node's ids apart.
        return f"{self._me.node}.{self._me.incarnation}.{number}"

    def _jetstream(self) -> Any:
        if self._js is None:
            client = self._transport.client
            if client is None:
                raise ActorStopped(f"node {self._me.node} is leaving the cluster")
            # nats-py leaves jetstream()'s options untyped: call it through Any.
            jetstream: Any = client.jetstream  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            self._js = jetstream(timeout=max(1.0, self._transport.connect_timeout))
        return self._js

    async def _ensure_stream(self, *, update: bool) -> None:
        """Create the stream if it is missing; ``update``: also bring its settings up to date."""
        if self._stream_ready and not update:
            return
        if self._stream_lock is None:
            self._stream_lock = asyncio.Lock()
        async with self._stream_lock:
            if self._stream_ready and not update:
                return
            from nats.js.api import RetentionPolicy, StorageType, StreamConfig
            from nats.js.errors import BadRequestError

            js = self._jetstream()
            config = StreamConfig(
                name=self.durable_stream,
                subjects=[self._me.durable_subject("*")],
                retention=RetentionPolicy.WORK_QUEUE,
                storage=StorageType.FILE,
                duplicate_window=self.options.dedup_window,
                # Room for the headers (the message id) on top of the largest frame.
                max_msg_size=self._limits.max_message_size + _HEADROOM,
            )
            try:
                await js.add_stream(config)
            except BadRequestError as error:
                if error.err_code != _ALREADY_IN_USE:
                    raise
                if update:  # another node made it with other settings: ours win
                    await js.update_stream(config)
            self._stream_ready = True

    # -- sending ----------------------------------------------------------------------------

    def _publish_of(self, ref: DurableRef[Any], message: object) -> Publish:
        """Check and encode in the caller's thread; the id is fixed here, for every attempt."""
        out = self._outbox.frames.prepare(ref, TELL, message, None)
        out.subject = self._me.durable_subject(ref.name)
        # Node-wide, not per ref: a ref may be collected and made again, and its new counter
        # would reuse ids still inside the duplicate window (the stream would drop new
        # messages as copies).
        with self._me.lock:
            number = next(self._durable_ids)
        return Publish(ref, out, number)

    def mailboxes(self) -> list[tuple[str, str, int]]:
        """(name, actor path, messages fetched and not yet settled) of each consumer. Loop only."""
        return [(c.name, c.export.path, len(c.pending)) for c in self._consumers]

    # -- receiving --------------------------------------------------------------------------

    async def register(self, name: str, id: int) -> None:
        """Make sure of the stream and the consumer, start fetching, then publish the name."""
        export = self._registry.exported(id)
        if export is None or self._transport.client is None:
            raise ActorStopped(f"actor {name} stopped before it could be made durable")
        consumer = _Consumer(name, export)
        try:
            await self._ensure_stream(update=True)
            consumer.sub = await self._bind(name)
        except Exception as error:
            raise ClusterError(
                f"node {self._me.node}: cannot set up the durable mailbox of {name!r} on "
                f"JetStream (is JetStream enabled on the server, -js?): {_describe(error)}"
            ) from error
        task = self._transport.own(self._consume(consumer))
        export.tasks.append(task)
        self._consumers.add(consumer)
        task.add_done_callback(lambda _: self._consumers.discard(consumer))
        await self._inbound.register(name, id)

    async def leave(self) -> None:
        """Let the publish window be stored; stop fetching; let fetched messages' handlers
        finish and ack.

        The node leaves before its actors stop (`ActorSystem.shutdown`), so they are still
        handling; an ack that could no longer be sent would make the next owner handle the
        message a second time.
        """
        # Sends that returned are stored first (or become dead letters, counted).
        await self.publisher.close(min(self.ack_timeout, _LEAVE_WAIT))
        self._leaving = True
        settling: set[asyncio.Task[None]] = set()
        for consumer in list(self._consumers):
            for task in consumer.export.tasks:
                task.cancel()
            settling |= consumer.settling
        if settling:
            wait = min(self.options.ack_wait, _LEAVE_WAIT)
            await asyncio.wait(settling, timeout=wait)
        # Membership's leave, right after, flushes the acks with the leave notice.

    async def _bind(self, name: str) -> Any:
        """Create (or update) the durable consumer of ``name`` and a pull subscription to it."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = self._jetstream()
        config = ConsumerConfig(
            name=name,
            durable_name=name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.options.ack_wait,
            max_deliver=self.options.max_deliver,
            max_ack_pending=self.options.window,
            filter_subject=self._me.durable_subject(name),
        )
        await js.add_consumer(self.durable_stream, config)
        return await js.pull_subscribe_bind(durable=name, stream=self.durable_stream)

    async def _consume(self, consumer: _Consumer) -> None:
        """Fetch and deliver, in stream order, at most ``durable_window`` at a time."""
        from nats.js.errors import APIError

        path = consumer.export.cell.path
        delay = 0.05
        try:
            # Leaving ends the loop even where nats-py's fetch swallowed the cancellation
            # `leave` sent (it would fetch again on a closed connection, then be destroyed
            # pending as the loop closes).
            while not self._leaving:
                try:
                    if consumer.sub is None:
                        await self._ensure_stream(update=True)
                        consumer.sub = await self._bind(consumer.name)
                    room = self.options.window - len(consumer.pending)
                    if room <= 0:
                        consumer.freed.clear()
                        await consumer.freed.wait()
                        continue
                    if not self._transport.connected:
                        # Pull requests made now would only pile up in the client's buffer.
                        await asyncio.sleep(0.05)
                        continue
                    batch = await consumer.sub.fetch(room, timeout=_FETCH_WAIT)
                except TimeoutError:
                    continue  # nothing to fetch (or no answer): ask again
                except Exception as error:
                    if isinstance(error, APIError):
                        # The consumer or the stream is gone (a broker with fresh storage):
                        # make them again before the next fetch.
                        old, consumer.sub = consumer.sub, None
                        if old is not None:
                            with contextlib.suppress(Exception):
                                await old.unsubscribe()
                    self._transport.throttle.warn(
                        "durable-fetch",
                        "node %s: fetching for durable actor %s failed, retrying: %s",
                        self._me.node,
                        path,
                        _describe(error),
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                delay = 0.05
                for msg in batch:
                    if not await self._deliver_durable(consumer, msg):
                        return  # the actor is gone: what it did not ack is redelivered
        finally:
            sub, consumer.sub = consumer.sub, None
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _deliver_durable(self, consumer: _Consumer, msg: Msg) -> bool:
        """Check, decode and enqueue one fetched message; False once the actor is gone."""
        export = consumer.export
        cell = export.cell
        try:
            metadata = msg.metadata
            seq = metadata.sequence.stream
            attempt = metadata.num_delivered
        except Exception as error:  # not a JetStream delivery: nothing to ack
            self._transport.reject(f"durable actor {cell.path}", error)
            return True
        if attempt > 1:
            self.redelivered += 1
        if seq in consumer.handled or seq in consumer.pending:
            # Handled (or being handled) here already; only the ack was lost.
            if seq in consumer.handled:
                await _settle(msg.ack())
            return True
        try:
            envelope = self._inbound.open(msg.data)
            if envelope.kind != TELL:
                raise WireError(f"a durable mailbox takes tells only, got kind {envelope.kind}")
            message = self._inbound.decode_body(export, envelope)
            if type(message) not in cell.admitted:
                cell.admit(message)
        except (*MALFORMED, MessageTypeError, NotSendableError) as error:
            # Malformed or not for this actor: no attempt can ever succeed.
            self._transport.reject(f"durable actor {cell.path}", error)
            await _settle(msg.term())
            return True
        reply = oneshot()
        item = Ask(remote_message(cell.system, message, envelope.trace, asked=False), reply)
        # In stream order into the FIFO mailbox; a full mailbox holds up the fetching.
        if await deliver(cell, item) != ENQUEUED:
            return False
        consumer.pending.add(seq)
        settle = self._transport.own(
            self._settle_durable(consumer, msg, seq, attempt, message, reply)
        )
        consumer.settling.add(settle)
        settle.add_done_callback(consumer.settling.discard)
        return True

    async def _settle_durable(
        self,
        consumer: _Consumer,
        msg: Msg,
        seq: int,
        attempt: int,
        message: object,
        reply: Any,
    ) -> None:
        """Wait for the handler, then ack (done), nak (retry later) or term (poison)."""
        waiting: asyncio.Future[Any] = asyncio.ensure_future(reply.wait(None))
        # Tell the server the message is being worked on, well within each ack_wait, so a
        # long handler (or a long queue ahead of it) does not get it redelivered meanwhile.
        beat = max(0.05, self.options.ack_wait / 3)
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=beat)
                if done:
                    break
                await _settle(msg.in_progress())
            try:
                waiting.result()
            except ActorStopped:
                return  # stopped for good: not acked, redelivered to its next incarnation
            except Exception as error:
                await self._failed(consumer, msg, attempt, message, error)
                return
            consumer.remember(seq)
            await _settle(msg.ack())
            self.handled += 1
        finally:
            if not waiting.done():
                waiting.cancel()
            consumer.pending.discard(seq)
            consumer.freed.set()

    async def _failed(
        self, consumer: _Consumer, msg: Msg, attempt: int, message: object, error: Exception
    ) -> None:
        path = consumer.export.cell.path
        if attempt >= self.options.max_deliver:
            await _settle(msg.term())
            self.terminated += 1
            logger.warning(
                "node %s: durable actor %s failed on %s %d times (%s: %s); giving up on it",
                self._me.node,
                path,
                type(message).__qualname__,
                attempt,
                type(error).__name__,
                error,
                extra=consumer.export.cell.log_fields(message),
            )
            system = self._registry.system
            if system is not None:
                system.dead_letters.publish(path, [message], "failed")
            return
        delay = min(self.options.retry_delay * 2 ** (attempt - 1), _RETRY_CAP)
        await _settle(msg.nak(delay=delay))


async def _settle(acknowledgement: Any) -> None:
    """Send an ack, nak, term or progress; a lost one is covered by redelivery (ack_wait)."""
    with contextlib.suppress(Exception):
        await acknowledgement


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
