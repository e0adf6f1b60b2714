"""Smoke test of ``python -m benchmarks.cluster``: tiny sizes, so that it cannot rot.

Runs the three worlds (same loop, cross loop, a second process over NATS) against a server
started here, checks every repetition's own result (the benchmark does) and the table's
shape. No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anyio
from cluster_support import NatsServer

if importlib.util.find_spec("benchmarks") is None:  # run from a checkout without the root on path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import actors
from benchmarks import cluster, cluster_cpu, wire_cost


async def _run(url: str) -> list[cluster.Result]:
    with anyio.fail_after(60):
        return await cluster.run(url, reps=1, size=40, use_uvloop=False)


def test_the_cluster_benchmark_runs_and_renders_its_table() -> None:
    with NatsServer() as server:
        results = actors.run(_run, server.url, use_uvloop=False)
    assert {(r.case.name, r.world) for r in results} == {
        (case.name, world) for case in cluster.CASES for world in cluster.WORLDS
    }
    for result in results:
        assert result.n == 40
        assert len(result.rates if result.case.kind == "tell" else result.p99) == 1
    table = cluster.render(results).splitlines()
    assert table[0].startswith("| case | same loop | cross loop | across processes (NATS)")
    assert len(table) == 2 + 4  # tell-1, tell-4, ask p50, ask p99


async def _pingpong(url: str) -> str:
    with anyio.fail_after(60):
        return await cluster.run_pingpong(url, rounds=20, reps=1, use_uvloop=False)


def test_the_split_pingpong_runs_and_renders_its_row() -> None:
    with NatsServer() as server:
        table = actors.run(_pingpong, server.url, use_uvloop=False).splitlines()
    assert table[0].startswith("| case | across processes (NATS) | raw nats-py request-reply")
    assert len(table) == 3
    assert "Savina PingPong split over two nodes (20 round trips)" in table[2]


async def _streams(url: str) -> str:
    with anyio.fail_after(60):
        return await cluster.run_streams(url, n=50, reps=1, use_uvloop=False)


def test_the_remote_stream_rows_run_and_render() -> None:
    with NatsServer() as server:
        table = actors.run(_streams, server.url, use_uvloop=False).splitlines()
    assert table[0].startswith("| case | same loop | across processes (NATS)")
    assert len(table) == 2 + len(cluster.STREAM_WINDOWS)
    assert "remote-stream, window 16 (50 items)" in table[2]


async def _durable(url: str) -> str:
    with anyio.fail_after(60):
        return await cluster.run_durable(url, n=50, reps=1, use_uvloop=False)


def test_the_durable_send_row_runs_and_renders(tmp_path: Path) -> None:
    with NatsServer("-js", "-sd", str(tmp_path / "jetstream")) as server:
        table = actors.run(_durable, server.url, use_uvloop=False).splitlines()
    assert table[0].startswith("| case | `actors` durable send + flush | raw nats-py")
    assert len(table) == 3
    assert "durable send until stored, 1 producer (50 messages)" in table[2]


async def _cpu(url: str) -> tuple[list[float], list[float]]:
    with anyio.fail_after(60):
        return await cluster_cpu.cpu_per_tell(url, producers=2, tells=200, reps=2, use_uvloop=False)


def test_the_cpu_per_tell_benchmark_runs_and_measures_both_processes() -> None:
    with NatsServer() as server:
        sender, owner = actors.run(_cpu, server.url, use_uvloop=False)
    assert len(sender) == len(owner) == 2
    assert all(value >= 0 for value in (*sender, *owner))


def test_the_wire_cost_benchmark_times_each_frame() -> None:
    table = wire_cost.table(1).splitlines()
    assert table[0].startswith("| frame | bytes | check_frame")
    assert len(table) == 2 + len(wire_cost.frames())
