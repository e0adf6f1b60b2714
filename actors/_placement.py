"""Placement that follows the traffic: actors that talk move to one loop.

Every message between two loops costs a cross-thread wake-up (``call_soon_threadsafe`` and,
under the GIL, a hand-over of the interpreter): about ten times a same-loop hop. Actors own
their state and handle one message at a time, so an actor can change loops between two
messages, the way Erlang processes migrate between schedulers and Orleans moves activations
that communicate. This module decides *when* and *where*; `Cell` carries the move out.

What is counted, and where:

* Only cross-loop wake-ups, in the producer's thread (`Cell._wake`'s cross-thread branch,
  which already pays for a ``call_soon_threadsafe``): nothing on the same-loop hot path.
  Each actor keeps a `Traffic` record (made at its first cross-loop wake-up) with a
  majority vote over the loops that woke it in the current window. Producers on several
  threads update it without a lock: it is a heuristic, and a lost update only delays a move.
* The decision is taken on the actor's own loop, between two messages (when it runs dry, or
  at a fairness turn), never inside a handler: `Placer.decide`.

The rules (all in `Placer.decide`, under one lock, since moves of different actors must see
each other):

* **Enough traffic**: at least `MIN_WAKES` wake-ups from the target loop in the window, and
  they started at least half of the actor's bursts of work meanwhile (an actor that mostly
  talks to its own loop stays; a stream delivering many messages per wake-up counts
  fully). A window older than `WINDOW` starts afresh, so stale counts expire.
* **Hysteresis**: an actor that moved stays put for `COOLDOWN`; a move from loop A to B is
  refused within `WINDOW` of a move from B to A (two partners must not swap loops forever).
* **Bounded unevenness**: a loop takes no more actors by moves than `max(2 x average,
  average + SLACK)` of the system's worker-loop actors.
* **Pinned** actors (``spawn(placement=...)``, host-placed actors, pool workers) never move.

Evacuation: when the watchdog finds a loop held by one handler past its threshold, it marks
the loop blocked (the loop clears the mark when it turns again). A sender that wakes an idle
actor of a blocked loop moves the actor to its own loop (or another free one) on the spot,
so the actor's latency does not depend on the blocked handler (`Cell.evacuate_to` says why
that is safe while the old loop's thread is stuck).

Work stealing: an actor whose fairness turn (every ``throughput`` messages) took longer than
`CONTENDED` while other actors of its loop reached fairness turns too (a per-loop counter,
so a thread merely descheduled by the OS or the GIL does not count) sits on a loop with a
backlog of runnable actors. If a worker loop's thread
used less than `IDLE_SHARE` of a CPU since the last reading (`SAMPLE`), the actor moves
there at its next message boundary: whole actors are stolen, never single messages. An
actor that talks to the loop it was stolen from is pulled back by the traffic rule; each
such pull-back doubles the gap between steals (up to `STEAL_BACKOFF_MAX`), so stealing and
co-location do not fight over conversing actors.

Invariant: a cell's ``home`` is written by its current home thread, while that thread holds
the mailbox's consumer token and no task of the actor runs (see `Cell._finish_move`), or,
for an evacuation, by the sender holding the token while the old loop is stuck in another
actor's handler; both write it under the mailbox's lock, and whatever the old loop might
still do for the actor (its parking sweep, forwarded requests, a posted start, a timer)
checks ownership under that lock first. Producers read ``home`` after taking the token, so
the mailbox lock orders them after the move.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Final

import msgspec

from ._runtime import thread_cpu_seconds

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._cell import Cell
    from ._runtime import Home, WorkerHome

__all__ = (
    "COOLDOWN",
    "MIN_WAKES",
    "PINNED",
    "WINDOW",
    "Pinned",
    "PlacementStatistics",
    "Placer",
    "Traffic",
    "traffic_of",
)

WINDOW: Final = 0.05
"""Seconds over which wake-ups are counted before a window starts afresh."""

MIN_WAKES: Final = 16
"""Cross-loop wake-ups from one loop, within a window, that can justify a move."""

COOLDOWN: Final = 0.5
"""Seconds an actor that moved stays on its new loop before it may move again."""

SLACK: Final = 256
"""Actors a loop may hold above the average before moves onto it stop (see the bound)."""

CONTENDED: Final = 0.001
"""Seconds a fairness turn may take before its loop counts as having a backlog (stealing)."""

IDLE_SHARE: Final = 0.1
"""A loop whose thread used less than this share of a CPU lately counts as idle."""

SAMPLE: Final = 0.02
"""Seconds between two readings of the worker threads' CPU clocks (for stealing)."""

STEAL_BACKOFF_MAX: Final = 10.0
"""Seconds between steals, at most, after stolen actors kept being pulled back by traffic."""


class Pinned:
    """The ``traffic`` of an actor that never moves."""

    def __repr__(self) -> str:
        return "PINNED"


PINNED: Final = Pinned()


class Traffic:
    """Where one actor's messages came from lately (a majority vote over waking loops)."""

    __slots__ = (
        "bursts",
        "candidate",
        "forced",
        "settled_until",
        "since",
        "steal",
        "stolen_at",
        "votes",
        "wakes",
    )

    def __init__(self, now: float) -> None:
        self.candidate: Home | None = None  # the loop winning the vote
        self.votes = 0  # Boyer-Moore majority counter for `candidate`
        self.wakes = 0  # wake-ups from `candidate` in this window
        self.since = now  # when this window started
        self.bursts = 0  # times it ran dry in this window (home thread): its bursts of work
        self.settled_until = 0.0  # no move before this time (after a move)
        self.forced: Home | None = None  # a move requested by the runtime (tests, stealing)
        self.steal = False  # `forced` is a steal (counted as one)
        self.stolen_at = -1e9  # when it was last stolen (a quick pull-back slows stealing)

    def restart(self, now: float) -> None:
        self.candidate = None
        self.votes = self.wakes = self.bursts = 0
        self.since = now


def traffic_of(cell: Cell) -> Traffic | None:
    """``cell``'s traffic record, made on first use; None for a pinned actor. Any thread
    (two racing first uses make two records, one of which is kept: a heuristic's loss)."""
    traffic = cell.traffic
    if traffic is None:
        traffic = cell.traffic = Traffic(time.monotonic())
    return traffic if isinstance(traffic, Traffic) else None


class PlacementStatistics(msgspec.Struct, frozen=True):
    """Counters of the placement: moves made, and moves refused by each rule.

    Attributes:
        moves: actors moved to the loop they talk with most.
        steals: actors with a backlog taken by an idle loop from a loop with a backlog.
        evacuations: idle actors moved off a loop blocked by a long handler, by a sender.
        forced_moves: moves requested by the runtime itself (work stealing, tests).
        refused_swap: moves refused because the reverse move had just happened.
        refused_uneven: moves refused because the target loop holds too many actors.

    Example:
        ```python
        print(system.metrics().placement.moves)
        ```
    """

    moves: int = 0
    steals: int = 0
    evacuations: int = 0
    forced_moves: int = 0
    refused_swap: int = 0
    refused_uneven: int = 0


class Placer:
    """The placement decisions of one actor system (its worker loops only).

    Example:
        ```python
        placer = Placer(workers, cells)  # made by ActorSystem; cells() lists its actors
        placer.started()                  # once the worker loops run
        ```
    """

    def __init__(self, workers: Sequence[WorkerHome], cells: Callable[[], list[Cell]]) -> None:
        self._homes = tuple(workers)
        self._by_thread: dict[int, WorkerHome] = {}  # filled by `started`
        self._lock = threading.Lock()
        self._reverse: dict[tuple[int, int], float] = {}  # (from, to) -> time of last move
        # Actors per worker loop (by id of its Home), counted by walking the tree at most
        # once a window, and only while moves are being decided: spawning and ending
        # actors pay nothing for it. Moves made since the count adjust it.
        self._cells = cells
        self._population: dict[int, int] = {}
        self._counted_at = -1e9
        self._workers = {id(home) for home in workers}
        self._moves = self._steals = self._forced = self._refused_swap = self._refused_uneven = 0
        self._evacuations = 0
        # Work stealing: each worker thread's CPU clock at the last reading, and which
        # loops were idle between the last two readings.
        self._cpu: dict[int, float] = {}
        self._sampled_at = -1e9
        self._idle: tuple[WorkerHome, ...] = ()
        # Stealing and co-location pull against each other for an actor that talks to the
        # loop it was stolen from: each pull-back doubles the gap between steals (up to
        # STEAL_BACKOFF_MAX), and a quiet STEAL_BACKOFF_MAX halves it again.
        self._steal_gap = 0.0
        self._last_steal = -1e9
        self._last_pull_back = -1e9

    def started(self) -> None:
        """The worker loops run: learn their threads (before any actor can be woken)."""
        self._by_thread = {home.thread_id: home for home in self._homes}

    def worker(self, index: int) -> WorkerHome:
        """Worker loop ``index``."""
        return self._homes[index]

    def worker_of_current_thread(self) -> WorkerHome | None:
        """The worker loop running in this thread, or None (the host, a plain thread)."""
        return self._by_thread.get(threading.get_ident())

    # -- counting, in the producer's thread ------------------------------------------------

    def note_wake(self, cell: Cell) -> None:
        """A producer on another loop has just woken ``cell`` (its cross-thread branch)."""
        source = self._by_thread.get(threading.get_ident())
        if source is None:
            return  # the host or a plain thread: not a loop an actor could move to
        traffic = traffic_of(cell)
        if traffic is None:
            return
        # Boyer-Moore majority vote: the loop that woke this actor most in the window.
        if traffic.candidate is source:
            traffic.votes += 1
            traffic.wakes += 1
        elif traffic.votes:
            traffic.votes -= 1
        else:
            traffic.candidate = source
            traffic.votes = traffic.wakes = 1

    # -- deciding, on the actor's home thread between two messages ------------------------

    def decide(self, cell: Cell, traffic: Traffic) -> Home | None:
        """Where ``cell`` should move now, or None. Home thread, between two messages.

        Cheap when there is nothing to decide (the common case for an actor whose partners
        already share its loop): two attribute reads.
        """
        forced = traffic.forced
        if forced is not None:
            traffic.forced = None
            return forced if forced is not cell.home and cell.movable() else None
        target = traffic.candidate
        if target is None:
            return None
        now = time.monotonic()
        if traffic.wakes < MIN_WAKES:
            if now - traffic.since > WINDOW:
                traffic.restart(now)  # too little in a whole window
            return None
        expired = now - traffic.since > WINDOW
        # Each burst of work starts with a wake-up; wake-ups from the target started at
        # least half of them (a stream of many messages per wake-up counts as it should).
        enough = traffic.wakes * 2 >= traffic.bursts
        traffic.restart(now)  # decided (or expired): a new window either way
        if expired or not enough or target is cell.home or now < traffic.settled_until:
            return None
        if not cell.movable():
            return None
        with self._lock:
            if now - self._reverse.get((id(target), id(cell.home)), -1e9) < WINDOW:
                self._refused_swap += 1
                return None
            if not self._room_on(target):
                self._refused_uneven += 1
                return None
        return target

    def moved(self, cell: Cell, source: Home, target: Home, *, forced: bool) -> None:
        """``cell`` has taken its token for a move from ``source`` to ``target``."""
        traffic = cell.traffic
        now = time.monotonic()
        if isinstance(traffic, Traffic):
            traffic.settled_until = now + COOLDOWN
            traffic.restart(now)
        stolen = isinstance(traffic, Traffic) and traffic.steal
        pulled_back = (
            not forced and isinstance(traffic, Traffic) and now - traffic.stolen_at < 2 * COOLDOWN
        )
        if isinstance(traffic, Traffic):
            traffic.steal = False
            if stolen:
                traffic.stolen_at = now
        with self._lock:
            if pulled_back:
                self._steal_gap = min(STEAL_BACKOFF_MAX, max(4 * SAMPLE, 2 * self._steal_gap))
                self._last_pull_back = now
            if stolen:
                self._steals += 1
                self._last_steal = now
            elif forced:
                self._forced += 1
            else:
                self._moves += 1
            self._reverse[(id(source), id(target))] = now
            population = self._population
            population[id(source)] = population.get(id(source), 0) - 1
            population[id(target)] = population.get(id(target), 0) + 1

    def _census(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for cell in self._cells():
            key = id(cell.home)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _room_on(self, target: Home) -> bool:
        now = time.monotonic()
        if now - self._counted_at > WINDOW:
            self._population = self._census()
            self._counted_at = now
        population = self._population
        total = sum(population.get(key, 0) for key in self._workers)
        average = total / max(1, len(self._workers))
        return population.get(id(target), 0) + 1 <= max(2 * average, average + SLACK)

    # -- evacuation ---------------------------------------------------------------------------

    def evacuate(self, cell: Cell) -> WorkerHome | None:
        """A sender holding ``cell``'s token found its loop blocked: move it now, or None.

        The new loop is the sender's own when it is a worker (the pair then shares a loop),
        else a refuge (`_refuge`). Only an idle actor moves (see `Cell.evacuate_to`); one in
        the middle of a burst waits for its loop.
        """
        sender = self._by_thread.get(threading.get_ident())
        target = sender if sender is not None and not sender.blocked else None
        if target is None:
            target = self._refuge()
        if target is None or target is cell.home or not cell.evacuate_to(target):
            return None
        with self._lock:
            self._evacuations += 1
        return target

    def evacuate_blocked(self, blocked: WorkerHome) -> None:
        """The watchdog found ``blocked`` held by a handler: move its actors whose wake-up
        is stuck behind that handler (woken, not started yet) to a free loop. Watchdog thread.

        Actors woken later are moved by their senders (`evacuate`); idle ones stay.
        """
        target = self._refuge()
        if target is None:
            return
        moved = 0
        for cell in self._cells():
            if cell.home is not blocked or isinstance(cell.traffic, Pinned):
                continue
            if cell.evacuate_to(target, stuck_only=True):
                with contextlib.suppress(RuntimeError):
                    target.loop.call_soon_threadsafe(cell.posted_start)
                moved += 1
        if moved:
            with self._lock:
                self._evacuations += moved

    def _refuge(self) -> WorkerHome | None:
        """Where evacuees go: an idle worker loop if there is one, else the one with the
        fewest actors (as last counted), never a blocked one; None if all are."""
        free = [home for home in self._homes if not home.blocked]
        if not free:
            return None
        idle = [home for home in self._idle_workers() if not home.blocked]
        if idle:
            return idle[0]
        population = self._population
        return min(free, key=lambda home: population.get(id(home), 0))

    # -- work stealing ------------------------------------------------------------------------

    def offer(self, cell: Cell) -> None:
        """``cell`` just had a slow fairness turn: let an idle loop take it.

        Called on the actor's home thread after its fairness turn, only when that turn
        took more than `CONTENDED` (other actors of its loop had work: a backlog). If a
        worker loop has been idle meanwhile, the actor moves there at its next message
        boundary: actors are stolen whole, never single messages (tokio's and Rayon's
        schedulers steal tasks the same way).
        """
        now = time.monotonic()
        with self._lock:
            if now - self._last_pull_back > STEAL_BACKOFF_MAX:
                self._steal_gap /= 2
                self._last_pull_back = now
            if now - self._last_steal < self._steal_gap:
                return
        idle = self._idle_workers()
        home = cell.home
        target = next((worker for worker in idle if worker is not home), None)
        if target is None:
            return
        traffic = traffic_of(cell)
        if traffic is None:
            return
        if traffic.forced is None:
            traffic.forced = target
            traffic.steal = True
            with self._lock:  # no other actor is sent to the same idle loop this round
                self._idle = tuple(worker for worker in self._idle if worker is not target)

    def _idle_workers(self) -> tuple[WorkerHome, ...]:
        now = time.monotonic()
        with self._lock:
            elapsed = now - self._sampled_at
            if elapsed < SAMPLE:
                return self._idle
            idle: list[WorkerHome] = []
            for home in self._homes:
                used = thread_cpu_seconds(home.thread_id)
                if used is None:
                    continue
                before = self._cpu.get(home.thread_id)
                self._cpu[home.thread_id] = used
                if before is not None and (used - before) < IDLE_SHARE * elapsed:
                    idle.append(home)
            self._sampled_at = now
            self._idle = tuple(idle)
            return self._idle

    def statistics(self) -> PlacementStatistics:
        with self._lock:
            return PlacementStatistics(
                moves=self._moves,
                steals=self._steals,
                evacuations=self._evacuations,
                forced_moves=self._forced,
                refused_swap=self._refused_swap,
                refused_uneven=self._refused_uneven,
            )
