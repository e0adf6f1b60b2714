"""OpenTelemetry traces of message handling: a span per handled message, its parent the sender's.

Imported only by a system made with ``tracing=`` (`ActorSystem`): the core never imports
OpenTelemetry, and a system that does not trace runs the send, enqueue and dispatch code it
ran before the feature existed (only paths that show a message to the user unwrap it).

How tracing is chosen once, not tested per message. A tracing system builds its actors as
`TracingCell`, whose mailbox is a `TracingMailbox`:

* sending: the mailbox wraps what it enqueues, capturing the OpenTelemetry context current
  in the sender (its task, thread or callback): a tell becomes ``Traced(message)``, an ask
  ``Ask(Traced(message), reply)`` with a client span (``ask <Type>``) opened at the caller,
  ended when the reply is settled. Every way into a mailbox (`ActorRef.send` and its
  variants, ``blocking_*`` from plain threads, ``send_many``, pools, the event bus, the
  cluster's inbound side) goes through the mailbox, so the context crosses loops and
  threads with the message itself.
* handling: `TracingCell._handler` returns the actor's handler wrapped: it unwraps the
  envelope, opens the message's span with the captured context as parent, makes it current
  while the handler runs (so what the handler sends is its child), and ends it with the
  outcome. The run loop is unchanged: it hands the envelope to "the handler" as it would the
  bare message.
* timers: a tick's span is the root of a trace of its own with a *link* to the span that
  started the timer (a periodic timer would otherwise make one endless trace).
* set aside and handled again (`Actor.stash` then ``unstash_all``, a `StateMachine`'s
  postpone then retry): one span per handling. The kept item holds its envelope (a tell
  too), so the next handling's span has the same parent as the first (the sender's), and
  links to the span that set it aside (``actors.link`` "stashed" or "postponed", that
  span's outcome too) and to the span that released it ("released"). A state machine's
  retry runs inside the handler that changed the state, in a span of its own
  (`TracingCell.retried`).

Invariant: the user never sees an envelope. Handlers get the message; dead letters, errors'
``message``, failure logs, the watchdog and the event bus's drop-oldest test unwrap it
(`actors._message.payload`).

Single-writer rules: a `_SpanReply` is settled by the run task of the actor that answers
(or its stop path, on the same thread); ``_pending`` is a dict whose single-key operations
are atomic (a reply waits in at most one sender's retry at a time).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._cell import Cell
from ._mailbox import CLOSED, FULL, OK, Mailbox
from ._message import Ask, Traced, payload
from ._oneshot import Oneshot
from ._stream import Channel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from contextlib import AbstractContextManager

    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from ._behaviour import Behaviour
    from ._timers import Timer

__all__ = (
    "TracingCell",
    "TracingMailbox",
    "client_span",
    "incoming",
    "outgoing",
    "remote_traced",
    "tracer_for",
)

_clock: Final = time.perf_counter

# Span attribute names (documented in docs/howto/inspector.md).
ACTOR: Final = "actors.actor"
MESSAGE_TYPE: Final = "actors.message_type"
LOOP: Final = "actors.loop"
MAILBOX_WAIT: Final = "actors.mailbox_wait_s"
OUTCOME: Final = "actors.outcome"
RESTART: Final = "actors.restart"
# On a link of a set-aside message's next span: "stashed" or "postponed" (the span that set
# it aside), "released" (the span in which `unstash_all` or the state change let it go).
LINK: Final = "actors.link"


def tracer_for(provider: TracerProvider | None) -> Tracer:
    """The tracer a system's spans come from: ``provider``'s, or the global provider's."""
    from . import __version__  # the package imports this module lazily

    return trace.get_tracer("actors", __version__, tracer_provider=provider)


# W3C trace context: what crosses the cluster (`actors.cluster._tracecontext`).
_PROPAGATOR: Final = TraceContextTextMapPropagator()


def outgoing() -> str:
    """The W3C ``traceparent`` of the span current here ("" when none)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def incoming(traceparent: str) -> otel_context.Context:
    """The context a ``traceparent`` from another node stands for: the parent of its span."""
    return _PROPAGATOR.extract({"traceparent": traceparent})


def remote_traced(message: object, traceparent: str, *, asked: bool) -> Traced:
    """``message`` from another node, wrapped with its sender's context (`TracingMailbox`
    leaves it as it is)."""
    return Traced(message, incoming(traceparent), _clock(), asked)


def client_span(tracer: object, path: str, message: object) -> AbstractContextManager[Span]:
    """The client span of an ask to a remote actor at ``path``, current while it lasts."""
    name = type(message).__qualname__
    return cast("Tracer", tracer).start_as_current_span(
        f"ask {name}",
        kind=SpanKind.CLIENT,
        attributes={ACTOR: path, MESSAGE_TYPE: name},
    )


def _tracer(cell: Cell) -> Tracer:
    tracer = cell.system.tracer
    assert tracer is not None  # a TracingCell belongs to a tracing system
    return cast("Tracer", tracer)


class _SpanReply(Oneshot):
    """An ask's reply that ends the asker's client span when the answer is settled."""

    __slots__ = ("_reply", "_span")

    def __init__(self, reply: Oneshot, span: Span) -> None:
        self._reply = reply
        self._span = span

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        span = self._span
        if span.is_recording():  # the first settle ends it; later ones are dropped anyway
            if error is None:
                span.set_attribute(OUTCOME, "answered")
            else:
                span.set_attribute(OUTCOME, type(error).__name__)
                span.set_status(StatusCode.ERROR, str(error))
            span.end()
        self._reply.settle(value, error)

    async def wait(self, timeout: float | None = None) -> Any:
        return await self._reply.wait(timeout)

    def wait_blocking(self, timeout: float | None = None) -> Any:
        return self._reply.wait_blocking(timeout)

    # Abandonment is the asker's, on the reply it holds: read and watched through to it.
    @property
    def abandoned(self) -> int:  # type: ignore[override]
        return self._reply.abandoned

    def abandon(self, reason: int) -> None:
        self._reply.abandon(reason)

    def watch_abandon(self, callback: Callable[[], object] | None) -> bool:
        return self._reply.watch_abandon(callback)


class TracingMailbox(Mailbox[Any]):
    """A `Mailbox` that wraps each item in a `Traced` envelope holding the sender's context.

    Overrides the ways items come in (`put_nowait`, `put_many_nowait`, `put_evicting` and
    the fill of a waiting sender's reserved room, which `put`, `put_many` and
    `put_blocking` end with; the last two also end the client span of an ask whose sender
    gave up waiting) and the one way they go out without being handled (`finish`).
    """

    __slots__ = ("_cell", "_pending")

    def __init__(self, capacity: int, wake: Callable[[], None], *, scheduled: bool = True) -> None:
        super().__init__(capacity, wake, scheduled=scheduled)
        self._cell = cast("Cell", wake)  # a TracingCell is its mailbox's waker
        # Client spans of asks refused for room, by reply: the sender's retry reuses its
        # span (one client span per ask, however many tries).
        self._pending: dict[Oneshot, Span] = {}

    def _wrap(self, item: object) -> object:
        if type(item) is Traced or (type(item) is Ask and type(item.message) is Traced):
            return item  # wrapped already, with a context from elsewhere (another node)
        context = otel_context.get_current()
        now = _clock()
        if type(item) is not Ask:
            return Traced(item, context, now, False)
        ask = item
        if type(ask.reply) is Channel:
            # A stream request: its reply slot must stay the channel (the cell streams into
            # it). The handling span still has the sender's context as its parent; there is
            # no client span, since a stream has no single answer to end it.
            return Ask(Traced(ask.message, context, now, True), ask.reply, ask.deadline)
        span = self._pending.pop(ask.reply, None)
        if span is None:
            name = type(ask.message).__qualname__
            span = _tracer(self._cell).start_span(
                f"ask {name}",
                context=context,
                kind=SpanKind.CLIENT,
                attributes={ACTOR: self._cell.path, MESSAGE_TYPE: name},
            )
        inner = trace.set_span_in_context(span, context)
        return Ask(Traced(ask.message, inner, now, True), _SpanReply(ask.reply, span), ask.deadline)

    def _after(self, item: object, wrapped: object, code: int) -> None:
        # A refused ask: its span waits for the retry (FULL) or ends (CLOSED).
        if code == OK or type(item) is not Ask:
            return
        reply = cast("Ask", wrapped).reply
        if not isinstance(reply, _SpanReply):
            return  # an ask from another node: its client span is there
        if code == FULL:
            self._pending[item.reply] = reply._span  # pyright: ignore[reportPrivateUsage]
        else:
            reply._span.set_attribute(OUTCOME, "refused")  # pyright: ignore[reportPrivateUsage]
            reply._span.end()  # pyright: ignore[reportPrivateUsage]

    def _forget(self, item: object) -> None:
        # A sender gave up waiting for room (cancelled, timed out): its ask's span ends.
        if type(item) is Ask:
            span = self._pending.pop(item.reply, None)
            if span is not None:
                span.set_attribute(OUTCOME, "not sent")
                span.end()

    async def put(self, item: Any, timeout: float | None = None) -> int:
        try:
            return await super().put(item, timeout)
        except BaseException:
            self._forget(item)
            raise

    def put_blocking(self, item: Any, timeout: float | None = None) -> int:
        try:
            return super().put_blocking(item, timeout)
        except BaseException:
            self._forget(item)
            raise

    def put_nowait(self, item: Any) -> int:
        wrapped = self._wrap(item)
        code = super().put_nowait(wrapped)
        if code != OK:
            self._after(item, wrapped, code)
        return code

    def put_many_nowait(self, items: Sequence[Any]) -> int:
        wrapped = [self._wrap(item) for item in items]
        code = super().put_many_nowait(wrapped)
        if code != OK:
            for item, one in zip(items, wrapped, strict=True):
                self._after(item, one, code)
        return code

    def put_evicting(self, item: Any, is_victim: Callable[[object], bool]) -> tuple[int, object]:
        code, evicted = super().put_evicting(
            self._wrap(item), lambda queued: is_victim(payload(queued))
        )
        return code, payload(evicted)

    def _fill_reserved(self, items: Sequence[Any]) -> int:
        wrapped = [self._wrap(item) for item in items]
        code = super()._fill_reserved(wrapped)
        if code != OK:
            for item, one in zip(items, wrapped, strict=True):
                self._after(item, one, CLOSED)
        return code

    def finish(self) -> tuple[Sequence[Any], Sequence[Any]]:
        items, signals = super().finish()
        pending, self._pending = self._pending, {}
        for span in pending.values():  # asks given up after a refusal for room
            span.set_attribute(OUTCOME, "refused")
            span.end()
        return items, signals


class TracingCell(Cell):
    """The cell of a tracing system's actors: its handler opens a span per message.

    A message set aside (`Actor.stash`, a state machine's postpone) keeps its envelope, so
    that handling it again makes a span of its own under its sender's span, as the first
    handling did, linked to the span that set it aside and to the one that released it.
    """

    __slots__ = ("_aside", "_envelope", "_last", "_link", "_span", "_timer_links")
    mailbox_type: ClassVar[type[Mailbox[Any]]] = TracingMailbox

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._link: SpanContext | None = None  # the tick being handled: its timer's starter
        self._last: SpanContext | None = None  # the last message's span, for failure logs
        self._timer_links: dict[Timer, SpanContext] | None = None
        # The message being handled: its span, its envelope (a trace root's made for it, in
        # case it is set aside) and whether its handler set it aside (the span's outcome
        # then says so).
        # Saved and restored by `_open` / `_close`: a state machine's retry nests in them.
        self._span: Span | None = None
        self._envelope: Traced | None = None
        self._aside: str | None = None

    def _handler(self) -> tuple[Callable[[Any], Any], bool]:
        receive, sync = super()._handler()
        if sync:
            return self._traced_sync(receive), True
        return self._traced_async(receive), False

    def _traced_sync(self, receive: Callable[[Any], object]) -> Callable[[Any], object]:
        def traced(item: object) -> object:
            message, span, token = self._open(item)
            try:
                result = receive(message)
            except BaseException as error:
                self._close(span, token, error)
                raise
            self._close(span, token, None)
            return result

        return traced

    def _traced_async(
        self, receive: Callable[[Any], Awaitable[object]]
    ) -> Callable[[Any], Awaitable[object]]:
        async def traced(item: object) -> object:
            message, span, token = self._open(item)
            try:
                result = await receive(message)
            except BaseException as error:
                self._close(span, token, error)
                raise
            self._close(span, token, None)
            return result

        return traced

    def _open(self, item: object) -> tuple[object, Span, object]:
        """Unwrap ``item``, start its span as current: (message, span, context token)."""
        links: list[Link] = []
        if type(item) is Traced:
            traced = item
            message = traced.message
            parent = cast("otel_context.Context", traced.context)
            kind = SpanKind.SERVER if traced.asked else SpanKind.CONSUMER
            wait = _clock() - traced.enqueued
            if traced.links is not None:  # set aside, now handled again
                links.extend(cast("list[Link]", traced.links))
        else:  # a tick, a remote message without a trace: a trace root
            message = item
            parent = otel_context.Context()
            kind = SpanKind.CONSUMER
            wait = 0.0
            if self._link is not None:
                links.append(Link(self._link))
            traced = Traced(message, parent, _clock(), False)  # kept if it is set aside
        self.handling = type(message)  # what the watchdog names, not the envelope
        name = type(message).__qualname__
        span = _tracer(self).start_span(
            name,
            context=parent,
            kind=kind,
            links=links,
            attributes={
                ACTOR: self.path,
                MESSAGE_TYPE: name,
                LOOP: self.home.label,
                MAILBOX_WAIT: wait,
            },
        )
        self._last = span.get_span_context()
        outer = (self._span, self._envelope, self._aside)
        self._span, self._envelope, self._aside = span, traced, None
        token = otel_context.attach(trace.set_span_in_context(span))
        return message, span, (token, outer)

    def _close(self, span: Span, token: object, error: BaseException | None) -> None:
        context_token, outer = cast("tuple[Any, tuple[Any, Any, Any]]", token)
        otel_context.detach(context_token)
        aside = self._aside
        self._span, self._envelope, self._aside = outer
        if error is None:
            span.set_attribute(OUTCOME, aside or "handled")
        elif isinstance(error, Exception):
            span.set_attribute(OUTCOME, "failed")
            span.set_attribute(RESTART, self.restart.wants_restart(error))
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
        else:  # a kill (cancellation) or an interpreter exit through the handler
            span.set_attribute(OUTCOME, type(error).__name__)
        span.end()

    # -- messages set aside and handled again ---------------------------------------------------

    def stash(self, message: object) -> None:
        super().stash(message)
        stash = cast("Behaviour", self.behaviour).stash  # made by the stash just done
        stash[-1] = self.set_aside(stash[-1], "stashed")

    def unstash_all(self) -> int:
        self.check_own("unstash_all")  # before any change: a refused call changes nothing
        behaviour = self.behaviour
        if behaviour is not None:
            for item in behaviour.stash:
                self._release(item)
        return super().unstash_all()

    def set_aside(self, item: object, why: str) -> object:
        """What a stash or a postponement keeps of ``item`` (an ask, a tell or a tell's
        envelope): an ask as it is, a tell in its envelope; either linked to the span of the
        handler setting it aside (``why``: "stashed" or "postponed")."""
        if type(item) is Ask:
            kept: object = item
            envelope = item.message
            if type(envelope) is not Traced:
                return item  # not from a tracing mailbox: no context to carry on
        elif type(item) is Traced:
            kept = envelope = item
        else:
            current = self._envelope
            if current is not None and current.message is item:
                envelope = current
            else:  # a message the handler made, not the one it handles: a trace root
                envelope = Traced(item, otel_context.Context(), _clock(), False)
            kept = envelope
        if envelope is self._envelope:
            self._aside = why
        span = self._span
        envelope.links = None if span is None else [Link(span.get_span_context(), {LINK: why})]
        return kept

    def _release(self, item: object) -> None:
        """Link the next span of a set-aside ``item`` to the span letting it go now."""
        envelope = item.message if type(item) is Ask else item
        span = self._span
        if type(envelope) is Traced and span is not None:
            link = Link(span.get_span_context(), {LINK: "released"})
            envelope.links = [*(envelope.links or ()), link]

    async def retried(self, item: object, retry: Callable[[object], Awaitable[None]]) -> None:
        """Run ``retry(item)`` for a postponed ``item`` (`actors._statem`) in a span of its own,
        as `set_aside` describes, instead of the span of the message that released it.

        Cancellation: the span ends with the cancellation as its outcome, which propagates.
        """
        envelope = item.message if type(item) is Ask else item
        if type(envelope) is not Traced:
            await retry(item)
            return
        self._release(item)
        # What the watchdog and failure logs name stays the releasing message's afterwards.
        handling, last = self.handling, self._last
        _, span, token = self._open(envelope)
        try:
            await retry(item)
        except BaseException as error:
            self._close(span, token, error)
            raise
        else:
            self._close(span, token, None)
        finally:
            self.handling, self._last = handling, last

    def log_fields(self, message: object = None) -> dict[str, object]:
        fields = super().log_fields(message)
        context = trace.get_current_span().get_span_context()
        last = self._last
        if not context.is_valid and last is not None:
            # Logged after the span ended (a failure), or from another thread (the
            # watchdog): the span of the message being handled, or handled last.
            context = last
        if context.is_valid:
            fields["trace_id"] = trace.format_trace_id(context.trace_id)
            fields["span_id"] = trace.format_span_id(context.span_id)
        return fields

    def start_timer(self, message: object, delay: float, interval: float | None) -> Timer:
        timer = super().start_timer(message, delay, interval)
        starter = trace.get_current_span().get_span_context()
        if starter.is_valid:
            if self._timer_links is None:
                self._timer_links = {}
            self._timer_links[timer] = starter
        return timer

    # Synchronous hooks, not an `_on_tick` override: a drain handles a traced tick in place.
    def _tick_begins(self, timer: Timer) -> None:
        links = self._timer_links
        self._link = links.get(timer) if links is not None else None

    def _tick_ends(self, timer: Timer) -> None:
        self._link = None
        links = self._timer_links
        if links is not None and (timer.interval is None or timer.cancelled):
            links.pop(timer, None)
