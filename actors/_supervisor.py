"""What a parent does for its children: stop them, suspend them, restart them, give up.

The decisions only: who the children are, and who watches whom, is the system's `Tree`
(`actors._tree`); each child's own transitions are `Cell` verbs.

Every function here runs on the parent's home loop, inside the parent's run task (a control
signal between two of its messages) or while the parent's instance ends. The children live
on any loop: each request goes to the child's own thread (`Cell.request_*`), and the parent
awaits a oneshot. Decisions follow OTP's ``supervisor``; see ``_strategy.py`` for the
strategies and docs/supervision.md for the rules as users see them.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Final

from ._checkpoint import checkpoint
from ._control import ChildExit, RestartDue
from ._errors import SupervisionError
from ._mailbox import Signal
from ._oneshot import Expired, Latch, oneshot
from ._strategy import OneForOne, Restart, RestartWindow, SupervisionStrategy

if TYPE_CHECKING:
    from ._cell import Cell

__all__ = (
    "KILL_GRACE",
    "on_child_exit",
    "restart_group",
    "stop_child",
    "stop_children",
)

logger = logging.getLogger("actors")

KILL_GRACE: Final = 1.0
"""Seconds a killed actor gets to unwind (run ``on_stop``) before it is abandoned."""

_DEFAULT_STRATEGY: Final = OneForOne()
_STOPS_PER_YIELD: Final = 128  # idle children stopped in a row before the parent yields


async def stop_children(parent: Cell, *, kill: bool) -> None:
    """Stop every child for good, in reverse start order; each gets the drain timeout.

    ``kill``: the parent itself is being killed; its children are killed at once too.
    """
    if not parent.children:
        # No children, and none can come: the caller has refused children
        # (`Tree.refuse_children`), so every child ever added is visible here.
        return
    system = parent.system
    for count, child in enumerate(reversed(system.tree.children_of(parent)), 1):
        try:
            await stop_child(child, 0.0 if kill else system.drain_timeout)
        except Exception:
            # A bug here must cost one child its drain, not leave the parent (and a
            # shutdown waiting for it) hanging: log it and kill the child.
            logger.exception(
                "actor %s: stopping its child %s failed; killing it",
                parent.path,
                child.path,
                extra=child.log_fields(),
            )
            child.kill()
        if not count % _STOPS_PER_YIELD:
            await checkpoint()  # idle children stop without a pause: let the loop breathe


async def stop_child(child: Cell, timeout: float) -> None:
    """Stop ``child`` for good; cancel it after ``timeout``; abandon it if it ignores that."""
    if child.stop_if_idle():
        return  # an idle child of this thread: ended here and now, nothing to drain
    child.stop_for_good()
    try:
        await child.terminated.wait(timeout)
        return
    except Expired:
        if timeout:
            logger.warning(
                "actor %s did not stop within its drain timeout (%s s); cancelling it",
                child.path,
                timeout,
                extra=child.log_fields(),
            )
    child.kill()
    try:
        await child.terminated.wait(KILL_GRACE)
    except Expired:
        logger.error(
            "actor %s is still in a handler %s s after it was cancelled (it ignored "
            "cancellation, or its handler does not yield); abandoning it",
            child.path,
            KILL_GRACE,
            extra=child.log_fields(),
        )


async def suspend_child(child: Cell, timeout: float) -> None:
    """End a running sibling's instance for a group restart, keeping its mailbox.

    Waits for the suspension twice (the drain timeout, then the kill's grace), hence a
    latch: the restart that follows must find the sibling suspended, or it refuses it.
    """
    done = Latch()
    child.request_suspend(done)
    try:
        await done.wait(timeout)
        return
    except Expired:
        logger.warning(
            "actor %s did not stop for its restart within %s s; cancelling it",
            child.path,
            timeout,
            extra=child.log_fields(),
        )
    child.kill()
    try:
        await done.wait(KILL_GRACE)
    except Expired:
        # It cannot be restarted while its handler runs, and a suspended actor nobody
        # restarts would accept messages it never handles: it ends for good instead, when
        # the handler returns (watchers get Terminated).
        logger.error(
            "actor %s is still in a handler %s s after it was cancelled; it is stopped for "
            "good instead of restarted",
            child.path,
            KILL_GRACE,
            extra=child.log_fields(),
        )
        child.stop_for_good()


def strategy_of(parent: Cell) -> SupervisionStrategy:
    strategy = getattr(parent.instance, "supervision", _DEFAULT_STRATEGY)
    if not isinstance(strategy, SupervisionStrategy):
        raise TypeError(
            f"actor {parent.path}: `supervision` must be OneForOne, OneForAll or RestForOne, "
            f"got {strategy!r}"
        )
    return strategy


async def on_child_exit(
    parent: Cell, child: Cell, incarnation: int, reason: BaseException | None
) -> bool:
    """A child ended and wants a restart. Returns False when the parent itself gave up."""
    system = parent.system
    if child.incarnation != incarnation or child.terminated.is_set:
        return True  # stale: restarted or stopped since this event was sent
    if not system.tree.has_child(parent, child):
        return True
    if parent.mailbox.closed:
        # The parent is ending (a stop, or its own restart): its end stops every child, so
        # a restart now would only run the child's start-up hooks for nothing. The child
        # stays suspended until then, and ends with its failure. A stale False (the flag is
        # written under the mailbox's lock by the stopping thread) restarts it as before.
        return True
    strategy = strategy_of(parent)
    seldom = parent.seldom_fields()
    window = seldom.restarts
    if window is None:
        window = seldom.restarts = RestartWindow()
    if not window.admit(strategy, system.clock.now()):
        return await _give_up(parent, child, reason, strategy)
    logger.info(
        "actor %s restarts %s after %r",
        parent.path,
        child.path,
        reason,
        extra=child.log_fields(),
    )
    group = strategy.group(system.tree.children_of(parent), child)
    for sibling in reversed(group):
        if sibling is child:
            continue
        if sibling.restart is Restart.TEMPORARY:
            await stop_child(sibling, system.drain_timeout)  # never restarted, as in OTP
        else:
            await suspend_child(sibling, system.drain_timeout)
    group = [c for c in group if c is child or c.restart is not Restart.TEMPORARY]
    backoff = strategy.backoff
    delay = backoff.delay(len(window) - 1) if backoff is not None else 0.0
    if delay > 0:
        # The parent keeps working meanwhile; the group waits suspended, messages queued.
        clock = system.clock
        due = Signal(RestartDue(group, reason))
        seldom.restart_timer = clock.call_at(
            parent.home.loop, clock.now() + delay, functools.partial(parent.deliver, due)
        )
        return True
    return await restart_group(parent, group, reason)


async def restart_group(parent: Cell, group: list[Cell], reason: BaseException | None) -> bool:
    """Restart ``group`` in start order. A restart that fails counts as a new failure."""
    system = parent.system
    for child in group:
        if child.terminated.is_set or not system.tree.has_child(parent, child):
            continue
        done = oneshot()
        child.request_restart(reason, done)
        try:
            await done.wait()
        except Exception as failure:
            logger.error(
                "actor %s failed to restart",
                child.path,
                exc_info=failure,
                extra=child.log_fields(),
            )
            parent.deliver(Signal(ChildExit(child, child.incarnation, failure)))
    return True


async def _give_up(
    parent: Cell, child: Cell, reason: BaseException | None, strategy: SupervisionStrategy
) -> bool:
    error = SupervisionError(
        f"actor {parent.path} gave up: restarting {child.path} would make more than "
        f"{strategy.max_restarts} restart(s) within {strategy.within} s; "
        f"last failure: {reason!r}"
    )
    error.__cause__ = reason
    system = parent.system
    if parent is system.guardian:
        # The root never fails: the top-level actor stays stopped and the system records it.
        logger.error("%s", error, exc_info=error, extra=child.log_fields())
        await stop_child(child, system.drain_timeout)
        system.record_failure(error)
        return True
    await parent.fail(error)  # no message: a supervisor giving up
    return False
