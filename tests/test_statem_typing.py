"""pyright and mypy on tests/typing/statem_*.py: typed state machines infer what they promise
and reject a transition to a non-state, a handler of the wrong messages, a handler that
returns a state instead of a transition, and an override of the machine's own hooks.

As tests/test_typing.py: a line of statem_bad.py marked ``# error: <pyright rules>`` must be
rejected by both checkers (by pyright alone if it also says ``(pyright only)``), and no other
line may be."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = ROOT / "tests" / "typing" / "statem_good.py"
BAD = ROOT / "tests" / "typing" / "statem_bad.py"
MARKER = re.compile(r"#\s*error:\s*(?P<rules>[\w, ]+?)(?P<pyright_only>\s+\(pyright only\))?$")

pytestmark = pytest.mark.timeout(300)  # the first pyright run may fetch its node runtime


def markers(*, for_mypy: bool) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for number, text in enumerate(BAD.read_text(encoding="utf-8").splitlines(), start=1):
        match = MARKER.search(text)
        if match and not (for_mypy and match["pyright_only"]):
            found[number] = {rule.strip() for rule in match["rules"].split(",")}
    return found


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )


@pytest.mark.skipif(importlib.util.find_spec("pyright") is None, reason="no pyright")
def test_pyright_accepts_the_good_and_rejects_exactly_the_marked() -> None:
    pyright = [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", sys.executable]
    done = run([*pyright, str(GOOD), str(BAD)])
    report = json.loads(done.stdout)
    assert report["summary"]["filesAnalyzed"] == 2, report["summary"]
    errors = [item for item in report["generalDiagnostics"] if item["severity"] == "error"]
    reported: dict[tuple[str, int], set[str]] = {}
    for item in errors:
        key = (Path(item["file"]).name, item["range"]["start"]["line"] + 1)
        reported.setdefault(key, set()).add(item.get("rule", ""))
    expected = {(BAD.name, line): rules for line, rules in markers(for_mypy=False).items()}
    assert len(expected) >= 8, "statem_bad.py lost its markers"
    assert reported == expected, json.dumps(errors, indent=1)


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="no mypy")
def test_mypy_agrees() -> None:
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--hide-error-context"]
    done = run([*mypy, "--no-incremental", str(GOOD), str(BAD)])
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    bad = str(BAD.relative_to(ROOT))
    others = [line for line in errors if not line.startswith(bad)]
    assert others == [], "\n".join(others)
    reported = {int(line.split(":")[1]) for line in errors}
    assert reported == set(markers(for_mypy=True)), done.stdout
