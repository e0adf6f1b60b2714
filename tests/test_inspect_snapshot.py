"""The inspector's read-only view (`actors._inspect`, `actors.inspector.SystemView`): rates,
the census, rankings, pools, subscriptions, blocked-loop warnings, its bounds."""

from __future__ import annotations

import logging
import time

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, Flip, Hold, Recorder, Switch, Tick, wait_until

import actors
from actors import _inspect
from actors.inspector import MAX_PAGE, SystemView

pytestmark = pytest.mark.anyio


def test_rates_need_two_readings_a_second_apart() -> None:
    rates = _inspect._Rates()
    assert rates.rate("a", 10, now=100.0) is None  # the first reading
    assert rates.rate("a", 50, now=100.5) is None  # too soon: no rate yet
    assert rates.rate("a", 110, now=102.0) == 50.0  # (110 - 10) / 2 s
    assert rates.rate("a", 999, now=102.5) == 50.0  # too soon: the last rate again
    assert rates.rate("a", 100, now=104.0) == 0.0  # never negative


def test_rates_forget_the_least_recently_read() -> None:
    rates = _inspect._Rates(kept=2)
    rates.rate("a", 0, now=0.0)
    rates.rate("b", 0, now=0.0)
    rates.rate("a", 0, now=0.1)  # a is read again: b is now the oldest
    rates.rate("c", 0, now=0.2)
    assert rates.rate("a", 10, now=5.0) == 2.0  # kept
    assert rates.rate("b", 5, now=5.0) is None  # forgotten: a first reading again


def test_page_bounds_are_checked() -> None:
    _inspect.check_page(0, 1)
    _inspect.check_page(10, MAX_PAGE)
    for offset, limit in ((-1, 10), (0, 0), (0, MAX_PAGE + 1), (True, 10), (0, 1.5)):
        with pytest.raises(ValueError, match="must be an integer"):
            _inspect.check_page(offset, limit)  # type: ignore[arg-type]


def test_a_failing_repr_is_shown_not_raised() -> None:
    class Odd:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert _inspect._short_repr(Odd()).endswith("repr failed: RuntimeError('no')>")
    assert len(_inspect._short_repr("x" * 1000)) == 200


class Busy(msgspec.Struct, frozen=True):
    seconds: float


class Blocker(actors.Actor[Busy]):
    async def receive(self, message: Busy) -> None:
        time.sleep(message.seconds)  # noqa: ASYNC251 - blocks its loop on purpose


class Ping(msgspec.Struct, frozen=True):
    pass


async def test_one_view_per_system_and_its_census_is_reused() -> None:
    async with actors.ActorSystem(workers=2) as system:
        view = SystemView.of(system)
        assert SystemView.of(system) is view
        assert repr(view) == f"<SystemView {system.name}>"
        first = view.overview().nodes[0]
        await system.spawn(Recorder, name="late")
        again = view.overview().nodes[0]
        # Within a second the census is reused: the new actor is not counted yet...
        assert again.actors == first.actors
        assert again.census_age >= 0.0
        # ...but pages are always current.
        assert "/user/late" in [a.path for a in view.children("/user").actors]


async def test_top_ranks_by_depth_failures_and_restarts() -> None:
    async with actors.ActorSystem(workers=1) as system:
        quiet = await system.spawn(Recorder, name="quiet")
        full = await system.spawn(Recorder, name="full")
        release, entered = Flag(), Flag()
        await full.send(Hold(release, entered))
        await entered.wait()
        for n in range(5):
            await full.send(Tick(n))
        view = SystemView.of(system)
        top = view.top("depth", limit=2)
        assert [actor.path for actor in top] == ["/user/full", "/user/quiet"]
        assert top[0].mailbox_depth == 5
        release.set()
        await wait_until(lambda: full.statistics().mailbox.depth == 0)
        assert quiet.is_alive
        with pytest.raises(ValueError, match="by must be one of"):
            view.top("fame")  # type: ignore[arg-type]


async def test_pools_and_subscriptions() -> None:
    async with actors.ActorSystem(workers=2) as system:
        await system.spawn_pool(Recorder, size=2, routing="round-robin", name="rr")
        await system.spawn_pool(Recorder, size=1, routing="broadcast", name="all")
        await system.spawn_pool(
            Recorder, size=3, routing="consistent-hash", key=lambda m: m, name="hashed"
        )
        subscriber = await system.spawn(Recorder, name="sub")
        system.events.subscribe(subscriber, Tick, policy="drop_oldest")
        await system.events.publish(Tick(1))
        view = SystemView.of(system)
        pools = {pool.path: pool for pool in view.pools()}
        assert {path: (p.routing, p.size, p.queued) for path, p in pools.items()} == {
            "/user/rr": ("round-robin", 2, 0),
            "/user/all": ("broadcast", 1, 0),
            "/user/hashed": ("consistent-hash", 3, 0),
        }
        assert [w.type for w in pools["/user/hashed"].workers] == ["Recorder"] * 3
        page = view.subscriptions()
        assert page.total == 1
        (sub,) = page.subscriptions
        assert (sub.subscriber, sub.event_type, sub.policy, sub.delivered) == (
            "/user/sub",
            "Tick",
            "drop_oldest",
            1,
        )
        assert view.subscriptions(offset=1).subscriptions == ()


async def test_blocked_loop_warnings_and_flag(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    async with actors.ActorSystem(workers=1, blocked_threshold=0.05) as system:
        view = SystemView.of(system)
        blocker = await system.spawn(Blocker, name="blocker")
        await blocker.send(Busy(0.3))
        await wait_until(lambda: view.overview().nodes[0].loops[0].blocked, timeout=WAIT)
        # The warning while it lasts, then how long it lasted; the loop turns again.
        await wait_until(lambda: len(view.overview().nodes[0].warnings) == 2, timeout=WAIT)
        node = view.overview().nodes[0]
        assert "worker loop 0 has been blocked" in node.warnings[0].message
        assert "actor /user/blocker handling Busy" in node.warnings[0].message
        assert "was blocked for" in node.warnings[1].message
        assert not node.loops[0].blocked  # it turns again


async def test_the_view_of_a_system_that_never_started() -> None:
    system = actors.ActorSystem(workers=1)
    view = SystemView.of(system)
    node = view.overview().nodes[0]
    assert (node.running, node.actors, node.root) == (False, 0, "")
    with pytest.raises(LookupError, match="has not started"):
        view.root()
    with pytest.raises(LookupError, match="no live actor"):
        view.children("/user")
    assert await view.watch_dead_letters() is False
    assert view.dead_letters().total == 0


# -- state machines show their current state ---------------------------------------------------


async def test_a_state_machine_shows_its_current_state_and_other_actors_none() -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            switch = await system.spawn(Switch, name="switch")
            other = await system.spawn(Recorder, name="other")
            view = SystemView.of(system)
            assert view.actor(switch.path).machine_state == "Down"
            await switch.send(Flip())
            await wait_until(lambda: view.actor(switch.path).machine_state == "Up")
            assert view.actor(other.path).machine_state == ""
