"""Traces across the cluster (issue 19): the trace context rides in the envelope.

The proof of the issue: an HTTP request into Starlette (uvicorn on 127.0.0.1, an httpx
client) -> actor A -> ask B on another loop -> a tell and an ask to C on another node over
a real nats-server -> the reply. The OpenTelemetry SDK's in-memory exporter must hold one
trace, and every span the parent it should have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import httpx
import msgspec
import pytest
import uvicorn
from _support import WAIT, Flag
from cluster_support import (
    NatsServer,
    NodeFactory,
    Spans,
    ancestors,
    asyncio_backend_fixture,
    prefix_fixture,
    server_fixture,
    traced_pair,
)
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import actors
from actors.cluster import lookup_group, register_message, serve_pool

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from starlette.requests import Request

pytestmark = pytest.mark.anyio

anyio_backend = asyncio_backend_fixture()  # uvicorn serves on asyncio
server = server_fixture()
prefix = prefix_fixture("otel")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0)
propagator = TraceContextTextMapPropagator()


@register_message
class Job(actors.Request[int], frozen=True):
    n: int


@register_message
class Note(msgspec.Struct, frozen=True):
    n: int


class Work(actors.Request[int], frozen=True):
    n: int


class Step(actors.Request[int], frozen=True):
    n: int


class C(actors.Actor[Job | Note]):
    """On node b: counts the notes it was told, answers jobs."""

    def __init__(self, noted: Flag) -> None:
        self.noted = noted

    async def receive(self, message: Job | Note) -> int | None:
        match message:
            case Note():
                self.noted.set()
            case Job(n):
                return n * 10
        return None


class B(actors.Actor[Step]):
    """On node a, loop 1: tells C, then asks it."""

    def __init__(self, c: actors.Ref[Job | Note]) -> None:
        self.c = c

    async def receive(self, message: Step) -> int:
        await self.c.send(Note(message.n))
        reply: int = await self.c.ask(Job(message.n), timeout=WAIT)
        return reply


class A(actors.Actor[Work]):
    """On node a, loop 0: asks B."""

    def __init__(self, b: actors.ActorRef[Step]) -> None:
        self.b = b

    async def receive(self, message: Work) -> int:
        reply: int = await self.b.ask(Step(message.n))
        return reply + 1


def web(a: actors.ActorRef[Work], tracer: trace.Tracer) -> Starlette:
    async def work(request: Request) -> JSONResponse:
        # What an ASGI instrumentation does: the caller's traceparent is the parent.
        parent = propagator.extract(dict(request.headers))
        with tracer.start_as_current_span("GET /work", context=parent, kind=SpanKind.SERVER):
            result = await a.ask(Work(int(request.query_params["n"])))
        return JSONResponse({"result": result})

    return Starlette(routes=[Route("/work", work)])


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_one_trace_from_an_http_request_through_two_loops_and_two_nodes(
    server: NatsServer, prefix: str
) -> None:
    spans = Spans()
    tracer = spans.tracer
    noted = Flag()
    answer: httpx.Response | None = None
    root: trace.SpanContext | None = None
    async with traced_pair(server, prefix, node, spans, workers_a=2) as pair:
        system_a, system_b = pair.a, pair.b
        with anyio.fail_after(WAIT):
            await system_b.spawn(lambda: C(noted), name="c", public=True)
            c = await system_a.lookup_remote("c", Job | Note)
            b = await system_a.spawn(lambda: B(c), placement=1)
            a = await system_a.spawn(lambda: A(b), placement=0)
            config = uvicorn.Config(
                web(a, tracer), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
            )
            http_server = uvicorn.Server(config)
            async with anyio.create_task_group() as group:
                group.start_soon(http_server.serve)
                while not http_server.started:  # noqa: ASYNC110 - uvicorn has no event for it
                    await anyio.sleep(0.01)
                port = http_server.servers[0].sockets[0].getsockname()[1]
                with tracer.start_as_current_span("client", kind=SpanKind.CLIENT) as client:
                    root = client.get_span_context()
                    headers: dict[str, str] = {}
                    propagator.inject(headers, context=otel_context.get_current())
                    async with httpx.AsyncClient() as http:
                        answer = await http.get(
                            f"http://127.0.0.1:{port}/work", params={"n": 4}, headers=headers
                        )
                http_server.should_exit = True
            await noted.wait()
    finished = spans.finished()
    assert answer is not None
    assert root is not None
    assert answer.json() == {"result": 41}
    named = {span.name: span for span in finished}
    assert sorted(named) == sorted(
        ["client", "GET /work", "ask Work", "Work", "ask Step", "Step", "Note", "ask Job", "Job"]
    ), [span.name for span in finished]
    assert {span.context.trace_id for span in named.values() if span.context} == {root.trace_id}
    parents = {
        "GET /work": "client",
        "ask Work": "GET /work",
        "Work": "ask Work",
        "ask Step": "Work",
        "Step": "ask Step",
        "Note": "Step",  # a tell across nodes: its parent is the sender's span
        "ask Job": "Step",
        "Job": "ask Job",  # the remote ask's server span, on node b
    }
    for child, parent in parents.items():
        got = named[child].parent
        assert got is not None, child
        assert got.span_id == span_id(named[parent]), f"{child} should be a child of {parent}"
    attributes = {name: dict(span.attributes or {}) for name, span in named.items()}
    assert attributes["Work"]["actors.loop"] == "0"
    assert attributes["Step"]["actors.loop"] == "1"
    assert attributes["Job"]["actors.actor"] == "/user/c"
    assert named["Job"].kind is SpanKind.SERVER
    assert named["Note"].kind is SpanKind.CONSUMER
    assert named["ask Job"].kind is SpanKind.CLIENT
    assert named["Job"].parent is not None
    assert named["Job"].parent.is_remote


async def test_a_node_without_tracing_sends_no_trace_context(
    server: NatsServer, prefix: str
) -> None:
    spans = Spans()
    noted = Flag()
    async with traced_pair(server, prefix, node, spans, traced_a=False) as pair:
        plain, traced = pair.a, pair.b
        with anyio.fail_after(WAIT):
            await traced.spawn(lambda: C(noted), name="c", public=True)
            c = await plain.lookup_remote("c", Job | Note)
            with spans.tracer.start_as_current_span("caller"):
                assert await c.ask(Job(2)) == 20
    finished = spans.finished()
    (job,) = [span for span in finished if span.name == "Job"]
    assert job.parent is None  # a root: nothing came with the frame
    assert sorted(span.name for span in finished) == ["Job", "caller"]


class Jobs(actors.Actor[Job | Note]):
    """A pool worker: answers jobs, notes notes."""

    def __init__(self, noted: Flag) -> None:
        self.noted = noted

    def receive(self, message: Job | Note) -> int | None:
        if isinstance(message, Note):
            self.noted.set()
            return None
        return message.n * 10


async def test_a_served_pool_joins_the_callers_trace(server: NatsServer, prefix: str) -> None:
    spans = Spans()
    noted = Flag()
    async with traced_pair(server, prefix, node, spans) as pair:
        a, b = pair.a, pair.b
        with anyio.fail_after(WAIT):
            pool = await b.spawn_pool(lambda: Jobs(noted), size=2)
            await serve_pool(b, pool, name="jobs")
            group = await lookup_group(a, "jobs", Job | Note)
            with spans.tracer.start_as_current_span("caller") as caller:
                await group.send(Note(1))
                assert await group.ask(Job(2)) == 20
            await noted.wait()
    finished = spans.finished()
    trace_ids = {span.context.trace_id for span in finished if span.context is not None}
    assert trace_ids == {caller.get_span_context().trace_id}
    (note,) = [span for span in finished if span.name == "Note"]
    assert note.parent is not None
    assert note.parent.span_id == caller.get_span_context().span_id
    remote_client = next(
        span
        for span in finished
        if span.name == "ask Job"
        and span.parent is not None
        and span.parent.span_id == caller.get_span_context().span_id
    )
    (job,) = [span for span in finished if span.name == "Job"]
    assert dict(job.attributes or {})["actors.actor"].startswith("/user/")
    # The serving node's pool asks its worker under the remote client span.
    chain = ancestors(job, finished)
    assert remote_client.name in chain
    assert chain[-1] == "caller"


async def test_an_ask_taken_on_the_owners_lane_joins_the_callers_trace(
    server: NatsServer, prefix: str
) -> None:
    spans = Spans()
    async with traced_pair(server, prefix, node, spans) as pair:
        with anyio.fail_after(WAIT):
            await pair.a.spawn(lambda: C(Flag()), name="c", public=True, placement=0)
            c = await pair.b.lookup_remote("c", Job | Note)
            cluster_a = pair.cluster_a
            # Until the host's lane asks, and c's loop's lane takes them (``_lanes``).
            while cluster_a.statistics().lane_served == 0:
                assert await c.ask(Job(1)) == 10
            served = cluster_a.statistics().lane_served
            spans.exporter.clear()
            with spans.tracer.start_as_current_span("caller") as caller:
                assert await c.ask(Job(2)) == 20
            assert cluster_a.statistics().lane_served == served + 1
    finished = spans.finished()
    trace_ids = {span.context.trace_id for span in finished if span.context is not None}
    assert trace_ids == {caller.get_span_context().trace_id}
    (job,) = [span for span in finished if span.name == "Job"]
    assert ancestors(job, finished) == ["ask Job", "caller"]


class Listener(actors.Actor[Note]):
    def __init__(self, noted: Flag) -> None:
        self.noted = noted

    def receive(self, message: Note) -> None:
        self.noted.set()


async def test_an_event_from_another_node_is_handled_under_the_publishers_span(
    server: NatsServer, prefix: str
) -> None:
    spans = Spans()
    noted = Flag()
    async with traced_pair(server, prefix, node, spans) as pair:
        a, b = pair.a, pair.b
        with anyio.fail_after(WAIT):
            listener = await b.spawn(lambda: Listener(noted))
            b.events.subscribe(listener, Note)
            with spans.tracer.start_as_current_span("publisher") as publisher:
                # Published again until node b's events subscription is in place (core NATS
                # events are at most once: one published before it would be lost).
                while not noted.is_set():
                    await a.events.publish(Note(1))
                    with anyio.move_on_after(0.05):
                        await noted.wait()
    notes = [span for span in spans.finished() if span.name == "Note"]
    assert notes
    for span in notes:
        assert span.parent is not None
        assert span.parent.is_remote
        assert span.parent.span_id == publisher.get_span_context().span_id
