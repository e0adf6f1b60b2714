"""Events across nodes: `system.events` spanning the cluster.

When a node attaches, `EventRelay` bridges the system's `EventBus` (`EventBus.bridge`):
every event published on this node is also handed to `EventRelay.forward`, which checks
and encodes it in the publisher's thread and queues it; the relay's pump sends the queue
on the node's own subject ``p.events.<node>``, as few frames as fit (a batch is whatever
queued up while the previous frame went out: no timer, no added delay). Every node
subscribes to ``p.events.*`` and hands the events of the others to
`EventBus.publish_local`: same routing by class (the MRO rule), same policies, counts
local to the node; an event received is never forwarded again, so there are no loops, and
a node skips its own subject, so its events are not delivered twice to itself.

Order: events published on one node go through one FIFO (the queue, appended under a
lock, so each publishing thread's order is kept), one connection and one subject, and
each receiver serves its one subscription in arrival order; so the events of one
publisher reach the subscribers of every other node in publish order. Each frame carries
the sequence number of its first event (per node incarnation): a receiver counts the
events it missed (`EventRelay.lost`: frames lost to a reconnect or a slow consumer), and
refuses a frame that goes backwards.

At most once, as core NATS: an event is not stored, nor acknowledged, nor sent again. A
``wait`` subscriber slows the receiving node's events subscription (all its publishers),
up to the subscription's pending limit, beyond which the NATS client drops frames.

What cannot cross is refused for the cluster, and still delivered locally: a type with a
field typed `ActorRef` (`local_only_field`), a value msgspec cannot encode, an event
larger than ``max_message_size``. Each refusal is counted (`EventRelay.refused`) and the
first of each event class is logged with its reason. Events the relay could not send
(its queue full, the node leaving, the connection refusing) are counted as dropped.

Interest: every event is sent to the cluster (nodes do not exchange what they subscribe
to); a receiver decodes an event only if a local subscriber would get it (`EventBus.wants`),
so an event nobody on a node wants costs that node a name lookup. The event's class must
be known on the receiving node by its wire name: registered (`register_message`, or on
first use), or a subscribed class or a subclass of one (found by its default name).

`EventRelay` is handed the transport (client, loop, counters of rejected frames), the
registry (the system and its bus; encoding events, refs in them included, and decoding
them), inbound (a local ref inside an event is subscribed before the event leaves) and
the limits. Loop only, except `forward` and the counters it writes (under ``_lock``).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from typing import TYPE_CHECKING, Final

import msgspec

from .._errors import NotSendableError, SystemNotRunning
from ._tracecontext import remote_context, traceparent
from ._transport import SUB_PENDING_MSGS, logger, subscribe
from ._wire import (
    DECODING,
    MALFORMED,
    WIRE_VERSION,
    MessageTooLarge,
    WireError,
    check_frame,
    decoder_for,
    known_name,
    message_name,
    message_type,
)

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from .._events import EventBus
    from ._inbound import Inbound
    from ._options import Limits
    from ._registry import Registry
    from ._transport import Transport

__all__ = ("QUEUE_MAX", "Event", "EventRelay", "Events", "frame_of")

QUEUE_MAX: Final = 65536  # events queued for the cluster at most; beyond, dropped
_FRAME_OVERHEAD: Final = 64  # bytes of a frame besides its events (version, incarnation, seq)
_ITEM_OVERHEAD: Final = 8  # bytes of one event besides its name and body
_CLASSES_MAX: Final = 4096  # wire names remembered by the subclass search


class Event(msgspec.Struct, array_like=True, frozen=True):
    """One event on the wire: its class's wire name and its encoded value.

    ``trace``: the W3C ``traceparent`` of the publisher's span when its system traces
    (a trailing field with a default, as `Envelope.trace`), else "".
    """

    type: str
    body: msgspec.Raw
    trace: str = ""


class Events(msgspec.Struct, array_like=True, frozen=True):
    """A frame on ``p.events.<node>``: events ``seq``, ``seq + 1``, ... of one incarnation."""

    version: int
    incarnation: str
    seq: int
    events: list[Event]


class _Queued:
    """An event checked and encoded by `EventRelay.forward`, waiting for the pump."""

    __slots__ = ("body", "exports", "name", "trace")

    def __init__(self, name: str, body: bytes, exports: list[int], trace: str = "") -> None:
        self.name = name
        self.body = body
        self.exports = exports
        self.trace = trace  # the publisher's span, when tracing (see `Event.trace`)

    @property
    def size(self) -> int:
        return len(self.name) + len(self.body) + _ITEM_OVERHEAD


class EventRelay:
    """Sends this node's events to the cluster and hands the others' to the local bus.

    Example:
        ```python
        relay = EventRelay(transport, registry, inbound, Limits())
        await relay.listen(client)  # on the cluster loop: bridges system.events
        await relay.leave()  # unbridges, and sends what is still queued
        ```
    """

    def __init__(
        self, transport: Transport, registry: Registry, inbound: Inbound, limits: Limits
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._inbound = inbound
        self._limits = limits
        self._subjects = f"{self._me.prefix}.events."
        self._bus: EventBus | None = None
        # Guarded by _lock (written by publishers' threads): the queue, whether the pump
        # has been woken for it, the classes refused once (logged), and the counters.
        self._lock = threading.Lock()
        self._queue: collections.deque[_Queued] = collections.deque()
        self._waking = False
        self._logged: set[type] = set()
        self.refused = 0  # events that cannot cross (delivered locally only)
        self.dropped = 0  # events the relay could not send
        # Loop only.
        self._wakeup = asyncio.Event()
        self._sending = asyncio.Lock()
        self._seq = 1  # of the next event sent
        self._seen: dict[str, tuple[str, int]] = {}  # node -> (incarnation, next seq)
        self._classes: dict[str, tuple[frozenset[type], type | None]] = {}
        self._frames: msgspec.msgpack.Decoder[Events] = decoder_for(Events, None)
        self.published = 0  # events handed to NATS
        self.received = 0  # events received from other nodes
        self.lost = 0  # events of other nodes missed (gaps in their sequence)
        self.rejected = 0  # malformed frames and events from other nodes
        transport.on_teardown.append(self._unbridge)

    # -- sending (forward: any thread; the rest: loop only) --------------------------------

    async def listen(self, client: NatsClient) -> None:
        """Subscribe to the other nodes' events, start the pump, bridge the bus. Loop only."""
        system = self._registry.system
        assert system is not None, "Registry.bind was not called"
        await subscribe(
            client, f"{self._subjects}*", cb=self.on_events, pending_msgs_limit=SUB_PENDING_MSGS
        )
        self._transport.own(self._pump())
        self._bus = system.events
        system.events.bridge(self.forward)

    def forward(self, event: object) -> None:
        """Queue ``event`` for the other nodes (the bus's forwarder). Any thread; never raises.

        Called by `EventBus.publish` in the publisher's thread, after the event was found
        sendable: check it can cross and encode it here, queue it for the pump.
        """
        exports: list[int] = []
        try:
            name = message_name(type(event))
            body = self._registry.encode(event, exports)
        except Exception as error:  # a WireError mostly; a clash of wire names is a ValueError
            self._refuse(event, error)
            return
        item = _Queued(name, body, exports, traceparent(self._registry.system))
        if item.size + _FRAME_OVERHEAD > self._limits.max_message_size:
            self._refuse(
                event,
                MessageTooLarge(
                    f"it encodes to {len(body)} bytes, more than the limit of "
                    f"{self._limits.max_message_size}"
                ),
            )
            return
        wake = full = False
        with self._lock:
            if len(self._queue) >= QUEUE_MAX:
                self.dropped += 1
                full = True
            else:
                self._queue.append(item)
                wake, self._waking = not self._waking, True
        if full:
            self._transport.throttle.warn(
                "events-full",
                "node %s dropped an event for the cluster: %d events queued already",
                self._me.node,
                QUEUE_MAX,
            )
            return
        if wake:
            try:
                self._transport.post(self._wakeup.set)
            except SystemNotRunning:
                with self._lock:
                    self.dropped += len(self._queue)
                    self._queue.clear()

    def _refuse(self, event: object, error: BaseException) -> None:
        cls = type(event)
        with self._lock:
            self.refused += 1
            first = cls not in self._logged
            self._logged.add(cls)
        if first:
            logger.warning(
                "node %s: event %s cannot cross the cluster (%s); it is delivered on this "
                "node only (counted in ClusterStatistics.events_refused)",
                self._me.node,
                cls.__qualname__,
                error,
            )

    async def _pump(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._drain()

    async def _drain(self) -> None:
        """Send everything queued, in order, batched into frames. Loop only."""
        async with self._sending:
            while True:
                with self._lock:
                    batch, self._queue = self._queue, collections.deque()
                    if not batch:
                        self._waking = False
                        return
                for frame in self._batches(batch):
                    await self._send(frame)

    def _batches(self, queued: collections.deque[_Queued]) -> list[list[_Queued]]:
        """Consecutive events grouped into frames within ``max_message_size``."""
        room = self._limits.max_message_size - _FRAME_OVERHEAD
        frames: list[list[_Queued]] = []
        size = room + 1
        for item in queued:
            if size + item.size > room:
                frames.append([])
                size = 0
            frames[-1].append(item)
            size += item.size
        return frames

    async def _send(self, frame: list[_Queued]) -> None:
        client = self._transport.client
        seq = self._seq
        self._seq += len(frame)  # sent or not: a receiver counts what it missed
        events = [(item.name, item.body) for item in frame]
        data = frame_of(self._me.incarnation, seq, events, [item.trace for item in frame])
        try:
            if client is None:
                raise SystemNotRunning("not connected")
            for item in frame:
                for id in item.exports:
                    await self._inbound.ensure_subscribed(id)
            await client.publish(f"{self._subjects}{self._me.node}", data)
        except Exception as error:
            with self._lock:
                self.dropped += len(frame)
            self._transport.throttle.warn(
                "events-publish",
                "node %s could not publish %d events (%s: %s)",
                self._me.node,
                len(frame),
                type(error).__name__,
                error,
            )
            return
        self.published += len(frame)

    async def leave(self) -> None:
        """Stop forwarding, and send what is still queued (before the leave's flush)."""
        self._unbridge()
        await self._drain()

    def _unbridge(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.bridge(None)

    # -- receiving (loop only) ------------------------------------------------------------

    async def on_events(self, msg: Msg) -> None:
        """Hand the events of another node's frame to the local subscribers, in order."""
        node = msg.subject[len(self._subjects) :]
        if node == self._me.node:
            return  # our own, delivered locally when published
        try:
            check_frame(msg.data, self._limits.max_message_size, self._limits.max_depth)
            frame = self._frames.decode(msg.data)
            if frame.version != WIRE_VERSION:
                raise WireError(f"wire version {frame.version}, expected {WIRE_VERSION}")
            self._follow(node, frame)
        except MALFORMED as error:
            self._reject(node, error)
            return
        bus = self._bus
        self.received += len(frame.events)
        if bus is None:
            return
        for item in frame.events:
            cls = self._class_of(item.type, bus)
            if cls is None or not bus.wants(cls):
                continue  # nobody here could want it: not even decoded
            try:
                event = self._registry.decoder(cls).decode(item.body)
                with remote_context(self._registry.system, item.trace):
                    await bus.publish_local(event)
            except (*DECODING, TypeError, NotSendableError) as error:
                # TypeError: a class msgspec cannot decode into (not an event type).
                self._reject(node, error)

    def _follow(self, node: str, frame: Events) -> None:
        """Track ``node``'s sequence: count the events missed, refuse one going backwards."""
        if frame.seq < 1:
            raise WireError(f"sequence number {frame.seq}")
        last = self._seen.get(node)
        if last is not None and last[0] == frame.incarnation:
            if frame.seq < last[1]:
                raise WireError(f"events from seq {frame.seq} again (expected {last[1]})")
            self.lost += frame.seq - last[1]
        self._seen[node] = (frame.incarnation, frame.seq + len(frame.events))

    def _reject(self, node: str, error: BaseException) -> None:
        self.rejected += 1
        self._transport.reject(f"events of node {node}", error)

    def _class_of(self, name: str, bus: EventBus) -> type | None:
        """The local class of wire name ``name``: registered, or a subscribed class (or a
        subclass of one) whose default name it is.

        A subscription to ``object`` widens nothing here: walking every class of the process
        would let a peer have any class of a matching default name decoded (a dataclass's
        ``__post_init__`` runs). Its events arrive when their type is registered, or is
        (a subclass of) another subscribed class.
        """
        cls = message_type(name)
        if cls is not None:
            return cls
        subscribed = bus.subscribed_types()
        known = self._classes.get(name)
        if known is not None and known[0] == subscribed:
            return known[1]
        found = next(
            (
                c
                for base in subscribed
                if base is not object
                for c in _family(base)
                if known_name(c) == name
            ),
            None,
        )
        if len(self._classes) >= _CLASSES_MAX:
            self._classes.clear()
        self._classes[name] = (subscribed, found)
        return found


def _family(cls: type) -> list[type]:
    """``cls`` and its subclasses, transitively (each once)."""
    seen: dict[type, None] = {cls: None}
    stack = [cls]
    while stack:
        subs: list[type] = stack.pop().__subclasses__()
        for sub in subs:
            if sub not in seen:
                seen[sub] = None
                stack.append(sub)
    return list(seen)


def frame_of(
    incarnation: str,
    seq: int,
    events: list[tuple[str, bytes]],
    traces: list[str] | None = None,
) -> bytes:
    """An encoded `Events` frame (tests, and tools that publish events from outside);
    ``traces``: each event's ``traceparent`` (none: "")."""
    marks = traces if traces is not None else [""] * len(events)
    items = [
        Event(name, msgspec.Raw(body), trace)
        for (name, body), trace in zip(events, marks, strict=True)
    ]
    return msgspec.msgpack.encode(Events(WIRE_VERSION, incarnation, seq, items))
