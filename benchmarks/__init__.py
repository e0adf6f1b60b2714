"""Benchmarks of `actors` against the peers people would otherwise use.

Run them with ``python -m actors bench`` (or ``python3 dev.py bench``, or ``python -m
benchmarks``); ``--help`` lists the options. Every implementation runs the same workloads
in one process, their repetitions interleaved, and the report gives medians over
repetitions and the ratio of `actors` to each peer, which is what stays meaningful on a
shared, noisy machine.

Layout:

* `benchmarks.common`: the micro-cases' messages, the counting state every implementation
  shares, the `Driver` interface a workload talks to, RSS sampling.
* `benchmarks.portable`: the portable actor model the Savina programs are written in.
* `benchmarks.savina`: the Savina programs, one module each, each checking its own result.
* `benchmarks.subject`: the driver for `actors` itself.
* `benchmarks.neighbour`: the blocked-neighbour workload's actors and driver (actors
  beside a handler that blocks their loop).
* `benchmarks.peers`: the drivers for the peers, one module each (the naive
  ``asyncio.Queue`` actor, the callback actor, a bare cross-thread round trip, pykka,
  thespian, xoscar).
* `benchmarks.cases`: the workloads, the implementations, one checked repetition.
* `benchmarks.runner`: a world per implementation, sizes, interleaved repetitions.
* `benchmarks.isolated`: memory per idle actor and scale, each in a fresh process.
* `benchmarks.report`: statistics, the tables, the targets, the JSON file.
* `benchmarks.plot`: the charts (matplotlib).
* `benchmarks.pieces`: a same-loop tell, piece by piece (run on its own).
* `benchmarks.tell_instructions`: a same-loop tell in instructions, next to the
  ``asyncio.Queue`` and callback actors (callgrind; run on its own).

See docs/benchmarks.md for what is measured, why the comparison is fair, and results.
"""
