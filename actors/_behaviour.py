"""become and stash: which handler takes an actor's next message, and what it set aside.

An actor that has never called `Actor.become` or `Actor.stash` has no `Behaviour`: its
class's ``receive`` handles everything, and its cell carries a None (an idle actor stays
small). The first call makes one, kept by the cell for the rest of its life.

The run loop (`Cell._run`) keeps the current handler in a local, read once per run: the hot
path reads no field per message. So `become` tells it through the mailbox's control lane: a
`SWITCH` signal at the head of the lane, which the run loop reads at the next message
boundary (before any queued message: the control lane always goes first) and answers by
reading `Behaviour.handler` again. Nothing is paid per message for the feature.

`unstash_all` puts the stashed items into the control lane too, each as an `Unstashed`
signal, in their original order behind whatever the lane holds: so they are handled before
any message still in the queue, with the handler of the moment, and they sit in the mailbox
again (a restart keeps them, a final stop dead-letters them, as any queued message). The
stash itself belongs to the instance: a restart or a stop drops it, its tells become dead
letters and its asks get `ActorStopped` (`Cell._drop_stash`).

Invariant: the fields are read and written on the actor's home thread only, by its own
handlers and hooks (`Cell.check_own` refuses every other caller).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("SWITCH", "Behaviour", "Switch", "Unstashed")


class Behaviour:
    """The handler set by `Actor.become` and the stash of one actor (see the module docstring).

    ``handler`` None: the class's ``receive``. ``overflows`` counts refused stashes over the
    actor's whole life (restarts included), for its metrics.
    """

    __slots__ = ("handler", "overflows", "stash", "sync")

    def __init__(self) -> None:
        self.handler: Callable[[Any], Any] | None = None
        self.sync = True
        self.stash: deque[object] = deque()
        self.overflows = 0


class Switch:
    """The record of the signal that makes the run loop read `Behaviour.handler` again."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SWITCH"


SWITCH: Final = Switch()


class Unstashed:
    """A stashed item (a message, or the ``Ask`` envelope around one) back in the mailbox."""

    __slots__ = ("item",)
    __match_args__ = ("item",)

    def __init__(self, item: object) -> None:
        self.item = item

    def __repr__(self) -> str:
        return f"Unstashed({self.item!r})"
