"""The files in examples/ and the README's example run as documented: exit code 0 and the
lines the docs promise."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run_example(name: str | Path, *args: str) -> str:
    """Run ``examples/<name>`` (or a path) with this interpreter; return its checked stdout."""
    env = dict(os.environ)
    # `import actors` must find this checkout even when the package is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],  # an absolute `name` replaces EXAMPLES
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    report = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"{name} exited with {done.returncode}\n{report}"
    return done.stdout


def test_quickstart() -> None:
    # Deterministic: every line is sequenced by an await in main (spawn waits for on_start,
    # ask for the reply, stop for on_stop).
    assert run_example("quickstart.py").splitlines() == [
        "greeter: started",
        "french: started",
        "greeter: hello, Ada",
        "greeter counted 1",
        "french: bonjour, Grace",
        "french counted 1",
        "greeter: stopped after 1 greeting(s)",
        "greeter is stopped: send raised ActorStopped",
        "french: stopped after 1 greeting(s)",
        "done",
    ]


def test_demo_defaults() -> None:
    out = run_example("demo.py")
    assert "orders service: 4 worker loops, 8 workers" in out
    # Round-robin placement: the aggregator took loop 0, the workers follow on 1, 2, 3, 0, ...
    for i in range(8):
        assert re.search(rf"worker-{i} +thread actors-worker-{(i + 1) % 4} ", out), out
    # 200 orders into 8 mailboxes of 4 with slow workers: try_send must have been refused.
    assert re.search(r"try_send refused [1-9]\d* with MailboxFull", out), out
    assert "then send waited for room: producers blocked" in out
    assert "plain thread 'phone-client' (no event loop)" in out
    assert "blocking_ask  -> phone: 10 orders, $268.55" in out
    assert "a late order raised ActorStopped and came back: Order(id=210" in out
    assert "workers drained their mailboxes: 210 of 210 processed, none lost" in out
    assert "orders 210, revenue $5,699.55" in out
    assert out.rstrip().endswith("shut down cleanly")


@pytest.mark.parametrize(("workers", "messages"), [(1, 5), (3, 120)])
def test_demo_options(workers: int, messages: int) -> None:
    out = run_example("demo.py", "--workers", str(workers), "--messages", str(messages))
    total = messages + 10
    assert f"orders service: {workers} worker loops, {2 * workers} workers" in out
    assert f"workers drained their mailboxes: {total} of {total} processed, none lost" in out
    assert f"orders {total}, revenue $" in out


def test_demo_rejects_bad_options() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--workers", "0"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers and --messages must be at least 1" in done.stderr


def test_readme_example(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no python code block"
    script = tmp_path / "readme_example.py"
    script.write_text(match.group(1), encoding="utf-8")
    assert run_example(script).splitlines() == ["hello, Ada", "1"]
