"""The cost of metrics: same-loop tell with handler timing off and on, interleaved.

Run: python -m benchmarks.metrics_cost [--reps N] [--messages N]

Counters are always on (maintained per burst, see actors/_metrics.py); this measures what
``ActorSystem(handler_timing=True)`` adds (two clock reads and a histogram update per
message). Run it on two checkouts to price the counters themselves.
"""

from __future__ import annotations

import argparse
import statistics

import actors

from .on_off import same_loop_rate


async def rate(timing: bool, messages: int) -> float:
    return await same_loop_rate(messages, warm_up=10_000, handler_timing=timing)


async def main(reps: int, messages: int) -> None:
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for timing in (False, True):
            results[timing].append(await rate(timing, messages))
    off, on = (statistics.median(results[t]) for t in (False, True))
    print(
        f"same-loop tell, median of {reps}: timing off {off / 1e6:.2f} M msgs/s, "
        f"on {on / 1e6:.2f} M msgs/s, on/off = {on / off:.3f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--messages", type=int, default=300_000)
    opts = parser.parse_args()
    actors.run(main, opts.reps, opts.messages)
