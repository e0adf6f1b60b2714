"""The parts of a node one at a time, each built with a fake NATS client: no server, no thread.

Each part of ``actors.cluster`` is handed its collaborators (see ``actors/cluster/_nats.py``),
so a test builds the few it needs around a `FakeClient` that records what is published and
delivers what the test injects. The scenarios run on a plain asyncio loop, as the cluster
loop is one.

`Inbound` and `DurableMailboxes` deliver into real local actors: those tests run an
`ActorSystem` (its worker loops in their threads) under anyio's plugin on the asyncio
backend, and play the cluster loop on the test's own loop. The durable tests hand fetched
messages to the mailboxes one at a time, as their fetch loop does; what talks to a JetStream
context (the stream and consumer set-up, the fetch loop, publishing with retries) or is the
server's own doing (redelivery after ``ack_wait``, de-duplication by message id) stays with
test_cluster_durable.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import Hold, park, wait_until, waiting_senders
from cluster_support import asyncio_backend_fixture

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
    register_message,
)
from actors.cluster._answers import _COMPACT_MIN  # pyright: ignore[reportPrivateUsage]
from actors.cluster._durable import DurableMailboxes, _Consumer  # pyright: ignore[reportPrivateUsage]
from actors.cluster._inbound import Inbound
from actors.cluster._membership import Membership
from actors.cluster._options import Config
from actors.cluster._outbound import Outbound, Outbox
from actors.cluster._registry import Registry
from actors.cluster._replies import Replies
from actors.cluster._transport import Identity, Transport
from actors.cluster._wire import (
    ASK,
    ERROR,
    OK,
    PROBE,
    TELL,
    TRY,
    WIRE_VERSION,
    Address,
    Envelope,
    Heartbeat,
    Reply,
    message_name,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Coroutine

    from actors.cluster._remote import ProxyTable

# Only the async tests (Inbound, DurableMailboxes) use the plugin; the parts are asyncio-only.
pytestmark = pytest.mark.anyio

anyio_backend = asyncio_backend_fixture()


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
    subs: dict[str, Callable[[Any], Awaitable[None]]] = field(
        default_factory=dict[str, Callable[[Any], Awaitable[None]]]
    )
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
    """Transport, replies, membership, registry, inbound, outbox and durable mailboxes around
    one fake client."""

    def __init__(
        self,
        heartbeats: Heartbeats | None = None,
        limits: Limits | None = None,
        durable: DurableOptions | None = None,
    ) -> None:
        self.client = FakeClient()
        self.transport = Transport(Identity("a", "t", "inc-a"), ["nats://fake"], {}, 1.0)
        self.transport.client = self.client  # type: ignore[assignment]
        self.transport.connected = True
        self.replies = Replies()
        proxies: ProxyTable = weakref.WeakValueDictionary()
        limits = limits or Limits()
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
        options = durable or DurableOptions()
        self.durable = DurableMailboxes(
            self.transport, self.registry, self.inbound, self.outbox, options, limits, 1.0
        )


def beat(node: str, incarnation: str, *, leaving: bool = False, connection: int = 0) -> FakeMsg:
    heartbeat = Heartbeat(WIRE_VERSION, node, incarnation, leaving, connection)
    data = msgspec.msgpack.encode(heartbeat)
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


def test_a_peer_whose_connection_came_back_is_announced_once_per_reconnect() -> None:
    async def scenario() -> None:
        parts = Parts(Heartbeats(interval=10.0, timeout=20.0))
        client = parts.client
        failed_over: list[tuple[str, str]] = []
        parts.membership.on_peer_reconnected.append(failed_over.append)
        await parts.membership.listen(client)  # type: ignore[arg-type]
        await client.deliver("t.hb.*", beat("b", "inc-b"))  # an older node sends no count
        await client.deliver("t.hb.*", beat("b", "inc-b", connection=1))
        await client.deliver("t.hb.*", beat("b", "inc-b", connection=1))  # the same again
        assert failed_over == [("b", "inc-b")]
        await client.deliver("t.hb.*", beat("b", "inc-b", connection=2))
        assert failed_over == [("b", "inc-b")] * 2
        # This node's own reconnect: it beats at once, with its count, for its peers.
        client.sent.clear()
        parts.transport.reconnects = 1
        for callback in parts.transport.on_reconnected:
            callback()
        await client.sent.wait()
        sent = msgspec.msgpack.decode(client.published[-1].data, type=Heartbeat)
        assert (sent.node, sent.connection) == ("a", 1)

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
            parts.outbox.pump.exchange(Outbound("t.name.x", b"frame", [], None), None, 1.0)
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


def test_an_exchange_cancelled_as_its_reply_lands_is_cancelled() -> None:
    # CPython 3.11's `asyncio.wait_for` returned the result instead (the reply's future was
    # done when the cancellation arrived): a leave that cancels the cluster loop's tasks
    # then saw them go on.
    async def scenario() -> None:
        parts = Parts()
        client = parts.client
        await parts.outbox.listen(client)  # type: ignore[arg-type]
        exchange = asyncio.ensure_future(
            parts.outbox.pump.exchange(Outbound("t.name.x", b"frame", [], None), None, 1.0)
        )
        await client.sent.wait()
        await client.deliver("_INBOX.t.a.inc-a.*", FakeMsg(client.published[0].reply, b"ok"))
        exchange.cancel()  # in the same loop iteration as the reply
        with pytest.raises(asyncio.CancelledError):
            await exchange

    run(scenario)


@dataclass
class GatedClient(FakeClient):
    """A client whose publish of subject ``gated`` waits for ``gate``, after buffering the
    frame (as nats-py waits for a flush of its full buffer); ``failing`` raises."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(
        self, subject: str, data: bytes, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        if subject == "failing":
            raise ConnectionError("not connected")
        await super().publish(subject, data, reply, headers)
        if subject == "gated":
            await self.gate.wait()


def test_an_idle_outbox_publishes_at_once_and_one_that_waits_keeps_the_order() -> None:
    async def scenario() -> None:
        parts = Parts()
        client = parts.client = GatedClient()
        parts.transport.client = client  # type: ignore[assignment]
        await parts.outbox.listen(client)  # type: ignore[arg-type]
        outbox = parts.outbox
        # The pump is idle: the frame is handed to the client within the call.
        outbox.publish(Outbound("first", b"1", [], None), "t1")
        assert [m.subject for m in client.published] == ["first"]
        # This publish waits (a full buffer): what follows queues behind it, in order.
        outbox.publish(Outbound("gated", b"2", [], None), "t2")
        outbox.publish(Outbound("third", b"3", [], None), "t3")
        outbox.publish(Outbound("fourth", b"4", [], None), "t4")
        assert [m.subject for m in client.published] == ["first", "gated"]
        client.gate.set()
        with anyio.fail_after(5):
            while len(client.published) < 4:
                client.sent.clear()
                await client.sent.wait()
        assert [m.subject for m in client.published] == ["first", "gated", "third", "fourth"]
        # Idle again: at once.
        outbox.publish(Outbound("fifth", b"5", [], None), "t5")
        assert client.published[-1].subject == "fifth"

    run(scenario)


def test_a_publish_that_fails_at_once_fails_its_reply_on_the_next_iteration() -> None:
    async def scenario() -> None:
        parts = Parts()
        client = parts.client = GatedClient()
        parts.transport.client = client  # type: ignore[assignment]
        await parts.outbox.listen(client)  # type: ignore[arg-type]
        failed = asyncio.Event()
        answers: list[bytes | None] = []

        def on_reply(data: bytes | None) -> None:
            answers.append(data)
            failed.set()

        token = parts.replies.callback(on_reply, None, time.monotonic() + 60)
        parts.outbox.publish(Outbound("failing", b"x", [], None), token)
        assert answers == []  # not from inside the caller's own call
        with anyio.fail_after(5):
            await failed.wait()
        assert answers == [None]

    run(scenario)


class _Plain(msgspec.Struct, frozen=True):
    to: actors.Ref[Any] | None
    n: int


class _LocalOnlyMaybe(msgspec.Struct, frozen=True):
    reply_to: actors.ActorRef[Any] | None = None


def test_the_registry_encodes_a_message_without_refs_as_msgspec_does_and_checks_it_first() -> None:
    # Refs in messages (exported, or as addresses) are covered across nodes in test_cluster.
    registry = Parts().registry
    exports: list[int] = []
    plain = _Plain(None, 1)
    assert registry.encode(plain, exports) == msgspec.msgpack.encode(plain)
    assert exports == []
    # The fast path comes after the type's check: a field typed ActorRef is refused even
    # when it holds no ref (the receiving node could not fill it).
    with pytest.raises(actors.cluster.WireError, match="typed ActorRef"):
        registry.encode(_LocalOnlyMaybe(), exports)
    with pytest.raises(actors.cluster.WireError, match="cannot encode"):
        registry.encode(2**70, exports)


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


def test_a_lookup_waits_longer_for_a_silent_owner_each_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A silent owner (subscribed, too slow to answer) is asked again with a doubled wait, so a
    # loaded owner is not flooded with probes whose answers would each come too late.
    monkeypatch.setattr("actors.cluster._lookup._LOOKUP_ANSWER_WAIT", 0.05)

    async def scenario() -> None:
        parts = Parts()
        await parts.outbox.listen(parts.client)  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(actors.ActorNotFound, match="ledger"):
            await parts.outbox.lookup("ledger", 1.0)
        assert time.monotonic() - started >= 1.0
        # Waits of 0.05, 0.1, 0.2, 0.4 and the rest: five probes, where a fixed wait sent 20.
        assert 2 <= len(parts.client.published) <= 6, len(parts.client.published)

    run(scenario)


# -- a local actor behind the parts -------------------------------------------------------


@register_message(name="parts-test.Put")
class Put(msgspec.Struct, frozen=True):
    """Book ``n``; ``fail``: the handler raises after booking it."""

    n: int
    fail: bool = False


@register_message(name="parts-test.Total")
class Total(actors.Request[int], frozen=True):
    """The sum of what was booked."""


@register_message(name="parts-test.Other")
class Other(msgspec.Struct, frozen=True):
    """A registered type that `Book` does not accept."""


class Book(actors.Actor[Put | Total | Hold]):
    """Books every `Put` in a list the test owns, in handling order."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def receive(self, message: Put | Total | Hold) -> int | None:
        match message:
            case Put(n, fail):
                self.seen.append(n)
                if fail:
                    raise ValueError(f"cannot book {n}")
            case Total():
                return sum(self.seen)
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
        return None


@dataclass
class Target:
    system: actors.ActorSystem
    ref: actors.Ref[Put | Total | Hold]
    seen: list[int]
    id: int


NAME = "t.name.book"  # the name subject of the public actor "book" (prefix "t")


@contextlib.asynccontextmanager
async def public_book(parts: Parts, capacity: int | None = None) -> AsyncGenerator[Target, None]:
    """A local `Book`, exported and made public as "book" through the parts (as `Nats.register`)."""
    seen: list[int] = []
    lenient = actors.OneForOne(max_restarts=100, within=1.0)  # handlers that raise restart
    async with actors.ActorSystem(workers=1, supervision=lenient) as system:
        ref = await system.spawn(lambda: Book(seen), name="book", capacity=capacity)
        parts.registry.bind(system, parts.outbox, parts.durable)
        address, _ = parts.registry.export(ref)
        await parts.inbound.register("book", address.id)
        yield Target(system, ref, seen, address.id)


def frame(
    kind: int,
    message: object,
    *,
    version: int = WIRE_VERSION,
    type_name: str | None = None,
    body: bytes | None = None,
    sender: str = "b",
) -> bytes:
    name = message_name(type(message)) if type_name is None else type_name
    raw = msgspec.msgpack.encode(message) if body is None else body
    return msgspec.msgpack.encode(Envelope(version, kind, name, msgspec.Raw(raw), None, sender))


_reply_subjects = itertools.count(1)


async def request(parts: Parts, data: bytes, subject: str = NAME) -> str:
    """Deliver ``data`` as the subscription would; returns the reply subject it carried."""
    reply_to = f"_INBOX.t.b.inc-b.{next(_reply_subjects)}"
    await parts.client.deliver(subject, FakeMsg(subject, data, reply_to))
    return reply_to


def answered(client: FakeClient, reply_to: str) -> Reply | None:
    """The reply published to ``reply_to`` so far, if any."""
    for msg in client.published:
        if msg.subject == reply_to:
            return msgspec.msgpack.decode(msg.data, type=Reply)
    return None


async def answer(client: FakeClient, reply_to: str) -> Reply:
    """Wait for the reply to ``reply_to`` (the callers bound the wait)."""
    while (reply := answered(client, reply_to)) is None:
        client.sent.clear()  # no checkpoint since the look: nothing published in between
        await client.sent.wait()
    return reply


async def exchange(parts: Parts, data: bytes, subject: str = NAME) -> Reply:
    return await answer(parts.client, await request(parts, data, subject))


def error_type(reply: Reply) -> str:
    assert reply.status == ERROR
    assert reply.error is not None
    return reply.error.type


# -- inbound ------------------------------------------------------------------------------


async def test_inbound_enqueues_a_tell_and_then_acknowledges_it() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=8) as book:
            reply_to = await request(parts, frame(TELL, Put(3)))
            # Acknowledged before the subscription's callback returns: it was enqueued.
            reply = answered(parts.client, reply_to)
            assert reply is not None
            assert (reply.status, reply.error) == (OK, None)
            assert 0 <= reply.free <= 8
            assert await book.ref.ask(Total()) == 3
            assert book.seen == [3]
            assert parts.transport.rejected == 0


async def test_inbound_answers_an_ask_with_the_handlers_value_or_error() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            await book.ref.send(Put(4))
            reply = await exchange(parts, frame(ASK, Total()))
            assert reply.status == OK
            assert msgspec.msgpack.decode(reply.body, type=int) == 4
            failed = await exchange(parts, frame(ASK, Put(1, fail=True)))
            assert error_type(failed) == "ValueError"
            assert failed.error is not None
            assert "cannot book 1" in failed.error.text
            assert failed.error.path == "/user/book"


async def test_inbound_answers_an_ask_from_a_task_of_its_own_and_keeps_the_order() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            release = await park(book.ref)
            asked = await request(parts, frame(ASK, Total()))
            # The ask is enqueued but not answered; the subscription goes on meanwhile.
            assert answered(parts.client, asked) is None
            told = answered(parts.client, await request(parts, frame(TELL, Put(5))))
            assert told is not None
            assert told.status == OK
            release.set()
            reply = await answer(parts.client, asked)
            # Enqueued in arrival order: the ask was handled before the later tell.
            assert msgspec.msgpack.decode(reply.body, type=int) == 0
            assert await book.ref.ask(Total()) == 5


async def test_an_ask_whose_time_runs_out_is_answered_once_and_forgotten() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            release = await park(book.ref)
            body = msgspec.Raw(msgspec.msgpack.encode(Total()))
            ask = Envelope(WIRE_VERSION, ASK, message_name(Total), body, 0.05, "b", key=7)
            asked = await request(parts, msgspec.msgpack.encode(ask))
            assert 7 in parts.inbound.asking  # a CANCEL could still reach it
            reply = await answer(parts.client, asked)
            assert error_type(reply) == "AskTimeout"
            assert not parts.inbound.asking
            # The actor skips it (its asker gave up) or answers late: nothing more is sent.
            release.set()
            assert await book.ref.ask(Total()) == 0
            published = [m for m in parts.client.published if m.subject == asked]
            assert len(published) == 1


async def test_asks_expire_on_one_timer_in_deadline_order_and_answered_ones_never() -> None:
    # One timer per `Answers`, armed for the earliest deadline: an ask with a nearer
    # deadline arriving after a farther one re-arms it, and expires first, alone.
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            release = await park(book.ref)
            body = msgspec.Raw(msgspec.msgpack.encode(Total()))
            name = message_name(Total)
            far = Envelope(WIRE_VERSION, ASK, name, body, 30.0, "b", key=11)
            near = Envelope(WIRE_VERSION, ASK, name, body, 0.05, "b", key=12)
            asked_far = await request(parts, msgspec.msgpack.encode(far))
            asked_near = await request(parts, msgspec.msgpack.encode(near))
            reply = await answer(parts.client, asked_near)
            assert error_type(reply) == "AskTimeout"
            assert 11 in parts.inbound.asking
            assert 12 not in parts.inbound.asking
            assert answered(parts.client, asked_far) is None  # its deadline is far off
            release.set()
            late = await answer(parts.client, asked_far)
            assert late.status == OK  # answered: its deadline entry expires nothing
            assert not parts.inbound.asking


async def test_the_deadlines_of_answered_asks_do_not_pile_up() -> None:
    # An answered ask leaves its deadline entry behind; the heap drops them once they are
    # over half of it, so it stays near the asks in flight, not all asks of the deadline.
    parts = Parts()
    with anyio.fail_after(20):
        async with public_book(parts):
            body = msgspec.Raw(msgspec.msgpack.encode(Total()))
            most = 0
            for key in range(1, 4 * _COMPACT_MIN + 1):
                ask = Envelope(WIRE_VERSION, ASK, message_name(Total), body, 30.0, "b", key=key)
                reply = await exchange(parts, msgspec.msgpack.encode(ask))
                assert reply.status == OK
                most = max(most, parts.inbound.answers.pending())
            assert most <= 2 * _COMPACT_MIN
            assert not parts.inbound.asking


async def test_inbound_acknowledges_a_tell_to_a_full_mailbox_only_once_it_is_enqueued() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=1) as book:
            release = await park(book.ref)
            await book.ref.send(Put(1))  # fills the mailbox
            tell = asyncio.ensure_future(request(parts, frame(TELL, Put(2))))
            await wait_until(lambda: waiting_senders(book.ref) == 1)
            assert not tell.done()
            assert parts.client.published == []  # no acknowledgement yet
            release.set()
            reply = answered(parts.client, await tell)
            assert reply is not None
            assert reply.status == OK
            assert await book.ref.ask(Total()) == 3
            assert book.seen == [1, 2]


async def test_inbound_refuses_a_try_to_a_full_mailbox_with_mailbox_full() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=1) as book:
            release = await park(book.ref)
            await book.ref.send(Put(1))
            reply = await exchange(parts, frame(TRY, Put(2)))
            assert error_type(reply) == "MailboxFull"
            assert reply.free == 0
            assert parts.transport.dropped == 1
            release.set()
            assert await book.ref.ask(Total()) == 1  # the refused one was not enqueued
            assert book.seen == [1]


@pytest.mark.parametrize(
    ("data", "refused_as", "rejected"),
    [
        pytest.param(b"\xc1", "WireError", 1, id="not-msgpack"),
        pytest.param(b"\x96\x01\x01", "WireError", 1, id="truncated"),
        pytest.param(frame(TELL, Put(1), version=99), "WireError", 1, id="wrong-version"),
        pytest.param(frame(9, Put(1)), "WireError", 1, id="unknown-kind"),
        pytest.param(frame(TELL, Put(1), type_name="no.such:Type"), "WireError", 1, id="no-type"),
        pytest.param(
            frame(TELL, Put(1), body=msgspec.msgpack.encode({"n": "x"})),
            "WireError",
            1,
            id="wrong-schema",
        ),
        # Refused by the target (not malformed): the sender learns why, nothing is counted.
        pytest.param(frame(TELL, Other()), "MessageTypeError", 0, id="not-accepted"),
    ],
)
async def test_inbound_answers_a_malformed_frame_with_an_error_and_enqueues_nothing(
    data: bytes, refused_as: str, rejected: int
) -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            reply = answered(parts.client, await request(parts, data))
            assert reply is not None
            assert error_type(reply) == refused_as
            assert parts.transport.rejected == rejected
            assert await book.ref.ask(Total()) == 0
            assert book.seen == []


def _deep(levels: int) -> bytes:
    return b"\x91" * levels + b"\x00"


async def test_inbound_refuses_frames_beyond_the_size_and_depth_limits() -> None:
    fits = frame(TELL, Put(1), sender="b" * 64)
    parts = Parts(limits=Limits(max_message_size=len(fits), max_depth=4))
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            too_large = frame(TELL, Put(1), sender="b" * 65)  # one byte more
            reply = await exchange(parts, too_large)
            assert error_type(reply) == "MessageTooLarge"
            too_deep = frame(TELL, Put(1), body=_deep(5))  # 6 levels with the envelope's
            reply = await exchange(parts, too_deep)
            assert error_type(reply) == "WireError"
            assert reply.error is not None
            assert "deeper than 4" in reply.error.text
            assert parts.transport.rejected == 2
            assert book.seen == []
            # At the limits exactly, a frame passes.
            ok = await exchange(parts, fits)
            assert ok.status == OK
            assert await book.ref.ask(Total()) == 1


async def test_inbound_answers_a_frame_for_a_stopped_actor_with_actor_stopped() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            await book.ref.stop()
            # Its subscription is still there (no cluster loop retires the export here):
            # frames that arrive meanwhile are answered, not left to time out.
            for kind in (TELL, TRY, ASK):
                reply = await exchange(parts, frame(kind, Total()))
                assert error_type(reply) == "ActorStopped"
                assert reply.error is not None
                assert reply.error.kind == "actors"
            assert parts.transport.rejected == 0
            assert book.seen == []


async def test_inbound_answers_a_probe_with_the_address_and_the_node_probe_with_liveness() -> None:
    parts = Parts()
    await parts.inbound.listen(parts.client)  # type: ignore[arg-type]
    node = "t.actor.a.inc-a.0"
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            reply = await exchange(parts, frame(PROBE, None))
            assert reply.status == OK
            address = msgspec.msgpack.decode(reply.body, type=Address)
            assert (address.node, address.incarnation, address.id) == ("a", "inc-a", book.id)
            assert address.path == "/user/book"
            assert address.accepts is not None
            assert message_name(Put) in address.accepts
            assert (await exchange(parts, frame(PROBE, book.id), node)).status == OK
            unknown = await exchange(parts, frame(PROBE, book.id + 1), node)
            assert error_type(unknown) == "ActorStopped"
            await book.ref.stop()
            stopped = await exchange(parts, frame(PROBE, book.id), node)
            assert error_type(stopped) == "ActorStopped"


# -- durable mailboxes ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Sequence:
    stream: int


@dataclass(frozen=True)
class _Metadata:
    sequence: _Sequence
    num_delivered: int


@dataclass
class FakeJsMsg:
    """Just what the durable mailboxes use of a fetched JetStream message."""

    data: bytes
    seq: int
    delivered: int = 1
    settled: list[str] = field(default_factory=list[str])
    naks: list[float | None] = field(default_factory=list[float | None])
    progressed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def metadata(self) -> _Metadata:
        return _Metadata(_Sequence(self.seq), self.delivered)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append("nak")
        self.naks.append(delay)

    async def term(self) -> None:
        self.settled.append("term")

    async def in_progress(self) -> None:
        self.progressed.set()


def durable_consumer(parts: Parts, book: Target) -> _Consumer:
    export = parts.registry.exported(book.id)
    assert export is not None
    return _Consumer("book", export)


async def fetched(parts: Parts, consumer: _Consumer, msg: FakeJsMsg) -> bool:
    """Hand one fetched message to the durable mailboxes, as their fetch loop does."""
    deliver: Any = parts.durable._deliver_durable  # pyright: ignore[reportPrivateUsage]
    delivered: bool = await deliver(consumer, msg)  # Any: it takes the fake for a nats-py Msg
    return delivered


async def settled(consumer: _Consumer) -> None:
    """Wait until the handlers of every enqueued message finished and were settled."""
    while consumer.settling:
        await asyncio.wait(set(consumer.settling))


async def test_durable_messages_are_enqueued_in_stream_order_and_acked_after_their_handler() -> (
    None
):
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            consumer = durable_consumer(parts, book)
            release = await park(book.ref)
            msgs = [FakeJsMsg(frame(TELL, Put(n)), seq=n) for n in (1, 2, 3)]
            for msg in msgs:
                assert await fetched(parts, consumer, msg)
            assert consumer.pending == {1, 2, 3}
            assert [msg.settled for msg in msgs] == [[], [], []]  # no handler has run yet
            release.set()
            await settled(consumer)
            assert book.seen == [1, 2, 3]
            assert [msg.settled for msg in msgs] == [["ack"]] * 3
            assert parts.durable.handled == 3
            assert consumer.pending == set()
            assert parts.transport.rejected == 0


async def test_a_long_durable_handler_keeps_its_message_in_progress() -> None:
    parts = Parts(durable=DurableOptions(ack_wait=0.15))
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            consumer = durable_consumer(parts, book)
            release = await park(book.ref)
            msg = FakeJsMsg(frame(TELL, Put(1)), seq=1)
            assert await fetched(parts, consumer, msg)
            await msg.progressed.wait()  # well within ack_wait, while the handler waits
            assert msg.settled == []
            release.set()
            await settled(consumer)
            assert msg.settled == ["ack"]


async def test_a_full_mailbox_holds_up_the_durable_fetching() -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts, capacity=1) as book:
            consumer = durable_consumer(parts, book)
            release = await park(book.ref)
            await book.ref.send(Put(1))  # fills the mailbox
            msg = FakeJsMsg(frame(TELL, Put(2)), seq=1)
            delivering = asyncio.ensure_future(fetched(parts, consumer, msg))
            await wait_until(lambda: waiting_senders(book.ref) == 1)
            assert not delivering.done()
            assert consumer.pending == set()
            release.set()
            assert await delivering
            await settled(consumer)
            assert book.seen == [1, 2]
            assert msg.settled == ["ack"]


async def test_a_stopped_durable_actor_stops_the_fetching_and_leaves_the_message_unsettled() -> (
    None
):
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            consumer = durable_consumer(parts, book)
            await book.ref.stop()
            msg = FakeJsMsg(frame(TELL, Put(1)), seq=1)
            assert not await fetched(parts, consumer, msg)
            # Neither acked nor terminated: JetStream redelivers it to the next owner.
            assert msg.settled == []
            assert consumer.pending == set()
            assert consumer.settling == set()


async def test_a_failing_durable_message_is_retried_with_backoff_then_terminated() -> None:
    parts = Parts(durable=DurableOptions(max_deliver=3, retry_delay=0.5))
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            consumer = durable_consumer(parts, book)
            data = frame(TELL, Put(7, fail=True))
            attempts = [FakeJsMsg(data, seq=1, delivered=n) for n in (1, 2, 3)]
            for attempt in attempts:
                assert await fetched(parts, consumer, attempt)
                await settled(consumer)
            assert [a.settled for a in attempts] == [["nak"], ["nak"], ["term"]]
            assert [a.naks for a in attempts[:2]] == [[0.5], [1.0]]  # doubling
            durable = parts.durable
            assert (durable.terminated, durable.redelivered, durable.handled) == (1, 2, 0)
            assert book.system.dead_letters.count == 1  # the poison message
            assert book.seen == [7, 7, 7]
            # The actor (restarted after each failure) works on.
            following = FakeJsMsg(frame(TELL, Put(8)), seq=2)
            assert await fetched(parts, consumer, following)
            await settled(consumer)
            assert following.settled == ["ack"]


async def test_a_redelivery_of_a_handled_durable_message_is_acked_without_handling_it_again() -> (
    None
):
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            consumer = durable_consumer(parts, book)
            data = frame(TELL, Put(4))
            assert await fetched(parts, consumer, FakeJsMsg(data, seq=9))
            await settled(consumer)
            again = FakeJsMsg(data, seq=9, delivered=2)  # its ack was lost
            assert await fetched(parts, consumer, again)
            assert again.settled == ["ack"]
            assert consumer.settling == set()
            assert parts.durable.redelivered == 1
            assert await book.ref.ask(Total()) == 4
            assert book.seen == [4]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(_deep(100), id="too-deep"),
        pytest.param(frame(TELL, Put(1), version=99), id="wrong-version"),
        pytest.param(frame(ASK, Put(1)), id="not-a-tell"),
        pytest.param(frame(TELL, Put(1), type_name="no.such:Type"), id="no-type"),
        pytest.param(frame(TELL, Other()), id="not-accepted"),
        pytest.param(
            frame(TELL, Put(1), body=msgspec.msgpack.encode({"n": "x"})), id="wrong-schema"
        ),
    ],
)
async def test_a_malformed_durable_message_is_terminated_and_nothing_is_enqueued(
    data: bytes,
) -> None:
    parts = Parts()
    with anyio.fail_after(10):
        async with public_book(parts) as book:
            consumer = durable_consumer(parts, book)
            msg = FakeJsMsg(data, seq=1)
            assert await fetched(parts, consumer, msg)  # the next message may follow
            assert msg.settled == ["term"]  # never redelivered
            assert parts.transport.rejected == 1
            assert consumer.pending == set()
            assert await book.ref.ask(Total()) == 0
            assert book.seen == []
