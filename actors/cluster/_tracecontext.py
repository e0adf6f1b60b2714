"""The cluster's seam to tracing: trace context out with a frame, back in with its message.

A system that traces (``ActorSystem(tracing=...)``, `actors._tracing`) puts the W3C
``traceparent`` of the sender's current span in each envelope (`Envelope.trace`,
`Told.trace`); the receiving node makes it the parent of the message's span there. A
remote ask gets a client span at the caller. A system that does not trace pays one
attribute test per frame and never imports OpenTelemetry (each function imports
`actors._tracing` only when tracing is on).

Decision: the context rides in the envelope rather than in a NATS header, because a
`TELLS` frame carries several tells, each from its own sender's span, and because a
durable mailbox stores the envelope (so a message handled after a restart, on another node,
still joins its trace).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Generator

    from .._system import ActorSystem

__all__ = ("asked_remotely", "remote_context", "remote_message", "traceparent")


def traceparent(system: ActorSystem | None) -> str:
    """The ``traceparent`` to send along from here: "" unless ``system`` traces."""
    if system is None or system.tracer is None:
        return ""
    from .._tracing import outgoing  # only when tracing

    return outgoing()


@contextlib.contextmanager
def remote_context(system: ActorSystem | None, trace: str) -> Generator[None]:
    """Make the sender's context (from ``trace``) current while a remote tell is enqueued,
    or a group's ask is asked of its pool."""
    if not trace or system is None or system.tracer is None:
        yield
        return
    from opentelemetry import context  # only when tracing

    from .._tracing import incoming

    token = context.attach(incoming(trace))
    try:
        yield
    finally:
        context.detach(token)


def remote_message(system: ActorSystem, message: object, trace: str, *, asked: bool) -> object:
    """What to put in an `Ask` from another node: ``message``, wrapped with its sender's
    context if this system traces (none sent: its span is a root, and no client span is
    made here on the remote caller's behalf)."""
    if system.tracer is None:
        return message
    from .._tracing import remote_traced  # only when tracing

    return remote_traced(message, trace, asked=asked)


# What `asked_remotely` returns when not tracing: one shared, reusable no-op (a
# generator-based context manager made per ask cost about a microsecond for nothing).
_UNTRACED: Final[contextlib.nullcontext[None]] = contextlib.nullcontext()


def asked_remotely(
    system: ActorSystem | None, path: str, message: object
) -> contextlib.AbstractContextManager[Any]:
    """The client span of a remote ask, current while it lasts (nothing unless tracing)."""
    if system is None or system.tracer is None:
        return _UNTRACED
    return _client_span(system, path, message)


@contextlib.contextmanager
def _client_span(system: ActorSystem, path: str, message: object) -> Generator[Any]:
    from .._tracing import client_span  # only when tracing

    assert system.tracer is not None
    with client_span(system.tracer, path, message) as span:
        yield span
