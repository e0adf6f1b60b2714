"""What a remote tell costs its caller's thread before it is handed on, in ns per tell.

Run as ``python -m benchmarks.cluster_caller`` (``--reps``, ``--url``). It joins a serving
node (``benchmarks.cluster_node``, in a child process) and times, with ``timeit`` in this
process, the checks and encoding `RemoteRef.send` does in its caller's thread for one
``Inc`` before the tell joins the ref's stream: `Outbox.prepare_tell`, or in a tree from
before it (which ``send`` then called ``_send_parts``, the whole envelope encoded) that.
Nothing is sent. To compare two trees, run this file in each (copy it into the older one):
the figure is the median of ``--reps`` timings of 20,000 calls, which a loaded machine
moves far less than a throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import timeit
from typing import Any

import actors
from actors.cluster import Nats, RemoteRef

from .cluster import nats_server, serving
from .cluster_node import NAME
from .common import Inc, median

_CALLS = 20_000


async def caller_ns(url: str, reps: int) -> list[float]:
    """ns per tell of the caller's part of a pipelined remote send, per timing."""
    async with serving(url, True):
        cluster = Nats(url, node="bench-caller", prefix="bench")
        async with actors.ActorSystem(workers=1, name="bench-caller", cluster=cluster) as system:
            ref = await system.lookup_remote(NAME, timeout=10.0)
            assert isinstance(ref, RemoteRef)
            outbox: Any = ref._courier  # pyright: ignore[reportPrivateUsage, reportUnknownMemberType]
            message = Inc(5)
            prepare = getattr(outbox, "prepare_tell", None)
            if prepare is not None:

                def call() -> object:
                    return prepare(ref, message, None)

            else:  # the code before `prepare_tell`

                def call() -> object:
                    return outbox._send_parts(ref, message, None)

            return [timeit.timeit(call, number=_CALLS) / _CALLS * 1e9 for _ in range(reps)]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_caller",
        description="ns per remote tell on its caller's thread, before it is handed on",
    )
    parser.add_argument("--url", help="a running NATS server (default: start nats-server)")
    parser.add_argument("--reps", type=int, default=15, help="timings (default 15)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server())
        times = actors.run(caller_ns, url, max(1, args.reps))
    print(f"caller's checks and encoding: {median(times):,.0f} ns per tell (min {min(times):,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
