"""Metrics: per-actor counters, loop gauges, the snapshot, and the Prometheus exporter."""

from __future__ import annotations

import urllib.request
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flip, Hold, Switch, park, wait_until

import actors
from actors import Actor, ActorSystem

pytestmark = pytest.mark.anyio


class Add(msgspec.Struct, frozen=True):
    n: int = 1


class Boom(msgspec.Struct, frozen=True):
    pass


class Total(actors.Request[int], frozen=True):
    pass


class Counter(Actor[Add | Boom | Total | Hold]):
    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: Add | Boom | Total | Hold) -> Any:
        match message:
            case Add(n):
                self.total += n
            case Boom():
                raise ValueError("boom")
            case Total():
                return self.total
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
        return None


def record(system: ActorSystem, path: str) -> actors.ActorMetrics:
    (found,) = [a for a in system.metrics().actors if a.path == path]
    return found


async def test_counters_follow_what_the_actor_did() -> None:
    async with ActorSystem(workers=2) as system:
        ref = await system.spawn(Counter, name="counter")
        with anyio.fail_after(WAIT):
            for _ in range(600):  # more than one burst (throughput 256)
                await ref.send(Add())
            with pytest.raises(ValueError, match="boom"):
                await ref.ask(Boom())
            assert await ref.ask(Total()) == 0  # restarted
        # Counted per burst: exact once the actor is idle. The failed ask is received,
        # not processed; the one that answered is both.
        await wait_until(lambda: record(system, "/user/counter").processed == 601)
        assert record(system, "/user/counter").received == 602
        stats = record(system, "/user/counter")
        assert (stats.failed, stats.restarts) == (1, 1)
        assert stats.handler_seconds > 0
        assert stats.handler_histogram == ()  # handler_timing is off by default
        assert stats.mailbox_capacity == actors.DEFAULT_CAPACITY


async def test_mailbox_depth_and_high_water() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Counter, name="c", capacity=10)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            for _ in range(7):
                ref.try_send(Add())
            stats = record(system, "/user/c")
            assert (stats.mailbox_depth, stats.mailbox_high_water) == (7, 7)
            release.set()
            await wait_until(lambda: record(system, "/user/c").mailbox_depth == 0)
            stats = record(system, "/user/c")
            assert (stats.mailbox_depth, stats.mailbox_high_water) == (0, 7)


async def test_handler_histogram_counts_every_handled_message() -> None:
    async with ActorSystem(workers=1, handler_timing=True) as system:
        ref = await system.spawn(Counter, name="timed")
        with anyio.fail_after(WAIT):
            for _ in range(300):
                await ref.send(Add())
            await ref.ask(Total())
        stats = record(system, "/user/timed")
        histogram = stats.handler_histogram
        assert sum(count for _, count in histogram) == 301
        bounds = [bound for bound, _ in histogram]
        assert bounds == sorted(bounds)
        assert bounds[-1] == float("inf")


async def test_loops_and_the_snapshot_encode_to_json() -> None:
    async with ActorSystem(workers=2, blocked_threshold=0.05) as system:
        for i in range(5):
            await system.spawn(Counter, name=f"c{i}")
        snapshot = system.metrics()
        assert [a.path for a in snapshot.actors] == [f"/user/c{i}" for i in range(5)]
        assert sorted(loop.actors for loop in snapshot.loops) == [2, 3]
        assert all(loop.busy_seconds is None or loop.busy_seconds > 0 for loop in snapshot.loops)
        await wait_until(lambda: all(lp.lag_seconds is not None for lp in system.metrics().loops))
        decoded = msgspec.json.decode(msgspec.json.encode(system.metrics()))
        assert decoded["actors"][0]["path"] == "/user/c0"
        assert decoded["dead_letters"] == 0
        with pytest.raises(AttributeError):
            snapshot.dead_letters = 1  # type: ignore[misc]  # frozen


async def test_prometheus_exporter_serves_the_snapshot() -> None:
    prometheus = pytest.importorskip("actors.prometheus")
    async with ActorSystem(workers=1, handler_timing=True) as system:
        ref = await system.spawn(Counter, name="scraped")
        with anyio.fail_after(WAIT):
            for _ in range(3):
                await ref.send(Add())
            await ref.ask(Total())
        with prometheus.PrometheusExporter(system, port=0) as exporter:
            assert exporter.url.startswith("http://127.0.0.1:")

            def scrape() -> str:
                with urllib.request.urlopen(exporter.url, timeout=WAIT) as response:
                    body: bytes = response.read()
                    return body.decode()

            text = await anyio.to_thread.run_sync(scrape)
    assert 'actors_received_total{path="/user/scraped"} 4.0' in text
    assert 'actors_processed_total{path="/user/scraped"} 4.0' in text
    assert 'actors_mailbox_capacity{path="/user/scraped"} 1000.0' in text
    assert 'actors_handler_latency_seconds_count{path="/user/scraped"} 4.0' in text
    assert 'actors_loop_actors{loop="0"} 1.0' in text
    assert "actors_dead_letters_total 0.0" in text


def figures_of(system: ActorSystem, path: str) -> actors.ActorMetrics:
    (found,) = (a for a in system.metrics().actors if a.path == path)
    return found


async def test_a_state_machine_reports_its_current_state_in_metrics_and_prometheus() -> None:
    prometheus = pytest.importorskip("actors.prometheus")
    async with ActorSystem(workers=1) as system:
        switch = await system.spawn(Switch, name="switch")
        other = await system.spawn(Counter, name="other")
        with anyio.fail_after(WAIT):
            assert figures_of(system, switch.path).state == "Down"
            await switch.send(Flip())
            await wait_until(lambda: figures_of(system, switch.path).state == "Up")
            assert figures_of(system, other.path).state == ""
        with prometheus.PrometheusExporter(system, port=0) as exporter:

            def scrape() -> str:
                with urllib.request.urlopen(exporter.url, timeout=WAIT) as response:
                    body: bytes = response.read()
                    return body.decode()

            text = await anyio.to_thread.run_sync(scrape)
    assert 'actors_machine_state{path="/user/switch",state="Up"} 1.0' in text
    assert 'path="/user/other",state=' not in text
