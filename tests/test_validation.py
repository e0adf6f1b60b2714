"""Settings and timeouts are checked up front, with an error naming them, before anything is
enqueued or started; and a failure inside a supervisor's stop path never hangs shutdown."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT

import actors
from actors import Actor, ActorSystem, Backoff, OneForAll, OneForOne
from actors._sendable import MAX_NESTING

pytestmark = pytest.mark.anyio

NAN = float("nan")
INF = float("inf")


class Add(msgspec.Struct, frozen=True):
    n: int = 1


class Total(actors.Request[int], frozen=True):
    pass


class Counter(Actor[Add | Total]):
    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: Add | Total) -> int:
        if isinstance(message, Add):
            self.total += message.n
        return self.total


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"workers": 0}, ValueError, "workers must be at least 1"),
        ({"workers": 1.5}, TypeError, "workers must be an int"),
        ({"workers": True}, TypeError, "workers must be an int"),
        ({"capacity": 1.5}, TypeError, "capacity must be an int"),
        ({"capacity": NAN}, TypeError, "capacity must be an int"),
        ({"capacity": 0}, ValueError, "capacity must be at least 1"),
        ({"drain_timeout": "1"}, TypeError, "drain_timeout must be a number"),
        ({"drain_timeout": NAN}, ValueError, "drain_timeout must be a finite"),
        ({"drain_timeout": INF}, ValueError, "drain_timeout must be a finite"),
        ({"drain_timeout": -1}, ValueError, "drain_timeout must be a finite"),
        ({"drain_timeout": True}, TypeError, "drain_timeout must be a number"),
        ({"throughput": 0}, ValueError, "throughput must be at least 1"),
        ({"throughput": "8"}, TypeError, "throughput must be an int"),
        ({"use_uvloop": "yes"}, TypeError, "use_uvloop must be True, False or None"),
        ({"name": 3}, TypeError, "name must be a str"),
        ({"name": ""}, ValueError, "name must be non-empty"),
        ({"supervision": "one-for-one"}, TypeError, "supervision must be"),
        ({"escalation": "panic"}, ValueError, "escalation must be"),
        ({"blocked_threshold": 0}, ValueError, "blocked_threshold must be a finite"),
        ({"blocked_threshold": NAN}, ValueError, "blocked_threshold must be a finite"),
        ({"clock": object()}, TypeError, "clock must be an actors.Clock"),
        ({"placement": "everywhere"}, ValueError, "placement must be"),
        ({"handler_timing": 1}, TypeError, "handler_timing must be True or False"),
    ],
)
def test_bad_system_settings_are_refused_with_their_name(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ActorSystem(**options)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: OneForOne(max_restarts=2.5), TypeError, "max_restarts must be an int"),
        (lambda: OneForAll(within=INF), ValueError, "within must be a finite"),
        (lambda: OneForOne(within=NAN), ValueError, "within must be a finite"),
        (lambda: OneForOne(within="5"), TypeError, "within must be a number"),
        (lambda: OneForOne(backoff=0.5), TypeError, "backoff must be an actors.Backoff"),
        (lambda: Backoff(initial="0.1"), TypeError, "initial must be a number"),
        (lambda: Backoff(multiplier=NAN), ValueError, "multiplier must be at least 1"),
    ],
)
def test_bad_strategy_settings_are_refused_with_their_name(
    make: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"capacity": NAN}, TypeError, "capacity must be an int"),
        ({"capacity": 2.5}, TypeError, "capacity must be an int"),
        ({"capacity": True}, TypeError, "capacity must be an int"),
        ({"capacity": "10"}, TypeError, "capacity must be an int"),
        ({"capacity": 0}, ValueError, "capacity must be at least 1"),
        ({"name": 7}, TypeError, "name must be a str"),
        ({"name": b"x"}, TypeError, "name must be a str"),
        ({"name": "a/b"}, ValueError, "name must be non-empty"),
    ],
)
async def test_bad_spawn_options_are_refused_and_nothing_is_registered(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(error, match=match):
                await system.spawn(Counter, **options)
            assert len(system.cells()) == 1  # the guardian only


BAD_TIMEOUTS = [
    ("1", TypeError, "timeout must be a number"),
    (NAN, ValueError, "timeout must be a finite"),
    (INF, ValueError, "timeout must be a finite"),
    (-0.5, ValueError, "timeout must be a finite"),
    (True, TypeError, "timeout must be a number"),
]


@pytest.mark.parametrize(("timeout", "error", "match"), BAD_TIMEOUTS)
async def test_bad_timeouts_are_refused_before_anything_is_enqueued(
    timeout: Any, error: type[Exception], match: str
) -> None:
    async with ActorSystem(workers=1) as system:
        counter = await system.spawn(Counter)
        with anyio.fail_after(WAIT):
            with pytest.raises(error, match=match):
                await counter.send(Add(), timeout=timeout)
            with pytest.raises(error, match=match):
                await counter.ask(Add(), timeout=timeout)
            with pytest.raises(error, match=match):
                await anyio.to_thread.run_sync(
                    lambda: counter.blocking_send(Add(), timeout=timeout)
                )
            with pytest.raises(error, match=match):
                await anyio.to_thread.run_sync(lambda: counter.blocking_ask(Add(), timeout=timeout))
            assert await counter.ask(Total()) == 0  # none of them was delivered


class Relay(Actor[Total]):
    """Asks another actor with a bad timeout, from inside its handler."""

    def __init__(self, target: actors.ActorRef[Add | Total], timeout: Any) -> None:
        self.target = target
        self.timeout = timeout

    async def receive(self, message: Total) -> int:
        try:
            await self.target.ask(Add(), timeout=self.timeout)
        except (TypeError, ValueError):
            return -1
        return 1


@pytest.mark.parametrize(("timeout", "error", "match"), BAD_TIMEOUTS)
async def test_a_bad_ask_timeout_inside_an_actor_is_refused_before_delivery(
    timeout: Any, error: type[Exception], match: str
) -> None:
    async with ActorSystem(workers=2) as system:
        counter = await system.spawn(Counter, placement=0)
        relay = await system.spawn(lambda: Relay(counter, timeout), placement=1)
        with anyio.fail_after(WAIT):
            assert await relay.ask(Total()) == -1
            assert await counter.ask(Total()) == 0  # the bad ask never reached it


async def test_pool_timeouts_are_checked() -> None:
    async with ActorSystem(workers=1) as system:
        pool = await system.spawn_pool(Counter, size=2)
        with anyio.fail_after(WAIT):
            with pytest.raises(ValueError, match="timeout must be a finite"):
                await pool.send(Add(), timeout=NAN)
            with pytest.raises(ValueError, match="timeout must be a finite"):
                await pool.ask(Total(), timeout=NAN)
            with pytest.raises(TypeError, match="timeout must be a number"):
                await pool.ask_all(Total(), timeout="1")
            with pytest.raises(ValueError, match="timeout must be a finite"):
                await pool.map([Total()], timeout=-1)


class Nest(msgspec.Struct, frozen=True):
    inner: Any


class Sink(Actor[Any]):
    async def receive(self, message: Any) -> None:
        pass


async def test_a_deeply_nested_message_is_not_sendable_rather_than_a_recursion_error() -> None:
    deep: Any = ()
    for _ in range(100_000):
        deep = (deep,)
    with pytest.raises(actors.NotSendableError, match="nested more than"):
        actors.check_sendable(deep)
    record: Any = None
    for _ in range(5_000):
        record = Nest((record, []))  # mutable at the bottom: must be walked to be found
    with pytest.raises(actors.NotSendableError, match="nested more than"):
        actors.check_sendable(record)
    shallow: Any = ()
    for _ in range(MAX_NESTING - 1):
        shallow = (shallow,)
    actors.check_sendable(shallow)  # within the limit: fine
    async with ActorSystem(workers=1) as system:
        sink = await system.spawn(Sink)
        with anyio.fail_after(WAIT), pytest.raises(actors.NotSendableError):
            await sink.send(deep)


async def test_a_failure_in_a_stop_path_is_logged_and_shutdown_completes(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: an exception in a supervisor's stop path (a bad drain timeout did it) ended the
    # guardian's task without ending the guardian, and shutdown waited forever, silently.
    import actors._supervisor as supervisor

    real = supervisor.stop_child

    async def broken(child: Any, timeout: float) -> None:
        if child.name == "victim":
            raise RuntimeError("a bug in the stop path")
        await real(child, timeout)

    monkeypatch.setattr(supervisor, "stop_child", broken)
    caplog.set_level(logging.ERROR, "actors")
    async with ActorSystem(workers=2) as system:
        victim = await system.spawn(Counter, name="victim")
        other = await system.spawn(Counter, name="other")
        await victim.send(Add())
        with anyio.fail_after(WAIT):
            await system.shutdown()
    assert not victim.is_alive
    assert not other.is_alive
    assert "stopping its child /user/victim failed" in caplog.text


async def test_test_kit_timeouts_are_checked() -> None:
    from actors import testing

    async with ActorSystem(workers=1) as system:
        probe = await testing.Probe.spawn(system)
        with anyio.fail_after(WAIT):
            with pytest.raises(ValueError, match="timeout must be a finite"):
                await probe.expect(Add, timeout=NAN)
            with pytest.raises(TypeError, match="within must be a number"):
                await probe.expect_no_message(within="0.1")
            with pytest.raises(ValueError, match="timeout must be a finite"):
                await testing.settle(system, timeout=INF)
            with pytest.raises(ValueError, match="seconds must be a finite"):
                await testing.advance(system, NAN)


class Scheduler(Actor[Total]):
    """Starts timers with bad delays from its handler and reports what was raised."""

    def __init__(self, delay: Any) -> None:
        self.delay = delay

    async def receive(self, message: Total) -> int:
        refused = 0
        for start in (self.send_after, self.send_every):
            try:
                start(self.delay, Total())
            except (TypeError, ValueError):
                refused += 1
        return refused


@pytest.mark.parametrize("delay", [NAN, INF, -1, "1", None])
async def test_timer_delays_are_checked(delay: Any) -> None:
    async with ActorSystem(workers=1) as system:
        scheduler = await system.spawn(lambda: Scheduler(delay))
        with anyio.fail_after(WAIT):
            assert await scheduler.ask(Total()) == 2
