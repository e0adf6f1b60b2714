"""OpenTelemetry traces (actors._tracing): a span per handled message, parented at the sender.

Each test runs a system with ``tracing=`` an SDK provider that exports to memory, and checks
the exported spans' parents, kinds, links and attributes (of a stashed or postponed message
handled again, too); and that the user never sees the envelope that carries the context
(handlers, dead letters, stash, postponed messages, event bus, logs, the watchdog).
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Count, Flag, Hold, Recorder, Seen, Tick, park, wait_until
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind

import actors
from actors import Actor, ActorSystem, DeadLetter, testing
from actors._cell import Cell
from actors._mailbox import Mailbox

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio


class Traces:
    """An SDK provider exporting to memory, and lookups over what it exported."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def spans(self) -> tuple[ReadableSpan, ...]:
        return self.exporter.get_finished_spans()

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [span.name for span in self.spans()]
        return found[0]

    async def wait_for(self, name: str, count: int = 1) -> list[ReadableSpan]:
        await wait_until(lambda: len(self.named(name)) >= count)
        return self.named(name)


@pytest.fixture
def traces() -> Iterator[Traces]:
    found = Traces()
    yield found
    found.provider.shutdown()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


class Ping(actors.Request[int], frozen=True):
    n: int


class Boom(msgspec.Struct, frozen=True):
    pass


class Forward(msgspec.Struct, frozen=True):
    n: int


class Echo(Actor[Ping]):
    async def receive(self, message: Ping) -> int:
        return message.n + 1


class SyncEcho(Actor[Ping]):
    def receive(self, message: Ping) -> int:
        return message.n + 1


class Asker(Actor[Ping | Forward]):
    """Asks its target what it is asked; tells it what it is told."""

    def __init__(self, target: actors.ActorRef[Any]) -> None:
        self.target = target

    async def receive(self, message: Ping | Forward) -> int | None:
        match message:
            case Ping():
                reply: int = await self.target.ask(message)
                return reply
            case Forward(n):
                await self.target.send(Tick(n))
        return None


async def test_a_tell_is_handled_in_a_span_whose_parent_is_the_senders(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=2, tracing=traces.provider) as system:
        recorder = await system.spawn(Recorder, placement=1)
        with traces.tracer.start_as_current_span("request") as request:
            await recorder.send(Tick(7))
        with anyio.fail_after(WAIT):
            assert await recorder.ask(Count()) == 1
    span = traces.one("Tick")
    assert parent_of(span) == request.get_span_context().span_id
    assert trace_id(span) == request.get_span_context().trace_id
    assert span.kind is SpanKind.CONSUMER
    attributes = dict(span.attributes or {})
    assert attributes["actors.actor"] == recorder.path
    assert attributes["actors.message_type"] == "Tick"
    assert attributes["actors.loop"] == "1"
    assert attributes["actors.outcome"] == "handled"
    wait = attributes["actors.mailbox_wait_s"]
    assert isinstance(wait, float)
    assert wait >= 0.0


@pytest.mark.parametrize("actor", [Echo, SyncEcho], ids=["async", "sync"])
async def test_an_ask_across_loops_makes_a_client_span_at_the_caller(
    anyio_backend: Any, traces: Traces, actor: type[Actor[Ping]]
) -> None:
    async with ActorSystem(workers=2, tracing=traces.provider) as system:
        echo = await system.spawn(actor, placement=1)
        asker = await system.spawn(functools.partial(Asker, echo), placement=0)
        with traces.tracer.start_as_current_span("request") as request, anyio.fail_after(WAIT):
            assert await asker.ask(Ping(1)) == 2
    outer_client, inner_client = sorted(
        traces.named("ask Ping"), key=lambda span: span.start_time or 0
    )
    handled = {dict(span.attributes or {})["actors.actor"]: span for span in traces.named("Ping")}
    outer, inner = handled[asker.path], handled[echo.path]
    assert parent_of(outer_client) == request.get_span_context().span_id
    assert outer_client.kind is SpanKind.CLIENT
    assert parent_of(outer) == span_id(outer_client)
    assert outer.kind is SpanKind.SERVER
    assert parent_of(inner_client) == span_id(outer)  # asked from inside the handler
    assert parent_of(inner) == span_id(inner_client)
    assert dict(inner.attributes or {})["actors.loop"] == "1"
    assert dict(outer_client.attributes or {})["actors.outcome"] == "answered"
    assert {trace_id(span) for span in traces.spans()} == {request.get_span_context().trace_id}


async def test_plain_threads_carry_their_context_into_the_actor(
    anyio_backend: Any, traces: Traces
) -> None:
    parents: dict[str, int] = {}

    def from_thread(ref: actors.ActorRef[Any]) -> None:
        with traces.tracer.start_as_current_span("thread") as span:
            parents["thread"] = span.get_span_context().span_id
            ref.blocking_send(Tick(1))
            assert ref.blocking_ask(Count()) == 1

    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        recorder = await system.spawn(Recorder)
        with anyio.fail_after(WAIT):
            await anyio.to_thread.run_sync(from_thread, recorder)
    assert parent_of(traces.one("Tick")) == parents["thread"]
    assert parent_of(traces.one("ask Count")) == parents["thread"]
    assert parent_of(traces.one("Count")) == span_id(traces.one("ask Count"))


async def test_send_many_traces_every_message(anyio_backend: Any, traces: Traces) -> None:
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        recorder = await system.spawn(Recorder)
        with traces.tracer.start_as_current_span("batch") as batch, anyio.fail_after(WAIT):
            await recorder.send_many([Tick(1), Tick(2), Tick(3)])
            assert await recorder.ask(Seen()) == (1, 2, 3)
    ticks = traces.named("Tick")
    assert len(ticks) == 3
    assert {parent_of(span) for span in ticks} == {batch.get_span_context().span_id}


class Fails(Actor[Boom | Ping]):
    async def receive(self, message: Boom | Ping) -> int:
        if isinstance(message, Boom):
            raise ValueError("boom")
        return message.n


async def test_a_failed_handler_marks_its_span_and_its_log_record(
    anyio_backend: Any, traces: Traces, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="actors")
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        failing = await system.spawn(Fails)
        await failing.send(Boom())
        with anyio.fail_after(WAIT):
            assert await failing.ask(Ping(3)) == 3  # restarted, the next message handled
    span = traces.one("Boom")
    attributes = dict(span.attributes or {})
    assert attributes["actors.outcome"] == "failed"
    assert attributes["actors.restart"] is True
    assert span.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    records = [r for r in caplog.records if "failed while handling" in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.__dict__["actor"] == failing.path
    assert record.__dict__["message_type"] == "Boom"
    assert record.__dict__["trace_id"] == trace.format_trace_id(trace_id(span))
    assert record.__dict__["span_id"] == trace.format_span_id(span_id(span))


async def test_log_records_carry_actor_and_message_type_without_tracing(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="actors")
    async with ActorSystem(workers=1) as system:
        failing = await system.spawn(Fails)
        await failing.send(Boom())
        with anyio.fail_after(WAIT):
            assert await failing.ask(Ping(3)) == 3
    (record,) = [r for r in caplog.records if "failed while handling" in r.getMessage()]
    assert record.__dict__["actor"] == failing.path
    assert record.__dict__["message_type"] == "Boom"
    assert "trace_id" not in record.__dict__


class Letters(Actor[DeadLetter]):
    def __init__(self, seen: list[DeadLetter], done: Flag, expected: int) -> None:
        self.seen = seen
        self.done = done
        self.expected = expected

    async def receive(self, message: DeadLetter) -> None:
        self.seen.append(message)
        if len(self.seen) == self.expected:
            self.done.set()


async def test_dead_letters_and_refused_asks_hold_the_users_message(
    anyio_backend: Any, traces: Traces
) -> None:
    letters: list[DeadLetter] = []
    done = Flag()
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        auditor = await system.spawn(functools.partial(Letters, letters, done, 2))
        system.dead_letters.subscribe(auditor)
        recorder = await system.spawn(Recorder)
        release = await park(recorder)
        await recorder.send(Tick(1))
        await recorder.send(Tick(2))
        cell = actors._ref.cell_of(recorder)  # pyright: ignore[reportPrivateUsage]
        cell.kill()
        release.set()
        with anyio.fail_after(WAIT):
            await recorder.join()
            await done.wait()
        with pytest.raises(actors.ActorStopped) as stopped:
            await recorder.send(Tick(3))
    assert [letter.message for letter in letters] == [Tick(1), Tick(2)]
    assert stopped.value.message == Tick(3)


class Stasher(Actor[Ping | Forward | Tick]):
    """Stashes asks and Forwards until a Tick arrives, then replays them; records Forwards."""

    def __init__(self) -> None:
        self.open = False
        self.forwarded: list[object] = []

    async def receive(self, message: Ping | Forward | Tick) -> int | None:
        match message:
            case Tick():
                self.open = True
                self.unstash_all()
            case Ping(n):
                if not self.open:
                    self.stash(message)
                    return None
                return n * 10
            case Forward():
                if not self.open:
                    self.stash(message)
                    return None
                self.forwarded.append(message)  # the message itself, never an envelope
        return None


def links_of(span: ReadableSpan) -> list[tuple[int, object]]:
    """(span id, ``actors.link``) of each link of ``span``, in order."""
    return [
        (link.context.span_id, dict(link.attributes or {}).get("actors.link"))
        for link in span.links
    ]


def outcome(span: ReadableSpan) -> object:
    return dict(span.attributes or {}).get("actors.outcome")


async def test_a_stashed_ask_is_replayed_in_a_span_linked_to_its_first_handling(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        stasher = await system.spawn(Stasher)
        replies: list[int] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                replies.append(await stasher.ask(Ping(4)))

            with anyio.fail_after(WAIT):
                tg.start_soon(ask)
                await traces.wait_for("Ping")
                await stasher.send(Tick(0))
    assert replies == [40]
    client = traces.one("ask Ping")
    stashed, replayed = sorted(traces.named("Ping"), key=lambda span: span.start_time or 0)
    # One span per handling, both under the asker's client span; the replay links back.
    assert parent_of(stashed) == parent_of(replayed) == span_id(client)
    assert (outcome(stashed), outcome(replayed)) == ("stashed", "handled")
    assert replayed.kind is SpanKind.SERVER
    released_by = traces.one("Tick")
    assert links_of(replayed) == [
        (span_id(stashed), "stashed"),
        (span_id(released_by), "released"),
    ]
    assert outcome(client) == "answered"


async def test_a_stashed_tell_is_replayed_under_its_senders_span(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        stasher = await system.spawn(Stasher)
        with anyio.fail_after(WAIT):
            with traces.tracer.start_as_current_span("request") as request:
                await stasher.send(Forward(1))
            await traces.wait_for("Forward")
            await stasher.send(Tick(0))
            await traces.wait_for("Forward", 2)
            forwarded = await testing.inspect(stasher, lambda a: list(a.forwarded), kind=Stasher)
    assert forwarded == [Forward(1)]
    stashed, replayed = sorted(traces.named("Forward"), key=lambda span: span.start_time or 0)
    sender = request.get_span_context()
    assert parent_of(stashed) == parent_of(replayed) == sender.span_id
    assert trace_id(replayed) == sender.trace_id  # not a trace root of its own
    assert (outcome(stashed), outcome(replayed)) == ("stashed", "handled")
    assert links_of(replayed) == [
        (span_id(stashed), "stashed"),
        (span_id(traces.one("Tick")), "released"),
    ]


async def test_a_stashed_tell_left_at_the_stop_is_a_dead_letter_of_the_message(
    anyio_backend: Any, traces: Traces
) -> None:
    letters: list[DeadLetter] = []
    done = Flag()
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        auditor = await system.spawn(functools.partial(Letters, letters, done, 1))
        system.dead_letters.subscribe(auditor)
        stasher = await system.spawn(Stasher)
        with anyio.fail_after(WAIT):
            await stasher.send(Forward(2))
            await traces.wait_for("Forward")
            await stasher.stop()
            await done.wait()
    assert [(letter.message, letter.reason) for letter in letters] == [(Forward(2), "stashed")]


class Starter(Actor[Tick]):
    def __init__(self, ticks: list[int], done: Flag) -> None:
        self.ticks = ticks
        self.done = done

    async def receive(self, message: Tick) -> None:
        if message.n == 0:
            self.send_after(0.0, Tick(1))
        else:
            self.ticks.append(message.n)
            self.done.set()


async def test_a_timer_tick_links_to_the_span_that_started_the_timer(
    anyio_backend: Any, traces: Traces
) -> None:
    ticks: list[int] = []
    done = Flag()
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        starter = await system.spawn(functools.partial(Starter, ticks, done))
        with anyio.fail_after(WAIT):
            await starter.send(Tick(0))
            await done.wait()
        spans = await traces.wait_for("Tick", 2)
    first, tick = sorted(spans, key=lambda span: span.start_time or 0)
    assert tick.parent is None  # a trace of its own
    assert [link.context.span_id for link in tick.links] == [span_id(first)]
    assert trace_id(tick) != trace_id(first)


class TickStasher(Actor[Tick | Forward]):
    """Tick(0) starts a timer for Tick(1), which it stashes until a Forward; then records it."""

    def __init__(self, ticks: list[int], done: Flag) -> None:
        self.ticks = ticks
        self.done = done
        self.open = False

    async def receive(self, message: Tick | Forward) -> None:
        match message:
            case Tick(0):
                self.send_after(0.0, Tick(1))
            case Tick(n) if self.open:
                self.ticks.append(n)
                self.done.set()
            case Tick():
                self.stash(message)
            case Forward():
                self.open = True
                self.unstash_all()


async def test_a_stashed_timer_tick_is_replayed_as_a_root_linked_to_its_first_handling(
    anyio_backend: Any, traces: Traces
) -> None:
    ticks: list[int] = []
    done = Flag()
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        stasher = await system.spawn(functools.partial(TickStasher, ticks, done))
        with anyio.fail_after(WAIT):
            await stasher.send(Tick(0))
            await traces.wait_for("Tick", 2)  # the told one, then the tick (stashed)
            await stasher.send(Forward(0))
            await done.wait()
        spans = await traces.wait_for("Tick", 3)
    assert ticks == [1]
    _, stashed, replayed = sorted(spans, key=lambda span: span.start_time or 0)
    assert replayed.parent is None  # a tick's trace is its own, replayed too
    assert (outcome(stashed), outcome(replayed)) == ("stashed", "handled")
    assert links_of(replayed) == [
        (span_id(stashed), "stashed"),
        (span_id(traces.one("Forward")), "released"),
    ]


class Subscriber(Actor[Tick | Hold]):
    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    async def receive(self, message: Tick | Hold) -> None:
        match message:
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
            case Tick(n):
                self.seen.append(n)


async def test_the_event_bus_drops_the_oldest_event_through_the_envelope(
    anyio_backend: Any, traces: Traces
) -> None:
    seen: list[int] = []
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        subscriber = await system.spawn(functools.partial(Subscriber, seen), capacity=2)
        system.events.subscribe(subscriber, Tick, policy="drop_oldest")
        release = Flag()
        entered = Flag()
        await subscriber.send(Hold(release, entered))
        with anyio.fail_after(WAIT):
            await entered.wait()
            for n in range(4):
                await system.events.publish(Tick(n))
            release.set()
            await wait_until(lambda: seen == [2, 3])


async def test_a_pool_ask_is_traced_through_the_worker(anyio_backend: Any, traces: Traces) -> None:
    async with ActorSystem(workers=2, tracing=traces.provider) as system:
        pool = await system.spawn_pool(Echo, size=2)
        with traces.tracer.start_as_current_span("request") as request, anyio.fail_after(WAIT):
            assert await pool.ask(Ping(1)) == 2
    client = traces.one("ask Ping")
    assert parent_of(client) == request.get_span_context().span_id
    assert parent_of(traces.one("Ping")) == span_id(client)


async def test_a_pull_pool_keeps_the_trace_through_its_shared_queue(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=2, tracing=traces.provider) as system:
        pool = await system.spawn_pool(Echo, size=2, routing="pull")
        with traces.tracer.start_as_current_span("request") as request, anyio.fail_after(WAIT):
            assert await pool.ask(Ping(1)) == 2
    request_id = request.get_span_context()
    handled = traces.one("Ping")
    assert trace_id(handled) == request_id.trace_id
    by_id = {span_id(span): span for span in traces.spans()}
    ancestor = handled
    while ancestor.parent is not None and ancestor.parent.span_id in by_id:
        ancestor = by_id[ancestor.parent.span_id]
    assert ancestor.name == "request"  # through the dispatcher, back to the caller
    (worker,) = [s for s in traces.named("Ping") if s is handled]
    assert dict(worker.attributes or {})["actors.actor"].startswith(pool.path + "/")


async def test_an_event_is_handled_under_the_publishers_span(
    anyio_backend: Any, traces: Traces
) -> None:
    seen: list[int] = []
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        subscriber = await system.spawn(functools.partial(Subscriber, seen))
        system.events.subscribe(subscriber, Tick)
        with traces.tracer.start_as_current_span("publisher") as publisher:
            await system.events.publish(Tick(5))
        with anyio.fail_after(WAIT):
            await wait_until(lambda: seen == [5])
    assert parent_of(traces.one("Tick")) == publisher.get_span_context().span_id


async def test_the_watchdog_sees_the_message_type_not_the_envelope(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        recorder = await system.spawn(Recorder)
        release = await park(recorder)
        cell = actors._ref.cell_of(recorder)  # pyright: ignore[reportPrivateUsage]
        assert cell.handling is Hold
        release.set()


async def test_a_system_without_tracing_keeps_the_plain_cell_and_mailbox(
    anyio_backend: Any,
) -> None:
    async with ActorSystem(workers=1) as system:
        recorder = await system.spawn(Recorder)
        cell = actors._ref.cell_of(recorder)  # pyright: ignore[reportPrivateUsage]
        assert type(cell) is Cell
        assert type(cell.mailbox) is Mailbox
        assert system.tracer is None


async def test_tracing_refuses_a_value_that_is_no_provider() -> None:
    with pytest.raises(TypeError, match="tracing must be True, False or an OpenTelemetry"):
        ActorSystem(workers=1, tracing="yes")  # type: ignore[arg-type]


def test_tracing_without_opentelemetry_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "actors._tracing", raising=False)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r"pip install 'actors\[otel\]'"):
        ActorSystem(workers=1, tracing=True)


def test_the_core_imports_without_opentelemetry() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None; import actors, actors.cluster; "
        "assert 'actors._tracing' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()


class Sleeper(Actor[Tick]):
    def receive(self, message: Tick) -> None:
        time.sleep(0.35)  # blocks its loop, on purpose: the watchdog reports it


async def test_the_watchdogs_report_carries_the_blocking_handlers_trace(
    anyio_backend: Any, traces: Traces, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    async with ActorSystem(workers=1, blocked_threshold=0.1, tracing=traces.provider) as system:
        sleeper = await system.spawn(Sleeper, name="sleeper")
        with anyio.fail_after(WAIT):
            await sleeper.send(Tick(1))
            await wait_until(lambda: "was blocked for" in caplog.text)
    span = traces.one("Tick")
    reports = [r for r in caplog.records if "blocked for" in r.getMessage()]
    assert len(reports) == 2
    for record in reports:
        assert record.__dict__["actor"] == "/user/sleeper"
        assert record.__dict__["message_type"] == "Tick"
        assert record.__dict__["trace_id"] == trace.format_trace_id(trace_id(span))
        assert record.__dict__["span_id"] == trace.format_span_id(span_id(span))


async def test_a_restart_record_names_the_restarted_actor(
    anyio_backend: Any, traces: Traces, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="actors")
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        failing = await system.spawn(Fails)
        await failing.send(Boom())
        with anyio.fail_after(WAIT):
            assert await failing.ask(Ping(3)) == 3
    (record,) = [r for r in caplog.records if " restarts " in r.getMessage()]
    assert record.__dict__["actor"] == failing.path
    assert record.__dict__["trace_id"] == trace.format_trace_id(trace_id(traces.one("Boom")))


async def test_an_ask_that_waits_for_room_keeps_one_client_span(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        recorder = await system.spawn(Recorder, capacity=1)
        release = await park(recorder)
        await recorder.send(Tick(1))  # the mailbox is full now
        replies: list[int] = []
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    replies.append(await recorder.ask(Count()))

                tg.start_soon(ask)
                await wait_until(lambda: recorder.statistics().mailbox.waiting_senders == 1)
                release.set()
    assert replies == [1]
    client = traces.one("ask Count")  # one, however many tries the ask took
    assert parent_of(traces.one("Count")) == span_id(client)
    assert dict(client.attributes or {})["actors.outcome"] == "answered"


async def test_an_ask_that_gives_up_waiting_for_room_ends_its_client_span(
    anyio_backend: Any, traces: Traces
) -> None:
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        recorder = await system.spawn(Recorder, capacity=1)
        release = await park(recorder)
        await recorder.send(Tick(1))
        with anyio.fail_after(WAIT), pytest.raises(actors.AskTimeout):
            await recorder.ask(Count(), timeout=0.05)
        client = traces.one("ask Count")
        assert dict(client.attributes or {})["actors.outcome"] == "not sent"
        release.set()


async def test_a_state_machine_is_traced_and_its_timeout_links_to_the_entering_message(
    anyio_backend: Any, traces: Traces
) -> None:
    from test_statem import Ask as StateAsk
    from test_statem import Go, Worker
    from test_statem import Job as StateJob

    clock = actors.ManualClock()
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1, clock=clock, tracing=traces.provider) as system:
            worker = await system.spawn(Worker)
            await worker.send(StateJob(1))  # postponed in Idle
            with traces.tracer.start_as_current_span("request") as request:
                await worker.send(Go())  # to Busy: the job is retried, the timeout starts
            assert await worker.ask(StateAsk()) == "busy"
            await testing.advance(system, 5.0)  # the state timeout: back to Idle
            assert await worker.ask(StateAsk()) == "idle"
            log = await testing.inspect(worker, lambda m: list(m.log), kind=Worker)
    assert "job 1" in log
    assert "timeout at 5.0" in log
    go = traces.one("Go")
    assert parent_of(go) == request.get_span_context().span_id
    (timeout,) = [s for s in traces.spans() if s.name == "_StateTimeout"]
    assert timeout.parent is None
    assert [link.context.span_id for link in timeout.links] == [span_id(go)]


async def test_a_postponed_tell_is_retried_in_a_span_of_its_own_under_its_sender(
    anyio_backend: Any, traces: Traces
) -> None:
    from test_statem import Go, Worker
    from test_statem import Job as StateJob

    with anyio.fail_after(WAIT):
        async with ActorSystem(
            workers=1, clock=actors.ManualClock(), tracing=traces.provider
        ) as system:
            worker = await system.spawn(Worker)
            with traces.tracer.start_as_current_span("request") as request:
                await worker.send(StateJob(1))  # postponed in Idle
            await traces.wait_for("Job")
            await worker.send(Go())  # to Busy: the job is retried, inside Go's handler
            await traces.wait_for("Job", 2)
    postponed, retried = sorted(traces.named("Job"), key=lambda span: span.start_time or 0)
    go = traces.one("Go")
    # The retry is the job's own handling: under the job's sender, not under Go.
    assert parent_of(postponed) == parent_of(retried) == request.get_span_context().span_id
    assert (outcome(postponed), outcome(retried), outcome(go)) == (
        "postponed",
        "handled",
        "handled",
    )
    assert links_of(retried) == [(span_id(postponed), "postponed"), (span_id(go), "released")]


async def test_a_postponed_ask_is_retried_in_a_span_of_its_own_under_its_client_span(
    anyio_backend: Any, traces: Traces
) -> None:
    from test_statem import Go, PostponeAsk, Worker

    async with ActorSystem(
        workers=1, clock=actors.ManualClock(), tracing=traces.provider
    ) as system:
        worker = await system.spawn(Worker)
        answers: list[str] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                answers.append(await worker.ask(PostponeAsk(), timeout=WAIT))

            with anyio.fail_after(WAIT):
                tg.start_soon(ask)
                await traces.wait_for("PostponeAsk")
                await worker.send(Go())
    assert answers == ["later, True"]
    client = traces.one("ask PostponeAsk")
    postponed, retried = sorted(traces.named("PostponeAsk"), key=lambda span: span.start_time or 0)
    assert parent_of(postponed) == parent_of(retried) == span_id(client)
    assert postponed.kind is retried.kind is SpanKind.SERVER
    assert (outcome(postponed), outcome(retried)) == ("postponed", "handled")
    assert links_of(retried) == [
        (span_id(postponed), "postponed"),
        (span_id(traces.one("Go")), "released"),
    ]
    assert outcome(client) == "answered"


async def test_a_failed_retry_marks_its_own_span_and_the_log_names_the_releasing_message(
    anyio_backend: Any, traces: Traces, caplog: pytest.LogCaptureFixture
) -> None:
    from test_statem import Go, Worker
    from test_statem import Job as StateJob

    caplog.set_level(logging.ERROR, logger="actors")
    async with ActorSystem(
        workers=1, clock=actors.ManualClock(), tracing=traces.provider
    ) as system:
        worker = await system.spawn(Worker, restart=actors.Restart.TEMPORARY)
        await worker.send(StateJob(-1))  # postponed in Idle; Busy raises for it
        await worker.send(Go())
        with anyio.fail_after(WAIT):
            assert isinstance(await worker.join(), ValueError)
    postponed, retried = sorted(traces.named("Job"), key=lambda span: span.start_time or 0)
    go = traces.one("Go")
    assert (outcome(postponed), outcome(retried), outcome(go)) == ("postponed", "failed", "failed")
    (record,) = [r for r in caplog.records if "failed while handling" in r.getMessage()]
    assert record.__dict__["message_type"] == "Go"
    assert record.__dict__["span_id"] == trace.format_span_id(span_id(go))


async def test_postponed_tells_left_at_a_restart_are_dead_letters_of_the_messages(
    anyio_backend: Any, traces: Traces
) -> None:
    from test_statem import Boom as StateBoom
    from test_statem import Job as StateJob
    from test_statem import Worker

    letters: list[DeadLetter] = []
    done = Flag()
    async with ActorSystem(workers=1, tracing=traces.provider) as system:
        auditor = await system.spawn(functools.partial(Letters, letters, done, 2))
        system.dead_letters.subscribe(auditor)
        worker = await system.spawn(Worker)
        for message in (StateJob(1), StateJob(2), StateBoom()):  # Boom fails it: a restart
            await worker.send(message)
        with anyio.fail_after(WAIT):
            await done.wait()
    assert [(letter.message, letter.reason) for letter in letters] == [
        (StateJob(1), "postponed"),
        (StateJob(2), "postponed"),
    ]


class Sequenced(msgspec.Struct, frozen=True):
    sender: int
    seq: int


class Ledger(Actor[Sequenced | Seen]):
    """Records (sender, seq) in arrival order; a small mailbox makes senders wait."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def receive(self, message: Sequenced | Seen) -> object:
        if isinstance(message, Seen):
            return len(self.seen)
        assert type(message) is Sequenced  # never the envelope
        self.seen.append((message.sender, message.seq))
        return None


async def test_many_senders_through_a_full_traced_mailbox_lose_and_reorder_nothing(
    anyio_backend: Any, traces: Traces
) -> None:
    per_sender = 300
    async with ActorSystem(workers=2, tracing=traces.provider) as system:
        ledger = await system.spawn(Ledger, placement=1, capacity=4)

        def thread_sender(sender: int) -> None:
            with traces.tracer.start_as_current_span(f"thread-{sender}"):
                for seq in range(per_sender):
                    ledger.blocking_send(Sequenced(sender, seq))

        async def batch_sender(sender: int) -> None:
            for seq in range(0, per_sender, 3):
                await ledger.send_many([Sequenced(sender, seq + i) for i in range(3)])

        async def task_sender(sender: int) -> None:
            for seq in range(per_sender):
                await ledger.send(Sequenced(sender, seq))

        with anyio.fail_after(WAIT * 3):
            async with anyio.create_task_group() as tg:
                for sender in (0, 1):
                    tg.start_soon(anyio.to_thread.run_sync, thread_sender, sender)
                tg.start_soon(batch_sender, 2)
                tg.start_soon(task_sender, 3)
            assert await ledger.ask(Seen()) == 4 * per_sender
            seen = await testing.inspect(ledger, lambda m: list(m.seen), kind=Ledger)
    for sender in range(4):  # per-sender FIFO, nothing lost or doubled
        assert [seq for who, seq in seen if who == sender] == list(range(per_sender))
    assert len(traces.named("Sequenced")) == 4 * per_sender


# -- with deadlines, abandoned asks and streams (issue 18) -----------------------------------


class Left(actors.Request[float | None], frozen=True):
    pass


class DeadlineReader(Actor[Left]):
    async def receive(self, message: Left) -> float | None:
        return actors.deadline()


async def test_a_traced_ask_keeps_its_deadline(traces: Traces) -> None:
    async with ActorSystem(tracing=traces.provider) as system:
        reader = await system.spawn(DeadlineReader)
        with anyio.fail_after(WAIT):
            left = await reader.ask(Left(), timeout=3.0)
        assert left is not None
        assert 2.0 < left <= 3.0


async def test_a_skipped_traced_ask_ends_its_client_span(traces: Traces) -> None:
    async with ActorSystem(tracing=traces.provider) as system:
        target = await system.spawn(Recorder)
        with anyio.fail_after(WAIT):
            release = await park(target)
            with pytest.raises(actors.AskTimeout):
                await target.ask(Tick(1), timeout=0.05)
            release.set()
            assert await target.ask(Seen()) == ()  # skipped, never handled
            (client,) = await traces.wait_for("ask Tick")
        assert client.attributes is not None
        assert client.attributes["actors.outcome"] == "AskTimeout"
        assert not traces.named("Tick")  # no handling span: it was not handled


class Digits(actors.StreamRequest[int], frozen=True):
    count: int


class DigitStreamer(Actor[Digits]):
    async def receive(self, message: Digits) -> object:
        return self.digits(message.count)

    async def digits(self, count: int) -> Any:
        for n in range(count):
            yield n


async def test_a_traced_system_streams_replies(traces: Traces) -> None:
    async with ActorSystem(tracing=traces.provider) as system:
        streamer = await system.spawn(DigitStreamer)
        with anyio.fail_after(WAIT):
            with traces.tracer.start_as_current_span("request") as root:
                seen = [n async for n in streamer.stream(Digits(5))]
            assert seen == [0, 1, 2, 3, 4]
            (handled,) = await traces.wait_for("Digits")
        assert parent_of(handled) == root.get_span_context().span_id
