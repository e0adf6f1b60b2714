"""`Nats`: the NATS transport behind ``ActorSystem(cluster=Nats(...))``.

Threads: nats-py is asyncio-only, while the host may run trio and actors run on worker
loops. The client therefore lives on an asyncio loop of its own, in a thread named
``actors-cluster-<node>`` that `detach` joins. Callers on any loop reach it through
``call_soon_threadsafe`` and get the outcome back through `actors._oneshot` (which
knows how to wake an asyncio task, a trio task or a plain thread). Message checks and
encoding happen in the caller's thread, so that a bad message fails at the call site.

Single writer: everything below marked "loop only" is touched only on the cluster loop.
The export table and the proxy table are also read from callers' threads (encoding and
decoding refs) and are guarded by ``_lock``.

Subjects (``p`` is the prefix, default ``actors``):

* ``p.actor.<node>.<incarnation>.<id>``: one per exported actor (public, or a ref that
  travelled in a message); tells, tries, asks and probes.
* ``p.name.<name>``: one per public name, in queue group ``p``: lookups, and every
  request of a `GroupRef`; several nodes serving one name (public actors, or pools served
  with `serve_pool`, routed by `_inbound_pool`) form a queue group, and the server hands
  each message to one of them.
* ``p.hb.<node>``: heartbeats and leave notices. ``p.down.<node>``: an exported actor
  of that node stopped for good.
* ``_INBOX.p.<node>.<incarnation>.*``: replies to this node's requests.

Ordering: every outbound frame of a node goes through one FIFO (the outbox pump), and each
exported actor has its own subscription, which nats-py serves with one task in arrival
order; a tell is acknowledged only once enqueued. So frames from one sender to one actor
are enqueued in the order sent, and a full mailbox delays only that actor's traffic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import itertools
import logging
import re
import secrets
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import msgspec

from .._actor import accepted_types
from .._cell import Cell
from .._errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    MessageTypeError,
    SendTimeout,
    SystemNotRunning,
)
from .._mailbox import FULL
from .._mailbox import OK as ENQUEUED
from .._message import Ask, Request
from .._oneshot import Expired, Latch, ensure_plain_thread, oneshot
from .._ref import ActorRef
from .._runtime import Home
from .._sendable import check_sendable
from ._remote import GroupRef, RemoteRef, finish_proxy
from ._wire import (
    ASK,
    ERROR,
    OK,
    PROBE,
    TELL,
    TRY,
    WIRE_VERSION,
    Address,
    Down,
    Envelope,
    ErrorInfo,
    Heartbeat,
    MessageTooLarge,
    NodeDown,
    Reply,
    WireError,
    check_frame,
    decoder_for,
    error_from,
    error_info,
    known_name,
    message_name,
    message_type,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from .._pool import Pool
    from .._system import ActorSystem

__all__ = (
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ClusterError",
    "ClusterStatistics",
    "Nats",
)

logger = logging.getLogger("actors.cluster")

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

_SEND_GRACE: Final = 1.0  # extra wait for the target's own SendTimeout reply
_TRY_REPLY_TTL: Final = 30.0  # forget a try_send's pending reply after this long
_SUB_PENDING_MSGS: Final = 65536  # per-subscription queue of nats-py (slow consumer beyond)
_POOL_ASKS: Final = 1024  # asks a served pool answers at once, per node (then: push back)
_GROUP_ID: Final = 0  # the address id of a served pool (exported actors count from 1)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_NIL: Final = msgspec.Raw(b"\xc0")


class ClusterError(ActorError, ConnectionError):
    """The node could not join the cluster (unreachable servers, refused credentials).

    Example:
        ```python
        try:
            async with ActorSystem(cluster=Nats(url, node="a", token="wrong")):
                ...
        except actors.cluster.ClusterError as error:
            log.error("cannot join: %s", error)
        ```
    """


class _NoResponders(Exception):
    """Internal: nobody subscribes to the subject (NATS status 503)."""


class _Export:
    """A local actor reachable from other nodes (loop only, except ``ref``/``cell``)."""

    __slots__ = ("cell", "id", "ready", "ref", "subs")

    def __init__(self, ref: ActorRef[Any], cell: Cell, id: int) -> None:
        self.ref = ref
        self.cell = cell
        self.id = id
        self.ready: asyncio.Future[None] | None = None
        self.subs: list[Subscription] = []

    @property
    def path(self) -> str:
        return self.cell.path

    @property
    def accepts(self) -> tuple[type, ...] | None:
        return self.cell.accepts

    def free(self) -> int:
        box = self.cell.mailbox
        return max(0, box.capacity - len(box))


class _Served:
    """A local `Pool` serving a public name in the name's queue group (loop only)."""

    __slots__ = ("accepts", "asks", "name", "pool", "sub")

    def __init__(self, pool: Pool[Any], name: str) -> None:
        self.pool = pool
        self.name = name
        self.asks = asyncio.Semaphore(_POOL_ASKS)
        self.sub: Subscription | None = None
        # What the workers accept, taken while they exist (a stopped pool lists none).
        workers = pool.workers
        self.accepts: tuple[type, ...] | None = (
            workers[0]._cell.accepts if workers else None  # pyright: ignore[reportPrivateUsage]
        )

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


class _Outbound:
    """A checked, encoded frame on its way out."""

    __slots__ = ("data", "exports", "message", "subject")

    def __init__(self, subject: str, data: bytes, exports: list[int], message: object) -> None:
        self.subject = subject
        self.data = data
        self.exports = exports
        self.message = message


class _ClusterHome(Home):
    """The cluster loop, as the nominal home of proxy cells (which never run)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int, node: str) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self.label = f"cluster:{node}"


class _Throttle:
    """Log a recurring warning at most once a second per kind, with the count suppressed."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, kind: str, text: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e9) < 1.0:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        skipped = self._suppressed.pop(kind, 0)
        suffix = f" ({skipped} similar suppressed)" if skipped else ""
        logger.warning(text + suffix, *args)


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


class Nats:
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
        self.servers = [servers] if isinstance(servers, str) else list(servers)
        self.node = node
        self.prefix = prefix
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_message_size = max_message_size
        self.max_depth = max_depth
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
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
        self._home: _ClusterHome | None = None
        self._nc: NatsClient | None = None
        self._closing = False
        self._connected = False
        self._ended = Latch()
        # Guarded by _lock (callers' threads encode and decode refs).
        self._lock = threading.Lock()
        self._exports: dict[int, _Export] = {}
        self._export_ids: dict[Cell, int] = {}
        self._proxies: weakref.WeakValueDictionary[tuple[str, str, int], RemoteRef[Any]] = (
            weakref.WeakValueDictionary()
        )
        self._dead: set[tuple[str, str]] = set()  # node incarnations declared down
        self._ids = itertools.count(1)
        # Loop only.
        self._members: dict[tuple[str, str], float] = {}  # (node, incarnation) -> last seen
        self._replies: dict[str, tuple[Any, tuple[str, str] | None, float]] = {}
        self._tokens = itertools.count(1)
        self._outbox: asyncio.Queue[tuple[_Outbound, str]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
        self._grace_until = 0.0
        self._throttle = _Throttle()
        self._rejected = 0
        self._dropped = 0
        self._reconnects = 0
        self._envelopes = decoder_for(Envelope, None)
        self._replies_decoder = decoder_for(Reply, None)
        self._heartbeats = decoder_for(Heartbeat, None)
        self._downs = decoder_for(Down, None)
        self._addresses = decoder_for(Address, None)

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"<Nats node={self.node} {state} servers={','.join(self.servers)}>"

    # -- subjects -------------------------------------------------------------------------

    def _actor_subject(self, address: Address) -> str:
        return f"{self.prefix}.actor.{address.node}.{address.incarnation}.{address.id}"

    def _name_subject(self, name: str) -> str:
        return f"{self.prefix}.name.{name}"

    @property
    def _inbox(self) -> str:
        return f"_INBOX.{self.prefix}.{self.node}.{self.incarnation}"

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
        self._home = _ClusterHome(loop, thread.ident or 0, self.node)
        try:
            await self._call(self._connect())
        except BaseException:
            self._closing = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
            await self._ended.wait()
            thread.join()
            raise

    async def register(self, name: str, ref: ActorRef[Any]) -> None:
        """Make ``ref`` reachable as ``name`` from every node; returns once the server has it.

        Raises:
            ValueError: ``name`` is not a valid subject token (letters, digits, - and _).

        Cancellation: the name may already be registered.

        Example:
            ```python
            await system.spawn(Account, name="account-7", public=True)  # calls this
            ```
        """
        if not _TOKEN.match(name):
            raise ValueError(
                f"a public actor name may hold letters, digits, - and _ only, got {name!r}"
            )
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
            _check_accepts(found, accepts)
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
            _check_accepts(found, accepts)
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
        )

    # -- the thread and the bridge ----------------------------------------------------------

    def _main(self, ready: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ready.set_result(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(self._teardown())
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception:
            logger.exception("cluster loop of node %s crashed", self.node)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            self._ended.set()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` as a task of the cluster loop, in a context of its own.

        Not ``run_coroutine_threadsafe``: that runs the task in a copy of the caller's
        context, and a trio caller's context says "trio" to sniffio (so anyio, in the core's
        send path, would take the cluster loop for a trio run).
        """
        loop = self._loop
        if loop is None or self._closing:
            coro.close()
            raise SystemNotRunning(f"the cluster transport of node {self.node} is not running")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def start() -> None:
            if future.cancelled():
                coro.close()
                return
            task = loop.create_task(coro)

            def finished(task: asyncio.Task[T]) -> None:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    if task.cancelled():
                        future.cancel()
                    elif (error := task.exception()) is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(task.result())

            def abandoned(f: concurrent.futures.Future[T]) -> None:
                if f.cancelled():
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(task.cancel)

            task.add_done_callback(finished)
            future.add_done_callback(abandoned)

        try:
            loop.call_soon_threadsafe(start, context=contextvars.Context())
        except RuntimeError:  # the loop has closed
            coro.close()
            raise SystemNotRunning(
                f"the cluster transport of node {self.node} has stopped"
            ) from None
        return future

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the cluster loop; await it from any loop (asyncio or trio)."""
        future = self._submit(coro)
        done = oneshot()

        def settle(f: concurrent.futures.Future[T]) -> None:
            if f.cancelled():
                done.settle(error=ActorStopped(f"node {self.node} left the cluster meanwhile"))
                return
            error = f.exception()
            if error is None:
                done.settle(f.result())
            else:
                done.settle(error=error)

        future.add_done_callback(settle)
        try:
            result: T = await done.wait()
        except BaseException:
            future.cancel()
            raise
        return result

    def blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        """Internal: run ``coro`` on the cluster loop, blocking this plain thread until done."""
        future = self._submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ActorStopped(f"node {self.node} left the cluster meanwhile") from None

    # -- on the cluster loop: connecting and leaving ----------------------------------------

    async def _connect(self) -> None:
        from nats.aio.client import Client

        refused: list[str] = []
        connected = asyncio.Event()

        async def on_error(error: Exception) -> None:
            text = str(error)
            refusal = "Authorization" in text or "Authentication" in text
            if refusal and not connected.is_set():
                refused.append(text)
            self._throttle.warn("nats-error", "node %s: NATS error: %s", self.node, text)

        async def on_disconnected() -> None:
            if not self._closing:
                self._connected = False
                logger.warning("node %s lost its NATS connection; reconnecting", self.node)

        async def on_reconnected() -> None:
            self._connected = True
            self._reconnects += 1
            # Everyone missed heartbeats while we were away: start their clocks afresh.
            now = time.monotonic()
            self._grace_until = now + self.heartbeat_timeout
            for key in self._members:
                self._members[key] = now
            logger.warning("node %s reconnected to NATS", self.node)

        async def on_closed() -> None:
            self._connected = False

        client = Client()
        attempt = asyncio.ensure_future(
            client.connect(
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
                inbox_prefix=f"_INBOX.{self.prefix}.{self.node}",
                **self._options,
            )
        )
        deadline = time.monotonic() + self.connect_timeout
        try:
            while not attempt.done():
                if refused:
                    raise ClusterError(
                        f"node {self.node}: the NATS server refused the credentials: {refused[0]}"
                    )
                if time.monotonic() > deadline:
                    raise ClusterError(
                        f"node {self.node}: could not connect to {', '.join(self.servers)} "
                        f"within {self.connect_timeout} s"
                    )
                await asyncio.wait({attempt}, timeout=0.05)
            try:
                attempt.result()
            except Exception as error:
                detail = refused[0] if refused else str(error) or type(error).__name__
                raise ClusterError(
                    f"node {self.node}: could not connect to {', '.join(self.servers)}: {detail}"
                ) from error
        except BaseException:
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            with contextlib.suppress(Exception):
                await client.close()
            raise
        connected.set()
        self._nc = client
        self._connected = True
        self._outbox = asyncio.Queue()
        self._grace_until = time.monotonic() + self.heartbeat_timeout
        await _subscribe(client, f"{self._inbox}.*", cb=self._on_reply)
        await _subscribe(client, f"{self.prefix}.hb.*", cb=self._on_heartbeat)
        await _subscribe(client, f"{self.prefix}.down.*", cb=self._on_down)
        self._own(self._pump())
        self._own(self._heartbeat())
        await self._beat()
        await client.flush(timeout=max(1, int(self.connect_timeout)))

    async def _leave(self) -> None:
        client = self._nc
        if client is None:
            return
        with contextlib.suppress(Exception):
            await self._beat(leaving=True)
            await client.flush(timeout=1)

    async def _teardown(self) -> None:
        """After the loop stopped: fail what waits, stop our tasks, close the connection."""
        self._closing = True
        for future, _, _ in self._replies.values():
            if isinstance(future, asyncio.Future) and not future.done():
                future.set_exception(ActorStopped(f"node {self.node} left the cluster"))
        self._replies.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        client, self._nc = self._nc, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=2.0)
        self._connected = False
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()

    def _own(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- membership -------------------------------------------------------------------------

    async def _beat(self, *, leaving: bool = False) -> None:
        client = self._nc
        if client is None:
            return
        beat = Heartbeat(WIRE_VERSION, self.node, self.incarnation, leaving)
        await client.publish(f"{self.prefix}.hb.{self.node}", msgspec.msgpack.encode(beat))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not self._connected:
                continue
            with contextlib.suppress(Exception):
                await self._beat()
            now = time.monotonic()
            if now < self._grace_until:
                continue
            for key, seen in list(self._members.items()):
                if now - seen > self.heartbeat_timeout:
                    self._declare_down(
                        key,
                        NodeDown(
                            f"node {key[0]} sent no heartbeat for {self.heartbeat_timeout} s "
                            "and is declared down"
                        ),
                    )
            for token, (waiter, _, expires) in list(self._replies.items()):
                if not isinstance(waiter, asyncio.Future) and now > expires:
                    del self._replies[token]
                    waiter(None)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            check_frame(msg.data, 4096, 4)
            beat = self._heartbeats.decode(msg.data)
        except (WireError, msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reject("heartbeat", error)
            return
        key = (beat.node, beat.incarnation)
        if key == (self.node, self.incarnation):
            return
        if beat.node == self.node:
            self._throttle.warn("same-name", "another node also calls itself %s", self.node)
            return
        if beat.leaving:
            self._declare_down(key, None)
            return
        if key in self._dead:
            return
        for other in [k for k in self._members if k[0] == beat.node and k != key]:
            self._declare_down(other, NodeDown(f"node {beat.node} restarted"))
        self._members[key] = time.monotonic()

    def _declare_down(self, key: tuple[str, str], reason: BaseException | None) -> None:
        """A node incarnation is gone: fail what waits on it, finish its proxies. Loop only."""
        with self._lock:
            if key in self._dead:
                return
            self._dead.add(key)
            proxies = [ref for k, ref in list(self._proxies.items()) if k[:2] == key]
        self._members.pop(key, None)
        node = key[0]
        if reason is None:
            logger.info("node %s left the cluster", node)
        else:
            logger.warning("node %s is down: %s", node, reason)
        for token, (waiter, target, _) in list(self._replies.items()):
            if target == key and isinstance(waiter, asyncio.Future):
                del self._replies[token]
                if not waiter.done():
                    waiter.set_exception(
                        NodeDown(f"node {node} is down")
                        if reason is not None
                        else ActorStopped(f"node {node} left the cluster")
                    )
        for ref in proxies:
            finish_proxy(ref._cell, reason)  # pyright: ignore[reportPrivateUsage]

    async def _on_down(self, msg: Msg) -> None:
        node = msg.subject.rsplit(".", 1)[-1]
        try:
            check_frame(msg.data, self.max_message_size, self.max_depth)
            down = self._downs.decode(msg.data)
        except (WireError, msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reject("down notice", error)
            return
        with self._lock:
            ref = self._proxies.get((node, down.incarnation, down.id))
        if ref is not None:
            reason = None if down.reason is None else error_from(down.reason)
            finish_proxy(ref._cell, reason)  # pyright: ignore[reportPrivateUsage]

    # -- exports (local actors reachable from elsewhere) ------------------------------------

    def _export(self, ref: ActorRef[Any]) -> tuple[Address, bool]:
        """The address of local ``ref``, exporting it on first use. Any thread."""
        cell: Cell = ref._cell  # pyright: ignore[reportPrivateUsage]
        if cell.system is not self._system:
            raise WireError(
                f"the ref to {cell.path} belongs to another actor system than node {self.node}'s"
            )
        with self._lock:
            id = self._export_ids.get(cell)
            new = id is None
            if id is None:
                id = next(self._ids)
                self._exports[id] = _Export(ref, cell, id)
                self._export_ids[cell] = id
        if new:
            cell.terminated.when_set(functools.partial(self._on_export_ended, id))
        accepts = cell.accepts
        names = None if accepts is None else tuple(message_name(t) for t in accepts)
        box = cell.mailbox
        address = Address(
            self.node, self.incarnation, id, cell.path, names, max(0, box.capacity - len(box))
        )
        return address, new

    def _on_export_ended(self, id: int, reason: BaseException | None) -> None:
        # Any thread (wherever the actor ended).
        loop = self._loop
        if loop is None or self._closing:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._unexport, id, reason, context=contextvars.Context())

    def _unexport(self, id: int, reason: BaseException | None) -> None:
        with self._lock:
            export = self._exports.pop(id, None)
            if export is None:
                return
            self._export_ids.pop(export.cell, None)
        self._own(self._retire(export, reason))

    async def _retire(self, export: _Export, reason: BaseException | None) -> None:
        for sub in export.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        client = self._nc
        if client is None:
            return
        info = None if reason is None else error_info(reason, export.cell.path, self.node)
        down = Down(WIRE_VERSION, self.incarnation, export.id, info)
        with contextlib.suppress(Exception):
            await client.publish(f"{self.prefix}.down.{self.node}", msgspec.msgpack.encode(down))

    async def _ensure_subscribed(self, id: int) -> None:
        with self._lock:
            export = self._exports.get(id)
        client = self._nc
        if export is None or client is None:
            return
        if export.ready is not None:
            await export.ready
            return
        export.ready = asyncio.get_running_loop().create_future()
        try:
            address = Address(self.node, self.incarnation, id, export.cell.path, None, 0)
            sub = await _subscribe(
                client,
                self._actor_subject(address),
                cb=functools.partial(self._inbound, export),
                pending_msgs_limit=_SUB_PENDING_MSGS,
            )
            export.subs.append(sub)
        finally:
            export.ready.set_result(None)

    async def _register(self, name: str, id: int) -> None:
        client = self._nc
        with self._lock:
            export = self._exports.get(id)
        if client is None or export is None:
            raise ActorStopped(f"actor {name} stopped before it could be made public")
        await self._ensure_subscribed(id)
        sub = await _subscribe(
            client,
            self._name_subject(name),
            queue=self.prefix,
            cb=functools.partial(self._inbound, export),
            pending_msgs_limit=_SUB_PENDING_MSGS,
        )
        export.subs.append(sub)
        await client.flush(timeout=max(1, int(self.connect_timeout)))

    async def _serve_pool(self, name: str, pool: Pool[Any]) -> None:
        client = self._nc
        if client is None:
            raise ActorStopped(f"node {self.node} is leaving the cluster")
        served = _Served(pool, name)
        served.sub = await _subscribe(
            client,
            self._name_subject(name),
            queue=self.prefix,
            cb=functools.partial(self._inbound_pool, served),
            pending_msgs_limit=_SUB_PENDING_MSGS,
        )
        self._own(self._unserve_when_stopped(served))
        await client.flush(timeout=max(1, int(self.connect_timeout)))

    async def _unserve_when_stopped(self, served: _Served) -> None:
        try:
            await served.pool.join()
        finally:
            # Drain, not unsubscribe: frames already delivered here still get their answer
            # (ActorStopped, nothing enqueued) instead of leaving their senders to time out.
            if served.sub is not None:
                drain: Any = served.sub.drain  # untyped in nats-py
                with contextlib.suppress(Exception):
                    await drain()

    async def _inbound_pool(self, served: _Served, msg: Msg) -> None:
        """A frame for a served pool: route it into the pool (one member of the group)."""
        reply_to = msg.reply
        try:
            check_frame(msg.data, self.max_message_size, self.max_depth)
            envelope = self._envelopes.decode(msg.data)
            if envelope.version != WIRE_VERSION:
                raise WireError(f"unsupported wire version {envelope.version}")
        except (WireError, msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reject(served.path, error)
            await self._answer_error(reply_to, served, _as_wire_error(error))
            return
        pool = served.pool
        try:
            if not pool.is_alive:  # stopped; its subscription is being drained
                raise ActorStopped(f"pool {pool.path} has stopped; message not delivered")
            if envelope.kind == PROBE:
                accepts = served.accepts
                names = None if accepts is None else tuple(message_name(t) for t in accepts)
                address = Address(
                    self.node, self.incarnation, _GROUP_ID, pool.path, names, served.free()
                )
                await self._respond(
                    reply_to, Reply(WIRE_VERSION, OK, _raw(address), address.free), []
                )
                return
            message = self._decode_body(served, envelope)
            if envelope.kind == TELL:
                await pool.send(message, timeout=envelope.timeout)
                await self._respond(reply_to, Reply(WIRE_VERSION, OK, _NIL, served.free()), [])
            elif envelope.kind == TRY:
                try:
                    pool.try_send(message)
                except MailboxFull:
                    self._dropped += 1
                    raise
                await self._respond(reply_to, Reply(WIRE_VERSION, OK, _NIL, served.free()), [])
            elif envelope.kind == ASK:
                # Answered in a task of its own, so this subscription goes on routing the
                # next frames meanwhile; the semaphore bounds the asks in flight.
                await served.asks.acquire()
                self._own(self._answer_pool_ask(served, message, envelope.timeout, reply_to))
            else:
                raise WireError(f"unknown envelope kind {envelope.kind}")
        except WireError as error:
            self._reject(served.path, error)
            await self._answer_error(reply_to, served, error)
        except Exception as error:  # refused by the pool: the sender learns why
            await self._answer_error(reply_to, served, error)

    async def _answer_pool_ask(
        self, served: _Served, message: object, timeout: float | None, reply_to: str
    ) -> None:
        try:
            try:
                value = await served.pool.ask(message, timeout=timeout)
            except Exception as error:
                await self._answer_error(reply_to, served, error)
                return
            await self._answer_value(reply_to, served, value)
        finally:
            served.asks.release()

    # -- inbound: frames for a local actor ---------------------------------------------------

    async def _inbound(self, export: _Export, msg: Msg) -> None:
        reply_to = msg.reply
        try:
            check_frame(msg.data, self.max_message_size, self.max_depth)
            envelope = self._envelopes.decode(msg.data)
            if envelope.version != WIRE_VERSION:
                raise WireError(f"unsupported wire version {envelope.version}")
        except (WireError, msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reject(export.cell.path, error)
            await self._answer_error(reply_to, export, _as_wire_error(error))
            return
        try:
            if envelope.kind == PROBE:
                address, _ = self._export(export.ref)
                await self._respond(
                    reply_to, Reply(WIRE_VERSION, OK, _raw(address), address.free), []
                )
                return
            message = self._decode_body(export, envelope)
            ref = export.ref
            if envelope.kind == TELL:
                await ref.send(message, timeout=envelope.timeout)
                await self._respond(reply_to, Reply(WIRE_VERSION, OK, _NIL, export.free()), [])
            elif envelope.kind == TRY:
                try:
                    ref.try_send(message)
                except MailboxFull:
                    self._dropped += 1
                    self._throttle.warn(
                        "try-full",
                        "node %s: a remote try_send found actor %s full; dropped",
                        self.node,
                        export.cell.path,
                    )
                    raise
                await self._respond(reply_to, Reply(WIRE_VERSION, OK, _NIL, export.free()), [])
            elif envelope.kind == ASK:
                await self._enqueue_ask(export, message, envelope.timeout, reply_to)
            else:
                raise WireError(f"unknown envelope kind {envelope.kind}")
        except WireError as error:
            self._reject(export.cell.path, error)
            await self._answer_error(reply_to, export, error)
        except Exception as error:  # refused by the target: the sender learns why
            await self._answer_error(reply_to, export, error)

    def _decode_body(self, export: _Export | _Served, envelope: Envelope) -> object:
        cls = message_type(envelope.type)
        if cls is None:
            raise WireError(f"unknown message type {envelope.type!r}; register it on this node")
        accepts = export.accepts
        if accepts is not None and not issubclass(cls, accepts):
            raise MessageTypeError(
                f"actor {export.path} does not accept {envelope.type!r}; it accepts "
                + " | ".join(message_name(t) for t in accepts)
            )
        try:
            return self._decoder(cls).decode(envelope.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise WireError(f"malformed {envelope.type!r}: {error}") from None

    async def _enqueue_ask(
        self, export: _Export, message: object, timeout: float | None, reply_to: str
    ) -> None:
        # As ActorRef.ask, but the wait for the reply runs in a task of its own, so that
        # this subscription goes on enqueueing the next frames in order meanwhile.
        cell = export.cell
        if type(message) not in cell.admitted:
            cell.admit(message)
        reply = oneshot()
        envelope = Ask(message, reply)
        started = time.monotonic()
        code = cell.mailbox.put_nowait(envelope)
        if code == FULL:
            try:
                code = await cell.mailbox.put(envelope, timeout)
            except Expired:
                raise AskTimeout(
                    f"actor {cell.path} did not take {type(message).__qualname__} within "
                    f"{timeout} s"
                ) from None
        if code != ENQUEUED:
            raise cell.stopped_error(message)
        remaining = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
        self._own(self._answer_ask(export, message, reply, remaining, reply_to))

    async def _answer_ask(
        self,
        export: _Export,
        message: object,
        reply: Any,
        timeout: float | None,
        reply_to: str,
    ) -> None:
        try:
            value = await reply.wait(timeout)
        except Expired:
            error: Exception = AskTimeout(
                f"actor {export.cell.path} did not answer {type(message).__qualname__} "
                f"within {timeout} s"
            )
            await self._answer_error(reply_to, export, error)
            return
        except Exception as error:
            await self._answer_error(reply_to, export, error)
            return
        await self._answer_value(reply_to, export, value)

    async def _answer_value(self, reply_to: str, export: _Export | _Served, value: object) -> None:
        exports: list[int] = []
        try:
            body = self._encode(value, exports)
        except WireError as error:
            await self._answer_error(reply_to, export, error)
            return
        await self._respond(
            reply_to, Reply(WIRE_VERSION, OK, msgspec.Raw(body), export.free()), exports
        )

    async def _respond(self, reply_to: str, reply: Reply, exports: list[int]) -> None:
        client = self._nc
        if not reply_to or client is None:
            return
        for id in exports:
            await self._ensure_subscribed(id)
        with contextlib.suppress(Exception):
            await client.publish(reply_to, msgspec.msgpack.encode(reply))

    async def _answer_error(
        self, reply_to: str, export: _Export | _Served, error: BaseException
    ) -> None:
        info = error_info(error, export.path, self.node)
        free = export.free() if not isinstance(error, MailboxFull) else 0
        await self._respond(reply_to, Reply(WIRE_VERSION, ERROR, _NIL, free, info), [])

    def _reject(self, where: str, error: BaseException) -> None:
        self._rejected += 1
        self._throttle.warn(
            "rejected", "node %s rejected a frame for %s: %s", self.node, where, error
        )

    # -- encoding and decoding values ------------------------------------------------------

    def _encode(self, value: object, exports: list[int]) -> bytes:
        """Encode ``value``, exporting the local refs in it (their ids go to ``exports``)."""

        def hook(obj: Any) -> Any:
            if isinstance(obj, GroupRef):
                raise WireError(
                    f"a GroupRef (of {obj.group!r}) cannot travel in a message; send the name"
                )
            if isinstance(obj, RemoteRef):
                return _address_of(obj)  # pyright: ignore[reportUnknownArgumentType]
            if isinstance(obj, ActorRef):
                address, _ = self._export(obj)  # pyright: ignore[reportUnknownArgumentType]
                exports.append(address.id)
                return address
            raise NotImplementedError

        try:
            return msgspec.msgpack.encode(value, enc_hook=hook)
        except WireError:
            raise
        except (TypeError, ValueError, OverflowError) as error:
            raise WireError(
                f"cannot encode {type(value).__qualname__} for the wire: {error}"
            ) from None

    def _decoder(self, tp: Any) -> msgspec.msgpack.Decoder[Any]:
        decoder = self._decoders.get(tp)
        if decoder is None:
            decoder = self._decoders[tp] = decoder_for(tp, self._dec_hook)
        return decoder

    def _dec_hook(self, tp: Any, obj: Any) -> Any:
        origin = getattr(tp, "__origin__", tp)
        if isinstance(origin, type) and issubclass(origin, ActorRef):
            try:
                address = msgspec.convert(obj, Address)
            except msgspec.ValidationError as error:
                raise ValueError(f"a malformed actor address: {error}") from None
            return self._ref_for(address)
        raise NotImplementedError(f"cannot decode {tp!r}")

    def _ref_for(self, address: Address) -> ActorRef[Any]:
        """The ref for an address that arrived: a local ref for our own actors."""
        if address.node == self.node and address.incarnation == self.incarnation:
            with self._lock:
                export = self._exports.get(address.id)
            if export is not None:
                return export.ref
        key = (address.node, address.incarnation, address.id)
        system, home = self._system, self._home
        assert system is not None
        assert home is not None
        with self._lock:
            ref = self._proxies.get(key)
            if ref is None:
                proxy = Cell(
                    system,
                    _no_factory,
                    name=address.path.rsplit("/", 1)[-1],
                    path=address.path,
                    home=home,
                    capacity=1,
                    throughput=1,
                )
                ref = RemoteRef[Any](proxy, self, address)
                proxy.ref = ref
                self._proxies[key] = ref
            dead = (key[0], key[1]) in self._dead
        if address.node == self.node:
            # Our own actor that has stopped since, or one of an earlier run of this node.
            gone = address.incarnation == self.incarnation
            finish_proxy(
                ref._cell,  # pyright: ignore[reportPrivateUsage]
                None if gone else NodeDown(f"node {address.node} has restarted since"),
            )
        elif dead:
            finish_proxy(
                ref._cell,  # pyright: ignore[reportPrivateUsage]
                NodeDown(f"node {address.node} (incarnation {address.incarnation}) is gone"),
            )
        elif (key[0], key[1]) not in self._members and threading.get_ident() == home.thread_id:
            # Learnt from an address: it counts as alive until its heartbeats stop.
            self._members[(key[0], key[1])] = time.monotonic()
        return ref

    # -- outbound -----------------------------------------------------------------------------

    def _prepare(
        self, ref: RemoteRef[Any], kind: int, message: object, timeout: float | None
    ) -> _Outbound:
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
        return _Outbound(self._subject_of(ref), data, exports, message)

    def _subject_of(self, ref: RemoteRef[Any]) -> str:
        if isinstance(ref, GroupRef):
            return self._name_subject(ref.group)
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
        self, out: _Outbound, target: tuple[str, str] | None, wait: float | None
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
        except (WireError, msgspec.DecodeError, msgspec.ValidationError) as error:
            self._reject(f"a reply from {ref.path}", error)
            raise _as_wire_error(error) from None
        ref.settle_credit(reply.free)
        if reply.status == OK:
            try:
                return self._decoder(reply_type).decode(reply.body)
            except (msgspec.DecodeError, msgspec.ValidationError) as error:
                raise WireError(
                    f"the reply of remote actor {ref.path} on node {ref.node} is not a "
                    f"{_show(reply_type)}: {error}"
                ) from None
        info = reply.error or ErrorInfo("other", "Error", "no detail", ref.path, ref.node)
        failure = error_from(info, message)
        stopped = isinstance(failure, ActorStopped) and not isinstance(failure, NodeDown)
        if stopped and not isinstance(ref, GroupRef):  # one member stopping ends no group
            finish_proxy(ref._cell, None)  # pyright: ignore[reportPrivateUsage]
        raise failure

    async def _request(
        self,
        ref: RemoteRef[Any],
        out: _Outbound,
        wait: float | None,
        reply_type: Any,
        on_timeout: Callable[[], Exception],
    ) -> Any:
        try:
            data = await self._exchange(out, _target_of(ref), wait)
        except _NoResponders:
            if isinstance(ref, GroupRef):
                raise ActorNotFound(
                    f"no node of the cluster serves {ref.group!r} right now; message not delivered",
                    out.message,
                ) from None
            finish_proxy(ref._cell, None)  # pyright: ignore[reportPrivateUsage]
            raise ref.stopped_error(out.message) from None
        except TimeoutError:
            raise on_timeout() from None
        return self._read_reply(ref, data, reply_type, out.message)

    def _send_parts(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> tuple[_Outbound, float, Callable[[], Exception]]:
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
    ) -> tuple[_Outbound, Any, Callable[[], Exception]]:
        out = self._prepare(ref, ASK, message, timeout)

        def on_timeout() -> Exception:
            return AskTimeout(
                f"remote actor {ref.path} on node {ref.node} did not answer "
                f"{type(message).__qualname__} within {timeout} s"
            )

        return out, _reply_type(type(message)), on_timeout

    async def remote_send(
        self, ref: RemoteRef[Any], message: object, timeout: float | None
    ) -> None:
        """Internal: `RemoteRef.send` (see there): a tell, waiting for its acknowledgement.

        Cancellation: the frame may already be out and then still be enqueued.
        """
        out, wait, on_timeout = self._send_parts(ref, message, timeout)
        await self._call(self._request(ref, out, wait, None, on_timeout))

    def blocking_send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """Internal: `RemoteRef.blocking_send`, from a plain thread."""
        ensure_plain_thread()
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

    def _post(self, callback: Callable[..., object], *args: Any) -> None:
        loop = self._loop
        if loop is None or self._closing:
            raise SystemNotRunning(f"the cluster transport of node {self.node} is not running")
        try:
            loop.call_soon_threadsafe(callback, *args, context=contextvars.Context())
        except RuntimeError:
            raise SystemNotRunning(
                f"the cluster transport of node {self.node} has stopped"
            ) from None

    def _try_on_loop(self, ref: RemoteRef[Any], out: _Outbound) -> None:
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
        envelope = Envelope(WIRE_VERSION, PROBE, "", _NIL, None, self.node)
        out = _Outbound(self._subject_of(ref), msgspec.msgpack.encode(envelope), [], None)
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
        envelope = Envelope(WIRE_VERSION, PROBE, "", _NIL, None, self.node)
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
            out = _Outbound(self._name_subject(name), data, [], None)
            try:
                frame = await self._exchange(out, None, min(max(remaining, 0.25), 1.0))
                check_frame(frame, self.max_message_size, self.max_depth)
                reply = self._replies_decoder.decode(frame)
                if reply.status != OK:
                    raise WireError("the lookup was refused")
                address = self._addresses.decode(reply.body)
            except (_NoResponders, TimeoutError):
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.2)
                continue
            except (WireError, msgspec.DecodeError, msgspec.ValidationError) as error:
                self._reject(f"a lookup answer for {name!r}", error)
                continue
            if (address.node, address.incarnation) in self._dead:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            if group or address.id == _GROUP_ID:  # a served pool: address the whole group
                return self._group_ref(name, address)
            return self._ref_for(address)

    def _group_ref(self, name: str, member: Address) -> GroupRef[Any]:
        """The one `GroupRef` of public ``name`` (while anything holds it)."""
        system, home = self._system, self._home
        assert system is not None
        assert home is not None
        key = ("*", name, _GROUP_ID)
        address = Address("*", "*", _GROUP_ID, f"/group/{name}", member.accepts, member.free)
        with self._lock:
            ref = self._proxies.get(key)
            if isinstance(ref, GroupRef):
                ref.settle_credit(member.free)
                return ref
            proxy = Cell(
                system,
                _no_factory,
                name=name,
                path=address.path,
                home=home,
                capacity=1,
                throughput=1,
            )
            group = GroupRef[Any](proxy, self, address, name)
            proxy.ref = group
            self._proxies[key] = group
        return group


# -- helpers --------------------------------------------------------------------------------


async def _subscribe(
    client: NatsClient,
    subject: str,
    *,
    cb: Callable[[Msg], Awaitable[None]],
    queue: str = "",
    pending_msgs_limit: int = _SUB_PENDING_MSGS,
) -> Subscription:
    # nats-py leaves one parameter of subscribe() untyped: call it through Any.
    subscribe: Any = client.subscribe  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    sub: Subscription = await subscribe(
        subject, queue=queue, cb=cb, pending_msgs_limit=pending_msgs_limit
    )
    return sub


def _address_of(ref: RemoteRef[Any]) -> Address:
    return ref.address


def _target_of(ref: RemoteRef[Any]) -> tuple[str, str] | None:
    """The node incarnation whose end fails ``ref``'s pending calls (None: a group's)."""
    if isinstance(ref, GroupRef):
        return None
    address = ref.address
    return (address.node, address.incarnation)


def _no_factory() -> Any:
    raise RuntimeError("a proxy for a remote actor never runs")


def _raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.msgpack.encode(value))


def _as_wire_error(error: BaseException) -> WireError:
    return error if isinstance(error, WireError) else WireError(f"malformed frame: {error}")


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


def _check_accepts(ref: RemoteRef[Any], accepts: Any) -> None:
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
