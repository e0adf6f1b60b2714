#!/usr/bin/env python3
"""Set up a virtual environment and run the project's everyday tasks in it.

Standard library only, so a fresh clone needs nothing but Python 3.11+:

    python3 dev.py test [PYTEST_ARGS...]    run the test suite
    python3 dev.py demo [ARGS...]           run examples/demo.py
    python3 dev.py lint                     ruff check, ruff format --check, pyright, mypy --strict
    python3 dev.py docs                     mkdocs build --strict (into site/)
    python3 dev.py bench [ARGS...]          python -m actors bench (the benchmark suite)
    python3 dev.py run SCRIPT [ARGS...]     any Python file, with the venv's interpreter

`--python EXE` (before the command) picks the interpreter for the venv. The default venv is
`.venv`, built with the interpreter running this script; another interpreter gets its own
`.venv-X.Y`. The venv installs `.[dev]` in editable mode and reinstalls only when
pyproject.toml changes (its sha256 is kept in a stamp file inside the venv). Commands run
from the repository root, so paths in ARGS are relative to it. The exit code is the tool's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
LINT_TARGETS = ("actors", "tests", "examples", "benchmarks", "dev.py")
COMMANDS = ("test", "demo", "lint", "docs", "bench", "run")


def call(cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Run `cmd` from the repository root and return its exit code."""
    return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode


def venv_dir(python: str | None) -> Path:
    if python is None:
        return ROOT / ".venv"
    probe = [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
    except OSError as exc:
        sys.exit(f"dev.py: cannot run {python!r}: {exc}")
    if done.returncode != 0:
        sys.exit(f"dev.py: cannot run {python!r}: {done.stderr.strip()}")
    return ROOT / f".venv-{done.stdout.strip()}"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv(python: str | None) -> Path:
    """Create the venv if needed and (re)install the project when pyproject.toml changed."""
    venv = venv_dir(python)
    py = venv_python(venv)
    if not py.exists():
        print(f"dev.py: creating {venv.name}", file=sys.stderr)
        if call([python or sys.executable, "-m", "venv", str(venv)]) != 0:
            sys.exit(f"dev.py: could not create {venv.name}")
    stamp = venv / "dev-py.stamp"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        print(f"dev.py: installing .[dev] into {venv.name}", file=sys.stderr)
        pip = [str(py), "-m", "pip", "--disable-pip-version-check"]
        install = [*pip, "install", "--quiet", "--editable", ".[dev]"]
        # An old pip can fail on a modern build backend: upgrade it and retry once.
        if call(install) != 0 and (
            call([*pip, "install", "--quiet", "--upgrade", "pip"]) != 0 or call(install) != 0
        ):
            sys.exit(f"dev.py: installing into {venv.name} failed (see pip's errors above)")
        stamp.write_text(digest + "\n")
    return venv


def venv_env(venv: Path) -> dict[str, str]:
    """The environment of an activated venv: tools such as pyright look for `python` on PATH."""
    env = dict(os.environ, VIRTUAL_ENV=str(venv))
    env["PATH"] = os.pathsep.join([str(venv_python(venv).parent), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def lint(py: str, env: dict[str, str]) -> int:
    targets = [name for name in LINT_TARGETS if (ROOT / name).exists()]
    codes = [
        call([py, "-m", "ruff", "check", *targets], env),
        call([py, "-m", "ruff", "format", "--check", *targets], env),
        # -p: this repository's pyproject.toml, never a pyrightconfig.json in a parent folder.
        call([py, "-m", "pyright", "-p", str(ROOT)], env),
        # Both checkers users run: the package must be clean under mypy --strict as well.
        call([py, "-m", "mypy", "--strict", "actors"], env),
    ]
    return next((code for code in codes if code), 0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="dev.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=f"commands: {', '.join(COMMANDS)}; see the module docstring of dev.py",
    )
    parser.add_argument("--python", metavar="EXE", help="interpreter for the venv")
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed on to the tool")
    opts = parser.parse_args(argv)
    args: list[str] = opts.args

    if opts.command == "run" and not args:
        parser.error("run needs a SCRIPT")
    venv = ensure_venv(opts.python)
    py, env = str(venv_python(venv)), venv_env(venv)
    match opts.command:
        case "test":
            return call([py, "-m", "pytest", *args], env)
        case "demo":
            return call([py, "examples/demo.py", *args], env)
        case "lint":
            return lint(py, env)
        case "docs":
            env = {**env, "NO_MKDOCS_2_WARNING": "1"}  # a banner about mkdocs' future, not ours
            return call([py, "-m", "mkdocs", "build", "--strict", "--site-dir", "site", *args], env)
        case "bench":
            return call([py, "-m", "actors", "bench", *args], env)
        case _:  # run
            return call([py, *args], env)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
