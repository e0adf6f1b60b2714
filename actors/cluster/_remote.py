"""`RemoteRef`: a `Ref` whose actor lives on another node.

A remote ref is a `Ref`, as a local `ActorRef` is, so it type-checks and behaves as one
wherever a `Ref` is expected: in messages, in `Actor.watch`, in ``match`` statements. It
has no ``stop`` or ``statistics``: those are local-only operations, and only `ActorRef`
offers them.

Each remote actor is represented locally by one *proxy cell*: a `Cell` that never runs,
whose watchers list and ``terminated`` latch stand for the remote actor's. Death watch then
needs nothing new from the core: `Actor.watch` registers on the proxy as on any cell,
and when the remote actor stops (or its node is declared down) the cluster finishes the
proxy, which delivers `Terminated` to the watchers exactly as a local actor's end would.

One `RemoteRef` (and one proxy) exists per remote address and node incarnation while
anything holds it, so ``==`` and ``hash`` (by cell) work as for local refs.

Two subclasses are bound to a public name instead of one actor: `GroupRef` (a queue
group: each message to one member) and `DurableRef` (a durable actor: tells stored in
JetStream first, see ``_durable``). Their proxies are never finished by a node's end.

Each ref carries what delivers for it, handed in when the registry makes it: a `Courier`
(the node's outbox, ``_outbound``) for requests, and for a `DurableRef` also a
`DurableCourier` (``_durable``) for its tells. So the kind of ref decides how a message
travels, once, where the ref is made; nothing switches on the ref's type to send it.

The node's view of a target's free room (the credit behind ``try_send``) is a `Credit`
held by each ref and reached by the couriers through `credit_of`, so that the ref's public
face is only what users call.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias, TypeVar, overload

from .._errors import ActorError, ActorStopped, MailboxFull
from .._ref import DEFAULT_ASK_TIMEOUT, Ref, cell_of
from .._stream import DEFAULT_WINDOW, check_stream_options
from .._validation import check_timeout
from ._window import PIPELINED_MAX, Window

if TYPE_CHECKING:
    import weakref
    from collections.abc import Callable

    from .._cell import Cell
    from .._message import Request
    from .._oneshot import Oneshot
    from .._stream import BlockingReplyStream, ReplyStream, StreamRequest
    from ._wire import Address

__all__ = (
    "Courier",
    "Credit",
    "DurableCourier",
    "DurableRef",
    "GroupRef",
    "ProxyTable",
    "RemoteRef",
    "address_of",
    "by_name",
    "credit_of",
    "finish_proxy",
    "full_error",
    "home_of",
    "lane_subject_of",
    "note_home",
    "stopped_error",
    "subject_of",
    "target_of",
    "window_of",
)

M = TypeVar("M", contravariant=True)
R = TypeVar("R")
T = TypeVar("T")

# The one ref of each remote address while anything holds it: (node, incarnation, id) ->
# ref. Guarded by `Identity.lock` (callers' threads decode refs).
ProxyTable: TypeAlias = "weakref.WeakValueDictionary[tuple[str, str, int], RemoteRef[Any]]"


class Courier(Protocol):
    """What delivers a `RemoteRef`'s messages (the node's outbox). Internal."""

    async def send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """A tell, waiting for its acknowledgement.

        Cancellation: the frame may already be out and then still be enqueued.
        """
        ...

    def blocking_send(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> None:
        """`send`, from a plain thread."""
        ...

    def try_send(self, ref: RemoteRef[Any], message: object) -> None:
        """A tell decided on the credit view; never waits."""
        ...

    async def ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """Request-reply.

        Cancellation: the request may already be enqueued; its reply is then dropped.
        """
        ...

    def blocking_ask(self, ref: RemoteRef[Any], message: object, timeout: float | None) -> Any:
        """`ask`, from a plain thread."""
        ...

    def stream(
        self, ref: RemoteRef[Any], request: StreamRequest[T], window: int, timeout: float | None
    ) -> ReplyStream[T]:
        """A stream's reader; nothing is sent until it is first read."""
        ...

    def blocking_stream(
        self, ref: RemoteRef[Any], request: StreamRequest[T], window: int, timeout: float | None
    ) -> BlockingReplyStream[T]:
        """`stream`, from a plain thread."""
        ...


class DurableCourier(Protocol):
    """What stores a `DurableRef`'s tells in JetStream (the node's durable mailboxes)."""

    async def send(self, ref: DurableRef[Any], message: object, timeout: float | None) -> None:
        """Admit into the node's publish window, waiting for room.

        Cancellation: once admitted, the message is stored all the same.
        """
        ...

    def blocking_send(self, ref: DurableRef[Any], message: object, timeout: float | None) -> None:
        """`send`, from a plain thread."""
        ...

    def try_send(self, ref: DurableRef[Any], message: object) -> None:
        """Admit into the node's publish window if it has room; never waits."""
        ...

    async def flush(self, ref: DurableRef[Any], timeout: float | None) -> None:
        """Wait until the ref's earlier sends are stored (or given up on).

        Cancellation: only the wait is abandoned.
        """
        ...

    def blocking_flush(self, ref: DurableRef[Any], timeout: float | None) -> None:
        """`flush`, from a plain thread."""
        ...


class Credit:
    """This node's view of one target's free mailbox room, for ``try_send``. Any thread.

    ``free`` is the room the target last reported; ``unacked`` the try_sends published
    since and not answered yet. A try_send may go while ``free - unacked > 0``; when none
    may, the first refused caller is told to probe (ask the target for fresh room), and the
    others are refused until the probe is answered. ``tracks_room`` is False for a durable
    ref, whose tells are bounded by its node's publish window (``_publisher``), not by
    mailbox room: the room its asks' replies report is then ignored.
    """

    __slots__ = ("_busy", "_free", "_lock", "_probing", "_tracks_room", "_unacked", "_waiters")

    def __init__(self, free: int, *, tracks_room: bool = True) -> None:
        self._lock = threading.Lock()
        self._free = free
        self._unacked = 0
        # Acknowledged sends and asks of the ref on the cluster connection whose frame may
        # still be on its way (`hold` .. `release`): an ask must not take an ask lane past
        # them (see ``_lanes``).
        self._busy = 0
        self._probing = False
        self._tracks_room = tracks_room
        # Senders waiting for room while replies are due (`wait_for_room`); woken, all of
        # them, by the next settle. Guarded by the lock.
        self._waiters: list[Oneshot] = []

    def reserve(self) -> bool:
        """Reserve one slot for a pipelined tell by the latest view; False if none.

        Unlike `take`, a refusal asks for no refresh: the tell then goes with a round trip,
        whose reply refreshes the view.
        """
        with self._lock:
            if self._unacked < PIPELINED_MAX and self._free - self._unacked > 0:
                self._unacked += 1
                return True
        return False

    def wait_for_room(self, waiter: Oneshot) -> bool:
        """Settle ``waiter`` at the next reply, if one is due; False if none is.

        For a sender that `reserve` refused: while tells or tries are unanswered their
        replies will refresh the view, so it may wait for them and try again instead of
        sending with a round trip of its own. With nothing unanswered no reply will come
        (False): only a send that waits for its acknowledgement learns of room then. The
        check and the registration are one step under the lock, so no reply slips between.
        """
        with self._lock:
            if self._unacked == 0:
                return False
            self._waiters.append(waiter)
            return True

    def quiet(self) -> bool:
        """Whether nothing of the ref's sent over the cluster connection can still be on
        its way: no tell or try_send unanswered, no acknowledged send or ask held.

        An ask may then go over another connection (its loop's ask lane) without
        overtaking any of them.
        """
        with self._lock:
            return self._unacked == 0 and self._busy == 0

    def hold(self) -> None:
        """An acknowledged send or an ask of the ref goes over the cluster connection."""
        with self._lock:
            self._busy += 1

    def release(self) -> None:
        """What `hold` announced is answered, or can no longer arrive after anything."""
        with self._lock:
            self._busy -= 1

    def take(self) -> bool:
        """Reserve one slot by the latest view; False (a refresh is due) if none."""
        with self._lock:
            if self._free - self._unacked > 0:
                self._unacked += 1
                return True
            if self._probing:
                return False
            self._probing = True
        return False

    def settle(
        self, free: int, *, tried: bool = False, probe: bool = False, answered: int = 1
    ) -> None:
        """A reply reported ``free`` slots (-1: no report); ``tried``: it answers
        ``answered`` try_sends or pipelined tells (one reply answers a whole run of them)."""
        with self._lock:
            if tried:
                self._unacked = max(0, self._unacked - answered)
            if probe:
                self._probing = False
            if free >= 0 and self._tracks_room:
                self._free = free
            waiters = self._waiters
            if waiters:
                self._waiters = []
        if waiters:
            for waiter in waiters:  # outside the lock: a settle may wake another loop
                waiter.settle()


class RemoteRef(Ref[M]):
    """A ref to an actor on another node of the cluster; use it as any `actors.Ref`.

    Differences from a local `ActorRef`, all documented in ``docs/cluster.md``: `send`
    returns at once while the target has room by this node's latest view (pipelined: the
    ref's sends are delivered exactly once and in order, or become dead letters here), and
    otherwise waits for the target node to acknowledge that the message was enqueued (so a
    full remote mailbox delays it, as locally); `try_send` decides on this node's latest view of
    the target's free room; there is no ``stop`` or ``statistics`` (local-only operations:
    send the actor a message that makes it stop itself, read its node's metrics); after
    the node is declared down every call raises `ActorStopped`.

    Example:
        ```python
        account = await system.lookup_remote("account-7", AccountMsg)
        assert isinstance(account, actors.cluster.RemoteRef)
        print(account.node, account.path)
        ```
    """

    __slots__ = (
        "__weakref__",
        "_address",
        "_courier",
        "_credit",
        "_home",
        "_lane_subject",
        "_subject",
        "_window",
    )

    def __init__(
        self, proxy: Cell, courier: Courier, address: Address, credit: Credit | None = None
    ) -> None:
        super().__init__(proxy)
        self._courier = courier
        self._address = address
        self._credit = Credit(address.free) if credit is None else credit
        self._window: Window | None = None  # its pipelined tells, made at the first (loop only)
        # The owner's ask lane for the actor's loop, by the last ask's reply (`home_of`).
        self._home = 0
        # Its frames' subject, and its asks' on the owner's lane ``[0]``, once formatted
        # (`subject_of`, `lane_subject_of`): a ref's subjects never change.
        self._subject = ""
        self._lane_subject: tuple[int, str] = (0, "")

    @property
    def node(self) -> str:
        """The name of the node the actor lives on."""
        return self._address.node

    @property
    def name(self) -> str:
        """The actor's name."""
        return self._address.path.rsplit("/", 1)[-1]

    @property
    def path(self) -> str:
        """The actor's path on its node, such as ``/user/account-7``."""
        return self._address.path

    def __repr__(self) -> str:
        state = "stopped" if self._cell.terminated.is_set else "remote"
        return f"<RemoteRef {self.path} {state} node={self.node}>"

    async def send(self, message: M, *, timeout: float | None = None) -> None:
        """Send ``message``: at once within the credit, else once the target enqueued it.

        While the target had room at the latest report (the credit), the message joins
        this ref's stream and the call returns without a round trip: the stream delivers
        its messages exactly once and in order while both nodes live, sending them again
        across a lost reply or a reconnect; one the target then refuses (stopped, full past
        ``timeout``) or that its node's end leaves unanswered becomes a dead letter here
        (reason ``"undelivered"``, counted in ``Nats.statistics().undelivered``). Without
        credit the call waits for the acknowledgement: the target enqueues with its own
        `ActorRef.send` semantics, so while its mailbox is full this call waits, bounded by
        ``timeout``.

        Raises:
            MessageTypeError: the target does not accept this type (nothing sent).
            NotSendableError, WireError: not sendable or not encodable (nothing sent).
            ActorStopped: the actor is known to have stopped, or its node is down or left.
            SendTimeout: no acknowledgement within ``timeout`` (plus a grace) or
                ``ack_timeout``: still full there, or its node unreachable (reconnecting).
                The message stays in the stream and may still be enqueued, once.

        Cancellation: the message may already be on its way and then still be enqueued;
        only the wait for the acknowledgement is abandoned.

        Example:
            ```python
            await account.send(Deposit(5))
            ```
        """
        check_timeout("timeout", timeout)
        await self._courier.send(self, message, timeout)

    def try_send(self, message: M) -> None:
        """Send ``message`` if the target had room at the latest report; never waits.

        The decision uses this node's view of the target's free slots, refreshed by every
        acknowledgement and reply (credit-based flow control). A message that still finds
        the target full (another node filled it meanwhile) is dropped there and logged.

        Raises:
            MailboxFull: no room by this node's latest view, or not connected right now.
            ActorStopped: the actor has stopped or its node is down.
            MessageTypeError, NotSendableError, WireError: as for `send`.

        Example:
            ```python
            try:
                metrics.try_send(Sample(1.0))
            except actors.MailboxFull:
                dropped += 1
            ```
        """
        self._courier.try_send(self, message)

    def blocking_send(self, message: M, *, timeout: float | None = None) -> None:
        """`send` for plain threads that run no event loop.

        Raises:
            RuntimeError: called from a thread that runs an event loop.
            ActorStopped, SendTimeout, MessageTypeError, NotSendableError: as for `send`.

        Example:
            ```python
            account.blocking_send(Deposit(5))  # from a plain thread
            ```
        """
        check_timeout("timeout", timeout)
        self._courier.blocking_send(self, message, timeout)

    @overload
    async def ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    async def ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    async def ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """Send ``message`` and wait for the remote handler's reply (NATS request-reply).

        The reply is decoded against the request's reply type (``R`` of a `Request[R]`).
        An exception raised by the remote handler is raised here as the same type when it
        is a builtin exception, else as `RemoteError`; its text names the remote actor
        and node.

        Raises:
            AskTimeout: no reply within ``timeout`` (the whole call, including any wait
                for room in the remote mailbox, or for the actor's node to be reachable
                again).
            ActorStopped: the actor stopped before answering, or its node went down.
            RemoteError: the remote handler raised a non-builtin exception.
            MessageTypeError, NotSendableError, WireError: as for `send`.

        Cancellation: the request may already be enqueued and is then still handled; its
        reply is dropped.

        Example:
            ```python
            balance = await account.ask(Balance(), timeout=2.0)
            ```
        """
        check_timeout("timeout", timeout)
        return await self._courier.ask(self, message, timeout)

    @overload
    def blocking_ask(self, message: Request[R], *, timeout: float | None = ...) -> R: ...
    @overload
    def blocking_ask(self, message: M, *, timeout: float | None = ...) -> Any: ...
    def blocking_ask(self, message: Any, *, timeout: float | None = DEFAULT_ASK_TIMEOUT) -> Any:
        """`ask` for plain threads that run no event loop.

        Raises:
            RuntimeError: called from a thread that runs an event loop.
            AskTimeout, ActorStopped, RemoteError: as for `ask`.

        Example:
            ```python
            balance = account.blocking_ask(Balance())  # from a plain thread
            ```
        """
        check_timeout("timeout", timeout)
        result: Any = self._courier.blocking_ask(self, message, timeout)
        return result

    def stream(
        self,
        request: StreamRequest[T],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> ReplyStream[T]:
        """Read the items the remote actor's handler streams back for ``request``.

        The contract of `actors.ActorRef.stream` (nothing sent before the first read; read
        once, by one task; ``timeout`` per item; leaving early stops the producer; its
        error after its items), across nodes: the ``window`` is split between the
        producer's node and credit this node grants as it reads
        (``docs/howto/streaming.md``).

        Raises:
            StreamRequestError, TypeError, ValueError: as `actors.ActorRef.stream`.
            MessageTypeError, NotSendableError, WireError: at the first read, as for `ask`
                (nothing sent).
            ActorStopped: at a read: the actor stopped, or its node went down
                (`NodeDown`), after the items received.
            AskTimeout: at a read: no item within ``timeout``.

        Example:
            ```python
            async with model.stream(Tokens("hello"), window=32) as tokens:
                async for token in tokens:
                    print(token, end="")
            ```
        """
        check_stream_options(window, timeout)
        return self._courier.stream(self, request, window, timeout)

    def blocking_stream(
        self,
        request: StreamRequest[T],
        *,
        window: int = DEFAULT_WINDOW,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,
    ) -> BlockingReplyStream[T]:
        """`stream` for plain threads that run no event loop: ``for`` and ``with``.

        Raises:
            RuntimeError: called from a thread that runs an event loop.
            StreamRequestError, TypeError, ValueError, ActorStopped, AskTimeout: as `stream`.

        Example:
            ```python
            with model.blocking_stream(Tokens("hello")) as tokens:  # a plain thread
                for token in tokens:
                    print(token, end="")
            ```
        """
        check_stream_options(window, timeout)
        return self._courier.blocking_stream(self, request, window, timeout)


class GroupRef(RemoteRef[M]):
    """A ref to a public name served by a queue group: each message goes to one member.

    Returned by `ActorSystem.lookup_remote` for a name served with
    `actors.cluster.serve_pool`, and by `actors.cluster.lookup_group` for any public name.
    Every ``send``, ``try_send`` and ``ask`` is published on the name's subject, where the
    NATS server hands it to one of the nodes serving the name (its queue group), chosen per
    message. So the ref is bound to no node: members may come and go, and it keeps working
    as long as one serves the name.

    Differences from a `RemoteRef` bound to one actor: no order is kept between messages
    (they may go to different members); ``try_send`` decides on the free room last
    reported by whichever member answered; while no node serves the name ``send`` and
    ``ask`` raise `ActorNotFound` (and the ref works again once one does); a message that
    was handed to a member that then died is lost (its ``send`` raises `SendTimeout`, its
    ``ask`` `AskTimeout`); it cannot travel inside a message (send the name instead);
    watching it never delivers `Terminated`.

    Example:
        ```python
        resizer = await system.lookup_remote("resize", ResizeMsg)  # a GroupRef
        thumbs = [await resizer.ask(Resize(image, 256)) for image in images]
        ```
    """

    __slots__ = ("_group",)

    def __init__(self, proxy: Cell, courier: Courier, address: Address, group: str) -> None:
        super().__init__(proxy, courier, address)
        self._group = group

    @property
    def group(self) -> str:
        """The public name whose queue group this ref addresses."""
        return self._group

    @property
    def name(self) -> str:
        """The public name (the same as `group`)."""
        return self._group

    def __repr__(self) -> str:
        return f"<GroupRef {self._group} nodes=any>"


DURABLE_TRIES: Final = 1024  # the credit a DurableRef carries (asks report no room to it)


class DurableRef(RemoteRef[M]):
    """A ref to a durable actor (``spawn(durable=True)``): its tells are persisted first.

    Returned by `ActorSystem.lookup_remote` for a durable name, on every node (the owning
    one too), and wherever a ref to a durable actor arrives in a message. It is bound to
    the name, not to a node: `send` hands the message to this node's window of JetStream
    publishes and returns without waiting for the server; the node publishes it into the
    cluster's durable stream (retrying with the same message id until the PubAck) whether
    or not the actor is running right now, and the owning node delivers it later, at
    least once, acknowledging it only after the handler returned. `flush` waits until the
    earlier sends are stored. `ask` stays a plain request to whichever node serves the
    name (an asker waits for a live answer). The guarantees, options and limits are in
    ``docs/cluster-durable.md``.

    Differences from a `RemoteRef` bound to one actor: a `send` is bounded by this node's
    publish window (``durable_outstanding`` messages awaiting their PubAck), not by the
    actor's mailbox (the stream holds what the actor has not taken yet); the outcome of a
    send that returned is *stored*, or a dead letter here (reason ``"undelivered"``); the
    ref never counts as stopped (`is_alive` stays true, watching it never delivers
    `Terminated`); an ask while no node serves the name raises `ActorNotFound`.

    Example:
        ```python
        await system_a.spawn(Account, name="account-7", durable=True)
        account = await system_b.lookup_remote("account-7", AccountMsg)
        assert isinstance(account, actors.cluster.DurableRef)
        await account.send(Deposit(5))  # in this node's publish window
        await account.flush()  # stored by JetStream when this returns
        ```
    """

    __slots__ = ("_durable", "_store")

    def __init__(
        self,
        proxy: Cell,
        courier: Courier,
        address: Address,
        durable: str,
        mailbox: DurableCourier,
    ) -> None:
        # Asks go to whichever node serves the name; the mailbox room their replies report
        # is not what a durable tell waits for (it waits for the node's publish window).
        super().__init__(proxy, courier, address, Credit(DURABLE_TRIES, tracks_room=False))
        self._durable = durable
        self._store = mailbox  # tells go through JetStream

    @property
    def name(self) -> str:
        """The durable actor's public name."""
        return self._durable

    @property
    def node(self) -> str:
        """``"*"``: a durable ref is bound to the name, not to a node."""
        return "*"

    async def send(self, message: M, *, timeout: float | None = None) -> None:
        """Send ``message`` to the actor's durable mailbox; returns once the node holds it.

        The message is checked, encoded and given its message id here, then admitted into
        this node's publish window (at most ``durable_outstanding`` messages awaiting their
        PubAck); the call returns without waiting for JetStream. The node publishes it,
        in the order sent, and again with the same id until the PubAck comes (the stream
        drops copies). It is then stored, or, if JetStream refuses it for good, no PubAck
        comes within ``ack_timeout`` or the node leaves first, it becomes a dead letter
        here (reason ``"undelivered"``, counted in ``statistics().durable_undelivered``).
        Call `flush` to wait until it is stored. ``timeout`` bounds the wait for room in a
        full window (None: wait as long as it takes).

        Raises:
            SendTimeout: the window stayed full for ``timeout`` (nothing sent).
            ActorStopped: this node is leaving (nothing sent).
            MessageTypeError, NotSendableError, WireError: as for `RemoteRef.send`.

        Cancellation: while waiting for room nothing is sent; once admitted, the message
        is stored whatever happens to the caller.

        Example:
            ```python
            await account.send(Deposit(5))  # returns without a round trip
            ```
        """
        check_timeout("timeout", timeout)
        await self._store.send(self, message, timeout)

    def try_send(self, message: M) -> None:
        """Send ``message`` as `send` does if the publish window has room; never waits.

        Raises:
            MailboxFull: not connected, or the node's publish window is full.
            ActorStopped: this node is leaving.
            MessageTypeError, NotSendableError, WireError: as for `RemoteRef.send`.

        Example:
            ```python
            try:
                account.try_send(Deposit(5))
            except actors.MailboxFull:
                backlog.append(Deposit(5))
            ```
        """
        self._store.try_send(self, message)

    def blocking_send(self, message: M, *, timeout: float | None = None) -> None:
        """`send` for plain threads that run no event loop.

        Raises:
            RuntimeError: called from a thread that runs an event loop.
            SendTimeout, ActorStopped, MessageTypeError, NotSendableError: as for `send`.

        Example:
            ```python
            account.blocking_send(Deposit(5))  # from a plain thread
            ```
        """
        check_timeout("timeout", timeout)
        self._store.blocking_send(self, message, timeout)

    async def flush(self, *, timeout: float | None = None) -> None:
        """Wait until every message sent through this ref on this node before the call is
        stored by JetStream (its PubAck came).

        A message of this ref given up on since the last `flush` (it is a dead letter, see
        `send`) makes this call raise its failure, once, after the wait.

        Raises:
            SendTimeout: not all stored within ``timeout`` (they stay in the window and
                may still be); or the failure of a message given up on (no PubAck within
                ``ack_timeout``: it may or may not be stored).
            WireError, ActorStopped: the failure of a message given up on (refused by
                JetStream for good; the node left first).

        Cancellation: only the wait is abandoned; the messages are stored all the same.

        Example:
            ```python
            for entry in batch:
                await ledger.send(entry)
            await ledger.flush(timeout=5.0)  # all of them are stored now
            ```
        """
        check_timeout("timeout", timeout)
        await self._store.flush(self, timeout)

    def blocking_flush(self, *, timeout: float | None = None) -> None:
        """`flush` for plain threads that run no event loop.

        Raises:
            RuntimeError: called from a thread that runs an event loop.
            SendTimeout, WireError, ActorStopped: as for `flush`.

        Example:
            ```python
            account.blocking_send(Deposit(5))
            account.blocking_flush()  # stored
            ```
        """
        check_timeout("timeout", timeout)
        self._store.blocking_flush(self, timeout)

    def __repr__(self) -> str:
        return f"<DurableRef {self._durable} nodes=any>"


def credit_of(ref: RemoteRef[Any]) -> Credit:
    """The node's view of ``ref``'s target's free room (see `Credit`)."""
    return ref._credit  # pyright: ignore[reportPrivateUsage]  # the couriers' one way in


def home_of(ref: RemoteRef[Any]) -> int:
    """The owner's ask lane that takes ``ref``'s asks on its actor's loop; 0: none known.

    A hint (see ``_lanes``), read and written by the askers of every loop without a lock:
    a stale or lost value only sends one ask a longer way (the owner forwards it and
    answers with a fresh hint, or nobody answers and it takes the full path). Any thread.
    """
    return ref._home  # pyright: ignore[reportPrivateUsage]  # the couriers' one way in


def subject_of(ref: RemoteRef[Any], make: Callable[[RemoteRef[Any]], str]) -> str:
    """The subject of ``ref``'s frames: ``make(ref)`` the first time, kept after. Any thread
    (two threads that both make it store the same string; one slot store each)."""
    subject = ref._subject  # pyright: ignore[reportPrivateUsage]
    if not subject:
        subject = ref._subject = make(ref)  # pyright: ignore[reportPrivateUsage]
    return subject


def lane_subject_of(
    ref: RemoteRef[Any], home: int, subject: str, make: Callable[[str, int], str]
) -> str:
    """The subject of ``ref``'s asks on its owner's lane ``home``: ``make(subject, home)``
    for a new ``home``, kept while it stays. Any thread (the pair is one tuple: a reader
    never sees one lane's number with another's subject)."""
    kept = ref._lane_subject  # pyright: ignore[reportPrivateUsage]
    if kept[0] == home:
        return kept[1]
    made = make(subject, home)
    ref._lane_subject = (home, made)  # pyright: ignore[reportPrivateUsage]
    return made


def note_home(ref: RemoteRef[Any], home: int) -> None:
    """Keep the hint of an ask's reply (`Reply.home`: 0 says nothing, -1 none). Any thread."""
    if home:
        ref._home = home if home > 0 else 0  # pyright: ignore[reportPrivateUsage]


def window_of(ref: RemoteRef[Any]) -> Window:
    """The window of ``ref``'s pipelined tells (see ``_window``), made on first use. Loop only."""
    window = ref._window  # pyright: ignore[reportPrivateUsage]  # the outbox's one way in
    if window is None:
        window = ref._window = Window()  # pyright: ignore[reportPrivateUsage]
    return window


def address_of(ref: RemoteRef[Any]) -> Address:
    """The wire address of ``ref``'s target (node, incarnation, id, path, accepted names)."""
    return ref._address  # pyright: ignore[reportPrivateUsage]  # the cluster's one way in


def full_error(ref: RemoteRef[Any], message: object) -> MailboxFull:
    """The error of a try_send refused by the credit view."""
    return MailboxFull(
        f"mailbox of remote actor {ref.path} on node {ref.node} is full by the latest "
        "report; message not sent",
        message,
    )


def stopped_error(ref: RemoteRef[Any], message: object = None) -> ActorError:
    """The error of a call to a remote actor known to have stopped."""
    reason = cell_of(ref).exit_reason
    if isinstance(reason, ActorStopped):
        return ActorStopped(f"{reason}; message not delivered", message)
    return ActorStopped(
        f"remote actor {ref.path} on node {ref.node} has stopped; message not delivered",
        message,
    )


def by_name(ref: RemoteRef[Any]) -> str | None:
    """The public name a ref addresses through its name subject (group, durable), or None."""
    if isinstance(ref, GroupRef):
        return ref.group
    if isinstance(ref, DurableRef):
        return ref.name
    return None


def target_of(ref: RemoteRef[Any]) -> tuple[str, str] | None:
    """The node incarnation whose end fails ``ref``'s pending calls (None: name-bound)."""
    if by_name(ref) is not None:
        return None
    address = address_of(ref)
    return (address.node, address.incarnation)


def finish_proxy(proxy: Cell, reason: BaseException | None) -> None:
    """The remote actor behind ``proxy`` has ended: tell its local watchers, once. Any thread."""
    proxy.finish_proxy(reason)
