"""Runs pyright on tests/typing/: the typed API must infer what it promises and reject misuse."""

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

MARKER = re.compile(r"#\s*error:\s*(?P<rules>[\w, ]+)$")

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("pyright") is None, reason="pyright is not installed"
    ),
    # The first run of the pyright package may download its node runtime.
    pytest.mark.timeout(300),
]


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


def test_typed_api_checks_clean(diagnostics: dict[Path, list[dict[str, Any]]]) -> None:
    errors = [describe(item) for item in diagnostics[GOOD]]
    assert errors == [], "\n".join(errors)


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
