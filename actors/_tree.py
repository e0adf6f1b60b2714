"""The supervision tree of one system: registration, children, watchers, and a cell's end.

One `Tree` per `ActorSystem` (``system.tree``). It decides who is whose child and who
watches whom, and does the tree's share of ending a cell (`unregister`: out of its parent's
children, its watchers closed and returned); what to *do* about a child (stop, restart, give
up) is decided in `_supervisor`, and the cell's own life (phase, outcome, exit reason,
task, instance) is written only by the cell (`_cell`). The tree keeps no index of its own:
its links are slots of the cells (``children``, ``exiting``, ``watchers``, ``watching``,
``parent``), so an idle actor without children or watchers carries three Nones and a flag,
and a path is found by walking down from the root (a path has few levels).

Invariants:

- ``lock`` guards every cell's ``children``, ``exiting`` and ``watchers``, and the tree's
  ``root``, ``closed`` and serial. Every actor's life takes it in `register` and at its
  end, in `end_childless` (the common end, in place) or `refuse_children` and then
  `unregister`: there with ``acquire()`` and ``try``/``finally``, not ``with``, which costs
  more (see `_mailbox`). It is never held across an await or a call into user
  code, and no other lock is taken while it is held. The system guards its own few fields
  (its run state, failures, round-robin counter) with it too: a top-level registration must
  see the run state (``closed``) in the same critical section as the parent's, and the rest
  is too rare to deserve a lock of its own.
- Which thread writes what. ``children``: `register` on the spawner's thread (any thread),
  `unregister` on the ended child's home thread. ``exiting``: the cell's home thread
  (`refuse_children` as its instance ends, `accept_children` as it reboots). ``watchers``
  of a target: the watcher's home thread (`watch`, `unwatch`), and the target's at its end
  (`unregister`, `close_watchers_locked`). ``watching``: the watcher's home thread only, no
  lock (`watch`, `unwatch`, `forget_watched`). ``parent``: set at construction, never
  written again. ``root`` and ``closed``: the system's thread, at start and shutdown.
- Once a cell's ``exiting`` is set, no child is registered under it until `accept_children`
  (checked under the lock, in `register`): its home thread may then read its ``children``
  without the lock and trust that an empty map stays empty (`stop_children`).
- Once a cell has ended, its ``watchers`` is a shared empty marker and never filled again:
  a later `watch` finds it and is answered at once, as Akka and OTP do for a dead target.
- ``children`` is in start order (a dict keeps insertion order), which stops run in
  reverse; ``watchers`` is in watch order, which ``Terminated`` follows.
"""

from __future__ import annotations

import itertools
import threading
from typing import TYPE_CHECKING, Any, Final

from ._control import WatchedEnded
from ._errors import ActorStopped, DuplicateName, SystemNotRunning
from ._mailbox import Signal

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._actor import Actor
    from ._cell import Cell
    from ._runtime import Home
    from ._strategy import Restart

__all__ = ("Tree",)

# The ``watchers`` of a cell that has ended (shared, never filled): see the invariants.
_NO_WATCHERS: Final[dict[Cell, None]] = {}


class Tree:
    """The supervision tree of one system: who is whose child, who watches whom.

    Every method takes the lock itself, except those named ``_locked``, which expect it held.
    """

    __slots__ = ("_serial", "closed", "lock", "root")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.root: Cell | None = None
        """The root guardian (``/user``), parent of the top-level actors; None before start."""
        self.closed: str | None = "the actor system has not started; cannot spawn"
        """None while top-level actors may be registered; else why not (the message of the
        `SystemNotRunning` that `register` raises). Written by the system, under the lock."""
        self._serial = itertools.count(1)

    def __repr__(self) -> str:
        root = self.root
        return f"<Tree root={root.path if root is not None else None} closed={self.closed!r}>"

    def plant(self, root: Cell) -> None:
        """Make ``root`` the root of the tree (the system's start)."""
        with self.lock:
            self.root = root

    def next_serial(self) -> int:
        """The next number for a generated name (actors, pools, probes)."""
        with self.lock:  # itertools.count is not atomic on free-threaded builds
            return next(self._serial)

    # -- registration ------------------------------------------------------------------------

    def register(
        self,
        parent: Cell,
        factory: Callable[[], Actor[Any]],
        name: str | None,
        home: Home,
        capacity: int,
        restart: Restart,
        pinned: bool = False,
    ) -> Cell:
        """A new cell under ``parent``, named ``name`` (default ``<Class>-<n>``): one lock.

        Raises:
            SystemNotRunning: ``parent`` is the root and the system no longer runs.
            ActorStopped: ``parent`` is ending (its instance is stopping) or has ended.
            DuplicateName: ``parent`` has a live child of that name.
        """
        system = parent.system
        lock = self.lock
        lock.acquire()
        try:
            if parent is self.root and self.closed is not None:
                raise SystemNotRunning(self.closed)
            # Ended: ``outcome`` is set before the `terminated` latch (`Cell._conclude`,
            # `finish_proxy`), and read without the latch's property call.
            if parent.exiting or parent.outcome is not None:
                raise ActorStopped(f"actor {parent.path} is stopping; it cannot spawn children")
            if name is None:
                base = factory.__name__ if isinstance(factory, type) else "actor"
                name = f"{base}-{next(self._serial)}"
            siblings = parent.children
            if siblings is None:
                siblings = parent.children = {}
            if name in siblings:
                raise DuplicateName(
                    f"an actor named {name!r} already exists under {parent.path} "
                    f"in actor system {system.name}"
                )
            # Positionally: keywords cost a spawn about 2% more (matched by name, per call).
            cell = system.cell_type(
                system,
                factory,
                name,
                None,  # its path, made on first read (`Cell.path`)
                home,
                capacity,
                system.throughput,
                parent,
                restart,
                pinned,
            )
            siblings[name] = cell
            return cell
        finally:
            lock.release()

    def unregister(self, cell: Cell) -> list[Cell]:
        """``cell`` has ended for good: out of its parent's children; its watchers, in watch
        order, to be told (none can be added from now on)."""
        lock = self.lock
        lock.acquire()
        try:
            parent = cell.parent
            if parent is not None and parent.children and parent.children.get(cell.name) is cell:
                del parent.children[cell.name]
            return self.close_watchers_locked(cell)
        finally:
            lock.release()

    def end_childless(self, cell: Cell) -> Sequence[Cell] | None:
        """`refuse_children`, then `unregister` if ``cell`` has no child, in one critical
        section: for a cell ending for good in place (`Cell._exit`), one lock round less.

        Returns its watchers to tell, as `unregister` does (a shared empty tuple for none:
        a list less per life); or None, and ``cell`` still registered (children refused
        from now on), if it has a child, which must end first.
        """
        lock = self.lock
        lock.acquire()
        try:
            cell.exiting = True
            if cell.children:
                return None
            parent = cell.parent
            if parent is not None:
                siblings = parent.children
                if siblings and siblings.get(cell.name) is cell:
                    del siblings[cell.name]
            watchers = cell.watchers
            cell.watchers = _NO_WATCHERS
        finally:
            lock.release()
        return list(watchers) if watchers else ()

    def refuse_children(self, cell: Cell) -> None:
        """On ``cell``'s home thread, as its instance ends: no child is registered under it
        from now on (`register` raises `ActorStopped`)."""
        lock = self.lock
        lock.acquire()
        try:
            cell.exiting = True
        finally:
            lock.release()

    def refuse_children_if_none(self, cell: Cell) -> bool:
        """`refuse_children`, only if ``cell`` has no child: False (and nothing refused) if it
        has one. One critical section, so that no child registered from another thread (a
        scope's host task) can slip in between the look and the refusal and be left behind.
        """
        with self.lock:
            if cell.children:
                return False
            cell.exiting = True
            return True

    def accept_children(self, cell: Cell) -> None:
        """On ``cell``'s home thread, as it reboots: a new instance may spawn children again."""
        with self.lock:
            cell.exiting = False

    # -- reading -----------------------------------------------------------------------------

    def children_of(self, cell: Cell) -> list[Cell]:
        """A snapshot of ``cell``'s live children, in start order."""
        with self.lock:
            return list(cell.children.values()) if cell.children else []

    def has_child(self, parent: Cell, child: Cell) -> bool:
        """Whether ``child`` is a live child of ``parent`` (not unregistered yet)."""
        with self.lock:
            children = parent.children
            return children is not None and children.get(child.name) is child

    def cells(self) -> list[Cell]:
        """Every live cell, the root first, breadth first (a walk of the tree)."""
        with self.lock:
            root = self.root
            if root is None:
                return []
            found = [root]
            for cell in found:  # grows while iterated: breadth first
                if cell.children:
                    found.extend(cell.children.values())
            return found

    def find(self, path: str) -> Cell | None:
        """The live cell at ``path`` (such as ``/user/bank/account-7``), or None."""
        with self.lock:
            cell = self.root
            if cell is None or path == cell.path:
                return cell
            prefix = cell.path + "/"
            if not path.startswith(prefix):
                return None
            for name in path[len(prefix) :].split("/"):
                children = cell.children
                found = children.get(name) if children else None
                if found is None:
                    return None
                cell = found
            return cell

    # -- watching ----------------------------------------------------------------------------

    def watch(self, watcher: Cell, target: Cell) -> None:
        """On ``watcher``'s home thread: tell it when ``target`` ends (a `WatchedEnded`).

        A target that has already ended is reported at once, as Akka and OTP do.

        Raises:
            ValueError: ``watcher`` is ``target``.
        """
        if target is watcher:
            raise ValueError(f"actor {watcher.path} cannot watch itself")
        if watcher.watching is None:
            watcher.watching = set()
        watcher.watching.add(target)
        with self.lock:
            watchers = target.watchers
            if watchers is not _NO_WATCHERS:
                if watchers is None:
                    watchers = target.watchers = {}
                watchers[watcher] = None
                return
        watcher.deliver(Signal(WatchedEnded(target, target.exit_reason)))

    def unwatch(self, watcher: Cell, target: Cell) -> None:
        """On ``watcher``'s home thread: no `WatchedEnded` about ``target`` from now on, not
        even one already queued (`forget_watched` drops it)."""
        if watcher.watching is not None:
            watcher.watching.discard(target)
        with self.lock:
            watchers = target.watchers
            if watchers is not None and watchers is not _NO_WATCHERS:
                watchers.pop(watcher, None)

    @staticmethod
    def forget_watched(watcher: Cell, target: Cell) -> bool:
        """On ``watcher``'s home thread, as a `WatchedEnded` arrives: True once if ``target``
        is still watched (and is no more); False after an `unwatch`."""
        watching = watcher.watching
        if watching is None or target not in watching:
            return False
        watching.discard(target)
        return True

    @staticmethod
    def close_watchers_locked(cell: Cell) -> list[Cell]:
        """With the lock held: ``cell``'s watchers, in watch order, and none from now on."""
        watchers = cell.watchers
        cell.watchers = _NO_WATCHERS
        return list(watchers) if watchers else []
