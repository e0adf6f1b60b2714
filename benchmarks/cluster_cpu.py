"""CPU time per remote tell, on the sending node and on the owning node.

Run as ``python -m benchmarks.cluster_cpu`` (``--producers 1,4``, ``--tells``, ``--reps``,
``--url``). The workload is ``benchmarks.cluster``'s remote tell: producer actors on a
worker loop of this process send ``Inc`` through the `RemoteRef` of the counter that
``benchmarks.cluster_node`` serves in a child process. What it reports is not the rate but
the CPU seconds each process spends per tell (this process from ``getrusage``, the child
from ``/proc/<pid>/stat``; all threads of each), the medians over the repetitions after a
warm-up (``--spread``: the producers alternate between two worker loops, so that two
threads hand tells to the cluster loop, instead of one). On a shared machine the rate
swings with the load; the CPU a tell costs much less, which makes this the steadier
measure of a change to the per-message Python of the remote path. Every repetition
checks the counter's exact count and sum. Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
from typing import TYPE_CHECKING

import actors

from .cluster import RemoteDriver, nats_server, serving
from .common import Setup, check_tally, median

if TYPE_CHECKING:
    import subprocess


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_of(process: subprocess.Popen[bytes]) -> float:
    """User and system seconds of ``process`` so far (all its threads)."""
    with open(f"/proc/{process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_per_tell(
    url: str,
    *,
    producers: int,
    tells: int,
    reps: int,
    use_uvloop: bool = True,
    spread: bool = False,
) -> tuple[list[float], list[float]]:
    """Microseconds of CPU per tell, of this process and of the serving one, per rep."""
    counts = [tells // producers] * producers
    sender: list[float] = []
    owner: list[float] = []
    async with serving(url, use_uvloop) as process:
        driver = RemoteDriver(url, use_uvloop, spread=spread)
        await driver.start(Setup("same", producers))
        try:
            check_tally(
                await driver.tell([c // 10 or 1 for c in counts]), [c // 10 or 1 for c in counts]
            )
            for _ in range(reps):
                mine, theirs = _own_cpu(), _cpu_of(process)
                check_tally(await driver.tell(counts), counts)
                sender.append((_own_cpu() - mine) / sum(counts) * 1e6)
                owner.append((_cpu_of(process) - theirs) / sum(counts) * 1e6)
        finally:
            await driver.close()
    return sender, owner


async def _table(url: str, producers: list[int], tells: int, reps: int, spread: bool) -> str:
    rows = [
        "| producers | sender: CPU per tell | owner: CPU per tell |",
        "|--:|--:|--:|",
    ]
    for count in producers:
        sender, owner = await cpu_per_tell(
            url, producers=count, tells=tells, reps=reps, spread=spread
        )
        rows.append(f"| {count} | {median(sender):.2f} µs | {median(owner):.2f} µs |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_cpu",
        description="CPU per remote tell on the sending and the owning node (medians)",
    )
    parser.add_argument("--url", help="a running NATS server (default: start nats-server)")
    parser.add_argument("--producers", default="1,4", help="comma-separated (default 1,4)")
    parser.add_argument("--tells", type=int, default=100_000, help="per repetition (100000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--spread", action="store_true", help="producers on workers 0 and 1 (default: all on 1)"
    )
    args = parser.parse_args(argv)
    producers = [int(p) for p in args.producers.split(",")]
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server())
        print(actors.run(_table, url, producers, args.tells, max(1, args.reps), args.spread))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
