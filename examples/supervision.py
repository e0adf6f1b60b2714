"""Supervision, shown by a small service that crashes on purpose and recovers.

    python3 dev.py run examples/supervision.py

docs/supervision.md includes its parts. Each scene prints what happened:

1. the tree: a bank supervises its accounts; paths, ``lookup``, ``children``, ``parent``;
2. what a restart keeps: the same ref and mailbox, the messages queued behind the crash;
   what it does not: the failing message, and the old instance's state; the hook order;
3. the three strategies, one crash each: which siblings restart, in which order;
4. random crashes under load (seeded): every message is handled once, none is lost;
5. restart types: a transient child that finishes normally stays stopped, a temporary one
   that crashes stays down (what was queued behind the crash becomes dead letters);
   a watcher prints the ``Terminated`` events;
6. backoff: restarts spaced out, the delay growing with each restart in the window;
7. a pitfall: a supervisor that asks its own child delays that child's restart;
8. escalation: too many restarts, the supervisors give up level by level, and the failure
   reaches the root, which records it in ``system.failures``.

The output is the same on every run: the crashes are chosen by a seeded random generator,
and every line printed by an actor is ordered before the next line of ``main`` by a reply
that ``main`` waits for (no sleeps).
"""

from __future__ import annotations

import logging
import random
import time

import msgspec

import actors


class InjectedCrash(Exception):
    """A crash on purpose."""


# -- messages --------------------------------------------------------------------------------


class Deposit(msgspec.Struct, frozen=True):
    amount: int


class Balance(actors.Request[int], frozen=True):
    pass


class Crash(msgspec.Struct, frozen=True):
    pass


# --8<-- [start:tree]
AccountRef = actors.ActorRef[Deposit | Balance | Crash]


class Open(actors.Request[AccountRef], frozen=True):
    owner: str


class Accounts(actors.Request[tuple[str, ...]], frozen=True):
    pass


class Account(actors.Actor[Deposit | Balance | Crash]):
    def __init__(self) -> None:
        self.balance = 0  # lost in a crash: a restart starts from a fresh instance
        print(f"  {self.name}: __init__")

    async def on_start(self) -> None:
        print(f"  {self.name}: on_start, parent {self.parent.path}")

    async def receive(self, message: Deposit | Balance | Crash) -> int | None:
        match message:
            case Deposit(amount=amount):
                self.balance += amount
            case Balance():
                return self.balance
            case Crash():
                raise InjectedCrash(f"{self.name} crashed on purpose")
        return None

    async def on_stop(self) -> None:
        print(f"  {self.name}: on_stop, balance was {self.balance}")

    async def on_restart(self, error: BaseException | None) -> None:
        print(f"  {self.name}: on_restart after {error!r}")


class Bank(actors.Actor[Open | Accounts]):
    supervision = actors.OneForOne(max_restarts=3, within=5.0)

    async def receive(self, message: Open | Accounts) -> object:
        match message:
            case Open(owner=owner):
                # A child: its path is under ours, we restart it, we stop it before us.
                return await self.spawn(Account, name=owner)
            case Accounts():
                return tuple(child.path for child in self.children)


async def tree(system: actors.ActorSystem) -> tuple[actors.ActorRef[Open], AccountRef]:
    bank = await system.spawn(Bank, name="bank")
    ada = await bank.ask(Open("ada"))
    await bank.ask(Open("grace"))
    print(f"bank's children: {', '.join(await bank.ask(Accounts()))}")
    found = system.lookup("/user/bank/ada")
    print(f"lookup('/user/bank/ada') is the same ref: {found == ada}")
    return bank, ada


# --8<-- [end:tree]


# --8<-- [start:restart]
async def restart(ada: AccountRef) -> None:
    await ada.send(Deposit(30))
    await ada.send(Crash())  # fails the instance; the bank restarts it
    await ada.send(Deposit(5))  # waits in the mailbox meanwhile, kept across the restart
    balance = await ada.ask(Balance())  # answered by the new instance
    print(f"after the restart: balance {balance}, restarts {ada.statistics().restarts}")


# --8<-- [end:restart]


# -- the strategies ----------------------------------------------------------------------------


class Add(actors.Request[int], frozen=True):
    n: int


class Count(actors.Request[int], frozen=True):
    pass


class Job(msgspec.Struct, frozen=True):
    id: int
    poison: bool


class Record(actors.Request[None], frozen=True):
    worker: str
    job: int


class Tally(actors.Request[tuple[int, int]], frozen=True):
    pass


WorkerMessage = Add | Count | Crash | Job


class Ledger(actors.Actor[Record | Tally]):
    """Outlives the workers' crashes: it is not among them."""

    def __init__(self) -> None:
        self.jobs: set[int] = set()
        self.duplicates = 0

    async def receive(self, message: Record | Tally) -> tuple[int, int] | None:
        match message:
            case Record(job=job):
                self.duplicates += job in self.jobs
                self.jobs.add(job)
            case Tally():
                return len(self.jobs), self.duplicates
        return None


class Worker(actors.Actor[WorkerMessage]):
    def __init__(self, ledger: actors.ActorRef[Record] | None = None, quiet: bool = False) -> None:
        self.ledger = ledger
        self.quiet = quiet
        self.count = 0

    async def receive(self, message: WorkerMessage) -> int | None:
        match message:
            case Add(n=n):
                self.count += n
                return self.count
            case Count():
                return self.count
            case Crash():
                raise InjectedCrash(f"{self.name} crashed on purpose")
            case Job(id=id, poison=poison):
                if poison:
                    raise InjectedCrash(f"job {id} is poison")
                assert self.ledger is not None
                await self.ledger.ask(Record(self.name, id))
        return None

    async def on_stop(self) -> None:
        if not self.quiet:
            print(f"  {self.name}: on_stop")

    async def on_restart(self, error: BaseException | None) -> None:
        if not self.quiet:
            print(f"  {self.name}: on_restart")


# --8<-- [start:service]
class Service(actors.Actor[Count]):
    """Three children that depend on each other in start order: db, then cache, then api."""

    def __init__(
        self,
        strategy: actors.SupervisionStrategy,
        ledger: actors.ActorRef[Record] | None = None,
        quiet: bool = False,
    ) -> None:
        self.supervision = strategy  # an instance attribute works as well as a class one
        self.ledger = ledger
        self.quiet = quiet

    async def on_start(self) -> None:
        for name in ("db", "cache", "api"):
            await self.spawn(lambda: Worker(self.ledger, self.quiet), name=name)

    async def receive(self, message: Count) -> int:
        return len(self.children)


# --8<-- [end:service]


async def strategies(system: actors.ActorSystem) -> None:
    for strategy in (actors.OneForOne(), actors.OneForAll(), actors.RestForOne()):
        name = type(strategy).__name__
        print(f"{name}: cache crashes")
        service = await system.spawn(lambda s=strategy: Service(s), name=name.lower())
        children = [system.lookup(f"{service.path}/{child}") for child in ("db", "cache", "api")]
        db, cache, api = [child for child in children if child is not None]
        for child in (db, cache, api):
            await child.ask(Add(1))
        await cache.send(Crash())
        # The crashed child first: its reply comes from its new instance, so the siblings
        # in its group have been stopped by then, and answer from their new instances too.
        counts = [await child.ask(Count()) for child in (cache, db, api)]
        print(f"  counts: db {counts[1]}, cache {counts[0]}, api {counts[2]} (0: restarted)")
        await service.stop()


# -- random crashes under load --------------------------------------------------------------


async def load(system: actors.ActorSystem) -> None:
    rng = random.Random(42)
    ledger = await system.spawn(Ledger, name="ledger")
    strategy = actors.RestForOne(max_restarts=100, within=1.0)
    service = await system.spawn(lambda: Service(strategy, ledger, quiet=True), name="busy")
    workers = [system.lookup(f"{service.path}/{child}") for child in ("db", "cache", "api")]
    refs = [worker for worker in workers if worker is not None]
    jobs, poisoned = 300, 0
    for job in range(jobs):
        poison = rng.random() < 0.05
        poisoned += poison
        await rng.choice(refs).send(Job(job, poison))
    for ref in refs:  # a barrier: each reply comes after every job sent to that worker
        await ref.ask(Count())
    handled, duplicates = await ledger.ask(Tally())
    restarted = all(ref.statistics().restarts > 0 for ref in refs)
    print(
        f"{jobs} jobs sent at random to 3 workers under RestForOne, {poisoned} of them poison:\n"
        f"  {handled} handled once, {duplicates} twice, {jobs - poisoned - handled} lost; "
        f"every worker restarted: {restarted}"
    )
    await service.stop()
    await ledger.stop()


# -- restart types, death watch, dead letters --------------------------------------------------


class Finish(actors.Request[None], frozen=True):
    pass


class Split(msgspec.Struct, frozen=True):
    lines: tuple[str, ...]


class Line(msgspec.Struct, frozen=True):
    text: str


class Report(actors.Actor[Finish]):
    async def receive(self, message: Finish) -> None:
        self.stop()  # a normal exit: a transient child is not restarted after it


class Importer(actors.Actor[Split | Line]):
    async def receive(self, message: Split | Line) -> None:
        match message:
            case Split(lines=lines):
                for text in lines:
                    await self.ref.send(Line(text))  # one message per line, to itself
            case Line(text=text):
                if not text.isdigit():
                    raise InjectedCrash(f"cannot import {text!r}")
                print(f"  importer: imported {text}")


# --8<-- [start:watch]
class Watch(actors.Request[None], frozen=True):
    ref: actors.ActorRef[object]


class Events(actors.Request[tuple[str, ...]], frozen=True):
    pass


class Watcher(actors.Actor[Watch | Events]):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def receive(self, message: Watch | Events) -> tuple[str, ...] | None:
        match message:
            case Watch(ref=ref):
                self.watch(ref)  # on_terminated once ref's actor stops for good
            case Events():
                events, self.events = tuple(self.events), []
                return events
        return None

    async def on_terminated(self, event: actors.Terminated) -> None:
        reason = event.reason
        how = "stopped normally" if reason is None else f"failed with {type(reason).__name__}"
        self.events.append(f"{event.ref.path} {how}")


# --8<-- [end:watch]


# --8<-- [start:deadletters]
class Sync(actors.Request[None], frozen=True):
    pass


class Auditor(actors.Actor[actors.DeadLetter | Sync]):
    async def receive(self, message: actors.DeadLetter | Sync) -> None:
        if isinstance(message, actors.DeadLetter):
            print(f"  dead letter for {message.recipient} ({message.reason}): {message.message}")


# --8<-- [end:deadletters]


# --8<-- [start:types]
class Jobs(actors.Actor[Count]):
    async def on_start(self) -> None:
        await self.spawn(Report, name="report", restart=actors.Restart.TRANSIENT)
        await self.spawn(Importer, name="importer", restart=actors.Restart.TEMPORARY)

    async def receive(self, message: Count) -> int:
        return len(self.children)


# --8<-- [end:types]


# --8<-- [start:types-main]
async def restart_types(
    system: actors.ActorSystem, watcher: actors.ActorRef[Watch | Events]
) -> None:
    auditor = await system.spawn(Auditor, name="auditor")
    system.dead_letters.subscribe(auditor)
    jobs = await system.spawn(Jobs, name="jobs")
    report = system.lookup("/user/jobs/report")
    importer = system.lookup("/user/jobs/importer")
    assert report is not None
    assert importer is not None
    await watcher.ask(Watch(report))
    await watcher.ask(Watch(importer))

    print("transient report finishes normally:")
    await report.ask(Finish())
    reason = await report.join()
    await show_events(watcher)
    print(f"  join() -> {reason!r}, restarts {report.statistics().restarts}")

    print("temporary importer crashes on a bad line:")
    await importer.send(Split(("1", "2", "three", "4", "5")))
    reason = await importer.join()
    # In this runtime the dead letters, queued before join() returned, come before Sync.
    await auditor.ask(Sync())
    await show_events(watcher)
    print(f"  join() -> {reason!r}")
    try:
        await importer.send(Line("6"))
    except actors.ActorStopped as error:
        print(f"  a later send raised ActorStopped and handed back {error.message}")
    sent, handled, rejected = 6, 3, 1  # Split's 5 lines and Line("6"); "1", "2", "three"
    dead = system.dead_letters.count
    print(f"  lines: {sent} sent = {handled} handled + {dead} dead letters + {rejected} rejected")
    print(f"  jobs has {await jobs.ask(Count())} children left")
    await jobs.stop()
    system.dead_letters.unsubscribe(auditor)
    await auditor.stop()


# --8<-- [end:types-main]


# -- backoff ----------------------------------------------------------------------------------


# --8<-- [start:backoff]
class Gateway(actors.Actor[Count]):
    supervision = actors.OneForOne(
        max_restarts=5,
        within=60.0,
        backoff=actors.Backoff(initial=0.05, maximum=1.0, jitter=0.0, multiplier=2.0),
    )

    async def on_start(self) -> None:
        await self.spawn(Worker, name="upstream")

    async def receive(self, message: Count) -> int:
        return len(self.children)  # answered at once, even while a restart waits


# --8<-- [end:backoff]


async def backoff(system: actors.ActorSystem) -> None:
    gateway = await system.spawn(Gateway, name="gateway")
    upstream = system.lookup("/user/gateway/upstream")
    assert upstream is not None
    for attempt, delay in enumerate((0.05, 0.1, 0.2), start=1):
        start = time.monotonic()
        await upstream.send(Crash())
        await upstream.ask(Count(), timeout=10)  # waits in the mailbox through the backoff
        waited = time.monotonic() - start
        verdict = "waited at least that" if waited >= delay * 0.9 else f"TOO EARLY: {waited:.3f}"
        print(f"crash {attempt}: restarted after a backoff of {delay:.2f} s ({verdict})")
    await gateway.stop()


# -- a pitfall: a supervisor that works -------------------------------------------------------


# --8<-- [start:pitfall]
class Busy(actors.Request[str], frozen=True):
    pass


class BusyParent(actors.Actor[Busy]):
    async def on_start(self) -> None:
        self.child = await self.spawn(lambda: Worker(quiet=True), name="child")

    async def receive(self, message: Busy) -> str:
        await self.child.send(Crash())
        try:
            # The child crashed: its restart is our job, but we are busy waiting right here.
            await self.child.ask(Count(), timeout=0.2)
        except actors.AskTimeout:
            return "the ask timed out; the child restarts only after this handler returns"
        return "answered"


# --8<-- [end:pitfall]


async def pitfall(system: actors.ActorSystem) -> None:
    parent = await system.spawn(BusyParent, name="busy-parent")
    print(f"pitfall: {await parent.ask(Busy())}")
    child = system.lookup("/user/busy-parent/child")
    assert child is not None
    print(f"  then the child answers again: count {await child.ask(Count())}")
    await parent.stop()


# -- escalation -------------------------------------------------------------------------------


# --8<-- [start:escalation]
class Branch(actors.Actor[Count]):
    supervision = actors.OneForOne(max_restarts=2, within=60.0)

    async def on_start(self) -> None:
        await self.spawn(Worker, name="teller")

    async def receive(self, message: Count) -> int:
        return len(self.children)


class Headquarters(actors.Actor[Count]):
    supervision = actors.OneForOne(max_restarts=0, within=60.0)  # give up at once

    async def on_start(self) -> None:
        await self.spawn(Branch, name="branch")

    async def receive(self, message: Count) -> int:
        return len(self.children)


async def escalation(system: actors.ActorSystem, watcher: actors.ActorRef[Watch | Events]) -> None:
    # Temporary: the root does not restart it, so its failure is final and recorded.
    hq = await system.spawn(Headquarters, name="hq", restart=actors.Restart.TEMPORARY)
    await watcher.ask(Watch(hq))
    teller = system.lookup("/user/hq/branch/teller")
    assert teller is not None
    for crash in (1, 2, 3):
        await teller.send(Crash())
        if crash < 3:
            await teller.ask(Count())  # answered once the branch restarted it
            print(f"teller crash {crash}: restarted by the branch")
    failure = await system.wait_failure()
    await hq.join()
    await show_events(watcher)
    print("teller crash 3: the branch gives up, then headquarters does; the root records:")
    level: BaseException | None = failure
    while level is not None:
        print(f"  {type(level).__name__}: {str(level).split(' would ')[0]}")
        level = level.__cause__
    alive = [system.lookup(path) is not None for path in ("/user/hq", "/user/hq/branch")]
    print(f"  system.failures: {len(system.failures)}; hq or branch alive: {any(alive)}")


# --8<-- [end:escalation]


async def show_events(watcher: actors.ActorRef[Watch | Events]) -> None:
    # Called after join(): the Terminated event was queued before join() returned.
    for event in await watcher.ask(Events()):
        print(f"  watcher: {event}")


# -- main -------------------------------------------------------------------------------------


async def run_story() -> list[BaseException]:
    async with actors.ActorSystem(workers=2, name="supervision") as system:
        watcher = await system.spawn(Watcher, name="watcher")
        print("== the tree, and what a restart keeps")
        bank, ada = await tree(system)
        await restart(ada)
        await bank.stop()
        print("== strategies")
        await strategies(system)
        print("== random crashes")
        await load(system)
        print("== restart types, death watch, dead letters")
        await restart_types(system, watcher)
        print("== backoff")
        await backoff(system)
        print("== a supervisor that works")
        await pitfall(system)
        print("== escalation")
        await escalation(system, watcher)
        failures = system.failures
    print("shut down cleanly")
    return failures


def main() -> None:
    # Each crash is logged at ERROR with its traceback: set level=logging.ERROR to see them.
    logging.basicConfig(level=logging.CRITICAL)
    actors.run(run_story)


if __name__ == "__main__":
    main()
