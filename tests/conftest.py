"""Fixtures shared by every test: the anyio backends, crash/hang dumps, thread-leak checks."""

from __future__ import annotations

import faulthandler
import importlib.util
import os
import signal
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

_stack_dump_file: IO[str] | None = None


def _missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


# Defined here rather than relying on the anyio plugin's default, which changed across versions.
# Module scope, like the plugin's own fixture, so module-scoped async fixtures keep working.
@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
        pytest.param(
            ("asyncio", {"use_uvloop": True}),
            id="uvloop",
            marks=pytest.mark.skipif(_missing("uvloop"), reason="uvloop is not installed"),
        ),
        pytest.param(
            "trio",
            id="trio",
            marks=pytest.mark.skipif(_missing("trio"), reason="trio is not installed"),
        ),
    ],
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


def pytest_configure(config: pytest.Config) -> None:
    # pytest's faulthandler plugin normally enables crash dumps already; make sure of it.
    if not faulthandler.is_enabled():
        faulthandler.enable()
    # `kill -USR1 <pid>` dumps every thread's stack of a run that looks stuck, without waiting
    # for pytest-timeout. Output capturing is suspended here, so the copy is the real stderr.
    global _stack_dump_file
    if hasattr(signal, "SIGUSR1") and _stack_dump_file is None:
        _stack_dump_file = os.fdopen(os.dup(sys.stderr.fileno()), "w")
        faulthandler.register(signal.SIGUSR1, file=_stack_dump_file, all_threads=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _stack_dump_file
    if _stack_dump_file is not None:
        faulthandler.unregister(signal.SIGUSR1)
        _stack_dump_file.close()
        _stack_dump_file = None


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Fail a test that leaves one of the framework's threads (named `actors-*`) running."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    leaked: list[threading.Thread] = []
    for thread in threading.enumerate():
        if thread in before or not thread.name.startswith("actors-"):
            continue
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread)
    assert not leaked, f"threads still running after the test: {leaked}"


@pytest.fixture
def spawned_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the actors a run task (or any task of the cell) was started for: a
    drain's work must add none (tests/test_drain.py, tests/test_drain_signals.py)."""
    from actors._cell import Cell

    paths: list[str] = []
    original = Cell._spawn_task  # pyright: ignore[reportPrivateUsage]

    def counting(cell: Cell, coro: Any) -> None:
        paths.append(cell.path)
        original(cell, coro)

    monkeypatch.setattr(Cell, "_spawn_task", counting)
    return paths
