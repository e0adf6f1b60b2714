"""Homes for actors: worker event loops in their own threads, and the host's loop.

Each worker is one thread running one event loop (uvloop when installed, else asyncio).
Idle loops sleep in their selector: no polling, no timers of ours, so an idle worker costs
no CPU. Work reaches a loop from other threads only through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Final

from ._oneshot import Latch

if TYPE_CHECKING:
    from ._parking import Parking

__all__ = ("HOST", "Home", "HostHome", "WorkerHome", "new_event_loop", "uvloop_available")

logger = logging.getLogger("actors")

HOST: Final = "host"
_LEFTOVER_GRACE: Final = 1.0  # seconds leftover tasks get to unwind when a worker stops


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:
        return False
    return True


def new_event_loop(use_uvloop: bool | None) -> asyncio.AbstractEventLoop:
    """uvloop when ``use_uvloop`` is True, or None and uvloop is installed; else asyncio."""
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Home:
    """An event loop that actors live on, with the id of the thread that runs it.

    ``lag`` and ``max_lag`` (seconds a callback posted from another thread waited before it
    ran) are written by the watchdog's probe, on the loop's own thread.
    """

    loop: asyncio.AbstractEventLoop
    thread_id: int
    label: str
    lag: float | None = None
    max_lag: float = 0.0
    parking: Parking | None = None  # made by the first actor that parks here (home thread)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label}>"


class HostHome(Home):
    """The host application's own asyncio loop (placement="host")."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.label = HOST


class WorkerHome(Home):
    """A worker thread running its own event loop."""

    def __init__(self, index: int, use_uvloop: bool | None, system_name: str) -> None:
        self.index = index
        self.label = str(index)
        self.thread_id = 0
        self._use_uvloop = use_uvloop
        self._lock = threading.Lock()  # guards loop creation against an early request_stop
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = Latch()
        self._done = Latch()
        self._thread = threading.Thread(
            target=self._main, name=thread_name(system_name, f"worker-{index}"), daemon=True
        )

    async def start(self) -> None:
        self._thread.start()
        error = await self._ready.wait()
        if error is not None:
            raise error

    def _main(self) -> None:
        try:
            loop = new_event_loop(self._use_uvloop)
        except BaseException as error:
            self._ready.set(error)
            self._done.set()
            raise
        with self._lock:
            self.loop = self._loop = loop
            self.thread_id = threading.get_ident()
            if self._stop_requested:  # abandoned while starting: run one idle iteration only
                loop.stop()
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set, None)
        try:
            loop.run_forever()
            _cancel_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:
            logger.exception("worker loop %s crashed", self.label)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            self._done.set()

    def request_stop(self) -> None:
        """Ask the loop to stop; safe before it exists and after it closed. Any thread."""
        with self._lock:
            self._stop_requested = True
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)

    async def wait_stopped(self) -> None:
        if self._thread.ident is None:  # never started
            return
        await self._done.wait()
        self._thread.join()  # the thread is past its last statement: this returns at once


def thread_name(system_name: str, role: str) -> str:
    """``actors-worker-0`` for the default system, ``actors-billing-worker-0`` for another."""
    prefix = "actors" if system_name == "actors" else f"actors-{system_name}"
    return f"{prefix}-{role}"


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    # Tasks still alive here were started by user code and never awaited to the end; every
    # actor has already stopped. Cancel them and let them unwind, as asyncio.run does.
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    # Bounded: a task that swallows cancellation must not keep the worker thread alive.
    loop.run_until_complete(asyncio.wait(tasks, timeout=_LEFTOVER_GRACE))
