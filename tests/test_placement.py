"""Placement: children start beside their parent, actors that talk move to one loop, pinned
actors stay, and a move is invisible (order, exactly-once, asks, timers, restarts)."""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

import actors
from actors import Actor, ActorRef, ActorSystem, OneForOne, Restart, testing

pytestmark = pytest.mark.anyio


def loop_of(ref: ActorRef[Any]) -> str:
    return ref.statistics().loop


# -- locality by default ---------------------------------------------------------------------


class Spawned(actors.Request[tuple[str, str]], frozen=True):
    """Spawn a child (pinned to ``placement`` if given); reply (own loop, child's loop)."""

    placement: int | None = None


class Parent(Actor[Spawned]):
    async def receive(self, message: Spawned) -> tuple[str, str]:
        child = await self.spawn(Idle, placement=message.placement)
        return loop_of(self.ref), loop_of(child)


class Idle(Actor[Spawned]):
    async def receive(self, message: Spawned) -> tuple[str, str]:
        return ("", "")


async def test_a_child_starts_on_its_parents_loop_unless_placed() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            parents = [await system.spawn(Parent) for _ in range(4)]  # spread over both loops
            assert {loop_of(parent) for parent in parents} == {"0", "1"}
            for parent in parents:
                own, child = await parent.ask(Spawned())
                assert child == own
                own, child = await parent.ask(Spawned(placement=1))
                assert child == "1"


class TopLevel(actors.Request[str], frozen=True):
    """Spawn a top-level actor with ``system.spawn`` from the handler; reply with its loop."""


class Spawner(Actor[TopLevel]):
    async def receive(self, message: TopLevel) -> str:
        return loop_of(await self.system.spawn(Idle))


async def test_a_top_level_actor_spawned_from_a_handler_starts_on_that_loop() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            for index in (0, 1):
                spawner = await system.spawn(Spawner, placement=index)
                for _ in range(3):  # not spread round-robin
                    assert await spawner.ask(TopLevel()) == str(index)


# -- co-location by traffic ------------------------------------------------------------------


class Ball(msgspec.Struct, frozen=True):
    left: int


class Partner(msgspec.Struct, frozen=True):
    ref: ActorRef[Ball]


class Player(Actor[Ball | Partner]):
    def __init__(self, done: Flag | None = None) -> None:
        self.partner: ActorRef[Ball] | None = None
        self.done = done

    async def receive(self, message: Ball | Partner) -> None:
        match message:
            case Partner(ref):
                self.partner = ref
            case Ball(left):
                if left == 0:
                    if self.done is not None:
                        self.done.set()
                    return
                assert self.partner is not None
                await self.partner.send(Ball(left - 1))


async def test_two_actors_that_talk_across_loops_end_up_on_one_loop() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            a = await system.spawn(lambda: Player())
            b = await system.spawn(lambda: Player())
            assert loop_of(a) != loop_of(b)  # top-level spawns are spread
            await a.send(Partner(b))
            await b.send(Partner(a))
            for _ in range(200):  # rounds of 200 hops until they share a loop
                await a.send(Ball(200))
                await testing.settle(system)
                if loop_of(a) == loop_of(b):
                    break
            assert loop_of(a) == loop_of(b), "partners still on different loops"
            moves = system.metrics().placement.moves
            assert moves >= 1
            for _ in range(20):  # settled: no more moves while they keep talking
                await a.send(Ball(200))
                await testing.settle(system)
            assert loop_of(a) == loop_of(b)
            assert system.metrics().placement.moves == moves


async def test_pinned_actors_never_move() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            a = await system.spawn(lambda: Player(), placement=0)
            b = await system.spawn(lambda: Player(), placement=1)
            await a.send(Partner(b))
            await b.send(Partner(a))
            for _ in range(20):
                await a.send(Ball(200))
                await testing.settle(system)
            assert (loop_of(a), loop_of(b)) == ("0", "1")
            assert system.metrics().placement.moves == 0
            with pytest.raises(ValueError, match="pinned"):
                a._cell.request_move(system.placer.worker(1))  # pyright: ignore[reportPrivateUsage]


# -- moves are invisible ---------------------------------------------------------------------


class Receipts:
    """What every target received, per sender, in order (shared by actors on all loops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: dict[tuple[int, int], list[int]] = {}

    def add(self, target: int, sender: int, seq: int) -> None:
        with self._lock:
            self.seen.setdefault((target, sender), []).append(seq)


actors.register_sendable(Receipts)


class Item(msgspec.Struct, frozen=True):
    sender: int
    seq: int


class Crash(msgspec.Struct, frozen=True):
    pass


class Echo(actors.Request[int], frozen=True):
    value: int


class Tick(msgspec.Struct, frozen=True):
    pass


class Target(Actor[Item | Crash | Echo | Tick]):
    def __init__(self, index: int, receipts: Receipts, ticks: list[int]) -> None:
        self.index = index
        self.receipts = receipts
        self.ticks = ticks

    async def on_start(self) -> None:
        self.send_every(0.005, Tick())

    async def receive(self, message: Item | Crash | Echo | Tick) -> int | None:
        match message:
            case Item(sender, seq):
                self.receipts.add(self.index, sender, seq)
            case Crash():
                raise RuntimeError("crash on purpose")
            case Echo(value):
                return value
            case Tick():
                self.ticks[self.index] += 1
        return None


class Targets(Actor[Echo]):
    """Supervises the targets (restarted after each Crash)."""

    supervision = OneForOne(max_restarts=10_000, within=1.0)

    def __init__(self, count: int, receipts: Receipts, ticks: list[int]) -> None:
        self.count = count
        self.receipts = receipts
        self.ticks = ticks

    async def on_start(self) -> None:
        for index in range(self.count):
            await self.spawn(
                functools.partial(Target, index, self.receipts, self.ticks),
                name=f"t{index}",
                restart=Restart.PERMANENT,
            )

    async def receive(self, message: Echo) -> int:
        return message.value


class Burst(actors.Request[None], frozen=True):
    targets: tuple[ActorRef[Item | Crash | Echo | Tick], ...]
    sender: int
    count: int
    seed: int


class Producer(Actor[Burst]):
    async def receive(self, message: Burst) -> None:
        rng = random.Random(message.seed)
        for seq in range(message.count):
            for target in message.targets:
                await target.send(Item(message.sender, seq))
            if rng.random() < 0.05:
                assert await rng.choice(message.targets).ask(Echo(seq), timeout=WAIT) == seq


BACKENDS = [
    pytest.param("asyncio", {"use_uvloop": False}, id="asyncio"),
    pytest.param("asyncio", {"use_uvloop": True}, id="uvloop"),
    pytest.param("trio", {}, id="trio"),
]


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), crashes=st.integers(0, 6))
def test_random_moves_lose_duplicate_and_reorder_nothing(
    backend: str, options: dict[str, Any], seed: int, crashes: int
) -> None:
    """Producers on worker loops, the host and plain threads send numbered items to three
    targets while the targets and the producers are moved between loops at random, asks are
    in flight and some targets crash and are restarted: every target gets every item of
    every sender exactly once and in order, every ask is answered, timers keep ticking.

    Meanwhile a plain thread plays a watchdog that is always wrong: it evacuates whatever it
    may (`evacuate_to(stuck_only=True)`) at random moments, while the loops run on."""
    per_sender = 2_000
    actor_senders, thread_senders = 3, 2
    host_sender = actor_senders + thread_senders
    receipts = Receipts()
    ticks = [0, 0, 0]
    rng = random.Random(seed)
    forced: list[int] = []
    evacuated = [0]

    async def main() -> None:
        async with ActorSystem(workers=3) as system:
            await system.spawn(functools.partial(Targets, 3, receipts, ticks), name="targets")
            targets: list[ActorRef[Item | Crash | Echo | Tick]] = []
            for index in range(3):
                ref = system.lookup(f"/user/targets/t{index}")
                assert ref is not None
                targets.append(ref)
            producers = [await system.spawn(Producer) for _ in range(actor_senders)]
            movable = [*targets, *producers]
            stop_moving = threading.Event()

            async def mover() -> None:
                while not stop_moving.is_set():
                    victim = rng.choice(movable)
                    victim._cell.request_move(system.placer.worker(rng.randrange(3)))  # pyright: ignore[reportPrivateUsage]
                    await anyio.sleep(0.0002)

            def evacuator() -> None:
                chooser = random.Random(seed)
                while not stop_moving.is_set():
                    cell = chooser.choice(movable)._cell  # pyright: ignore[reportPrivateUsage]
                    target = system.placer.worker(chooser.randrange(3))
                    if cell.evacuate_to(target, stuck_only=True):
                        target.loop.call_soon_threadsafe(cell.posted_start)
                        evacuated[0] += 1
                    time.sleep(0.0001)

            def thread_send(sender: int) -> None:
                for seq in range(per_sender):
                    for target in targets:
                        target.blocking_send(Item(sender, seq))

            async def host_send() -> None:
                for seq in range(per_sender):
                    for target in targets:
                        await target.send(Item(host_sender, seq))
                    if seq % 50 == 0:
                        assert await targets[seq % 3].ask(Echo(seq), timeout=WAIT) == seq

            async def crasher() -> None:
                for _ in range(crashes):
                    await rng.choice(targets).send(Crash())
                    await anyio.sleep(0.002)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(mover)
                    tg.start_soon(anyio.to_thread.run_sync, evacuator)
                    async with anyio.create_task_group() as senders:
                        for i, producer in enumerate(producers):
                            burst = Burst(tuple(targets), i, per_sender, seed + i)
                            senders.start_soon(lambda p=producer, b=burst: p.ask(b, timeout=None))
                        for i in range(actor_senders, actor_senders + thread_senders):
                            senders.start_soon(anyio.to_thread.run_sync, thread_send, i)
                        senders.start_soon(host_send)
                        senders.start_soon(crasher)
                    stop_moving.set()
                for target in targets:  # asked after every item: answered after all of them
                    assert await target.ask(Echo(7), timeout=WAIT) == 7
            forced.append(system.metrics().placement.forced_moves)

    anyio.run(main, backend=backend, backend_options=options)
    senders = host_sender + 1
    for target in range(3):
        for sender in range(senders):
            got = receipts.seen.get((target, sender), [])
            assert got == list(range(per_sender)), (
                f"target {target} from sender {sender}: {len(got)} items, "
                f"{len(set(got))} distinct, in order: {got == sorted(got)}"
            )
    assert forced[0] >= 10, f"only {forced[0]} moves happened: the test tested too little"
    assert evacuated[0] >= 1, "the wrong watchdog never evacuated: the test tested too little"
    assert all(count > 0 for count in ticks), "a timer stopped ticking after a move"


# -- work stealing ---------------------------------------------------------------------------


class Spin(msgspec.Struct, frozen=True):
    """Burn about ``ms`` milliseconds of CPU without awaiting."""

    ms: float


class Spinner(Actor[Spin]):
    async def receive(self, message: Spin) -> None:
        deadline = time.perf_counter() + message.ms / 1000
        while time.perf_counter() < deadline:
            pass


class Pair(actors.Request[tuple[ActorRef[Spin], ActorRef[Spin]]], frozen=True):
    pass


class Nest(Actor[Pair]):
    """Spawns two spinners beside itself (locality: both on its loop)."""

    async def receive(self, message: Pair) -> tuple[ActorRef[Spin], ActorRef[Spin]]:
        return (await self.spawn(Spinner), await self.spawn(Spinner))


async def test_an_idle_loop_steals_an_actor_from_a_loop_with_a_backlog() -> None:
    async with ActorSystem(workers=2, throughput=8, blocked_threshold=None) as system:
        with anyio.fail_after(WAIT):
            nest = await system.spawn(Nest, placement=0)
            first, second = await nest.ask(Pair())
            assert loop_of(first) == loop_of(second) == "0"
            for _ in range(1_000):  # about 0.2 s of CPU each: both have a backlog on loop 0
                await first.send(Spin(0.2))
                await second.send(Spin(0.2))
            await wait_until(lambda: loop_of(first) != loop_of(second))
            assert system.metrics().placement.steals >= 1
            await testing.settle(system)


async def test_a_lone_busy_actor_is_not_stolen() -> None:
    # Its fairness turns are short (nobody else on its loop has work): no backlog to share.
    async with ActorSystem(workers=2, throughput=8, blocked_threshold=None) as system:
        with anyio.fail_after(WAIT):
            nest = await system.spawn(Nest, placement=0)
            first, _idle = await nest.ask(Pair())
            for _ in range(300):
                await first.send(Spin(0.2))
            await testing.settle(system)
            assert loop_of(first) == "0"
            assert system.metrics().placement.steals == 0


def test_each_pull_back_of_a_stolen_actor_doubles_the_pause_between_steals() -> None:
    from types import SimpleNamespace

    from actors._placement import STEAL_BACKOFF_MAX, Placer, Traffic

    placer = Placer([], dict)
    old, new = object(), object()
    cell: Any = SimpleNamespace(traffic=Traffic(0.0))
    gaps: list[float] = []
    for _ in range(12):
        cell.traffic.steal = True
        placer.moved(cell, old, new, forced=True)  # stolen
        placer.moved(cell, new, old, forced=False)  # pulled straight back by its traffic
        gaps.append(placer._steal_gap)  # pyright: ignore[reportPrivateUsage]
    assert gaps[0] > 0
    assert gaps[1] == 2 * gaps[0]
    assert gaps[-1] == STEAL_BACKOFF_MAX
    assert placer.statistics().steals == 12
    assert placer.statistics().moves == 12


# -- evacuation from a blocked loop ----------------------------------------------------------


class Block(msgspec.Struct, frozen=True):
    """Hold the loop for ``ms`` milliseconds, after setting ``entered``."""

    ms: float
    entered: Flag


class Hog(Actor[Spin | Block]):
    """Blocks its loop: a handler that sleeps without awaiting (the footgun, on purpose)."""

    async def receive(self, message: Spin | Block) -> None:
        if isinstance(message, Block):
            message.entered.set()
        time.sleep(message.ms / 1000)  # noqa: ASYNC251


class Ping(actors.Request[str], frozen=True):
    pass


class Responder(Actor[Ping]):
    async def receive(self, message: Ping) -> str:
        return loop_of(self.ref)


class Beside(actors.Request[ActorRef[Ping]], frozen=True):
    pass


class Host(Actor[Beside]):
    async def receive(self, message: Beside) -> ActorRef[Ping]:
        return await self.spawn(Responder)  # unpinned, on this loop (locality)


async def test_an_idle_actor_beside_a_blocked_loop_is_answered_from_another_loop() -> None:
    async with ActorSystem(workers=2, blocked_threshold=0.05) as system:
        with anyio.fail_after(WAIT):
            hog = await system.spawn(Hog, placement=0)
            host = await system.spawn(Host, placement=0)
            responder = await host.ask(Beside())
            assert await responder.ask(Ping()) == "0"  # now parked on loop 0
            await hog.send(Spin(3_000))  # holds loop 0 for 3 s
            blocked = system.placer.worker(0)
            await wait_until(lambda: blocked.blocked)  # the watchdog has seen it
            # Without evacuation this ask would wait for the hog (3 s) and time out.
            assert await responder.ask(Ping(), timeout=0.5) == "1"
            assert system.metrics().placement.evacuations >= 1
            await testing.settle(system)
            assert await responder.ask(Ping()) == "1"  # it lives there now


class Note(msgspec.Struct, frozen=True):
    """A tell that the responder counts."""


class Counted(Actor[Ping | Note]):
    """Answers a `Ping` with its loop; counts every message it handles."""

    def __init__(self, handled: list[str]) -> None:
        self.handled = handled

    async def receive(self, message: Ping | Note) -> str:
        self.handled.append(type(message).__name__)
        return loop_of(self.ref)


class Stall(msgspec.Struct, frozen=True):
    """Hold the loop for ``ms`` ms; first, if ``wake`` is given, have a plain thread send it
    a `Note` and let the loop turn once, so that its run is started from another thread
    and its next step waits behind this one."""

    ms: float
    entered: Flag
    wake: ActorRef[Note] | None = None


class Kick(msgspec.Struct, frozen=True):
    """Make ``hog`` stall its loop right after this message (see `Kicker`)."""

    hog: ActorRef[Stall]
    entered: Flag


class Staller(Actor[Stall]):
    async def receive(self, message: Stall) -> None:
        if message.wake is not None:
            wake = message.wake
            sender = threading.Thread(target=lambda: wake.blocking_send(Note()))
            sender.start()
            sender.join()  # the wake-up is posted to this loop, behind this step
            await anyio.lowlevel.checkpoint()  # it runs; the woken actor's step is queued
        message.entered.set()
        time.sleep(message.ms / 1000)  # noqa: ASYNC251  # on purpose: the loop is held


class Kicker(Actor[Ping | Note | Kick]):
    """With throughput=1: after a `Kick` it yields for fairness, behind the hog's step."""

    async def receive(self, message: Ping | Note | Kick) -> str:
        if isinstance(message, Kick):
            message.hog.try_send(Stall(300, message.entered))
        return loop_of(self.ref)


@pytest.mark.parametrize("state", ["parked", "first-run", "fairness-turn"])
async def test_an_actor_whose_next_step_waits_behind_a_blocked_loop_is_evacuated(
    state: str,
) -> None:
    """The run of the actor is under way when the loop blocks (a parked task woken from
    another thread, a first run started from another thread, a fairness turn): its next step
    is queued behind the handler. It moves anyway, answers from another loop while the
    handler still blocks, and its stale step ends without handling anything twice."""
    handled: list[str] = []
    throughput = 1 if state == "fairness-turn" else actors.DEFAULT_THROUGHPUT
    async with ActorSystem(workers=2, blocked_threshold=None, throughput=throughput) as system:
        with anyio.fail_after(WAIT):
            hog = await system.spawn(Staller, placement=0)
            marker = await system.spawn(Responder, placement=0)
            entered = Flag()
            if state == "fairness-turn":
                kicker = await system.spawn(Kicker, placement=None)
                target: ActorRef[Any] = kicker
                await _put_on_loop_0(system, kicker)
                await kicker.send(Kick(hog, entered))
            else:
                counted = await system.spawn(functools.partial(Counted, handled))
                target = counted
                await _put_on_loop_0(system, counted)
                cell = counted._cell  # pyright: ignore[reportPrivateUsage]
                if state == "parked":
                    assert await counted.ask(Ping()) == "0"  # handled once, now parked
                else:
                    await wait_until(lambda: cell.task is None)  # its parked task retired
                await hog.send(Stall(300, entered, wake=counted))
            await entered.wait()
            cell = target._cell  # pyright: ignore[reportPrivateUsage]
            assert cell.resting, "the actor's run is not waiting where the test expects"
            loop0 = system.placer.worker(0)
            loop0.blocked = True  # the watchdog's part, played at a known moment
            system.placer.evacuate_blocked(loop0)
            # The hog holds loop 0 for 300 ms more: an answer in time comes from loop 1.
            assert await target.ask(Ping(), timeout=0.2) == "1"
            assert system.metrics().placement.evacuations == 1
            assert await marker.ask(Ping()) == "0"  # loop 0 has turned: the stale step ran
            loop0.blocked = False
            assert await target.ask(Ping()) == "1"
    if state != "fairness-turn":
        # The Ping that put it on loop 0, then the one asked while parked.
        first = ["Ping", "Ping"] if state == "parked" else ["Ping"]
        assert handled == [*first, "Note", "Ping", "Ping"]


async def _put_on_loop_0(system: ActorSystem, ref: ActorRef[Any]) -> None:
    ref._cell.request_move(system.placer.worker(0))  # pyright: ignore[reportPrivateUsage]
    ref.try_send(Ping())  # the move happens at a message boundary
    await wait_until(lambda: loop_of(ref) == "0")
    await testing.settle(system)


async def test_the_watchdog_moves_waiting_actors_long_before_it_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 0.3 s block, under a warning threshold of 1 s: the actors waiting behind it are moved
    after `EVACUATE_AFTER` (10 ms), and no warning is logged."""
    caplog.set_level(logging.WARNING, logger="actors")
    handled: list[str] = []
    async with ActorSystem(workers=2, blocked_threshold=1.0) as system:
        with anyio.fail_after(WAIT):
            hog = await system.spawn(Staller, placement=0)
            counted = await system.spawn(functools.partial(Counted, handled))
            await _put_on_loop_0(system, counted)
            assert await counted.ask(Ping()) == "0"
            entered = Flag()
            await hog.send(Stall(300, entered))
            await entered.wait()
            began = time.monotonic()
            assert await counted.ask(Ping(), timeout=0.25) == "1"
            waited = time.monotonic() - began
            assert system.metrics().placement.evacuations >= 1
    assert "blocked" not in caplog.text
    assert waited < 0.25


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
def test_evacuations_off_a_repeatedly_blocked_loop_keep_order_and_timers(
    backend: str, options: dict[str, Any]
) -> None:
    """Loop 0 is blocked three times for 0.3 s while the host and a plain thread send
    numbered items (and asks) to a target with a timer that starts on loop 0 and is often
    idle: it is evacuated, nothing is lost, duplicated or reordered, and its timer goes on."""
    items = 400
    receipts = Receipts()
    ticks = [0]
    evacuations: list[int] = []

    async def main() -> None:
        # The watchdog's part (it marks the loop blocked and evacuates what is stuck behind
        # the handler) is played by the test, at a known moment: a watchdog starved by a
        # loaded machine waits for a quieter round, and this test is about what follows.
        async with ActorSystem(workers=3, blocked_threshold=None) as system:
            hog = await system.spawn(Hog, placement=0)
            await system.spawn(functools.partial(Targets, 1, receipts, ticks), placement=0)
            target = system.lookup(next(c.path for c in system.cells() if c.name == "t0"))
            assert target is not None
            assert loop_of(target) == "0"

            def thread_send() -> None:
                for seq in range(items):
                    target.blocking_send(Item(1, seq))
                    time.sleep(0.002)

            async def host_send() -> None:
                for seq in range(items):
                    await target.send(Item(0, seq))
                    if seq % 40 == 0:
                        assert await target.ask(Echo(seq), timeout=WAIT) == seq
                    await anyio.sleep(0.002)

            async def block() -> None:
                loop0 = system.placer.worker(0)
                for _ in range(3):
                    entered = Flag()
                    await hog.send(Block(300, entered))
                    await entered.wait()
                    loop0.blocked = True
                    system.placer.evacuate_blocked(loop0)
                    await anyio.sleep(0.35)
                    loop0.blocked = False
                    # Back home for the next round: forced, at its next message boundary.
                    target._cell.request_move(loop0)  # pyright: ignore[reportPrivateUsage]

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.to_thread.run_sync, thread_send)
                    tg.start_soon(host_send)
                    tg.start_soon(block)
                assert await target.ask(Echo(1), timeout=WAIT) == 1
            evacuations.append(system.metrics().placement.evacuations)

    anyio.run(main, backend=backend, backend_options=options)
    for sender in (0, 1):
        assert receipts.seen[(0, sender)] == list(range(items))
    assert evacuations[0] >= 1, "the target was never evacuated: the test tested nothing"
    assert ticks[0] > 0


# -- watches, inspection and supervision across a move ---------------------------------------


class Watcher(Actor[ActorRef[Any] | Spawned]):
    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    async def receive(self, message: ActorRef[Any] | Spawned) -> tuple[str, str]:
        if isinstance(message, ActorRef):
            self.watch(message)
        return ("", "")

    async def on_terminated(self, event: actors.Terminated) -> None:
        self.seen.append(event.ref.path)


async def test_watch_inspect_and_restart_hold_across_a_move() -> None:
    seen: list[str] = []
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            watcher = await system.spawn(lambda: Watcher(seen), placement=1)
            receipts = Receipts()
            target = await system.spawn(functools.partial(Target, 0, receipts, [0]), placement=None)
            start = loop_of(target)
            await watcher.send(target)
            other = system.placer.worker(1 - int(start))
            target._cell.request_move(other)  # pyright: ignore[reportPrivateUsage]
            await target.send(Item(0, 0))  # a message boundary: the move happens there
            await wait_until(lambda: loop_of(target) == other.label)
            assert await testing.inspect(target, lambda actor: actor.index) == 0
            await target.send(Crash())  # restarted on its new loop
            assert await target.ask(Echo(5)) == 5
            assert loop_of(target) == other.label
            assert target.statistics().restarts == 1
            await target.stop()
            await wait_until(lambda: seen == [target.path])
