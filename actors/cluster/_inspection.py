"""The cluster's part of the live inspector: every node answers ``p.inspect.<node>``.

A node subscribes to its own inspection subject and answers each request with its
`NodeView` (`SystemView.local_node`: counts, loops, warnings) plus what only the cluster
knows: its public actors, the pools it serves under a public name, its durable mailboxes.
`NodeInspector.inspect` is the `actors._seam.InspectableCluster` method the core's
`SystemView.overview` calls: it returns this node's view with those lists, then the other
nodes' latest answers, and never waits on the network. At most once a second it starts a
refresh in the background, which asks every member (`Membership.members`) at once and
waits up to a second for each: a cluster nobody inspects asks nothing, and a slow or
silent node shows its last answer (or none) with an ``error`` saying why.

Bounded. A request is a few bytes; anything over `REQUEST_MAX` bytes, or that does not
decode, or of another wire version, is refused unanswered (counted in the transport's
``rejected``, logged throttled). An answer lists at most `MAX_LISTED` public actors,
groups and durable mailboxes (``listed_total`` says how many there were), and one larger
than ``max_message_size`` goes out without its lists. An answer is checked as every
inbound frame is (`check_frame`: size and depth first), decoded into the typed record
only, and refused if it names a node other than the one asked; a refused answer leaves
that node's entry with the error, and nothing else changes.

Read-only: a request cannot change anything on the node it asks; the counts and names it
gets are what any node of the cluster may learn by looking names up. Restrict it with the
subject permissions (docs/cluster.md) like every other subject.

Threads: answering and refreshing run on the cluster loop (loop only); a census of a big
node runs in a worker thread (`asyncio.to_thread`), never on the cluster loop. What
`inspect` reads from other threads (the lists and answers of the last refresh, whether one
is under way) is guarded by ``_lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import TYPE_CHECKING, Final

import msgspec

from .._inspect import (
    MAX_LISTED,
    DurableView,
    GroupView,
    NodeView,
    PublicActorView,
    SystemView,
)
from ._transport import subscribe
from ._wire import MALFORMED, WIRE_VERSION, WireError, check_frame, decoder_for

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from ._durable import DurableMailboxes
    from ._inbound import Inbound
    from ._membership import Membership
    from ._options import Limits
    from ._outbound import Outbox
    from ._registry import Registry
    from ._transport import Transport

__all__ = ("REQUEST_MAX", "InspectReply", "InspectRequest", "NodeInspector")

REQUEST_MAX: Final = 256  # bytes an inspection request may take; beyond, refused
ANSWER_WAIT: Final = 1.0  # seconds a refresh waits for each node's answer
REFRESH_EVERY: Final = 1.0  # seconds between two refreshes, at the most


class InspectRequest(msgspec.Struct, array_like=True, frozen=True):
    """A frame on ``p.inspect.<node>``: ``node`` (the asker) wants the summary."""

    version: int
    node: str


class InspectReply(msgspec.Struct, array_like=True, frozen=True):
    """The answer to an `InspectRequest`: the answering node's summary."""

    version: int
    node: NodeView


class NodeInspector:
    """Answers this node's inspection subject, and asks the other nodes for theirs.

    Example:
        ```python
        inspector = NodeInspector(transport, registry, inbound, outbox, durable, membership, limits)
        await inspector.listen(client)  # on the cluster loop
        nodes = inspector.inspect(SystemView.of(system).local_node())  # any thread
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        inbound: Inbound,
        outbox: Outbox,
        durable: DurableMailboxes,
        membership: Membership,
        limits: Limits,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._inbound = inbound
        self._outbox = outbox
        self._durable = durable
        self._membership = membership
        self._limits = limits
        self._requests: msgspec.msgpack.Decoder[InspectRequest] = decoder_for(InspectRequest, None)
        self._replies: msgspec.msgpack.Decoder[InspectReply] = decoder_for(InspectReply, None)
        # Guarded by _lock: what the last refresh found, and whether one is under way.
        self._lock = threading.Lock()
        self._lists: dict[str, object] = {}
        self._others: dict[str, tuple[NodeView, float]] = {}  # node -> (answer, when)
        self._refreshed = -REFRESH_EVERY  # monotonic time the last refresh started
        self._refreshing = False
        self.answered = 0  # requests answered (loop only)

    def subject(self, node: str) -> str:
        return f"{self._me.prefix}.inspect.{node}"

    async def listen(self, client: NatsClient) -> None:
        """Answer requests on this node's inspection subject. Loop only."""
        await subscribe(client, self.subject(self._me.node), cb=self._on_request)

    # -- answering (loop only) ----------------------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        try:
            check_frame(msg.data, REQUEST_MAX, 2)
            request = self._requests.decode(msg.data)
            if request.version != WIRE_VERSION:
                raise WireError(f"wire version {request.version}, not {WIRE_VERSION}")
        except MALFORMED as error:
            self._transport.reject("an inspection request", error)
            return
        client = self._transport.client
        if not msg.reply or client is None:
            return
        summary = await self._summary()
        if summary is None:
            return
        with contextlib.suppress(Exception):  # the connection went: the asker times out
            await client.publish(msg.reply, self._encode(summary))
            self.answered += 1

    async def _summary(self) -> NodeView | None:
        system = self._registry.system
        if system is None:
            return None
        view = SystemView.of(system)
        # The census walks every actor: a worker thread, never the cluster loop.
        local = await asyncio.to_thread(view.local_node)
        return msgspec.structs.replace(local, **self._cluster_lists())

    def _encode(self, summary: NodeView) -> bytes:
        data = msgspec.msgpack.encode(InspectReply(WIRE_VERSION, summary))
        if len(data) <= self._limits.max_message_size:
            return data
        bare = msgspec.structs.replace(
            summary,
            public=(),
            groups=(),
            durable=(),
            warnings=(),
            error=f"its summary is larger than {self._limits.max_message_size} bytes: "
            "lists left out",
        )
        return msgspec.msgpack.encode(InspectReply(WIRE_VERSION, bare))

    def _cluster_lists(self) -> dict[str, object]:
        """This node's public actors, served groups and durable mailboxes. Loop only."""
        public: list[PublicActorView] = []
        for name, id in sorted(self._inbound.public.items()):
            export = self._registry.exported(id)
            if export is None:  # the actor stopped: its name went with it
                del self._inbound.public[name]
                continue
            actor_class = export.cell.actor_class
            kind = actor_class.__qualname__ if actor_class is not None else ""
            public.append(PublicActorView(name, export.path, kind))
        groups: list[GroupView] = []
        for served in self._inbound.served:
            workers = served.pool.workers
            paths = tuple(worker.path for worker in workers[:MAX_LISTED])
            groups.append(GroupView(served.name, served.path, len(workers), paths))
        groups.sort(key=lambda group: group.name)
        durable = [DurableView(*box) for box in sorted(self._durable.mailboxes())]
        total = len(public) + len(groups) + len(durable)
        listed = max(len(public), len(groups), len(durable))
        return {
            "public": tuple(public[:MAX_LISTED]),
            "groups": tuple(groups[:MAX_LISTED]),
            "durable": tuple(durable[:MAX_LISTED]),
            "listed_total": total if listed > MAX_LISTED else 0,
        }

    # -- asking (inspect: any thread; the rest: loop only) ------------------------------------

    def inspect(self, local: NodeView) -> tuple[NodeView, ...]:
        """``local`` with this node's cluster lists, then the others' latest answers.

        Any thread; never waits. Starts a refresh in the background when the last one is
        older than `REFRESH_EVERY` seconds, so the next call sees fresher answers.
        """
        now = time.monotonic()
        with self._lock:
            lists = self._lists
            others = [
                msgspec.structs.replace(node, age=round(now - when, 3))
                for _, (node, when) in sorted(self._others.items())
            ]
            start = not self._refreshing and now - self._refreshed >= REFRESH_EVERY
            if start:
                self._refreshing = True
                self._refreshed = now
        if start:
            try:
                self._transport.submit(self._refresh())
            except Exception:  # the node is leaving: nothing more to ask
                with self._lock:
                    self._refreshing = False
        mine = msgspec.structs.replace(local, **lists) if lists else local
        return (mine, *others)

    async def _refresh(self) -> None:
        try:
            lists = self._cluster_lists()
            members = self._membership.members()
            answers = await asyncio.gather(*(self._ask(node) for node in members))
            with self._lock:
                self._lists = lists
                kept = {node: self._others[node] for node in members if node in self._others}
                for node, (answer, error) in zip(members, answers, strict=True):
                    if answer is not None:
                        kept[node] = (answer, time.monotonic())
                    else:  # its last answer stays, with why it is old
                        old, when = kept.get(node) or (_unanswered(node), time.monotonic())
                        kept[node] = (msgspec.structs.replace(old, error=error), when)
                self._others = kept
        finally:
            with self._lock:
                self._refreshing = False

    async def _ask(self, node: str) -> tuple[NodeView | None, str]:
        """``node``'s summary, or None and why not. Loop only."""
        request = msgspec.msgpack.encode(InspectRequest(WIRE_VERSION, self._me.node))
        try:
            frame = await self._outbox.request(self.subject(node), request, ANSWER_WAIT)
        except TimeoutError:
            return None, f"no answer within {ANSWER_WAIT} s"
        except Exception as error:  # no responders, leaving, not connected
            return None, f"not answering ({type(error).__name__})"
        try:
            check_frame(frame, self._limits.max_message_size, self._limits.max_depth)
            reply = self._replies.decode(frame)
            if reply.version != WIRE_VERSION:
                raise WireError(f"wire version {reply.version}, not {WIRE_VERSION}")
            if reply.node.name != node:
                raise WireError(f"the answer is node {reply.node.name!r}'s")
        except MALFORMED as error:
            self._transport.reject(f"the inspection answer of node {node}", error)
            return None, f"malformed answer: {error}"
        return msgspec.structs.replace(reply.node, local=False, error=""), ""


def _unanswered(node: str) -> NodeView:
    """The entry of a member that has not answered yet."""
    return NodeView(
        name=node,
        local=False,
        running=True,
        actors=0,
        top_level=0,
        root="",
        loops=(),
        dead_letters=0,
        pools=0,
        subscriptions=0,
        warnings=(),
        census_age=0.0,
    )
