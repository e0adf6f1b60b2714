"""Durable mailboxes on JetStream (``spawn(durable=True)``): at least once, acked after the
handler, deduplicated by message id, surviving a broker restart and a node crash.

Each test runs a real nats-server with JetStream (``-js``) and a storage directory of its
own test's; a raw nats-py client looks at the stream and the consumer from the outside
(num_ack_pending, publishing malformed frames and duplicate ids). Child processes and the
raw client make these asyncio-host tests (the transport itself runs on its own asyncio
loop whatever the host; test_cluster.py covers the hosts).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    FLAGS,
    Account,
    Balance,
    Deposit,
    Echo,
    NatsServer,
    NodeFactory,
    Park,
    Relayer,
    Spans,
    abandon_queued_ask,
    asking,
    asyncio_backend_fixture,
    flag,
    park,
    prefix_fixture,
    raw_client_fixture,
    running_script,
    server_fixture,
)

import actors
from actors.cluster import ClusterError, DurableRef, Nats, RemoteRef, register_message
from actors.cluster._wire import TELL, WIRE_VERSION, Envelope

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).resolve().parent

anyio_backend = asyncio_backend_fixture()
server = server_fixture(jetstream=True)
prefix = prefix_fixture("d")
raw = raw_client_fixture()
node = NodeFactory(
    heartbeat_interval=0.1,
    heartbeat_timeout=2.0,
    reconnect_time_wait=0.05,
    durable_ack_wait=1.0,
    durable_retry_delay=0.05,
)


@register_message(name="durable-test.Entry")
class Entry(msgspec.Struct, frozen=True):
    """One numbered message of one sender; ``kind``: "block" parks on the gate, "slow" takes
    half a second, "bad" raises."""

    sender: int
    seq: int
    kind: str = ""


class Ledger(actors.Actor[Entry]):
    """Records every Entry it handles (in a list the test owns), in handling order."""

    def __init__(self, seen: list[Entry], gate: Flag | None = None) -> None:
        self.seen = seen
        self.gate = gate

    async def receive(self, message: Entry) -> None:
        self.seen.append(message)
        if message.kind == "block" and self.gate is not None:
            await self.gate.wait()
        if message.kind == "slow":
            await asyncio.sleep(0.5)
        if message.kind == "bad":
            raise ValueError(f"cannot book entry {message.seq}")


def lenient() -> actors.OneForOne:
    """A root strategy that restarts a failing durable actor as often as the test needs."""
    return actors.OneForOne(max_restarts=100, within=1.0)


async def poll(predicate: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Wait for an effect outside this process (the server's view), checking every 20 ms."""
    with anyio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110  # no event exists for the server's view
            await anyio.sleep(0.02)


async def consumer_info(raw: Any, prefix: str, name: str) -> Any:
    return await raw.jetstream().consumer_info(f"{prefix}_DURABLE", name)


async def acked(raw: Any, prefix: str, name: str) -> bool:
    """Whether the server holds no unacknowledged message of consumer ``name``."""
    info = await consumer_info(raw, prefix, name)
    return bool(info.num_ack_pending == 0)


def envelope(message: object) -> bytes:
    body = msgspec.msgpack.encode(message)
    name = "durable-test.Entry"
    return msgspec.msgpack.encode(
        Envelope(WIRE_VERSION, TELL, name, msgspec.Raw(body), None, "raw")
    )


# -- 1. send, handle, ack after the handler ---------------------------------------------------


async def test_a_durable_message_is_acked_only_after_its_handler_finished(
    server: NatsServer, prefix: str, raw: Any
) -> None:
    seen: list[Entry] = []
    gate = Flag()
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(
                workers=1, name="a", cluster=node(server.url, "a", prefix, durable_ack_wait=0.5)
            ) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(lambda: Ledger(seen, gate), name="ledger", durable=True)
            ledger = await b.lookup_remote("ledger", Entry)
            assert isinstance(ledger, DurableRef)
            await ledger.send(Entry(1, 1, "block"))  # returns once stored, not handled

            async def parked() -> bool:
                info = await consumer_info(raw, prefix, "ledger")
                return bool(seen) and info.num_ack_pending == 1

            await poll(parked)
            # The handler holds it for three ack_waits (elapsed time is what this checks, not a
            # stand-in for an event): in-progress acks keep it from being redelivered
            # meanwhile, and it stays unacked.
            await anyio.sleep(1.5)
            info = await consumer_info(raw, prefix, "ledger")
            assert info.num_ack_pending == 1
            assert info.num_redelivered == 0
            gate.set()

            async def acked() -> bool:
                info = await consumer_info(raw, prefix, "ledger")
                return info.num_ack_pending == 0 and info.num_pending == 0

            await poll(acked)
            await ledger.send(Entry(1, 2))
            cluster_a, cluster_b = a.cluster, b.cluster
            assert isinstance(cluster_a, Nats)
            assert isinstance(cluster_b, Nats)
            await poll(lambda: _true(cluster_a.statistics().durable_handled == 2))
            assert seen == [Entry(1, 1, "block"), Entry(1, 2)]
            assert cluster_b.statistics().durable_published == 2
            assert cluster_a.statistics().durable_redelivered == 0


async def _true(value: bool) -> bool:
    return value


async def test_a_node_that_leaves_lets_its_durable_handler_finish_and_ack_first(
    server: NatsServer, prefix: str, raw: Any
) -> None:
    seen: list[Entry] = []
    with anyio.fail_after(WAIT):
        cluster = node(server.url, "a", prefix, durable_ack_wait=5.0)
        async with actors.ActorSystem(workers=1, cluster=cluster) as system:
            await system.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            durable = await system.lookup_remote("ledger", Entry)
            await durable.send(Entry(1, 1, "slow"))  # its handler takes half a second
            await poll(lambda: _true(bool(seen)))
            # Leave while it runs: the node stops fetching and waits for the handler, so
            # the ack goes out before the connection closes.
        info = await consumer_info(raw, prefix, "ledger")
        assert info.num_ack_pending == 0  # nothing left for the next owner to handle again
        assert info.num_pending == 0
        assert info.num_redelivered == 0
    assert seen == [Entry(1, 1, "slow")]


# -- 2. the broker killed mid-stream and restarted -------------------------------------------


async def test_nothing_is_lost_when_the_broker_restarts_mid_stream(
    tmp_path: Path, prefix: str
) -> None:
    server = NatsServer("-js", "-sd", str(tmp_path / "jetstream"))
    server.start()
    senders, count = 3, 150
    seen: list[Entry] = []
    returned: dict[int, int] = dict.fromkeys(range(senders), 0)
    try:
        with anyio.fail_after(60):
            async with (
                actors.ActorSystem(
                    workers=1,
                    name="owner",
                    cluster=node(server.url, "owner", prefix),
                    supervision=lenient(),
                ) as owner,
                actors.ActorSystem(
                    workers=1, name="front", cluster=node(server.url, "front", prefix)
                ) as front,
            ):
                await owner.spawn(lambda: Ledger(seen), name="ledger", durable=True)
                ledger = await front.lookup_remote("ledger", Entry)
                assert isinstance(ledger, DurableRef)
                cluster_owner = owner.cluster
                cluster_front = front.cluster
                assert isinstance(cluster_owner, Nats)
                assert isinstance(cluster_front, Nats)

                async def sender(index: int) -> None:
                    for seq in range(count):
                        await ledger.send(Entry(index, seq), timeout=20.0)
                        returned[index] = seq + 1

                async with anyio.create_task_group() as group:
                    for index in range(senders):
                        group.start_soon(sender, index)
                    await poll(lambda: _true(len(seen) >= senders * count // 4))
                    server.kill()  # SIGKILL: no goodbye, whatever was in flight
                    await poll(lambda: _true(not cluster_front.statistics().connected))
                    server.start()
                await poll(lambda: _true(len({(e.sender, e.seq) for e in seen}) == senders * count))
                stats_front = cluster_front.statistics()
                stats_owner = cluster_owner.statistics()
    finally:
        server.stop()
    assert returned == dict.fromkeys(range(senders), count)  # every send returned
    for index in range(senders):
        mine = [e.seq for e in seen if e.sender == index]
        first = list(dict.fromkeys(mine))  # first occurrences, in handling order
        assert first == list(range(count)), f"sender {index} out of order or lost"
    duplicates = len(seen) - senders * count
    print(  # the numbers docs/cluster-durable.md quotes
        f"\nbroker restart: {senders * count} sends, {duplicates} handled twice, "
        f"{stats_front.durable_retried} publishes retried, "
        f"{stats_front.durable_deduplicated} dropped as duplicates by the stream, "
        f"{stats_owner.durable_redelivered} redeliveries, reconnects "
        f"{stats_front.reconnects}/{stats_owner.reconnects}"
    )
    assert stats_front.reconnects >= 1
    assert stats_front.durable_published == senders * count
    # A handled message is acked; a redelivery of one whose ack was lost is recognised
    # (handled ids) and acked again without running the handler: no duplicate handling.
    assert duplicates == 0


# -- 3. the owning node crashes mid-handler ----------------------------------------------------

CHILD = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import anyio, anyio.to_thread
import actors
from actors.cluster import Nats
from cluster_support import Deposit

PARK = sys.argv[5] == "park"

class Ledger(actors.Actor[Deposit]):
    async def receive(self, message: Deposit) -> None:
        print(f"handling {message.amount}", flush=True)
        if PARK and message.amount == 13:
            await asyncio.sleep(3600)  # killed in here
        print(f"handled {message.amount}", flush=True)

async def main(url: str, name: str, prefix: str) -> None:
    cluster = Nats(url, node=name, prefix=prefix, heartbeat_interval=0.1,
                   heartbeat_timeout=1.0, durable_ack_wait=1.0)
    async with actors.ActorSystem(workers=1, cluster=cluster) as system:
        await system.spawn(Ledger, name="ledger", durable=True)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)

anyio.run(main, sys.argv[2], sys.argv[3], sys.argv[4])
"""


async def read_line(process: subprocess.Popen[bytes]) -> str:
    assert process.stdout is not None
    stdout = process.stdout
    line: bytes = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
    return line.decode().strip()


async def test_a_message_in_the_handler_of_a_killed_node_goes_to_its_restarted_process(
    server: NatsServer, prefix: str, tmp_path: Path
) -> None:
    script = tmp_path / "durable_owner.py"
    script.write_text(CHILD)
    args = (str(script), str(TESTS), server.url, "owner", prefix)
    cluster = node(server.url, "front", prefix, heartbeat_timeout=1.0)
    async with actors.ActorSystem(workers=1, cluster=cluster) as system:
        with running_script(*args, "park") as first:
            with anyio.fail_after(WAIT):
                ledger = await system.lookup_remote("ledger", Deposit)
                assert isinstance(ledger, DurableRef)
                await ledger.send(Deposit(1))
                await ledger.send(Deposit(13))
                await ledger.send(Deposit(2))
                assert await read_line(first) == "handling 1"
                assert await read_line(first) == "handled 1"
                assert await read_line(first) == "handling 13"
            first.kill()  # SIGKILL while Deposit(13) is in its handler, unacked
            first.wait(timeout=WAIT)
        with anyio.fail_after(WAIT):
            # Stored while no node serves the name: a durable send needs no live owner.
            await ledger.send(Deposit(3))
        with running_script(*args, "run") as second:
            with anyio.fail_after(WAIT):
                lines = [await read_line(second) for _ in range(6)]
            assert second.stdin is not None
            second.stdin.close()
    # Deposit(1) was acked before the crash: not again. 13 comes back, then the rest in order.
    assert lines == [
        "handling 13",
        "handled 13",
        "handling 2",
        "handled 2",
        "handling 3",
        "handled 3",
    ]


# -- 4. a failing handler: redelivered, then given up on ---------------------------------------


async def test_a_failing_message_is_retried_up_to_max_deliver_then_terminated(
    server: NatsServer, prefix: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    seen: list[Entry] = []
    letters: list[actors.DeadLetter] = []
    cluster = node(server.url, "a", prefix, durable_max_deliver=3)
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1, cluster=cluster, supervision=lenient()) as a:
            collector = await a.spawn(lambda: _Collector(letters))
            a.dead_letters.subscribe(collector)
            await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            ledger = await a.lookup_remote("ledger", Entry)
            assert isinstance(ledger, DurableRef)  # on the owning node too
            await ledger.send(Entry(1, 1, "bad"))
            await ledger.send(Entry(1, 2))
            await poll(lambda: _true(Entry(1, 2) in seen))
            # Three attempts, in order before the next message (window 1), then terminated.
            assert seen == [Entry(1, 1, "bad")] * 3 + [Entry(1, 2)]
            # The ack follows the handler: wait for the server to have it.
            await poll(lambda: acked(raw, prefix, "ledger"))
            await poll(lambda: _true(cluster.statistics().durable_handled == 1))
            stats = cluster.statistics()
            assert stats.durable_terminated == 1
            assert stats.durable_redelivered == 2
            assert stats.durable_handled == 1
            await poll(lambda: _true(bool(letters)))
            assert letters[0].message == Entry(1, 1, "bad")
            assert letters[0].recipient == "/user/ledger"
            (record,) = [r for r in caplog.records if "giving up on it" in r.getMessage()]
            assert record.__dict__["actor"] == "/user/ledger"  # structured, for log pipelines
            assert record.__dict__["message_type"] == "Entry"
            info = await consumer_info(raw, prefix, "ledger")
            assert info.num_ack_pending == 0
            assert info.num_pending == 0
            # The actor (restarted by its supervisor after each failure) works on.
            await ledger.send(Entry(1, 3))
            await poll(lambda: _true(Entry(1, 3) in seen))


class _Collector(actors.Actor[actors.DeadLetter]):
    def __init__(self, letters: list[actors.DeadLetter]) -> None:
        self.letters = letters

    async def receive(self, message: actors.DeadLetter) -> None:
        self.letters.append(message)


# -- 5. malformed bytes on the durable subject ----------------------------------------------


async def test_malformed_durable_messages_are_terminated_and_the_actor_is_unharmed(
    server: NatsServer, prefix: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Entry] = []
    cluster = node(server.url, "a", prefix)
    hostile = [
        b"\xc1",  # not MessagePack
        b"\x91" * 100 + b"\x00",  # too deep
        msgspec.msgpack.encode(
            Envelope(WIRE_VERSION, TELL, "cluster_support:Deposit", msgspec.Raw(b"\x91\x01"))
        ),  # a type the actor does not accept
        msgspec.msgpack.encode(
            Envelope(WIRE_VERSION, TELL, "durable-test.Entry", msgspec.Raw(b"\x81\xa1x\x01"))
        ),  # the wrong schema
        msgspec.msgpack.encode(Envelope(WIRE_VERSION, TELL, "ab", msgspec.Raw(b"\x90"))).replace(
            b"\xa2ab", b"\xa2\xff\xfe"
        ),  # a type name that is not UTF-8
    ]
    caplog.set_level(logging.WARNING, logger="actors.cluster")
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1, cluster=cluster) as a:
            ref = await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            js = raw.jetstream()
            for data in hostile:
                await js.publish(f"{prefix}.durable.ledger", data)
            await js.publish(f"{prefix}.durable.ledger", envelope(Entry(1, 1)))
            await poll(lambda: _true(bool(seen)))
            assert seen == [Entry(1, 1)]
            assert cluster.statistics().rejected == len(hostile)
            assert ref.is_alive
            await poll(lambda: acked(raw, prefix, "ledger"))  # the ack follows the handler
            info = await consumer_info(raw, prefix, "ledger")
            assert info.num_ack_pending == 0
            assert info.num_redelivered == 0  # terminated at once, never retried
    assert any(
        "rejected a frame for durable actor /user/ledger" in r.message for r in caplog.records
    )


# -- 6. de-duplication by message id ----------------------------------------------------------


async def test_two_publishes_with_the_same_message_id_are_handled_once(
    server: NatsServer, prefix: str, raw: Any
) -> None:
    seen: list[Entry] = []
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1, cluster=node(server.url, "a", prefix)) as a:
            await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            js = raw.jetstream()
            subject = f"{prefix}.durable.ledger"
            headers = {"Nats-Msg-Id": "other-node.abc.1"}
            first = await js.publish(subject, envelope(Entry(1, 1)), headers=dict(headers))
            again = await js.publish(subject, envelope(Entry(1, 1)), headers=dict(headers))
            assert not first.duplicate
            assert again.duplicate
            ledger = await a.lookup_remote("ledger", Entry)
            await ledger.send(Entry(1, 2))
            await poll(lambda: _true(Entry(1, 2) in seen))
            assert seen == [Entry(1, 1), Entry(1, 2)]


# -- 7. lookup, ask, try_send; no JetStream -------------------------------------------------


async def test_lookup_of_a_durable_name_gives_a_durable_ref_and_ask_still_works(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(Account, name="account-7", durable=True)
            account = await b.lookup_remote("account-7", Deposit | Balance)
            assert isinstance(account, DurableRef)
            assert isinstance(account, RemoteRef)
            assert account.name == "account-7"
            assert account.path == "/user/account-7"
            assert "DurableRef account-7" in repr(account)
            assert await b.lookup_remote("account-7") == account  # one ref per name
            # It travels in messages as a durable ref, both ways.
            await a.spawn(Relayer, name="relayer", public=True)
            relayer = await b.lookup_remote("relayer", Echo)
            assert await relayer.ask(Echo(account)) is account
            await account.send(Deposit(5))
            account.try_send(Deposit(7))  # published in the background
            cluster_b = b.cluster
            assert isinstance(cluster_b, Nats)
            await poll(lambda: _true(cluster_b.statistics().durable_published == 2))
            # ask is a core request-reply to whoever serves the name; the tells were stored
            # first, so poll until both were handled.
            await poll(lambda: _balance_is(account, 12))
            with pytest.raises(actors.MessageTypeError):
                await account.send("not a deposit")  # type: ignore[arg-type]
            # Blocking forms, from a plain thread.
            done = threading.Event()

            def from_thread() -> None:
                account.blocking_send(Deposit(1))
                done.set()

            await anyio.to_thread.run_sync(from_thread)
            assert done.is_set()
            await poll(lambda: _balance_is(account, 13))
            assert cluster_b.statistics().durable_retried == 0


async def _balance_is(account: actors.Ref[Any], expected: int) -> bool:
    balance: int = await account.ask(Balance(), timeout=2.0)
    return balance == expected


async def test_a_durable_spawn_without_jetstream_raises_cluster_error(prefix: str) -> None:
    with NatsServer() as plain, anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1, cluster=node(plain.url, "a", prefix)) as a:
            with pytest.raises(ClusterError, match="JetStream"):
                await a.spawn(Account, name="account-7", durable=True)
            assert a.lookup("/user/account-7") is None


def test_durable_options_are_checked() -> None:
    with pytest.raises(ValueError, match="durable_max_deliver"):
        Nats(node="a", durable_max_deliver=0)
    with pytest.raises(ValueError, match="durable_ack_wait"):
        Nats(node="a", durable_ack_wait=0)


# -- 8. traces: the stored envelope keeps its sender's trace context ---------------------------


async def test_a_stored_message_joins_its_senders_trace(
    server: NatsServer, prefix: str, raw: Any
) -> None:
    spans = Spans()
    seen: list[Entry] = []
    trace_id, span_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    traceparent = f"00-{trace_id:032x}-{span_id:016x}-01"
    body = msgspec.Raw(msgspec.msgpack.encode(Entry(1, 1)))
    stored = Envelope(
        WIRE_VERSION, TELL, "durable-test.Entry", body, None, "raw", trace=traceparent
    )
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(
            workers=1, cluster=node(server.url, "a", prefix), tracing=spans.provider
        ) as a:
            await a.spawn(lambda: Ledger(seen), name="ledger", durable=True)
            await raw.jetstream().publish(
                f"{prefix}.durable.ledger", msgspec.msgpack.encode(stored)
            )
            await poll(lambda: _true(bool(seen)))
    (span,) = [span for span in spans.finished() if span.name == "Entry"]
    assert span.parent is not None
    assert span.parent.is_remote
    assert (span.parent.trace_id, span.parent.span_id) == (trace_id, span_id)


# -- 9. an abandoned ask to a durable actor: skipped if queued, cancelled where opted in ----------


@register_message(name="durable-test.Count")
class Count(actors.Request[int], frozen=True):
    """How many asks of each kind were handled: Park * 1000 + Count."""


class Desk(actors.Actor[Entry | Park | Count]):
    def __init__(self) -> None:
        self.parked = 0
        self.counted = 0

    async def receive(self, message: Entry | Park | Count) -> object:
        match message:
            case Park():
                self.parked += 1
                return await park(message)
            case Count():
                self.counted += 1
                return self.parked * 1000 + self.counted
        return None


class CancellableDesk(Desk):
    cancel_abandoned = True


@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_an_ask_to_a_durable_actor_abandoned_while_queued_is_skipped(
    server: NatsServer, prefix: str, how: str
) -> None:
    FLAGS.clear()
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            local = await a.spawn(Desk, name="desk", durable=True)
            desk = await b.lookup_remote("desk", Park | Count)
            assert isinstance(desk, DurableRef)
            async with anyio.create_task_group() as parked:
                parked.start_soon(local.ask, Park("in", "out", "never"))
                await flag("in").wait()
                await abandon_queued_ask(functools.partial(desk.ask, Count()), local, how)
                # The owner gave it up (its expiry, or the CANCEL frame that followed the
                # ask to the name's subject) once it no longer tracks it: then let the
                # actor reach it.
                await wait_until(lambda: asking(a) == 0)
                flag("out").set()
            assert await desk.ask(Count()) == 1001  # the abandoned Count never ran
            (figures,) = (m for m in a.metrics().actors if m.path == local.path)
            if how == "cancel":
                assert figures.asks_cancelled == 1


async def test_an_abandoned_ask_cancels_the_handler_of_an_opted_in_durable_actor(
    server: NatsServer, prefix: str
) -> None:
    FLAGS.clear()
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(CancellableDesk, name="desk", durable=True)
            desk = await b.lookup_remote("desk", Park | Count)
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(desk.ask, Park("in", "never", "cancelled"))
                    await flag("in").wait()
                    scope.cancel()  # the asker gives up while the handler runs
            await flag("cancelled").wait()  # cancelled on the owner, through the CANCEL
            await wait_until(lambda: asking(a) == 0)
            assert await desk.ask(Count()) == 1001  # the actor goes on


async def test_with_two_owners_an_abandoned_durable_ask_is_handled_on_neither(
    server: NatsServer, prefix: str
) -> None:
    # Two nodes serve the durable name: the notice goes to both (the name's notice subject)
    # and the one holding the ask acts; its deadline bounds it anyway: dropped unhandled.
    FLAGS.clear()
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a1", cluster=node(server.url, "a1", prefix)) as a1,
            actors.ActorSystem(workers=1, name="a2", cluster=node(server.url, "a2", prefix)) as a2,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            desks = [
                await a1.spawn(Desk, name="desk", durable=True),
                await a2.spawn(Desk, name="desk", durable=True),
            ]
            desk = await b.lookup_remote("desk", Park | Count)
            async with anyio.create_task_group() as parked:
                for index, local in enumerate(desks):
                    parked.start_soon(local.ask, Park(f"in{index}", "out", "never"))
                    await flag(f"in{index}").wait()
                for _ in range(4):  # each to either owner, queued behind its parked handler
                    with pytest.raises(actors.AskTimeout):
                        await desk.ask(Count(), timeout=0.2)
                await wait_until(lambda: asking(a1) == 0 and asking(a2) == 0)
                flag("out").set()
            counts = [await local.ask(Count()) for local in desks]
    assert counts == [1001, 1001]  # on each owner: its Park, and this Count only
