"""Supervision under stress: dead-letter accounting, a chaos storm, FIFO across restarts.

Sized for a few seconds each on a 2-core machine. ``ACTORS_STRESS_SCALE`` multiplies every
volume and the time limits, as in ``test_stress.py`` (whose seed and helpers are reused);
each test prints its figures (run pytest with ``-s`` to see them).

Catalogue IDs (RELIABILITY.md): C6 every send ends exactly one way while its target stops,
fails or is killed (here with dead letters as the third way); C7 supervision storm; F1 per
sender FIFO across a restart, the failing message never redelivered; L6 spawn, crash,
restart and stop churn, leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import logging
import random
import threading
import tracemalloc
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Flag, Hold, park, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stress import SCALE, SEED, figures, scaled

import actors
from actors import Actor, ActorRef, ActorSystem, DeadLetter, Restart

pytestmark = pytest.mark.timeout(60 * max(1.0, SCALE))

LIMIT = 30 * max(1.0, SCALE)
"""Seconds a whole load phase may take before it counts as a hang."""


class Boom(Exception):
    """The failure the tests inject into handlers."""


class Ledger:
    """A thread-safe record of (key, item) pairs: handlers on every loop write to it.

    It lives outside the actors on purpose: a restart replaces the instance, and with it
    any state kept in ``self``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: dict[str, list[Any]] = {}

    def add(self, key: str, item: Any) -> None:
        with self._lock:
            self.items.setdefault(key, []).append(item)

    def count(self, key: str) -> int:
        with self._lock:
            return len(self.items.get(key, ()))

    def of(self, key: str) -> list[Any]:
        with self._lock:
            return list(self.items.get(key, ()))

    def everything(self) -> list[Any]:
        with self._lock:
            return [item for items in self.items.values() for item in items]


class Letters(actors.Request[tuple[tuple[str, str, Any], ...]], frozen=True):
    """Ask a `DeadLetterLog` for every dead letter it got, in arrival order."""


class DeadLetterLog(Actor[DeadLetter | Letters]):
    """Subscribed to the dead letters: remembers (recipient, reason, message) of each."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, str, Any]] = []

    async def receive(self, message: DeadLetter | Letters) -> Any:
        match message:
            case DeadLetter(recipient, letter, reason):
                self.letters.append((recipient, reason, letter))
            case Letters():
                return tuple(self.letters)
        return None


# -- C6 with dead letters: senders on every kind of loop, targets that end every way ----------


class Note(msgspec.Struct, frozen=True):
    """Told or asked; ``(sender, seq)`` names it. The reply to an ask of it is None."""

    sender: int
    seq: int


MODES = ("stop", "self-stop", "fail", "kill", "restart")


class Target(Actor[Note]):
    """Records every Note it starts handling; after ``threshold`` it ends its way (``mode``).

    ``stop``: the test stops it (`ActorRef.stop`, drains). ``self-stop``: it calls
    `Actor.stop` (drains; temporary, so not restarted). ``fail``: the handler raises with
    messages queued (temporary: not restarted, the queue becomes dead letters). ``kill``:
    the handler parks until its owner is stopped and the drain timeout cancels it.
    ``restart``: permanent; every instance fails on its ``every``-th message; the test
    stops it after ``threshold`` messages.
    """

    def __init__(
        self, mode: str, threshold: int, every: int, entered: Ledger, reached: Flag
    ) -> None:
        self.mode = mode
        self.threshold = threshold
        self.every = every
        self.entered = entered
        self.reached = reached
        self.count = 0  # this instance's

    async def receive(self, message: Note) -> None:
        path = self.ref.path
        self.entered.add(path, (message.sender, message.seq))
        self.count += 1
        if self.count % 7 == 0:
            await asyncio.sleep(0)  # let senders fill the mailbox now and then
        if self.mode == "restart":
            if self.entered.count(path) >= self.threshold:
                self.reached.set()
            if self.count == self.every:
                raise Boom(f"{path} fails on its {self.every}th message and restarts")
            return
        if self.count != self.threshold:
            return
        self.reached.set()
        match self.mode:
            case "self-stop":
                self.stop()
            case "fail":
                raise Boom(f"{path} fails with messages queued")
            case "kill":
                await Flag().wait()  # never set: only the kill ends this handler
            case _:
                pass


class Nothing(msgspec.Struct, frozen=True):
    """A message nobody sends: for actors that only supervise."""


class Owner(Actor[Nothing]):
    """Parent of one `Target`; stopping it kills a target parked in its handler."""

    supervision = actors.OneForOne(max_restarts=10_000, within=1.0)

    def __init__(self, make_target: Any, restart: Restart, capacity: int, placement: Any) -> None:
        self.make_target = make_target
        self.restart = restart
        self.capacity = capacity
        self.placement = placement

    async def on_start(self) -> None:
        await self.spawn(
            self.make_target,
            name="target",
            restart=self.restart,
            capacity=self.capacity,
            placement=self.placement,
        )


# How a send ended, as seen by its sender.
ACCEPTED = "accepted"  # a tell was enqueued
REFUSED = "refused"  # a tell raised ActorStopped or MailboxFull: not enqueued
REPLIED = "replied"  # an ask got its reply
BOOM = "boom"  # an ask got its handler's error
ASK_STOPPED = "ask-stopped"  # an ask raised ActorStopped: refused, or queued when it ended
ASK_TIMEOUT = "ask-timeout"

Record = tuple[str, int, int]  # (how it ended, target index, seq)


class Tally(msgspec.Struct, frozen=True):
    """One sender's records: how each of its sends ended."""

    sender: int
    records: tuple[Record, ...]


class Barrage(actors.Request[Tally], frozen=True):
    """Ask a `NoteSender` to send Notes to ``targets`` until each has refused one as stopped."""

    targets: tuple[ActorRef[Note], ...]
    sender: int
    seed: int


async def barrage(
    targets: tuple[ActorRef[Note], ...], sender: int, seed: int, asks: float
) -> Tally:
    """Send Notes to random targets (ask a fraction ``asks`` of them, tell the rest with
    `send` or `try_send`) until every target has said it is stopped."""
    rng = random.Random(seed)
    records: list[Record] = []
    open_targets = list(range(len(targets)))
    for seq in itertools.count():
        if not open_targets:
            break
        index = rng.choice(open_targets)
        target, note, draw = targets[index], Note(sender, seq), rng.random()
        if draw < asks:
            try:
                await target.ask(note, timeout=WAIT)
            except Boom:
                records.append((BOOM, index, seq))
            except actors.ActorStopped:
                records.append((ASK_STOPPED, index, seq))
                open_targets.remove(index)
            except actors.AskTimeout:
                records.append((ASK_TIMEOUT, index, seq))
            else:
                records.append((REPLIED, index, seq))
            continue
        try:
            if draw < asks + 0.25:
                target.try_send(note)
            else:
                await target.send(note)
        except actors.MailboxFull:
            records.append((REFUSED, index, seq))
            await anyio.lowlevel.checkpoint()  # a MailboxFull does not yield; we must
        except actors.ActorStopped:
            records.append((REFUSED, index, seq))
            open_targets.remove(index)
        else:
            records.append((ACCEPTED, index, seq))
    return Tally(sender, tuple(records))


def thread_barrage(
    targets: tuple[ActorRef[Note], ...], sender: int, seed: int, asks: float
) -> Tally:
    """`barrage` from a plain thread: `blocking_send` and `blocking_ask` (which block it)."""
    rng = random.Random(seed)
    records: list[Record] = []
    open_targets = list(range(len(targets)))
    for seq in itertools.count():
        if not open_targets:
            break
        index = rng.choice(open_targets)
        target, note = targets[index], Note(sender, seq)
        if rng.random() < asks:
            try:
                target.blocking_ask(note, timeout=WAIT)
            except Boom:
                records.append((BOOM, index, seq))
            except actors.ActorStopped:
                records.append((ASK_STOPPED, index, seq))
                open_targets.remove(index)
            except actors.AskTimeout:
                records.append((ASK_TIMEOUT, index, seq))
            else:
                records.append((REPLIED, index, seq))
            continue
        try:
            target.blocking_send(note)
        except actors.ActorStopped:
            records.append((REFUSED, index, seq))
            open_targets.remove(index)
        else:
            records.append((ACCEPTED, index, seq))
    return Tally(sender, tuple(records))


class NoteSender(Actor[Barrage]):
    async def receive(self, message: Barrage) -> Tally:
        return await barrage(message.targets, message.sender, message.seed, asks=0.05)


@pytest.mark.anyio
async def test_C6_every_send_is_processed_dead_lettered_or_refused(anyio_backend: Any) -> None:
    """Senders on both worker loops, on the host (tasks and, on asyncio, an actor) and on
    plain threads tell and ask targets that stop, stop themselves, fail, are killed, or
    keep failing and restarting, while the sends go on. Every message ends exactly one way:

    * its handler was entered (the failing and the parked message count here),
    * it became a dead letter (a tell queued when its target failed or was killed): seen by
      a subscribed actor, and counted in ``system.dead_letters.count``,
    * or the sender got an error instead: `ActorStopped` (or `MailboxFull` from ``try_send``)
      for a tell; for an ask, `ActorStopped` (refused, or queued when its target ended).

    Also: nothing handled twice, each sender's messages handled in the order sent (across
    restarts too), only the failing and the killed targets have dead letters.
    """
    rounds = scaled(16)
    per_round = 2 * len(MODES)  # targets per round; the modes take turns
    rng = random.Random(SEED)
    entered = Ledger()  # target path -> (sender, seq) of every Note whose handler began
    modes: dict[str, str] = {}
    sent: dict[str, list[tuple[str, tuple[int, int]]]] = {}  # path -> (ending, id) per send
    parked: set[tuple[str, tuple[int, int]]] = set()  # (path, id) of each kill's last Note
    with anyio.fail_after(LIMIT):
        async with ActorSystem(workers=2, drain_timeout=0.05) as system:
            log = await system.spawn(DeadLetterLog, name="dead-letters", capacity=1_000_000)
            system.dead_letters.subscribe(log)
            placements: list[Any] = [0, 1]
            if anyio_backend != "trio":
                placements.append("host")  # an asyncio host loop runs actors too
            actor_senders = [await system.spawn(NoteSender, placement=p) for p in placements]
            for round_index in range(rounds):
                owners: list[ActorRef[Nothing]] = []
                targets: list[ActorRef[Note]] = []
                reached: list[Flag] = []
                for index in range(per_round):
                    mode = MODES[(round_index + index) % len(MODES)]
                    flag = Flag()
                    threshold, every = rng.randint(20, 200), rng.randint(3, 30)
                    make = functools.partial(Target, mode, threshold, every, entered, flag)
                    restart = Restart.PERMANENT if mode == "restart" else Restart.TEMPORARY
                    capacity, placement = rng.randint(1, 16), placements[index % len(placements)]
                    owner = await system.spawn(
                        functools.partial(Owner, make, restart, capacity, placement),
                        name=f"owner-{round_index}-{index}",
                    )
                    target = system.lookup(f"{owner.path}/target")
                    assert target is not None
                    owners.append(owner)
                    targets.append(target)
                    reached.append(flag)
                    modes[target.path] = mode

                tallies: list[Tally] = []

                async def collect(call: Any, *args: Any) -> None:
                    tallies.append(await call(*args))  # noqa: B023  # awaited in this round

                async def end(index: int) -> None:
                    await reached[index].wait()  # noqa: B023
                    target = targets[index]  # noqa: B023
                    if modes[target.path] in ("stop", "restart"):
                        await target.stop()
                    elif modes[target.path] == "kill":
                        await owners[index].stop()  # noqa: B023  # drain timeout, then killed
                    await target.join()

                seed = SEED + 1000 * round_index
                group = tuple(targets)
                async with anyio.create_task_group() as tg:
                    for index in range(per_round):
                        tg.start_soon(end, index)
                    for sender, ref in enumerate(actor_senders):
                        tg.start_soon(
                            collect,
                            functools.partial(ref.ask, timeout=None),
                            Barrage(group, sender, seed + sender),
                        )
                    host = len(actor_senders)
                    tg.start_soon(collect, barrage, group, host, seed + host, 0.0)
                    tg.start_soon(collect, barrage, group, host + 1, seed + host + 1, 1.0)
                    for sender, asks in ((host + 2, 0.0), (host + 3, 0.3)):
                        call = functools.partial(thread_barrage, group, sender, seed + sender, asks)
                        tg.start_soon(collect, anyio.to_thread.run_sync, call)
                for owner in owners:
                    await owner.stop()
                for tally in tallies:
                    for ending, index, seq in tally.records:
                        sent.setdefault(targets[index].path, []).append(
                            (ending, (tally.sender, seq))
                        )
                for target in targets:
                    if modes[target.path] == "kill":
                        parked.add((target.path, entered.of(target.path)[-1]))
            letters = await log.ask(Letters(), timeout=WAIT)
            dead_count = system.dead_letters.count
            dropped = system.dead_letters.dropped
            failures = system.failures

    dead: dict[str, list[tuple[int, int]]] = {}
    reasons: dict[str, Counter[str]] = {}
    for recipient, reason, note in letters:
        assert isinstance(note, Note)
        dead.setdefault(recipient, []).append((note.sender, note.seq))
        reasons.setdefault(recipient, Counter())[reason] += 1
    assert dropped == 0, "the dead-letter log was full: the test cannot account for everything"
    assert dead_count == len(letters), "dead_letters.count differs from what subscribers got"
    assert not failures, "a target's failure reached the root: it was not under its owner"
    assert set(dead) <= set(modes), f"dead letters for unexpected actors: {set(dead) - set(modes)}"

    totals = Counter[str]()
    for path, mode in modes.items():
        handled, letters_here = entered.of(path), dead.get(path, [])
        handled_ids, dead_ids = set(handled), set(letters_here)
        assert len(handled_ids) == len(handled), f"{path} ({mode}): a message handled twice"
        assert len(dead_ids) == len(letters_here), f"{path} ({mode}): a dead letter twice"
        assert not handled_ids & dead_ids, f"{path} ({mode}): handled and dead-lettered"
        by_ending: dict[str, set[tuple[int, int]]] = {}
        for ending, id in sent.get(path, []):
            by_ending.setdefault(ending, set()).add(id)
        told, refused = by_ending.get(ACCEPTED, set()), by_ending.get(REFUSED, set())
        replied, boomed = by_ending.get(REPLIED, set()), by_ending.get(BOOM, set())
        ask_stopped = by_ending.get(ASK_STOPPED, set())
        assert not by_ending.get(ASK_TIMEOUT), f"{path} ({mode}): asks timed out (a hang?)"
        # Tells: exactly the accepted ones were handled or dead-lettered.
        assert handled_ids - replied - boomed - ask_stopped | dead_ids == told, (
            f"{path} ({mode}): accepted tells lost: {sorted(told - handled_ids - dead_ids)[:5]}, "
            f"or not sent: {sorted((handled_ids | dead_ids) - told - replied - boomed)[:5]}"
        )
        # Asks: answered ones were handled; the refused ones were not, but for the parked one.
        assert replied | boomed <= handled_ids
        assert not (replied | boomed | ask_stopped) & dead_ids, f"{path}: an ask dead-lettered"
        assert {(path, id) for id in ask_stopped & handled_ids} <= parked
        assert not refused & (handled_ids | dead_ids)
        # The count the contract promises: processed + dead-lettered + refused == sent.
        processed = len(handled_ids)
        failed_to_send = len(refused) + len(ask_stopped - handled_ids)
        assert processed + len(dead_ids) + failed_to_send == len(sent.get(path, [])), path
        # Per-sender FIFO, across restarts too.
        last: dict[int, int] = {}
        for sender, seq in handled:
            assert seq > last.get(sender, -1), f"{path} ({mode}): sender {sender} reordered"
            last[sender] = seq
        if mode in ("fail", "kill"):
            assert set(reasons.get(path, ())) <= {"failed" if mode == "fail" else "killed"}
        elif mode == "restart":
            # A final stop drains, also between a failure and its restart (F9 below), but the
            # draining instance may fail again: the rest of its queue is then dead-lettered.
            assert set(reasons.get(path, ())) <= {"failed"}
        else:
            assert not letters_here, f"{path} ({mode}) drained, yet has dead letters"
        totals[f"{mode}:processed"] += processed
        totals[f"{mode}:dead"] += len(dead_ids)
        totals[f"{mode}:refused"] += failed_to_send
        totals["asks"] += len(replied | boomed | ask_stopped)
    assert totals["fail:dead"] > 0, f"no failure left dead letters: {totals}"
    assert totals["kill:dead"] > 0, f"no kill left dead letters: {totals}"
    figures(
        "C6-dead-letters",
        backend=anyio_backend,
        targets=len(modes),
        sent=sum(map(len, sent.values())),
        dead_letters=dead_count,
        **{key.replace(":", "_").replace("-", "_"): value for key, value in sorted(totals.items())},
    )


# -- C7: a supervision storm over a tree of ~100 actors ---------------------------------------


class Work(actors.Request[int], frozen=True):
    """Told or asked; the handler raises `Boom` when ``fail``, else the reply is ``id``."""

    id: int
    fail: bool = False


class Ping(actors.Request[str], frozen=True):
    """Ask an actor for its path: it is alive and answering."""


class Kids(actors.Request[tuple[str, ...]], frozen=True):
    """Ask an actor for the paths of its children, in start order."""


class Spec(msgspec.Struct, frozen=True):
    """The shape of one node of the tree: its strategy and its children."""

    name: str
    strategy: actors.SupervisionStrategy | None = None
    children: tuple[Spec, ...] = ()


class Node(Actor[Work | Ping | Kids]):
    """A member of the tree: spawns its children in ``on_start``, handles Work, may fail."""

    def __init__(self, spec: Spec, entered: Ledger) -> None:
        self.spec = spec
        self.entered = entered
        if spec.strategy is not None:
            self.supervision = spec.strategy

    async def on_start(self) -> None:
        for child in self.spec.children:
            await self.spawn(
                functools.partial(Node, child, self.entered),
                name=child.name,
                restart=Restart.PERMANENT,
            )

    async def receive(self, message: Work | Ping | Kids) -> Any:
        match message:
            case Work(id, fail):
                self.entered.add("work", id)
                if id % 5 == 0:
                    await asyncio.sleep(0)
                if fail:
                    raise Boom(f"work {id} fails on purpose")
                return id
            case Ping():
                return self.ref.path
            case Kids():
                return tuple(child.path for child in self.children)
        return None


def storm_tree(supervisors: int, middles: int, leaves: int) -> tuple[Spec, ...]:
    """``supervisors`` top-level nodes, each over ``middles`` nodes over ``leaves`` leaves;
    the three strategies take turns at every level, all with a generous intensity, every
    other one with a short backoff."""
    kinds = (actors.OneForOne, actors.OneForAll, actors.RestForOne)
    backoff = actors.Backoff(initial=0.0005, maximum=0.005, jitter=0.5)

    def strategy(index: int) -> actors.SupervisionStrategy:
        # Every other supervisor spaces its restarts out: its children wait suspended.
        return kinds[index % len(kinds)](
            max_restarts=10_000, within=1.0, backoff=backoff if index % 2 else None
        )

    return tuple(
        Spec(
            f"sup-{top}",
            strategy(top),
            tuple(
                Spec(
                    f"mid-{middle}",
                    strategy(top + middle + 1),
                    tuple(Spec(f"leaf-{leaf}") for leaf in range(leaves)),
                )
                for middle in range(middles)
            ),
        )
        for top in range(supervisors)
    )


def paths_of(specs: tuple[Spec, ...], prefix: str = "/user") -> dict[str, tuple[str, ...]]:
    """Every path of the tree -> the paths of its children, in start order."""
    shape: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        path = f"{prefix}/{spec.name}"
        shape[path] = tuple(f"{path}/{child.name}" for child in spec.children)
        shape.update(paths_of(spec.children, path))
    return shape


class Resolver:
    """Refs by path, refreshed through `ActorSystem.lookup` when a ref turns out stopped
    (its parent failed and spawned a new actor at the same path)."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self.refs: dict[str, ActorRef[Any]] = {}

    def get(self, path: str) -> ActorRef[Any] | None:
        ref = self.refs.get(path)
        if ref is None or not ref.is_alive:
            ref = self.system.lookup(path)
            if ref is None:
                return None
            self.refs[path] = ref
        return ref


class Storm(actors.Request[tuple[tuple[int, ...], tuple[int, ...], int]], frozen=True):
    """Ask a `StormTeller` to tell ``works`` to ``paths``, one each, then flush them.

    Reply: (ids accepted, ids refused as stopped, unroutable retries).
    """

    paths: tuple[str, ...]
    works: tuple[Work, ...]


class StormTeller(Actor[Storm]):
    """Tells from a worker loop. After the tells, an ask to every path it told (answered after
    those tells: per-sender FIFO, which a restart keeps) proves they have all been handled
    or dead-lettered by the time it replies."""

    async def receive(self, message: Storm) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        resolver = Resolver(self.system)
        accepted: list[int] = []
        refused: list[int] = []
        misses = 0
        for path, work in zip(message.paths, message.works, strict=True):
            while (ref := resolver.get(path)) is None:
                misses += 1  # its parent is restarting it right now
                await asyncio.sleep(0.001)
            try:
                await ref.send(work)
            except actors.ActorStopped:
                refused.append(work.id)
            else:
                accepted.append(work.id)
        for path in sorted(set(message.paths)):
            while True:
                ref = resolver.get(path)
                if ref is None:
                    misses += 1
                    await asyncio.sleep(0.001)
                    continue
                try:
                    await ref.ask(Ping(), timeout=WAIT)
                except actors.ActorStopped:
                    # Its parent is replacing it: wait until the old one has ended (its tells
                    # handled or dead-lettered), then ask the new one. The refusal does not
                    # yield to the loop: retrying at once could spin forever here.
                    await ref.join()
                    continue
                break
        return tuple(accepted), tuple(refused), misses


@pytest.mark.anyio
async def test_C7_supervision_storm_accounts_for_everything_and_rebuilds_the_tree(
    anyio_backend: Any,
) -> None:
    """~100 actors (3 supervisors x 3 middles x 10 leaves; the three strategies at every
    level, ``max_restarts=10_000`` within 1 s, children permanent) over both worker loops.

    Host tasks ask and actors on both loops tell `Work` to random members; 1% of the
    messages (seeded) make their handler raise, supervisors' included, so whole subtrees
    restart: 100 000 messages at the default scale, half asked, half told. Every ask ends
    with its reply, its handler's `Boom`, or `ActorStopped` (a ref of an actor its failing
    parent replaced, or an ask queued in one); every accepted tell is handled or
    dead-lettered; no message is handled twice. Afterwards the tree has its shape back: the
    same paths, every actor answering, each with its initial children; nothing reached the
    root.
    """
    total = scaled(100_000)
    asks, tellers = total // 2, 4
    askers = 8
    specs = storm_tree(supervisors=3, middles=3, leaves=10)
    shape = paths_of(specs)
    paths = tuple(sorted(shape))
    rng = random.Random(SEED)
    works = [Work(id, rng.random() < 0.01) for id in range(total)]
    targets = [rng.choice(paths) for _ in range(total)]
    entered = Ledger()
    answered: dict[str, list[int]] = {"reply": [], "boom": [], "stopped": [], "timeout": []}
    storm = {"misses": 0}
    generous = actors.OneForOne(max_restarts=10_000, within=1.0)
    with anyio.fail_after(LIMIT):
        async with ActorSystem(workers=2, supervision=generous) as system:
            log = await system.spawn(DeadLetterLog, name="dead-letters", capacity=1_000_000)
            system.dead_letters.subscribe(log)
            for spec in specs:
                await system.spawn(functools.partial(Node, spec, entered), name=spec.name)
            assert len(shape) >= 100
            teller_refs = [
                await system.spawn(StormTeller, name=f"teller-{i}", placement=i % 2)
                for i in range(tellers)
            ]
            tell_results: list[tuple[tuple[int, ...], tuple[int, ...], int]] = []

            async def asker(index: int) -> None:
                resolver = Resolver(system)
                for id in range(index, asks, askers):
                    path, work = targets[id], works[id]
                    while (ref := resolver.get(path)) is None:
                        storm["misses"] += 1
                        await wait_until(lambda path=path: system.lookup(path) is not None)
                    try:
                        reply = await ref.ask(work, timeout=WAIT)
                    except Boom:
                        answered["boom"].append(id)
                    except actors.ActorStopped:
                        answered["stopped"].append(id)
                    except actors.AskTimeout:
                        answered["timeout"].append(id)
                    else:
                        assert reply == id
                        answered["reply"].append(id)

            async def teller(ref: ActorRef[Storm], ids: range) -> None:
                request = Storm(tuple(targets[i] for i in ids), tuple(works[i] for i in ids))
                tell_results.append(await ref.ask(request, timeout=None))

            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for index in range(askers):
                    tg.start_soon(asker, index)
                for index, ref in enumerate(teller_refs):
                    tg.start_soon(teller, ref, range(asks + index, total, tellers))
            elapsed = anyio.current_time() - started

            # The tree has its shape back: same paths, all answering, the same children.
            restarts = 0
            for path, children in shape.items():
                ref = system.lookup(path)
                assert ref is not None, f"{path} is gone"
                assert ref.is_alive, f"{path} is stopped"
                assert await ref.ask(Ping(), timeout=WAIT) == path
                assert await ref.ask(Kids(), timeout=WAIT) == children, f"{path}: children"
                restarts += ref.statistics().restarts  # of the current actor at that path
            letters = await log.ask(Letters(), timeout=WAIT)
            failures = system.failures
            dead_count = system.dead_letters.count
            dropped = system.dead_letters.dropped

    handled = entered.everything()
    handled_set = set(handled)
    assert len(handled) == len(handled_set), "a message was handled twice (redelivered?)"
    assert not failures, f"the storm reached the root: {failures}"
    assert dropped == 0
    assert dead_count == len(letters)
    # Asks: one outcome each, and the right one.
    outcomes = sorted(itertools.chain.from_iterable(answered.values()))
    assert outcomes == list(range(asks)), "an ask ended no way, or two ways"
    assert not answered["timeout"], f"asks timed out (a hang?): {answered['timeout'][:10]}"
    for id in answered["reply"]:
        assert not works[id].fail
        assert id in handled_set
    for id in answered["boom"]:
        assert works[id].fail
        assert id in handled_set
    # Tells: every accepted one handled or dead-lettered, once; refused ones never handled.
    told = [id for result in tell_results for id in result[0]]
    refused = [id for result in tell_results for id in result[1]]
    dead_ids = [letter.id for _, _, letter in letters if isinstance(letter, Work)]
    assert len(told) + len(refused) == total - asks
    assert not set(refused) & handled_set
    tells_handled = {id for id in handled_set if id >= asks}
    assert tells_handled | set(dead_ids) == set(told), "an accepted tell was lost"
    assert not tells_handled & set(dead_ids)
    figures(
        "C7",
        actors=len(shape),
        messages=total,
        seconds=f"{elapsed:.2f}",
        msgs_per_s=f"{total / elapsed:,.0f}",
        failures_injected=sum(w.fail for w in works),
        restarts=restarts,
        asks_replied=len(answered["reply"]),
        asks_boom=len(answered["boom"]),
        asks_stopped=len(answered["stopped"]),
        tells_handled=len(tells_handled),
        tells_refused=len(refused),
        dead_letters=len(dead_ids),
        lookup_misses=storm["misses"] + sum(r[2] for r in tell_results),
        seed=SEED,
    )


# -- F1 as a property: per-sender FIFO across restarts ----------------------------------------


class Step(msgspec.Struct, frozen=True):
    """The ``seq``-th message of the one sender; its handler raises when ``fail``."""

    seq: int
    fail: bool


class Handled(actors.Request[tuple[int, ...]], frozen=True):
    """Ask a `Keeper` for the seqs handled by it so far, every instance together."""


class Park(msgspec.Struct, frozen=True):
    """Hold a `Keeper` in its handler until ``release`` is set."""

    release: Flag
    entered: Flag


class Keeper(Actor[Step | Handled | Park]):
    """Logs each Step's seq on entry, fails or logs it again as handled; the log outlives
    its instances."""

    def __init__(self, log: Ledger) -> None:
        self.log = log

    async def receive(self, message: Step | Handled | Park) -> Any:
        match message:
            case Park(release, entered):
                entered.set()
                await release.wait()
            case Step(seq, fail):
                self.log.add(f"{self.ref.name}:entered", seq)
                if fail:
                    raise Boom(f"step {seq} fails on purpose")
                self.log.add(self.ref.name, seq)
                if seq % 3 == 0:
                    await asyncio.sleep(0)
            case Handled():
                return tuple(self.log.of(self.ref.name))
        return None


class Pair(Actor[Nothing]):
    """Supervises two `Keeper`s, ``a`` and ``b``, with the strategy under test."""

    def __init__(self, strategy: actors.SupervisionStrategy, log: Ledger, capacity: int) -> None:
        self.supervision = strategy
        self.log = log
        self.capacity = capacity

    async def on_start(self) -> None:
        for index, name in enumerate("ab"):
            await self.spawn(
                functools.partial(Keeper, self.log),
                name=name,
                capacity=self.capacity,
                placement=index % 2,
                restart=Restart.PERMANENT,
            )


STRATEGIES: dict[str, type[actors.SupervisionStrategy]] = {
    "one-for-one": actors.OneForOne,
    "one-for-all": actors.OneForAll,
    "rest-for-one": actors.RestForOne,
}
BACKENDS = [
    pytest.param("asyncio", {"use_uvloop": False}, id="asyncio"),
    pytest.param("asyncio", {"use_uvloop": True}, id="uvloop"),
    pytest.param("trio", {}, id="trio"),
]


@pytest.mark.parametrize(("backend", "options"), BACKENDS)
@settings(max_examples=scaled(200), deadline=None)
@given(
    script=st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 3).map(lambda n: n == 0)),
        min_size=1,
        max_size=40,
    ),
    strategy=st.sampled_from(sorted(STRATEGIES)),
    capacity=st.integers(1, 8),
    how=st.sampled_from(["send", "blocking_send", "parked"]),
)
def test_F1_per_sender_fifo_survives_restarts(
    backend: str,
    options: dict[str, Any],
    script: list[tuple[str, bool]],
    strategy: str,
    capacity: int,
    how: str,
) -> None:
    """One sender sends a script of Steps to two siblings, some of which make the handler
    fail. Whatever the strategy, each sibling handles exactly the Steps sent to it minus the
    failing ones, in the order sent: a failing message is not redelivered, those queued
    behind it survive the restart (of the failing actor, or of its sibling).

    ``how``: ``send`` from the host task (waiting while the small mailbox is full);
    ``blocking_send`` from a plain thread; ``parked``: both siblings start parked behind a
    full queue of everything, so that every failure has the rest queued behind it.
    """
    log = Ledger()
    steps = [(name, Step(seq, fail)) for seq, (name, fail) in enumerate(script)]

    async def main() -> None:
        generous = STRATEGIES[strategy](max_restarts=1_000, within=1.0)
        size = max(capacity, len(steps) + 1) if how == "parked" else capacity
        with anyio.fail_after(WAIT):
            async with ActorSystem(workers=2) as system:
                pair = await system.spawn(functools.partial(Pair, generous, log, size))
                keepers: dict[str, ActorRef[Step | Handled | Park]] = {}
                for name in "ab":
                    keeper = system.lookup(f"{pair.path}/{name}")
                    assert keeper is not None
                    keepers[name] = keeper
                release = Flag()
                if how == "parked":
                    for keeper in keepers.values():
                        entered = Flag()
                        await keeper.send(Park(release, entered))
                        await entered.wait()
                if how == "blocking_send":

                    def send_all() -> None:
                        for name, step in steps:
                            keepers[name].blocking_send(step)

                    await anyio.to_thread.run_sync(send_all)
                else:
                    for name, step in steps:
                        await keepers[name].send(step)
                release.set()
                for name, keeper in keepers.items():
                    # Asked by the same sender, after its Steps: answered after all of them.
                    assert await keeper.ask(Handled(), timeout=WAIT) == tuple(log.of(name))
                    assert keeper.is_alive
                    restarts[name] = keeper.statistics().restarts
                assert not system.failures

    restarts: dict[str, int] = {}
    anyio.run(main, backend=backend, backend_options=options)
    for name in "ab":
        sent = [step for to, step in steps if to == name]
        # Each Step entered its handler once, in the order sent: none lost, none redelivered.
        assert log.of(f"{name}:entered") == [step.seq for step in sent]
        expected = [step.seq for step in sent if not step.fail]
        assert log.of(name) == expected, f"{name}: handled {log.of(name)}, expected {expected}"
    # A child is restarted once per failure of its own when no sibling's restart takes it
    # along (under one-for-all a failure may land while the group restart is under way).
    fails = {name: sum(step.fail for to, step in steps if to == name) for name in "ab"}
    if strategy == "one-for-one":
        assert restarts == fails
    elif strategy == "rest-for-one":
        assert restarts["a"] == fails["a"]
        assert restarts["b"] >= fails["a"]


# -- F9: a final stop while the actor waits for its restart ------------------------------------


class Busy(Actor[Hold]):
    """Parent of one `Keeper` (``k``); a `Hold` keeps it busy, so a restart waits for it."""

    def __init__(self, log: Ledger, strategy: actors.SupervisionStrategy) -> None:
        self.log = log
        self.supervision = strategy

    async def on_start(self) -> None:
        await self.spawn(functools.partial(Keeper, self.log), name="k")

    async def receive(self, message: Hold) -> None:
        if message.entered is not None:
            message.entered.set()
        await message.release.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("delay", ["busy-parent", "backoff"])
async def test_F9_ref_stop_while_awaiting_a_restart_drains(delay: str) -> None:
    """`ActorRef.stop` promises: "what it already accepted is handled". A permanent child
    fails on Step 0 with Steps 1 and 2 queued; before its parent restarts it (the parent is
    busy in a handler, or a backoff runs), the test stops it for good.

    Found by the ``restart`` mode of the C6 test above: the accepted Steps used to be
    dead-lettered and `join` returned Step 0's error. A final stop of a suspended actor now
    boots a fresh instance to drain the sealed mailbox, then ends it normally.
    """
    log = Ledger()
    strategy = actors.OneForOne(
        max_restarts=100,
        within=1.0,
        backoff=actors.Backoff(initial=WAIT, maximum=WAIT, jitter=0.0)
        if delay == "backoff"
        else None,
    )
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            parent = await system.spawn(functools.partial(Busy, log, strategy), name="parent")
            keeper = system.lookup("/user/parent/k")
            assert keeper is not None
            release = await park(parent) if delay == "busy-parent" else Flag()
            for step in (Step(0, fail=True), Step(1, fail=False), Step(2, fail=False)):
                await keeper.send(step)
            await wait_until(lambda: keeper.statistics().status == "restarting")
            await keeper.stop()
            reason = await keeper.join()
            release.set()
            dead = system.dead_letters.count
    assert (log.of("k"), dead, reason) == ([1, 2], 0, None)


# -- L6: churn -------------------------------------------------------------------------------


class Crash(actors.Request[None], frozen=True):
    """Fail the handler."""


class Alive(actors.Request[int], frozen=True):
    """Answer with this instance's count of messages: 1 after a restart."""


class Fragile(Actor[Crash | Alive]):
    def __init__(self) -> None:
        self.seen = 0

    def receive(self, message: Crash | Alive) -> int | None:
        self.seen += 1
        if type(message) is Crash:
            raise Boom("churn")
        return self.seen


class Adopt(actors.Request[ActorRef[Crash | Alive]], frozen=True):
    """Spawn a `Fragile` child, temporary or permanent."""

    temporary: bool


class Children(actors.Request[int], frozen=True):
    """Answer with the number of children."""


class Churner(Actor[Adopt | Children]):
    # Thousands of restarts in a second are this test's load, not a crash loop to give up on.
    supervision = actors.OneForOne(max_restarts=10**9, within=0.05)

    async def receive(self, message: Adopt | Children) -> ActorRef[Crash | Alive] | int:
        if isinstance(message, Children):
            return len(self.children)
        restart = Restart.TEMPORARY if message.temporary else Restart.PERMANENT
        return await self.spawn(Fragile, restart=restart)


async def _churn(churner: ActorRef[Adopt | Children], cycles: int) -> None:
    # The parent restarts its children between its own messages, so the cycles are driven
    # from outside it. No ask timeouts (the test's own limit bounds it): a cancelled timer
    # stays in the host loop's heap for a while, which would blur the count of objects.
    for _ in range(cycles):
        # A temporary child fails: never restarted, out of the tree, nothing kept of it.
        temporary = await churner.ask(Adopt(temporary=True), timeout=None)
        with pytest.raises(Boom):
            await temporary.ask(Crash(), timeout=None)
        await temporary.join()
        # A permanent child fails, is restarted behind the same ref, then stops for good.
        permanent = await churner.ask(Adopt(temporary=False), timeout=None)
        with pytest.raises(Boom):
            await permanent.ask(Crash(), timeout=None)
        assert await permanent.ask(Alive(), timeout=None) == 1
        await permanent.stop()
    assert await churner.ask(Children()) == 0


def _census() -> Counter[str]:
    # The objects of `actors`' own classes and of this test's actors, by class.
    gc.collect()
    ours = (Fragile, Churner, Boom)
    return Counter(
        f"{type(o).__module__}.{type(o).__qualname__}"
        for o in gc.get_objects()
        if str(type(o).__module__).startswith("actors.") or type(o) in ours
    )


# The churn runs inside the system: the host's backend changes nothing in it, so one suffices.
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_L6_spawn_crash_restart_stop_churn_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # RELIABILITY L6: cycles of spawn, crash, restart and stop keep the parent's state, the
    # system's tree and the memory flat; a temporary child leaves no saved spec (OTP).
    caplog.set_level(logging.CRITICAL, logger="actors")  # the crashes' reports, not kept
    half = scaled(600)
    with anyio.fail_after(LIMIT):
        async with ActorSystem(workers=2) as system:
            churner = await system.spawn(Churner)
            tracemalloc.start()
            try:
                # The first half warms up what is made once and grows to a plateau (caches,
                # the lock stripes, the restart window's steady size); the second must keep
                # nothing that adds up: exactly so for the objects of actors' classes, while
                # the counts of all objects and bytes allow for what is still growing towards
                # a plateau (10 to 30 bytes a cycle measured here), far below what an ended
                # actor left behind would add.
                await _churn(churner, half)
                census, memory, objects = _census(), _traced(), len(gc.get_objects())
                await _churn(churner, half)
                grown = _traced() - memory
                more_objects = len(gc.get_objects()) - objects
            finally:
                tracemalloc.stop()
            left = _census() - census
            assert len(system.cells()) == 2  # the user guardian and the churner
    figures("L6", cycles=2 * half, bytes_per_cycle=round(grown / half, 1), objects=more_objects)
    assert not left, f"objects of actors' classes left behind: {left}"
    # Up to about 80 more: structures made once, lazily, in the second half (weak sets and
    # the like), and the objects of the last cycle's tasks in flight. A leak of one object a
    # cycle would add hundreds.
    assert more_objects < 150, f"{more_objects} more objects after {half} cycles"
    assert grown / half < 256, f"{grown / half:.0f} bytes kept per cycle"


def _traced() -> int:
    gc.collect()  # failures' tracebacks are cycles: count what is kept, not what is due
    return tracemalloc.get_traced_memory()[0]
