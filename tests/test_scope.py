"""Scoped actors: every actor spawned in ``async with system.scope()`` is stopped (drained)
when the block exits; the first failure among them cancels the block and is raised out of
it; a scope is used once, and only inside its block."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, Hold, park
from test_examples import run_example

import actors
from actors import Actor, ActorSystem, Restart

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

pytestmark = pytest.mark.anyio


class Add(msgspec.Struct, frozen=True):
    n: int = 1


class Crash(msgspec.Struct, frozen=True):
    why: str = "boom"


class Quit(msgspec.Struct, frozen=True):
    pass


class Total(actors.Request[int], frozen=True):
    pass


class CrashAsked(actors.Request[None], frozen=True):
    why: str = "asked"


class Journal:
    """Lines written by actors on several loops (list.append is atomic)."""

    def __init__(self) -> None:
        self.lines: list[str] = []


actors.register_sendable(Journal)


class Worker(Actor[Add | Crash | Quit | Total | CrashAsked | Hold]):
    def __init__(self, label: str = "", journal: Journal | None = None) -> None:
        self.label = label
        self.journal = journal or Journal()
        self.total = 0

    async def on_stop(self) -> None:
        self.journal.lines.append(f"stop {self.label} total={self.total}")

    async def receive(self, message: Add | Crash | Quit | Total | CrashAsked | Hold) -> Any:
        match message:
            case Add(n):
                self.total += n
            case Crash(why) | CrashAsked(why):
                raise ValueError(why)
            case Quit():
                self.stop()
            case Total():
                return self.total
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
        return None


async def enter(scope: actors.Scope, body: Callable[[actors.Scope], Awaitable[None]]) -> None:
    """Run ``body`` inside ``async with scope`` (one statement for ``pytest.raises``)."""
    async with scope:
        await body(scope)


class Failing(Actor[Add]):
    async def on_start(self) -> None:
        raise KeyError("cannot start")


# -- the happy path ----------------------------------------------------------------------


async def test_actors_of_a_scope_are_drained_and_stopped_in_reverse_order_at_exit() -> None:
    journal = Journal()
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            async with system.scope() as scope:
                assert scope.path is not None
                assert scope.path.startswith("/user/scope-")
                first = await scope.spawn(lambda: Worker("first", journal), name="first")
                second = await scope.spawn(lambda: Worker("second", journal))
                assert first.path == f"{scope.path}/first"
                release = await park(second)
                for _ in range(3):
                    await second.send(Add())  # queued behind the parked message
                await first.send(Add(5))
                release.set()
            assert not first.is_alive
            assert not second.is_alive
            assert journal.lines == ["stop second total=3", "stop first total=5"]
            assert system.lookup(scope.path) is None  # the scope actor is gone too
            assert scope.failure is None
            assert "closed" in repr(scope)


async def test_a_body_exception_propagates_unchanged_and_the_actors_still_stop() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            workers: list[actors.ActorRef[Any]] = []

            async def body(scope: actors.Scope) -> None:
                workers.append(await scope.spawn(Worker))
                raise KeyError("body")

            with pytest.raises(KeyError, match="body"):
                await enter(system.scope(), body)
            assert not workers[0].is_alive
            assert system.failures == []


async def test_a_restartable_actor_that_crashes_once_does_not_fail_the_scope() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            async with system.scope() as scope:
                worker = await scope.spawn(Worker, restart=Restart.PERMANENT)
                await worker.send(Add(2))
                await worker.send(Crash())
                await worker.send(Add(3))
                assert await worker.ask(Total()) == 3  # a fresh instance after the restart
            assert scope.failure is None
            assert worker.statistics().restarts == 1


async def test_an_actor_that_stops_itself_normally_does_not_fail_the_scope() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            async with system.scope() as scope:
                worker = await scope.spawn(Worker)  # temporary: not restarted
                await worker.send(Quit())
                assert await worker.join() is None
            assert scope.failure is None


async def test_a_failure_to_start_is_raised_by_spawn_and_does_not_fail_the_scope() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            async with system.scope() as scope:
                with pytest.raises(KeyError, match="cannot start"):
                    await scope.spawn(Failing)
                worker = await scope.spawn(Worker)
                await worker.send(Add())
            assert scope.failure is None


async def test_a_scope_inside_an_actor_handler() -> None:
    class Fan(actors.Request[int], frozen=True):
        width: int

    class Coordinator(Actor[Fan]):
        async def receive(self, message: Fan) -> int:
            async with self.system.scope() as scope:
                workers = [await scope.spawn(Worker) for _ in range(message.width)]
                for n, worker in enumerate(workers):
                    await worker.send(Add(n))
                totals = [await worker.ask(Total()) for worker in workers]
            assert not any(worker.is_alive for worker in workers)
            return sum(totals)

    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            coordinator = await system.spawn(Coordinator)
            assert await coordinator.ask(Fan(5)) == 10
            assert await coordinator.ask(Fan(3)) == 3


# -- failures ----------------------------------------------------------------------------


async def test_a_failure_cancels_the_block_and_is_raised_out_of_it() -> None:
    journal = Journal()
    reached: list[bool] = []
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=2) as system:
            scope = system.scope()
            workers: list[actors.ActorRef[Any]] = []

            async def body(scope: actors.Scope) -> None:
                workers.append(await scope.spawn(lambda: Worker("calm", journal)))
                workers.append(await scope.spawn(lambda: Worker("fragile", journal)))
                await workers[1].send(Crash("worker crashed"))
                await anyio.sleep_forever()  # cancelled by the failure
                reached.append(True)

            with pytest.raises(ValueError, match="worker crashed") as raised:
                await enter(scope, body)
            calm, fragile = workers
            assert not reached
            assert raised.value is scope.failure
            assert isinstance(await fragile.join(), ValueError)
            assert not calm.is_alive
            assert journal.lines == ["stop fragile total=0", "stop calm total=0"]
            assert system.failures == []  # the scope's, not the system's
            assert f"raised by actor {fragile.path}" in "".join(raised.value.__notes__)


async def test_a_failure_seen_by_an_ask_in_the_body_propagates_as_is() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            scope = system.scope()

            async def body(scope: actors.Scope) -> None:
                worker = await scope.spawn(Worker)
                await worker.ask(CrashAsked("asked"))

            with pytest.raises(ValueError, match="asked") as raised:
                await enter(scope, body)
            assert raised.value is scope.failure


async def test_a_failure_wins_over_a_body_exception_which_becomes_its_context() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:

            async def body(scope: actors.Scope) -> None:
                worker = await scope.spawn(Worker)
                await worker.send(Crash())
                with anyio.CancelScope(shield=True):
                    await worker.join()
                raise KeyError("body")

            with pytest.raises(ValueError, match="boom") as raised:
                await enter(system.scope(), body)
            assert isinstance(raised.value.__context__, KeyError)


async def test_a_failure_while_draining_at_exit_is_raised() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            scope = system.scope()

            async def body(scope: actors.Scope) -> None:
                worker = await scope.spawn(Worker)
                release = await park(worker)
                await worker.send(Crash("late"))  # queued: handled in the drain
                release.set()

            with pytest.raises(ValueError, match="late"):
                await enter(scope, body)
            assert isinstance(scope.failure, ValueError)


async def test_an_outside_cancellation_propagates_and_the_failure_is_kept() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            scope = system.scope()
            with anyio.CancelScope() as outer:
                async with scope:
                    worker = await scope.spawn(Worker)
                    await worker.send(Crash())
                    with anyio.CancelScope(shield=True):
                        await worker.join()
                    outer.cancel()
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
            assert isinstance(scope.failure, ValueError)


async def test_an_outside_cancellation_stops_the_actors() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            scope = system.scope()
            with anyio.CancelScope() as outer:
                async with scope:
                    worker = await scope.spawn(Worker)
                    await worker.send(Add())
                    outer.cancel()
                    await anyio.sleep_forever()
            assert outer.cancelled_caught
            assert not worker.is_alive  # pyright: ignore[reportPossiblyUnboundVariable]
            assert scope.failure is None


async def test_a_supervisor_that_gives_up_fails_the_scope() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            scope = system.scope()
            workers: list[actors.ActorRef[Any]] = []

            async def body(scope: actors.Scope) -> None:
                workers.append(await scope.spawn(Worker, restart=Restart.PERMANENT))
                for _ in range(4):  # OneForOne allows 3 restarts within 5 s
                    await workers[0].send(Crash("again"))
                await anyio.sleep_forever()

            with pytest.raises(ValueError, match="again"):
                await enter(scope, body)
            assert not workers[0].is_alive
            # The scope actor gave up, as a top-level supervisor: the system records it too.
            (gave_up,) = system.failures
            assert isinstance(gave_up, actors.SupervisionError)
            assert gave_up.__cause__ is scope.failure


async def test_a_system_shutting_down_stops_the_scope_without_failing_it() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            async with system.scope() as scope:
                worker = await scope.spawn(Worker)
                await system.shutdown()
                assert not worker.is_alive
                with pytest.raises(actors.SystemNotRunning):
                    await scope.spawn(Worker)
            assert scope.failure is None


async def test_a_failure_on_the_host_loop_cancels_the_block(anyio_backend: Any) -> None:
    if anyio_backend == "trio":
        pytest.skip('placement="host" needs an asyncio host')
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1, placement="host") as system:
            scope = system.scope()

            async def body(scope: actors.Scope) -> None:
                worker = await scope.spawn(Worker)
                await worker.send(Crash("on the host"))
                await anyio.sleep_forever()

            with pytest.raises(ValueError, match="on the host"):
                await enter(scope, body)


# -- misuse --------------------------------------------------------------------------------


async def test_spawn_outside_the_block_and_reentry_are_refused() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            scope = system.scope()
            with pytest.raises(RuntimeError, match="was not entered"):
                await scope.spawn(Worker)
            assert scope.path is None
            assert "not entered" in repr(scope)
            async with scope:
                await scope.spawn(Worker)
            with pytest.raises(RuntimeError, match="has exited"):
                await scope.spawn(Worker)
            with pytest.raises(RuntimeError, match="entered only once"):
                async with scope:
                    pass


async def test_a_scope_needs_a_running_system() -> None:
    system = ActorSystem(workers=1)
    with pytest.raises(actors.SystemNotRunning):
        async with system.scope():
            pass


async def test_a_scope_actor_name_taken_by_a_user_actor_is_skipped() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1) as system:
            async with system.scope() as probe:
                pass
            assert probe.path is not None
            taken = int(probe.path.rsplit("-", 1)[1]) + 1
            await system.spawn(Worker, name=f"scope-{taken}")
            async with system.scope() as scope:
                assert scope.path == f"/user/scope-{taken + 1}"


# -- the docs page's example ---------------------------------------------------------------


def test_the_docs_example_runs() -> None:
    assert run_example("patterns/scopes.py").splitlines() == [
        "counting 3 documents",
        "  progress: stopped, after every counter",
        "total: 8 words",
        "counting 3 documents, one of them empty",
        "  progress: stopped, after every counter",
        "the scope raised ValueError: empty document",
        "the scope's actors are gone: True",
        "RuntimeError: Scope.spawn() needs an open scope, inside `async with`; "
        "this scope has exited",
    ]
