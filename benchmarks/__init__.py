"""Benchmarks of `actors` against the peers people would otherwise use.

Run them with ``python -m benchmarks`` (or ``python3 dev.py bench``); ``--help`` lists the
options. Every implementation runs the same workloads in one process, their repetitions
interleaved, and the report gives medians over repetitions and the ratio of `actors` to
each peer, which is what stays meaningful on a shared, noisy machine.

Layout:

* `benchmarks.common`: the messages, the counting state every implementation shares, and
  the `Driver` interface a workload talks to.
* `benchmarks.subject`: the driver for `actors` itself.
* `benchmarks.peers`: the drivers for the peers (a naive ``asyncio.Queue`` actor, pykka).
* `benchmarks.cases`: the workloads, the implementations, one checked repetition.
* `benchmarks.runner`: a world per implementation, calibration, interleaved repetitions.
* `benchmarks.report`: statistics, the table, the targets, the JSON file.

See docs/benchmarks.md for what is measured, why the comparison is fair, and results.
"""
