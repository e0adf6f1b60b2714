"""The bounded multi-producer, single-consumer mailbox of one actor.

Shape: one private state (a deque of messages, a list of control signals, a FIFO list of
waiting senders, counters) behind one ``threading.Lock``, in the manner of anyio's memory
streams and tokio's bounded mpsc channel. Producers run on any thread: other worker loops,
the host application's loop (asyncio or trio), plain threads. The consumer is the actor's run
on its home loop: its run task, or its drain (a loop callback, for a synchronous handler).

Invariants (all under ``_lock``):

* ``len(_queue) + _reserved <= capacity``. Free room goes to the oldest waiting sender first
  (``_reserved`` counts slots granted to senders that have not yet woken to fill them), so
  waiting senders are admitted in FIFO order, and a newcomer finding anyone waiting queues up
  behind them instead of overtaking. As in tokio's bounded channel, admission is the grant:
  a sender appends its message when it resumes, so two senders granted in the same instant
  (on different loops or threads) may land in either order; each sender's own messages
  always keep their order.
* ``_scheduled`` is the consumer's token: True while a run task exists or is about to be
  created. A producer that puts into a mailbox whose token is False takes it and must call
  ``wake`` (outside the lock) exactly once; the consumer gives it back only when it finds the
  mailbox empty, under the same lock, so a wake-up can be neither lost nor doubled. Bursts of
  sends to a busy actor therefore cost no wake-up at all.
* Only the consumer pops (single consumer), so ``pop`` needs no hand-off protocol.
* A sender cancelled or timed out while waiting enqueues nothing: if a slot was already
  granted to it, the slot passes on to the next waiter.
* A batch (`put_many_nowait`, `put_many`) is all or nothing: its items go in together, in
  order, under one lock acquisition and with at most one wake-up, or none of them does. A
  batch waits in the same FIFO line as single senders, for room for all of it at once (a
  sender at the head that needs more room than there is holds up those behind it, so
  nobody overtakes); one larger than the capacity can never fit, and is refused.

Stop travels as the ``_closed`` flag and supervision signals (later) in ``_control``: the bound
never blocks either, and the consumer sees both before any further message. The consumer's
common-case pop takes no lock (see `Mailbox.pop`), nor does the last pop of a closed mailbox
(DRAINED, in `Mailbox.pop_slow`): ``_closed`` is set under the lock after every accepted
message and cleared only by the consumer (`reopen`), so the consumer that reads it set and
the queue empty has seen the queue's last message.

The critical sections that every message or every actor's life passes through (puts, the
consumer's slow pop, release, close, finish) take the lock with ``acquire()`` and a
``try``/``finally`` rather than ``with``: on CPython 3.11 a ``with`` statement costs about
1,100 instructions more per critical section (docs/benchmarks.md, "Costs behind the design").
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import threading
from collections import deque
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, cast

import msgspec

from ._oneshot import Oneshot, oneshot, thread_oneshot

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = (
    "CLOSED",
    "DRAINED",
    "EMPTY",
    "FULL",
    "OK",
    "Mailbox",
    "MailboxClosed",
    "MailboxStatistics",
    "Marker",
    "Signal",
)

T = TypeVar("T")

OK: Final = 0
FULL: Final = 1
CLOSED: Final = 2


class Signal:
    """What `Mailbox.pop` returns besides messages: EMPTY, DRAINED, or a control signal.

    A control signal wraps a typed record (``actors._control``: a child's exit, a timer's
    tick, ...) that the mailbox never looks into. One class for all of them, so that the
    dispatch loop tells every non-message apart with a single ``type(item) is Signal`` test,
    at no cost to ordinary messages.
    """

    __slots__ = ("record",)

    def __init__(self, record: object) -> None:
        self.record = record

    def __repr__(self) -> str:
        return f"Signal({self.record!r})"


class Marker(enum.Enum):
    """The records of the two signals `Mailbox.pop` makes itself."""

    EMPTY = "empty"  # nothing left; the consumer token is released
    DRAINED = "drained"  # closed and nothing left: the actor ends


EMPTY: Final = Signal(Marker.EMPTY)
DRAINED: Final = Signal(Marker.DRAINED)


class MailboxClosed(Exception):
    """Internal: the mailbox closed while a sender waited for room."""


class MailboxStatistics(msgspec.Struct, frozen=True):
    """A snapshot of a mailbox.

    Attributes:
        capacity: the bound on waiting messages.
        depth: messages waiting now (not counting the one being handled).
        high_water: the largest depth seen.
        waiting_senders: senders blocked on a full mailbox.
        closed: no new message is accepted.

    Example:
        ```python
        box = ref.statistics().mailbox
        if box.depth > box.capacity // 2:
            log.warning("falling behind: %d waiting", box.depth)
        ```
    """

    capacity: int
    depth: int
    high_water: int
    waiting_senders: int
    closed: bool


class _Sender:
    """A sender blocked on a full mailbox, for ``count`` slots (a batch: more than one)."""

    __slots__ = ("count", "granted", "waiter")

    def __init__(self, waiter: Oneshot, count: int = 1) -> None:
        self.waiter = waiter
        self.granted = False
        self.count = count


class _NoQueue(deque[Any]):
    """Stands in for the deque of a mailbox that never held anything: empty, and loud.

    Every producer path replaces it (`Mailbox._room`) under the lock before appending, so
    an append reaching it is a bug: it raises instead of filling a shared object. A deque
    itself (one, shared), so that its length and truth are read in C: a fresh actor's
    first put and its start-up both look at it (a ``__len__`` written in Python costs a
    call each time).
    """

    __slots__ = ()

    def append(self, item: object) -> None:
        raise AssertionError("Mailbox: append to the shared empty queue")

    def extend(self, items: Iterable[object]) -> None:
        raise AssertionError("Mailbox: extend of the shared empty queue")

    def appendleft(self, item: object) -> None:
        raise AssertionError("Mailbox: append to the shared empty queue")


_NO_QUEUE: Final[Any] = _NoQueue()


def _never_woken(waker: object) -> None:
    pass  # the wake-up of a finished mailbox, which never happens


def _call(wake: Callable[[], None]) -> None:
    wake()


def _wake_call(kind: type) -> Callable[[Any], None]:
    # The function that wakes an object of type ``kind`` when called with it (see
    # `Mailbox.__init__`): the ``__call__`` its class defines in Python (the cell's), called
    # with the instance; for any other callable (a function, a bound method, a staticmethod
    # ``__call__``), `_call`.
    for klass in kind.__mro__:
        call: object = vars(klass).get("__call__")
        if call is not None:
            # A plain function is a method: called with the instance (not a staticmethod).
            return cast("Callable[[Any], None]", call) if isinstance(call, FunctionType) else _call
    return _call


# `_wake_call` by type, learnt on a type's first mailbox: a spawn looks its cell's type up
# in C instead of walking its MRO (about 2,000 instructions a life). The types are the
# cells' and those of test callables, a handful. Any thread may add one; two adding the
# same type store the same function.
_WAKE_CALLS: Final[dict[type, Callable[[Any], None]]] = {}


_NO_LIST: Final[Any] = ()  # the control lane or the waiting senders before their first use

# The mailboxes' locks (see `Mailbox.__init__`), handed out round-robin: 256 stripes keep
# producers of unrelated actors on different threads apart. A racy `next` (free-threaded
# builds) may hand one stripe out twice, which costs nothing but a little sharing.
_STRIPE_COUNT: Final = 256
_MAILBOX_LOCKS: Final = tuple(threading.Lock() for _ in range(_STRIPE_COUNT))
_stripes = itertools.count()


class Mailbox(Generic[T]):
    """Bounded MPSC queue with a control lane. See the module docstring for the invariants."""

    __slots__ = (
        "_closed",
        "_control",
        "_evicted",
        "_finished",
        "_high_water",
        "_lock",
        "_low_water",
        "_open",
        "_queue",
        "_reserved",
        "_scheduled",
        "_sealed",
        "_senders",
        "_wake",
        "_waker",
        "capacity",
    )

    def __init__(self, capacity: int, wake: Callable[[], None], *, scheduled: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        # The wake-up is called as ``_wake(_waker)``: a function and its object, not the
        # callable itself. The cell is its own wake-up (``Cell.__call__``, no bound method
        # kept per actor), and calling an instance goes through its type's ``__call__`` slot,
        # which CPython does not specialise; a plain function of one argument it does
        # (callgrind: about 500-600 instructions less per wake-up, docs/benchmarks.md,
        # "Savina in instructions").
        kind = type(wake)
        call = _WAKE_CALLS.get(kind)
        if call is None:
            call = _WAKE_CALLS[kind] = _wake_call(kind)
        self._wake: Callable[[Any], None] = call
        self._waker: object = wake
        # A stripe of a shared pool, not a lock of its own: a lock is one more object for the
        # garbage collector to walk per actor (much of a spawn's cost is collection) and some
        # bytes more (docs/benchmarks.md, "Costs behind the design"). Sharing is safe because
        # no critical section here takes another lock or calls out (wake-ups and settles run
        # after release), so two mailboxes on one stripe can only make each other wait, never
        # deadlock.
        self._lock = _MAILBOX_LOCKS[next(_stripes) % _STRIPE_COUNT]
        # Made on the first put (see `_room`): an empty deque preallocates a block, most of
        # an idle actor's footprint.
        self._queue: deque[T] = _NO_QUEUE
        # Lists, not deques: both are usually empty, and an empty deque preallocates a
        # block. Made on first use too (`_room`, `consumer_view`).
        self._control: list[Signal] = _NO_LIST
        self._senders: list[_Sender] = _NO_LIST
        self._reserved = 0
        # The room a newcomer may take without looking further (see `_reopen`): 0 until the
        # queue is made, while closed and while senders wait, else capacity - reserved.
        self._open = 0
        self._low_water = capacity // 2  # see pop: when waiting senders are let in
        self._high_water = 0
        self._evicted = 0  # taken out by put_evicting (for the metrics' received count)
        self._closed = False
        self._sealed = False  # closed for good: a restart may not reopen it
        self._finished = False
        # Starts taken: the actor's start-up task holds the token until on_start returns.
        self._scheduled = scheduled

    @property
    def scheduled(self) -> bool:
        """Whether the consumer token is taken (a run is due or running). Under `lock`."""
        return self._scheduled

    @property
    def lock(self) -> threading.Lock:
        """The lock guarding this mailbox, for ordering an ownership change of its consumer
        (an actor moving between loops) with what the mailbox decides. Held briefly, and
        never while taking another lock (the locks are striped: see `_MAILBOX_LOCKS`)."""
        return self._lock

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sealed(self) -> bool:
        """Closed for good (a final stop): `reopen` refuses."""
        return self._sealed

    # -- producers ------------------------------------------------------------------------

    def put_nowait(self, item: T) -> int:
        """Enqueue without waiting: returns OK, FULL or CLOSED."""
        lock = self._lock
        lock.acquire()  # acquire/release, not `with`: this is the hottest lock in the library
        try:
            queue = self._queue
            # The length may be stale-high (pops take no lock): that only errs on the safe
            # side. One test in the common case (`_open` folds the others in).
            depth = len(queue)
            if depth >= self._open:
                if self._closed:
                    return CLOSED
                # Senders already waiting go first: a newcomer never overtakes them.
                if depth + self._reserved >= self.capacity or self._senders:
                    return FULL
                queue = self._room()  # the one other reason: no queue made yet
            queue.append(item)
            if depth >= self._high_water:
                self._high_water = depth + 1
            if self._scheduled:
                return OK
            self._scheduled = True
        finally:
            lock.release()
        self._wake(self._waker)
        return OK

    def put_many_nowait(self, items: Sequence[T]) -> int:
        """Enqueue all of ``items`` in order without waiting, or none: OK, FULL or CLOSED.

        FULL when the free room is smaller than the batch (or senders are waiting); nothing
        is enqueued then. One lock acquisition and at most one wake-up for the whole batch.
        An empty batch is OK and changes nothing.
        """
        count = len(items)
        if not count:
            return OK
        with self._lock:
            queue = self._queue
            depth = len(queue)
            if depth + count > self._open:
                if self._closed:
                    return CLOSED
                if depth + self._reserved + count > self.capacity or self._senders:
                    return FULL
                queue = self._room()
            queue.extend(items)
            if depth + count > self._high_water:
                self._high_water = depth + count
            if self._scheduled:
                return OK
            self._scheduled = True
        self._wake(self._waker)
        return OK

    def put_evicting(self, item: T, is_victim: Callable[[object], bool]) -> tuple[int, object]:
        """Enqueue without waiting; when full, first drop the oldest queued item that
        ``is_victim`` accepts (a drop-oldest subscription). Returns (OK, evicted item or
        None), (FULL, None) when nothing may be dropped, or (CLOSED, None).

        The scan works on a copy (the consumer pops without the lock, only from the left;
        producers are held off by the lock). ``deque.remove`` matches by identity first but
        then by ``==``: so the victim is evicted only when no message queued before it
        compares equal to it (else FULL: nothing is dropped that should not be). If the
        consumer took the victim meanwhile, there is room anyway.
        """
        with self._lock:
            if self._closed:
                return CLOSED, None
            queue = self._room()
            evicted: object = None
            if len(queue) + self._reserved >= self.capacity or self._senders:
                snapshot = list(queue)
                index = next((i for i, queued in enumerate(snapshot) if is_victim(queued)), -1)
                if index < 0:
                    return FULL, None
                victim = snapshot[index]
                if any(queued == victim for queued in snapshot[:index]):
                    return FULL, None  # remove() would take that one instead
                with contextlib.suppress(ValueError):
                    queue.remove(victim)
                    evicted = victim
                    self._evicted += 1
            queue.append(item)
            if len(queue) > self._high_water:
                self._high_water = len(queue)
            if self._scheduled:
                return OK, evicted
            self._scheduled = True
        self._wake(self._waker)
        return OK, evicted

    async def put(self, item: T, timeout: float | None = None) -> int:
        """Enqueue, waiting in FIFO order while full: returns OK or CLOSED.

        Raises `Expired` after ``timeout``. Cancellation: nothing is enqueued.
        """
        sender = self._line_up(item, oneshot)
        if not isinstance(sender, _Sender):
            return sender
        return await self._wait_and_fill(sender, (item,), timeout)

    async def put_many(self, items: Sequence[T], timeout: float | None = None) -> int:
        """Enqueue all of ``items`` in order, waiting in FIFO order for room for all of them:
        returns OK or CLOSED (nothing enqueued).

        Raises:
            ValueError: the batch is larger than the capacity: it could never fit.
            Expired: no room for the whole batch after ``timeout``; nothing enqueued.

        Cancellation: nothing is enqueued (room already granted passes on).
        """
        if len(items) > self.capacity:
            raise ValueError(
                f"a batch of {len(items)} messages can never fit in a mailbox of capacity "
                f"{self.capacity}; send it in smaller batches"
            )
        sender = self._line_up_many(items, oneshot)
        if not isinstance(sender, _Sender):
            return sender
        return await self._wait_and_fill(sender, items, timeout)

    async def _wait_and_fill(
        self, sender: _Sender, items: Sequence[T], timeout: float | None
    ) -> int:
        # A waiting sender of `put` or `put_many`: wait for the grant, then fill it.
        try:
            await sender.waiter.wait(timeout)
        except MailboxClosed:
            return CLOSED
        except BaseException:
            self._abandon(sender)
            raise
        return self._fill_reserved(items)

    def put_blocking(self, item: T, timeout: float | None = None) -> int:
        """`put` for plain threads: blocks the calling thread."""
        sender = self._line_up(item, thread_oneshot)
        if not isinstance(sender, _Sender):
            return sender
        try:
            sender.waiter.wait_blocking(timeout)
        except MailboxClosed:
            return CLOSED
        except BaseException:
            self._abandon(sender)
            raise
        return self._fill_reserved((item,))

    def put_unbounded(self, signal: Signal) -> bool:
        """Enqueue a signal behind the queued messages, past the bound (a timer tick).

        FIFO with the messages (a tick does not overtake what was sent before it fell due),
        but never refused for room: each timer has at most one tick waiting, so the bound
        is exceeded by at most one per timer. False once closed.
        """
        with self._lock:
            if self._closed:
                return False
            self._room().append(signal)  # type: ignore[arg-type]  # the consumer tells Signals apart
            if self._scheduled:
                return True
            self._scheduled = True
        self._wake(self._waker)
        return True

    def interrupt(self, signal: Signal) -> bool:
        """Put a signal at the head of the control lane without waking the consumer.

        For a consumer that is running: it sees the signal at its next message boundary,
        ahead of every other signal and message. An idle consumer is the caller's to deal
        with (it finds the signal whenever it next runs). False once finished.
        """
        with self._lock:
            if self._finished:
                return False
            if self._control is _NO_LIST:
                self._control = []
            self._control.insert(0, signal)
            return True

    def put_control(self, signal: Signal) -> bool:
        """Enqueue a control signal past the bound; False once the consumer has finished."""
        with self._lock:
            if self._finished:
                return False
            if self._control is _NO_LIST:
                self._control = []
            self._control.append(signal)
            if self._scheduled:
                return True
            self._scheduled = True
        self._wake(self._waker)
        return True

    def _line_up(self, item: T, make_waiter: Callable[[], Oneshot]) -> int | _Sender:
        """Enqueue now if possible (OK or CLOSED), else join the waiting senders."""
        while True:
            code = self.put_nowait(item)
            if code != FULL:
                return code
            sender = self._enqueue_sender(make_waiter)
            if sender is not None:
                return sender
            # Room appeared between the two locked sections, or the mailbox closed: retry.

    def _line_up_many(
        self, items: Sequence[T], make_waiter: Callable[[], Oneshot]
    ) -> int | _Sender:
        """`_line_up` for a batch: all of it now if possible, else join the waiting senders."""
        while True:
            code = self.put_many_nowait(items)
            if code != FULL:
                return code
            sender = self._enqueue_sender(make_waiter, len(items))
            if sender is not None:
                return sender

    def _enqueue_sender(self, make_waiter: Callable[[], Oneshot], count: int = 1) -> _Sender | None:
        """Join the waiting senders; None when the caller should retry put_nowait instead."""
        with self._lock:
            if self._closed:
                return None
            if not self._senders and len(self._queue) + self._reserved + count <= self.capacity:
                return None  # room appeared meanwhile and nobody is ahead of us
            sender = _Sender(make_waiter(), count)
            if self._senders is _NO_LIST:
                self._senders = []
            self._senders.append(sender)
            self._open = 0  # newcomers line up behind it
            # Test the room again, now that the sender is in the list. The consumer's
            # lock-free pop takes an item and then tests the list; this side puts itself in
            # the list and then tests the queue: whichever comes second sees the other. A
            # test made only before the append could miss a pop that came between, whose
            # own test saw nobody waiting: the sender would wait for the consumer's next
            # pop, and a consumer whose handler waits for this sender (two actors sending
            # to each other) would never make it. Served now if there is room, in order
            # (this sender may be first).
            granted = self._grant_locked()
        for other in granted:
            other.waiter.settle()
        return sender

    def _abandon(self, sender: _Sender) -> None:
        """A waiting sender gives up (cancelled or timed out): pass its slot on, if it had one."""
        with self._lock:
            if sender.granted:
                self._reserved -= sender.count
                passed_on = self._grant_locked()
                self._reopen()
            else:
                if sender in self._senders:  # else already released by close()
                    self._senders.remove(sender)
                    self._reopen()
                return
        for other in passed_on:
            other.waiter.settle()

    def _fill_reserved(self, items: Sequence[T]) -> int:
        # A waiting sender was granted room for ``items`` (one, or a batch): fill it.
        with self._lock:
            self._reserved -= len(items)
            self._reopen()
            if self._closed:
                return CLOSED
            queue = self._room()
            queue.extend(items)
            if len(queue) > self._high_water:
                self._high_water = len(queue)
            if self._scheduled:
                return OK
            self._scheduled = True
        self._wake(self._waker)
        return OK

    def _room(self) -> deque[T]:
        # With the lock held: the queue, made now if this is the first item ever.
        queue = self._queue
        if queue is _NO_QUEUE:
            queue = self._queue = deque()
            # The consumer's view (`consumer_view`) is due as soon as this first item wakes
            # it: made here, under the lock already held, the lists cost its run no lock.
            if self._control is _NO_LIST:
                self._control = []
            if self._senders is _NO_LIST:
                self._senders = []
            # `_reopen`, inlined (once per mailbox): the queue exists now.
            self._open = 0 if self._closed or self._senders else self.capacity - self._reserved
        return queue

    def _reopen(self) -> None:
        # With the lock held, after any change of what admission depends on: the room a
        # newcomer may take at once. Invariant: depth < _open implies not closed, a queue
        # made, no sender waiting and depth + _reserved < capacity.
        if self._closed or self._senders or self._queue is _NO_QUEUE:
            self._open = 0
        else:
            self._open = self.capacity - self._reserved

    def _grant_locked(self) -> list[_Sender]:
        # With the lock held: reserve every free slot for the oldest waiting senders, in order.
        granted: list[_Sender] = []
        if self._closed:
            return granted
        room = self.capacity - len(self._queue) - self._reserved
        senders = self._senders
        # Strictly in line: a batch at the head that needs more room than there is waits
        # for it, and the senders behind it wait too (no overtaking).
        while senders and senders[0].count <= room:
            sender = senders.pop(0)
            sender.granted = True
            self._reserved += sender.count
            room -= sender.count
            granted.append(sender)
        if granted:
            self._reopen()
        return granted

    def grant_waiting(self) -> None:
        """Let waiting senders fill the room there is now (see `pop`); any thread."""
        with self._lock:
            granted = self._grant_locked()
        for sender in granted:
            sender.waiter.settle()

    def before_consumer_waits(self) -> None:
        """The consumer's handler is about to wait on other actors (room in theirs, a reply):
        let in the senders waiting for room here first.

        The lock-free pops hold room back from waiting senders until the queue is down to
        half (see `pop`). A handler that waits meanwhile would hold it for as long as it
        waits, and if what it waits for is one of those senders (two actors sending to each
        other, or a send answered by an ask), neither would ever move.
        """
        if self._senders:
            self.grant_waiting()

    # -- the consumer ---------------------------------------------------------------------

    def pop(self) -> Any:
        """The next control signal or message; EMPTY (token released) or DRAINED.

        Invariant: only the actor's own run task calls this (single consumer), so nobody can
        take the item between the emptiness test and ``popleft``. The common case takes no
        lock: deque's append and popleft are thread-safe on their own (with or without the
        GIL), and producers, who test the length under the lock, can only see it stale-high.
        Waiting senders get room once the queue is down to half (``_low_water``), all at
        once. A sender that joins the line around the ``_senders`` test below is not missed:
        it tests the room again once it is in the line (`_enqueue_sender`), so either this
        test sees it or it sees the room this pop made. (Without the GIL, too: the popleft
        and the append each run in their object's critical section, whose atomic lock
        operations order the write before the read that follows on each side.) A sender
        left waiting above the low water is served by a later pop, by the locked EMPTY
        transition, or when this consumer's handler starts waiting for room itself
        (`deliver`): so room is never held back from a sender by a consumer that waits.
        """
        queue = self._queue
        if queue and not self._control:
            item = queue.popleft()
            # Waiting senders are let in in batches, once the queue is down to half: one
            # wake-up per batch instead of one per message (measured: +7% throughput).
            if self._senders and len(queue) <= self._low_water:
                self.grant_waiting()
            return item
        return self.pop_slow()

    def consumer_view(self) -> tuple[deque[T], list[Signal], list[_Sender], int]:
        """The consumer's handles for inlining `pop`'s common case in its dispatch loop.

        Only the consumer may use them, and only exactly as `pop` does. The queue and the
        lists are made here if no put has made them yet (once made they are never replaced):
        the view must see the puts to come.
        """
        if self._queue is _NO_QUEUE or self._control is _NO_LIST or self._senders is _NO_LIST:
            lock = self._lock
            lock.acquire()
            try:
                self._room()
                if self._control is _NO_LIST:
                    self._control = []
                if self._senders is _NO_LIST:
                    self._senders = []
            finally:
                lock.release()
        return self._queue, self._control, self._senders, self._low_water

    def pop_slow(self) -> Any:
        """`pop` minus its lock-free case: for the consumer that has just tested it itself."""
        # DRAINED without the lock: every life's last pop (a stopped actor's end). Sound for
        # the single consumer because ``_closed``, once set, is cleared only by the consumer
        # itself (`reopen`), and it is set under the lock after every message the mailbox
        # accepted (a put finds it closed under the same lock), so an empty queue read after
        # it is empty for good. A control signal that lands after this look is no different
        # from one that lands after the locked look: `finish` hands it to the caller.
        if self._closed and not self._queue and not self._control:
            return DRAINED
        lock = self._lock
        lock.acquire()
        try:
            if self._control:
                return self._control.pop(0)
            item: Any
            if self._queue:
                item = self._queue.popleft()
                granted = self._grant_locked() if self._senders else _NO_LIST
            elif self._closed:
                return DRAINED
            else:
                # Going idle: first hand any free room to waiting senders, whose fill will
                # take the consumer token and wake us again.
                item = EMPTY
                granted = self._grant_locked() if self._senders else _NO_LIST
                self._scheduled = False
        finally:
            lock.release()
        for sender in granted:
            sender.waiter.settle()
        return item

    def release(self) -> bool:
        """Hand the consumer token back if there is nothing to do; False keeps it.

        For a consumer that holds the token without having popped (an actor that started
        without a run task): with messages, signals or a close waiting it must run.
        """
        lock = self._lock
        lock.acquire()
        try:
            if self._queue or self._control or self._closed:
                return False
            self._scheduled = False
            return True
        finally:
            lock.release()

    def claim_if_idle(self) -> bool:
        """Take the consumer token back if nobody holds it and nothing waits; else False.

        For a consumer that has just handed the token back and wants it again to act on the
        actor as a whole (a move to another loop): True means no producer will wake it until
        it releases the token again.
        """
        with self._lock:
            if self._scheduled or self._queue or self._control or self._closed:
                return False
            self._scheduled = True
            return True

    def close(self, *, seal: bool = False) -> bool:
        """Refuse new messages; the consumer still drains what was accepted.

        Waiting senders are released with `MailboxClosed`. Returns True when this call closed
        it. Wakes an idle consumer so that it sees DRAINED. ``seal`` makes the close final:
        a supervisor's restart cannot `reopen` it (the two race on different threads, so
        the decision is taken under the lock).
        """
        lock = self._lock
        lock.acquire()
        try:
            if seal:
                self._sealed = True
            if self._closed:
                return False
            self._closed = True
            self._open = 0
            senders = self._senders
            if senders:  # copied only when it holds someone (usually nobody)
                senders = list(senders)
                self._senders.clear()  # in place: the consumer holds a reference (consumer_view)
            wake = not self._scheduled
            self._scheduled = True
        finally:
            lock.release()
        for sender in senders:
            sender.waiter.settle(error=MailboxClosed())
        if wake:
            self._wake(self._waker)
        return True

    def close_if_idle(self) -> bool:
        """Close for good and take the consumer token, if nothing is queued or running.

        For a parent ending an idle child itself (`Cell.stop_if_idle`): True means no
        consumer holds the token and nothing was accepted, so there is nothing to drain,
        and no wake-up is due (the caller is now the consumer). False changes nothing.
        """
        with self._lock:
            if self._scheduled or self._closed or self._queue or self._control or self._senders:
                return False
            self._closed = self._sealed = self._scheduled = True
            self._open = 0
            return True

    def reopen(self) -> bool:
        """Accept messages again after a non-final close (a restart); False if sealed.

        Called by the consumer, which still holds the consumer token: no wake-up is due.
        """
        with self._lock:
            if self._sealed or self._finished:
                return False
            self._closed = False
            self._reopen()
            return True

    def finish(self) -> tuple[Sequence[T], Sequence[Signal]]:
        """The consumer is gone for good: close without waking anyone, return what was left.

        Called by the consumer itself. What it returns, the queued messages and the control
        signals (normally none; some after a failure or a kill), is the caller's to account
        for: new lists, or a shared empty tuple for nothing (a drained actor's end, once per
        life: two lists less to make and free).
        """
        lock = self._lock
        lock.acquire()  # not `with`: once per actor's life (see the module docstring)
        try:
            self._closed = True
            self._open = 0
            self._sealed = True
            self._finished = True
            self._scheduled = True  # never hand the consumer token out again
            # Nor keep the consumer alive (a reference cycle).
            self._wake, self._waker = _never_woken, None
            # Copies only of what holds something (usually nothing: a drained actor's end).
            senders = self._senders
            if senders:
                senders = list(senders)
                self._senders.clear()  # in place: the consumer holds a reference (consumer_view)
            queue = self._queue
            items: Sequence[T] = ()
            if queue:
                items = list(queue)
                queue.clear()
            signals: Sequence[Signal] = ()
            if self._control:
                signals = list(self._control)
                self._control.clear()
        finally:
            lock.release()
        for sender in senders:
            sender.waiter.settle(error=MailboxClosed())
        return items, signals

    @property
    def evicted(self) -> int:
        """Messages dropped by `put_evicting` so far."""
        return self._evicted

    def statistics(self) -> MailboxStatistics:
        lock = self._lock
        lock.acquire()
        try:
            return MailboxStatistics(
                capacity=self.capacity,
                depth=len(self._queue),
                high_water=self._high_water,
                waiting_senders=len(self._senders),
                closed=self._closed,
            )
        finally:
            lock.release()
