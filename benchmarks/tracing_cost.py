"""The cost of tracing: same-loop tell and ask with tracing off and on, interleaved.

Run: python -m benchmarks.tracing_cost [--reps N] [--messages N] [--asks N] [--sample R]

"On" is ``ActorSystem(tracing=provider)`` with the OpenTelemetry SDK recording every span
and a batch processor handing them to an exporter that discards them: the cost of making,
timing and queueing the spans, not of shipping them (that depends on the collector). "Off"
is a system without tracing, which runs exactly the code of a build without the feature;
compare two checkouts' "off" to price the feature itself (docs/benchmarks.md, "Tracing").
``--sample R`` samples traces at ratio R (the SDK's ``ParentBased(TraceIdRatioBased(R))``):
the spans of unsampled traces are not recorded, only their context passed on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

import actors

from .on_off import same_loop_rate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def tracing_provider(sample: float = 1.0) -> TracerProvider:
    """An SDK provider that records every span (or the sampled traces' spans) and discards
    them in a batch processor."""
    sampler = ParentBased(TraceIdRatioBased(sample)) if sample < 1.0 else None
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=65_536))
    return provider


async def rate(tracing: bool, count: int, ask: bool, sample: float = 1.0) -> float:
    """Messages (or asks) per second on one loop, tracing off or on."""
    provider = tracing_provider(sample) if tracing else None
    try:
        setting: bool | TracerProvider = provider if provider is not None else False
        return await same_loop_rate(count, ask=ask, tracing=setting)
    finally:
        if provider is not None:
            provider.shutdown()


def sdk_span_seconds(count: int = 20_000) -> float:
    """What one span costs the SDK alone (start with the same attributes, end), for scale."""
    provider = tracing_provider()
    tracer = provider.get_tracer("bench")
    attributes = {"actors.actor": "/user/x", "actors.message_type": "Inc", "actors.loop": "0"}
    started = time.perf_counter()
    for _ in range(count):
        tracer.start_span("Inc", attributes=attributes).end()
    elapsed = time.perf_counter() - started
    provider.shutdown()
    return elapsed / count


async def main(reps: int, messages: int, asks: int, sample: float) -> None:
    span = statistics.median(sdk_span_seconds() for _ in range(reps))
    print(f"one SDK span alone, median of {reps}: {span * 1e6:.1f} us")
    for ask, count in ((False, messages), (True, asks)):
        results: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(reps):
            for tracing in (False, True):
                results[tracing].append(await rate(tracing, count, ask, sample))
        off, on = (statistics.median(results[t]) for t in (False, True))
        what = ("ask" if ask else "tell") + (f", sampled at {sample:g}" if sample < 1 else "")
        print(
            f"same-loop {what}, median of {reps}: tracing off {off / 1e3:.0f} k/s, "
            f"on {on / 1e3:.0f} k/s, on/off = {on / off:.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--asks", type=int, default=20_000)
    parser.add_argument("--sample", type=float, default=1.0, help="trace sampling ratio")
    opts = parser.parse_args()
    actors.run(main, opts.reps, opts.messages, opts.asks, opts.sample)
