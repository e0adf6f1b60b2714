"""Blocked-loop detection: a thread that notices when a worker loop stops turning.

One handler that blocks (CPU work, ``time.sleep``, a synchronous HTTP call) stalls every
actor on its loop: the commonest footgun of async actors. The watchdog thread posts a probe
to each busy worker loop every half `EVACUATE_AFTER` (every half ``threshold`` when there is
no other loop to move actors to). A probe that has not run `EVACUATE_AFTER` seconds after it
was posted means the loop is stuck inside one step: the loop is marked blocked and the
actors whose run waits behind that step are moved to another loop (``on_blocked``; see
_placement.py), long before anyone would call the handler slow. At ``threshold`` the
watchdog names the task running there (run tasks are named after their actor's path), or the
actor whose drain runs there (a synchronous handler's run, `Cell._drain`), and the
type of the message the actor was handling, and logs a warning; when the loop turns again it
logs how long the stall lasted.

Probes cost one ``call_soon_threadsafe`` per busy loop per interval and nothing on the
message hot path but one attribute store (`Cell.handling`). A loop that is not inside a task
when the watchdog looks (it reads the loop's current task, without waking it) is not probed:
no handler can be blocking it, and an idle loop stays asleep in its selector instead of being
woken two hundred times a second. A handler that starts blocking just after such a look is
seen at the next one, so detection takes at most the limit plus one interval.

A loop starved of the GIL by other busy threads looks stalled too. Two rules keep that from
raising false alarms: only a stall inside an actor's task is reported (a loop waiting
between callbacks is not a handler blocking it), and a round in which the watchdog itself
woke late (the GIL is saturated) measures afresh. Time spent in garbage collection (which
stops every thread) is subtracted from a stall rather than restarting the measurement: a
busy process collects young objects many times a second, and restarting at each one hid
every block.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._runtime import WorkerHome

__all__ = ("DEFAULT_BLOCKED_THRESHOLD", "EVACUATE_AFTER", "Watchdog")

logger = logging.getLogger("actors")

DEFAULT_BLOCKED_THRESHOLD: Final = 0.1
"""Seconds a worker loop may spend in one step (a handler not yielding) before a warning."""

EVACUATE_AFTER: Final = 0.01
"""Seconds one step may hold a worker loop before the actors waiting behind it move away.

Far below the warning threshold: moving an actor whose run waits behind the step costs
little, and every millisecond it waits is latency (Go's scheduler preempts a goroutine
after the same 10 ms). With four loops busy on two cores, a loop waiting that long for the
GIL in the middle of a step is taken for blocked too: its waiting actors move, which is
counted and harmless (they did wait that long; measured in docs/benchmarks.md).
"""

_STARVED: Final = 0.02
"""Seconds the watchdog may wake late before its round is taken for GIL saturation."""


class _GcClock:
    """Seconds spent in garbage collection so far (gc.callbacks), shared by all watchdogs.

    A full collection stops every thread for as long as it takes (100 ms and more with many
    live objects); a stall that overlaps one is not blamed on the handler that happened to
    be running.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._total = 0.0
        self._started: float | None = None

    def attach(self) -> None:
        with self._lock:
            self._users += 1
            if self._users == 1:
                gc.callbacks.append(self._on_gc)

    def detach(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # Runs in whichever thread collects, with every other thread stopped.
        if phase == "start":
            self._started = time.monotonic()
        elif self._started is not None:
            self._total += time.monotonic() - self._started
            self._started = None

    def total(self) -> float:
        return self._total

    @property
    def collecting(self) -> bool:
        """Whether a collection is running right now."""
        return self._started is not None


_GC_CLOCK: Final = _GcClock()


class _Probe:
    """One loop's probe. ``pending`` is handed back and forth: the watchdog sets it before
    posting, the loop clears it when the probe runs; neither writes while the other may."""

    __slots__ = (
        "culprit",
        "fields",
        "gc_at_post",
        "home",
        "pending",
        "posted_at",
        "ran_at",
        "reported",
    )

    def __init__(self, home: WorkerHome) -> None:
        self.home = home
        self.pending = False
        self.posted_at = 0.0
        self.gc_at_post = 0.0  # the GC clock's total when the probe was posted
        self.ran_at = 0.0
        self.culprit: str | None = None  # set while a stall lasts (actors were moved away)
        self.fields: dict[str, object] = {}  # the culprit's log fields (`Cell.log_fields`)
        self.reported = False  # the stall lasted the threshold: a warning was logged

    def run(self) -> None:
        self.ran_at = ran_at = time.monotonic()
        # The probe doubles as the loop's scheduling-lag gauge (system.metrics()).
        home = self.home
        home.blocked = False  # it turns again: senders stop moving its actors away
        home.lag = lag = ran_at - self.posted_at
        if lag > home.max_lag:
            home.max_lag = lag
        self.pending = False


class Watchdog:
    """Watches the worker loops of one system from a daemon thread."""

    def __init__(
        self,
        homes: Sequence[WorkerHome],
        threshold: float,
        describe: Callable[[str], str | None],
        thread_name: str,
        on_blocked: Callable[[WorkerHome], object] | None = None,
        fields: Callable[[str], dict[str, object]] | None = None,
    ) -> None:
        self._homes = homes
        self._on_blocked = on_blocked  # moves the actors stuck behind the handler elsewhere
        self._threshold = threshold
        # With somewhere to move them, the actors waiting behind a step are moved long before
        # the step is reported: the watchdog looks every half of that shorter time.
        self._evacuate_after = (
            min(threshold, EVACUATE_AFTER)
            if on_blocked is not None and len(homes) > 1
            else threshold
        )
        # A stall is measured at the rounds after its probe was posted, a whole number of
        # intervals give or take the thread's wake-up jitter: one that falls short of a
        # limit by less than a tenth of an interval has reached it (else detection would
        # take a whole round more, as often as not).
        self._slack = self._evacuate_after / 20
        self._describe = describe  # task name -> "actor X handling Y", or None
        self._fields = fields  # task name -> the structured fields of its log records
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=thread_name, daemon=True)

    def start(self) -> None:
        _GC_CLOCK.attach()
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the thread (it wakes at once, so this returns quickly)."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()
            _GC_CLOCK.detach()

    def _main(self) -> None:
        probes = [_Probe(home) for home in self._homes]
        interval = self._evacuate_after / 2
        late = max(interval, _STARVED)
        woke = time.monotonic()
        while not self._stop.wait(interval):
            now = time.monotonic()
            # Woken much later than asked: the GIL is saturated (this thread was starved
            # too), so a loop that looks stalled may only be waiting for the GIL. Take new
            # probes instead of blaming whoever was running.
            starved = now - woke > interval + late
            woke = now
            for home, probe in zip(self._homes, probes, strict=True):
                self._check(home, probe, now, starved)

    def _check(self, home: WorkerHome, probe: _Probe, now: float, starved: bool) -> None:
        if probe.pending:
            if starved:
                # Not a handler's doing: the GIL is saturated. Measure again from here.
                probe.posted_at = now
                probe.gc_at_post = _GC_CLOCK.total()
                return
            if _GC_CLOCK.collecting:
                return  # every thread is stopped right now: look again next round
            # Time the garbage collector stopped every thread is not the handler's: it is
            # subtracted. (Measuring afresh after any collection, as this once did, never
            # saw a block: a busy process collects its young objects many times a second.)
            stalled = now - probe.posted_at - (_GC_CLOCK.total() - probe.gc_at_post)
            stalled += self._slack
            if stalled >= self._evacuate_after and probe.culprit is None:
                name = _running_name(home)
                culprit = None if name is None else self._describe(name)
                if name is None or culprit is None:
                    return  # not inside an actor's handler: not ours to report
                probe.culprit = culprit
                probe.fields = {} if self._fields is None else self._fields(name)
                home.blocked = True  # senders now move idle actors away (see Cell._wake)
                if self._on_blocked is not None:
                    self._on_blocked(home)
            if stalled >= self._threshold and probe.culprit is not None and not probe.reported:
                probe.reported = True
                logger.warning(
                    "worker loop %s has been blocked for %.3f s by %s; every actor on that "
                    "loop is waiting. Move blocking calls and CPU-heavy work out of handlers "
                    "(await self.run_blocking(fn, ...)).",
                    home.label,
                    stalled - self._slack,
                    probe.culprit,
                    extra=probe.fields,
                )
            return
        if probe.culprit is not None:
            if probe.reported:
                logger.warning(
                    "worker loop %s was blocked for %.3f s by %s",
                    home.label,
                    probe.ran_at - probe.posted_at,
                    probe.culprit,
                    extra=probe.fields,
                )
            probe.culprit = None
            probe.reported = False
        if _running_name(home) is None:
            # Nothing to time: no handler runs there. Idle loops are not woken (they would
            # be, twenty times a second, by probes). Nothing waits on it either: no lag.
            home.lag = 0.0
            return
        probe.pending = True
        probe.posted_at = now
        probe.gc_at_post = _GC_CLOCK.total()
        with contextlib.suppress(RuntimeError):  # the loop is closing: nothing to watch
            home.loop.call_soon_threadsafe(probe.run)


def _running_name(home: WorkerHome) -> str | None:
    """The name of the task whose step the loop is running now, or the path of the actor
    whose drain it runs (`Cell._drain`: a synchronous handler's run, a loop callback);
    None when idle or in another callback.

    Read from the watchdog's thread: the current-task registry is a dict keyed by loop,
    written by the loop's thread when a step starts and ends, and ``home.draining`` is
    written by that thread around each drain; a stale answer only moves a probe or a
    report to the next round.
    """
    try:
        task = asyncio.current_task(home.loop)
    except RuntimeError:  # the loop is closed
        return None
    if task is not None:
        return task.get_name()
    draining = home.draining
    return draining.path if draining is not None else None
