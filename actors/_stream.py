"""Streamed replies: a `StreamRequest[T]` answered by many items, read with ``ref.stream``.

A stream travels as an ordinary ask envelope, ``Ask(request, channel)``, whose reply slot is
a `Channel` instead of a one-value `Oneshot`. Every path of the runtime that settles an ask
with an error (the actor stopped, was killed, failed; its mailbox drained on stop; dead
letters) therefore ends a stream with that error too, after the items already sent. The
cell's only additions are in its reply path: a handler's reply that is not known to be
sendable, for a `Channel`, is handed to `pump` instead of the sendable check, and a
`StreamRequest` is refused at admission (`refuse_stream`), which runs once per type per ref,
so ordinary sends and asks pay nothing.

Parts, each with one job:

* `StreamRequest[T]`: the base class of requests whose reply is a stream of ``T``.
* `Channel`: the bounded window of items between the producer and the consumer, and the
  ask's reply slot (the `Oneshot` interface the cell settles: ``settle(END)`` ends it,
  ``settle(error=...)`` ends it with an error).
* `pump`: the producer side, run by the cell inside the actor's turn: it drives the async
  iterable the handler returned, checks each item as a reply is checked, and pauses while
  the window is full.
* `ReplyStream[T]`: the consumer's handle, an async iterator and an async context manager;
  `BlockingReplyStream[T]` is its form for plain threads (``for``, ``with``). Each owns a
  `Reader`, the consumer's side both share (the read-once state, opening, closing, the
  errors), which sends the request through a `StreamStart`: `ENQUEUE` for a local actor,
  a publisher of its own for ``actors.cluster``. So a remote stream is these same two
  handles, given another channel and another start.

Channel invariants:

* One producer: the actor's run task, on the actor's home loop (an actor does not move
  between loops during a handler). One consumer: the task reading the `ReplyStream` (or the
  thread reading the `BlockingReplyStream`); the handle refuses a second reader
  (`StreamClosed`), so consumer operations never overlap. Either side may be on any thread.
* Every field is read and written under the channel's lock, except ``window`` and ``low``
  (immutable) and the ``gone`` flag read by `Channel.abandoned` (written once, False to
  True). Wake-ups (settling the other side's `Oneshot`, which may cross threads: asyncio
  ``call_soon_threadsafe``, a trio token, a thread event) happen after the lock is released.
* The lock is reentrant because the consumer handle's finaliser (`ReplyStream.__del__`)
  closes the channel, and a finaliser may run at any bytecode of any thread, including the
  producer's thread while it is inside a locked section of this very channel. Each producer
  step that waits stores its waiter *before* checking ``gone`` (and `Channel.close` sets
  ``gone`` before taking the waiter), so a close interleaved anywhere is seen by one of
  the two: the producer never sleeps on a consumer that has left.
* At most ``window`` items are in flight: the producer is asked for its next item only
  while fewer than ``window`` wait in the channel; once full it sleeps until the consumer
  has taken the channel down to ``low`` (half the window), so that a fast consumer wakes
  the producer once per half window rather than once per item.
"""

from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING, Any, Final, Generic, Protocol, TypeVar, cast

import anyio.lowlevel
import msgspec

from ._checkpoint import yield_now
from ._delivery import deliver
from ._errors import (
    ActorStopped,
    AskTimeout,
    DeadlockError,
    MessageTypeError,
    StreamClosed,
    StreamRequestError,
)
from ._mailbox import OK
from ._message import Ask
from ._oneshot import CANCELLED, Expired, Oneshot, ensure_plain_thread, oneshot, thread_oneshot
from ._sendable import check_sendable, known_sendable
from ._validation import check_timeout

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Callable
    from types import TracebackType
    from typing import Self

    from ._cell import Cell

__all__ = (
    "DEFAULT_WINDOW",
    "END",
    "ENQUEUE",
    "WAITING",
    "BlockingReplyStream",
    "Channel",
    "Reader",
    "ReplyStream",
    "StreamRequest",
    "StreamStart",
    "check_stream_options",
    "check_window",
    "pump",
    "refuse_stream",
    "synchronous_stream",
)

T = TypeVar("T")
W = TypeVar("W", bound=Oneshot)

DEFAULT_WINDOW: Final = 16
"""Items a stream's producer may run ahead of its consumer (see `Ref.stream`)."""


class _End:
    """The reply value with which the cell ends a stream whose producer finished."""

    __actors_sendable__: Final = True  # so that the cell's reply check passes it at once

    def __repr__(self) -> str:
        return "END"


END: Final = _End()

_BUDGET: Final = 128  # items put without a wait before the producer yields (COOPERATIVE_BUDGET)
_ROOM: Final = 0
_FULL: Final = 1
_GONE: Final = 2


class StreamRequest(msgspec.Struct, Generic[T], frozen=True):
    """Base class of requests answered by a stream of items of type ``T``.

    The handler returns an async iterable for it (typically an async generator method); the
    caller reads the items with ``async for item in ref.stream(request)``. Each item must be
    sendable, as a reply must. ``send`` and ``ask`` refuse a stream request
    (`StreamRequestError`).

    Example:
        ```python
        class Tokens(actors.StreamRequest[str], frozen=True):
            prompt: str

        class Model(actors.Actor[Tokens]):
            async def receive(self, message: Tokens) -> AsyncIterator[str]:
                return self.generate(message.prompt)

            async def generate(self, prompt: str) -> AsyncIterator[str]:
                for word in prompt.split():
                    yield word

        async for token in model.stream(Tokens("hello streaming world")):
            print(token)
        ```
    """


class Channel(Oneshot):
    """The window of items between a stream's producer and its consumer; the ask's reply slot.

    See the module docstring for who may touch what. Internal.
    """

    __slots__ = (
        "_ended",
        "_error",
        "_gone",
        "_items",
        "_lock",
        "_reader",
        "_writer",
        "low",
        "path",
        "request",
        "sent",
        "window",
    )

    def __init__(self, path: str, request: object, window: int) -> None:
        self.path = path  # the producing actor's, for error messages
        self.request = request
        self.window = window
        self.low = window // 2
        self.sent = 0  # items the producer put; producer thread only
        self._lock = threading.RLock()  # reentrant: see the module docstring
        self._items: collections.deque[object] = collections.deque()
        self._gone = False  # the consumer left: False -> True once
        self._ended = False  # the producer's outcome is known: False -> True once
        self._error: BaseException | None = None
        self._reader: Oneshot | None = None  # the consumer, waiting for an item
        self._writer: Oneshot | None = None  # the producer, waiting for room

    def __repr__(self) -> str:
        return f"<Channel {self._what()} from {self.path} window={self.window}>"

    def _what(self) -> str:
        return type(self.request).__qualname__

    @property
    def abandoned(self) -> int:  # type: ignore[override]  # read-only here: see `close`
        """CANCELLED once the consumer has left (a queued stream request is then skipped,
        and counted as a cancelled ask), else 0."""
        return CANCELLED if self._gone else 0

    def abandon(self, reason: int) -> None:
        """The `Oneshot` side of leaving: for a channel, the consumer closing it."""
        self.close()

    def watch_abandon(self, callback: Callable[[], object] | None) -> bool:
        """As `Oneshot.watch_abandon`, under the channel's own lock: ``callback`` runs when
        the consumer leaves (an actor with ``cancel_abandoned`` then cancels its producer)."""
        with self._lock:
            if self._gone and callback is not None:
                return False
            self._on_abandon = callback
            return True

    # -- the reply slot (the cell's side) ----------------------------------------------

    def settle(self, value: object = None, error: BaseException | None = None) -> None:
        """End the stream: normally (``value`` is `END`) or with ``error``; first end wins.

        Raises:
            StreamRequestError: the handler replied with a plain value (``value`` is not
                `END`); raised in the handler's context, where the cell turns it into the
                actor's failure, as for a reply that is not sendable.
        """
        if error is None and value is not END:
            raise StreamRequestError(
                f"the handler of actor {self.path} returned {type(value).__qualname__} for "
                f"the stream request {self._what()}; return an async iterable of its items "
                "(for example an async generator method: `return self.items(message)`)"
            )
        with self._lock:
            if self._ended:
                return
            self._ended = True
            self._error = error
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.settle()

    async def wait(self, timeout: float | None = None) -> Any:
        """Not used: a stream is read through its `ReplyStream`."""
        raise RuntimeError("a stream is read with `async for`, not awaited")

    # -- the producer's side (the actor's run task) --------------------------------------

    def put(self, item: object) -> int:
        """Add an item; ``_FULL`` when the window is now full, ``_GONE`` if nobody reads."""
        with self._lock:
            if self._gone:
                return _GONE
            self._items.append(item)
            self.sent += 1
            reader, self._reader = self._reader, None
            full = len(self._items) >= self.window
        if reader is not None:
            reader.settle()
        return _FULL if full else _ROOM

    async def room(self) -> bool:
        """Wait until the consumer has taken the window down to ``low``; False if it left.

        Cancellation: the wait is given up and the channel left as it was.
        """
        waiter = oneshot()
        with self._lock:
            self._writer = waiter  # stored before `gone` is read: see the module docstring
            if self._gone or len(self._items) <= self.low:
                self._writer = None
                return not self._gone
        try:
            await waiter.wait()
        finally:
            with self._lock:
                if self._writer is waiter:
                    self._writer = None
        return not self._gone

    # -- the consumer's side --------------------------------------------------------------

    def take(self) -> object:
        """The next item, or ``_WAITING`` when there is none yet (`get` then waits)."""
        with self._lock:
            items = self._items
            if items:
                item = items.popleft()
                writer = self._writer
                if writer is not None and len(items) <= self.low:
                    self._writer = None
                else:
                    writer = None
            elif self._ended:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            else:
                return _WAITING
        if writer is not None:
            writer.settle()
        return item

    async def get(self, timeout: float | None) -> object:
        """The next item, waiting up to ``timeout`` seconds for it.

        Raises:
            StopAsyncIteration: the producer finished and every item was taken.
            Expired: no item within ``timeout`` seconds.
            BaseException: the error the stream ended with, once, after its items.

        Cancellation: the wait is given up; an item that arrives meanwhile stays queued.
        """
        while True:
            item, waiter = self._take_or_wait(oneshot)
            if waiter is None:
                return item
            try:
                await waiter.wait(timeout)
            finally:
                self._stop_waiting(waiter)

    def get_blocking(self, timeout: float | None) -> object:
        """`get` for a plain thread: block it until an item, the end, or ``timeout``.

        Raises:
            StopAsyncIteration, Expired, BaseException: as for `get`.
        """
        while True:
            item, waiter = self._take_or_wait(thread_oneshot)
            if waiter is None:
                return item
            try:
                waiter.wait_blocking(timeout)
            finally:
                self._stop_waiting(waiter)

    def _take_or_wait(self, make: Callable[[], W]) -> tuple[object, W | None]:
        """The next item (the end raises, as `take`), or a waiter made with ``make`` and
        stored for the producer to wake once an item or the end is there."""
        while True:
            item = self.take()
            if item is not _WAITING:
                return item, None
            waiter = make()
            with self._lock:
                if not (self._items or self._ended):  # else it arrived meanwhile: take it
                    self._reader = waiter
                    return _WAITING, waiter

    def _stop_waiting(self, waiter: Oneshot) -> None:
        with self._lock:
            if self._reader is waiter:
                self._reader = None

    def close(self) -> None:
        """The consumer leaves: drop what is queued and wake a paused producer to stop."""
        with self._lock:
            if self._gone:
                return
            self._gone = True  # set before the writer is taken: see the module docstring
            self._items.clear()
            writer, self._writer = self._writer, None
            watcher: Callable[[], object] | None = getattr(self, "_on_abandon", None)
            self._on_abandon = None
        if writer is not None:
            writer.settle()
        if watcher is not None:
            watcher()


class _Waiting:
    pass


_WAITING: Final = _Waiting()
WAITING: Final = _WAITING
"""What `Channel.take` returns when no item is there yet (for the cluster's remote streams)."""


async def pump(channel: Channel, produced: object, stopping: Callable[[], bool]) -> object:
    """Drive the async iterable a handler returned into ``channel``; return `END`.

    Runs in the actor's turn (its run task), so the actor handles nothing else meanwhile.
    Items are checked as a reply is (`check_sendable`). The producer is paused while the
    window is full, and closed (``aclose``) when the consumer leaves or the actor stops;
    a stop ends the stream with `ActorStopped` after the items already sent.

    Raises:
        StreamRequestError: ``produced`` is not an async iterable.
        NotSendableError: an item is mutable (the stream ends with it, the actor fails).
        Exception: whatever the producer raised (the cell ends the stream with it).

    Cancellation: the producer is closed and the cancellation propagates (a kill).
    """
    if not hasattr(type(produced), "__aiter__"):
        channel.settle(value=produced)  # raises StreamRequestError, naming the fix
    iterator = aiter(cast("AsyncIterable[object]", produced))
    what = f"item of the stream of actor {channel.path} for {type(channel.request).__qualname__}"
    budget = _BUDGET
    try:
        while not channel.abandoned:
            if stopping():
                channel.settle(error=_stopped(channel))
                break
            try:
                item: object = await anext(iterator)
            except StopAsyncIteration:
                break
            if not known_sendable(item):
                check_sendable(item, what)
            state = channel.put(item)
            if state == _FULL:
                if not await channel.room():
                    break
                budget = _BUDGET
            else:
                budget -= 1
                if not budget:
                    # A producer that never waits, reading for a consumer that keeps up (or
                    # a wide window), would hold its loop: yield as a run task's turn does.
                    budget = _BUDGET
                    await yield_now()
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return END


def _stopped(channel: Channel) -> ActorStopped:
    return ActorStopped(
        f"actor {channel.path} is stopping: its stream of {type(channel.request).__qualname__} "
        f"ended after {channel.sent} item(s)",
        channel.request,
    )


def refuse_stream(cell: Cell, message: object) -> None:
    """Refuse ``send``/``ask`` of a stream request (called by `Cell.admit`).

    Raises:
        StreamRequestError: ``message`` is a `StreamRequest`.
    """
    kind = type(message)
    if not issubclass(kind, StreamRequest):
        return
    raise StreamRequestError(
        f"{kind.__qualname__} is a StreamRequest: read its items from actor "
        f"{cell.path} with `async for item in ref.stream(request)`, not send or ask "
        "(nothing was sent)"
    )


def synchronous_stream(cell: Cell, message: object) -> StreamRequestError:
    """The error for a synchronous handler answering a stream request."""
    return StreamRequestError(
        f"the synchronous handler of actor {cell.path} answered the stream request "
        f"{type(message).__qualname__}; a stream is driven in the actor's turn, so define "
        "the handler with `async def receive` and return an async generator"
    )


def _admit(cell: Cell, request: object) -> None:
    """`Cell.admit` for a stream request: type and sendability, never cached as admitted."""
    if not isinstance(request, StreamRequest):
        raise StreamRequestError(
            f"ref.stream() takes a StreamRequest; {type(request).__qualname__} is not one "
            f"(use send or ask with actor {cell.path})"
        )
    request = cast("object", request)  # its item type does not matter here
    accepts = cell.accepts
    if accepts is not None and not isinstance(request, accepts):
        names = " | ".join(t.__qualname__ for t in accepts)
        raise MessageTypeError(
            f"actor {cell.path} does not accept {type(request).__qualname__}; it accepts {names}"
        )
    check_sendable(request, f"stream request to actor {cell.path}")


class StreamStart(Protocol):
    """How a stream's request reaches its producer, for a `Reader` about to open.

    `ENQUEUE` puts it into a local actor's mailbox; ``actors.cluster`` publishes it to
    another node. Either raises what refused it (the reader then closes the stream).
    """

    async def start(self, reader: Reader[Any]) -> None:
        """Send the request of ``reader``, from a task."""
        ...

    def start_blocking(self, reader: Reader[Any]) -> None:
        """Send the request of ``reader``, from a plain thread."""
        ...


class _Enqueue:
    """`StreamStart` of an actor of this system: the request enters its mailbox as an ask
    whose reply slot is the reader's channel."""

    __slots__ = ()

    async def start(self, reader: Reader[Any]) -> None:
        cell, request = reader.cell, reader.request
        if cell.in_handler():
            raise DeadlockError(
                f"actor {cell.path} opened a stream to itself; it would wait forever for "
                "its own items"
            )
        envelope = Ask(request, reader.channel)
        if cell.mailbox.put_nowait(envelope) == OK:
            return
        try:
            code = await deliver(cell, envelope, reader.timeout)
        except Expired:
            raise reader.room_timeout() from None
        if code != OK:
            await anyio.lowlevel.checkpoint()
            raise cell.stopped_error(request)

    def start_blocking(self, reader: Reader[Any]) -> None:
        cell, request = reader.cell, reader.request
        try:
            code = cell.mailbox.put_blocking(Ask(request, reader.channel), reader.timeout)
        except Expired:
            raise reader.room_timeout() from None
        if code != OK:
            raise cell.stopped_error(request)


ENQUEUE: Final[StreamStart] = _Enqueue()
"""The `StreamStart` of a local stream (`Ref.stream` on an `ActorRef`)."""


class Reader(Generic[T]):
    """The consumer's side of a stream that `ReplyStream` and `BlockingReplyStream` share.

    Each handle owns one (composition): the request, its channel, how the request is sent
    (a `StreamStart`), and the read-once state: ``opened`` (the request was sent),
    ``iterated`` (a second ``for`` is refused), ``closed`` (the consumer left: reads raise
    `StreamClosed`). Written by the one consumer; see the module docstring. Internal.
    """

    __slots__ = ("cell", "channel", "closed", "iterated", "opened", "request", "start", "timeout")

    def __init__(
        self,
        cell: Cell,
        request: StreamRequest[T],
        window: int,
        timeout: float | None,
        channel: Channel | None = None,
        start: StreamStart = ENQUEUE,
    ) -> None:
        _admit(cell, request)
        self.cell = cell
        self.request = request
        self.timeout = timeout
        # A remote stream (``actors.cluster``) brings a channel of its own, fed by its node.
        self.channel = Channel(cell.path, request, window) if channel is None else channel
        self.start = start
        self.opened = False
        self.iterated = False
        self.closed = False

    def __del__(self) -> None:
        # The consumer dropped its handle without closing it (`break` out of a plain
        # `async for`): stop the producer. Safe at any bytecode: see Channel's invariants.
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.close()

    def describe(self, handle: str) -> str:
        """The handle's repr."""
        state = "closed" if self.closed else "open" if self.opened else "new"
        return (
            f"<{handle} {type(self.request).__qualname__} from {self.cell.path} "
            f"window={self.channel.window} {state}>"
        )

    def iterate(self) -> None:
        """The consumer starts a ``for`` loop over the stream: once only.

        Raises:
            StreamClosed: it was iterated already.
        """
        if self.iterated:
            raise self.consumed("is already consumed")
        self.iterated = True

    def enter(self) -> None:
        """The consumer enters a ``with`` block: only on a stream not opened yet.

        Raises:
            StreamClosed: it was opened (or closed) already.
        """
        if self.opened or self.closed:
            raise self.consumed("was already opened")

    async def open(self) -> None:
        """Send the request (`StreamStart.start`); a refusal closes the stream.

        Cancellation: the stream is closed; nothing was enqueued, unless it already was.
        """
        self.opened = True
        try:
            await self.start.start(self)
        except BaseException:
            self.close()
            raise

    def open_blocking(self) -> None:
        """`open` from a plain thread."""
        self.opened = True
        try:
            self.start.start_blocking(self)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """The consumer leaves: the producer is stopped at its next item. Idempotent."""
        self.closed = True
        self.channel.close()

    def consumed(self, why: str) -> StreamClosed:
        return StreamClosed(
            f"the stream of {type(self.request).__qualname__} from actor {self.cell.path} "
            f"{why}; a stream is read once, by one task: call ref.stream() again for a new one"
        )

    def item_timeout(self) -> AskTimeout:
        """No item came within the timeout: the stream is closed; the error to raise."""
        self.close()
        return AskTimeout(
            f"actor {self.cell.path} sent no item of {type(self.request).__qualname__} "
            f"within {self.timeout} s; the stream is closed"
        )

    def room_timeout(self) -> AskTimeout:
        """The error of a request that found no room in the mailbox within the timeout."""
        return AskTimeout(
            f"mailbox of actor {self.cell.path} stayed full for {self.timeout} s; "
            f"{type(self.request).__qualname__} not sent"
        )


class ReplyStream(Generic[T]):
    """The items of a `StreamRequest`, as an async iterator and an async context manager.

    Made by `Ref.stream`; nothing is sent until the first item is read (or the ``async
    with`` is entered). Read it once, from one task. At most ``window`` items are in flight:
    the actor's producer is paused while they wait here unread.

    Leaving early stops the producer at its next item (its async generator is closed, so
    its ``finally`` blocks run) and the actor goes on with its next message:

    * deterministically when the ``async with`` block is left, on `aclose`, and when a read
      is cancelled or times out;
    * when the stream is garbage, for a plain ``async for`` left with ``break``: at once in
      CPython for an unnamed stream (``async for x in ref.stream(q)``), by reference
      counting; a stream kept in a variable lives as long as the variable.

    Example:
        ```python
        async with model.stream(Tokens("hi"), window=8) as tokens:
            async for token in tokens:
                if token == "stop":
                    break  # the producer is closed on leaving the block
        ```
    """

    __slots__ = ("__weakref__", "_reader", "_reading")

    def __init__(self, reader: Reader[T]) -> None:
        self._reader = reader
        self._reading = False  # a read is under way: a second reader is refused

    def __repr__(self) -> str:
        return self._reader.describe("ReplyStream")

    def __aiter__(self) -> Self:
        self._reader.iterate()
        return self

    async def __aenter__(self) -> Self:
        """Send the request now; leaving the block closes the stream."""
        reader = self._reader
        reader.enter()
        self._reading = True
        try:
            await reader.open()
        finally:
            self._reading = False
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._reader.close()

    async def __anext__(self) -> T:
        """The next item.

        Raises:
            StopAsyncIteration: the stream ended normally.
            AskTimeout: no item within the stream's timeout (the stream is closed).
            ActorStopped: the actor stopped before or while streaming (after its items).
            StreamClosed: the stream was closed, or another task is reading it.
            Exception: what the producer raised, after the items it sent before.

        Cancellation: the stream is closed and its producer stopped; nothing is lost that
        was not already abandoned.
        """
        reader = self._reader
        if reader.opened and not (reader.closed or self._reading):
            # The common case, inlined: an item is there (the producer ran ahead).
            item = reader.channel.take()  # raises at the end: StopAsyncIteration, the error
            if item is not _WAITING:
                return cast("T", item)
        if reader.closed or self._reading:
            raise reader.consumed("is closed" if reader.closed else "is being read by another task")
        self._reading = True
        try:
            if not reader.opened:
                await reader.open()
            item = await reader.channel.get(reader.timeout)
        except Expired:
            raise reader.item_timeout() from None
        except Exception:
            raise  # the end, or the producer's error: the stream is over, not closed
        except BaseException:
            reader.close()  # cancelled: the consumer has left
            raise
        finally:
            self._reading = False
        return cast("T", item)

    async def aclose(self) -> None:
        """Close the stream: its producer is stopped at its next item. Idempotent.

        Cancellation: the stream is closed even so.
        """
        self._reader.close()
        await anyio.lowlevel.checkpoint()


class BlockingReplyStream(Generic[T]):
    """`ReplyStream` for plain threads: an iterator and a context manager that block.

    Made by `ActorRef.blocking_stream`; the same window, timeout, leaving-early and error
    rules as `ReplyStream`, with ``with`` / ``for`` / `close` in place of their async forms.

    Example:
        ```python
        def export(scanner: actors.ActorRef[Rows], out: TextIO) -> None:  # a plain thread
            with scanner.blocking_stream(Rows("orders")) as rows:
                for row in rows:
                    out.write(f"{row}\\n")
        ```
    """

    __slots__ = ("__weakref__", "_reader")

    def __init__(self, reader: Reader[T]) -> None:
        self._reader = reader

    def __repr__(self) -> str:
        return self._reader.describe("BlockingReplyStream")

    def __iter__(self) -> Self:
        self._reader.iterate()
        return self

    def __enter__(self) -> Self:
        """Send the request now; leaving the block closes the stream."""
        reader = self._reader
        reader.enter()
        ensure_plain_thread()
        reader.open_blocking()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __next__(self) -> T:
        """The next item, blocking this thread until it comes.

        Raises:
            StopIteration: the stream ended normally.
            AskTimeout, ActorStopped, StreamClosed, Exception: as `ReplyStream.__anext__`.
        """
        reader = self._reader
        if reader.closed:
            raise reader.consumed("is closed")
        if not reader.opened:
            ensure_plain_thread()
            reader.open_blocking()
        try:
            item = reader.channel.get_blocking(reader.timeout)
        except StopAsyncIteration:
            raise StopIteration from None
        except Expired:
            raise reader.item_timeout() from None
        except Exception:
            raise
        except BaseException:
            reader.close()  # KeyboardInterrupt, SystemExit: the reader has left
            raise
        return cast("T", item)

    def close(self) -> None:
        """Close the stream: its producer is stopped at its next item. Idempotent."""
        self._reader.close()


def check_stream_options(window: object, timeout: object) -> None:
    """The options of ``ref.stream`` (local or remote), checked before anything is made.

    Raises:
        TypeError, ValueError: ``window`` is not an int >= 1, or ``timeout`` is not None or
            finite seconds >= 0.
    """
    check_window(window)
    check_timeout("timeout", timeout)


def check_window(window: object) -> int:
    """A stream's window: an int >= 1.

    Raises:
        TypeError, ValueError: it is not.
    """
    if type(window) is not int:
        raise TypeError(f"window must be an int >= 1, not {type(window).__qualname__}")
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    return window
