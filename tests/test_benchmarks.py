"""Smoke test of the benchmark suite: every Savina program runs on `actors` and checks itself.

Tiny sizes (the whole file takes a few seconds); no timing is asserted. A program whose
answer is wrong must fail its case, and a failed case must fail the run. The multiloop
workload runs on 1, 2 and 4 loops, and a unit that loses a message fails it. The placement
rows (issue 14: the default ActorSystem() against workers=1, Savina and a ping-pong of two
app-spawned actors, with the pinned round-robin spread beside them) run and report their
placement counters; co-location itself is tested in tests/test_placement.py. The
blocked-neighbour rows (issue 14: actors beside a handler that blocks their loop, against an
unblocked run and a run whose responders cannot be evacuated) run, report their latencies and
counters, and read the target as the blocked p99 over the unblocked p99. The inspector's cost
benchmark measures the inspector example's workload, imported from it.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import actors

if importlib.util.find_spec("benchmarks") is None:  # run from a checkout without the root on path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks.__main__ as bench_cli
from benchmarks import cases, savina_instructions, tell_instructions
from benchmarks import report as bench_report
from benchmarks.cases import IMPLEMENTATIONS, QUICK, CaseResult, Implementation, Rep, Workload
from benchmarks.neighbour import ASK_EVERY, BLOCK_FOR, block_starts
from benchmarks.portable import Behaviour, Start
from benchmarks.runner import run_workload
from benchmarks.savina import PROGRAMS, Program
from benchmarks.subject import ActorsDriver

if TYPE_CHECKING:
    from collections.abc import Sequence

    from benchmarks.common import Tally

TINY = dataclasses.replace(QUICK, reps=1, program_reps=1, program_scale=0.01)
ACTORS = next(impl for impl in IMPLEMENTATIONS if impl.name == "actors-uvloop")


def run_program(program: Program) -> CaseResult:
    workload = Workload(f"savina-{program.name}", program.title, "program", program=program)
    (result,) = run_workload(workload, [ACTORS], TINY)
    return result


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_program_runs_and_checks_its_result(program: Program) -> None:
    result = run_program(program)
    assert result.error is None
    assert len(result.reps) == 1
    assert result.reps[0].metrics["ops_per_s"] > 0


class Liar(Behaviour):
    """Answers 42 whatever the size."""

    def __init__(self, n: int) -> None:
        self.n = n

    async def receive(self, message: Any) -> None:
        if type(message) is Start:
            self.ctx.finish(42)
            self.ctx.stop()


def test_a_wrong_answer_fails_the_case() -> None:
    liar = Program("liar", "answers 42", Liar, size=1000, ops=lambda n: n, expected=lambda n: n)
    result = run_program(liar)
    assert result.error is not None
    assert "CheckFailed" in result.error
    assert "returned 42" in result.error


def test_a_failed_case_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    pingpong = next(p for p in PROGRAMS if p.name == "pingpong")
    wrong = dataclasses.replace(pingpong, expected=lambda n: n + 1)
    workloads = tuple(
        dataclasses.replace(w, program=wrong) if w.name == "savina-pingpong" else w
        for w in cases.WORKLOADS
    )
    monkeypatch.setattr(bench_cli, "WORKLOADS", workloads)
    status = bench_cli.main(["--quick", "--only", "savina-pingpong:actors-uvloop"])
    assert status == 1


# -- multiloop: independent work on 1, 2 and 4 loops ------------------------------------------

MULTILOOP = next(w for w in cases.WORKLOADS if w.name == "multiloop")
MULTILOOP_IMPLS = [impl for impl in IMPLEMENTATIONS if impl.runs("multiloop")]


def test_multiloop_runs_on_1_2_and_4_loops() -> None:
    names = {impl.name for impl in MULTILOOP_IMPLS}
    assert {"actors-uvloop", "actors-uvloop-2loops", "actors-uvloop-4loops"} <= names
    assert {"queue-uvloop", "queue-uvloop-2loops", "queue-uvloop-4loops"} <= names
    tiny = dataclasses.replace(TINY, multiloop_n=2_000)
    results = run_workload(MULTILOOP, MULTILOOP_IMPLS, tiny)
    for result in results:
        assert result.skipped is None
        assert result.error is None, (result.implementation.name, result.error)
        assert result.n == 2_000
        assert len(result.reps) == 1
        assert result.reps[0].metrics["msgs_per_s"] > 0
    assert "| 4 |" in bench_report.render_multiloop(results)


class LosingDriver(ActorsDriver):
    """Unit 1's producer sends one message fewer than asked."""

    async def independent(self, counts: Sequence[int]) -> list[Tally]:
        return await super().independent([n - (i == 1) for i, n in enumerate(counts)])


def test_a_wrong_multiloop_count_fails_the_case() -> None:
    def make() -> LosingDriver:
        return LosingDriver(use_uvloop=True)

    losing = dataclasses.replace(ACTORS, name="losing", make=make)
    tiny = dataclasses.replace(TINY, multiloop_n=2_000)
    (result,) = run_workload(MULTILOOP, [losing], tiny)
    assert result.error is not None
    assert "CheckFailed: unit 1" in result.error


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_an_output_path_in_a_missing_directory_is_refused_before_the_run(
    option: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "out.file"
    status = bench_cli.main(["--quick", "--only", "spawn:actors-uvloop", option, str(target)])
    assert status == 2
    err = capsys.readouterr().err
    assert err.strip() == f"bench: {option} {target}: no such directory"  # and nothing ran


def test_the_scale_target_reads_the_worst_point_of_the_series() -> None:
    workload = next(w for w in cases.WORKLOADS if w.name == "scale")
    impl = next(i for i in IMPLEMENTATIONS if i.name == "actors-uvloop")
    result = CaseResult(workload, impl)
    assert bench_report.scale_flatness([result]) == (None, "")  # no series: not measured
    result.extra["series"] = [
        {"actors": 1.0, "msgs_per_s": 2_000_000.0},
        {"actors": 1_000.0, "msgs_per_s": 1_900_000.0},
        {"actors": 100_000.0, "msgs_per_s": 500_000.0},
    ]
    value, text = bench_report.scale_flatness([result])
    assert value == pytest.approx(0.25)
    assert text == "0.25x (at 100,000 actors)"
    verdicts = {t.text: v for t, _, _, v in bench_report.check_targets([result])}
    assert verdicts["scale: every actor count up to the largest >= 0.8x the rate with 1 actor"] == (
        "missed"
    )


# -- spawn-host: spawning from the application's own task ------------------------------------

SPAWN_HOST = next(w for w in cases.WORKLOADS if w.name == "spawn-host")
SPAWN_HOST_IMPLS = [impl for impl in IMPLEMENTATIONS if impl.runs("spawn-host")]
SPAWN_HOST_TARGETS = (
    "spawn from the host >= the asyncio.Queue actor's creation rate",
    "spawn from the host >= 0.5x a spawn on the actors' own loop (information)",
)


def test_spawn_host_compares_actors_with_the_queue_actor_and_the_on_loop_spawn() -> None:
    names = [impl.name for impl in SPAWN_HOST_IMPLS]
    assert names == ["actors-uvloop", "actors-uvloop-on-loop", "queue-uvloop"]
    tiny = dataclasses.replace(TINY, spawn_k=300)
    results = run_workload(SPAWN_HOST, SPAWN_HOST_IMPLS, tiny)
    for result in results:
        assert result.error is None, (result.implementation.name, result.error)
        assert result.n == 300
        assert result.reps[0].metrics["actors_per_s"] > 0
    rows = {row[1]: row for row in bench_report.table_rows(results)}
    assert rows["actors-uvloop"][5] == ""  # the subject: no ratio
    assert rows["queue-uvloop"][5].endswith("x")  # the peers: actors' rate over theirs
    assert rows["actors-uvloop-on-loop"][5].endswith("x")
    verdicts = {t.text: v for t, _, _, v in bench_report.check_targets(results)}
    for target in SPAWN_HOST_TARGETS:
        assert verdicts[target] in ("met", "missed")  # measured (no threshold is asserted)


def test_spawn_host_runs_in_a_fresh_process_per_implementation() -> None:
    from benchmarks.isolated import run_isolated

    assert "spawn-host" in bench_cli.ISOLATED
    tiny = dataclasses.replace(TINY, spawn_k=300, reps=2)
    result = CaseResult(SPAWN_HOST, ACTORS)
    run_isolated(result, tiny, lambda result: None)
    assert result.error is None
    assert result.n == 300
    assert [rep.n for rep in result.reps] == [300, 300]
    assert all(rep.metrics["actors_per_s"] > 0 for rep in result.reps)


# -- placement: the default ActorSystem() against workers=1, the pinned spread beside it -------

DEFAULT = next(impl for impl in IMPLEMENTATIONS if impl.name == cases.DEFAULT)
PINNED_2 = next(impl for impl in IMPLEMENTATIONS if impl.name == "actors-uvloop-2loops")
PINGPONG_APP = next(w for w in cases.WORKLOADS if w.name == "pingpong-app")
PLACEMENT_TARGETS = (
    *(f"savina {p.name}: default ActorSystem() >= 0.9x workers=1" for p in PROGRAMS),
    "ping-pong of two app-spawned actors: default ActorSystem() >= 0.9x workers=1",
)


def default_loops() -> int:
    """The worker loops of a default ActorSystem() here (constructed, never started)."""
    return actors.ActorSystem().workers


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_every_program_runs_on_the_default_system_and_pinned_round_robin(program: Program) -> None:
    workload = next(w for w in cases.WORKLOADS if w.name == f"savina-{program.name}")
    assert all(impl.runs(workload.name) for impl in (ACTORS, DEFAULT, PINNED_2))
    results = run_workload(workload, [ACTORS, DEFAULT, PINNED_2], TINY)
    for result in results:
        assert result.error is None, (result.implementation.name, result.error)
        (rep,) = result.reps
        assert rep.metrics["ops_per_s"] > 0
        assert "placement_moves" in rep.metrics  # the placement counters of the repetition
    one, default, pinned = (result.reps[0].metrics for result in results)
    assert one["loops"] == 1
    assert default["loops"] == default_loops()  # ActorSystem() with its own default
    assert pinned["loops"] == 2
    assert one["placement_moves"] == pinned["placement_moves"] == 0  # nothing may move


def test_pingpong_app_runs_on_one_loop_the_default_system_and_two_pinned_loops() -> None:
    impls = [impl for impl in IMPLEMENTATIONS if impl.runs("pingpong-app")]
    assert [impl.name for impl in impls] == ["actors-uvloop", cases.DEFAULT, "actors-uvloop-2loops"]
    tiny = dataclasses.replace(TINY, reps=2, seconds=0.01)
    results = run_workload(PINGPONG_APP, impls, tiny)
    for result in results:
        assert result.error is None, (result.implementation.name, result.error)
        assert result.n >= tiny.min_asks
        assert len(result.reps) == 2
        assert all(rep.metrics["msgs_per_s"] > 0 for rep in result.reps)
    one, default, pinned = results
    assert one.samples("same_loop") == [1.0, 1.0]
    assert pinned.samples("same_loop") == [0.0, 0.0]  # workers 0 and 1, for good
    assert pinned.samples("placement_moves") == [0.0, 0.0]
    assert default.samples("loops") == [default_loops()] * 2
    assert len(default.samples("same_loop")) == 2  # whether it converged is not asserted here
    table = bench_report.render_placement(results)
    assert "| pingpong-app |" in table
    assert "pingpong-app: the pair ended" in table
    verdicts = {t.text: v for t, _, _, v in bench_report.check_targets(results)}
    assert verdicts[PLACEMENT_TARGETS[-1]] in ("met", "missed")


def fake(workload: str, impl: Implementation, rate: float, **metrics: float) -> CaseResult:
    """A finished case with one repetition at ``rate``."""
    found = next(w for w in cases.WORKLOADS if w.name == workload)
    key = "msgs_per_s" if found.kind == "pingpong" else "ops_per_s"
    return CaseResult(found, impl, n=1, reps=[Rep(1, 1.0, {key: rate, **metrics})])


def test_the_placement_targets_divide_the_default_rate_by_the_one_loop_rate() -> None:
    results = [
        fake("savina-pingpong", ACTORS, 100_000.0, placement_moves=0, loops=1),
        fake("savina-pingpong", DEFAULT, 85_000.0, placement_moves=3, placement_refused_swap=1),
        fake("savina-pingpong", PINNED_2, 10_000.0, placement_moves=0),
        fake("pingpong-app", ACTORS, 200_000.0),
        fake("pingpong-app", DEFAULT, 190_000.0, same_loop=1.0, placement_moves=0),
    ]
    checked = {t.text: (text, v) for t, _, text, v in bench_report.check_targets(results)}
    assert checked[PLACEMENT_TARGETS[0]] == ("0.85x", "missed")
    assert checked[PLACEMENT_TARGETS[-1]] == ("0.95x", "met")
    assert checked[PLACEMENT_TARGETS[1]] == ("", "n/a")  # counting: not measured
    table = bench_report.render_placement(results)
    assert "| pingpong | 100 k | 85 k | 0.85x | moves 3, refused_swap 1 | 0.10x |" in table
    assert "| pingpong-app | 200 k | 190 k | 0.95x | none | - |" in table
    assert "| Savina, geometric mean |  |  | 0.85x |  | 0.10x |" in table
    assert "pingpong-app: the pair ended 1 of 1 repetitions on one loop" in table


# -- blocked-neighbour: actors beside a handler that blocks their loop ------------------------

BLOCKED_NEIGHBOUR = next(w for w in cases.WORKLOADS if w.name == "blocked-neighbour")
BLOCKED_TARGET = "blocked loop: p99 ask latency of actors beside it within 2x of an unblocked run"


def test_blocks_start_about_every_400_ms_and_end_within_the_asks() -> None:
    assert block_starts(0.29) == []  # too short for one block
    assert block_starts(0.3) == [pytest.approx(0.1)]
    starts = block_starts(2.0)
    assert starts == pytest.approx([0.1, 0.501, 0.902, 1.303, 1.704])
    assert all(at + BLOCK_FOR <= 2.0 for at in starts)


def test_blocked_neighbour_stays_cheap_in_quick() -> None:
    names = [w.name for w, _ in bench_cli.selected(None)]
    assert "blocked-neighbour" in names
    assert QUICK.blocked_asks * ASK_EVERY <= 0.5  # seconds per repetition, three variants


def test_blocked_neighbour_runs_unblocked_blocked_and_pinned() -> None:
    impls = [impl for impl in IMPLEMENTATIONS if impl.runs("blocked-neighbour")]
    assert [impl.name for impl in impls] == [cases.UNBLOCKED, cases.BLOCKED, cases.BLOCKED_PINNED]
    tiny = dataclasses.replace(TINY, blocked_asks=300)  # 0.3 s: one block, 0.1-0.3 s
    results = run_workload(BLOCKED_NEIGHBOUR, impls, tiny)
    for result in results:
        assert result.error is None, (result.implementation.name, result.error)
        assert result.n == 300
        (rep,) = result.reps
        assert 0 < rep.metrics["p50_us"] <= rep.metrics["p99_us"] <= rep.metrics["max_us"]
        assert 0 <= rep.metrics["late_share"] <= 1
        assert "placement_evacuations" in rep.metrics
        assert rep.metrics["loops"] >= 2
        assert "later_p99_us" not in rep.metrics  # one block: nothing after a second one
    unblocked, blocked, pinned = (result.reps[0].metrics for result in results)
    assert unblocked["blocked_s"] < BLOCK_FOR / 2  # asked for blocks of 0 s
    assert blocked["blocked_s"] >= BLOCK_FOR * 0.95  # time.sleep held the loop
    assert pinned["blocked_s"] >= BLOCK_FOR * 0.95
    assert pinned["away"] == pinned["placement_evacuations"] == 0  # pinned: nothing moves
    table = bench_report.render_blocked(results)
    assert "| unblocked |" in table
    assert "| blocked, pinned (no evacuation) |" in table
    verdicts = {t.text: v for t, _, _, v in bench_report.check_targets(results)}
    assert verdicts[BLOCKED_TARGET] in ("met", "missed")  # measured; no threshold asserted


def beside(impl: str, p99: float, **metrics: float) -> CaseResult:
    """A finished blocked-neighbour case with one repetition."""
    found = next(i for i in IMPLEMENTATIONS if i.name == impl)
    values = {
        "p50_us": 50.0,
        "p99_us": p99,
        "p999_us": p99,
        "max_us": p99,
        "late_share": 0.0,
        **metrics,
    }
    return CaseResult(BLOCKED_NEIGHBOUR, found, n=1, reps=[Rep(1, 1.0, values)])


def test_the_blocked_target_divides_the_blocked_p99_by_the_unblocked_p99() -> None:
    results = [
        beside(cases.UNBLOCKED, 200.0, placement_evacuations=0, away=0),
        beside(cases.BLOCKED, 300.0, placement_evacuations=4, away=4, late_share=0.05),
    ]
    checked = {t.text: (text, v) for t, _, text, v in bench_report.check_targets(results)}
    assert checked[BLOCKED_TARGET] == ("1.50x", "met")
    table = bench_report.render_blocked(results)
    assert "| unblocked | 50.0 | 200.0 | 1.00x | 200.0 | 200.0 | 0.0% | - | 0 | 0 |" in table
    assert "| blocked | 50.0 | 300.0 | 1.50x | 300.0 | 300.0 | 5.0% | - | 4 | 4 |" in table
    results[1] = beside(cases.BLOCKED, 100_000.0, later_p99_us=250.0)
    checked = {t.text: (text, v) for t, _, text, v in bench_report.check_targets(results)}
    assert checked[BLOCKED_TARGET] == ("500.00x", "missed")
    table = bench_report.render_blocked(results)
    assert "| 500.00x | 100,000.0 | 100,000.0 | 0.0% | 250.0 | - | - |" in table


TRACED = next(impl for impl in IMPLEMENTATIONS if impl.name == "actors-uvloop-traced")


@pytest.mark.parametrize("name", ["tell-same", "ask-same"])
def test_the_traced_row_runs_with_tracing_on(name: str) -> None:
    workload = next(w for w in cases.WORKLOADS if w.name == name)
    tiny = dataclasses.replace(TINY, seconds=0.02)
    (result,) = run_workload(workload, [TRACED], tiny)
    assert result.error is None
    assert result.reps


def test_the_inspector_cost_benchmark_imports_the_workload_of_the_inspector_example() -> None:
    # One definition of the loaded node's actors (docs/howto/inspector.md quotes both runs).
    for needed in ("nats", "httpx", "uvicorn"):
        pytest.importorskip(needed)
    inspect_cost = importlib.import_module("benchmarks.inspect_cost")
    example = importlib.import_module("examples.howto.inspector_scale")
    for name in ("Driver", "Leaf", "Sink", "tell_load"):
        assert getattr(inspect_cost, name) is getattr(example, name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", [*tell_instructions.VARIANTS, "list"])
def test_every_instruction_count_variant_runs_its_messages(variant: str) -> None:
    # Each variant runs in a child process (under callgrind when measured; here without):
    # it turns the collector off and starts its own loop, neither of which this process
    # should do.
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.tell_instructions", "--variant", variant, "300"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("program", savina_instructions.DEFAULT_PROGRAMS)
@pytest.mark.parametrize("implementation", savina_instructions.IMPLEMENTATIONS)
def test_every_savina_instruction_count_variant_runs_and_checks(
    program: str, implementation: str
) -> None:
    # In a child process, as under callgrind: the variant turns the collector off and runs
    # its own loops; it exits non-zero if the program's result is wrong.
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.savina_instructions", "--variant"]
    done = subprocess.run(
        [*command, program, implementation, "2100"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=50,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_an_unknown_instruction_count_variant_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown variant 'nope'"):
        tell_instructions.run_variant("nope", 1)


@pytest.mark.parametrize(
    "case",
    ["notices-async", "notices-plain", "notices-none", "notices-plain-spread", "ticks-traced"],
)
def test_the_drain_signals_cases_run(case: str) -> None:
    from benchmarks.drain_signals import run_case

    assert run_case(case, 20) > 0


@pytest.mark.parametrize("kind", ["sync", "async", "queue"])
def test_the_life_cost_program_lives_its_lives(kind: str) -> None:
    # `python -m benchmarks.life_cost` is what docs/benchmarks.md counts a life with: it
    # must keep running (a few lives of each kind, without valgrind).
    import asyncio

    import uvloop

    from benchmarks import life_cost

    if kind == "queue":
        uvloop.run(life_cost.live_queue(5))
    else:
        asyncio.run(life_cost.live(5, kind == "sync"))
