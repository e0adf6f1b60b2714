"""The cluster loop thread, the bridge to it, and the NATS connection.

Threads: nats-py is asyncio-only, while the host may run trio and actors run on worker
loops. The client therefore lives on an asyncio loop of its own, in a thread named
``actors-cluster-<node>`` that `Nats.detach` joins. Callers on any loop reach it through
``call_soon_threadsafe`` and get the outcome back through `actors._oneshot` (which
knows how to wake an asyncio task, a trio task or a plain thread). Message checks and
encoding happen in the caller's thread, so that a bad message fails at the call site.

Single writer: everything marked "loop only" (here and in the layers above) is touched only
on the cluster loop. The export table and the proxy table are also read from callers'
threads (encoding and decoding refs) and are guarded by ``_lock``.

`Transport` is the bottom layer of `Nats`: ``_membership`` -> ``_registry`` ->
``_inbound`` -> ``_outbound`` -> ``_nats`` build on it, each importing only the layers
below (``_registry`` names `Nats` for typing only). Every layer's state is set in
`Nats.__init__`; each layer declares what it uses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._errors import ActorError, ActorStopped, SystemNotRunning
from .._oneshot import oneshot
from .._runtime import Home

if TYPE_CHECKING:
    import threading
    from collections.abc import Awaitable, Callable, Coroutine

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

    from .._oneshot import Latch
    from ._wire import Address

logger = logging.getLogger("actors.cluster")

T = TypeVar("T")

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


class Transport:
    """The loop thread, the bridge from callers' threads, and the NATS connection."""

    # Set by `Nats.__init__` and `Nats.attach`.
    node: str
    prefix: str
    servers: list[str]
    heartbeat_timeout: float
    connect_timeout: float
    incarnation: str
    _options: dict[str, Any]
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _home: ClusterHome | None
    _nc: NatsClient | None
    _closing: bool
    _connected: bool
    _ended: Latch
    _lock: threading.Lock
    # Loop only.
    _replies: dict[str, tuple[Any, tuple[str, str] | None, float]]  # pending replies by token
    _tasks: set[asyncio.Task[Any]]
    _throttle: Throttle
    _rejected: int
    _dropped: int
    _reconnects: int

    # -- subjects -------------------------------------------------------------------------

    def _actor_subject(self, address: Address) -> str:
        return f"{self.prefix}.actor.{address.node}.{address.incarnation}.{address.id}"

    def _name_subject(self, name: str) -> str:
        return f"{self.prefix}.name.{name}"

    @property
    def _inbox(self) -> str:
        return f"_INBOX.{self.prefix}.{self.node}.{self.incarnation}"

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

    # -- on the cluster loop: connecting and leaving ----------------------------------------

    async def _connect(self) -> None:
        from nats.aio.client import Client

        refused: list[str] = []
        connected = asyncio.Event()

        async def on_error(error: Exception) -> None:
            text = str(error)
            refusal = any(word in text for word in _REFUSALS)
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
            self._reconnected()
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
            # Bounded: nats-py may be inside its reconnect loop, where close() can hang.
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(attempt, timeout=1.0)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(client.close(), timeout=1.0)
            raise
        connected.set()
        self._nc = client
        self._connected = True

    def _reconnected(self) -> None:
        """Hook: the connection came back (`Membership` restarts the heartbeat clocks)."""

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

    def _own(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _reject(self, where: str, error: BaseException) -> None:
        self._rejected += 1
        self._throttle.warn(
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
