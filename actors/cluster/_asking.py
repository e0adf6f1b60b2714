"""Cancel notices: the remote asks this node answers, by the key their notice presents.

An asker that gives up on a remote ask publishes a `CANCEL` notice carrying the ask's
random 63-bit key (``_asks``, ``_pump``). Where the notice goes follows where the ask went:

* **To one actor** (``p.actor.<node>.<incarnation>.<id>``): the notice takes the ask's
  subject, behind it in the sender's one outbox, and is handled by the same subscription
  after the ask was registered. An unknown key there means answered already, or forged.
* **To a public name** (a `GroupRef`'s or a `DurableRef`'s ask, ``p.name.<name>``): NATS
  hands the ask to one member of the name's queue group, and would hand a notice on that
  subject to any member, most likely another. So the notice goes to
  ``p.name.<name>.cancel`` (`notice_subject`), which every member subscribes to without a
  queue group; each looks the key up, and only the member answering the ask acts.
  Published on another subject, the notice reaches that member through another
  subscription than the ask, and may overtake it (the ask waiting behind others in its
  subscription, or for room in the mailbox). So a broadcast notice for a key not held
  here is remembered (the latest `REMEMBERED` keys), and an ask registered later with a
  remembered key is abandoned at once.

Invariants:

* Loop only (the cluster loop): no lock.
* Keys are random 63-bit numbers, one per ask, from the operating system's CSPRNG
  (`ask_key`: ``secrets.token_bytes``, read 64 keys at a time per thread, so that an ask
  pays a list pop rather than a system call; a key is as unpredictable as one drawn
  alone, and no two threads or forked processes share one): a remembered key never
  matches another ask. A forged notice cannot name a key it has not seen, so it
  abandons nothing; many forged notices can only push remembered keys out, and a notice
  that had overtaken its ask is then lost, which leaves the ask to end at its deadline,
  as a notice lost with a connection does.
* Bounded: ``held`` by the asks answered now, the remembered keys by `REMEMBERED`.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("REMEMBERED", "Asking", "ask_key", "is_notices", "name_notices", "notice_subject")

REMEMBERED: Final = 4096  # broadcast notices for keys not (yet) held here, kept at most

_NOTICES: Final = "cancel"  # the token after a name subject: where its notices go

_KEYS_PER_DRAW: Final = 64  # ask keys read from the CSPRNG at once, per thread
_KEY_BITS: Final = (1 << 63) - 1
_DRAW: Final = struct.Struct(f"<{_KEYS_PER_DRAW}Q")


class _Keys(threading.local):
    """Each thread's keys not used yet (single writer: its own thread)."""

    def __init__(self) -> None:
        self.left: list[int] = []


_keys = _Keys()


def ask_key() -> int:
    """A fresh random 63-bit key (never 0: 0 is "no key") for a remote ask. Any thread.

    From ``secrets.token_bytes`` as ``secrets.randbits(63)`` would be, read for 64 asks at
    a time: one system call per 64 asks instead of one per ask, each key no more
    predictable than one drawn alone (the unused ones stay in this thread's memory).

    Example:
        ```python
        envelope = Envelope(WIRE_VERSION, ASK, name, body, timeout, node, key=ask_key())
        ```
    """
    left = _keys.left
    if not left:
        left.extend((key & _KEY_BITS) or 1 for key in _DRAW.unpack(secrets.token_bytes(_DRAW.size)))
    return left.pop()


def _forget_keys() -> None:
    """In a forked child: its parent's unused keys are the parent's, never reused here."""
    global _keys
    _keys = _Keys()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_keys)


def notice_subject(prefix: str, subject: str) -> str:
    """Where the cancel notice of an ask published on ``subject`` goes.

    Example:
        ```python
        notice_subject("p", "p.name.resize")  # "p.name.resize.cancel": every member
        notice_subject("p", "p.actor.a.x1.7")  # "p.actor.a.x1.7": behind the ask
        ```
    """
    if subject.startswith(f"{prefix}.name."):
        return f"{subject}.{_NOTICES}"
    return subject


def name_notices(name_subject: str) -> str:
    """The subject every member of a name's queue group hears the notices on."""
    return f"{name_subject}.{_NOTICES}"


def is_notices(subject: str) -> bool:
    """Whether ``subject`` is a name's notice subject (`name_notices`)."""
    return subject.endswith(f".{_NOTICES}")


class Asking:
    """The asks answered here, by key, with what abandons each; and early notices.

    Example:
        ```python
        asking = Asking()
        asking.hold(key, functools.partial(reply.abandon, CANCELLED))  # ask enqueued
        asking.cancel(key)  # its notice: the ask is abandoned
        asking.release(key)  # answered (a no-op once cancelled)
        ```
    """

    __slots__ = ("_early", "_held", "_remembered")

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._held: dict[int, Callable[[], object]] = {}
        self._early: dict[int, None] = {}  # insertion-ordered: the oldest goes first
        self._remembered = remembered

    def __len__(self) -> int:
        """Asks held now (those a notice could still abandon)."""
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        """Whether the ask with ``key`` is held here (a notice could still abandon it)."""
        return key in self._held

    def __repr__(self) -> str:
        return f"<Asking held={len(self._held)} early={len(self._early)}>"

    @property
    def early(self) -> int:
        """Broadcast notices remembered for asks not (yet) held here."""
        return len(self._early)

    def hold(self, key: int, abandon: Callable[[], object]) -> None:
        """An ask with ``key`` is answered here from now on; ``abandon`` gives it up.

        A notice for ``key`` that came first (broadcast) abandons it now instead.
        """
        if not key:
            return
        early = self._early
        if key in early:
            del early[key]
            abandon()
            return
        self._held[key] = abandon

    def release(self, key: int) -> None:
        """The ask with ``key`` is answered (or given up): a notice for it changes nothing."""
        if key:
            self._held.pop(key, None)

    def cancel(self, key: int, *, broadcast: bool = False) -> bool:
        """A notice: abandon the ask with ``key`` if held here; True if it was.

        ``broadcast``: heard on a name's notice subject, where it may come before its ask;
        an unknown key is then remembered. Otherwise an unknown key (answered already,
        forged) is ignored: a cancel is a hint, never an error.
        """
        if not key:
            return False
        abandon = self._held.pop(key, None)
        if abandon is not None:
            abandon()
            return True
        if broadcast and self._remembered:
            early = self._early
            early[key] = None
            if len(early) > self._remembered:
                del early[next(iter(early))]
        return False
