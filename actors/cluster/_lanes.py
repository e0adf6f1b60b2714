"""Ask lanes: a NATS connection of an event loop's own, for the remote asks made on it.

Why: nats-py runs on the node's cluster loop, in a thread of its own, so that no handler can
block heartbeats. A remote ask made on a worker loop therefore crossed that thread boundary
twice on the asking node (the request to the cluster loop, the reply back), and twice
again on the owner's (the request to the actor's loop, the reply back), 20-45 µs each on a
loaded machine: as much as a remote ask may add to a raw NATS request in all (see
``docs/benchmarks.md``, issue 16).

What: the first remote ask made on an asyncio or uvloop loop (a worker loop, or an asyncio
host's loop; never the cluster loop, never trio) starts that loop's *ask lane*: a NATS
connection of its own, with the node's servers, options and credentials, named
``actors:<node>:lane-<n>``, and one wildcard subscription for its replies,
``_INBOX.<prefix>.<node>.<incarnation>.l<n>.*`` (inside the node's own inbox, so the
permissions that let the node subscribe to its inbox cover it). That first ask, and every
ask made while the lane connects or is disconnected, goes through the cluster loop as
before. Once connected, an ask on that loop publishes its request on the lane and its reply
arrives there, on the asking loop: no thread hop on the asking side. Heartbeats,
membership, tells, try_sends, lookups and everything else stay on the cluster loop's
connection.

Order: a ref's tells go over the cluster connection, and NATS orders messages per
connection only. So an ask takes the lane only when nothing of its ref's can still be on
its way over the cluster connection: no tell or try_send unanswered, no acknowledged send
or ask there not yet answered (`Credit.quiet`; an abandoned one counts until its stream
drained and a probe through the outbox came back behind it, `Requests.held`). Otherwise it
goes through the cluster loop, which waits for the ref's tells as it always did. A frame
carrying refs of local actors (which must be subscribed before it leaves) goes there too.
The cancel notice of an abandoned lane ask follows it on the lane.

Failures: a lane that cannot connect is logged once and its loop asks (and its actors are
asked) through the cluster loop for the node's life. An ask whose reply was lost with a
lane's connection (a server restart) raises `AskTimeout` at its deadline, as one on the
cluster connection does (an ask is never sent again); asks made while the lane is away go
through the cluster loop.
"No responders" on a lane hands the ask to the cluster loop's full path (asking the owner
node whether the actor is still there, retrying within the deadline). When the target's
node is declared down, its asks on every lane fail with `NodeDown` at once; when this node
leaves, every lane fails its asks with `ActorStopped` and is closed (`Lanes.close`, before
the cluster connection: its subscriptions, those taking asks for this node's actors too,
go first; an ask taken there and not answered yet is answered by nobody, and its asker
hears of the node's leave as for any other).

The owner's side: each lane also takes the asks for this node's actors living on its loop,
on one subscription of its own, ``<prefix>.actor.<node>.<incarnation>.l<n>.*`` (inside the
node's actor subjects, so the permissions that let the node subscribe to its actors cover
it; one per loop, none per actor, nothing to move when an actor moves). An ask's answer
carries a hint (`Reply.home`): the lane of the loop its actor lives on when it was
answered, or `NO_HOME`. The asker keeps it on the ref (`home_of`) and sends the ref's next
lane ask to ``<lane subject>.<export id>``. There the lane checks what the cluster
connection's path checks (``Inbound.on_lane_frame``: the export, the frame, the type, the
deadline, the trace context), enqueues the ask from its loop (a synchronous actor then
drains as a callback of the same loop: no thread hop) and answers on its own connection,
the one that received the ask (a server that keeps nodes to their subjects allows a reply
only there, ``allow_responses``), with its own `Answers` and its own `Asking` table (the
cancel notice of such an ask takes the same subject, behind it). A loop that owns actors
but never asks gets its lane when the cluster loop first answers for one of them
(`Lanes.hint`); until it is up the hint is `NO_HOME` and asks go the cluster loop's way.

Decisions where nothing else says: the hint is the owner's word, cached per ref and
read and written by the askers of any loop without a lock (a stale value costs one ask a
longer way, never a wrong answer). A stale hint (the watchdog moved the actor) reaches
the old loop's lane, which enqueues the ask all the same (a mailbox takes items from any
thread; the actor's own loop is woken as for any send) and answers with the actor's new
home. "No responders" on a lane subject (the lane not up, the node restarted) forgets the
hint and takes the full path, as for an actor subject; so does an ask that timed out on a
lane subject (its loop may be blocked: the next ask goes through the cluster connection,
whose actor may have been moved away from the blocked loop). Any node may ask any
exported actor on a lane subject, as on an actor subject: permissions bound who may
publish there, never which actor (the frame's sender is not trusted for that either).

Order on the owner's side: an ask takes a lane only when its ref's tells and acknowledged
sends are all answered (`Credit.quiet`), and a tell is answered only once enqueued, so an
ask taken by the owner's lane is enqueued after every tell its sender sent before it.

Bounds: one lane per loop per node, made by a loop that asks or that owns an actor asked
from another node. A blocked loop stalls only its own lane (its asks, the asks for its
actors, its connection's pings); heartbeats stay on the cluster loop.

Thread rules: an `AskLane` is touched only on its own loop (single owner: its client, its
table of waiting asks, its tasks, its counters, its `Answers`, `Asking` and decoders;
another thread reaches it only through ``loop.call_soon_threadsafe``; its ``number`` and
``loop`` never change). `Lanes` keeps the table of lanes under its lock (touched
when a loop makes its lane, when a node goes down and at leave); each thread finds its own
loop's lane through a thread-local, with no lock per ask. Counters other threads read
(`Lanes.statistics`) are snapshots, as the node's others are.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._errors import ActorStopped
from .._oneshot import Expired, oneshot
from .._runtime import HostHome, WorkerHome
from ._answers import Answers
from ._asking import Asking
from ._remote import home_of, lane_subject_of, note_home
from ._transport import SUB_PENDING_MSGS, Throttle, subscribe

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from .._oneshot import Oneshot
    from .._runtime import Home
    from ._frames import Outbound
    from ._inbound import Decoders, Inbound
    from ._membership import Membership
    from ._registry import Export, Registry
    from ._remote import RemoteRef
    from ._transport import Transport
    from ._wire import Reply

__all__ = ("NO_RESPONDERS", "AskLane", "Lanes", "lane_subject")

logger = logging.getLogger("actors.cluster")

NO_RESPONDERS: Final = b""  # the reply of an ask nobody received (never a frame)
_CLOSE_WAIT: Final = 2.0  # seconds leaving waits for a lane's loop to close it

Target = tuple[str, str] | None
NO_HOME: Final = -1  # `Reply.home`: the actor's loop has no ask lane taking asks (yet)


def lane_subject(actor_subject: str, number: int) -> str:
    """Where an ask to the actor of ``actor_subject`` goes on its owner's lane ``number``.

    Example:
        ```python
        lane_subject("p.actor.a.x1.7", 2)  # "p.actor.a.x1.l2.7"
        ```
    """
    head, _, id = actor_subject.rpartition(".")
    return f"{head}.l{number}.{id}"


class AskLane:
    """One event loop's own NATS connection for the remote asks made on it. Own loop only.

    Example:
        ```python
        lane = lanes.current()  # on a worker loop: its lane, once connected
        if lane is not None:
            frame = await lane.request(out, ("b", "1a2b"), 5.0)
        ```
    """

    __slots__ = (
        "_connecting",
        "_lanes",
        "_tasks",
        "_throttle",
        "_tokens",
        "_waiting",
        "answers",
        "asking",
        "asks",
        "client",
        "closed",
        "connected",
        "decoders",
        "inbox",
        "loop",
        "name",
        "number",
        "served",
        "subject",
    )

    def __init__(self, lanes: Lanes, loop: asyncio.AbstractEventLoop, number: int) -> None:
        self._lanes = lanes
        self.loop = loop
        node = lanes.transport.node
        me = lanes.transport.me
        self.name = f"actors:{node}:lane-{number}"
        self.number = number
        self.inbox = f"{me.inbox}.l{number}"
        # Asks for this node's actors homed on this loop: ``<subject>.<export id>``.
        self.subject = f"{me.prefix}.actor.{node}.{me.incarnation}.l{number}"
        # Own loop only, all of them.
        self.client: NatsClient | None = None
        self.connected = False
        self.closed = False
        self.asks = 0  # asks answered on this lane (read elsewhere as a snapshot)
        self.served = 0  # asks for this node's actors enqueued from this lane (a snapshot too)
        # The owner's side: the asks taken here that a cancel notice can reach, their
        # answers (published here, on the connection that received them), the decoders.
        self.asking = Asking(remembered=0)
        self.answers = Answers(self, node, lanes.registry, self.respond, self.asking)
        self.answers.hint = self.hint
        self.decoders: Decoders = {}
        self._waiting: dict[str, tuple[Oneshot, Target]] = {}
        self._tokens = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()  # cancel notices on their way
        self._connecting: asyncio.Task[None] | None = None
        self._throttle = Throttle()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed" if self.closed else "disconnected"
        return f"<AskLane {self.name} {state} waiting={len(self._waiting)}>"

    async def request(
        self,
        out: Outbound,
        target: Target,
        left: float | None,
        ref: RemoteRef[Any] | None = None,
        shared: bool = False,
    ) -> bytes | None:
        """Publish ``out`` on this lane; its reply frame (`NO_RESPONDERS`: nobody got it).

        None when the lane could not publish it (nothing left: the caller sends it another
        way). To the owner's lane of the actor's loop when ``ref``'s hint names one
        (`home_of`), else to the actor's subject; a hint that found nobody, or no reply in
        time, is forgotten (the owner's loop may be gone or blocked). ``shared``: ``left``
        is a duration the loop's asks share (an ask's own timeout), so the wait takes the
        loop's shared deadline queue for it (`Oneshot.wait`) instead of a timer of its own
        (`Oneshot.wait_once`, for what is left of an inherited deadline).

        Raises:
            Expired: no reply within ``left`` seconds (a cancel notice follows the ask).
            NodeDown: the target's node was declared down meanwhile.
            ActorStopped: this node left meanwhile.

        Cancellation: the ask is forgotten, and a cancel notice follows it on this lane.
        """
        client = self.client
        if client is None or not self.connected:
            return None
        home = 0 if ref is None else home_of(ref)
        subject = out.subject
        if home and ref is not None:
            subject = lane_subject_of(ref, home, subject, lane_subject)
        token = str(next(self._tokens))
        # Waiting before the frame leaves: no reply (and no node-down notice, which the
        # caller checked for just before, without yielding) can come before it is expected.
        done = oneshot()
        self._waiting[token] = (done, target)
        try:
            await client.publish(subject, out.data, reply=f"{self.inbox}.{token}")
        except Exception:  # the connection dropped, or its buffer is full: not sent
            self._waiting.pop(token, None)
            return None
        except BaseException:  # cancelled while nats-py flushed: the frame may have left
            if self._waiting.pop(token, None) is not None:
                self._cancel_remotely(out, subject)
            raise
        try:
            if left is None or shared:
                data: bytes = await done.wait(left)
            else:
                data = await done.wait_once(left)
        except BaseException as error:
            # Still waiting: the asker gave up (failed asks have left the table already).
            if self._waiting.pop(token, None) is not None:
                self._cancel_remotely(out, subject)
            if home and ref is not None and isinstance(error, Expired):
                note_home(ref, NO_HOME)  # its loop may be blocked: the next ask goes around
            raise
        if data:
            self.asks += 1
        elif home and ref is not None:
            note_home(ref, NO_HOME)  # that lane is not up (any more): the next learns anew
        return data

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        entry = self._waiting.pop(token, None)
        if entry is None:  # a late reply (the asker gave up) or a stray one
            self._lanes.transport.drop()
            return
        headers = msg.headers
        if headers is not None and not msg.data and headers.get("Status") == "503":
            entry[0].settle(NO_RESPONDERS)
        else:
            entry[0].settle(msg.data)

    def _cancel_remotely(self, out: Outbound, subject: str) -> None:
        """Tell the owner the asker gave up: on this lane and the ask's ``subject``, so that
        it follows the ask (an owner's lane holds the asks it took, `AskLane.asking`)."""
        notice = self._lanes.cancel_notice(out)
        client = self.client
        if notice is None or client is None or self.closed:
            return
        _, data = notice  # to one actor: the notice takes the ask's subject
        self.own(_publish_quietly(client, subject, data))

    # -- the owner's side: asks for this node's actors homed on this loop ------------------

    async def _on_request(self, msg: Msg) -> None:
        await self._lanes.inbound.on_lane_frame(self, msg)

    async def respond(self, reply_to: str, reply: Reply, exports: list[int]) -> None:
        """Publish ``reply`` to an ask taken on this lane, on this lane (`allow_responses`:
        the connection that received it), once the refs exported in it are subscribed (on
        the cluster loop). Lost with the connection: the asker times out, as on the cluster
        connection's."""
        client = self.client
        if not reply_to or client is None or self.closed:
            return
        try:  # not `contextlib.suppress`: a context manager per answer, for nothing
            if exports:
                lanes = self._lanes
                await lanes.transport.call(lanes.inbound.ensure_all_subscribed(exports))
            await client.publish(reply_to, msgspec.msgpack.encode(reply))
        except Exception:  # lost with the connection: its asker times out
            return

    def hint(self, export: Export) -> int:
        """The `Reply.home` of an answer given here: this lane while the actor lives on its
        loop, else its home's (a racy read of its home: a stale one costs one forward)."""
        if export.cell.home.loop is self.loop and self.connected:
            return self.number
        return self._lanes.hint(export)

    @property
    def closing(self) -> bool:
        """Whether the lane is closed (its `Answers` start no sender task then)."""
        return self.closed

    def fail_target(self, target: tuple[str, str], error: Callable[[], BaseException]) -> None:
        """Node incarnation ``target`` is down: fail the asks waiting on it."""
        for token, (done, key) in list(self._waiting.items()):
            if key == target:
                del self._waiting[token]
                done.settle(error=error())

    def start(self) -> None:
        """Connect in the background; asks go the other way until connected.

        The task is joined by `_close` (never cancelled: nats-py may leave a socket behind
        a connect cancelled halfway; it ends by itself within ``connect_timeout``).
        """
        self._connecting = self.loop.create_task(self._connect())

    def own(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task of this lane (cancelled when it closes). Own loop only."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connect(self) -> None:
        from nats.aio.client import Client

        lanes = self._lanes
        client = Client()

        async def on_error(error: Exception) -> None:
            self._throttle.warn("lane-error", "%s: NATS error: %s", self.name, error)

        async def on_disconnected() -> None:
            self.connected = False

        async def on_reconnected() -> None:  # nats-py restored the reply subscription
            self.connected = not self.closed

        async def on_closed() -> None:
            self.connected = False

        options: dict[str, Any] = {**lanes.options, "name": self.name}
        ready = False
        try:
            async with asyncio.timeout(lanes.transport.connect_timeout):
                await client.connect(
                    error_cb=on_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                    closed_cb=on_closed,
                    **options,
                )
                await subscribe(client, f"{self.inbox}.*", cb=self._on_reply)
                # The asks for this node's actors living on this loop.
                await subscribe(
                    client,
                    f"{self.subject}.*",
                    cb=self._on_request,
                    pending_msgs_limit=SUB_PENDING_MSGS,
                )
                await client.flush()
            ready = not self.closed  # else the node left while this connected
        except Exception as error:
            logger.warning(
                "%s could not connect (%s); remote asks on its loop go through the cluster loop",
                self.name,
                error or type(error).__name__,
            )
        finally:  # also when cancelled (the node leaving): no connection is left behind
            if not ready:
                self.closed = True
                await _close_quietly(client)
        if ready:
            self.client = client
            self.connected = True

    def begin_close(self, error: Callable[[], BaseException], done: Oneshot) -> None:
        """Fail what waits, then close the connection and settle ``done``."""
        self.closed = True
        self.connected = False
        waiting, self._waiting = self._waiting, {}
        for entry, _ in waiting.values():
            entry.settle(error=error())
        self.loop.create_task(self._close(done))  # joined by `Lanes.close`, through ``done``

    async def _close(self, done: Oneshot) -> None:
        try:
            connecting = self._connecting
            if connecting is not None:  # it sees ``closed`` and closes its client itself
                await asyncio.wait({connecting})
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)
            client, self.client = self.client, None
            if client is not None:
                await _close_quietly(client)
        finally:
            done.settle()


async def _close_quietly(client: NatsClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), timeout=_CLOSE_WAIT)


async def _publish_quietly(client: NatsClient, subject: str, data: bytes) -> None:
    with contextlib.suppress(Exception):  # best effort, as the cluster loop's notices
        await client.publish(subject, data)


class Lanes:
    """The ask lanes of one node, one per event loop that asks (see the module).

    Handed the transport (identity, thread, counters), membership (a node declared down
    fails its asks on every lane), the nats-py connect options of the node, the maker of
    a cancel notice for an ask's frame (``_pump``), and the inbound and the registry
    (which take and answer the asks for this node's actors that arrive on a lane).

    Example:
        ```python
        options = config.connect_options()
        lanes = Lanes(transport, membership, options, outbox.cancel_notice, inbound, registry)
        lane = lanes.current()  # None: ask through the cluster loop
        await lanes.close()  # at leave
        ```
    """

    def __init__(
        self,
        transport: Transport,
        membership: Membership,
        options: dict[str, Any],
        cancel_notice: Callable[[Outbound], tuple[str, bytes] | None],
        inbound: Inbound,
        registry: Registry,
    ) -> None:
        self.transport = transport
        self.options = options
        self.cancel_notice = cancel_notice
        # What takes the asks for this node's actors on their loops' lanes.
        self.inbound = inbound
        self.registry = registry
        self._lock = threading.Lock()
        self._lanes: dict[asyncio.AbstractEventLoop, AskLane] = {}  # guarded by the lock
        self._asked: set[asyncio.AbstractEventLoop] = set()  # lanes requested; the lock
        self._numbers = itertools.count(1)  # guarded by the lock
        self._closing = False  # guarded by the lock
        self._local = threading.local()  # this thread's (loop's) lane
        membership.on_down.append(self._on_down)

    def current(self) -> AskLane | None:
        """The calling loop's lane if it can take an ask now; starts one if the loop has
        none yet. None on trio, in a plain thread, on the cluster loop. Any thread."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio, or no loop at all
            return None
        lane: AskLane | None = getattr(self._local, "lane", None)
        if lane is None or lane.loop is not loop:
            lane = self._make(loop)
            if lane is None:
                return None
        return lane if lane.connected else None

    def _make(self, loop: asyncio.AbstractEventLoop) -> AskLane | None:
        if self.transport.on_cluster_thread() or not self.transport.connected:
            return None
        with self._lock:
            if self._closing:
                return None
            lane = self._lanes.get(loop)
            fresh = lane is None
            if lane is None:
                lane = self._lanes[loop] = AskLane(self, loop, next(self._numbers))
        self._local.lane = lane
        if fresh:
            lane.start()
        return lane

    def hint(self, export: Export) -> int:
        """The `Reply.home` of an answer to an ask for ``export``: the lane of the actor's
        loop if it takes asks, else `NO_HOME`, and that loop is asked to start one (a
        worker loop or an asyncio host's loop; never trio, never the cluster loop). Any
        thread (the cluster loop answers most, a lane those it took)."""
        home = export.cell.home  # a racy read: a stale home costs one forward
        loop = home.loop
        with self._lock:
            lane = self._lanes.get(loop)
            start = lane is None and not self._closing and loop not in self._asked
            if start:
                self._asked.add(loop)
        if lane is not None:
            return lane.number if lane.connected else NO_HOME
        if start:
            self._start_on(home)
        return NO_HOME

    def _start_on(self, home: Home) -> None:
        """Ask ``home``'s loop to start its lane (it takes asks for the actors living there)."""
        if not isinstance(home, WorkerHome | HostHome):
            return
        loop = home.loop
        with contextlib.suppress(RuntimeError):  # its loop has closed
            loop.call_soon_threadsafe(self._start_here, loop)

    def _start_here(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # not an asyncio loop after all
            if asyncio.get_running_loop() is loop and self._make(loop) is None:
                with self._lock:  # not now (disconnected, leaving): the next answer asks again
                    self._asked.discard(loop)

    def _on_down(self, target: tuple[str, str], error: Callable[[], BaseException]) -> None:
        """Node incarnation ``target`` is down: each lane fails its asks, on its loop."""
        with self._lock:
            lanes = list(self._lanes.values())
        for lane in lanes:
            with contextlib.suppress(RuntimeError):  # its loop has closed, and its asks
                lane.loop.call_soon_threadsafe(lane.fail_target, target, error)

    def statistics(self) -> tuple[int, int, int]:
        """Lanes open (connected), asks answered on them, and asks for this node's actors
        taken on them: a snapshot. Any thread."""
        with self._lock:
            lanes = list(self._lanes.values())
        return (
            sum(lane.connected for lane in lanes),
            sum(lane.asks for lane in lanes),
            sum(lane.served for lane in lanes),
        )

    async def close(self) -> None:
        """Fail every lane's asks with `ActorStopped` and close its connection (at leave).

        Waits at most a couple of seconds for each lane's loop: a blocked loop keeps its
        connection open until it runs again (and is logged); it holds up nothing else.

        Cancellation: the lanes close all the same, unwaited.
        """
        with self._lock:
            self._closing = True
            lanes = list(self._lanes.values())
            self._lanes.clear()
        node = self.transport.node

        def left() -> BaseException:
            return ActorStopped(f"node {node} left the cluster")

        closing: list[tuple[AskLane, Oneshot]] = []
        for lane in lanes:
            done = oneshot()
            try:
                lane.loop.call_soon_threadsafe(lane.begin_close, left, done)
            except RuntimeError:  # its loop has closed: so has its connection
                continue
            closing.append((lane, done))
        # A lane still connecting finishes first (within connect_timeout), then closes.
        wait = self.transport.connect_timeout + 2 * _CLOSE_WAIT
        deadline = time.monotonic() + wait  # one bound for all: blocked loops wait together
        for lane, done in closing:
            try:
                await done.wait_once(max(0.0, deadline - time.monotonic()))
            except Expired:
                logger.warning("%s did not close within %s s: its loop is blocked", lane.name, wait)
