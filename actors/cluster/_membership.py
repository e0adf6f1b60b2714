"""Membership: heartbeats, leave notices, down notices, and declaring nodes down.

Each node publishes a `Heartbeat` on ``p.hb.<node>`` every ``heartbeat_interval`` and a
leaving one from `Nats.detach`; a node incarnation not heard of for ``heartbeat_timeout``
is declared down, which fails the calls waiting on it and finishes its proxies. A node
declared down stays down: a restarted node comes back as a new incarnation. After a
reconnect, everyone's clock starts afresh (we missed their beats, not they ours).
``p.down.<node>`` says one exported actor of that node stopped for good.

Loop only, except ``_dead`` (read by callers' threads decoding refs, under ``_lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import msgspec

from .._errors import ActorStopped
from ._remote import finish_proxy
from ._transport import Transport, logger
from ._wire import (
    MALFORMED,
    WIRE_VERSION,
    Down,
    Heartbeat,
    NodeDown,
    check_frame,
    error_from,
)

if TYPE_CHECKING:
    import weakref

    from nats.aio.msg import Msg

    from ._remote import RemoteRef


class Membership(Transport):
    """Which other node incarnations are alive, and what happens when one is not."""

    heartbeat_interval: float
    max_message_size: int
    max_depth: int
    _dead: set[tuple[str, str]]  # node incarnations declared down; guarded by _lock
    # Loop only.
    _members: dict[tuple[str, str], float]  # (node, incarnation) -> last seen
    _grace_until: float
    _heartbeats: msgspec.msgpack.Decoder[Heartbeat]
    _downs: msgspec.msgpack.Decoder[Down]
    # The proxy table of `Registry` (guarded by _lock): a node that is down finishes its proxies.
    _proxies: weakref.WeakValueDictionary[tuple[str, str, int], RemoteRef[Any]]

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
        except MALFORMED as error:
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
        except MALFORMED as error:
            self._reject("down notice", error)
            return
        with self._lock:
            ref = self._proxies.get((node, down.incarnation, down.id))
        if ref is not None:
            reason = None if down.reason is None else error_from(down.reason)
            finish_proxy(ref._cell, reason)  # pyright: ignore[reportPrivateUsage]

    def _reconnected(self) -> None:
        # Everyone missed heartbeats while we were away: start their clocks afresh.
        now = time.monotonic()
        self._grace_until = now + self.heartbeat_timeout
        for key in self._members:
            self._members[key] = now

    async def _leave(self) -> None:
        client = self._nc
        if client is None:
            return
        with contextlib.suppress(Exception):
            await self._beat(leaving=True)
            await client.flush(timeout=1)
