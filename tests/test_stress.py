"""Stress tests: lost wake-ups, per-sender order, cancellation and stop races under load.

Sized for a few seconds each on a 2-core machine. ``ACTORS_STRESS_SCALE`` multiplies every
volume (e.g. ``ACTORS_STRESS_SCALE=10`` for a soak run); time limits grow with it. Each test
prints its figures (run pytest with ``-s`` to see them). Randomness is seeded; the seed is in
the printed figures and can be replayed with ``ACTORS_STRESS_SEED``.

Catalogue IDs (RELIABILITY.md): C1 per-sender order, C2 no lost wake-ups, C3 conservation
under cancellation, C6 stop racing senders.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Countdown, Flag

import actors
from actors import Actor, ActorRef, ActorSystem

SCALE = float(os.environ.get("ACTORS_STRESS_SCALE", "1"))
SEED = int(os.environ.get("ACTORS_STRESS_SEED", "20240611"))
STALL = 2.0  # seconds without progress that count as a hang (a lost wake-up)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60 * max(1.0, SCALE))]


def scaled(n: int) -> int:
    return max(1, int(n * SCALE))


def figures(test: str, **values: object) -> None:
    print(f"\n[{test}] " + " ".join(f"{k}={v}" for k, v in values.items()))


async def wait_with_watchdog(done: Flag, progress: Any, what: str) -> None:
    """Wait for ``done``; fail as soon as ``progress()`` stands still for `STALL` seconds."""
    last = progress()
    while not done.is_set():
        with anyio.move_on_after(STALL):
            await done.wait()
        now = progress()
        if not done.is_set() and now == last:
            pytest.fail(f"{what}: no progress for {STALL} s at {now} (a lost wake-up?)")
        last = now


# -- C2: ping-pong across loops ----------------------------------------------------------------


class Ball(msgspec.Struct, frozen=True):
    hops_left: int


class Partner(msgspec.Struct, frozen=True):
    ref: ActorRef[Ball]


class Player(Actor[Ball | Partner]):
    def __init__(self, finished: Countdown, seed: int) -> None:
        self.finished = finished
        self.partner: ActorRef[Ball] | None = None
        self.hops = 0
        self.rng = random.Random(seed)

    async def receive(self, message: Ball | Partner) -> None:
        match message:
            case Partner(ref):
                self.partner = ref
            case Ball(hops_left):
                self.hops += 1
                if self.rng.random() < 0.02:
                    await asyncio.sleep(0)  # jitter between wake-up and the next send
                if hops_left == 0:
                    self.finished.tick()
                else:
                    assert self.partner is not None
                    await self.partner.send(Ball(hops_left - 1))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio-workers", "uvloop-workers"])
@pytest.mark.parametrize("balls", [1, 3])
async def test_C2_ping_pong_across_loops_loses_no_wake_up(use_uvloop: bool, balls: int) -> None:
    """Two actors on different worker loops volley through capacity-1 mailboxes.

    With one ball every hop wakes an idle actor across threads; with three, senders also
    block on the partner's full mailbox and are woken by its consumer.
    """
    if use_uvloop:
        pytest.importorskip("uvloop")
    round_trips = scaled(50_000)
    hops_per_ball = 2 * round_trips // balls
    finished = Countdown(balls)
    async with ActorSystem(workers=2, use_uvloop=use_uvloop) as system:
        players: list[Any] = []
        for index in range(2):
            player = await system.spawn(
                lambda index=index: Player(finished, SEED + index), capacity=1, placement=index
            )
            players.append(player)
        await players[0].send(Partner(players[1]))
        await players[1].send(Partner(players[0]))
        started = time.perf_counter()
        for _ in range(balls):
            await players[0].send(Ball(hops_per_ball - 1))

        def progress() -> int:
            return sum(p._cell.instance.hops for p in players)  # a racy read is fine here

        await wait_with_watchdog(finished.done, progress, "ping-pong")
        elapsed = time.perf_counter() - started
        hops = progress()
    assert hops == balls * hops_per_ball
    figures(
        "C2",
        workers="uvloop" if use_uvloop else "asyncio",
        balls=balls,
        round_trips=round_trips,
        seconds=f"{elapsed:.2f}",
        round_trips_per_s=f"{round_trips / elapsed:,.0f}",
    )


# -- C1: many senders, one small mailbox -------------------------------------------------------


class Item(msgspec.Struct, frozen=True):
    sender: int
    seq: int


class Report(actors.Request[tuple[int, int, tuple[int, ...]]], frozen=True):
    """Ask for (total received, order violations, received count per sender)."""


class OrderChecker(Actor[Item | Report]):
    def __init__(self, senders: int) -> None:
        self.next_seq = [0] * senders
        self.total = 0
        self.violations = 0

    async def receive(self, message: Item | Report) -> Any:
        match message:
            case Item(sender, seq):
                self.total += 1
                if seq != self.next_seq[sender]:  # a gap, a duplicate or a reordering
                    self.violations += 1
                self.next_seq[sender] = seq + 1
            case Report():
                return (self.total, self.violations, tuple(self.next_seq))
        return None


class Burst(actors.Request[None], frozen=True):
    target: ActorRef[Item]
    sender: int
    count: int
    seed: int


class Sender(Actor[Burst]):
    async def receive(self, message: Burst) -> None:
        rng = random.Random(message.seed)
        target = message.target
        for seq in range(message.count):
            await target.send(Item(message.sender, seq))
            if rng.random() < 0.05:
                await asyncio.sleep(0)


async def test_C1_per_sender_order_from_actors_threads_and_the_host() -> None:
    """8 actor senders over 2 worker loops, 2 plain threads and the host task -> capacity 8."""
    per_sender = scaled(6_000)
    actor_senders, thread_senders = 8, 2
    senders = actor_senders + thread_senders + 1
    host_id = senders - 1
    async with ActorSystem(workers=2) as system:
        consumer = await system.spawn(lambda: OrderChecker(senders), capacity=8, placement=0)
        producers = [await system.spawn(Sender) for _ in range(actor_senders)]  # round-robin

        def thread_sender(sender: int) -> None:
            rng = random.Random(SEED + sender)
            for seq in range(per_sender):
                consumer.blocking_send(Item(sender, seq))
                if rng.random() < 0.05:
                    time.sleep(0)

        async def host_sender() -> None:
            for seq in range(per_sender):
                await consumer.send(Item(host_id, seq))

        started = time.perf_counter()
        with anyio.fail_after(45 * max(1.0, SCALE)):
            async with anyio.create_task_group() as tg:
                for i, producer in enumerate(producers):
                    burst = Burst(consumer, i, per_sender, SEED + i)
                    tg.start_soon(lambda p=producer, b=burst: p.ask(b, timeout=None))
                for i in range(actor_senders, actor_senders + thread_senders):
                    tg.start_soon(anyio.to_thread.run_sync, thread_sender, i)
                tg.start_soon(host_sender)
            total, violations, counts = await consumer.ask(Report(), timeout=WAIT)
        elapsed = time.perf_counter() - started
    assert violations == 0
    assert counts == (per_sender,) * senders
    assert total == senders * per_sender
    figures(
        "C1",
        senders=senders,
        messages=total,
        seconds=f"{elapsed:.2f}",
        msgs_per_s=f"{total / elapsed:,.0f}",
        violations=violations,
    )


# -- C3: random cancellation of waiting senders ------------------------------------------------


class Received(actors.Request[tuple[tuple[int, ...], ...]], frozen=True):
    """Ask for the seqs received from each sender, in arrival order."""


class Collector(Actor[Item | Received]):
    def __init__(self, senders: int, seed: int) -> None:
        self.received: list[list[int]] = [[] for _ in range(senders)]
        self.rng = random.Random(seed)

    async def receive(self, message: Item | Received) -> Any:
        match message:
            case Item(sender, seq):
                self.received[sender].append(seq)
                if self.rng.random() < 0.1:
                    await asyncio.sleep(0)  # let senders pile up on the full mailbox
            case Received():
                return tuple(tuple(seqs) for seqs in self.received)
        return None


async def test_C3_cancelled_waiting_senders_lose_and_duplicate_nothing() -> None:
    senders, per_sender = 16, scaled(800)
    rng = random.Random(SEED)
    delivered: list[list[int]] = [[] for _ in range(senders)]
    cancelled: list[list[int]] = [[] for _ in range(senders)]

    async with ActorSystem(workers=1) as system:
        collector = await system.spawn(lambda: Collector(senders, SEED), capacity=4)

        async def sender(index: int, deadlines: list[float]) -> None:
            for seq, deadline in enumerate(deadlines):
                with anyio.move_on_after(deadline) as scope:
                    await collector.send(Item(index, seq))
                (cancelled if scope.cancelled_caught else delivered)[index].append(seq)

        started = time.perf_counter()
        with anyio.fail_after(45 * max(1.0, SCALE)):
            async with anyio.create_task_group() as tg:
                for index in range(senders):
                    deadlines = [rng.uniform(0, 0.002) for _ in range(per_sender)]
                    tg.start_soon(sender, index, deadlines)
            received = await collector.ask(Received(), timeout=WAIT)
        elapsed = time.perf_counter() - started

    lost = duplicated = 0
    for index in range(senders):
        # Exactly the sends that completed arrived, once each, in the order they were sent.
        assert list(received[index]) == delivered[index]
        assert not set(cancelled[index]) & set(received[index])
        lost += len(set(delivered[index]) - set(received[index]))
        duplicated += len(received[index]) - len(set(received[index]))
    n_cancelled = sum(map(len, cancelled))
    n_delivered = sum(map(len, delivered))
    assert n_cancelled + n_delivered == senders * per_sender
    assert n_cancelled > 0, "no send was cancelled while waiting: the test lost its point"
    assert n_delivered > 0
    figures(
        "C3",
        sent=senders * per_sender,
        delivered=n_delivered,
        cancelled=n_cancelled,
        lost=lost,
        duplicated=duplicated,
        seconds=f"{elapsed:.2f}",
        seed=SEED,
    )


# -- C6: stop racing senders -------------------------------------------------------------------


class Counted(Actor[Item]):
    def __init__(self, reached: Flag, threshold: int, processed: list[int]) -> None:
        self.reached = reached
        self.threshold = threshold
        self.processed = processed  # written once, from on_stop
        self.count = 0

    async def receive(self, message: Item) -> None:
        self.count += 1
        if self.count == self.threshold:
            self.reached.set()

    async def on_stop(self) -> None:
        self.processed.append(self.count)


async def test_C6_stop_racing_senders_every_send_is_processed_or_rejected() -> None:
    """Senders keep sending while `ref.stop()` runs: each send ends exactly one way.

    Repeated over several actors so that the stop lands at many different moments.
    """
    rounds, threshold = scaled(20), 300
    totals = {"attempted": 0, "processed": 0, "rejected": 0}
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(45 * max(1.0, SCALE)):
            for round_index in range(rounds):
                figures_of_round = await stop_while_sending(system, round_index, threshold)
                for key, value in figures_of_round.items():
                    totals[key] += value
    figures("C6", rounds=rounds, **totals)


async def stop_while_sending(
    system: ActorSystem, round_index: int, threshold: int
) -> dict[str, int]:
    task_senders, thread_senders, retries = 6, 2, 3
    senders = task_senders + thread_senders
    reached = Flag()
    processed: list[int] = []
    accepted, rejected, attempted = [0] * senders, [0] * senders, [0] * senders
    ref = await system.spawn(
        lambda: Counted(reached, threshold, processed), capacity=8, placement=round_index % 2
    )

    async def task_sender(index: int) -> None:
        rng = random.Random(SEED + round_index * senders + index)
        seq = 0
        while rejected[index] < retries:
            attempted[index] += 1
            try:
                await ref.send(Item(index, seq))
            except actors.ActorStopped:
                rejected[index] += 1
            else:
                accepted[index] += 1
            seq += 1
            if rng.random() < 0.1:
                await anyio.lowlevel.checkpoint()

    def thread_sender(index: int) -> None:
        seq = 0
        while rejected[index] < retries:
            attempted[index] += 1
            try:
                ref.blocking_send(Item(index, seq))
            except actors.ActorStopped:
                rejected[index] += 1
            else:
                accepted[index] += 1
            seq += 1

    async with anyio.create_task_group() as tg:
        for index in range(task_senders):
            tg.start_soon(task_sender, index)
        for index in range(task_senders, senders):
            tg.start_soon(anyio.to_thread.run_sync, thread_sender, index)
        await reached.wait()
        await ref.stop()
    assert await ref.join() is None
    assert len(processed) == 1  # on_stop ran once, after the last accepted message
    assert processed[0] == sum(accepted)
    assert sum(attempted) == sum(accepted) + sum(rejected)
    assert rejected == [retries] * senders
    return {"attempted": sum(attempted), "processed": processed[0], "rejected": sum(rejected)}
