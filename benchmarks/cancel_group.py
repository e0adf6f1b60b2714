"""How fast a cancelled ask reaches the handler answering it: one actor, or a group (issue 18).

Three member nodes serve the public name ``member`` (each with an actor that opts in to
`cancel_abandoned` and parks until cancelled); a fourth node asks. Each run asks, waits
until a member's handler has started, cancels the ask, and notes the time until that
handler's cancellation arrived. Through a `GroupRef` the cancel notice goes to the name's
notice subject, heard by every member (see ``actors/cluster/_asking.py``); through a
`RemoteRef` bound to one member it follows the ask on that actor's own subject. Both kinds
are interleaved, run by run, so that the machine's load weighs on both alike.

    python -m benchmarks.cancel_group [--runs N] [--url nats://...]

Prints, for each kind, the median, p90 and max latency, and the median ratio group / one.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import anyio

import actors
from actors.cluster import Nats, lookup_group, register_message

__all__ = ("main", "measure")

ASK_TIMEOUT = 30.0  # a cancellation that waited for the deadline would show it


@register_message(name="bench.cancel_group.Park")
class Park(actors.Request[str], frozen=True):
    run: int


class _ThreadEvent:
    """An event set from a member's worker thread and awaited on the host loop."""

    def __init__(self) -> None:
        self._flag = threading.Event()

    def set(self) -> None:
        self._flag.set()

    async def wait(self) -> None:
        while not self._flag.is_set():  # noqa: ASYNC110 - set from another thread
            await anyio.sleep(0.0005)


class Notes:
    """When each run's handler started and when its cancellation arrived (one process)."""

    def __init__(self) -> None:
        self.started: dict[int, _ThreadEvent] = {}
        self.cancelled: dict[int, float] = {}


NOTES = Notes()


class Member(actors.Actor[Park]):
    cancel_abandoned = True

    async def receive(self, message: Park) -> str:
        NOTES.started[message.run].set()
        try:
            await anyio.sleep_forever()
        finally:
            NOTES.cancelled[message.run] = time.monotonic()
        return "never"  # pragma: no cover


async def _one_run(ref: Any, run: int) -> float:
    started = NOTES.started[run] = _ThreadEvent()
    cancelled_at = 0.0
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                await ref.ask(Park(run), timeout=ASK_TIMEOUT)

            tg.start_soon(ask)
            await started.wait()
            cancelled_at = time.monotonic()
            scope.cancel()
    with anyio.fail_after(ASK_TIMEOUT / 2):
        while run not in NOTES.cancelled:  # noqa: ASYNC110 - noted by the member's loop
            await anyio.sleep(0.0005)
    return NOTES.cancelled[run] - cancelled_at


async def measure(url: str, prefix: str, runs: int) -> tuple[list[float], list[float]]:
    """Latencies in seconds of ``runs`` cancelled asks: (to one actor, to the group)."""

    def node(name: str) -> Nats:
        return Nats(url, node=name, prefix=prefix, heartbeat_interval=0.2)

    one: list[float] = []
    group: list[float] = []
    async with (
        actors.ActorSystem(workers=1, name="m1", cluster=node("m1")) as m1,
        actors.ActorSystem(workers=1, name="m2", cluster=node("m2")) as m2,
        actors.ActorSystem(workers=1, name="m3", cluster=node("m3")) as m3,
        actors.ActorSystem(workers=1, name="asker", cluster=node("asker")) as asker,
    ):
        for member in (m1, m2, m3):
            await member.spawn(Member, name="member", public=True)
        bound = await asker.lookup_remote("member", Park)  # bound to one member
        named = await lookup_group(asker, "member", Park)
        for run in range(runs):
            one.append(await _one_run(bound, 2 * run))
            group.append(await _one_run(named, 2 * run + 1))
    return one, group


def _describe(kind: str, latencies: list[float]) -> str:
    ms = sorted(latency * 1000 for latency in latencies)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    return f"{kind}: median {statistics.median(ms):.2f} ms, p90 {p90:.2f} ms, max {ms[-1]:.2f} ms"


async def main_async(url: str | None, runs: int) -> None:
    from benchmarks.cluster import nats_server

    if url is None:
        with nats_server() as started:
            one, group = await measure(started, "cg", runs)
    else:
        one, group = await measure(url, "cg", runs)
    print(f"cancel -> the answering handler cancelled, {runs} runs each (interleaved)")
    print(_describe("one actor (RemoteRef)", one))
    print(_describe("a group of 3 (GroupRef)", group))
    ratio = statistics.median(g / o for g, o in zip(group, one, strict=True))
    print(f"group / one, median of the run-by-run ratios: {ratio:.2f}x")


def main() -> None:
    from benchmarks.cancel_chain import cli

    cli("cancel-to-cancellation latency, one actor vs a group", main_async, 30)


if __name__ == "__main__":
    main()
