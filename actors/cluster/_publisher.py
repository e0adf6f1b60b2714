"""Pipelined durable publishes: this node's window of JetStream publishes awaiting a PubAck.

A durable `send` does not wait for its PubAck. It is *admitted* into this node's window
(at most ``durable_outstanding`` messages accepted and not yet settled, node-wide) and
returns; the cluster loop publishes it and settles it when its PubAck comes. The design:

* **Admission** (any thread): `Publisher.admit` takes a slot under the lock and appends
  the message to ``_posted``; the first poster of a burst schedules one drain on the
  cluster loop, which moves what was posted, in posting order, to the loop's FIFO. So one
  caller's sends keep its order. A full window: `send` waits on the loop for a slot
  (`admit_waiting`, bounded by its timeout), `try_send` fails fast.
* **Bursts, not a sliding window.** The pump publishes everything queued (up to the window,
  and at most `_BURST_BYTES`) as one *burst*: each message with its ``Nats-Msg-Id`` and a
  reply subject of its own (``<inbox>.d.<number>``), all in one go, so nats-py hands the
  burst to the socket in one write (a burst stays well below nats-py's write buffer,
  ``pending_size``, 2 MiB by default: a buffer under twice `_BURST_BYTES` could be flushed
  mid-burst, and weaken the order below across a restart). It publishes the next burst only
  once every message of this one is settled or due to be published again. Why: a server
  killed mid-burst stores a *prefix* of what it read (it handles one connection's messages
  in order), and loses the rest. Had a later burst been published meanwhile, nats-py could
  keep it in its reconnect buffer and flush it after the reconnect, storing it *before* the
  lost tail of the earlier one is published again. With one burst at a time, what is
  published again is always the oldest, so a sender's messages are stored in the order sent
  across a broker restart too. The cost is one round trip per burst, not per message: a busy
  producer's messages gather into the next burst meanwhile, and the throughput tends to the
  server's.
* **Retries.** A message whose PubAck says JetStream is unavailable (503, no stream), or
  that got no PubAck while none of its burst's came for `PUBLISH_TRY` seconds (a lost
  reply, a broker restart), or whose connection dropped (a reconnect), is published again
  with the same id, in order with the rest of its burst that is not settled, before
  anything newer, after a short pause (or once reconnected); the stream's
  duplicate window drops the copies (the PubAck then says ``duplicate``). A copy is never
  published once the duplicate window has passed since the first attempt.
* **Outcome** of every admitted message: *stored* (its PubAck: counted in ``published``,
  ``deduplicated`` for a copy), or *given up on*, which is counted (``undelivered``),
  logged and published as a dead letter (reason ``"undelivered"``) on this node's system:
  JetStream refused it for good (a limit, a bad request), no PubAck within ``ack_timeout``
  of its admission (or the duplicate window of its first attempt: it may or may not be
  stored), or this node left before it was stored (`close` waits for the window first).
  `flush` waits for the outcome of a ref's earlier messages and raises the failure of one
  given up on.
* **The one reordering left**: JetStream refusing a message as unavailable (503) while it
  stores a later one of the same burst (a JetStream cluster electing a stream leader
  mid-burst). The refused one is stored after those, at most one burst (the window) later.

Thread rules: the lock guards ``_admitted``, ``_posted``, ``_draining`` and ``_closed``;
everything else is loop only (the cluster loop).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._errors import ActorStopped, SendTimeout
from ._transport import logger, subscribe
from ._wire import WireError

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._frames import Outbound
    from ._options import DurableOptions
    from ._registry import Registry
    from ._remote import DurableRef
    from ._transport import Transport

__all__ = ("PUBLISH_TRY", "Publish", "Publisher")

PUBLISH_TRY: Final = 2.0
"""Seconds without any PubAck after which a burst's missing ones are published again."""

_BURST_BYTES: Final = 256 * 1024  # well below nats-py's write buffer: one write per burst
_PAUSE_FIRST: Final = 0.05  # seconds before a refused burst is published again, doubling
_PAUSE_MAX: Final = 0.5
_UNAVAILABLE: Final = (None, 500, 503, 404)  # JetStream statuses worth retrying (404: no stream)


class _ApiError(msgspec.Struct):
    code: int | None = None
    err_code: int | None = None
    description: str = ""


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish: stored (``seq``), or an ``error``."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_PUBACK: Final = msgspec.json.Decoder(_PubAck)


class Publish:
    """One admitted durable message: checked, encoded, with its id fixed for every attempt."""

    __slots__ = ("admitted", "first", "number", "out", "ref", "retry", "settled")

    def __init__(self, ref: DurableRef[Any], out: Outbound, number: int) -> None:
        self.ref = ref
        self.out = out
        self.number = number  # node-wide: its message id and its reply token
        self.admitted = 0.0  # when a slot was taken (ack_timeout counts from it)
        self.first: float | None = None  # the first attempt (the duplicate window's start)
        self.retry = False  # its PubAck asked for another attempt
        self.settled = False


class _Flush:
    """A `Publisher.flush` waiting for the messages of one ref admitted before it."""

    __slots__ = ("future", "numbers", "ref")

    def __init__(
        self, ref: DurableRef[Any], numbers: set[int], future: asyncio.Future[None]
    ) -> None:
        self.ref = ref
        self.numbers = numbers  # those not settled yet: one settle costs O(flushes waiting)
        self.future = future


class Publisher:
    """This node's window of durable publishes (see the module docstring).

    Example:
        ```python
        publisher = Publisher(transport, registry, options, 30.0, ensure_stream, msg_id)
        publisher.admit(Publish(ref, out, number))  # False: the window is full
        await publisher.flush(ref, None)  # every earlier message of ref is stored
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        options: DurableOptions,
        ack_timeout: float,
        ensure_stream: Any,
        msg_id: Any,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._options = options
        self._ack_timeout = ack_timeout
        self._ensure_stream = ensure_stream  # async () -> None
        self._msg_id = msg_id  # (number) -> the Nats-Msg-Id
        self.capacity = options.outstanding
        self._lock = threading.Lock()
        self._admitted = 0  # admitted and not settled (guarded by the lock)
        self._posted: collections.deque[Publish] = collections.deque()  # guarded by the lock
        self._draining = False  # a drain is scheduled (guarded by the lock)
        self._closed = False  # the node left: nothing more is admitted (guarded by the lock)
        # Loop only.
        self._queue: collections.deque[Publish] = collections.deque()  # not yet published
        # Published, to be published again before anything newer, in the order first sent.
        self._again: collections.deque[Publish] = collections.deque()
        self._burst: list[Publish] = []  # the burst published last, oldest first
        self._flight: dict[int, Publish] = {}  # its messages awaiting a PubAck, by number
        self._answers = 0  # PubAcks received: a burst whose answers keep coming is not late
        self._wake: asyncio.Event | None = None  # something to publish
        self._landed: asyncio.Event | None = None  # the burst in flight is settled
        self._room: list[asyncio.Future[None]] = []  # sends waiting for a slot
        self._flushes: list[_Flush] = []
        # The first failure of each ref's messages given up on since its last flush.
        self._failures: weakref.WeakKeyDictionary[DurableRef[Any], Exception] = (
            weakref.WeakKeyDictionary()
        )
        self._idle: asyncio.Event | None = None  # set once nothing is pending (`close`)
        self._pump: asyncio.Task[None] | None = None
        self._subscribed = False
        self.published = 0
        self.retried = 0
        self.deduplicated = 0
        self.undelivered = 0
        transport.on_reconnected.append(self._on_reconnected)

    @property
    def outstanding(self) -> int:
        """Messages admitted and not yet settled. Any thread."""
        with self._lock:
            return self._admitted

    # -- admission (any thread) ---------------------------------------------------------------

    def admit(self, item: Publish) -> bool:
        """Take a slot for ``item`` and post it to the loop; False if the window is full.

        Raises:
            ActorStopped, SystemNotRunning: the node is leaving (nothing admitted).
        """
        with self._lock:
            if self._closed:
                raise ActorStopped(
                    f"node {self._me.node} left the cluster; durable message to "
                    f"{item.ref.name!r} not sent",
                    item.out.message,
                )
            if self._admitted >= self.capacity:
                return False
            self._admitted += 1
            item.admitted = time.monotonic()  # under the lock: the FIFO is in this order
            self._posted.append(item)
            scheduled, self._draining = self._draining, True
        if not scheduled:
            try:
                self._transport.post(self._drain_posted)
            except Exception:  # the node is leaving: this message is refused, not posted
                with self._lock:
                    self._draining = False
                    self._posted.remove(item)
                    self._admitted -= 1
                raise
        return True

    async def admit_waiting(self, item: Publish, wait: float | None) -> None:
        """Admit ``item`` once the window has room, within ``wait`` seconds. Loop only.

        Raises:
            SendTimeout: no room within ``wait`` (nothing admitted).
            ActorStopped: the node is leaving (nothing admitted).
        """
        self._drain_posted()  # the caller's earlier messages go first
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            with self._lock:
                closed = self._closed or self._transport.closing
                admitted = not closed and self._admitted < self.capacity
                if admitted:
                    self._admitted += 1
            if closed:
                raise ActorStopped(f"node {self._me.node} is leaving the cluster", item.out.message)
            if admitted:
                item.admitted = time.monotonic()
                self._enqueue(item)
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SendTimeout(
                    f"{self.capacity} durable messages of node {self._me.node} await their "
                    f"PubAck; {type(item.out.message).__qualname__} for durable actor "
                    f"{item.ref.name!r} not sent within {wait} s",
                    item.out.message,
                )
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(room)
            try:
                await asyncio.wait_for(room, left)
            except TimeoutError:
                continue  # checked once more, then refused
            finally:
                if room in self._room:
                    self._room.remove(room)

    def _drain_posted(self) -> None:
        """Move the posted messages, in the order they were posted, to the loop's FIFO."""
        with self._lock:
            batch, self._posted = self._posted, collections.deque()
            self._draining = False
        for item in batch:
            self._enqueue(item)

    def _enqueue(self, item: Publish) -> None:
        self._queue.append(item)
        if self._pump is None:
            self._wake = asyncio.Event()
            self._landed = asyncio.Event()
            self._pump = self._transport.own(self._run())
        assert self._wake is not None
        self._wake.set()

    # -- waiting for the outcome (loop only) --------------------------------------------------

    async def flush(self, ref: DurableRef[Any], wait: float | None) -> None:
        """Wait until every message of ``ref`` admitted before the call is settled.

        Raises:
            SendTimeout: not all settled within ``wait`` (they may still be stored).
            SendTimeout, WireError, ActorStopped: the failure of the first message of
                ``ref`` given up on since its last flush (reported once).
        """
        self._drain_posted()
        pending = [p for p in self._pending() if p.ref is ref]
        if not pending:
            self._raise_failure(ref)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = _Flush(ref, {p.number for p in pending}, future)
        self._flushes.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), wait)
        except TimeoutError:
            raise SendTimeout(
                f"the durable messages sent to {ref.name!r} were not all stored by JetStream "
                f"within {wait} s; they may still be"
            ) from None
        finally:
            if waiter in self._flushes:
                self._flushes.remove(waiter)
        self._raise_failure(ref)

    def _raise_failure(self, ref: DurableRef[Any]) -> None:
        failure = self._failures.pop(ref, None)
        if failure is not None:
            raise failure

    def _pending(self) -> list[Publish]:
        """Every admitted message not yet settled, oldest first (loop only)."""
        unsettled = [p for p in self._burst if not p.settled]
        return [*unsettled, *self._again, *self._queue]

    def _check_flushes(self, item: Publish) -> None:
        for waiter in [f for f in self._flushes if f.ref is item.ref]:
            waiter.numbers.discard(item.number)
            if not waiter.numbers:
                self._flushes.remove(waiter)
                if not waiter.future.done():
                    waiter.future.set_result(None)

    # -- the pump (loop only) ---------------------------------------------------------------

    async def _run(self) -> None:
        """Publish bursts, one at a time, oldest first."""
        wake, landed = self._wake, self._landed
        assert wake is not None
        assert landed is not None
        pause = _PAUSE_FIRST
        # The flag as well as the cancellation `close` sends: asyncio.wait_for (3.11) can
        # swallow a cancellation that arrives as its inner wait completes.
        while not self._closed:
            if not self._again and not self._queue:
                wake.clear()
                await wake.wait()
                continue
            client = self._transport.client
            if client is None or not client.is_connected:
                # Published now, it would wait in nats-py's reconnect buffer and could
                # overtake what is published again after the reconnect.
                self._give_up_expired()
                await asyncio.sleep(0.02)
                continue
            try:
                await self._ensure_stream()
                if not self._subscribed:
                    await subscribe(client, f"{self._me.inbox}.d.*", cb=self._on_puback)
                    self._subscribed = True
            except Exception as error:
                self._warn("no JetStream stream right now", error)
                self._give_up_expired()
                await asyncio.sleep(pause)
                pause = min(pause * 2, _PAUSE_MAX)
                continue
            burst = self._next_burst()
            if not burst:
                continue
            landed.clear()
            self._burst = burst
            await self._publish(client, burst)
            self._check_landed()
            await self._await_landing(landed)
            again = [p for p in burst if not p.settled]
            for p in again:
                self._flight.pop(p.number, None)
            self._burst = []
            if again:
                self._again.extendleft(reversed(again))
                refused = any(p.retry for p in again)
                if refused:  # JetStream said unavailable: pause before the next attempt
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, _PAUSE_MAX)
            else:
                pause = _PAUSE_FIRST

    async def _await_landing(self, landed: asyncio.Event) -> None:
        """Wait for the burst's PubAcks while they keep coming (a busy server is slow, not
        deaf); give up after `PUBLISH_TRY` seconds without one, or at a reconnect."""
        while True:
            answers = self._answers
            try:
                await asyncio.wait_for(landed.wait(), PUBLISH_TRY)
                return
            except TimeoutError:
                if self._answers == answers or not self._transport.connected:
                    return

    def _next_burst(self) -> list[Publish]:
        """The oldest messages to publish: those to publish again first, then new ones."""
        self._give_up_expired()
        burst: list[Publish] = []
        size = 0
        sources = (self._again, self._queue)
        for source in sources:
            while source:
                length = len(source[0].out.data)
                if burst and size + length > _BURST_BYTES:
                    break
                burst.append(source.popleft())
                size += length
            if source:  # this one is not empty: the burst is full
                break
        return burst

    async def _publish(self, client: Any, burst: list[Publish]) -> None:
        """Publish ``burst`` in one go; stop at a disconnect (the rest goes with the retries)."""
        now = time.monotonic()
        inbox = f"{self._me.inbox}.d."
        for item in burst:
            if not client.is_connected:
                return
            if item.first is None:
                item.first = now
            else:
                self.retried += 1
            item.retry = False
            self._flight[item.number] = item
            headers = {"Nats-Msg-Id": self._msg_id(item.number)}
            try:
                await client.publish(
                    item.out.subject, item.out.data, reply=f"{inbox}{item.number}", headers=headers
                )
            except Exception as error:
                self._flight.pop(item.number, None)
                self._warn("publish failed", error)
                return

    async def _on_puback(self, msg: Msg) -> None:
        """A PubAck (or a refusal) for the message numbered by the reply subject's token."""
        try:
            number = int(msg.subject.rsplit(".", 1)[-1])
        except ValueError:
            return
        item = self._flight.get(number)
        if item is None or item.settled:
            return  # a late answer to an earlier attempt, or to one given up on
        self._answers += 1
        headers = msg.headers
        if headers is not None and not msg.data and headers.get("Status") == "503":
            item.retry = True  # no responders: JetStream is not there right now
        else:
            try:
                ack = _PUBACK.decode(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                self._transport.reject(f"a PubAck for durable actor {item.ref.name!r}", error)
                return  # not settled: published again after PUBLISH_TRY
            if ack.error is None:
                self._stored(item, ack.duplicate)
            elif ack.error.code in _UNAVAILABLE:
                item.retry = True
            else:
                # Refused for good (a bad request, a limit): another attempt cannot help.
                what = type(item.out.message).__qualname__
                self._give_up(
                    item,
                    WireError(
                        f"JetStream refused {what} for durable actor {item.ref.name!r}: "
                        f"{ack.error.description or ack.error.code}"
                    ),
                )
        if item.retry:  # published again with the unsettled rest of its burst, in order
            self._flight.pop(number, None)
        self._check_landed()

    def _check_landed(self) -> None:
        if not self._flight and self._landed is not None:
            self._landed.set()

    def _on_reconnected(self) -> None:
        # The PubAcks of the burst in flight may be lost: do not wait PUBLISH_TRY for them.
        if self._flight and self._landed is not None:
            self._landed.set()

    # -- settling (loop only) ---------------------------------------------------------------

    def _stored(self, item: Publish, duplicate: bool) -> None:
        self.published += 1
        if duplicate:
            self.deduplicated += 1
        self._settle(item)

    def _give_up(self, item: Publish, failure: Exception) -> None:
        self._failures.setdefault(item.ref, failure)
        self.undelivered += 1
        self._transport.throttle.warn(
            "durable-undelivered",
            "node %s: a durable message to %r was not stored: %s",
            self._me.node,
            item.ref.name,
            failure,
        )
        system = self._registry.system
        if system is not None:
            system.dead_letters.publish(item.ref.path, [item.out.message], "undelivered")
        self._settle(item)

    def _settle(self, item: Publish) -> None:
        item.settled = True
        self._flight.pop(item.number, None)
        with self._lock:
            self._admitted -= 1
        rooms, self._room = self._room, []
        for room in rooms:
            if not room.done():
                room.set_result(None)
        if self._flushes:
            self._check_flushes(item)
        if self._idle is not None and not self._pending():
            self._idle.set()

    def _give_up_expired(self) -> None:
        """Give up on what waited past ``ack_timeout``, or whose copy would not be dropped."""
        now = time.monotonic()
        window = self._options.dedup_window
        expired = [
            p
            for p in self._again
            if now - p.admitted > self._ack_timeout or now - (p.first or now) > window
        ]
        for item in expired:
            self._again.remove(item)
        # The queue is in admission order, never attempted: only its head can have expired.
        queue = self._queue
        while queue and now - queue[0].admitted > self._ack_timeout:
            expired.append(queue.popleft())
        for item in expired:
            what = type(item.out.message).__qualname__
            self._give_up(
                item,
                SendTimeout(
                    f"JetStream did not confirm {what} for durable actor {item.ref.name!r} "
                    f"within {self._ack_timeout} s; it may or may not have been stored",
                    item.out.message,
                ),
            )

    def _warn(self, what: str, error: BaseException) -> None:
        text = str(error)
        described = f"{type(error).__name__}: {text}" if text else type(error).__name__
        self._transport.throttle.warn(
            "durable-publish",
            "node %s: durable publish: %s, retrying: %s",
            self._me.node,
            what,
            described,
        )

    async def close(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for the window to be stored, then give up on the rest.

        Called as the node leaves (loop only): a message still in the window becomes a dead
        letter here, as the docs promise, rather than vanishing with the connection.
        """
        with self._lock:
            self._closed = True
        rooms, self._room = self._room, []
        for room in rooms:  # the sends waiting for room learn that the node is leaving
            if not room.done():
                room.set_result(None)
        self._drain_posted()
        if self._pending() and self._pump is not None:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), wait)
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.wait({self._pump}, timeout=1.0)
        self._drain_posted()
        left = self._pending()
        self._burst = []
        self._flight.clear()
        self._again.clear()
        self._queue.clear()
        for item in left:
            self._give_up(
                item,
                ActorStopped(
                    f"node {self._me.node} left the cluster before JetStream stored "
                    f"{type(item.out.message).__qualname__} for durable actor "
                    f"{item.ref.name!r}",
                    item.out.message,
                ),
            )
        if left:
            logger.warning(
                "node %s left with %d durable messages not stored (dead letters)",
                self._me.node,
                len(left),
            )
