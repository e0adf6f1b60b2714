"""Worker pools: routing, supervision of the workers, parallel map, resize and stop, and the
errors a caller gets at the call site. Every test runs on asyncio, uvloop and trio hosts."""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, Count, Flag, Hold, Seen, Tick, park, wait_until

import actors
from actors import Actor, ActorSystem, OneForOne

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

pytestmark = pytest.mark.anyio

_serials = itertools.count()
_serials_lock = threading.Lock()


class Sq(actors.Request[int], frozen=True):
    n: int


class Crash(actors.Request[None], frozen=True):
    why: str = "boom"


class Where(actors.Request[str], frozen=True):
    """Which worker (by name) handled this."""


class Serial(actors.Request[int], frozen=True):
    """Which instance handled this: changes when the worker is restarted."""


class Keys(actors.Request[tuple[tuple[int, int], ...]], frozen=True):
    """The Keyed messages this worker handled, in order."""


class Keyed(msgspec.Struct, frozen=True):
    key: int
    n: int


class AskPool(actors.Request[int], frozen=True):
    pool: actors.Pool[Sq]


class Other(msgspec.Struct, frozen=True):
    pass


class ResizeOwn(actors.Request[str], frozen=True):
    pool: actors.Pool[Any]
    size: int


class StopOwn(actors.Request[bool], frozen=True):
    pool: actors.Pool[Any]


class Blob(msgspec.Struct, frozen=True):
    data: Any  # checked value by value: a list in it is not sendable


Msg = (
    Tick
    | Count
    | Seen
    | Hold
    | Sq
    | Crash
    | Where
    | Serial
    | Keyed
    | Keys
    | AskPool
    | Blob
    | ResizeOwn
    | StopOwn
)


class Journal:
    """Lines from workers on several loops (list.append is atomic)."""

    def __init__(self) -> None:
        self.lines: list[str] = []


actors.register_sendable(Journal)


class Worker(Actor[Msg]):
    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal
        self.seen: list[int] = []
        self.keys: list[tuple[int, int]] = []
        with _serials_lock:
            self.serial = next(_serials)

    async def on_start(self) -> None:
        if self.journal is not None:
            self.journal.lines.append(f"start {self.name}")

    async def receive(self, message: Msg) -> Any:
        match message:
            case Tick(n):
                self.seen.append(n)
                if self.journal is not None:
                    self.journal.lines.append(f"{self.name} {n}")
            case Count():
                return len(self.seen)
            case Seen():
                return tuple(self.seen)
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
            case Sq(n):
                return n * n
            case Crash(why):
                raise ValueError(why)
            case Where():
                return self.name
            case Serial():
                return self.serial
            case Keyed(key, n):
                self.keys.append((key, n))
            case Keys():
                return tuple(self.keys)
            case AskPool(pool):
                return await pool.ask(Sq(2))
            case Blob():
                pass
            case ResizeOwn(pool, size):
                try:
                    await pool.resize(size)
                except actors.DeadlockError:
                    return "deadlock"
                return f"resized to {pool.size}"
            case StopOwn(pool):
                await pool.stop()
                return pool.is_alive
        return None


class BadStart(Actor[Tick]):
    async def on_start(self) -> None:
        raise RuntimeError("cannot start")

    async def receive(self, message: Tick) -> None:
        pass


ROUTINGS: list[actors.Routing] = ["round-robin", "least-loaded", "consistent-hash", "pull"]


def key_of(message: Any) -> object:
    return getattr(message, "key", getattr(message, "n", 0))


async def spawn(
    system: ActorSystem, routing: actors.Routing = "round-robin", size: int = 3, **options: Any
) -> actors.Pool[Msg]:
    if routing == "consistent-hash":
        options.setdefault("key", key_of)
    return await system.spawn_pool(Worker, size=size, routing=routing, **options)


# -- starting ----------------------------------------------------------------------------------


async def test_spawn_pool_returns_once_every_worker_started_spread_over_the_loops() -> None:
    journal = Journal()
    async with ActorSystem(workers=3) as system:
        with anyio.fail_after(WAIT):
            pool = await system.spawn_pool(lambda: Worker(journal), size=6, name="crunch")
            assert sorted(journal.lines) == [f"start worker-{i}" for i in range(6)]
            assert pool.size == 6
            assert pool.name == "crunch"
            assert pool.path == "/user/crunch"
            assert [w.path for w in pool.workers] == [f"/user/crunch/worker-{i}" for i in range(6)]
            loops = [w.statistics().loop for w in pool.workers]
            assert sorted(loops) == ["0", "0", "1", "1", "2", "2"]
            assert loops[:3] == loops[3:]  # slot i on loop (offset + i) % 3
            assert repr(pool) == "<Pool /user/crunch round-robin size=6>"
            assert pool.routing == "round-robin"
            assert pool.is_alive
            actors.check_sendable(pool)  # a handle, like a ref: it can travel in messages
            default = await system.spawn_pool(Worker, size=1)
            assert default.name.startswith("pool-")


async def test_a_worker_that_fails_to_start_fails_spawn_pool_and_leaves_nothing() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(RuntimeError, match="cannot start"):
                await system.spawn_pool(BadStart, size=3, name="bad")
            assert system.lookup("/user/bad") is None
            assert system.lookup("/user/bad/worker-0") is None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"size": 0}, ValueError, "size must be at least 1"),
        ({"size": -2}, ValueError, "size must be at least 1"),
        ({"size": True}, TypeError, "must be an int"),
        ({"size": 2.0}, TypeError, "size must be an int"),
        ({"size": 2, "capacity": float("nan")}, TypeError, "capacity must be an int"),
        ({"size": 2, "capacity": 2.5}, TypeError, "capacity must be an int"),
        ({"size": 2, "name": 7}, TypeError, "name must be a str"),
        ({"size": 2, "name": "a/b"}, ValueError, "name must be non-empty"),
        ({"size": 2, "routing": "random"}, ValueError, "unknown routing 'random'"),
        ({"size": 2, "routing": "consistent-hash"}, ValueError, "needs key="),
        ({"size": 2, "key": key_of}, ValueError, "only used by"),
        ({"size": 2, "capacity": 0}, ValueError, "capacity must be at least 1"),
        ({"size": 2, "supervision": "one-for-one"}, TypeError, "must be a OneForOne"),
        ({"size": 2, "supervision": actors.OneForAll()}, TypeError, "must be a OneForOne"),
    ],
)
async def test_bad_options_are_refused_before_anything_starts(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT), pytest.raises(error, match=match):
            await system.spawn_pool(Worker, **options)


# -- errors at the call site ---------------------------------------------------------------------


@pytest.mark.parametrize("routing", [*ROUTINGS, "broadcast"])
async def test_wrong_or_mutable_messages_fail_at_the_call_site(routing: actors.Routing) -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, routing)
            other: Any = Other()  # the key function cannot read it: the type check goes first
            mutable = Blob([1, 2])
            for bad, error in (
                (other, actors.MessageTypeError),
                (mutable, actors.NotSendableError),
            ):
                with pytest.raises(error):
                    await pool.send(bad)
                with pytest.raises(error):
                    pool.try_send(bad)
                with pytest.raises(error):
                    await pool.ask_all(bad)
                if routing != "broadcast":
                    with pytest.raises(error):
                        await pool.ask(bad)
                    with pytest.raises(error, match="item 0"):
                        await pool.map([bad])
            assert await pool.ask_all(Count()) == [0, 0, 0]  # nothing was enqueued


async def test_try_send_raises_mailbox_full_only_when_every_worker_is_full() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=2, capacity=1)
            releases = [await park(worker) for worker in pool.workers]
            pool.try_send(Tick(1))
            pool.try_send(Tick(2))  # the first worker was full next: the other one took it
            with pytest.raises(actors.MailboxFull) as full:
                pool.try_send(Tick(3))
            assert full.value.message == Tick(3)
            assert "every worker" in str(full.value)
            for release in releases:
                release.set()
            assert sorted(await pool.ask_all(Seen())) == [(1,), (2,)]


async def test_consistent_hash_try_send_tries_only_the_keys_worker() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "consistent-hash", size=2, capacity=1)
            await pool.send(Keyed(7, 0))
            handled = await pool.ask_all(Keys())
            owner = pool.workers[handled.index(((7, 0),))]
            release = await park(owner)
            pool.try_send(Keyed(7, 1))
            with pytest.raises(actors.MailboxFull):
                pool.try_send(Keyed(7, 2))  # the other worker has room, but not the key
            release.set()


async def test_a_stopped_pool_refuses_everything_with_actor_stopped() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            for routing in ["round-robin", "pull"]:
                pool = await spawn(system, routing)  # type: ignore[arg-type]
                await pool.stop()
                assert not pool.is_alive
                assert pool.size == 0
                with pytest.raises(actors.ActorStopped) as stopped:
                    await pool.send(Tick(1))
                assert stopped.value.message == Tick(1)
                with pytest.raises(actors.ActorStopped):
                    pool.try_send(Tick(1))
                with pytest.raises(actors.ActorStopped):
                    await pool.ask(Sq(1))
                with pytest.raises(actors.ActorStopped):
                    await pool.ask_all(Count())
                with pytest.raises(actors.ActorStopped, match="item 0"):
                    await pool.map([Sq(1)])
                with pytest.raises(actors.ActorStopped):
                    await pool.resize(4)
                await pool.stop()  # again: returns at once
                assert await pool.join() is None


# -- routing -----------------------------------------------------------------------------------


async def test_round_robin_gives_each_worker_its_turn() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=3)
            for n in range(9):
                await pool.send(Tick(n))
            seen = await pool.ask_all(Seen())
            assert sorted(len(s) for s in seen) == [3, 3, 3]
            assert sorted(n for s in seen for n in s) == list(range(9))
            assert all(list(s) == sorted(s) for s in seen)  # one sender: in order per worker


async def test_least_loaded_picks_the_shortest_mailbox() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "least-loaded", size=3)
            a, b, c = pool.workers
            releases = [await park(w) for w in (a, b, c)]
            for n in range(2):
                await a.send(Tick(n))
            await b.send(Tick(2))
            # depths 2, 1, 0: the pool fills the shortest first until all are equal
            await pool.send(Tick(10))
            assert [w.statistics().mailbox.depth for w in (a, b, c)] == [2, 1, 1]
            await pool.send(Tick(11))
            await pool.send(Tick(12))
            assert [w.statistics().mailbox.depth for w in (a, b, c)] == [2, 2, 2]
            for release in releases:
                release.set()
            assert await a.ask(Seen()) == (0, 1)


async def test_consistent_hash_keeps_keys_on_one_worker_and_moves_few_on_resize() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "consistent-hash", size=4)
            keys = range(400)

            async def owners(n: int) -> dict[int, int]:
                for key in keys:
                    await pool.send(Keyed(key, n))
                found: dict[int, int] = {}
                for index, handled in enumerate(await pool.ask_all(Keys())):
                    for key, m in handled:
                        if m == n:
                            assert found.setdefault(key, index) == index
                return found

            before = await owners(0)
            assert len(before) == len(keys)
            assert await owners(1) == before
            assert len(set(before.values())) == 4
            # Per key, order is kept: every worker saw each of its keys' 0 before its 1.
            for handled in await pool.ask_all(Keys()):
                for key in {k for k, _ in handled}:
                    assert [m for k, m in handled if k == key] == [0, 1]

            await pool.resize(5)
            after = await owners(2)
            moved = [key for key in keys if after[key] != before[key]]
            assert all(after[key] == 4 for key in moved)  # only to the new worker
            assert 0 < len(moved) < 0.4 * len(keys)  # about a fifth
            await pool.resize(4)
            assert await owners(3) == before  # the same ring again


async def test_broadcast_sends_to_every_worker_and_ask_all_collects_replies() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "broadcast", size=3, capacity=1)
            await pool.send(Tick(1))
            assert await pool.ask_all(Seen()) == [(1,)] * 3
            pool.try_send(Tick(2))  # room everywhere: every worker gets it
            assert await pool.ask_all(Seen()) == [(1, 2)] * 3
            assert sorted(await pool.ask_all(Where())) == ["worker-0", "worker-1", "worker-2"]
            with pytest.raises(TypeError, match="ask_all"):
                await pool.ask(Sq(1))
            with pytest.raises(TypeError, match="one reply per item"):
                await pool.map([Sq(1)])
            with pytest.raises(TypeError, match="one reply per item"):
                pool.map_stream([Sq(1)])
            # One full worker: try_send says so; the others got the message.
            first = pool.workers[0]
            release = await park(first)
            await first.send(Tick(3))
            with pytest.raises(actors.MailboxFull, match="1 of the 3 workers") as full:
                pool.try_send(Tick(4))
            assert full.value.message == Tick(4)
            release.set()
            assert await pool.ask_all(Seen()) == [(1, 2, 3), (1, 2, 4), (1, 2, 4)]


async def test_pull_gives_the_next_message_to_an_idle_worker() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "pull", size=2)
            release, entered = Flag(), Flag()
            await pool.send(Hold(release, entered))
            await entered.wait()
            idle = await pool.ask(Where())  # the busy worker cannot answer
            busy = next(w for w in pool.workers if w.name != idle)
            for n in range(5):
                await pool.send(Tick(n))
            # Every tick and the asks went to the idle worker; none waits behind the busy one.
            assert await pool.ask(Count()) == 5
            assert await pool.ask(Where()) == idle
            assert busy.statistics().mailbox.depth == 0
            release.set()
            assert sorted(await pool.ask_all(Count())) == [0, 5]


async def test_pull_queue_is_bounded_and_pushes_back() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "pull", size=1, capacity=2)
            release, entered = Flag(), Flag()
            await pool.send(Hold(release, entered))
            await entered.wait()
            for n in range(3):  # one in the dispatcher's hand, waiting for the worker; two queued
                await pool.send(Tick(n))
            with pytest.raises(actors.MailboxFull) as full:
                pool.try_send(Tick(3))
            assert full.value.message == Tick(3)
            with pytest.raises(actors.SendTimeout) as late:
                await pool.send(Tick(4), timeout=0.05)
            assert late.value.message == Tick(4)
            with pytest.raises(actors.AskTimeout):
                await pool.ask(Sq(2), timeout=0.05)
            release.set()
            assert await pool.ask(Seen()) == (0, 1, 2)


async def test_pull_balances_irregular_work() -> None:
    # One long job and many short ones on two workers: the short ones all go to the worker
    # that is free, where round-robin would queue half of them behind the long one.
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "pull", size=2)
            release, entered = Flag(), Flag()
            long_job = Hold(release, entered)
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.ask, long_job)
                await entered.wait()
                squares = await pool.map([Sq(n) for n in range(50)])
                assert squares == [n * n for n in range(50)]
                release.set()


# -- supervision -------------------------------------------------------------------------------


@pytest.mark.parametrize("routing", ROUTINGS)
async def test_a_crashed_worker_is_replaced_behind_the_same_ref(routing: actors.Routing) -> None:
    async with ActorSystem(workers=2, clock=actors.ManualClock()) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, routing, size=2)
            workers = pool.workers
            serials = await pool.ask_all(Serial())
            with pytest.raises(ValueError, match="boom"):
                await pool.ask(Crash())
            # Still two workers, the same refs; exactly one is a new instance.
            assert pool.workers == workers
            await wait_until(lambda: sum(w.statistics().restarts for w in workers) == 1)
            now = await pool.ask_all(Serial())
            assert sum(a != b for a, b in zip(serials, now, strict=True)) == 1
            assert await pool.ask(Sq(3)) == 9
            # The default tolerates one crash per worker in the window; the next one is
            # too many: the pool gives up, stops its workers and fails.
            with pytest.raises(ValueError, match="boom"):
                await pool.ask(Crash())
            with pytest.raises(ValueError, match="boom"):
                await pool.ask(Crash())
            reason = await pool.join()
            assert isinstance(reason, actors.SupervisionError)
            assert system.failures == [reason]
            assert not any(w.is_alive for w in workers)
            with pytest.raises(actors.ActorStopped):
                await pool.send(Tick(1))


async def test_supervision_option_replaces_the_default_strategy() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=4, supervision=OneForOne(max_restarts=0))
            with pytest.raises(ValueError, match="boom"):
                await pool.ask(Crash())
            assert isinstance(await pool.join(), actors.SupervisionError)


# -- map ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("routing", ROUTINGS)
async def test_map_returns_replies_in_input_order(routing: actors.Routing) -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, routing, size=3)
            assert await pool.map([Sq(n) for n in range(200)]) == [n * n for n in range(200)]
            assert await pool.map([]) == []
            assert await pool.map((Sq(n) for n in range(5)), max_in_flight=1) == [0, 1, 4, 9, 16]


async def test_map_raises_the_first_failure_naming_its_index() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=3)
            with pytest.raises(ValueError, match="bad item") as failed:
                await pool.map([Sq(1), Sq(2), Crash("bad item"), Sq(4)])
            assert "raised for item 2 of map() on pool" in "\n".join(failed.value.__notes__)
            outcomes = await pool.map([Sq(1), Crash("again"), Sq(3)], return_exceptions=True)
            assert outcomes[0] == 1
            assert outcomes[2] == 9
            assert isinstance(outcomes[1], ValueError)
            assert "item 1" in outcomes[1].__notes__[-1]
            with pytest.raises(ValueError, match="max_in_flight"):
                await pool.map([Sq(1)], max_in_flight=0)


async def test_map_times_out_per_item() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=2)
            release = Flag()
            items: list[Any] = [Sq(1), Hold(release), Sq(3)]
            outcomes = await pool.map(items, timeout=0.1, return_exceptions=True)
            assert outcomes[0] == 1
            assert outcomes[2] == 9
            assert isinstance(outcomes[1], actors.AskTimeout)
            release.set()
            assert await pool.ask_all(Count()) == [0, 0]  # both workers free again
            again = Flag()
            with pytest.raises(actors.AskTimeout) as late:
                await pool.map([Sq(1), Hold(again), Sq(3)], timeout=0.1)
            assert "item 1" in late.value.__notes__[-1]
            again.set()


async def test_map_keeps_at_most_max_in_flight_and_reads_its_input_lazily() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=4)
            releases = [Flag() for _ in range(6)]
            entered = [Flag() for _ in range(6)]
            pulled = 0

            def source() -> Iterator[Hold]:
                nonlocal pulled
                for release, flag in zip(releases, entered, strict=True):
                    pulled += 1
                    yield Hold(release, flag)

            async with anyio.create_task_group() as tg:
                results: list[Any] = []

                async def run() -> None:
                    results.extend(await pool.map(source(), max_in_flight=3))

                tg.start_soon(run)
                for flag in entered[:3]:
                    await flag.wait()
                assert pulled == 3  # three in flight: the fourth is not even read yet
                releases[1].set()  # a later item finishing does not let a new one in:
                releases[0].set()  # results come in order, so the window moves with item 0
                await entered[3].wait()
                await entered[4].wait()
                assert pulled == 5
                for release in releases[2:]:
                    release.set()
            assert results == [None] * 6


async def test_map_stream_streams_a_large_async_input_with_bounded_memory() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "pull", size=3)
            pulled = 0
            largest_gap = 0

            async def numbers() -> AsyncIterator[Sq]:
                nonlocal pulled
                for n in range(3000):
                    pulled += 1
                    yield Sq(n)

            total = 0
            count = 0
            async for square in pool.map_stream(numbers(), max_in_flight=8):
                assert square == count * count
                count += 1
                total += square
                largest_gap = max(largest_gap, pulled - count)
            assert count == 3000
            assert largest_gap <= 8
            # Chained: one stream's replies are the next one's messages.
            roots = pool.map_stream(Sq(n) for n in range(10))
            chained = [r async for r in pool.map_stream(Sq(r) async for r in roots)]
            assert chained == [n**4 for n in range(10)]


async def test_map_from_inside_an_actor() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=2)
            client = await system.spawn(Worker)
            assert await client.ask(AskPool(pool)) == 4  # type: ignore[arg-type]
            # A worker routed its own ask: a deadlock, refused at once.
            single = await spawn(system, size=1)
            with pytest.raises(actors.DeadlockError):
                await single.ask(AskPool(single))  # type: ignore[arg-type]


# -- resize and stop ---------------------------------------------------------------------------


async def test_resize_grows_and_shrinks_draining_removed_workers() -> None:
    journal = Journal()
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await system.spawn_pool(lambda: Worker(journal), size=2, name="elastic")
            first = pool.workers
            await pool.resize(4)
            assert pool.size == 4
            assert pool.workers[:2] == first
            assert [w.name for w in pool.workers] == [f"worker-{i}" for i in range(4)]
            loops = [w.statistics().loop for w in pool.workers]
            assert loops[:2] == loops[2:]  # still spread
            for n in range(8):
                await pool.send(Tick(n))
            assert await pool.ask_all(Count()) == [2, 2, 2, 2]
            # Shrink while the removed workers still have messages queued: they drain.
            removed = pool.workers[2:]
            releases = [await park(w) for w in removed]
            for w in removed:
                await w.send(Tick(100))
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.resize, 2)
                await wait_until(lambda: pool.size == 2)
                for release in releases:
                    release.set()
            assert pool.workers == first
            assert not any(w.is_alive for w in removed)
            assert journal.lines.count("worker-2 100") == 1
            assert journal.lines.count("worker-3 100") == 1
            with pytest.raises(ValueError, match="size must be at least 1"):
                await pool.resize(0)
            await pool.resize(3)
            assert pool.workers[2].name == "worker-4"  # names are never reused


async def test_sends_racing_a_shrink_are_rerouted_not_refused() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            for routing in ROUTINGS:
                pool = await spawn(system, routing, size=6)

                async def produce(pool: actors.Pool[Msg] = pool) -> None:
                    for n in range(300):
                        await pool.send(Keyed(n, n))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(produce)
                    await pool.resize(1)
                keys = await pool.ask_all(Keys())
                assert len(keys) == 1
                await pool.stop()


async def test_stop_drains_what_the_workers_accepted() -> None:
    journal = Journal()
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            for routing in ["round-robin", "pull"]:
                journal.lines.clear()
                pool = await system.spawn_pool(
                    lambda: Worker(journal),
                    size=2,
                    routing=routing,  # type: ignore[arg-type]
                )
                for n in range(50):
                    await pool.send(Tick(n))
                await pool.stop()
                ticks = [line.split()[1] for line in journal.lines if line.startswith("worker")]
                assert sorted(map(int, ticks)) == list(range(50)), routing


async def test_system_shutdown_stops_pools() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "pull", size=2)
            await pool.send(Tick(1))
    assert not pool.is_alive
    assert not any(w.is_alive for w in pool.workers)


async def test_pool_on_the_host_loop(anyio_backend: object) -> None:
    if anyio_backend == "trio":
        pytest.skip('placement="host" needs an asyncio host')
    async with ActorSystem(workers=2, placement="host") as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, "pull", size=2)
            assert {w.statistics().loop for w in pool.workers} == {"host"}
            assert await pool.map([Sq(n) for n in range(10)]) == [n * n for n in range(10)]


async def test_a_worker_may_grow_its_pool_or_stop_it_but_not_remove_itself() -> None:
    async with ActorSystem(workers=2) as system:
        with anyio.fail_after(WAIT):
            pool = await spawn(system, size=2)
            last = pool.workers[1]
            assert await last.ask(ResizeOwn(pool, 3)) == "resized to 3"
            assert await last.ask(ResizeOwn(pool, 1)) == "deadlock"
            assert await pool.workers[0].ask(ResizeOwn(pool, 1)) == "resized to 1"
            assert await pool.workers[0].ask(StopOwn(pool)) is True  # requested, not awaited
            assert await pool.join() is None
            assert not pool.is_alive
