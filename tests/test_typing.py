"""Runs pyright and mypy on tests/typing/: the typed API must infer what it promises and
reject misuse. A line of bad_types.py marked ``# error: <pyright rules>`` must be rejected by
both checkers, unless it also says ``(pyright only)``: mypy infers the reply type of an
``ask`` from the assignment's declared type first, so it falls back to the permissive
overload there."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPING = Path(__file__).resolve().parent / "typing"
GOOD = TYPING / "check_types.py"
BAD = TYPING / "bad_types.py"

MARKER = re.compile(r"#\s*error:\s*(?P<rules>[\w, ]+?)(?P<pyright_only>\s+\(pyright only\))?$")

pytestmark = [
    # The first run of the pyright package may download its node runtime.
    pytest.mark.timeout(300),
]
needs_pyright = pytest.mark.skipif(
    importlib.util.find_spec("pyright") is None, reason="pyright is not installed"
)
needs_mypy = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed"
)


@pytest.fixture(scope="module")
def diagnostics() -> dict[Path, list[dict[str, Any]]]:
    """pyright's errors per file, from one run over both files with the project's settings."""
    command = [
        sys.executable,
        "-m",
        "pyright",
        "--outputjson",
        "--pythonpath",
        sys.executable,
        str(GOOD),
        str(BAD),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"pyright gave no JSON report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    assert report["summary"]["filesAnalyzed"] == 2, report["summary"]
    found: dict[Path, list[dict[str, Any]]] = {GOOD: [], BAD: []}
    for item in report["generalDiagnostics"]:
        if item["severity"] == "error":
            found[Path(item["file"]).resolve()].append(item)
    return found


def describe(item: dict[str, Any]) -> str:
    line = item["range"]["start"]["line"] + 1
    return f"{Path(item['file']).name}:{line}: {item.get('rule')}: {item['message']}"


@needs_pyright
def test_typed_api_checks_clean(diagnostics: dict[Path, list[dict[str, Any]]]) -> None:
    errors = [describe(item) for item in diagnostics[GOOD]]
    assert errors == [], "\n".join(errors)


@needs_pyright
def test_misuse_is_reported_exactly_where_marked(
    diagnostics: dict[Path, list[dict[str, Any]]],
) -> None:
    expected: dict[int, set[str]] = {}
    for number, text in enumerate(BAD.read_text().splitlines(), start=1):
        if match := MARKER.search(text):
            expected[number] = {rule.strip() for rule in match["rules"].split(",")}
    assert len(expected) >= 8, "bad_types.py lost its markers"
    reported: dict[int, set[str]] = {}
    for item in diagnostics[BAD]:
        reported.setdefault(item["range"]["start"]["line"] + 1, set()).add(item.get("rule", ""))
    unexpected = [
        describe(item)
        for item in diagnostics[BAD]
        if item["range"]["start"]["line"] + 1 not in expected
    ]
    assert unexpected == [], "errors on lines not marked '# error:':\n" + "\n".join(unexpected)
    missing = {line: rules - reported.get(line, set()) for line, rules in expected.items()}
    missing = {line: rules for line, rules in missing.items() if rules}
    assert missing == {}, f"marked lines pyright did not reject (line: missing rules): {missing}"


def marked_lines(*, for_mypy: bool) -> set[int]:
    lines: set[int] = set()
    for number, text in enumerate(BAD.read_text().splitlines(), start=1):
        match = MARKER.search(text)
        if match and not (for_mypy and match["pyright_only"]):
            lines.add(number)
    return lines


@needs_mypy
def test_mypy_agrees() -> None:
    """mypy --strict: the good file is clean, and misuse is rejected on the marked lines."""
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-error-summary",
        "--hide-error-context",
        "--no-incremental",
        str(GOOD),
        str(BAD),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    in_good = [line for line in errors if line.startswith(str(GOOD.relative_to(ROOT)))]
    assert in_good == [], "\n".join(in_good)
    bad_name = str(BAD.relative_to(ROOT))
    reported = {int(line.split(":")[1]) for line in errors if line.startswith(bad_name)}
    others = [
        line for line in errors if not line.startswith((bad_name, str(GOOD.relative_to(ROOT))))
    ]
    assert others == [], "\n".join(others)  # e.g. errors inside actors/ itself
    assert reported == marked_lines(for_mypy=True), done.stdout
