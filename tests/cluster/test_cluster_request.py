"""Request flow across nodes over a real nats-server: an ask's deadline travels as the time
left (never a clock), a remote ask made in a handler inherits its deadline, and an asker
that gives up sends a CANCEL that abandons the request on its owner (skipped if queued,
the handler cancelled where its actor opted in).

Both nodes live in this process (each with its own NATS connection), so a handler on one
node can signal the test through a module-level flag.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    NatsServer,
    NodeFactory,
    prefix_fixture,
    raw_client_fixture,
    server_fixture,
)

import actors
from actors.cluster import register_message
from actors.cluster._remote import address_of
from actors.cluster._wire import CANCEL, WIRE_VERSION, Envelope

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

server = server_fixture()
prefix = prefix_fixture("rq")
raw = raw_client_fixture()
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0)

# Flags by name: a handler on either node reaches them (both nodes are in this process).
FLAGS: dict[str, Flag] = {}


def flag(name: str) -> Flag:
    return FLAGS.setdefault(name, Flag())


@register_message
class HowLong(actors.Request[float], frozen=True):
    """Reply with `actors.deadline()` (-1.0 for None)."""


@register_message
class Park(actors.Request[str], frozen=True):
    """Set flag ``entered``, then wait for flag ``release`` (or for a cancellation)."""

    entered: str
    release: str
    cancelled: str


@register_message
class Tally(actors.Request[tuple[int, int]], frozen=True):
    """How many HowLong and Park messages were handled."""


@register_message
class AskOn(actors.Request[float], frozen=True):
    """Ask the named remote actor HowLong, with a timeout of ``own`` seconds."""

    name: str
    own: float


class Remote(actors.Actor[HowLong | Park | Tally]):
    def __init__(self) -> None:
        self.handled = [0, 0]

    async def receive(self, message: HowLong | Park | Tally) -> object:
        match message:
            case HowLong():
                self.handled[0] += 1
                left = actors.deadline()
                return -1.0 if left is None else left
            case Park(entered, release, cancelled):
                self.handled[1] += 1
                flag(entered).set()
                try:
                    await flag(release).wait()
                except BaseException:
                    flag(cancelled).set()
                    raise
                return "released"
            case Tally():
                return (self.handled[0], self.handled[1])
        return None


class CancellableRemote(Remote):
    cancel_abandoned = True


class Front(actors.Actor[AskOn]):
    async def receive(self, message: AskOn) -> float:
        ref = await self.system.lookup_remote(message.name, HowLong)
        return await ref.ask(HowLong(), timeout=message.own)


class Pair:
    def __init__(self, a: actors.ActorSystem, b: actors.ActorSystem) -> None:
        self.a = a
        self.b = b


@pytest.fixture
async def pair(server: NatsServer, prefix: str) -> AsyncIterator[Pair]:
    FLAGS.clear()
    async with (
        actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
        actors.ActorSystem(workers=2, name="b", cluster=node(server.url, "b", prefix)) as b,
    ):
        yield Pair(a, b)


def asking(system: actors.ActorSystem) -> int:
    """Remote asks the node answers now (those a CANCEL could still reach)."""
    cluster: Any = system.cluster
    return len(cluster._node.inbound.asking)


def metrics_of(system: actors.ActorSystem, path: str) -> actors.ActorMetrics:
    (found,) = (m for m in system.metrics().actors if m.path == path)
    return found


async def test_a_remote_handler_reads_the_time_its_asker_still_waits(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Remote, name="remote", public=True)
        remote = await pair.b.lookup_remote("remote", HowLong)
        left = await remote.ask(HowLong(), timeout=3.0)
        assert 1.0 < left <= 3.0  # the time left, as a duration: no clock crossed
        assert await remote.ask(HowLong(), timeout=None) == -1.0


async def test_a_remote_ask_made_in_a_handler_inherits_its_deadline(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Remote, name="remote", public=True)
        front = await pair.b.spawn(Front)
        left = await front.ask(AskOn("remote", own=30.0), timeout=2.0)
        assert 0.0 < left <= 2.0  # the front's 2 s, not its own 30 s
        left = await front.ask(AskOn("remote", own=1.0), timeout=30.0)
        assert 0.0 < left <= 1.0


async def test_a_remote_ask_past_its_inherited_deadline_is_not_sent(pair: Pair) -> None:
    # Front asks the remote with what is left of a deadline that passes while it looks up
    # the name: simulated with a deadline too short for any round trip (0 s left).
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Remote, name="remote", public=True)
        front = await pair.b.spawn(Front)
        await pair.b.lookup_remote("remote")  # known already: the front's lookup is local
        with pytest.raises(actors.AskTimeout):
            await front.ask(AskOn("remote", own=30.0), timeout=0.0)
        assert metrics_of(pair.a, "/user/remote").received == 0


@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_a_remote_ask_abandoned_while_queued_is_skipped_on_its_owner(
    pair: Pair, how: str
) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.a.spawn(Remote, name="remote", public=True)
        remote = await pair.b.lookup_remote("remote", HowLong | Park | Tally)
        # Park the remote actor (a local ask on its own node), then queue a remote ask.
        async with anyio.create_task_group() as parked:
            parked.start_soon(ref.ask, Park("in", "out", "never"))
            await flag("in").wait()
            if how == "timeout":
                with pytest.raises(actors.AskTimeout):
                    await remote.ask(HowLong(), timeout=0.2)
            else:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(remote.ask, HowLong())
                        await wait_until(lambda: ref.statistics().mailbox.depth == 1)
                        scope.cancel()
            # The owner has given it up (its own expiry, or the CANCEL frame) once it no
            # longer tracks it; only then is the actor let go, to reach it and skip it.
            await wait_until(lambda: asking(pair.a) == 0)
            flag("out").set()
        assert await remote.ask(Tally()) == (0, 1)  # HowLong never handled
        figures = metrics_of(pair.a, ref.path)
        if how == "cancel":
            assert figures.asks_cancelled == 1


async def test_a_cancelled_remote_ask_cancels_an_opted_in_handler(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        ref = await pair.a.spawn(CancellableRemote, name="remote", public=True)
        remote = await pair.b.lookup_remote("remote", HowLong | Park | Tally)
        started = 0.0
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(remote.ask, Park("in", "never", "cancelled"))
                await flag("in").wait()
                started = time.monotonic()
                scope.cancel()
        await flag("cancelled").wait()
        took = time.monotonic() - started
        assert took < 1.0  # well under any timeout: the CANCEL frame did it
        assert await remote.ask(Tally()) == (0, 1)  # and the actor carries on
        figures = metrics_of(pair.a, ref.path)
        assert (figures.handlers_cancelled, figures.failed) == (1, 0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the raw client is asyncio's
async def test_a_cancel_with_a_key_nobody_asked_with_is_ignored(
    pair: Pair, prefix: str, raw: Any
) -> None:
    # A forged or late CANCEL (no such ask, or answered already) is a hint, never an error:
    # the actor carries on, and nothing answers it.
    with anyio.fail_after(WAIT):
        ref = await pair.a.spawn(Remote, name="remote", public=True)
        remote = await pair.b.lookup_remote("remote", HowLong | Tally)
        assert await remote.ask(HowLong(), timeout=3.0) > 0
        address = address_of(remote)
        subject = f"{prefix}.actor.{address.node}.{address.incarnation}.{address.id}"
        for key in (1, 2**62, 0):
            notice = Envelope(WIRE_VERSION, CANCEL, "", msgspec.Raw(b"\xc0"), None, "b", key=key)
            await raw.publish(subject, msgspec.msgpack.encode(notice))
        await raw.publish(subject, b"\x96\x01\x06")  # a truncated CANCEL: malformed
        await raw.flush()
        assert await remote.ask(HowLong(), timeout=3.0) > 0
        assert await remote.ask(Tally()) == (2, 0)
        assert metrics_of(pair.a, ref.path).failed == 0


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # uvicorn serves on asyncio
async def test_a_client_disconnect_cancels_a_chain_of_asks_across_loops_and_nodes(
    server: NatsServer, prefix: str
) -> None:
    """The issue's proof: Starlette -> A (loop 0) -> B (loop 1) -> C (node b, over NATS). The
    client disconnects while C works; every handler is cancelled and none finishes. The asks
    have 30-s timeouts, so a cancellation that waited for a deadline would not arrive in
    time (`python -m benchmarks.cancel_chain` measures the latency's distribution)."""
    from benchmarks.cancel_chain import chain_once

    with anyio.fail_after(2 * WAIT):
        latency, chain, metrics = await chain_once(server.url, prefix, 0)
    assert sorted(chain.cancelled) == ["a", "b", "c"]
    assert chain.finished == []  # no orphan work went on
    assert latency < WAIT  # far below the asks' 30-s deadline
    for name in ("a", "b", "c"):
        assert (metrics[name].handlers_cancelled, metrics[name].failed) == (1, 0), name


async def test_a_thousand_abandoned_remote_asks_leave_nothing_pending_on_either_node(
    pair: Pair,
) -> None:
    with anyio.fail_after(4 * WAIT):
        ref = await pair.a.spawn(Remote, name="remote", public=True, capacity=2000)
        remote = await pair.b.lookup_remote("remote", HowLong | Park | Tally)
        async with anyio.create_task_group() as parked:
            parked.start_soon(ref.ask, Park("in", "out", "never"))
            await flag("in").wait()

            async def give_up() -> None:
                with anyio.move_on_after(0.05):
                    await remote.ask(HowLong(), timeout=None)  # no deadline: only the notice

            async with anyio.create_task_group() as askers:
                for _ in range(1000):
                    askers.start_soon(give_up)
            await wait_until(lambda: asking(pair.a) == 0)
            flag("out").set()
        assert await remote.ask(Tally()) == (0, 1)  # none of the thousand was handled
        figures = metrics_of(pair.a, ref.path)
        assert figures.asks_cancelled == 1000
        cluster_b: Any = pair.b.cluster
        assert len(cluster_b._node.replies) == 0  # no reply still awaited


async def test_the_late_reply_of_a_cancelled_remote_ask_is_dropped_and_counted(
    pair: Pair,
) -> None:
    # The actor did not opt in: its handler runs to its end after the asker left, and its
    # reply reaches an asker that no longer waits: dropped, counted, nothing raised.
    with anyio.fail_after(WAIT):
        ref = await pair.a.spawn(Remote, name="remote", public=True)
        remote = await pair.b.lookup_remote("remote", HowLong | Park | Tally)
        cluster_b: Any = pair.b.cluster
        transport = cluster_b._node.transport
        dropped = transport.dropped
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(remote.ask, Park("in", "out", "cancelled"))
                await flag("in").wait()
                scope.cancel()
        await wait_until(lambda: asking(pair.a) == 0)  # the owner took the notice
        flag("out").set()  # the handler ends normally: its reply has nobody to go to
        await wait_until(lambda: transport.dropped == dropped + 1)
        assert not flag("cancelled").is_set()  # not cancelled: it did not opt in
        assert await remote.ask(Tally()) == (0, 1)
        figures = metrics_of(pair.a, ref.path)
        assert (figures.handlers_cancelled, figures.failed) == (0, 0)


async def test_remote_asks_subscribe_nothing_per_ask_and_leave_nothing_pending(
    prefix: str,
) -> None:
    """The reply path is the node's one inbox subscription (a token per ask), whether the
    asks come one by one or many at once, answered or timed out."""
    FLAGS.clear()
    with NatsServer(monitor=True) as monitored, anyio.fail_after(2 * WAIT):
        url = monitored.url
        async with (
            actors.ActorSystem(workers=2, name="a", cluster=node(url, "a", prefix)) as a,
            actors.ActorSystem(workers=2, name="b", cluster=node(url, "b", prefix)) as b,
        ):
            await a.spawn(Remote, name="remote", public=True, capacity=512)
            remote = await b.lookup_remote("remote", HowLong | Park | Tally)
            assert await remote.ask(HowLong(), timeout=WAIT) > 0
            before = monitored.subscriptions("actors:b")
            assert any(subject.startswith("_INBOX.") for subject in before)
            for _ in range(100):
                await remote.ask(HowLong(), timeout=WAIT)
            async with anyio.create_task_group() as askers:
                for _ in range(100):
                    askers.start_soon(remote.ask, HowLong())
            with pytest.raises(actors.AskTimeout):  # its handler parks past the timeout
                await remote.ask(Park("in", "out", "never"), timeout=0.2)
            flag("out").set()
            assert monitored.subscriptions("actors:b") == before
            cluster_b: Any = b.cluster
            await wait_until(lambda: len(cluster_b._node.replies) == 0)
            assert await remote.ask(Tally(), timeout=WAIT) == (201, 1)
