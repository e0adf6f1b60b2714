"""`Nats`: the NATS transport behind ``ActorSystem(cluster=Nats(...))``.

`Nats` is the façade: the public constructor, the seam the core calls (`attach`,
`register`, `lookup`, `detach`), pools served under a name, and statistics. Its behaviour
comes from one part per concept, each an object of a private module that is handed its
collaborators when it is built (none inherits from another); `_Node` builds and joins
them. The object graph, collaborators in brackets:

* `Transport` [`Identity`]: the loop thread, the bridge, the NATS client.
* `Membership` [transport, `Replies`, the proxy table].
* `Registry` [transport, membership, the proxy table]; bound once attached to the system
  and to the two couriers below (the refs it makes carry them).
* `Inbound` [transport, registry].
* `Outbox` [transport, registry, inbound, membership, replies]: the courier of
  `RemoteRef` and `GroupRef`.
* `DurableMailboxes` [transport, registry, inbound, outbox]: the courier of a
  `DurableRef`'s tells.
* `EventRelay` [transport, registry, inbound]: ``system.events`` across nodes (bridged to
  the system's bus once joined).
* `Lanes` [transport, membership, the connect options, the outbox's cancel notices]: the
  ask lanes, a NATS connection per event loop that asks; the outbox takes them when it may.

The modules:

* ``_transport``: the cluster loop thread, the bridge from callers' threads (threads and
  single-writer rules are written there), the NATS connection, teardown.
* ``_membership``: heartbeats, leave and down notices, declaring nodes down.
* ``_registry``: local actors exported to other nodes, proxies of remote ones, and the
  encoding of refs into addresses and back.
* ``_inbound``: subscriptions of exported actors and served pools, the frames they get,
  and the replies they send.
* ``_outbound``: the outbox, the courier of remote refs, composed of one part per
  concept: ``_frames`` (checks and encoding in the caller's thread), ``_pump`` (one FIFO
  for every frame of the node, and the reply inbox), ``_requests`` (requests, "no
  responders", holds), ``_tells`` (pipelined tells, acknowledged sends, try_send credit),
  ``_asks`` (an ask's way out) and ``_lookup`` (public names).
* ``_durable``: durable mailboxes on JetStream (``spawn(durable=True)``): publishing into
  the stream, and one consumer per durable actor.
* ``_events``: the event bus across nodes: forwarding this node's events, handing the
  others' to the local subscribers.
* ``_lanes``: the ask lanes (a loop's own connection for its remote asks: no thread hop),
  and the rules that keep them in order with the cluster connection.

Options come grouped (``_options``: `Timeouts`, `Limits`, `Heartbeats`, `Reconnect`,
`Credentials`, `DurableOptions`); each part reads its own.

Subjects (``p`` is the prefix, default ``actors``):

* ``p.actor.<node>.<incarnation>.<id>``: one per exported actor (public, or a ref that
  travelled in a message); tells, tries, asks and probes. Id 0 is the node's own: whether
  one of its exports still exists, asked after a "no responders" (``_requests``,
  answered by ``_inbound``).
* ``p.name.<name>``: one per public name, in queue group ``p``: lookups, and every
  request of a `GroupRef`; several nodes serving one name (public actors, or pools served
  with `serve_pool`, routed by `_inbound_pool`) form a queue group, and the server hands
  each message to one of them. ``p.name.<name>.cancel``: the cancel notices of asks to
  that name, heard by every member (no queue group; ``_asking``).
* ``p.durable.<name>``: the durable mailbox of durable actor ``<name>``, stored in the
  JetStream stream ``<p>_DURABLE`` (not a core subscription: the owner pulls from it).
* ``p.events.<node>``: the events published on that node (`Events` frames, batched);
  every node subscribes to ``p.events.*`` and skips its own.
* ``p.hb.<node>``: heartbeats and leave notices. ``p.down.<node>``: an exported actor
  of that node stopped for good.
* ``_INBOX.p.<node>.<incarnation>.*``: replies to this node's requests;
  ``_INBOX.p.<node>.<incarnation>.l<n>.*``: replies to the asks of its ask lane ``<n>``.
* ``p.actor.<node>.<incarnation>.l<n>.<id>``: asks for exported actor ``<id>`` taken by
  ask lane ``<n>``, on the loop the actor lives on (an asker's hint says which, ``_lanes``).

Ordering: every outbound frame of a node goes through one FIFO (``_pump``), and each
exported actor has its own subscription served in arrival order (``_inbound``); so frames
from one sender to one actor are enqueued in the order sent. An ask that takes an ask lane
instead does so only when nothing of its ref is unanswered on the FIFO's connection
(``_lanes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import TYPE_CHECKING, Any, Final, TypeVar, Unpack

import msgspec

from .._errors import ActorStopped
from ._durable import DurableMailboxes
from ._events import EventRelay
from ._frames import check_accepts
from ._inbound import Inbound
from ._inspection import NodeInspector
from ._lanes import Lanes
from ._membership import Membership
from ._options import (
    TOKEN,
    Config,
    Credentials,
    DurableOptions,
    Heartbeats,
    Limits,
    NatsKeywords,
    Reconnect,
    Timeouts,
)
from ._outbound import Outbox
from ._registry import Registry
from ._remote import RemoteRef
from ._replies import Replies
from ._streams import RemoteStreams
from ._transport import ClusterError, Identity, Transport

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._inspect import NodeView
    from .._pool import Pool
    from .._ref import ActorRef, Ref
    from .._system import ActorSystem
    from ._remote import GroupRef, ProxyTable

__all__ = (
    "ClusterError",
    "ClusterStatistics",
    "Nats",
)

T = TypeVar("T")

_JOIN_FLOOR: Final = 1.0  # seconds joining may always take, whatever connect_timeout


class ClusterStatistics(msgspec.Struct, frozen=True):
    """Counters of one node's cluster transport, from `Nats.statistics`.

    Attributes:
        node: this node's name.
        connected: whether the NATS connection is up right now.
        members: the other nodes currently alive, by name.
        exported: local actors reachable from other nodes.
        rejected: inbound frames refused (malformed, unknown type, too large or deep).
        dropped: try_sends dropped by a full target here, and late or stray replies.
        reconnects: how many times the connection came back.
        durable_published: durable tells this node stored in JetStream (PubAck received).
        durable_retried: durable publish attempts repeated after a missing PubAck (the
            same message id: JetStream drops the copy if the first one was stored).
        durable_deduplicated: publishes that JetStream reported as duplicates of a stored
            message (a retry whose first attempt had been stored after all).
        durable_handled: durable messages handled here and acknowledged.
        durable_redelivered: deliveries to this node that were redeliveries (after a failed
            handler, a crashed node, or a lost acknowledgement).
        durable_terminated: durable messages given up on after ``durable_max_deliver``
            failed attempts (logged, and published as dead letters).
        durable_outstanding: durable sends of this node admitted and not yet stored
            (awaiting their PubAck; at most ``durable_outstanding``).
        durable_undelivered: durable sends that were never stored after their ``send``
            returned (refused by JetStream, no PubAck within ``ack_timeout``, the node
            leaving): logged and published as dead letters with the reason ``"undelivered"``.
        pipelined: remote tells that returned before their reply, within the credit.
        resent: frames of pipelined tells sent again (after "no responders", a lost reply,
            a reconnect or a gap); the receiver enqueues each one once.
        undelivered: pipelined tells that failed after their send had returned (the actor
            stopped, its node went down, its mailbox stayed full past the timeout): logged
            and published as dead letters with the reason ``"undelivered"``.
        events_published: events of this node's ``system.events`` sent to the cluster.
        events_received: events received from the other nodes (delivered to whichever
            local subscribers want them; the subscriptions count those deliveries).
        events_refused: events published here that cannot cross (a field typed
            `ActorRef`, not encodable, too large): delivered on this node only, the first
            of each class logged with the reason.
        events_dropped: events this node could not send (its queue full, leaving, the
            connection refusing them).
        events_lost: events of other nodes never received here (gaps in their sequence:
            a reconnect, a slow consumer).
        events_rejected: malformed event frames or events from other nodes (also counted
            in ``rejected``).
        streams_reading: remote streams read on this node right now (`RemoteRef.stream`).
        streams_serving: streams of this node's actors read from other nodes right now.
        lanes: ask lanes connected right now: NATS connections of this node's event loops
            for the remote asks made on them (one per loop that asks; see ``docs/cluster.md``).
        lane_asks: remote asks answered over an ask lane (the others went through the
            node's cluster loop).
        lane_served: remote asks for this node's actors taken on the ask lane of the
            actor's own loop (the others arrived on the cluster connection).

    Example:
        ```python
        print(cluster.statistics().rejected)
        ```
    """

    node: str
    connected: bool
    members: tuple[str, ...]
    exported: int
    rejected: int
    dropped: int
    reconnects: int
    durable_published: int = 0
    durable_retried: int = 0
    durable_deduplicated: int = 0
    durable_handled: int = 0
    durable_redelivered: int = 0
    durable_terminated: int = 0
    durable_outstanding: int = 0
    durable_undelivered: int = 0
    pipelined: int = 0
    resent: int = 0
    undelivered: int = 0
    events_published: int = 0
    events_received: int = 0
    events_refused: int = 0
    events_dropped: int = 0
    events_lost: int = 0
    events_rejected: int = 0
    streams_reading: int = 0
    streams_serving: int = 0
    lanes: int = 0
    lane_asks: int = 0
    lane_served: int = 0


class Nats:
    """Join an `ActorSystem` to others over NATS: ``ActorSystem(cluster=Nats(...))``.

    The options come grouped in option objects with documented defaults (`Timeouts`,
    `Limits`, `Heartbeats`, `Reconnect`, `Credentials`, `DurableOptions`); the flat
    keyword arguments below still work, each overriding one field of its group.

    Args:
        servers: one NATS URL or several (a NATS cluster), such as
            ``"nats://127.0.0.1:4222"``.
        node: this node's name, unique in the cluster: letters, digits, ``-`` and ``_``.
        prefix: the first subject token of every subject this node uses; nodes with
            different prefixes never see each other.
        timeouts: `Timeouts` (``ack_timeout``, ``connect_timeout``).
        limits: `Limits` (``max_message_size``, ``max_depth``).
        heartbeats: `Heartbeats` (``heartbeat_interval``, ``heartbeat_timeout``).
        reconnect: `Reconnect` (``reconnect_time_wait``, ``max_reconnect_attempts``,
            ``pending_size``).
        credentials: `Credentials` (``user``, ``password``, ``token``, ``nkeys_seed``,
            ``user_credentials``, ``tls``, ``tls_hostname``).
        durable: `DurableOptions` (the ``durable_*`` keywords).

    Other Parameters:
        heartbeat_interval (float): seconds between heartbeats (`DEFAULT_HEARTBEAT_INTERVAL`).
        heartbeat_timeout (float): seconds without a heartbeat after which a node is declared down
            (`DEFAULT_HEARTBEAT_TIMEOUT`); its actors then count as stopped.
        max_message_size (int): largest frame sent or accepted (`DEFAULT_MAX_MESSAGE_SIZE`).
        max_depth (int): deepest nesting accepted in an inbound frame (`DEFAULT_MAX_DEPTH`).
        ack_timeout (float): how long a ``send(timeout=None)`` waits for its acknowledgement
            (`DEFAULT_ACK_TIMEOUT`) before raising `SendTimeout`.
        user (str): a user name, passed to nats-py as it is.
        password (str): that user's password.
        token (str): an authentication token.
        nkeys_seed (str): the path of an nkey seed file.
        user_credentials (str): the path of a JWT ``.creds`` file.
        tls (ssl.SSLContext): a context for TLS (server verification, client certificates).
        tls_hostname (str): the server name to verify, when it differs from the URL's host.
        connect_timeout (float): seconds `attach` may take to connect before it gives up.
        reconnect_time_wait (float): seconds between reconnect attempts to one server.
        max_reconnect_attempts (int): attempts per server after a drop; -1 retries forever.
        pending_size (int): bytes nats-py buffers while disconnected; beyond, sends fail.
        durable_ack_wait (float): seconds JetStream waits for a durable message's ack before it
            redelivers it (`DEFAULT_DURABLE_ACK_WAIT`); how soon a message a crashed node
            was handling goes to the restarted one.
        durable_max_deliver (int): attempts at a durable message before it is given up on as
            poison (`DEFAULT_DURABLE_MAX_DELIVER`).
        durable_window (int): durable messages in flight per durable actor
            (`DEFAULT_DURABLE_WINDOW`); 1 keeps the order exactly, redeliveries included.
        durable_retry_delay (float): seconds before a failed durable message is redelivered,
            doubling with each attempt (`DEFAULT_DURABLE_RETRY_DELAY`).
        durable_dedup_window (float): seconds JetStream drops re-published copies of a message id
            (`DEFAULT_DURABLE_DEDUP_WINDOW`); a send stops retrying when it has passed.
        durable_outstanding (int): durable sends a node holds admitted and not yet stored
            (`DEFAULT_DURABLE_OUTSTANDING`); beyond, ``send`` waits, ``try_send`` fails.

    Raises:
        ValueError: a bad node name or prefix, or a bad option value.
        TypeError: an unknown keyword argument.

    Example:
        ```python
        from actors.cluster import Heartbeats, Nats

        async with ActorSystem(cluster=Nats("nats://127.0.0.1:4222", node="a")) as system:
            await system.spawn(Account, name="account-7", public=True)

        Nats(url, node="b", heartbeats=Heartbeats(interval=0.5, timeout=2.0))
        ```
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        node: str,
        prefix: str = "actors",
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        heartbeats: Heartbeats | None = None,
        reconnect: Reconnect | None = None,
        credentials: Credentials | None = None,
        durable: DurableOptions | None = None,
        **keywords: Unpack[NatsKeywords],
    ) -> None:
        groups: dict[str, Any] = {"timeouts": timeouts, "limits": limits, "heartbeats": heartbeats}
        groups |= {"reconnect": reconnect, "credentials": credentials, "durable": durable}
        self.config = Config.build(servers, node, prefix, groups, keywords)
        """The validated options of this node (read only)."""
        self._node = _Node(self.config)
        self._system: ActorSystem | None = None

    def __repr__(self) -> str:
        state = "connected" if self._node.transport.connected else "disconnected"
        return f"<Nats node={self.node} {state} servers={','.join(self.servers)}>"

    @property
    def node(self) -> str:
        """This node's name."""
        return self.config.node

    @property
    def prefix(self) -> str:
        """The first subject token of every subject this node uses."""
        return self.config.prefix

    @property
    def servers(self) -> list[str]:
        """The NATS URLs this node connects to."""
        return list(self.config.servers)

    @property
    def incarnation(self) -> str:
        """Distinguishes this run of the node from earlier ones of the same name."""
        return self._node.me.incarnation

    @property
    def durable_stream(self) -> str:
        """The JetStream stream of this cluster prefix's durable mailboxes."""
        return self._node.durable.durable_stream

    # -- the seam: attach, register, lookup, detach ---------------------------------------

    async def attach(self, system: ActorSystem) -> None:
        """Start the cluster thread, connect, and start heartbeating.

        Raises:
            ClusterError: the servers are unreachable, or refused the credentials, within
                ``connect_timeout``.
            RuntimeError: this `Nats` was already attached (one per system).

        Cancellation: the connection attempt is abandoned and the thread joined.

        Example:
            ```python
            await Nats(url, node="a").attach(system)  # ActorSystem.start does this
            ```
        """
        if self._system is not None:
            raise RuntimeError(f"Nats(node={self.node!r}) is already attached to a system")
        self._system = system
        await self._node.attach(system)

    async def register(self, name: str, ref: ActorRef[Any], *, durable: bool = False) -> None:
        """Make ``ref`` reachable as ``name`` from every node; returns once the server has it.

        ``durable``: the actor's tells from other nodes go through its durable mailbox on
        JetStream (see ``docs/cluster-durable.md``): this makes sure of the stream and of
        the actor's consumer, and starts delivering what the stream holds for it.

        Raises:
            ValueError: ``name`` is not a valid subject token (letters, digits, - and _).
            ClusterError: ``durable`` and the server has no JetStream (``-js``), or refused
                the stream or the consumer.

        Cancellation: the name may already be registered.

        Example:
            ```python
            await system.spawn(Account, name="account-7", public=True)  # calls this
            await system.spawn(Ledger, name="ledger", durable=True)  # with durable=True
            ```
        """
        if not TOKEN.match(name):
            raise ValueError(
                f"a public actor name may hold letters, digits, - and _ only, got {name!r}"
            )
        node = self._node
        address, _ = node.registry.export(ref, durable=name if durable else "")
        register = node.durable.register if durable else node.inbound.register
        await node.transport.call(register(name, address.id))

    async def lookup(self, name: str, accepts: Any, timeout: float) -> Ref[Any]:
        """A ref to the public actor ``name`` on whichever node serves it.

        Retries until ``timeout`` while nobody serves the name (at least one attempt is
        made, so ``timeout=0`` asks once). With several nodes serving it (a queue group),
        each lookup binds to one of them; a name served by a pool (`serve_pool`) gives a
        `GroupRef`, whose every message goes to one member.

        Raises:
            ActorNotFound: no node serves ``name`` within ``timeout``.

        Cancellation: only the wait is abandoned.

        Example:
            ```python
            account = await system.lookup_remote("account-7", AccountMsg)  # calls this
            ```
        """
        node = self._node
        found: Ref[Any] = await node.transport.call(node.outbox.lookup(name, timeout))
        if accepts is not Any and isinstance(found, RemoteRef):
            check_accepts(found, accepts)
        return found

    async def serve_pool(self, name: str, pool: Pool[Any]) -> None:
        """Serve ``pool`` under the public ``name``, in the name's queue group.

        Every node that serves the same name (with a pool, or with a public actor) joins the
        queue group of the subject ``<prefix>.name.<name>``; the NATS server hands each
        message sent through a `GroupRef` to one member. The pool stops serving when it
        stops, and when this node leaves. Returns once the server has the subscription.

        Raises:
            ValueError: ``name`` is not a valid subject token (letters, digits, - and _).
            ActorStopped: the pool has stopped.

        Cancellation: the name may already be served.

        Example:
            ```python
            await actors.cluster.serve_pool(system, pool, name="resize")  # calls this
            ```
        """
        if not TOKEN.match(name):
            raise ValueError(f"a public name may hold letters, digits, - and _ only, got {name!r}")
        if not pool.is_alive:
            raise ActorStopped(f"pool {pool.path} has stopped; it cannot serve {name!r}")
        node = self._node
        await node.transport.call(node.inbound.serve_pool(name, pool))

    async def lookup_group(self, name: str, accepts: Any, timeout: float) -> GroupRef[Any]:
        """A `GroupRef` to the queue group of public ``name``, once some node serves it.

        Raises:
            ActorNotFound: no node serves ``name`` within ``timeout``.
            MessageTypeError: the member that answered does not accept ``accepts``.

        Cancellation: only the wait is abandoned.

        Example:
            ```python
            workers = await actors.cluster.lookup_group(system, "resize", ResizeMsg)
            ```
        """
        node = self._node
        found: GroupRef[Any] = await node.transport.call(
            node.outbox.lookup(name, timeout, group=True)
        )
        if accepts is not Any:
            check_accepts(found, accepts)
        return found

    async def detach(self) -> None:
        """Tell the others this node leaves, disconnect, and join the cluster thread.

        Pending remote calls of this node fail with `ActorStopped`.

        Cancellation: runs to the end (`ActorSystem.shutdown` shields it).

        Example:
            ```python
            await cluster.detach()  # ActorSystem.shutdown does this first
            ```
        """
        await self._node.detach()

    def inspect(self, local: NodeView) -> tuple[NodeView, ...]:
        """For the live inspector: ``local`` with this node's public actors, served groups
        and durable mailboxes, then every other node as it last answered its inspection
        subject (``<prefix>.inspect.<node>``).

        Any thread; never waits on the network: at most once a second it asks the other
        nodes again in the background, so a first call lists this node only and later calls
        the others too (a node that stops answering keeps its last answer, with ``error``
        saying why). Asks nothing until called.

        Example:
            ```python
            nodes = cluster.inspect(actors.inspector.SystemView.of(system).local_node())
            ```
        """
        node = self._node
        if not node.transport.started or node.transport.closing:
            return (local,)
        return node.inspector.inspect(local)

    def statistics(self) -> ClusterStatistics:
        """A snapshot of this node's counters and of the nodes it sees alive.

        Example:
            ```python
            stats = cluster.statistics()
            print(stats.members, stats.rejected)
            ```
        """
        node = self._node
        transport, durable, events = node.transport, node.durable, node.events
        lanes, lane_asks, lane_served = node.lanes.statistics()
        return ClusterStatistics(
            node=self.node,
            connected=transport.connected,
            members=node.membership.members(),
            exported=node.registry.count(),
            rejected=transport.rejected,
            dropped=transport.dropped,
            reconnects=transport.reconnects,
            durable_published=durable.published,
            durable_retried=durable.retried,
            durable_deduplicated=durable.deduplicated,
            durable_handled=durable.handled,
            durable_redelivered=durable.redelivered,
            durable_terminated=durable.terminated,
            durable_outstanding=durable.publisher.outstanding,
            durable_undelivered=durable.publisher.undelivered,
            pipelined=node.outbox.pipelined,
            resent=node.outbox.resent,
            undelivered=node.outbox.undelivered,
            events_published=events.published,
            events_received=events.received,
            events_refused=events.refused,
            events_dropped=events.dropped,
            events_lost=events.lost,
            events_rejected=events.rejected,
            # Sizes of loop-only tables, read from the caller's thread: a snapshot that
            # may be a moment old, as the counters above are.
            streams_reading=node.streams.open_reading(),
            streams_serving=node.streams.open_serving(),
            lanes=lanes,
            lane_asks=lane_asks,
            lane_served=lane_served,
        )


class _Node:
    """The parts of one node, built from its `Config` and wired together; what `Nats` drives.

    Building it starts nothing; `attach` starts the cluster thread and joins, `detach`
    leaves and joins the thread.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.me = me = Identity(config.node, config.prefix)
        timeouts, limits = config.timeouts, config.limits
        self.transport = transport = Transport(
            me, config.servers, config.connect_options(), timeouts.connect
        )
        self.replies = replies = Replies()
        proxies: ProxyTable = weakref.WeakValueDictionary()
        self.membership = Membership(transport, replies, proxies, config.heartbeats, limits)
        self.registry = Registry(transport, self.membership, proxies)
        self.inbound = Inbound(transport, self.registry, limits, timeouts.connect)
        self.outbox = Outbox(
            transport, self.registry, self.inbound, self.membership, replies, limits, timeouts.ack
        )
        self.durable = DurableMailboxes(
            transport,
            self.registry,
            self.inbound,
            self.outbox,
            config.durable,
            limits,
            timeouts.ack,
        )
        outbox = self.outbox
        self.streams = RemoteStreams(
            transport,
            self.registry,
            self.inbound,
            outbox.frames,
            outbox.pump,
            outbox.requests,
            self.membership,
            replies,
            limits,
            timeouts.ack,
        )
        self.inbound.on_stream = self.streams.serve
        self.outbox.streams = self.streams
        self.lanes = Lanes(
            transport,
            self.membership,
            config.connect_options(),
            self.outbox.cancel_notice,
            self.inbound,
            self.registry,
        )
        self.outbox.lanes = self.lanes
        self.inbound.answers.hint = self.lanes.hint  # an ask's answer says where to ask next
        self.events = EventRelay(transport, self.registry, self.inbound, limits)
        self.inspector = NodeInspector(
            transport,
            self.registry,
            self.inbound,
            self.outbox,
            self.durable,
            self.membership,
            limits,
        )
        node = config.node
        transport.on_teardown.append(
            lambda: replies.fail_all(lambda: ActorStopped(f"node {node} left the cluster"))
        )

    async def attach(self, system: ActorSystem) -> None:
        """Start the cluster thread, connect and join; on failure, stop the thread again.

        Cancellation: the connection attempt is abandoned and the thread joined.
        """
        self.registry.bind(system, self.outbox, self.durable)
        prefix = "actors" if system.name == "actors" else f"actors-{system.name}"
        self.transport.start(f"{prefix}-cluster-{self.config.node}")
        try:
            await self.transport.call(self._join())
        except BaseException:
            await self.transport.stop()
            raise

    async def detach(self) -> None:
        """Leave (durable handlers settle first), then stop the loop and join the thread.

        Cancellation: runs to the end (`ActorSystem.shutdown` shields it).
        """
        transport = self.transport
        if not transport.started or transport.closing:
            return
        with contextlib.suppress(Exception):
            await transport.call(self._leave())
        await self.lanes.close()  # their asks fail as the cluster loop's do, at teardown
        await transport.stop()

    async def _join(self) -> None:
        """Connect, then start listening, pumping and heartbeating. Loop only."""
        transport = self.transport
        await transport.connect()
        client = transport.client
        assert client is not None
        timeout = transport.connect_timeout
        # Bounded as a whole: a server may accept the connection and drop it right after
        # (TLS 1.3 with a required client certificate checks it after the client is done),
        # and nats-py then reconnects forever, so a step below could wait for good.
        try:
            async with asyncio.timeout(max(_JOIN_FLOOR, timeout)):
                await self.outbox.listen(client)
                await self.inbound.listen(client)
                await self.streams.listen(client)
                await self.events.listen(client)
                await self.inspector.listen(client)
                await self.membership.listen(client)  # the first beat: others may call now
                await client.flush(timeout=max(1, int(timeout)))
        except TimeoutError:
            raise ClusterError(
                f"node {self.config.node}: connected to NATS but could not join within "
                f"{timeout} s (the server dropped the connection: a TLS client "
                "certificate or a permission it requires?)"
            ) from None

    async def _leave(self) -> None:
        # The node leaves before its actors stop (`ActorSystem.shutdown`): durable handlers
        # still running get to ack first, and the leave notice's flush carries their acks.
        await self.durable.leave()
        await self.events.leave()  # what is still queued goes out with the leave's flush
        await self.membership.leave()
