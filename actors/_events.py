"""The typed event bus: publish an event, every subscriber of its type (or a base) gets it.

(Placeholder with the public signatures; the implementation lands with issue 4.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ("EventBus",)


class EventBus:
    """`ActorSystem.events` (not implemented yet).

    Example:
        ```python
        system.events.subscribe(auditor, UserSignedUp)
        ```
    """

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
