"""Membership: heartbeats, leave notices, down notices, and declaring nodes down.

Each node publishes a `Heartbeat` on ``p.hb.<node>`` every ``heartbeat_interval`` and a
leaving one from `Nats.detach`; a node incarnation not heard of for ``heartbeat_timeout``
is declared down, which fails the calls waiting on it and finishes its proxies. A node
declared down stays down: a restarted node comes back as a new incarnation. After a
reconnect, everyone's clock starts afresh (we missed their beats, not they ours).
``p.down.<node>`` says one exported actor of that node stopped for good.

A beat carries how many times its node's connection came back. A peer whose count grows
has failed over (to another server of a NATS cluster, or the same one restarted), and
replies it published on the old connection may be lost while this node saw no outage at
all: `Membership.on_peer_reconnected` callbacks hear of it (the outbox sends the
unanswered tells to that peer again rather than wait ``ack_timeout`` for their replies).
A node beats at once after its own reconnect, so its peers learn within a round trip.

`Membership` is handed the transport (to publish and to own its task), the table of
pending replies (to fail those waiting on a node that is gone) and the proxy table (to
finish the proxies of a node that is gone); the registry asks it `is_dead` and tells it
`learn`. Loop only, except the dead set (read by callers' threads decoding refs, under
`Identity.lock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import msgspec

from .._errors import ActorStopped
from .._ref import cell_of
from ._remote import finish_proxy
from ._transport import logger, subscribe
from ._wire import (
    MALFORMED,
    WIRE_VERSION,
    Down,
    Heartbeat,
    NodeDown,
    check_frame,
    decoder_for,
    error_from,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg

    from ._options import Heartbeats, Limits
    from ._remote import ProxyTable
    from ._replies import Replies
    from ._transport import Transport


class Membership:
    """Which other node incarnations are alive, and what happens when one is not.

    Example:
        ```python
        membership = Membership(transport, replies, proxies, Heartbeats(), Limits())
        await membership.listen(client)  # on the cluster loop, once connected
        ```
    """

    def __init__(
        self,
        transport: Transport,
        replies: Replies,
        proxies: ProxyTable,
        heartbeats: Heartbeats,
        limits: Limits,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._replies = replies
        self._proxies = proxies  # guarded by me.lock: a node that is down finishes its proxies
        self.heartbeat_interval = heartbeats.interval
        self.heartbeat_timeout = heartbeats.timeout
        self._limits = limits
        self._dead: set[tuple[str, str]] = set()  # declared down; guarded by me.lock
        # Loop only.
        self._members: dict[tuple[str, str], float] = {}  # (node, incarnation) -> last seen
        self._grace_until = 0.0
        # The last connection count each member's beats carried (see the module docstring).
        self._connections: dict[tuple[str, str], int] = {}
        self.on_peer_reconnected: list[Callable[[tuple[str, str]], None]] = []
        # Told of a node incarnation declared down, with the error of what waits on it (the
        # ask lanes, whose waiting asks are not in `Replies`). Loop only.
        self.on_down: list[Callable[[tuple[str, str], Callable[[], BaseException]], None]] = []
        self._heartbeats: msgspec.msgpack.Decoder[Heartbeat] = decoder_for(Heartbeat, None)
        self._downs: msgspec.msgpack.Decoder[Down] = decoder_for(Down, None)
        transport.on_reconnected.append(self._reconnected)

    def is_dead(self, key: tuple[str, str]) -> bool:
        """Whether node incarnation ``key`` was declared down. Any thread, under me.lock."""
        return key in self._dead

    def learn(self, key: tuple[str, str]) -> None:
        """A node incarnation learnt from an address counts as alive until its beats stop.

        Loop only.
        """
        if key not in self._members:
            self._members[key] = time.monotonic()

    def members(self) -> tuple[str, ...]:
        """The other nodes alive, by name (a snapshot; any thread)."""
        return tuple(sorted({node for node, _ in list(self._members)}))

    async def listen(self, client: NatsClient) -> None:
        """Subscribe to heartbeats and down notices, start beating, send the first beat."""
        prefix = self._me.prefix
        self._grace_until = time.monotonic() + self.heartbeat_timeout
        await subscribe(client, f"{prefix}.hb.*", cb=self._on_heartbeat)
        await subscribe(client, f"{prefix}.down.*", cb=self._on_down)
        self._transport.own(self._heartbeat())
        await self._beat()

    async def _beat(self, *, leaving: bool = False) -> None:
        client = self._transport.client
        if client is None:
            return
        me, connection = self._me, self._transport.reconnects
        beat = Heartbeat(WIRE_VERSION, me.node, me.incarnation, leaving, connection)
        await client.publish(f"{self._me.prefix}.hb.{self._me.node}", msgspec.msgpack.encode(beat))

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not self._transport.connected:
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
            self._replies.expire(now)

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            check_frame(msg.data, 4096, 4)
            beat = self._heartbeats.decode(msg.data)
        except MALFORMED as error:
            self._transport.reject("heartbeat", error)
            return
        key = (beat.node, beat.incarnation)
        if key == (self._me.node, self._me.incarnation):
            return
        if beat.node == self._me.node:
            self._transport.throttle.warn(
                "same-name", "another node also calls itself %s", self._me.node
            )
            return
        if beat.leaving:
            self._declare_down(key, None)
            return
        if key in self._dead:
            return
        for other in [k for k in self._members if k[0] == beat.node and k != key]:
            self._declare_down(other, NodeDown(f"node {beat.node} restarted"))
        self._members[key] = time.monotonic()
        if beat.connection > self._connections.get(key, 0):
            self._connections[key] = beat.connection
            for callback in self.on_peer_reconnected:
                callback(key)

    def _declare_down(self, key: tuple[str, str], reason: BaseException | None) -> None:
        """A node incarnation is gone: fail what waits on it, finish its proxies. Loop only."""
        with self._me.lock:
            if key in self._dead:
                return
            self._dead.add(key)
            proxies = [ref for k, ref in list(self._proxies.items()) if k[:2] == key]
        self._members.pop(key, None)
        self._connections.pop(key, None)
        node = key[0]
        if reason is None:
            logger.info("node %s left the cluster", node)
        else:
            logger.warning("node %s is down: %s", node, reason)

        def error() -> BaseException:
            if reason is not None:
                return NodeDown(f"node {node} is down")
            return ActorStopped(f"node {node} left the cluster")

        self._replies.fail_target(key, error)
        for callback in self.on_down:
            callback(key, error)
        for ref in proxies:
            finish_proxy(cell_of(ref), reason)

    async def _on_down(self, msg: Msg) -> None:
        node = msg.subject.rsplit(".", 1)[-1]
        try:
            check_frame(msg.data, self._limits.max_message_size, self._limits.max_depth)
            down = self._downs.decode(msg.data)
        except MALFORMED as error:
            self._transport.reject("down notice", error)
            return
        with self._me.lock:
            ref = self._proxies.get((node, down.incarnation, down.id))
        if ref is not None:
            reason = None if down.reason is None else error_from(down.reason)
            finish_proxy(cell_of(ref), reason)

    def _reconnected(self) -> None:
        # Everyone missed heartbeats while we were away: start their clocks afresh.
        now = time.monotonic()
        self._grace_until = now + self.heartbeat_timeout
        for key in self._members:
            self._members[key] = now
        # Tell the peers now, not at the next beat: they may wait for replies we lost.
        self._transport.own(self._beat_quietly())

    async def _beat_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._beat()

    async def leave(self) -> None:
        """Tell the others this node leaves, and flush what is still buffered."""
        client = self._transport.client
        if client is None:
            return
        with contextlib.suppress(Exception):
            await self._beat(leaving=True)
            await client.flush(timeout=1)
