"""The wire format: versioned MessagePack envelopes, the message-type registry, input checks.

Everything that crosses the network is msgspec MessagePack; nothing is ever pickled. A
frame is decoded in two steps: first the envelope, whose ``body`` stays raw bytes, then the
body, typed against the one class the envelope names *and* the target actor accepts. Before
either step the frame's size and nesting depth are checked by `check_frame`, a small
iterative scan that never recurses, so that hostile input cannot exhaust the C stack of the
decoder (msgspec decodes nested arrays recursively) or make it allocate for a length
header that lies. MessagePack extension types are refused outright.

Message types travel by a stable name (`register_message`), by default
``"<module>:<qualname>"``; both ends must agree on it.
"""

from __future__ import annotations

import builtins
import threading
from typing import TYPE_CHECKING, Any, Final, TypeVar, overload

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

from .._errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    DeadlockError,
    MailboxFull,
    MessageTypeError,
    NotSendableError,
    RemoteError,
    SendTimeout,
)

__all__ = (
    "DECODING",
    "MALFORMED",
    "WIRE_VERSION",
    "Address",
    "Down",
    "Envelope",
    "ErrorInfo",
    "Heartbeat",
    "MessageTooLarge",
    "NodeDown",
    "Reply",
    "StreamControl",
    "StreamFrame",
    "WireError",
    "check_frame",
    "error_from",
    "error_info",
    "message_name",
    "message_type",
    "register_message",
)

T = TypeVar("T")

WIRE_VERSION: Final = 1
"""The envelope format version; a node refuses frames of any other version."""

# Envelope kinds.
TELL: Final = 1  # `send`: acknowledged once enqueued with the target's own send semantics
TRY: Final = 2  # `try_send`: enqueued only if there is room now; the reply refreshes credit
ASK: Final = 3  # `ask`: the reply carries the handler's return value or its error
PROBE: Final = 4  # lookup and credit refresh: the reply carries the target's address
TELLS: Final = 5  # several tells of one stream (the body: `Told` items, seq, seq + 1, ...)
CANCEL: Final = 6  # the asker gave up on the ASK that carried ``key``; no reply
# A streamed request (`RemoteRef.stream`): ``stream`` is the reader's id of the stream, ``seq``
# its credit window; the items come back as `StreamFrame`s (see ``_streams``).
STREAM: Final = 7

# `StreamControl` kinds: the reader's side of a stream, to its producer's node.
STREAM_CREDIT: Final = 1  # ``read`` items were read: the producer may run up to read + window
STREAM_CANCEL: Final = 2  # the reader left: close the producer

# `StreamFrame.end` values.
STREAM_MORE: Final = 0  # more frames follow
STREAM_END: Final = 1  # the producer finished after these items
STREAM_FAILED: Final = 2  # the stream ended with ``error`` after these items

# Reply statuses.
OK: Final = 0
ERROR: Final = 1
GAP: Final = 2  # a sequenced tell arrived ahead of its turn; the body is the seq expected


class WireError(ActorError, ValueError):
    """A frame or a value cannot cross the wire: malformed, unknown type, too deep or too large.

    Example:
        ```python
        try:
            await remote.send(Upload(data))
        except actors.cluster.WireError as error:
            log.warning("not sent: %s", error)
        ```
    """


DECODING: Final = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)
"""What decoding bytes from the network may raise. msgspec reports a string that is not
UTF-8 as a ``UnicodeDecodeError``, not as a ``DecodeError``: a receiver that caught only the
latter let such a frame escape (found by the property test of arbitrary bytes)."""

MALFORMED: Final = (WireError, *DECODING)
"""What checking and decoding a frame may raise: every way a frame is refused."""


class MessageTooLarge(WireError):
    """An encoded message is larger than the cluster's ``max_message_size``; nothing was sent.

    Example:
        ```python
        with pytest.raises(actors.cluster.MessageTooLarge):
            await remote.send(Blob(b"x" * 10_000_000))
        ```
    """


class NodeDown(ActorStopped):
    """The actor's node stopped heartbeating (or left): its actors count as stopped.

    Raised by sends and asks to actors of a node declared down, and the ``reason`` of the
    `Terminated` that watchers of those actors receive when the node disappeared without
    leaving (a crash, a network partition).

    Example:
        ```python
        async def on_terminated(self, event: actors.Terminated) -> None:
            if isinstance(event.reason, actors.cluster.NodeDown):
                log.warning("lost %s with its node", event.ref.path)
        ```
    """


class ErrorInfo(msgspec.Struct, array_like=True, frozen=True):
    """An exception as it travels: enough to re-raise it, nothing executable."""

    kind: str  # "builtin", "actors" or "other"
    type: str  # the class's __qualname__
    text: str
    path: str  # the remote actor's path
    node: str


class Address(msgspec.Struct, array_like=True, frozen=True):
    """Where an exported actor lives: how a ref travels inside a message."""

    node: str
    incarnation: str
    id: int
    path: str
    accepts: tuple[str, ...] | None  # registered names, or None: any registered type
    free: int  # free mailbox slots when the address was made (a credit hint)
    # The public name of a durable actor (spawn(durable=True)), "" otherwise: a node that
    # receives such an address gets a `DurableRef` (tells through JetStream). A trailing
    # field with a default: nodes that predate it ignore it (msgspec drops trailing extras).
    durable: str = ""


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    """A request to an actor: a tell, try, ask or probe.

    A tell of a pipelined stream (see ``_window``) also carries its ``stream`` (a random id
    per sending ref, 0 for none), its ``seq`` (1, 2, ... in send order) and ``base``, the
    oldest seq its sender still waits to hear about (where a receiver that does not know
    the stream starts). Trailing fields with defaults: frames from before them decode as
    tells of no stream. ``trace``: the W3C ``traceparent`` of the sender's span when its
    system traces, else "" (in the envelope, not a NATS header: a `TELLS` frame carries
    several tells, each with its own sender's span; a durable mailbox stores the envelope).
    ``key``: a random 63-bit number an ASK carries, which a `CANCEL` frame of the same
    asker presents to abandon it (unguessable, so no other node can cancel it); 0 else.
    An ASK's ``timeout`` is the time its asker still waits: its deadline as a duration,
    never an absolute clock, since nodes' clocks differ.
    """

    version: int
    kind: int
    type: str
    body: msgspec.Raw
    timeout: float | None = None
    sender: str = ""
    stream: int = 0
    seq: int = 0
    base: int = 0
    trace: str = ""
    key: int = 0


class Told(msgspec.Struct, array_like=True, frozen=True):
    """One tell of a `TELLS` frame: what an `Envelope` of kind `TELL` would carry alone.

    The OK that answers a `TELLS` frame carries in its body the seqs of the frame that were
    refused, each with its error (``[[seq, ErrorInfo], ...]``; nil when none was).
    """

    type: str
    body: msgspec.Raw
    timeout: float | None = None
    trace: str = ""  # as `Envelope.trace`


class Reply(msgspec.Struct, array_like=True, frozen=True):
    """The answer to an `Envelope`: OK with a body (and the target's free slots), or an error.

    ``home``, in the answer to an ask: the owner's ask lane (its number) that takes asks for
    the actor on the actor's own loop, -1 for none, 0 for no word (other replies; a node
    that predates it: a trailing field with a default, see ``_lanes``).
    """

    version: int
    status: int
    body: msgspec.Raw = msgspec.Raw(b"\xc0")
    free: int = -1
    error: ErrorInfo | None = None
    home: int = 0


class StreamFrame(msgspec.Struct, array_like=True, frozen=True):
    """Items of a remote stream, producer to reader: frame ``seq`` (1, 2, ...) of ``stream``.

    ``items`` are encoded one by one (each as a reply is); ``end`` says whether the stream
    ends with this frame, and how (`STREAM_END`, `STREAM_FAILED` with ``error``).
    """

    version: int
    stream: int
    seq: int
    items: list[msgspec.Raw]
    end: int = STREAM_MORE
    error: ErrorInfo | None = None


class StreamControl(msgspec.Struct, array_like=True, frozen=True):
    """The reader of a remote stream to its producer's node: credit, or cancel.

    ``read`` is cumulative (the items read so far), so a lost or repeated grant does no
    harm: the next one carries the whole count.
    """

    version: int
    kind: int
    stream: int
    read: int = 0


class Heartbeat(msgspec.Struct, array_like=True, frozen=True):
    """A node announcing itself; ``leaving`` says it is detaching on purpose.

    ``connection`` counts the times this incarnation's NATS connection came back: when it
    grows, replies the node published just before may have died with its old server (a
    node that predates the field sends none, read as 0).
    """

    version: int
    node: str
    incarnation: str
    leaving: bool = False
    connection: int = 0


class Down(msgspec.Struct, array_like=True, frozen=True):
    """An exported actor of the publishing node has stopped for good."""

    version: int
    incarnation: str
    id: int
    reason: ErrorInfo | None = None


# -- the registry ---------------------------------------------------------------------------

_lock = threading.Lock()
_by_name: dict[str, type] = {}
_by_type: dict[type, str] = {}

_ATOMS: Final[tuple[type, ...]] = (bool, int, float, str, bytes, type(None))


@overload
def register_message(cls: type[T], *, name: str | None = None) -> type[T]: ...
@overload
def register_message(
    cls: None = None, *, name: str | None = None
) -> Callable[[type[T]], type[T]]: ...
def register_message(
    cls: type[T] | None = None, *, name: str | None = None
) -> type[T] | Callable[[type[T]], type[T]]:
    """Register a message type under a stable wire name (default ``"<module>:<qualname>"``).

    Every node must use the same name for the same type. The default is fine when both
    sides import the type from the same module; scripts that define messages in
    ``__main__`` need an explicit ``name``. Types are also registered on first use with
    their default name (when sent, and when an actor accepting them is exported), so
    explicit registration is needed only for a custom name, and must come first. Usable
    as a class decorator (``@register_message`` or ``@register_message(name=...)``) or as
    a call.

    Raises:
        ValueError: the name is taken by another type, or the type has another name.

    Example:
        ```python
        @actors.cluster.register_message(name="bank.Deposit")
        class Deposit(msgspec.Struct, frozen=True):
            amount: int

        actors.cluster.register_message(Balance, name="bank.Balance")
        ```
    """
    if cls is None:

        def decorate(klass: type[T]) -> type[T]:
            return _register(klass, name)

        return decorate
    return _register(cls, name)


def _register(cls: type[T], name: str | None) -> type[T]:
    wanted = name if name is not None else _default_name(cls)
    if not wanted:
        raise ValueError("a message name must not be empty")
    with _lock:
        known = _by_name.get(wanted)
        if known is not None and known is not cls:
            raise ValueError(
                f"message name {wanted!r} is already registered for {known.__qualname__}"
            )
        current = _by_type.get(cls)
        if current is not None and current != wanted:
            raise ValueError(
                f"{cls.__qualname__} is already registered as {current!r}; register it "
                "before it is first sent or exported"
            )
        _by_name[wanted] = cls
        _by_type[cls] = wanted
    return cls


def message_name(cls: type) -> str:
    """The wire name of ``cls``, registering it under its default name on first use."""
    known = _by_type.get(cls)
    if known is not None:
        return known
    register_message(cls)
    return _by_type[cls]


def known_name(cls: type) -> str:
    """The wire name ``cls`` has, or would get on first use (never registers it)."""
    return _by_type.get(cls) or _default_name(cls)


def message_type(name: str) -> type | None:
    """The type registered under ``name``, if any."""
    return _by_name.get(name)


def _default_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


for _atom in _ATOMS:
    register_message(_atom)


# -- frame checks ---------------------------------------------------------------------------

# Bytes a scalar item takes, its header included, by header byte (0: not a scalar whose
# size its header gives: a container, a sized str/bin, an extension, or invalid). One table
# lookup per item keeps the scan's common case (ints, short strings, nil) to a few steps.
_FIXED: Final[dict[int, int]] = {
    0xC0: 0,
    0xC2: 0,
    0xC3: 0,
    0xCA: 4,
    0xCB: 8,
    0xCC: 1,
    0xCD: 2,
    0xCE: 4,
    0xCF: 8,
    0xD0: 1,
    0xD1: 2,
    0xD2: 4,
    0xD3: 8,
}


def _scalar_sizes() -> tuple[int, ...]:
    sizes = [0] * 256
    for head in range(256):
        if head <= 0x7F or head >= 0xE0:  # positive and negative fixint
            sizes[head] = 1
        elif 0xA0 <= head <= 0xBF:  # fixstr
            sizes[head] = 1 + (head & 0x1F)
        elif head in _FIXED:
            sizes[head] = 1 + _FIXED[head]
    return tuple(sizes)


_SCALAR: Final[tuple[int, ...]] = _scalar_sizes()
# Headers followed by a big-endian length of 1, 2 or 4 bytes, then that many bytes.
_SIZED: Final[dict[int, int]] = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
# Headers of arrays (1 slot per element) and maps (2 slots per entry) with a 2- or 4-byte count.
_CONTAINERS: Final[dict[int, tuple[int, int]]] = {
    0xDC: (2, 1),
    0xDD: (4, 1),
    0xDE: (2, 2),
    0xDF: (4, 2),
}


def check_frame(data: bytes, max_size: int, max_depth: int) -> None:
    """Check a MessagePack frame before any decoder sees it.

    Refuses frames larger than ``max_size``, nested deeper than ``max_depth``, with a length
    or count header that claims more than the frame holds, with extension types, with
    trailing bytes, or truncated. Iterative and linear in the number of items.

    Raises:
        WireError: with the reason (`MessageTooLarge` for the size).
    """
    size = len(data)
    if size > max_size:
        raise MessageTooLarge(f"frame of {size} bytes exceeds the limit of {max_size} bytes")
    scalar = _SCALAR
    pos = 0
    remaining = 1  # items still expected at the open level; the frame itself is one item
    outer: list[int] = []  # the same for each enclosing level, innermost last
    try:
        while True:
            if not remaining:
                if not outer:
                    break
                remaining = outer.pop()
                continue
            remaining -= 1
            head = data[pos]  # IndexError past the end: see below
            step = scalar[head]
            if step:
                # Not checked against the end here: the next read, or the final check,
                # finds a scalar that ran past it (nothing else happens in between).
                pos += step
                continue
            pos += 1
            if head <= 0x9F:  # fixmap 0x80-0x8f, fixarray 0x90-0x9f
                count = head & 0x0F if head >= 0x90 else 2 * (head & 0x0F)
            elif head in _SIZED:
                width = _SIZED[head]
                pos += width + int.from_bytes(data[pos : pos + width], "big")
                if pos > size:
                    raise WireError("a length header claims more bytes than the frame holds")
                continue
            elif head in _CONTAINERS:
                width, slots = _CONTAINERS[head]
                if pos + width > size:
                    raise WireError("truncated frame")
                count = slots * int.from_bytes(data[pos : pos + width], "big")
                pos += width
            elif 0xC7 <= head <= 0xC9 or 0xD4 <= head <= 0xD8:
                raise WireError("MessagePack extension types are not accepted")
            else:
                raise WireError(f"invalid MessagePack byte 0x{head:02x}")
            if count:
                if count > size - pos:  # every item takes at least one byte
                    raise WireError("a count header claims more items than the frame holds")
                if len(outer) >= max_depth:  # this container would be one level too deep
                    raise WireError(f"frame nested deeper than {max_depth} levels")
                outer.append(remaining)
                remaining = count
    except IndexError:  # an item expected at or past the end
        pass
    else:
        if pos == size:
            return
        if pos < size:
            raise WireError(f"{size - pos} trailing bytes after the frame")
    if pos > size:  # the last scalar claimed bytes beyond the end
        raise WireError("a length header claims more bytes than the frame holds")
    raise WireError("truncated frame")


# -- errors ---------------------------------------------------------------------------------

_ACTORS_ERRORS: Final[dict[str, type[ActorError]]] = {
    cls.__qualname__: cls
    for cls in (
        ActorNotFound,
        ActorStopped,
        AskTimeout,
        DeadlockError,
        MailboxFull,
        MessageTypeError,
        NotSendableError,
        SendTimeout,
        WireError,
        MessageTooLarge,
        NodeDown,
    )
}
_UNDELIVERED: Final = (ActorStopped, MailboxFull, SendTimeout)


def error_info(error: BaseException, path: str, node: str) -> ErrorInfo:
    """Describe ``error`` for the wire; only its type name and text travel."""
    cls = type(error)
    if cls.__module__ == "builtins" and isinstance(getattr(builtins, cls.__name__, None), type):
        kind = "builtin"
    elif _ACTORS_ERRORS.get(cls.__qualname__) is cls:
        kind = "actors"
    else:
        kind = "other"
    return ErrorInfo(kind, cls.__qualname__, str(error), path, node)


def error_from(info: ErrorInfo, message: object = None) -> Exception:
    """Rebuild an error that crossed the wire: a builtin or an `actors` error as itself,
    anything else as `RemoteError` carrying the type's name. The text names the remote
    actor and its node."""
    where = f"actor {info.path} on node {info.node}" if info.path else f"node {info.node}"
    text = f"{info.text} (raised by {where})"
    if info.kind == "builtin":
        cls: object = getattr(builtins, info.type, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                rebuilt: Exception = cls(text)
            except Exception:  # a builtin with a special constructor (UnicodeDecodeError)
                pass
            else:
                return rebuilt
    elif info.kind == "actors":
        known = _ACTORS_ERRORS.get(info.type)
        if known is not None:
            if issubclass(known, _UNDELIVERED):
                return known(text, message)
            return known(text)
    return RemoteError(f"{info.type}: {text}", info.type)


def decoder_for(tp: Any, dec_hook: Any) -> msgspec.msgpack.Decoder[Any]:
    """A MessagePack decoder for ``tp`` that refuses extension types."""

    def no_ext(code: int, data: memoryview) -> Any:
        raise WireError("MessagePack extension types are not accepted")

    return msgspec.msgpack.Decoder(tp, dec_hook=dec_hook, ext_hook=no_ext)
