"""Pipelined tells: the sender's window of frames in flight, the receiver's place in each stream.

A remote `send` does not wait for a round trip while the target has room by this node's
latest view (the ref's `Credit`): it hands its frame to the outbox and returns. Each ref's
pipelined tells form a *stream*: a random id, and sequence numbers 1, 2, ... in the order
the frames enter the outbox. The sender keeps every frame until its reply comes (the
`Window`); the receiver keeps, per stream, the next seq it expects (`Place`). Together they
give each stream exactly-once, in-order delivery for as long as both nodes live, across a
lost reply, a server restart or a reconnect:

- A frame whose reply says "no responders" (nobody subscribed right now), or whose reply
  never came, makes the window *stall*: no frame of the stream leaves until the sender has
  made sure the target is still there, then every frame not yet answered is sent again, in
  order (go-back-N).
- The receiver enqueues a frame only at its turn (``seq == expected``). One it has seen
  already is answered again without being enqueued twice (an answer it refused is refused
  again); one ahead of its turn is answered `GAP` with the seq expected, and the sender goes
  back to it.
- A receiver that does not know a stream (it never saw it, or forgot it: the table is
  bounded) starts at the frame's ``base``, the oldest seq its sender has not heard about.

What a pipelined tell's caller can no longer be told (the target stopped meanwhile, its
node died, the mailbox stayed full past the tell's timeout) is counted, logged and
published as a dead letter on the sending system, with the reason.

Thread rules: `Window` and `Streams` are loop only (the cluster loop of their node). The
`Credit` that admits a tell into the window is the one structure callers' threads touch.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING, Final

import msgspec

from ._wire import Told  # a field type: msgspec reads it at run time

if TYPE_CHECKING:
    from ._wire import ErrorInfo

__all__ = (
    "ACK_EVERY",
    "PIPELINED_MAX",
    "REFUSALS_KEPT",
    "STREAMS_PER_ACTOR",
    "TELLS_MAX",
    "Place",
    "Sent",
    "Streams",
    "Tell",
    "Window",
)

STREAMS_PER_ACTOR: Final = 4096
"""Streams a receiving actor remembers; the least recently used is forgotten beyond it."""

REFUSALS_KEPT: Final = 64
"""Refused seqs a stream remembers, so that a frame sent again is refused again."""

PIPELINED_MAX: Final = 256
"""Tells of one ref in flight at most, whatever room the target reports: a stream sent again
after a lost connection is at most this long."""

TELLS_MAX: Final = 64
"""Tells of one stream sent in one frame at most (`TELLS`), when several wait together."""

ACK_EVERY: Final = 64
"""Enqueued tells of a stream answered by one reply at most, while more frames wait."""


class Tell(msgspec.Struct, eq=False):
    """A remote tell checked and encoded in its caller's thread, not yet a frame.

    ``told`` is what its frame carries (a `TELL` envelope made of it, or one item of a
    `TELLS` frame): the body is encoded once, here, and never again, also when the stream
    sends it again. ``size`` bounds the bytes ``told`` encodes to (for the frame budget of
    `Tells._transmit_all`); ``exports`` the ids of the local refs in the body, subscribed
    before its frame leaves. Compared by identity (``eq=False``): two tells of equal
    messages are two tells. Built as a Struct, not a class with ``__init__``: it is made
    once per tell on the caller's thread, where a tell's Python is the sender's bottleneck.
    """

    told: Told
    exports: list[int]
    message: object
    size: int


class Sent(msgspec.Struct, eq=False):
    """One tell of a stream that has not been answered yet (a Struct for the same reason)."""

    seq: int
    tell: Tell
    # The caller waiting for the answer (a send without credit), or None: the caller has
    # returned, and a failure becomes a dead letter.
    future: asyncio.Future[None] | None
    pipelined: bool  # it holds a slot of the ref's credit until answered
    token: str = ""  # the reply token of its latest transmission


class Window:
    """The sending side of one ref's stream. Loop only.

    ``unacked`` holds the frames not answered yet, by seq, in seq order (a dict keeps its
    insertion order and every new seq is the largest). ``epoch`` counts the times the
    stream was sent again: a reply to a frame of an older epoch may still settle that frame,
    but never starts another resend.
    """

    __slots__ = (
        "delay",
        "drained",
        "epoch",
        "next_seq",
        "stalled",
        "stream",
        "subject",
        "unacked",
    )

    def __init__(self) -> None:
        self.stream = secrets.randbits(62) | 1  # never 0: 0 is "no stream"
        self.next_seq = 1
        self.unacked: dict[int, Sent] = {}
        self.epoch = 0
        self.stalled = False
        self.delay = 0.0  # the pause before the next resend; grows while resends fail
        self.drained: asyncio.Event | None = None  # set when nothing is left unanswered
        self.subject = ""  # the target's subject, formatted at the first frame

    @property
    def base(self) -> int:
        """The oldest seq not answered yet (the next one to be sent, if none)."""
        return next(iter(self.unacked), self.next_seq)

    def add(self, tell: Tell, future: asyncio.Future[None] | None) -> Sent:
        sent = Sent(self.next_seq, tell, future, future is None)
        self.unacked[sent.seq] = sent
        self.next_seq += 1
        return sent

    def add_all(self, tells: list[Tell], future: asyncio.Future[None] | None) -> list[Sent]:
        """`add` for each of ``tells``, in order: the run of one drain, in one pass."""
        seq = self.next_seq
        unacked = self.unacked
        pipelined = future is None
        sents: list[Sent] = []
        for tell in tells:
            sent = unacked[seq] = Sent(seq, tell, future, pipelined)
            sents.append(sent)
            seq += 1
        self.next_seq = seq
        return sents

    def remove(self, seq: int) -> Sent | None:
        sent = self.unacked.pop(seq, None)
        if not self.unacked and self.drained is not None:
            self.drained.set()
            self.drained = None
        return sent

    def remove_through(self, seq: int) -> list[Sent]:
        """Remove the unanswered tells up to ``seq`` (those an OK answers), in seq order.

        One pass for the run a reply answers (up to `ACK_EVERY` tells), not a call per tell.
        """
        unacked = self.unacked
        done: list[Sent] = []
        for sent in unacked.values():  # in seq order
            if sent.seq > seq:
                break
            done.append(sent)
        for sent in done:
            del unacked[sent.seq]
        if not unacked and self.drained is not None:
            self.drained.set()
            self.drained = None
        return done

    async def wait_drained(self) -> None:
        """Until every tell sent so far is answered (an ask must not overtake them)."""
        if self.unacked:
            if self.drained is None:
                self.drained = asyncio.Event()
            await self.drained.wait()

    def stall(self) -> bool:
        """Stop sending; False if already stalled."""
        if self.stalled:
            return False
        self.stalled = True
        self.epoch += 1
        return True

    def resume(self) -> None:
        self.stalled = False


class Place:
    """The receiving side of one stream: the next seq to enqueue, and recent refusals.

    An enqueued tell is answered OK, and an OK answers for every earlier seq of the stream
    too (a refusal is answered at once, before any later OK). So while more frames wait in
    the subscription, the OK of an enqueued tell is held back (``held``: its reply subject
    and free room) and only the last one is sent: one reply for up to `ACK_EVERY` tells.
    """

    __slots__ = ("expected", "held", "held_count", "refused")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.refused: OrderedDict[int, ErrorInfo] = OrderedDict()
        self.held = ""  # the reply subject of the latest OK held back, or ""
        self.held_count = 0

    def refuse(self, seq: int, info: ErrorInfo) -> None:
        self.refused[seq] = info
        if len(self.refused) > REFUSALS_KEPT:
            self.refused.popitem(last=False)


class Streams:
    """The streams one exported actor receives, by (sender node, stream id). Loop only."""

    __slots__ = ("_places", "holding")

    def __init__(self) -> None:
        self._places: OrderedDict[tuple[str, int], Place] = OrderedDict()
        self.holding: set[Place] = set()  # places with an OK held back

    def __len__(self) -> int:
        return len(self._places)

    def place(self, sender: str, stream: int, base: int) -> Place:
        key = (sender, stream)
        place = self._places.get(key)
        if place is None:
            place = self._places[key] = Place(base)
            if len(self._places) > STREAMS_PER_ACTOR:
                self._places.popitem(last=False)
        else:
            self._places.move_to_end(key)
        return place
