"""Frames: a message to a remote actor, checked and encoded in its caller's thread.

A bad message fails in the call that sends it, not later on the cluster loop: `Frames`
checks it against what the target accepts and whether it is sendable, encodes it, and
refuses one past the size limit, all in the caller's thread. What comes out is an
`Outbound` (a whole frame: ask, try_send, a group's or a stream's request) or, for a
pipelined tell, a `Tell` (its body only: the frame is made on the cluster loop once the
tell has its seq, see ``_tells``).

Invariants:

- A tell is refused by `Frames.prepare_tell` exactly when `Frames.prepare` would refuse it
  (the size check bounds the encoded `Told` from above and decides exactly only near the
  limit).
- Every verdict cached here (`_PLAIN`, `_REPLY_TYPES`) is final for its type: a race
  between callers' threads stores the same answer twice, and one dict store per key is
  safe without the GIL.
- Nothing here touches the cluster loop's state: any thread may call it.

Imports: the core, and ``_registry``, ``_remote``, ``_wire``, ``_window`` of the cluster;
every other part of the outbound path (``_pump``, ``_requests``, ``_tells``, ``_asks``,
``_lookup``, ``_outbound``) imports this module, never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._actor import accepted_types
from .._errors import MessageTypeError, NotSendableError
from .._message import Request
from .._sendable import check_sendable, is_always_sendable
from ._registry import local_only_field
from ._remote import address_of, by_name, stopped_error, subject_of
from ._tracecontext import traceparent
from ._window import Tell
from ._wire import (
    TELL,
    WIRE_VERSION,
    Envelope,
    MessageTooLarge,
    Told,
    known_name,
    message_name,
    message_type,
)

if TYPE_CHECKING:
    from ._options import Limits
    from ._registry import Registry
    from ._remote import RemoteRef
    from ._transport import Identity

__all__ = ("Frames", "Outbound", "check_accepts", "check_message", "reply_type")

# Bytes the headers of an encoded `Told` take at most: its array's, its name's and its
# trace's (a str header is 1-5 bytes), and its timeout (nil, or a number of up to 9).
_TOLD_HEADERS: Final = 1 + 5 + 9 + 5


# Message types every instance of which is sendable and none of whose fields is typed
# `ActorRef`, by their wire name: `Frames.prepare_tell` skips those checks for them (each
# verdict is final: `check_sendable` and `local_only_field` cache it per type too, and a
# type's wire name never changes once used). Written from callers' threads: a race stores
# the same answer twice, and one dict store per key is safe without the GIL.
_PLAIN: dict[type, str] = {}


class Outbound:
    """A checked, encoded frame on its way out."""

    __slots__ = ("data", "envelope", "exports", "message", "subject")

    def __init__(
        self,
        subject: str,
        data: bytes,
        exports: list[int],
        message: object,
        envelope: Envelope | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self.exports = exports
        self.message = message
        self.envelope = envelope  # kept: an ask's key, a stream request's re-encoding


class Frames:
    """Checks and encodes the messages of this node to remote actors. Any thread.

    Example:
        ```python
        frames = Frames(transport.me, registry, Limits())
        out = frames.prepare(ref, ASK, Balance(), 5.0, key=ask_key())
        tell = frames.prepare_tell(ref, Deposit(5), None)  # its body; the frame comes later
        ```
    """

    def __init__(self, me: Identity, registry: Registry, limits: Limits) -> None:
        self._me = me
        self._registry = registry
        self._limits = limits
        # What an `Envelope` adds to the `Told` of its tell, at most: its version, its kind,
        # its sender and four integers of up to 9 bytes (stream, seq, base, key), less the
        # `Told`'s array header, which the envelope's replaces (see `prepare_tell`).
        self._envelope_fields = 2 + len(msgspec.msgpack.encode(me.node)) + 4 * 9

    def prepare(
        self,
        ref: RemoteRef[Any],
        kind: int,
        message: object,
        timeout: float | None,
        key: int = 0,
    ) -> Outbound:
        """Check and encode in the caller's thread, so that a bad message fails right here."""
        if not ref.is_alive:
            raise stopped_error(ref, message)
        cls = type(message)
        name = _PLAIN.get(cls)
        if name is None:  # not known to need no checks: all of them
            check_message(ref, message)
            name = message_name(cls)
            if is_always_sendable(cls) and local_only_field(cls) is None:
                _PLAIN[cls] = name
        else:  # sendable, no ref fields: only whether the target accepts it (`prepare_tell`)
            names = address_of(ref).accepts
            if names is not None and name not in names:
                check_message(ref, message)  # a subclass of one it accepts, or refused
        exports: list[int] = []
        body = self._registry.encode(message, exports)
        envelope = Envelope(
            WIRE_VERSION,
            kind,
            name,
            msgspec.Raw(body),
            timeout,
            self._me.node,
            trace=traceparent(self._registry.system),
            key=key,
        )
        data = msgspec.msgpack.encode(envelope)
        if len(data) > self._limits.max_message_size:
            raise self._too_large(message, len(data))
        return Outbound(subject_of(ref, self.subject_of), data, exports, message, envelope)

    def prepare_tell(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Tell:
        """`prepare` for a tell of ``ref``'s stream: checked and its body encoded, no frame.

        The frame is made on the cluster loop, once the tell has its seq (a `TELL`
        envelope, or an item of a `TELLS` frame): encoding the envelope here as well, and
        formatting the subject, was work done for every tell only to be redone or thrown
        away. The size limit is checked all the same: ``size`` bounds the encoded `Told`
        from above (every header at its widest), and only a tell whose bound, with the
        envelope's own fields, passes the limit is encoded as `prepare` would encode it,
        to decide exactly. So a tell is refused here exactly when `prepare` refuses it.
        """
        if not ref.is_alive:
            raise stopped_error(ref, message)
        exports: list[int] = []
        cls = type(message)
        name = _PLAIN.get(cls)
        if name is None:  # not known to need no checks: all of them, as `prepare`
            check_message(ref, message)
            body = self._registry.encode(message, exports)
            name = message_name(cls)
            if is_always_sendable(cls) and local_only_field(cls) is None:
                _PLAIN[cls] = name
        else:
            names = address_of(ref).accepts
            if names is not None and name not in names:
                check_message(ref, message)  # a subclass of one it accepts, or refused
            try:
                body = msgspec.msgpack.encode(message)  # as `Registry.encode` tries first
            except (TypeError, ValueError, OverflowError):
                body = self._registry.encode_refs(message, exports)
        trace = traceparent(self._registry.system)
        size = len(body) + _TOLD_HEADERS
        size += len(name) if name.isascii() else len(name.encode())
        if trace:
            size += len(trace) if trace.isascii() else len(trace.encode())
        told = Told(name, msgspec.Raw(body), timeout, trace)
        if size + self._envelope_fields > self._limits.max_message_size:
            envelope = Envelope(
                WIRE_VERSION, TELL, name, told.body, timeout, self._me.node, trace=trace
            )
            encoded = len(msgspec.msgpack.encode(envelope))
            if encoded > self._limits.max_message_size:
                raise self._too_large(message, encoded)
        return Tell(told, exports, message, size)

    def _too_large(self, message: object, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            f"{type(message).__qualname__} encodes to {size} bytes, more than the "
            f"limit of {self._limits.max_message_size}; not sent"
        )

    def subject_of(self, ref: RemoteRef[Any]) -> str:
        """The subject of ``ref``'s frames, formatted (callers cache it per ref)."""
        # A group's or a durable actor's requests go to the name (whoever serves it now).
        name = by_name(ref)
        if name is not None:
            return self._me.name_subject(name)
        return self._me.actor_subject(address_of(ref))


# The reply type of each message type asked so far (`reply_type`): a class's bases never
# change. Written from callers' threads: a race stores the same answer twice, and one dict
# store per key is safe without the GIL.
_REPLY_TYPES: dict[type, Any] = {}


def reply_type(cls: type) -> Any:
    """``R`` of a ``Request[R]`` subclass; Any when the message declares no reply type."""
    try:
        return _REPLY_TYPES[cls]
    except KeyError:
        reply = _REPLY_TYPES[cls] = _find_reply_type(cls)
        return reply


def _find_reply_type(cls: type) -> Any:
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if getattr(base, "__origin__", None) is Request:
                (reply,) = base.__args__
                return reply
    return Any


def check_message(ref: RemoteRef[Any], message: object) -> None:
    """The sender-side checks of `Cell.admit`, against what the remote actor accepts."""
    names = address_of(ref).accepts
    if names is not None and known_name(type(message)) not in names:
        known = [message_type(n) for n in names]
        if not any(t is not None and isinstance(message, t) for t in known):
            raise MessageTypeError(
                f"remote actor {ref.path} on node {ref.node} does not accept "
                f"{type(message).__qualname__}; it accepts {' | '.join(names)}"
            )
    try:
        check_sendable(message)
    except NotSendableError:  # the same refusal, naming the target (built only then)
        check_sendable(message, f"message to remote actor {ref.path}")
        raise


def check_accepts(ref: RemoteRef[Any], accepts: Any) -> None:
    """At lookup: every type the caller means to send must be one the remote accepts."""
    names = address_of(ref).accepts
    wanted = accepted_types(accepts)
    if names is None or wanted is None:
        return
    missing = [t.__qualname__ for t in wanted if known_name(t) not in names]
    if missing:
        raise MessageTypeError(
            f"remote actor {ref.path} on node {ref.node} does not accept "
            f"{' | '.join(missing)}; it accepts {' | '.join(names)}"
        )
