"""Request flow across nodes over a real nats-server: an ask's deadline travels as the time
left (never a clock), a remote ask made in a handler inherits its deadline, and an asker
that gives up sends a CANCEL that abandons the request on its owner (skipped if queued,
the handler cancelled where its actor opted in).

Both nodes live in this process (each with its own NATS connection), so a handler on one
node can signal the test through a module-level flag.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, wait_until
from cluster_support import (
    FLAGS,
    HowLong,
    NatsServer,
    NodeFactory,
    Pair,
    Park,
    abandon_queued_ask,
    asking,
    asking_of,
    flag,
    how_long,
    pair_fixture,
    park,
    prefix_fixture,
    raw_client_fixture,
    server_fixture,
)

import actors
from actors.cluster import WireError, lookup_group, register_message, serve_pool
from actors.cluster._asking import REMEMBERED, Asking, ask_key, notice_subject
from actors.cluster._remote import address_of
from actors.cluster._wire import ASK, CANCEL, WIRE_VERSION, Envelope

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

server = server_fixture()
prefix = prefix_fixture("rq")
raw = raw_client_fixture()
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0)
pair = pair_fixture(node, before=lambda: FLAGS.clear())


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
                return how_long()
            case Park():
                self.handled[1] += 1
                return await park(message)
            case Tally():
                return (self.handled[0], self.handled[1])
        return None


class CancellableRemote(Remote):
    cancel_abandoned = True


class Front(actors.Actor[AskOn]):
    async def receive(self, message: AskOn) -> float:
        ref = await self.system.lookup_remote(message.name, HowLong)
        return await ref.ask(HowLong(), timeout=message.own)


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
            await abandon_queued_ask(functools.partial(remote.ask, HowLong()), ref, how)
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


# -- cancel notices to a group: only the member answering acts --------------------------------

# The member that took each Park, by its ``entered`` flag (members are in this process).
ANSWERED: dict[str, str] = {}


class Member(CancellableRemote):
    async def receive(self, message: HowLong | Park | Tally) -> object:
        if isinstance(message, Park):
            ANSWERED[message.entered] = self.system.name
        return await super().receive(message)


class Group:
    def __init__(self, members: list[actors.ActorSystem], asker: actors.ActorSystem) -> None:
        self.members = members  # one node each, all serving the name
        self.asker = asker


@pytest.fixture
async def group(server: NatsServer, prefix: str) -> AsyncIterator[Group]:
    FLAGS.clear()
    ANSWERED.clear()
    async with (
        actors.ActorSystem(workers=1, name="m1", cluster=node(server.url, "m1", prefix)) as m1,
        actors.ActorSystem(workers=1, name="m2", cluster=node(server.url, "m2", prefix)) as m2,
        actors.ActorSystem(workers=1, name="m3", cluster=node(server.url, "m3", prefix)) as m3,
        actors.ActorSystem(workers=1, name="asker", cluster=node(server.url, "x", prefix)) as x,
    ):
        yield Group([m1, m2, m3], x)


def cancelled_by_member(group: Group, name: str) -> dict[str, int]:
    """Handlers cancelled on each member node (summed over its actors named ``name``)."""
    return {
        system.name: sum(m.handlers_cancelled for m in system.metrics().actors if name in m.path)
        for system in group.members
    }


async def cancel_parked_asks(ref: Any, trials: int) -> None:
    """Ask ``ref`` to park ``trials`` times, giving up each once a member has it; each
    time, the member answering must be cancelled at once (the asks wait 30 s)."""
    for trial in range(trials):
        park = Park(f"in{trial}", "never", f"cancelled{trial}")
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(ref.ask, park, timeout=30.0))
                await flag(park.entered).wait()
                started = time.monotonic()
                scope.cancel()
        await flag(park.cancelled).wait()
        assert time.monotonic() - started < 1.0  # the notice did it, not a deadline


async def test_a_cancelled_group_ask_cancels_the_member_answering_it(group: Group) -> None:
    # NATS picks a member per message; a notice on the name's subject would reach a random
    # one (right 1 time in 3 here: six trials all right by luck is 1 in 729). On the
    # name's notice subject every member hears it, and only the one holding the key acts.
    trials = 6
    with anyio.fail_after(3 * WAIT):
        for system in group.members:
            await system.spawn(Member, name="shared", public=True)
        shared = await lookup_group(group.asker, "shared", HowLong | Park | Tally)
        await cancel_parked_asks(shared, trials)
        expected = {system.name: 0 for system in group.members}
        for answered_by in ANSWERED.values():
            expected[answered_by] += 1
        await wait_until(lambda: cancelled_by_member(group, "shared") == expected)
        for system in group.members:  # the others went on unaffected; nobody failed
            (figures,) = (m for m in system.metrics().actors if m.path == "/user/shared")
            assert figures.failed == 0
            assert await system.lookup_remote("shared") is not None
        await wait_until(lambda: all(asking(s) == 0 for s in group.members))


async def test_a_cancelled_ask_to_served_pools_cancels_the_worker_answering_it(
    group: Group,
) -> None:
    trials = 4
    with anyio.fail_after(3 * WAIT):
        for system in group.members:
            pool = await system.spawn_pool(Member, size=2, name="workers")
            await serve_pool(system, pool, name="pooled")
        pooled = await lookup_group(group.asker, "pooled", HowLong | Park | Tally)
        await cancel_parked_asks(pooled, trials)
        await wait_until(lambda: sum(cancelled_by_member(group, "workers").values()) == trials)
        await wait_until(lambda: all(asking(s) == 0 for s in group.members))
        for system in group.members:
            assert all(m.failed == 0 for m in system.metrics().actors)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the raw client is asyncio's
async def test_forged_notices_to_a_group_are_ignored_and_bounded(
    group: Group, prefix: str, raw: Any
) -> None:
    # Anyone who may publish on the notice subject can send notices, but not with the key
    # of an ask it did not make: the member answering carries on, the others too, and the
    # notices remembered for keys not (yet) held stay bounded.
    with anyio.fail_after(3 * WAIT):
        for system in group.members:
            await system.spawn(Member, name="shared", public=True)
        shared = await lookup_group(group.asker, "shared", HowLong | Park | Tally)
        async with anyio.create_task_group() as tg:
            tg.start_soon(shared.ask, Park("in", "out", "cancelled"))
            await flag("in").wait()
            subject = notice_subject(prefix, f"{prefix}.name.shared")
            for _ in range(REMEMBERED + 100):
                key = secrets.randbits(63) or 1
                notice = Envelope(
                    WIRE_VERSION, CANCEL, "", msgspec.Raw(b"\xc0"), None, "z", key=key
                )
                await raw.publish(subject, msgspec.msgpack.encode(notice))
            not_a_notice = Envelope(WIRE_VERSION, ASK, "x", msgspec.Raw(b"\xc0"), None, "z", key=7)
            await raw.publish(subject, msgspec.msgpack.encode(not_a_notice))
            await raw.publish(subject, b"\x96\x01\x06")  # truncated: malformed
            await raw.flush()

            def rejected(system: actors.ActorSystem) -> int:
                assert system.cluster is not None
                return system.cluster.statistics().rejected

            await wait_until(lambda: all(rejected(s) >= 2 for s in group.members))
            assert all(asking_of(s).early == REMEMBERED for s in group.members)
            assert not flag("cancelled").is_set()
            flag("out").set()
        assert sum(cancelled_by_member(group, "shared").values()) == 0
        for system in group.members:
            assert all(m.failed == 0 for m in system.metrics().actors)


def test_ask_keys_are_random_63_bit_and_never_shared_between_threads() -> None:
    # Read 64 at a time from the CSPRNG (one system call per 64 asks): still distinct,
    # never 0 ("no key"), 63 bits, and each thread draws its own.
    keys = [ask_key() for _ in range(1000)]
    assert len(set(keys)) == len(keys)
    assert all(0 < key < 1 << 63 for key in keys)
    assert max(keys).bit_length() > 56  # drawn over all 63 bits, not a counter
    theirs: list[int] = []
    thread = threading.Thread(target=lambda: theirs.extend(ask_key() for _ in range(100)))
    thread.start()
    thread.join(WAIT)
    assert len(theirs) == 100
    assert not set(theirs) & set(keys)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_never_uses_its_parents_unused_ask_keys() -> None:
    ask_key()  # this thread now holds up to 63 keys not used yet
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(write, b"".join(ask_key().to_bytes(8, "big") for _ in range(8)))
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    childs = {int.from_bytes(data[i : i + 8], "big") for i in range(0, len(data), 8)}
    assert len(childs) == 8
    mine = {ask_key() for _ in range(64)}
    assert not childs & mine


def test_a_notice_that_overtakes_its_ask_abandons_it_when_it_comes() -> None:
    # Heard on the notice subject, a notice may come before its ask (another subscription).
    asking = Asking(remembered=2)
    given_up: list[int] = []
    assert not asking.cancel(7, broadcast=True)  # not held yet: remembered
    asking.hold(7, lambda: given_up.append(7))
    assert given_up == [7]
    assert len(asking) == 0  # abandoned at once, never held
    # Behind its ask (an actor's own subject), an unknown key means answered: forgotten.
    assert not asking.cancel(8)
    asking.hold(8, lambda: given_up.append(8))
    assert given_up == [7]
    assert len(asking) == 1
    assert asking.cancel(8, broadcast=True)
    assert given_up == [7, 8]
    # Remembered keys are bounded: the oldest goes first.
    for key in (10, 11, 12):
        asking.cancel(key, broadcast=True)
    assert asking.early == 2
    asking.hold(10, lambda: given_up.append(10))  # pushed out: held, not abandoned
    asking.hold(12, lambda: given_up.append(12))
    assert given_up == [7, 8, 12]
    asking.release(10)
    assert len(asking) == 0
    assert not asking.cancel(0, broadcast=True)  # key 0: an ask without a key
    assert asking.early == 1  # 11 remains; 0 was not remembered


def test_a_names_notices_go_to_every_member_and_an_actors_behind_its_ask() -> None:
    assert notice_subject("p", "p.name.resize") == "p.name.resize.cancel"
    assert notice_subject("p", "p.actor.a.inc.7") == "p.actor.a.inc.7"
    assert notice_subject("p", "q.name.resize") == "q.name.resize"  # another prefix's


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the benchmark's own host
async def test_the_group_cancel_benchmark_runs(server: NatsServer, prefix: str) -> None:
    # `python -m benchmarks.cancel_group` at a tiny size: both kinds cancel within a second.
    from benchmarks.cancel_group import measure

    with anyio.fail_after(3 * WAIT):
        one, group = await measure(server.url, prefix, 3)
    assert len(one) == len(group) == 3
    assert max(one + group) < 1.0  # far below the asks' 30-s deadline


def test_a_pending_notice_holds_back_no_pipelined_ok() -> None:
    # An OK held back for a pipelined tell is sent when no frame waits in the actor's
    # subscriptions; a notice waiting in the name's notice subscription is no such frame
    # (its handler releases nothing), or the OK would wait for the actor's next frame.
    from types import SimpleNamespace

    from actors.cluster._inbound import _more_waiting  # pyright: ignore[reportPrivateUsage]

    def export(*subs: tuple[str, int]) -> Any:
        return SimpleNamespace(subs=[SimpleNamespace(subject=s, pending_msgs=n) for s, n in subs])

    notices = notice_subject("p", "p.name.shared")
    assert not _more_waiting(export(("p.actor.a.i.7", 0), ("p.name.shared", 0), (notices, 3)))
    assert _more_waiting(export(("p.actor.a.i.7", 0), ("p.name.shared", 1), (notices, 0)))
    assert _more_waiting(export(("p.actor.a.i.7", 2)))


# -- B6: a reply of the wrong type -----------------------------------------------------------


@register_message
class Score(actors.Request[int], frozen=True):
    """Answer with a score; ``lie``: answer with text instead, as a node running another
    version of the code might."""

    lie: bool = False


class Scorer(actors.Actor[Score]):
    def receive(self, message: Score) -> object:
        return "eleven" if message.lie else 11


async def test_B6_a_remote_reply_of_the_wrong_type_never_reaches_the_asker(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Scorer, name="scorer", public=True)
        scorer = await pair.b.lookup_remote("scorer", Score)
        with pytest.raises(WireError, match=r"remote actor .*scorer on node a is not a int"):
            await scorer.ask(Score(lie=True))
        # The ask failed, not the ref or the connection: the next one is answered.
        assert await scorer.ask(Score()) == 11


# -- B3 and S6: a burst of malformed frames ----------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the raw client is asyncio's
async def test_B3_a_burst_of_malformed_frames_is_counted_whole_and_logged_sparingly(
    pair: Pair, prefix: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A hostile or broken peer must not turn its garbage into a flood of log lines: every
    # frame is counted, and the warning is throttled (at most one a second, with the count
    # of those it held back).
    caplog.set_level(logging.WARNING, logger="actors")
    burst = 1000
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Scorer, name="scorer", public=True)
        scorer = await pair.b.lookup_remote("scorer", Score)
        assert await scorer.ask(Score()) == 11
        address = address_of(scorer)
        subject = f"{prefix}.actor.{address.node}.{address.incarnation}.{address.id}"
        before = pair.cluster_a.statistics().rejected
        began = time.monotonic()
        for i in range(burst):
            await raw.publish(subject, b"\xc1 garbage %d" % i)
        await raw.flush()
        await wait_until(lambda: pair.cluster_a.statistics().rejected == before + burst)
        seconds = time.monotonic() - began
        assert await scorer.ask(Score()) == 11  # and the actor is answered as before
    warnings = [r for r in caplog.records if "rejected a frame" in r.getMessage()]
    assert 1 <= len(warnings) <= 1 + int(seconds) + 1
