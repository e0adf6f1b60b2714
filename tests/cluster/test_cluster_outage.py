"""Core NATS across a broker outage: at most once, per-sender order, no duplicates, loss counted.

Producers on one node (two host tasks, an actor on a worker loop and a plain thread) stream
numbered messages to a public actor on another node, in a child process, while the
nats-server is killed (SIGKILL) or stopped (SIGTERM) and restarted on the same port. The
target records what it handled; the test then checks, per producer:

* the sequence numbers handled are strictly increasing (no reordering, no duplicate);
* every ``send`` that returned was handled (a successful send means enqueued);
* every ``try_send`` that raised was never handled;
* whatever was lost was sent across the outage (started before the nodes were back,
  finished after the kill);

and reports the loss (messages attempted but never handled) and the outage's length.

Run as a script, this module is the target node: ``python test_cluster_outage.py URL PREFIX``
serves the public actor ``log`` until its standard input closes.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
from cluster_support import Entries, Entry, Log

import actors
from actors.cluster import Nats

if TYPE_CHECKING:
    from collections.abc import Callable


# -- the nodes (the target runs this file as __main__; its protocol, `Log` and its messages,
# -- comes from cluster_support, which both processes import) ---------------------------------


def target_node(url: str, name: str, prefix: str) -> Nats:
    return Nats(
        url,
        node=name,
        prefix=prefix,
        heartbeat_interval=0.1,
        heartbeat_timeout=5.0,
        reconnect_time_wait=0.05,
    )


async def serve(url: str, prefix: str) -> None:
    async with actors.ActorSystem(workers=1, cluster=target_node(url, "target", prefix)) as system:
        await system.spawn(Log, name="log", capacity=100_000, public=True)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until stdin closes


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, sys.argv[1], sys.argv[2])
    sys.exit(0)


# -- the tests --------------------------------------------------------------------------------

import itertools  # noqa: E402

import pytest  # noqa: E402
from _support import Flag, wait_until  # noqa: E402
from cluster_support import (  # noqa: E402
    Account,
    Balance,
    Deposit,
    NatsServer,
    TcpGate,
    Watcher,
    asyncio_backend_fixture,
    prefix_fixture,
    running_script,
    server_fixture,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.anyio

HERE = Path(__file__).resolve()
OUTAGE = 0.5  # seconds the server stays down, once the nodes saw it go
BEFORE = 30  # messages each producer gets through before the outage
AFTER = 30  # ... and after it

anyio_backend = asyncio_backend_fixture()
prefix = prefix_fixture("o")
server = server_fixture(scope="function", monitor=True)  # the tests kill and restart it


@pytest.fixture
def gate(server: NatsServer) -> Iterator[TcpGate]:
    """The producers' way to the server: shut while the target node reconnects."""
    forwarder = TcpGate(server.port)
    try:
        yield forwarder
    finally:
        forwarder.close()


class Attempt(msgspec.Struct):
    seq: int
    started: float
    ended: float = 0.0
    error: str | None = None  # how the call failed: the exception's type name


class Producer:
    """One sender's record: what it tried, when, and how each call ended."""

    def __init__(self, index: int, kind: str) -> None:
        self.index = index
        self.kind = kind
        self.attempts: list[Attempt] = []
        self.finished = Flag()
        self.stopped = False  # its ref reported the target stopped: nothing more to send

    def ok_after(self, moment: float) -> int:
        if self.stopped:
            errors = {a.error for a in self.attempts if a.error}
            raise AssertionError(f"{self.kind} producer {self.index}: the ref died: {errors}")
        return sum(1 for a in self.attempts if a.error is None and a.started > moment)

    def attempt(self, seq: int, call: Callable[[Entry], object]) -> Any:
        """Run one call, recording it; returns what the call returned (an awaitable or not)."""
        return Attempt(seq, time.monotonic()), call(Entry(self.index, seq))

    def settle(self, attempt: Attempt, error: BaseException | None) -> None:
        attempt.ended = time.monotonic()
        if error is not None:
            attempt.error = _describe(error)
            self.stopped = isinstance(error, actors.ActorStopped)
        self.attempts.append(attempt)

    async def run(self, call: Callable[[Entry], Any], stop: threading.Event) -> None:
        """Await ``call`` with numbered entries until ``stop`` (a task, or an actor's handler)."""
        try:
            for seq in itertools.count():
                if stop.is_set() or self.stopped:
                    return
                attempt = Attempt(seq, time.monotonic())
                try:
                    await call(Entry(self.index, seq))
                except Exception as error:
                    self.settle(attempt, error)
                else:
                    self.settle(attempt, None)
        finally:
            self.finished.set()

    def run_blocking(self, call: Callable[[Entry], None], stop: threading.Event) -> None:
        """Call ``call`` with numbered entries until ``stop`` (a plain thread)."""
        try:
            for seq in itertools.count():
                if stop.is_set() or self.stopped:
                    return
                attempt = Attempt(seq, time.monotonic())
                try:
                    call(Entry(self.index, seq))
                except Exception as error:
                    self.settle(attempt, error)
                else:
                    self.settle(attempt, None)
        finally:
            self.finished.set()


def _describe(error: BaseException) -> str:
    if isinstance(error, actors.MailboxFull) and "not connected" in str(error):
        return "not connected"
    return type(error).__name__


class SendingActor(actors.Actor[str]):
    """A producer on a worker loop: sends from inside its handler until told to stop."""

    def __init__(
        self, target: actors.Ref[Entry], producer: Producer, stop: threading.Event
    ) -> None:
        self.target = target
        self.producer = producer
        self.stop_sending = stop

    async def receive(self, message: str) -> None:
        await self.producer.run(self.target.send, self.stop_sending)


class Report(msgspec.Struct):
    """What one run measured."""

    how: str
    outage: float  # seconds from the kill until the producers' node was connected again
    attempted: int
    handled: int
    raised: int  # calls that raised
    raised_but_handled: int  # sends whose acknowledgement was lost, not the message
    lost_in_flight: int  # calls that returned without error, never handled (try_send only)
    lost: int  # attempted, never handled
    errors: dict[str, int]  # how the calls that raised failed, by kind


def check(producers: list[Producer], entries: tuple[tuple[int, int], ...], how: str) -> Report:
    """The at-most-once contract, per producer; returns the loss figures."""
    attempted = handled_total = raised = raised_but_handled = lost_in_flight = 0
    errors: dict[str, int] = {}
    for producer in producers:
        handled = [seq for p, seq in entries if p == producer.index]
        # No reordering, no duplicates: strictly increasing.
        assert all(a < b for a, b in itertools.pairwise(handled)), (producer.kind, handled)
        tried = {a.seq for a in producer.attempts}
        assert set(handled) <= tried, f"{producer.kind}: handled what was never sent"
        attempted += len(tried)
        handled_total += len(handled)
        done = set(handled)
        for attempt in producer.attempts:
            if attempt.error is None and attempt.seq not in done:
                # A send returned: it was enqueued, so it must have been handled.
                assert producer.kind != "send", f"send {attempt} returned, never handled"
                lost_in_flight += 1
            if attempt.error is not None:
                raised += 1
                errors[attempt.error] = errors.get(attempt.error, 0) + 1
                if attempt.seq in done:
                    # Only a send's acknowledgement can be lost; a refused try_send never left.
                    assert producer.kind == "send", (producer.kind, attempt)
                    raised_but_handled += 1
    return Report(
        how=how,
        outage=0.0,
        attempted=attempted,
        handled=handled_total,
        raised=raised,
        raised_but_handled=raised_but_handled,
        lost_in_flight=lost_in_flight,
        lost=attempted - handled_total,
        errors=errors,
    )


def check_loss_only_across_the_outage(
    producers: list[Producer],
    entries: tuple[tuple[int, int], ...],
    down: float,
    back: float,
    in_flight: float = 0.0,
) -> None:
    """A message lost (or refused) was sent across the outage: started before the nodes
    were back, and finished after the kill (or at most ``in_flight`` seconds before it, for
    calls that return before their frame is out, such as try_send)."""
    handled = set(entries)
    for producer in producers:
        for attempt in producer.attempts:
            if (producer.index, attempt.seq) in handled and attempt.error is None:
                continue
            where = (
                f"{producer.kind} {producer.index}: seq {attempt.seq} lost outside the outage "
                f"({attempt.started - down:+.3f} s .. {attempt.ended - down:+.3f} s after it "
                f"began, back at {back - down:+.3f} s)"
            )
            assert attempt.started < back, where
            assert attempt.ended >= down - in_flight, where


def producer_node(url: str, prefix: str) -> Nats:
    return Nats(
        url,
        node="producers",
        prefix=prefix,
        heartbeat_interval=0.1,
        heartbeat_timeout=5.0,
        reconnect_time_wait=0.05,
        ack_timeout=3.0,
    )


def record(report: Report, record_property: Callable[[str, object], None]) -> None:
    for field in report.__struct_fields__:
        record_property(field, getattr(report, field))
    print(f"\noutage report: {msgspec.json.encode(report).decode()}")


async def restart_target_first(
    server: NatsServer, gate: TcpGate, how: str, producers: Nats, prefix: str
) -> tuple[float, float]:
    """Break the server (SIGKILL or SIGTERM), restart it on the same port, let the target
    node re-subscribe, then let the producers' node back in. Returns (down, back)."""
    gate.shut()
    down = time.monotonic()
    if how == "kill":
        server.kill()
    else:
        server.stop()
    await wait_until(lambda: not producers.statistics().connected)
    await anyio.sleep(OUTAGE)  # the outage itself, not a synchronisation
    server.start()
    name_subject = f"{prefix}.name.log"
    await wait_until(lambda: name_subject in server.subscriptions("actors:target"), timeout=30)
    gate.open()
    await wait_until(lambda: producers.statistics().connected, timeout=30)
    return down, time.monotonic()


@pytest.fixture
async def target(server: NatsServer, prefix: str) -> AsyncIterator[None]:
    """The target node, ``log``'s owner, in a child process connected to the server."""
    with running_script(str(HERE), server.url, prefix):
        yield


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["kill", "term"])
async def test_sends_across_a_server_restart_keep_order_and_never_duplicate(
    server: NatsServer,
    gate: TcpGate,
    target: None,
    prefix: str,
    how: str,
    record_property: Callable[[str, object], None],
) -> None:
    stop = threading.Event()
    producers = [Producer(i, "send") for i in range(4)]
    with anyio.fail_after(90):
        async with actors.ActorSystem(
            workers=2, name="producers", cluster=producer_node(gate.url, prefix)
        ) as system:
            cluster = system.cluster
            assert isinstance(cluster, Nats)
            log = await system.lookup_remote("log", Entry | Entries)
            thread = threading.Thread(
                target=producers[3].run_blocking, args=(log.blocking_send, stop)
            )
            try:
                async with anyio.create_task_group() as tg:
                    # Two host tasks, an actor on a worker loop, and a plain thread.
                    tg.start_soon(producers[0].run, log.send, stop)
                    tg.start_soon(producers[1].run, log.send, stop)
                    actor = await system.spawn(lambda: SendingActor(log, producers[2], stop))
                    await actor.send("go")
                    thread.start()
                    await wait_until(lambda: all(p.ok_after(0.0) >= BEFORE for p in producers))
                    down, back = await restart_target_first(server, gate, how, cluster, prefix)
                    await wait_until(
                        lambda: all(p.ok_after(back) >= AFTER for p in producers), timeout=30
                    )
                    stop.set()
                    for producer in producers:
                        await producer.finished.wait()
            finally:
                stop.set()
                if thread.is_alive():
                    await anyio.to_thread.run_sync(thread.join)
            # Everything acknowledged is in the mailbox ahead of this ask (one FIFO each way).
            entries = await log.ask(Entries(), timeout=5.0)
            assert log.is_alive

    report = check(producers, entries, how)
    report.outage = back - down
    record(report, record_property)
    check_loss_only_across_the_outage(producers, entries, down, back)
    assert report.handled >= 4 * (BEFORE + AFTER)
    # Only the outage loses anything: at most the frame each producer had in flight.
    assert report.lost <= len(producers), report


@pytest.mark.timeout(120)
async def test_try_send_across_a_server_restart_fails_fast_keeps_order_and_never_duplicates(
    server: NatsServer,
    gate: TcpGate,
    target: None,
    prefix: str,
    record_property: Callable[[str, object], None],
) -> None:
    stop = threading.Event()
    producers = [Producer(0, "try_send"), Producer(1, "try_send")]
    with anyio.fail_after(90):
        async with actors.ActorSystem(
            workers=1, name="producers", cluster=producer_node(gate.url, prefix)
        ) as system:
            cluster = system.cluster
            assert isinstance(cluster, Nats)
            log = await system.lookup_remote("log", Entry | Entries)

            async def paced_task(entry: Entry) -> None:
                try:
                    log.try_send(entry)
                finally:
                    await anyio.sleep(0.002)  # pacing: a stream, not a flood

            def paced_thread(entry: Entry) -> None:
                try:
                    log.try_send(entry)
                finally:
                    time.sleep(0.002)  # pacing: a stream, not a flood

            thread = threading.Thread(target=producers[1].run_blocking, args=(paced_thread, stop))
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(producers[0].run, paced_task, stop)
                    thread.start()
                    await wait_until(lambda: all(p.ok_after(0.0) >= BEFORE for p in producers))
                    down, back = await restart_target_first(server, gate, "kill", cluster, prefix)
                    await wait_until(
                        lambda: all(p.ok_after(back) >= AFTER for p in producers), timeout=30
                    )
                    stop.set()
            finally:
                stop.set()
                if thread.is_alive():
                    await anyio.to_thread.run_sync(thread.join)
            last = {p.index: max(a.seq for a in p.attempts if a.error is None) for p in producers}

            async def arrived() -> tuple[tuple[int, int], ...]:
                # try_send has no acknowledgement to await: poll until the last ones are in.
                while True:
                    entries = await log.ask(Entries(), timeout=5.0)
                    if set(last.items()) <= set(entries):
                        return entries
                    await anyio.sleep(0.02)

            entries = await arrived()

    report = check(producers, entries, "kill")
    report.outage = back - down
    record(report, record_property)
    # Disconnected, try_send failed fast ("not connected") rather than buffering.
    refused = [a for p in producers for a in p.attempts if a.error == "not connected"]
    assert refused, "no try_send saw the disconnection"
    # Fast: the typical refusal takes well under 50 ms, and none waited out the outage (a
    # loaded machine may deschedule one call's thread for a while, never for the outage).
    durations = sorted(a.ended - a.started for a in refused)
    assert durations[len(durations) // 2] < 0.05, durations
    assert durations[-1] < OUTAGE, durations
    assert all(down <= a.started < back for a in refused)
    # A try_send returns before its frame is out: one that returned just before the kill
    # may still have been on its way (in the outbox, a socket buffer, the dying server).
    check_loss_only_across_the_outage(producers, entries, down, back, in_flight=0.25)
    assert report.lost - report.raised <= 2 * 5, report


@pytest.mark.timeout(60)
async def test_a_sender_back_before_the_target_does_not_declare_the_actor_stopped(
    server: NatsServer, gate: TcpGate, prefix: str
) -> None:
    events: list[actors.Terminated] = []
    with anyio.fail_after(45):
        async with (
            actors.ActorSystem(
                workers=1,
                name="a",
                cluster=Nats(gate.url, node="a", prefix=prefix, reconnect_time_wait=0.05),
            ) as a,
            actors.ActorSystem(workers=1, name="b", cluster=producer_node(server.url, prefix)) as b,
        ):
            cluster_a, cluster_b = a.cluster, b.cluster
            assert isinstance(cluster_a, Nats)
            assert isinstance(cluster_b, Nats)
            await a.spawn(Account, name="acct", public=True)
            account = await b.lookup_remote("acct", Deposit | Balance)
            watcher = await b.spawn(lambda: Watcher(events.append))
            await watcher.send(account)
            await wait_until(lambda: bool(account._cell.watchers))  # pyright: ignore[reportPrivateUsage]
            await account.send(Deposit(1))
            gate.shut()
            server.kill()
            await wait_until(lambda: not cluster_a.statistics().connected)
            await wait_until(lambda: not cluster_b.statistics().connected)
            server.start()
            await wait_until(lambda: cluster_b.statistics().connected)
            # b is back, a is not yet: a's actor is unreachable for a moment, not stopped.
            # The server answers "no responders". Within the credit the send returns at once
            # (pipelined); without, it waits and times out. Either way b keeps the frame and
            # sends it again, asking a, until a is back: nothing counts as stopped.
            resent = cluster_b.statistics().resent
            try:
                await account.send(Deposit(2), timeout=0.5)
            except actors.ActorStopped as error:
                raise AssertionError(f"the actor counts as stopped: {error}") from None
            except actors.SendTimeout:
                pass  # it is still in b's stream, sent again once a is back
            await wait_until(lambda: cluster_b.statistics().resent > resent)
            assert account.is_alive
            gate.open()
            await account.send(Deposit(4), timeout=10.0)
            await wait_until(lambda: cluster_a.statistics().connected)
            assert account.is_alive
            # Deposit(2) was enqueued once, before Deposit(4): 1 + 2 + 4.
            assert await account.ask(Balance(), timeout=10.0) == 7
            assert (await b.lookup_remote("acct", Deposit | Balance)) is account
            assert not events
