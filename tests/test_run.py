"""`actors.run` and the process-level behaviour around it: the loop it picks, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import actors

ROOT = Path(__file__).resolve().parent.parent


def test_run_returns_the_result_of_main() -> None:
    async def main(a: int, b: int) -> int:
        return a + b

    assert actors.run(main, 2, 3) == 5


def test_run_uses_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")

    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert actors.run(main).startswith("uvloop")
    assert actors.run(main, use_uvloop=False).startswith("asyncio")


def test_run_on_trio() -> None:
    pytest.importorskip("trio")

    async def main() -> str:
        import sniffio

        return sniffio.current_async_library()

    assert actors.run(main, backend="trio") == "trio"


_CTRL_C_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import msgspec
    import actors

    class Ping(msgspec.Struct, frozen=True):
        pass

    class Sleeper(actors.Actor[Ping]):
        async def receive(self, message: Ping) -> None:
            pass

        async def on_stop(self) -> None:
            print("on_stop ran", flush=True)

    async def main() -> None:
        import anyio
        async with actors.ActorSystem(workers=2) as system:
            for _ in range(4):
                await system.spawn(Sleeper)
            print("ready", flush=True)
            await anyio.sleep_forever()

    try:
        actors.run(main, backend=sys.argv[1])
    except KeyboardInterrupt:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("actors-")]
        print("interrupted; actor threads left:", alive, flush=True)
        sys.exit(130)
    """
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_shuts_the_system_down_cleanly(backend: str, tmp_path: Path) -> None:
    """SIGINT while the host sleeps: every actor's on_stop runs and no worker thread is left."""
    if backend == "trio":
        pytest.importorskip("trio")
    script = tmp_path / "ctrl_c.py"
    script.write_text(_CTRL_C_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, str(script), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"  # the system is up
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert out.count("on_stop ran") == 4, out + err
    assert "actor threads left: []" in out, out + err
