"""The cluster loop thread, the bridge to it, and the NATS connection.

Threads: nats-py is asyncio-only, while the host may run trio and actors run on worker
loops. The client therefore lives on an asyncio loop of its own, in a thread named
``actors-cluster-<node>`` that `Transport.stop` joins. That loop is uvloop where uvloop is
installed, whatever the workers use: every remote round trip crosses it twice on each
node, and uvloop's wake-ups and task steps are the cheaper ones (remote ask p50 -15 to
-20 %, see docs/benchmarks.md). Callers on any loop reach it through
``call_soon_threadsafe`` and get the outcome back through `actors._oneshot` (which
knows how to wake an asyncio task, a trio task or a plain thread). Message checks and
encoding happen in the caller's thread, so that a bad message fails at the call site.

Single writer: everything marked "loop only" (here and in the other parts) is touched only
on the cluster loop. The tables also read from callers' threads (exports, proxies, the
node incarnations declared down) are guarded by the one `Identity.lock`: one lock, so that
declaring a node down and making a proxy for one of its actors exclude each other.

`Transport` is the bottom part of a node (see ``_nats``): it knows nothing of the others.
They reach it through the methods below, and it tells them of a reconnect and of its
teardown through the callbacks they add to `Transport.on_reconnected` and
`Transport.on_teardown`. The tests build it with a fake client (`Transport.client` is
plain state), without the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._errors import ActorError, ActorStopped, SystemNotRunning
from .._oneshot import Latch, oneshot
from .._runtime import Home, new_event_loop

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine, Sequence

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from ._wire import Address

logger = logging.getLogger("actors.cluster")

T = TypeVar("T")

NODE_ID: Final = 0  # the id of a node's own subject p.actor.<node>.<incarnation>.0
SUB_PENDING_MSGS: Final = 65536  # per-subscription queue of nats-py (slow consumer beyond)


# Errors that mean the server refused this node (not that it was unreachable): attach
# fails at once instead of retrying until connect_timeout.
_REFUSALS: Final = (
    "Authorization",
    "Authentication",
    "CERTIFICATE_REQUIRED",  # TLS 1.3: the server wants a client certificate
    "CERTIFICATE_VERIFY_FAILED",
    "UNKNOWN_CA",
    "BAD_CERTIFICATE",
)


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


class ClusterHome(Home):
    """The cluster loop, as the nominal home of proxy cells (which never run)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread_id: int, node: str) -> None:
        self.loop = loop
        self.thread_id = thread_id
        self.label = f"cluster:{node}"


class Throttle:
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


class Identity:
    """Who this node is (name, incarnation, subject prefix), its subjects, and the shared lock.

    Example:
        ```python
        me = Identity("a", "actors")
        me.name_subject("ledger")  # "actors.name.ledger"
        ```
    """

    __slots__ = ("incarnation", "lock", "node", "prefix")

    def __init__(self, node: str, prefix: str, incarnation: str | None = None) -> None:
        self.node = node
        self.prefix = prefix
        # Distinguishes this run of the node from earlier ones of the same name.
        self.incarnation = incarnation or secrets.token_hex(6)
        # Guards the tables read from callers' threads (see the module docstring).
        self.lock = threading.Lock()

    def actor_subject(self, address: Address) -> str:
        return f"{self.prefix}.actor.{address.node}.{address.incarnation}.{address.id}"

    def node_subject(self, node: str, incarnation: str) -> str:
        """The subject on which a node incarnation answers whether an export still exists."""
        return f"{self.prefix}.actor.{node}.{incarnation}.{NODE_ID}"

    def name_subject(self, name: str) -> str:
        return f"{self.prefix}.name.{name}"

    def durable_subject(self, name: str) -> str:
        return f"{self.prefix}.durable.{name}"

    @property
    def inbox(self) -> str:
        """The prefix of this node incarnation's reply subjects."""
        return f"_INBOX.{self.prefix}.{self.node}.{self.incarnation}"


class Transport:
    """The loop thread, the bridge from callers' threads, and the NATS connection.

    Example:
        ```python
        transport = Transport(Identity("a", "actors"), ["nats://127.0.0.1:4222"], {}, 5.0)
        loop = transport.start("actors-cluster-a")
        await transport.call(transport.connect())
        ```
    """

    def __init__(
        self,
        me: Identity,
        servers: Sequence[str],
        options: dict[str, Any],
        connect_timeout: float,
    ) -> None:
        self.me = me
        self.servers = list(servers)
        self.connect_timeout = connect_timeout
        self._options = options
        self.loop: asyncio.AbstractEventLoop | None = None
        self.home: ClusterHome | None = None
        self._thread: threading.Thread | None = None
        self.client: NatsClient | None = None  # set by connect (or by a test)
        self.closing = False
        self.connected = False
        self._ended = Latch()
        # Loop only.
        self._tasks: set[asyncio.Task[Any]] = set()
        self.throttle = Throttle()
        self.rejected = 0
        self.dropped = 0
        self.reconnects = 0
        self.on_reconnected: list[Callable[[], None]] = []
        self.on_teardown: list[Callable[[], None]] = []

    @property
    def node(self) -> str:
        return self.me.node

    # -- the thread and the bridge ----------------------------------------------------------

    def start(self, name: str) -> asyncio.AbstractEventLoop:
        """Start the cluster thread (named ``name``) and return its loop. Any thread."""
        ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()
        thread = threading.Thread(target=self._main, args=(ready,), name=name, daemon=True)
        self._thread = thread
        thread.start()
        loop = ready.result()
        self.loop = loop
        self.home = ClusterHome(loop, thread.ident or 0, self.node)
        return loop

    @property
    def started(self) -> bool:
        return self.loop is not None and self._thread is not None

    async def stop(self) -> None:
        """Stop the loop (which tears down on its way out) and join the thread. Any loop.

        Cancellation: runs to the end once the loop was told to stop.
        """
        loop, thread = self.loop, self._thread
        self.closing = True
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        await self._ended.wait()
        thread.join()

    def _main(self, ready: concurrent.futures.Future[asyncio.AbstractEventLoop]) -> None:
        loop = new_event_loop(None)
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

    def on_cluster_thread(self) -> bool:
        home = self.home
        return home is not None and threading.get_ident() == home.thread_id

    def _elsewhere(self) -> bool:
        """On a thread other than the cluster loop's (False without the thread: a test)."""
        home = self.home
        return home is not None and threading.get_ident() != home.thread_id

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start ``coro`` as a task of the cluster loop, in a context of its own.

        Not ``run_coroutine_threadsafe``: that runs the task in a copy of the caller's
        context, and a trio caller's context says "trio" to sniffio (so anyio, in the core's
        send path, would take the cluster loop for a trio run).
        """
        loop = self.loop
        if loop is None or self.closing:
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

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the cluster loop; await it from any loop (asyncio or trio)."""
        future = self.submit(coro)
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
        """Run ``coro`` on the cluster loop, blocking this plain thread until done."""
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise ActorStopped(f"node {self.node} left the cluster meanwhile") from None

    def post(self, callback: Callable[..., object], *args: Any) -> None:
        loop = self.loop
        if loop is None or self.closing:
            raise SystemNotRunning(f"the cluster transport of node {self.node} is not running")
        try:
            loop.call_soon_threadsafe(callback, *args, context=contextvars.Context())
        except RuntimeError:
            raise SystemNotRunning(
                f"the cluster transport of node {self.node} has stopped"
            ) from None

    # -- on the cluster loop: connecting and leaving ----------------------------------------

    async def connect(self) -> None:
        from nats.aio.client import Client

        refused: list[str] = []
        connected = asyncio.Event()

        async def on_error(error: Exception) -> None:
            text = str(error)
            refusal = any(word in text for word in _REFUSALS)
            if refusal and not connected.is_set():
                refused.append(text)
            self.throttle.warn("nats-error", "node %s: NATS error: %s", self.node, text)

        async def on_disconnected() -> None:
            if not self.closing:
                self.connected = False
                logger.warning("node %s lost its NATS connection; reconnecting", self.node)

        async def on_reconnected() -> None:
            self.connected = True
            self.reconnects += 1
            for callback in self.on_reconnected:
                callback()
            logger.warning("node %s reconnected to NATS", self.node)

        async def on_closed() -> None:
            self.connected = False

        client = Client()
        attempt = asyncio.ensure_future(
            client.connect(
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
                inbox_prefix=f"_INBOX.{self.me.prefix}.{self.node}",
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
            # Bounded: nats-py may be inside its reconnect loop, where close() can hang.
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(attempt, timeout=1.0)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(client.close(), timeout=1.0)
            raise
        connected.set()
        self.client = client
        self.connected = True

    async def _teardown(self) -> None:
        """After the loop stopped: fail what waits, stop our tasks, close the connection."""
        self.closing = True
        for callback in self.on_teardown:
            callback()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), timeout=2.0)
        self.connected = False
        for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            task.cancel()

    def own(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def drop(self) -> None:
        """Count a late or stray reply. Any thread (counted on the cluster loop)."""
        if self._elsewhere():
            with contextlib.suppress(SystemNotRunning):  # leaving: nobody reads it any more
                self.post(self.drop)
            return
        self.dropped += 1

    def reject(self, where: str, error: BaseException) -> None:
        """Count and log a refused inbound frame. Any thread (counted on the cluster loop)."""
        if self._elsewhere():
            with contextlib.suppress(SystemNotRunning):
                self.post(self.reject, where, error)
            return
        self.rejected += 1
        self.throttle.warn(
            "rejected", "node %s rejected a frame for %s: %s", self.node, where, error
        )


async def subscribe(
    client: NatsClient,
    subject: str,
    *,
    cb: Callable[[Msg], Awaitable[None]],
    queue: str = "",
    pending_msgs_limit: int = SUB_PENDING_MSGS,
) -> Subscription:
    # nats-py leaves one parameter of subscribe() untyped: call it through Any.
    subscribe: Any = client.subscribe  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
    sub: Subscription = await subscribe(
        subject, queue=queue, cb=cb, pending_msgs_limit=pending_msgs_limit
    )
    return sub
