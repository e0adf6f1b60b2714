"""`Tree`: registration, children, watchers and a cell's end, as a part of its own.

Most tests build a `Tree` and cells by hand, with no loop running: a cell made here holds its
mailbox's consumer token from birth, so a signal delivered to it (a `WatchedEnded`) waits in
its control lane, where the test reads it.
"""

from __future__ import annotations

import threading

import anyio
import pytest
from _support import WAIT

from actors import (
    Actor,
    ActorStopped,
    ActorSystem,
    DuplicateName,
    SystemNotRunning,
    Terminated,
)
from actors._cell import Cell
from actors._control import WatchedEnded
from actors._ref import cell_of
from actors._runtime import Home
from actors._strategy import Restart
from actors._tree import Tree
from actors.testing import Probe


class Leaf(Actor[int]):
    async def receive(self, message: int) -> None:
        pass


@pytest.fixture
def system() -> ActorSystem:
    # Never started: no thread, no loop. It only lends the cells its settings.
    return ActorSystem(workers=1, blocked_threshold=None, name="tree-test")


@pytest.fixture
def tree(system: ActorSystem) -> Tree:
    tree = Tree()
    root = Cell(system, Leaf, name="user", path="/user", home=Home(), capacity=1, throughput=1)
    tree.plant(root)
    tree.closed = None  # as the system does once it runs
    return tree


def root_of(tree: Tree) -> Cell:
    root = tree.root
    assert root is not None
    return root


def add(tree: Tree, parent: Cell, name: str | None = None) -> Cell:
    return tree.register(parent, Leaf, name, Home(), 8, Restart.PERMANENT)


def watch_events(watcher: Cell) -> list[tuple[Cell, BaseException | None]]:
    """The `WatchedEnded` signals waiting in ``watcher``'s control lane, in order."""
    control = watcher.mailbox.consumer_view()[1]
    return [
        (record.watched, record.reason)
        for record in (signal.record for signal in control)
        if isinstance(record, WatchedEnded)
    ]


def test_register_names_and_places_the_cell(tree: Tree) -> None:
    root = root_of(tree)
    bank = add(tree, root, "bank")
    account = add(tree, bank, "account-7")
    assert (bank.name, bank.path, bank.parent) == ("bank", "/user/bank", root)
    assert (account.path, account.parent) == ("/user/bank/account-7", bank)
    assert tree.find("/user/bank/account-7") is account
    assert tree.find("/user") is root
    assert tree.find("/user/bank/nobody") is None
    assert tree.find("/elsewhere/bank") is None
    assert tree.has_child(root, bank)
    assert not tree.has_child(root, account)


def test_default_names_count_up_with_the_serial(tree: Tree) -> None:
    root = root_of(tree)
    first = add(tree, root)
    numbered = tree.next_serial()
    second = tree.register(root, lambda: Leaf(), None, Home(), 8, Restart.PERMANENT)
    assert first.name == "Leaf-1"  # the factory is a class: its name
    assert numbered == 2
    assert second.name == "actor-3"  # any other factory


def test_a_duplicate_name_is_refused_and_changes_nothing(tree: Tree) -> None:
    root = root_of(tree)
    first = add(tree, root, "same")
    with pytest.raises(DuplicateName, match="'same' already exists under /user"):
        add(tree, root, "same")
    assert tree.children_of(root) == [first]
    other = add(tree, first, "same")  # another parent: another namespace
    assert other.path == "/user/same/same"


def test_children_are_a_snapshot_in_start_order(tree: Tree) -> None:
    root = root_of(tree)
    names = ["c", "a", "b"]
    cells = [add(tree, root, name) for name in names]
    snapshot = tree.children_of(root)
    assert snapshot == cells
    add(tree, root, "late")
    tree.unregister(cells[0])
    assert snapshot == cells  # taken before: unchanged
    assert [cell.name for cell in tree.children_of(root)] == ["a", "b", "late"]
    assert tree.children_of(cells[1]) == []


def test_cells_walk_the_tree_root_first_breadth_first(tree: Tree) -> None:
    root = root_of(tree)
    a = add(tree, root, "a")
    a1 = add(tree, a, "a1")
    b = add(tree, root, "b")
    assert tree.cells() == [root, a, b, a1]
    assert Tree().cells() == []  # nothing planted yet


def test_unregister_leaves_the_parent_and_returns_watchers_in_watch_order(tree: Tree) -> None:
    root = root_of(tree)
    target = add(tree, root, "target")
    watchers = [add(tree, root, f"w{i}") for i in (3, 1, 2)]
    for watcher in watchers:
        tree.watch(watcher, target)
    tree.watch(watchers[0], target)  # twice is once: it keeps its place
    assert tree.unregister(target) == watchers
    assert not tree.has_child(root, target)
    assert tree.find("/user/target") is None
    assert tree.unregister(target) == []  # closed: once only


def test_unregister_spares_a_new_sibling_of_the_same_name(tree: Tree) -> None:
    root = root_of(tree)
    old = add(tree, root, "name")
    tree.unregister(old)
    new = add(tree, root, "name")  # the name is free again
    tree.unregister(old)  # a late second end of the old one
    assert tree.children_of(root) == [new]


def test_watching_an_ended_cell_is_answered_at_once(tree: Tree) -> None:
    root = root_of(tree)
    target = add(tree, root, "target")
    watcher = add(tree, root, "watcher")
    tree.unregister(target)
    tree.watch(watcher, target)
    assert watch_events(watcher) == [(target, None)]
    assert target.watchers == {}  # the marker of an ended cell stays empty


def test_unwatch_removes_the_watcher_and_a_queued_notice_is_forgotten(tree: Tree) -> None:
    root = root_of(tree)
    target = add(tree, root, "target")
    kept, dropped = add(tree, root, "kept"), add(tree, root, "dropped")
    tree.watch(kept, target)
    tree.watch(dropped, target)
    tree.unwatch(dropped, target)
    assert tree.unregister(target) == [kept]
    assert tree.forget_watched(kept, target)  # the notice is for it: once
    assert not tree.forget_watched(kept, target)
    assert not tree.forget_watched(dropped, target)  # unwatched: a notice must not run


def test_a_cell_cannot_watch_itself(tree: Tree) -> None:
    cell = add(tree, root_of(tree), "narcissus")
    with pytest.raises(ValueError, match="cannot watch itself"):
        tree.watch(cell, cell)


def test_no_registration_under_a_parent_that_is_exiting(tree: Tree) -> None:
    parent = add(tree, root_of(tree), "parent")
    tree.refuse_children(parent)
    with pytest.raises(ActorStopped, match="/user/parent is stopping"):
        add(tree, parent, "late")
    assert tree.children_of(parent) == []
    tree.accept_children(parent)  # a reboot: the new instance may spawn again
    assert add(tree, parent, "late").path == "/user/parent/late"


def test_children_are_refused_only_by_a_parent_that_has_none(tree: Tree) -> None:
    """The look for children and the refusal are one step: a parent with a child is left
    accepting (its normal stop stops the child), a childless one refuses the next."""
    root = root_of(tree)
    busy, idle = add(tree, root, "busy"), add(tree, root, "idle")
    add(tree, busy, "child")
    assert not tree.refuse_children_if_none(busy)
    assert not busy.exiting
    add(tree, busy, "another")  # still accepted
    assert tree.refuse_children_if_none(idle)
    with pytest.raises(ActorStopped):
        add(tree, idle, "late")
    tree.accept_children(idle)
    add(tree, idle, "welcome-again")


def test_a_registered_cells_path_is_made_on_first_read(tree: Tree) -> None:
    parent = add(tree, root_of(tree), "bank")
    child = add(tree, parent, None)  # a generated name
    assert parent._path is None  # pyright: ignore[reportPrivateUsage]  # no string yet
    assert child._path is None  # pyright: ignore[reportPrivateUsage]
    assert tree.find(f"/user/bank/{child.name}") is child  # found by names, not by paths
    assert child.path == f"/user/bank/{child.name}"
    assert child._path is child.path  # pyright: ignore[reportPrivateUsage]  # kept once made
    assert parent.path == "/user/bank"
    assert child.name.startswith("Leaf-")


def test_no_registration_under_a_parent_that_has_ended(tree: Tree) -> None:
    parent = add(tree, root_of(tree), "parent")
    tree.unregister(parent)
    # As `Cell._conclude` ends a cell: its outcome, then its latch. The tree reads the
    # outcome (set first), so a cell past its end refuses children even before the latch.
    parent.outcome = "stopped"
    with pytest.raises(ActorStopped):
        add(tree, parent, "orphan")
    parent.terminated.set(None)
    with pytest.raises(ActorStopped):
        add(tree, parent, "orphan")


def test_a_closed_tree_refuses_top_level_cells_only(tree: Tree) -> None:
    root = root_of(tree)
    inner = add(tree, root, "inner")
    tree.closed = "actor system x is stopping; cannot spawn"
    with pytest.raises(SystemNotRunning, match="x is stopping"):
        add(tree, root, "late")
    assert add(tree, inner, "child").parent is inner  # deeper levels end with their parents


def test_concurrent_registrations_get_distinct_names(tree: Tree) -> None:
    root = root_of(tree)
    made: list[list[Cell]] = [[] for _ in range(4)]

    def spawner(into: list[Cell]) -> None:
        into.extend(add(tree, root) for _ in range(250))

    threads = [threading.Thread(target=spawner, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    everyone = [cell for into in made for cell in into]
    assert len({cell.name for cell in everyone}) == 1000
    assert set(tree.children_of(root)) == set(everyone)


@pytest.mark.anyio
async def test_the_system_keeps_its_actors_in_its_tree() -> None:
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=1, blocked_threshold=None) as system:
            probe = await Probe.spawn(system)
            ref = await system.spawn(Leaf, name="leaf")
            cell = cell_of(ref)
            assert system.tree.find("/user/leaf") is cell
            assert system.lookup("/user/leaf") == ref
            assert cell in system.tree.children_of(root_of(system.tree))
            await probe.watch(ref)
            await ref.stop()
            event = await probe.expect(Terminated)
            assert event.ref == ref
            assert system.tree.find("/user/leaf") is None
            assert system.lookup("/user/leaf") is None
        assert system.tree.closed == f"actor system {system.name} is stopped; cannot spawn"


# -- end_childless: the common end in one critical section -----------------------------------


def test_end_childless_refuses_children_leaves_the_parent_and_returns_watchers(
    tree: Tree,
) -> None:
    root = root_of(tree)
    target = add(tree, root, "target")
    watchers = [add(tree, root, f"w{i}") for i in (2, 1)]
    for watcher in watchers:
        tree.watch(watcher, target)
    assert tree.end_childless(target) == watchers
    assert target.exiting
    assert tree.find("/user/target") is None
    with pytest.raises(ActorStopped):
        add(tree, target, "late")
    assert tree.unregister(target) == []  # its watchers were closed: told once only


def test_end_childless_leaves_a_cell_with_a_child_registered_and_refusing(tree: Tree) -> None:
    root = root_of(tree)
    parent = add(tree, root, "parent")
    watcher = add(tree, root, "watcher")
    tree.watch(watcher, parent)
    child = add(tree, parent, "child")
    assert tree.end_childless(parent) is None
    assert parent.exiting  # no further child
    with pytest.raises(ActorStopped):
        add(tree, parent, "late")
    assert tree.find("/user/parent") is parent  # still there: the child ends first
    assert tree.children_of(parent) == [child]
    assert tree.unregister(parent) == [watcher]  # its watchers are still to be told


class StopsItself(Actor[int]):
    def receive(self, message: int) -> None:
        self.stop()


@pytest.mark.anyio
async def test_a_child_registered_as_its_parent_ends_in_place_is_stopped_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child that another thread registers between the end of its parent's instance and
    the parent leaving the tree (simulated here, on the parent's thread, in that window)
    is stopped before the parent ends: none is left behind under an ended actor."""
    real = Tree.end_childless
    late: list[Cell] = []

    def with_a_late_child(tree: Tree, cell: Cell) -> list[Cell] | None:
        if cell.name == "parent" and not late:
            ref = cell.system.spawn_child_soon(
                cell, Leaf, name="late", capacity=None, placement=None, restart=Restart.TEMPORARY
            )
            late.append(cell_of(ref))
        return real(tree, cell)

    monkeypatch.setattr(Tree, "end_childless", with_a_late_child)
    async with ActorSystem(workers=1, name="tree-late-child") as system:
        with anyio.fail_after(WAIT):
            parent = await system.spawn(StopsItself, name="parent", restart=Restart.TEMPORARY)
            await parent.send(1)
            assert await parent.join() is None
        (child,) = late
        assert child.terminated.is_set  # ended before its parent's join returned
        assert child.outcome == "stopped"
        assert system.lookup("/user/parent") is None
        assert system.lookup("/user/parent/late") is None
