"""`Shared`: read-mostly state that many actors read and few write (the RwLock pattern).

Configuration, a routing table, a cache of rarely changing data: many actors read it on
every message, somebody replaces it now and then. Putting it in an actor makes every read an
``ask``; a lock makes every read contend. `Shared` does read-copy-update instead:

* the value is immutable (sendable), so a reader can keep and use what it got for as long
  as it likes: nobody will change it under its feet;
* a reader reads one attribute (``get``), which is atomic with or without the GIL: no lock,
  no contention, no waiting on writers;
* a writer computes a new value from the current one (``update(fn)``) while holding a
  ``threading.Lock`` that serialises writers only, and publishes it with one attribute store.
  So two concurrent updates never lose one another, and readers see either the old value or
  the new one, never a mixture.

Invariant: ``_state`` is only ever replaced (never mutated), and only with ``_lock`` held;
it holds the value together with its version, so that a reader of both sees a consistent
pair.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from ._sendable import check_sendable

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Shared",)

T = TypeVar("T")


class Shared(Generic[T]):
    """An immutable value that any actor or thread reads without a lock; writers replace it.

    ``Shared(value)`` holds a sendable (immutable) value: a frozen Struct, a tuple, a
    frozenset, a number, a string... `get` returns the current value at the cost of an
    attribute read. `update` applies a function to the current value and publishes its
    result, writers one at a time (read-copy-update). A reader that got a value keeps a
    consistent snapshot, however many updates follow.

    A `Shared` is itself sendable: it is a handle meant to be shared, so it may travel in
    messages or be passed to actor factories.

    Args:
        value: the initial value; it must be sendable.

    Raises:
        NotSendableError: ``value`` is mutable (a ``TypeError``).

    Example:
        ```python
        class Config(msgspec.Struct, frozen=True):
            limit: int
            banned: frozenset[str] = frozenset()

        config = actors.Shared(Config(limit=10))
        config.get().limit                                     # 10, no lock taken
        config.update(lambda c: msgspec.structs.replace(c, limit=20))
        ```
    """

    __slots__ = ("_lock", "_state", "_writer")
    __actors_sendable__: Final = True  # a thread-safe handle to an immutable value

    def __init__(self, value: T) -> None:
        check_sendable(value, "the value of a Shared")
        self._lock = threading.Lock()
        self._state: tuple[T, int] = (value, 0)
        self._writer: int | None = None  # the thread inside update(), to refuse re-entry

    def get(self) -> T:
        """The current value. Takes no lock and never waits; safe from any thread.

        The value is immutable: keep it as long as you need a consistent view, and call
        ``get`` again for a fresher one.

        Example:
            ```python
            async def receive(self, message: Request) -> None:
                config = self.config.get()  # one consistent snapshot for this message
                if message.user in config.banned:
                    return
            ```
        """
        return self._state[0]

    @property
    def version(self) -> int:
        """How many updates have been published: 0 for the initial value, then 1, 2...

        Example:
            ```python
            seen = config.version
            ...
            if config.version != seen:
                rebuild_index(config.get())
            ```
        """
        return self._state[1]

    def update(self, fn: Callable[[T], T]) -> T:
        """Replace the value with ``fn(current)`` and return the new value.

        Writers are serialised: ``fn`` runs with a lock held, so every update starts from
        the latest value and none is lost. Readers are never blocked; they see the old value
        until the new one is published, then the new one. Keep ``fn`` quick and free of
        side effects: a writer on an event loop blocks that loop while it waits for another
        writer's ``fn``.

        Raises:
            NotSendableError: ``fn`` returned a mutable value (a ``TypeError``); the old
                value is kept.
            RuntimeError: ``fn`` itself called ``update`` on this `Shared` (it would wait
                for itself).
            Exception: whatever ``fn`` raised; the old value is kept.

        Example:
            ```python
            limits = actors.Shared((("ada", 10),))
            limits.update(lambda old: (*old, ("grace", 20)))  # returns the new tuple
            ```
        """
        me = threading.get_ident()
        if self._writer == me:
            raise RuntimeError("Shared.update() was called from inside its own update function")
        with self._lock:
            self._writer = me
            try:
                value, version = self._state
                new = fn(value)
                check_sendable(new, "the new value of a Shared")
                self._state = (new, version + 1)  # one store: readers see old or new
            finally:
                self._writer = None
        return new

    def __repr__(self) -> str:
        value, version = self._state
        return f"<Shared version={version} {value!r}>"
