"""The pipeline example with the live inspector on: watch the pools work in a browser or a shell.

    python3 dev.py run examples/observed.py                  # then open the address it prints
    python3 dev.py run examples/observed.py --items 200 --linger 0

It serves the inspector (`actors.inspector`) with uvicorn on 127.0.0.1, prints where to look,
and pushes blocks through the three pools of examples/pipeline.py (compress, check, tally),
corrupt blocks crashing compress workers on purpose. While the blocks flow, open the page:
the tree (expand ``/user/compress`` to see its workers restart), the loops, the pools, the
dead letters. ``python -m actors top URL`` shows the same in a terminal. After the run it
reads the inspector's own JSON once, prints what it saw, and keeps serving ``--linger``
seconds (Ctrl-C ends it sooner).

Tracing is on (``ActorSystem(tracing=provider)``, needs ``actors[otel]`` and the
OpenTelemetry SDK): every message handled makes a span. With ``OTEL_EXPORTER_OTLP_ENDPOINT``
set (and ``opentelemetry-exporter-otlp`` installed) they go to that collector, Jaeger for
example; the run prints how many it made and the id of a crashed block's trace to look up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import TYPE_CHECKING

import anyio
import httpx
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import StatusCode, format_trace_id
from pipeline import KINDS, Block, Check, Checker, Compressor, Tallier, Tally
from starlette.applications import Starlette
from starlette.routing import Mount

import actors
import actors.inspector

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


# --8<-- [start:mount]
def web_app(system: actors.ActorSystem) -> Starlette:
    """The application's own routes would go here too; the inspector is one mount."""
    return Starlette(routes=[Mount("/inspector", app=actors.inspector.app(system))])


# --8<-- [end:mount]


class Summary(SpanProcessor):
    """Counts the spans made, and remembers a trace in which a handler failed."""

    def __init__(self) -> None:
        self.spans = 0
        self.traces: set[int] = set()
        self.failed: int | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        self.spans += 1
        self.traces.add(span.context.trace_id)
        if span.status.status_code is StatusCode.ERROR and self.failed is None:
            self.failed = span.context.trace_id


# --8<-- [start:tracing]
def tracer_provider() -> TracerProvider:
    """The OpenTelemetry SDK, set up as for any program: OTLP out when a collector is set."""
    provider = TracerProvider()
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


# then: actors.ActorSystem(workers=loops, tracing=provider)
# --8<-- [end:tracing]


async def pipeline(system: actors.ActorSystem, items: int, loops: int) -> tuple[int, int]:
    """The pipeline's stages; returns (blocks checked, blocks that crashed a worker)."""
    compress = await system.spawn_pool(
        Compressor,
        size=loops,
        routing="pull",
        supervision=actors.OneForOne(max_restarts=5, within=1.0),
        name="compress",
    )
    check = await system.spawn_pool(Checker, size=loops, routing="least-loaded", name="check")
    tally = await system.spawn_pool(
        Tallier, size=2, routing="consistent-hash", key=lambda m: m.kind, name="tally"
    )
    crashed = checked = 0

    async def compressed() -> AsyncIterator[Check]:
        nonlocal crashed
        blocks = (Block(i) for i in range(items))
        async for outcome in compress.map_stream(
            blocks, max_in_flight=16, timeout=10.0, return_exceptions=True
        ):
            if isinstance(outcome, BaseException):
                crashed += 1
            else:
                yield Check(outcome)

    async for digest in check.map_stream(compressed(), max_in_flight=16):
        await tally.send(Tally(KINDS[digest.index % len(KINDS)], digest.raw, digest.packed))
        checked += 1
    return checked, crashed


async def main(items: int, loops: int, port: int, linger: float) -> None:
    provider = tracer_provider()
    summary = Summary()
    provider.add_span_processor(summary)
    async with actors.ActorSystem(workers=loops, name="observed", tracing=provider) as system:
        config = uvicorn.Config(web_app(system), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve)
            with anyio.fail_after(10):
                while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for it
                    await anyio.sleep(0.01)
            bound = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{bound}/inspector/"
            # --8<-- [start:where]
            print(f"inspector: {url}")
            print(f"terminal:  python -m actors top {url}")
            # --8<-- [end:where]
            checked, crashed = await pipeline(system, items, loops)
            print(f"pipeline: {checked} blocks checked, {crashed} crashed a compress worker")
            async with httpx.AsyncClient(base_url=url) as http:
                pools = (await http.get("api/pools")).json()
                restarts = (await http.get("api/top", params={"by": "restarts"})).json()
            for pool in pools:
                print(f"inspector saw {pool['path']}: {pool['routing']}, {pool['size']} workers")
            restarted = sum(actor["restarts"] for actor in restarts)
            print(f"inspector saw {restarted} restarts of compress workers")
            print(f"traces: {summary.spans} spans in {len(summary.traces)} traces")
            if summary.failed is not None:
                print(f"a crashed block's trace: {format_trace_id(summary.failed)}")
            print("to see them: OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317, then Jaeger")
            if linger > 0:
                print(f"serving the inspector for {linger:g} s more (Ctrl-C to stop)")
                await anyio.sleep(linger)
            server.should_exit = True
    provider.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The pipeline with the live inspector on.")
    parser.add_argument("--items", type=int, default=2000, help="blocks to push through")
    parser.add_argument("--loops", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument("--linger", type=float, default=60.0, help="seconds to keep serving")
    options = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C while lingering: a normal end
        actors.run(main, options.items, options.loops, options.port, options.linger)
