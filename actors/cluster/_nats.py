"""`Nats`: the NATS transport behind ``ActorSystem(cluster=Nats(...))``.

`Nats` is the façade: the public constructor, the seam the core calls (`attach`,
`register`, `lookup`, `detach`), pools served under a name, statistics, and the internal
entry points `RemoteRef` calls. Its behaviour comes from one layer per concept, each a
private module that imports only the layers below it:

* ``_transport``: the cluster loop thread, the bridge from callers' threads (threads and
  single-writer rules are written there), the NATS connection, teardown.
* ``_membership``: heartbeats, leave and down notices, declaring nodes down.
* ``_registry``: local actors exported to other nodes, proxies of remote ones, and the
  encoding of refs into addresses and back.
* ``_inbound``: subscriptions of exported actors and served pools, the frames they get,
  and the replies they send.
* ``_outbound``: the outbox (one FIFO for every frame of the node), requests and their
  replies, try_send credit, lookups.
* ``_durable``: durable mailboxes on JetStream (``spawn(durable=True)``): publishing into
  the stream, and one consumer per durable actor.

All of a node's state is set up in `Nats.__init__`, with its threading rule next to it.

Subjects (``p`` is the prefix, default ``actors``):

* ``p.actor.<node>.<incarnation>.<id>``: one per exported actor (public, or a ref that
  travelled in a message); tells, tries, asks and probes. Id 0 is the node's own: whether
  one of its exports still exists, asked after a "no responders" (``_outbound``).
* ``p.name.<name>``: one per public name, in queue group ``p``: lookups, and every
  request of a `GroupRef`; several nodes serving one name (public actors, or pools served
  with `serve_pool`, routed by `_inbound_pool`) form a queue group, and the server hands
  each message to one of them.
* ``p.durable.<name>``: the durable mailbox of durable actor ``<name>``, stored in the
  JetStream stream ``<p>_DURABLE`` (not a core subscription: the owner pulls from it).
* ``p.hb.<node>``: heartbeats and leave notices. ``p.down.<node>``: an exported actor
  of that node stopped for good.
* ``_INBOX.p.<node>.<incarnation>.*``: replies to this node's requests.

Ordering: every outbound frame of a node goes through one FIFO (``_outbound``), and each
exported actor has its own subscription served in arrival order (``_inbound``); so frames
from one sender to one actor are enqueued in the order sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import re
import secrets
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from .._errors import ActorStopped, MailboxFull
from .._oneshot import Latch, ensure_plain_thread
from ._durable import Durable
from ._outbound import check_accepts
from ._remote import DurableRef, GroupRef, RemoteRef
from ._transport import ClusterError, ClusterHome, Throttle, subscribe
from ._wire import TRY, Address, Down, Envelope, Heartbeat, Reply, decoder_for

if TYPE_CHECKING:
    import ssl
    from collections.abc import Coroutine, Sequence

    from nats.aio.client import Client as NatsClient

    from .._cell import Cell
    from .._pool import Pool
    from .._ref import ActorRef
    from .._system import ActorSystem
    from ._outbound import Outbound
    from ._registry import Export

__all__ = (
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_DURABLE_ACK_WAIT",
    "DEFAULT_DURABLE_DEDUP_WINDOW",
    "DEFAULT_DURABLE_MAX_DELIVER",
    "DEFAULT_DURABLE_RETRY_DELAY",
    "DEFAULT_DURABLE_WINDOW",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ClusterError",
    "ClusterStatistics",
    "Nats",
)

T = TypeVar("T")

DEFAULT_HEARTBEAT_INTERVAL: Final = 1.0
"""Seconds between two heartbeats of a node."""

DEFAULT_HEARTBEAT_TIMEOUT: Final = 5.0
"""Seconds without a heartbeat after which a node is declared down."""

DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024
"""Largest frame sent or accepted, in bytes (NATS's own default ``max_payload``)."""

DEFAULT_MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and maps accepted in a frame."""

DEFAULT_ACK_TIMEOUT: Final = 30.0
"""Seconds a ``send`` without a timeout waits for its acknowledgement before giving up."""

DEFAULT_DURABLE_ACK_WAIT: Final = 30.0
"""Seconds JetStream waits for a durable message's ack before redelivering it.

While the handler runs the owning node keeps the message alive (in-progress acks), so this
bounds how long after a node's death its unfinished message is redelivered.
"""

DEFAULT_DURABLE_MAX_DELIVER: Final = 5
"""Attempts at a durable message (deliveries) before it is given up on as poison."""

DEFAULT_DURABLE_WINDOW: Final = 1
"""Durable messages in flight per durable actor (JetStream ``max_ack_pending``).

1 keeps the stream's order exactly, redeliveries included; more overlaps the round trips
to the server with handling, and then a redelivered message comes after later ones.
"""

DEFAULT_DURABLE_RETRY_DELAY: Final = 1.0
"""Seconds before a message whose handler failed is redelivered (doubling each attempt)."""

DEFAULT_DURABLE_DEDUP_WINDOW: Final = 120.0
"""Seconds JetStream remembers a message id to drop re-published copies (its own default)."""

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


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


class Nats(Durable):
    """Join an `ActorSystem` to others over NATS: ``ActorSystem(cluster=Nats(...))``.

    Args:
        servers: one NATS URL or several (a NATS cluster), such as
            ``"nats://127.0.0.1:4222"``.
        node: this node's name, unique in the cluster: letters, digits, ``-`` and ``_``.
        prefix: the first subject token of every subject this node uses; nodes with
            different prefixes never see each other.
        heartbeat_interval: seconds between heartbeats (`DEFAULT_HEARTBEAT_INTERVAL`).
        heartbeat_timeout: seconds without a heartbeat after which a node is declared down
            (`DEFAULT_HEARTBEAT_TIMEOUT`); its actors then count as stopped.
        max_message_size: largest frame sent or accepted (`DEFAULT_MAX_MESSAGE_SIZE`).
        max_depth: deepest nesting accepted in an inbound frame (`DEFAULT_MAX_DEPTH`).
        ack_timeout: how long a ``send(timeout=None)`` waits for its acknowledgement
            (`DEFAULT_ACK_TIMEOUT`) before raising `SendTimeout`.
        user: a user name, passed to nats-py as it is.
        password: that user's password.
        token: an authentication token.
        nkeys_seed: the path of an nkey seed file.
        user_credentials: the path of a JWT ``.creds`` file.
        tls: an `ssl.SSLContext` for TLS (server verification, client certificates).
        tls_hostname: the server name to verify, when it differs from the URL's host.
        connect_timeout: seconds `attach` may take to connect before it gives up.
        reconnect_time_wait: seconds between reconnect attempts to one server.
        max_reconnect_attempts: attempts per server after a drop; -1 retries forever.
        pending_size: bytes nats-py buffers while disconnected; beyond, sends fail.
        durable_ack_wait: seconds JetStream waits for a durable message's ack before it
            redelivers it (`DEFAULT_DURABLE_ACK_WAIT`); how soon a message a crashed node
            was handling goes to the restarted one.
        durable_max_deliver: attempts at a durable message before it is given up on as
            poison (`DEFAULT_DURABLE_MAX_DELIVER`).
        durable_window: durable messages in flight per durable actor
            (`DEFAULT_DURABLE_WINDOW`); 1 keeps the order exactly, redeliveries included.
        durable_retry_delay: seconds before a failed durable message is redelivered,
            doubling with each attempt (`DEFAULT_DURABLE_RETRY_DELAY`).
        durable_dedup_window: seconds JetStream drops re-published copies of a message id
            (`DEFAULT_DURABLE_DEDUP_WINDOW`); a send stops retrying when it has passed.

    Example:
        ```python
        from actors.cluster import Nats

        async with ActorSystem(cluster=Nats("nats://127.0.0.1:4222", node="a")) as system:
            await system.spawn(Account, name="account-7", public=True)
        ```
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        node: str,
        prefix: str = "actors",
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        ack_timeout: float = DEFAULT_ACK_TIMEOUT,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        nkeys_seed: str | None = None,
        user_credentials: str | None = None,
        tls: ssl.SSLContext | None = None,
        tls_hostname: str | None = None,
        connect_timeout: float = 5.0,
        reconnect_time_wait: float = 0.5,
        max_reconnect_attempts: int = -1,
        pending_size: int = 2 * 1024 * 1024,
        durable_ack_wait: float = DEFAULT_DURABLE_ACK_WAIT,
        durable_max_deliver: int = DEFAULT_DURABLE_MAX_DELIVER,
        durable_window: int = DEFAULT_DURABLE_WINDOW,
        durable_retry_delay: float = DEFAULT_DURABLE_RETRY_DELAY,
        durable_dedup_window: float = DEFAULT_DURABLE_DEDUP_WINDOW,
    ) -> None:
        if not _TOKEN.match(node):
            raise ValueError(f"a node name may hold letters, digits, - and _ only, got {node!r}")
        if not _TOKEN.match(prefix):
            raise ValueError(f"a prefix may hold letters, digits, - and _ only, got {prefix!r}")
        if not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError(
                "need 0 < heartbeat_interval < heartbeat_timeout, got "
                f"{heartbeat_interval} and {heartbeat_timeout}"
            )
        if max_message_size < 64 or max_depth < 4:
            raise ValueError("max_message_size must be at least 64 and max_depth at least 4")
        if durable_ack_wait <= 0 or durable_dedup_window <= 0 or durable_retry_delay < 0:
            raise ValueError(
                "need durable_ack_wait > 0, durable_dedup_window > 0, durable_retry_delay >= 0"
            )
        if durable_max_deliver < 1 or durable_window < 1:
            raise ValueError("durable_max_deliver and durable_window must be at least 1")
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.node = node
        self.prefix = prefix
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self.durable_ack_wait = durable_ack_wait
        self.durable_max_deliver = durable_max_deliver
        self.durable_window = durable_window
        self.durable_retry_delay = durable_retry_delay
        self.durable_dedup_window = durable_dedup_window
        self._options: dict[str, Any] = {
            "servers": self.servers,
            "name": f"actors:{node}",
            "reconnect_time_wait": reconnect_time_wait,
            "max_reconnect_attempts": max_reconnect_attempts,
            "connect_timeout": max(1, min(int(connect_timeout), 2)),
            "pending_size": pending_size,
            "allow_reconnect": True,
        }
        credentials: dict[str, Any] = {
            "user": user,
            "password": password,
            "token": token,
            "nkeys_seed": nkeys_seed,
            "user_credentials": user_credentials,
            "tls": tls,
            "tls_hostname": tls_hostname,
        }
        self._options.update({k: v for k, v in credentials.items() if v is not None})
        self.incarnation = secrets.token_hex(6)
        """Distinguishes this run of the node from earlier ones of the same name."""
        self._system: ActorSystem | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._home: ClusterHome | None = None
        self._nc: NatsClient | None = None
        self._closing = False
        self._connected = False
        self._ended = Latch()
        # Guarded by _lock (callers' threads encode and decode refs).
        self._lock = threading.Lock()
        self._exports: dict[int, Export] = {}
        self._export_ids: dict[Cell, int] = {}
        self._proxies: weakref.WeakValueDictionary[tuple[str, str, int], RemoteRef[Any]] = (
            weakref.WeakValueDictionary()
        )
        self._dead: set[tuple[str, str]] = set()  # node incarnations declared down
        self._ids = itertools.count(1)
        self._durable_ids = itertools.count(1)
        # Loop only.
        self._members: dict[tuple[str, str], float] = {}  # (node, incarnation) -> last seen
        self._replies: dict[str, tuple[Any, tuple[str, str] | None, float]] = {}
        self._tokens = itertools.count(1)
        self._outbox: asyncio.Queue[tuple[Outbound, str]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
        self._grace_until = 0.0
        self._throttle = Throttle()
        self._rejected = 0
        self._dropped = 0
        self._reconnects = 0
        self._envelopes = decoder_for(Envelope, None)
        self._replies_decoder = decoder_for(Reply, None)
        self._heartbeats = decoder_for(Heartbeat, None)
        self._downs = decoder_for(Down, None)
        self._addresses = decoder_for(Address, None)
        self._js = None
        self._stream_ready = False
        self._stream_lock = None
        self._consumers = set()
        self._durable_published = 0
        self._durable_retried = 0
        self._durable_deduplicated = 0
        self._durable_handled = 0
        self._durable_redelivered = 0
        self._durable_terminated = 0

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"<Nats node={self.node} {state} servers={','.join(self.servers)}>"

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
        ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        prefix = "actors" if system.name == "actors" else f"actors-{system.name}"
        thread = threading.Thread(
            target=self._main, args=(ready,), name=f"{prefix}-cluster-{self.node}", daemon=True
        )
        self._thread = thread
        thread.start()
        loop = ready.result()
        self._loop = loop
        self._home = ClusterHome(loop, thread.ident or 0, self.node)
        try:
            await self._call(self._join())
        except BaseException:
            self._closing = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            await self._ended.wait()
            thread.join()
            raise

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
        if not _TOKEN.match(name):
            raise ValueError(
                f"a public actor name may hold letters, digits, - and _ only, got {name!r}"
            )
        if durable:
            address, _ = self._export(ref, durable=name)
            await self._call(self._register_durable(name, address.id))
            return
        address, _ = self._export(ref)
        await self._call(self._register(name, address.id))

    async def lookup(self, name: str, accepts: Any, timeout: float) -> ActorRef[Any]:
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
        found: ActorRef[Any] = await self._call(self._lookup(name, timeout))
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
        if not _TOKEN.match(name):
            raise ValueError(f"a public name may hold letters, digits, - and _ only, got {name!r}")
        if not pool.is_alive:
            raise ActorStopped(f"pool {pool.path} has stopped; it cannot serve {name!r}")
        await self._call(self._serve_pool(name, pool))

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
        found: GroupRef[Any] = await self._call(self._lookup(name, timeout, group=True))
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
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._closing:
            return
        with contextlib.suppress(Exception):
            await self._call(self._leave())
        self._closing = True
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        await self._ended.wait()
        thread.join()

    def statistics(self) -> ClusterStatistics:
        """A snapshot of this node's counters and of the nodes it sees alive.

        Example:
            ```python
            stats = cluster.statistics()
            print(stats.members, stats.rejected)
            ```
        """
        with self._lock:
            exported = len(self._exports)
        return ClusterStatistics(
            node=self.node,
            connected=self._connected,
            members=tuple(sorted({node for node, _ in list(self._members)})),
            exported=exported,
            rejected=self._rejected,
            dropped=self._dropped,
            reconnects=self._reconnects,
            durable_published=self._durable_published,
            durable_retried=self._durable_retried,
            durable_deduplicated=self._durable_deduplicated,
            durable_handled=self._durable_handled,
            durable_redelivered=self._durable_redelivered,
            durable_terminated=self._durable_terminated,
        )

    def blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """Internal: run ``coro`` on the cluster loop, blocking this plain thread until done."""
        future = self._submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ActorStopped(f"node {self.node} left the cluster meanwhile") from None

    async def _join(self) -> None:
        """Connect, then start listening, pumping and heartbeating. Loop only."""
        await self._connect()
        client = self._nc
        assert client is not None
        # Bounded as a whole: a server may accept the connection and drop it right after
        # (TLS 1.3 with a required client certificate checks it after the client is done),
        # and nats-py then reconnects forever, so a step below could wait for good.
        try:
            async with asyncio.timeout(max(1.0, self.connect_timeout)):
                await self._listen(client)
        except TimeoutError:
            raise ClusterError(
                f"node {self.node}: connected to NATS but could not join within "
                f"{self.connect_timeout} s (the server dropped the connection: a TLS client "
                "certificate or a permission it requires?)"
            ) from None

    async def _listen(self, client: Any) -> None:
        self._outbox = asyncio.Queue()
        self._grace_until = time.monotonic() + self.heartbeat_timeout
        await subscribe(client, f"{self._inbox}.*", cb=self._on_reply)
        await subscribe(client, f"{self.prefix}.hb.*", cb=self._on_heartbeat)
        await subscribe(client, f"{self.prefix}.down.*", cb=self._on_down)
        await subscribe(
            client, self._node_subject(self.node, self.incarnation), cb=self._on_node_probe
        )
        self._own(self._pump())
        self._own(self._heartbeat())
        await self._beat()
        await client.flush(timeout=max(1, int(self.connect_timeout)))

    async def remote_send(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> None:
        """Internal: `RemoteRef.send` (see there): a tell, waiting for its acknowledgement.

        Cancellation: the frame may already be out and then still be enqueued.
        """
        if isinstance(ref, DurableRef):
            durable, msg_id, limit = self._durable_parts(ref, message, timeout)
            await self._call(self._durable_publish(ref, durable, msg_id, limit))
            return
        out, wait, on_timeout = self._send_parts(ref, message, timeout)
        await self._call(self._request(ref, out, wait, None, on_timeout))

    def blocking_send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """Internal: `RemoteRef.blocking_send`, from a plain thread."""
        ensure_plain_thread()
        if isinstance(ref, DurableRef):
            durable, msg_id, limit = self._durable_parts(ref, message, timeout)
            self.blocking(self._durable_publish(ref, durable, msg_id, limit))
            return
        out, wait, on_timeout = self._send_parts(ref, message, timeout)
        self.blocking(self._request(ref, out, wait, None, on_timeout))

    async def remote_ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """Internal: `RemoteRef.ask` (see there): request-reply with the ask's timeout.

        Cancellation: the request may already be enqueued; its reply is then dropped.
        """
        out, reply_type, on_timeout = self._ask_parts(ref, message, timeout)
        return await self._call(self._request(ref, out, timeout, reply_type, on_timeout))

    def blocking_ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """Internal: `RemoteRef.blocking_ask`, from a plain thread."""
        ensure_plain_thread()
        out, reply_type, on_timeout = self._ask_parts(ref, message, timeout)
        return self.blocking(self._request(ref, out, timeout, reply_type, on_timeout))

    def remote_try_send(self, ref: RemoteRef[Any], message: object) -> None:
        """Internal: `RemoteRef.try_send`: decide on the credit view, publish, never wait."""
        if isinstance(ref, DurableRef):
            self._durable_try_send(ref, message)
            return
        out = self._prepare(ref, TRY, message, None)
        if not self._connected:
            raise MailboxFull(
                f"node {self.node} is not connected to NATS right now; message to remote "
                f"actor {ref.path} not sent",
                message,
            )
        if not ref.take_credit():
            self._post(self._probe_credit, ref)
            raise ref.full_error(message)
        self._post(self._try_on_loop, ref, out)

    def _durable_try_send(self, ref: DurableRef[Any], message: object) -> None:
        # Publish in the background: the caller never waits for the PubAck. The ref's
        # credit bounds the try_sends still waiting for theirs.
        out, msg_id, _ = self._durable_parts(ref, message, None)
        if not self._connected:
            raise MailboxFull(
                f"node {self.node} is not connected to NATS right now; message to durable "
                f"actor {ref.name!r} not sent",
                message,
            )
        if not ref.take_credit():
            raise MailboxFull(
                f"too many try_sends to durable actor {ref.name!r} are waiting for JetStream "
                "to store them; message not sent",
                message,
            )
        self._post(self._durable_try_on_loop, ref, out, msg_id)
