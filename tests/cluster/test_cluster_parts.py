"""The parts of a node one at a time, each built with a fake NATS client: no server, no thread.

Each part of ``actors.cluster`` is handed its collaborators (see ``actors/cluster/_nats.py``),
so a test builds the few it needs around a `FakeClient` that records what is published and
delivers what the test injects. The scenarios run on a plain asyncio loop, as the cluster
loop is one.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

import actors
from actors.cluster import (
    Credentials,
    DurableOptions,
    Heartbeats,
    Limits,
    Nats,
    NodeDown,
    Reconnect,
    Timeouts,
)
from actors.cluster._inbound import Inbound
from actors.cluster._membership import Membership
from actors.cluster._options import Config
from actors.cluster._outbound import Outbound, Outbox
from actors.cluster._registry import Registry
from actors.cluster._replies import Replies
from actors.cluster._transport import Identity, Transport
from actors.cluster._wire import WIRE_VERSION, Heartbeat

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from actors.cluster._remote import ProxyTable


@dataclass
class FakeMsg:
    subject: str
    data: bytes
    reply: str = ""
    headers: dict[str, str] | None = None


@dataclass
class FakeClient:
    """Just the calls the parts make on a nats-py client: publish, subscribe, flush."""

    published: list[FakeMsg] = field(default_factory=list[FakeMsg])
    subs: dict[str, Callable[[Any], Awaitable[None]]] = field(default_factory=dict)
    flushes: int = 0
    sent: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(
        self, subject: str, data: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self.published.append(FakeMsg(subject, data, reply, headers))
        self.sent.set()

    async def subscribe(
        self,
        subject: str,
        queue: str = "",
        cb: Callable[[Any], Awaitable[None]] | None = None,
        pending_msgs_limit: int = 0,
    ) -> object:
        assert cb is not None
        self.subs[subject] = cb
        return object()

    async def flush(self, timeout: float = 0) -> None:
        self.flushes += 1

    async def deliver(self, subscribed: str, msg: FakeMsg) -> None:
        """Hand ``msg`` to the callback subscribed to ``subscribed``."""
        await self.subs[subscribed](msg)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10.0))


class Parts:
    """Transport, replies, membership, registry, inbound and outbox around one fake client."""

    def __init__(self, heartbeats: Heartbeats | None = None) -> None:
        self.client = FakeClient()
        self.transport = Transport(Identity("a", "t", "inc-a"), ["nats://fake"], {}, 1.0)
        self.transport.client = self.client  # type: ignore[assignment]
        self.transport.connected = True
        self.replies = Replies()
        proxies: ProxyTable = weakref.WeakValueDictionary()
        limits = Limits()
        beats = heartbeats or Heartbeats()
        self.membership = Membership(self.transport, self.replies, proxies, beats, limits)
        self.registry = Registry(self.transport, self.membership, proxies)
        self.inbound = Inbound(self.transport, self.registry, limits, 1.0)
        self.outbox = Outbox(
            self.transport,
            self.registry,
            self.inbound,
            self.membership,
            self.replies,
            limits,
            1.0,
        )


def beat(node: str, incarnation: str, *, leaving: bool = False) -> FakeMsg:
    data = msgspec.msgpack.encode(Heartbeat(WIRE_VERSION, node, incarnation, leaving))
    return FakeMsg(f"t.hb.{node}", data)


# -- options ------------------------------------------------------------------------------


def test_flat_keywords_override_the_fields_of_the_option_objects() -> None:
    config = Config.build(
        "nats://x:4222",
        "a",
        "p",
        {"timeouts": Timeouts(ack=3.0), "durable": DurableOptions(window=4)},
        {"connect_timeout": 2.0, "durable_max_deliver": 2, "token": "t"},
    )
    assert config.timeouts == Timeouts(ack=3.0, connect=2.0)
    assert config.durable == DurableOptions(window=4, max_deliver=2)
    assert config.credentials == Credentials(token="t")
    assert config.servers == ("nats://x:4222",)
    options = config.connect_options()
    assert options["token"] == "t"
    assert "user" not in options


def test_nats_takes_option_objects_and_keywords_alike() -> None:
    grouped = Nats(node="a", heartbeats=Heartbeats(0.5, 2.0), reconnect=Reconnect(wait=0.1))
    flat = Nats(node="a", heartbeat_interval=0.5, heartbeat_timeout=2.0, reconnect_time_wait=0.1)
    assert grouped.config.heartbeats == flat.config.heartbeats
    assert grouped.config.reconnect == flat.config.reconnect
    assert grouped.node == "a"
    assert grouped.prefix == "actors"


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Heartbeats(interval=2.0, timeout=1.0), "heartbeat_interval"),
        (lambda: Limits(max_message_size=10), "max_message_size"),
        (lambda: DurableOptions(window=0), "durable_window"),
        (lambda: Timeouts(ack=0), "positive"),
        (lambda: Nats(node="a", durable=DurableOptions(), durable_ack_wait=0), "ack_wait"),
    ],
)
def test_option_objects_are_validated_when_built(build: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="hearbeat"):
        Nats(node="a", hearbeat=1.0)  # type: ignore[call-arg]


def test_credentials_never_print_their_secrets() -> None:
    assert "s3cret" not in repr(Credentials(user="u", password="s3cret"))


# -- replies ------------------------------------------------------------------------------


def test_replies_fail_the_waits_on_a_node_and_expire_callbacks() -> None:
    async def scenario() -> None:
        replies = Replies()
        _, on_b = replies.expect(("b", "1"))
        _, on_c = replies.expect(("c", "1"))
        called: list[bytes | None] = []
        replies.callback(called.append, ("b", "1"), expires=5.0)
        replies.fail_target(("b", "1"), lambda: NodeDown("b is down"))
        assert isinstance(on_b.exception(), NodeDown)
        assert not on_c.done()
        replies.expire(now=10.0)
        assert called == [None]
        replies.fail_all(lambda: actors.ActorStopped("leaving"))
        assert isinstance(on_c.exception(), actors.ActorStopped)
        assert len(replies) == 0

    run(scenario)


# -- membership ---------------------------------------------------------------------------


def test_membership_subscribes_beats_and_learns_and_forgets_nodes() -> None:
    async def scenario() -> None:
        parts = Parts(Heartbeats(interval=10.0, timeout=20.0))
        client = parts.client
        await parts.membership.listen(client)  # type: ignore[arg-type]
        assert {"t.hb.*", "t.down.*"} <= set(client.subs)
        assert [m.subject for m in client.published] == ["t.hb.a"]  # the first beat
        await client.deliver("t.hb.*", beat("b", "inc-b"))
        assert parts.membership.members() == ("b",)
        _, waiting = parts.replies.expect(("b", "inc-b"))
        await client.deliver("t.hb.*", beat("b", "inc-b", leaving=True))
        assert parts.membership.members() == ()
        assert parts.membership.is_dead(("b", "inc-b"))
        assert isinstance(waiting.exception(), actors.ActorStopped)
        # A node declared gone stays gone: its beats no longer count.
        await client.deliver("t.hb.*", beat("b", "inc-b"))
        assert parts.membership.members() == ()
        await parts.membership.leave()
        assert msgspec.msgpack.decode(client.published[-1].data, type=Heartbeat).leaving

    run(scenario)


def test_membership_rejects_a_malformed_beat() -> None:
    async def scenario() -> None:
        parts = Parts()
        await parts.membership.listen(parts.client)  # type: ignore[arg-type]
        await parts.client.deliver("t.hb.*", FakeMsg("t.hb.b", b"\xc1 not msgpack"))
        assert parts.transport.rejected == 1
        assert parts.membership.members() == ()

    run(scenario)


# -- outbox -------------------------------------------------------------------------------


def test_the_outbox_publishes_with_a_reply_subject_and_hands_back_the_reply() -> None:
    async def scenario() -> None:
        parts = Parts()
        client = parts.client
        await parts.outbox.listen(client)  # type: ignore[arg-type]
        inbox = "_INBOX.t.a.inc-a.*"
        assert inbox in client.subs
        exchange = asyncio.ensure_future(
            parts.outbox._exchange(Outbound("t.name.x", b"frame", [], None), None, 1.0)  # pyright: ignore[reportPrivateUsage]
        )
        await client.sent.wait()
        sent = client.published[0]
        assert (sent.subject, sent.data) == ("t.name.x", b"frame")
        await client.deliver(inbox, FakeMsg(sent.reply, b"answer"))
        assert await exchange == b"answer"
        # A reply nobody waits for any more is counted as dropped.
        await client.deliver(inbox, FakeMsg(sent.reply, b"late"))
        assert parts.transport.dropped == 1

    run(scenario)


def test_a_lookup_that_finds_no_responders_raises_actor_not_found() -> None:
    async def scenario() -> None:
        parts = Parts()
        client = parts.client
        await parts.outbox.listen(client)  # type: ignore[arg-type]
        lookup = asyncio.ensure_future(parts.outbox.lookup("ledger", 0.0))
        await client.sent.wait()
        no_responders = FakeMsg(client.published[0].reply, b"", headers={"Status": "503"})
        await client.deliver("_INBOX.t.a.inc-a.*", no_responders)
        with pytest.raises(actors.ActorNotFound, match="ledger"):
            await lookup

    run(scenario)
