"""`Ref` and `ActorRef`: the typed handles through which everything talks to an actor.

`Ref` is what every handle can do wherever its actor lives: send, ask, watch, join, compare
and travel in messages. `ActorRef` is the handle to an actor of this system and adds what
only a local handle can honour (`ActorRef.stop`, `ActorRef.statistics`); the cluster's
`RemoteRef` is the other kind. Code that may be handed either kind (a ``reply_to`` field of
a message that crosses nodes, `Actor.watch`) types it `Ref`; code that spawned the actor
holds an `ActorRef`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

import anyio.lowlevel

from ._checkpoint import checkpoint
from ._delivery import deliver
from ._errors import AskTimeout, DeadlockError, MailboxFull, SendTimeout, StreamNotSupported
from ._mailbox import FULL, OK
from ._message import Ask, Request
from ._oneshot import CANCELLED, EXPIRED, Expired, ensure_plain_thread, oneshot, thread_oneshot
from ._request import running_cell
from ._stream import (
    DEFAULT_WINDOW,
    BlockingReplyStream,
    Reader,
    ReplyStream,
    StreamRequest,
    check_stream_options,
)
from ._validation import check_timeout

if TYPE_CHECKING:
    from collections.abc import Iterable
    from collections.abc import Set as AbstractSet

    from ._cell import ActorStatistics, Cell

__all__ = ("COOPERATIVE_BUDGET", "DEFAULT_ASK_TIMEOUT", "ActorRef", "Ref", "cell_of")

M = TypeVar("M", contravariant=True)
R = TypeVar("R")
T = TypeVar("T")

_NONE_ADMITTED: Final[AbstractSet[type]] = frozenset()

COOPERATIVE_BUDGET: Final = 128
"""Sends through one ref between two forced yields of the sender (see `ActorRef.send`)."""

DEFAULT_ASK_TIMEOUT: Final = 5.0
"""Seconds an `ActorRef.ask` waits by default, as OTP's ``gen_server:call``."""


def cell_of(ref: Ref[Any]) -> Cell:
    """The cell behind ``ref``: the runtime's one way from a handle to its actor. Internal.

    Users never hold a cell. The parts of the runtime that are handed refs (the event bus,
    pools, scopes, watches, the test kit, the cluster's registry) reach an actor's mailbox
    and place in the tree through this one accessor, so refs keep their field private. A
    remote ref's cell is the cluster's proxy for the remote actor.
    """
    return ref._cell  # pyright: ignore[reportPrivateUsage]  # the one sanctioned read


class Ref(Generic[M]):
    """A handle to an actor that accepts messages of type ``M``, wherever the actor lives.

    The common face of `ActorRef` (an actor of this system) and, with a cluster,
    ``actors.cluster.RemoteRef`` (an actor on another node): what both can honour. Type a
    field or parameter `Ref` when it may hold either kind, for example the ``reply_to`` of
    a message that crosses nodes; `ActorRef` when the code needs the local-only operations
    (`ActorRef.stop`, `ActorRef.statistics`). Refs are never built by users: `spawn` and
    the cluster's lookups hand them out.

    Equality and hashing go by the actor: two refs to one actor are equal, whichever way
    each was obtained.

    Example:
        ```python
        class Get(actors.Request[int], frozen=True):
            reply_to: actors.Ref[Answer]  # a local or a remote actor

        async def notify(ref: actors.Ref[Ping]) -> None:
            await ref.send(Ping())
        ```
    """

    __slots__ = ("_cell",)
    __actors_sendable__: Final = True  # a ref is an immutable handle: safe to share

    def __init__(self, cell: Cell) -> None:
        self._cell = cell

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The actor's path, such as ``/user/greeter``."""
        return self._cell.path

    @property
    def is_alive(self) -> bool:
        """False once the actor is known to have stopped or failed for good."""
        return not self._cell.terminated.is_set

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    async def send(self, message: M, *, timeout: float | None = None) -> None:
        """Deliver ``message``, waiting while the actor cannot take it (backpressure).

        Each kind of ref documents what "delivered" means for it: `ActorRef.send`
        (enqueued), ``RemoteRef.send`` (enqueued on the remote node),
        ``DurableRef.send`` (stored by JetStream).

        Cancellation: for a local actor nothing is enqueued; a message on its way to
        another node may still arrive (see each kind).

        Example:
            ```python
            await ref.send(Ping())
            ```
        """
        raise NotImplementedError  # every kind of ref overrides it

    def try_send(self, message: M) -> None:
        """Deliver ``message`` if the actor can take it right now; never waits.

        Example:
            ```python
            ref.try_send(Ping())  # MailboxFull when there is no room
            ```
        """
        raise NotImplementedError

    def blocking_send(self, message: M, *, timeout: float | None = None) -> None:
        """`send` for plain threads that run no event loop.

        Example:
            ```python
            ref.blocking_send(Ping())  # from a plain thread
            ```
        """
        raise NotImplementedError

    @overload
    async def ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    async def ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    async def ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send ``message`` and wait for the reply: the return value of the actor's handler.

        Cancellation: the request may already be enqueued, and is then still handled; its
        reply is dropped.

        Example:
            ```python
            total = await counter.ask(Total(), timeout=1.0)
            ```
        """
        raise NotImplementedError

    @overload
    def blocking_ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    def blocking_ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    def blocking_ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """`ask` for plain threads that run no event loop.

        Example:
            ```python
            total = counter.blocking_ask(Total())  # from a plain thread
            ```
        """
        raise NotImplementedError

    def stream(
        self,
        request: StreamRequest[T],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> ReplyStream[T]:
        """Read the items the actor's handler streams back for ``request``.

        `ActorRef` streams from an actor of this system, ``actors.cluster.RemoteRef`` from
        one on another node; a kind of ref that overrides neither cannot stream.

        Raises:
            StreamNotSupported: this kind of ref cannot stream.

        Example:
            ```python
            async for token in model.stream(Tokens("hi")):
                print(token)
            ```
        """
        raise self._no_stream()

    def blocking_stream(
        self,
        request: StreamRequest[T],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> BlockingReplyStream[T]:
        """`stream` for plain threads that run no event loop.

        Raises:
            StreamNotSupported: this kind of ref cannot stream.

        Example:
            ```python
            for token in model.blocking_stream(Tokens("hi")):  # from a plain thread
                print(token)
            ```
        """
        raise self._no_stream()

    def _no_stream(self) -> StreamNotSupported:
        return StreamNotSupported(
            f"streaming from actor {self.path} is not supported by "
            f"{type(self).__qualname__}; stream through its ActorRef or RemoteRef"
        )

    async def join(self) -> BaseException | None:
        """Wait until the actor has stopped for good; return why: None, or the exception.

        Example:
            ```python
            reason = await ref.join()
            if reason is not None:
                log.error("worker failed: %r", reason)
            ```

        Cancellation: only the wait is abandoned; the actor is unaffected.
        """
        # The cell is its own `terminated` latch: its wait, without the property's call, and
        # without `Latch.wait`'s coroutine on an asyncio loop (`listen`).
        cell = self._cell
        future = cell.listen()
        if future is None:  # ended already (returns at once), or not on an asyncio loop
            reason: BaseException | None = await cell.wait()
            return reason
        try:
            reason = await future
        except BaseException:
            cell.forget(future)  # cancelled: still listed, unless set meanwhile
            raise
        return reason


class ActorRef(Ref[M]):
    """The handle to an actor of this system that accepts messages of type ``M``.

    What `ActorSystem.spawn` returns: a `Ref` that can also `stop` the actor and read its
    `statistics`, operations only a handle in the actor's own system can honour. Refs are
    cheap, immutable and sendable: pass them in messages. They work from any task
    of any loop (worker loops, the host's asyncio or trio loop) and, through the
    ``blocking_*`` methods, from plain threads.

    Every method checks the message first: a type the actor does not accept raises
    `MessageTypeError`, a mutable message raises `NotSendableError` (both ``TypeError``s),
    and nothing is enqueued.

    Example:
        ```python
        greeter: ActorRef[Greet | Count] = await system.spawn(Greeter)
        await greeter.send(Greet("ada"))
        seen = await greeter.ask(Count())  # int
        await greeter.stop()
        ```
    """

    __slots__ = ("_admitted", "_mailbox", "_passed", "_sends")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell  # as Ref.__init__, inlined: a ref is made per spawn
        # Shortcuts for the send hot path. The mailbox lives as long as the cell, restarts
        # included; the admitted types are the actor class's, set by `Cell.bind` when it
        # is known (until then every message takes the full check).
        self._admitted: AbstractSet[type] = _NONE_ADMITTED
        # The type of the last message that passed by `_admitted` (see `send`): a run of
        # messages of one type is admitted by one `is` test instead of a set lookup.
        self._passed: type | None = None
        self._mailbox = cell.mailbox
        self._sends = 0  # for the cooperative yield in `send`; see there

    def _admit(self, message: object) -> None:
        # A message whose type is not the cached `_passed`: admitted by the class's set, or
        # checked in full (`Cell.admit` raises for a wrong type or a mutable message).
        #
        # `_passed` is shared by every sender of this ref, written unlocked: two racing
        # stores leave one of two admitted types, each valid, so a race costs a lookup.
        # `Cell.bind` (a restart whose factory returns another class) replaces `_admitted`
        # and then clears `_passed`. A sender that checked by the old set and stores after
        # that clearing would leave the old class's type cached for every later send: so it
        # reads `_admitted` again after its store, and takes the store back if the set
        # changed. Either the bind's clearing comes after the store, or this re-read sees
        # the new set.
        kind = type(message)
        admitted = self._admitted
        if kind in admitted:
            self._passed = kind
            if self._admitted is not admitted:
                self._passed = None
        else:
            self._cell.admit(message)

    def statistics(self) -> ActorStatistics:
        """A snapshot of the actor: status, home loop, mailbox depth and high-water mark.

        Example:
            ```python
            print(ref.statistics().mailbox.depth)
            ```
        """
        return self._cell.statistics()

    def __repr__(self) -> str:
        cell = self._cell
        box = cell.mailbox
        return (
            f"<ActorRef {cell.path} {cell.status} mailbox={len(box)}/{box.capacity} "
            f"loop={cell.home.label}>"
        )

    async def send(self, message: M, *, timeout: float | None = None) -> None:
        """Enqueue ``message``, waiting while the mailbox is full (backpressure).

        Waiting senders are admitted in FIFO order. A send that finds room does not wait,
        but every `COOPERATIVE_BUDGET`-th send through a ref yields to the event loop once
        (before enqueueing), so that a producer looping on ``send`` cannot starve the other
        tasks of its loop while the consumer keeps up.

        Raises:
            MessageTypeError: the actor does not accept this type (nothing enqueued).
            NotSendableError: the message is mutable (nothing enqueued).
            ActorStopped: the actor has stopped, or stopped while we waited.
            SendTimeout: still full after ``timeout`` seconds.
            MailboxFull: an actor sending to itself while its own mailbox is full.
            TypeError, ValueError: ``timeout`` is not None or finite seconds >= 0.

        Cancellation: if cancelled while waiting, nothing is enqueued.

        Example:
            ```python
            await counter.send(Add(1))               # waits while the mailbox is full
            await counter.send(Add(1), timeout=0.5)  # SendTimeout after 0.5 s of full
            ```
        """
        if timeout is not None:
            check_timeout("timeout", timeout)  # before anything is enqueued
        # Admission: `_passed` caches the last type admitted, an `is` test instead of a set
        # lookup (docs/benchmarks.md, "Taking the rest apart"); `_admit` otherwise.
        if type(message) is not self._passed:
            self._admit(message)
        # Cooperative budget, as tokio's coop: a send that never waits never yields, so a
        # producer loop would monopolise its event loop. The counter is a heuristic shared
        # by every producer using this ref: a lost update under a race only shifts a yield.
        # The count is stored before the yield: the senders that share this ref and run
        # during it must see the reset, or each of them would yield too.
        sends = self._sends + 1
        if sends >= COOPERATIVE_BUDGET:
            self._sends = 0
            await checkpoint()  # before enqueueing: cancelled here, nothing sent
        else:
            self._sends = sends
        # The fast path, inlined: room now. Anything else (full, closed) goes to `deliver`.
        if self._mailbox.put_nowait(message) == OK:
            return
        cell = self._cell
        try:
            code = await deliver(cell, message, timeout)
        except Expired:
            raise self._send_timeout(message, timeout) from None
        if code == OK:
            return
        if code == FULL:
            raise MailboxFull(
                f"actor {cell.path} sent to itself while its mailbox is full; "
                "waiting would deadlock",
                message,
            )
        # A checkpoint even on refusal, as every async call of the API: a retry loop around
        # send must not keep its event loop from running the actor it waits for.
        await anyio.lowlevel.checkpoint()
        raise cell.stopped_error(message)

    def try_send(self, message: M) -> None:
        """Enqueue ``message`` if there is room right now; never waits.

        Raises:
            MailboxFull: the mailbox is at capacity (``error.message`` is the message).
            ActorStopped: the actor has stopped.
            MessageTypeError, NotSendableError: as for `send`.

        Example:
            ```python
            try:
                metrics.try_send(Sample(value))
            except actors.MailboxFull:
                dropped += 1  # shed load rather than wait
            ```
        """
        if type(message) is not self._passed:  # admission, as in `send`
            self._admit(message)
        code = self._mailbox.put_nowait(message)
        if code == OK:
            return
        cell = self._cell
        if code == FULL:
            box = cell.mailbox
            raise MailboxFull(
                f"mailbox of actor {cell.path} is full ({len(box)}/{box.capacity}); "
                "message not sent",
                message,
            )
        raise cell.stopped_error(message)

    async def send_many(self, messages: Iterable[M], *, timeout: float | None = None) -> None:
        """Enqueue all of ``messages`` at once, in order, or none of them (backpressure).

        Every message is checked first (type, sendability); then the batch goes in with one
        lock acquisition and at most one wake-up of the actor. While the mailbox lacks room
        for the whole batch, the call waits in line (FIFO, with the other waiting senders)
        until there is room for all of it; a batch never goes in partly.

        Raises:
            MessageTypeError, NotSendableError: a message is refused (nothing enqueued).
            ValueError: the batch is larger than the mailbox's capacity (it can never fit).
            ActorStopped: the actor has stopped, or stopped while we waited
                (``error.message``: the batch, a tuple).
            SendTimeout: no room for the whole batch within ``timeout`` seconds.
            MailboxFull: an actor sending to itself without room for the batch.
            TypeError, ValueError: ``timeout`` is not None or finite seconds >= 0.

        Cancellation: if cancelled while waiting, nothing is enqueued.

        Example:
            ```python
            await counter.send_many([Add(1), Add(2), Add(3)])
            ```
        """
        if timeout is not None:
            check_timeout("timeout", timeout)  # before anything is enqueued
        cell = self._cell
        batch = cell.admit_all(messages)  # every message checked before any is enqueued
        # The cooperative budget of `send`, counting the batch's messages.
        sends = self._sends + len(batch)
        if sends >= COOPERATIVE_BUDGET:
            self._sends = 0
            await checkpoint()  # before enqueueing: cancelled here, nothing sent
        else:
            self._sends = sends
        await cell.send_many(batch, timeout)

    def try_send_many(self, messages: Iterable[M]) -> None:
        """Enqueue all of ``messages`` now if there is room for all of them; never waits.

        Raises:
            MailboxFull: less free room than the batch needs (nothing enqueued;
                ``error.message`` is the batch, a tuple).
            ActorStopped: the actor has stopped.
            MessageTypeError, NotSendableError: as for `send_many`.

        Example:
            ```python
            try:
                sink.try_send_many(samples)
            except actors.MailboxFull:
                dropped += len(samples)
            ```
        """
        cell = self._cell
        cell.try_send_many(cell.admit_all(messages))

    def blocking_send(self, message: M, *, timeout: float | None = None) -> None:
        """`send` for plain threads that run no event loop: blocks the thread while full.

        Raises:
            RuntimeError: called from a thread that runs an event loop (it would stall it).
            SendTimeout, ActorStopped, MessageTypeError, NotSendableError: as for `send`.

        Example:
            ```python
            def worker_thread(counter: ActorRef[Add]) -> None:
                for _ in range(100):
                    counter.blocking_send(Add(1))
            ```
        """
        ensure_plain_thread()
        if timeout is not None:
            check_timeout("timeout", timeout)
        cell = self._cell
        if type(message) not in self._admitted:
            cell.admit(message)
        # The thread form of the cooperative budget in `send`: let the GIL go once in a while,
        # so that a thread looping on blocking_send cannot crowd out the event loops.
        sends = self._sends + 1
        if sends >= COOPERATIVE_BUDGET:
            self._sends = 0
            time.sleep(0)
        else:
            self._sends = sends
        try:
            code = cell.mailbox.put_blocking(message, timeout)
        except Expired:
            raise self._send_timeout(message, timeout) from None
        if code != OK:
            raise cell.stopped_error(message)

    @overload
    async def ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    async def ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    async def ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send ``message`` and wait for the reply: the return value of the actor's handler.

        ``timeout`` bounds the whole call, including any wait for room in the mailbox
        (default `DEFAULT_ASK_TIMEOUT`, 5 s; None waits forever). A reply arriving later is
        dropped. If the handler raises, the same exception is raised here (with a note
        naming the actor), and the actor fails.

        The ask carries its deadline: the handler reads the time left with
        `actors.deadline`. Made inside a handler that answers an ask, an ask waits at most
        until that ask's deadline (the smaller of the two), so a chain of asks never
        outlives its first asker.

        Raises:
            AskTimeout: no reply in time (also a ``TimeoutError``), or the inherited
                deadline had already passed (then nothing was sent).
            ActorStopped: the actor stopped before answering.
            DeadlockError: an actor asked itself.
            MessageTypeError, NotSendableError: as for `send`.
            TypeError, ValueError: ``timeout`` is not None or finite seconds >= 0.

        Cancellation: as a timeout, it abandons the request. Still queued, the request is
        skipped (counted in the actor's metrics); its handler already running runs to its
        end, and its reply is dropped, unless the actor's class set
        `Actor.cancel_abandoned`: then the handler is cancelled, and its own asks in turn.

        Example:
            ```python
            class Total(actors.Request[int], frozen=True):
                pass

            total = await counter.ask(Total(), timeout=1.0)  # typed int
            ```
        """
        if timeout is not DEFAULT_ASK_TIMEOUT:  # the default needs no check
            check_timeout("timeout", timeout)
        cell = self._cell
        if type(message) not in self._admitted:
            cell.admit(message)
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        inherited_from: str | None = None
        # The actor whose context this runs in, if any: the one asking (or a task of its).
        running = running_cell.get()
        asker = running() if running is not None else None
        if asker is not None:
            # Only the actor's own run task can ask itself, and it runs in its context: the
            # identity test spares the task lookup of `in_handler` on every other ask.
            if asker is cell and cell.in_handler():
                raise DeadlockError(
                    f"actor {cell.path} asked itself; it would wait forever for its own reply"
                )
            # Asked from a handler answering an ask: that ask's deadline bounds this one
            # too. The cheap tests first: `in_handler` only when that deadline is sooner.
            inherited = asker.deadline
            if (
                inherited is not None
                and (deadline is None or inherited < deadline)
                and asker.in_handler()
            ):
                deadline, inherited_from = inherited, asker.path
                timeout = inherited - now
                if timeout <= 0.0:
                    raise self._ask_timeout(message, 0.0, inherited_from=inherited_from)
        reply = oneshot()
        envelope = Ask(message, reply, deadline)
        remaining = timeout
        try:
            # The fast path inlined, as in send: room now. Anything else goes to `deliver`.
            if cell.mailbox.put_nowait(envelope) != OK:
                code = await deliver(cell, envelope, timeout)
                if code != OK:  # CLOSED: FULL is for a self-send, refused above
                    await anyio.lowlevel.checkpoint()  # as in send: a refusal checkpoints too
                    raise cell.stopped_error(message)
                if deadline is not None:
                    remaining = max(0.0, deadline - time.monotonic())
            # A handler about to wait lets in the senders its own pops held back (see
            # `Mailbox.before_consumer_waits`, inlined: a call would cost 1.4% of an ask).
            if asker is not None and asker.mailbox._senders:  # pyright: ignore[reportPrivateUsage]
                asker.mailbox.grant_waiting()
            if inherited_from is None:
                return await reply.wait(remaining)
            # What is left of an inherited deadline: a one-off duration, no shared timer.
            return await reply.wait_once(remaining or 0.0)
        except Expired:
            reply.abandon(EXPIRED)
            raise self._ask_timeout(message, timeout, inherited_from=inherited_from) from None
        except BaseException:
            reply.abandon(CANCELLED)  # no-op for a settled reply: nobody watches it
            raise

    @overload
    def blocking_ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    def blocking_ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    def blocking_ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """`ask` for plain threads that run no event loop: blocks the thread until the reply.

        Raises:
            RuntimeError: called from a thread that runs an event loop (it would stall it).
            AskTimeout, ActorStopped, MessageTypeError, NotSendableError: as for `ask`.

        Example:
            ```python
            total = counter.blocking_ask(Total(), timeout=1.0)  # from a plain thread
            ```
        """
        ensure_plain_thread()
        if timeout is not DEFAULT_ASK_TIMEOUT:
            check_timeout("timeout", timeout)
        cell = self._cell
        if type(message) not in self._admitted:
            cell.admit(message)
        reply = thread_oneshot()
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        envelope = Ask(message, reply, deadline)
        try:
            code = cell.mailbox.put_blocking(envelope, timeout)
            if code != OK:
                raise cell.stopped_error(message)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            return reply.wait_blocking(remaining)
        except Expired:
            reply.abandon(EXPIRED)
            raise self._ask_timeout(message, timeout) from None
        except BaseException:  # KeyboardInterrupt in the waiting thread, say
            reply.abandon(CANCELLED)
            raise

    def stream(
        self,
        request: StreamRequest[T],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> ReplyStream[T]:
        """Read the items the actor's handler streams back for ``request``.

        Returns at once, without sending anything; the request is enqueued (as an ask is)
        when the first item is read or the ``async with`` block is entered. The handler, an
        ``async def receive``, returns an async iterable (an async generator) for the
        request; the actor drives it in its turn, one message at a time as always, and is
        paused while ``window`` items wait unread here (backpressure). ``timeout`` bounds
        each wait: for room in the mailbox, then for every next item (default
        `DEFAULT_ASK_TIMEOUT`; None waits forever, as an endless, quiet stream needs).

        Leaving early (``break``, cancellation, a timeout) stops the producer at its next
        item: deterministically when the stream is left through ``async with`` or
        `ReplyStream.aclose`, by a cancelled or timed-out read, and when the stream object
        is dropped (see `ReplyStream`). If the producer raises, the items it sent come first,
        then its exception, and the actor fails, as for `ask`.

        Raises:
            StreamRequestError: ``request`` is not a `StreamRequest` (nothing sent).
            MessageTypeError, NotSendableError: as for `ask` (nothing sent).
            TypeError, ValueError: ``window`` is not an int >= 1, or ``timeout`` is not None
                or finite seconds >= 0.

        Example:
            ```python
            async with model.stream(Tokens("hello"), window=8, timeout=30.0) as tokens:
                async for token in tokens:
                    print(token, end="")
            ```
        """
        check_stream_options(window, timeout)
        return ReplyStream(Reader(self._cell, request, window, timeout))

    def blocking_stream(
        self,
        request: StreamRequest[T],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> BlockingReplyStream[T]:
        """`stream` for plain threads that run no event loop: ``for`` and ``with``, blocking.

        Raises:
            RuntimeError: called from a thread that runs an event loop (it would stall it).
            StreamRequestError, MessageTypeError, NotSendableError, TypeError, ValueError:
                as for `stream` (nothing sent).

        Example:
            ```python
            with model.blocking_stream(Tokens("hello")) as tokens:  # from a plain thread
                for token in tokens:
                    print(token, end="")
            ```
        """
        ensure_plain_thread()
        check_stream_options(window, timeout)
        return BlockingReplyStream(Reader(self._cell, request, window, timeout))

    async def stop(self) -> None:
        """Stop the actor gracefully, for good, and wait until it has stopped.

        The mailbox refuses new messages at once; what it already accepted is handled, then
        its children stop and ``on_stop`` runs. It is never restarted afterwards, whatever
        its restart type (OTP's ``terminate_child``). An actor that failed and awaits its
        restart gets a fresh instance to drain with. Stopping a stopped actor returns at
        once. Called by the actor on itself (from its handler), it only requests the stop.

        Cancellation: the stop still happens; only the wait is abandoned.

        Example:
            ```python
            await worker.stop()
            assert not worker.is_alive
            ```
        """
        cell = self._cell
        cell.stop_for_good(revive=True)
        if cell.in_handler():
            return
        await cell.terminated.wait()

    def _send_timeout(self, message: object, timeout: float | None) -> SendTimeout:
        return SendTimeout(
            f"mailbox of actor {self._cell.path} stayed full for {timeout} s; message not sent",
            message,
        )

    def _ask_timeout(
        self, message: object, timeout: float | None, *, inherited_from: str | None = None
    ) -> AskTimeout:
        what = type(message).__qualname__
        if inherited_from is None:
            return AskTimeout(f"actor {self._cell.path} did not answer {what} within {timeout} s")
        if not timeout:
            return AskTimeout(
                f"{what} not sent to actor {self._cell.path}: the deadline of the ask actor "
                f"{inherited_from} is answering has passed"
            )
        return AskTimeout(
            f"actor {self._cell.path} did not answer {what} within the {timeout:.3g} s left "
            f"of the deadline of the ask actor {inherited_from} is answering"
        )
