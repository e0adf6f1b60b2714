"""Scoped actors: actors that cannot outlive an ``async with`` block.

(Placeholder with the public signatures; the implementation lands with issue 4.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._system import ActorSystem

__all__ = ("Scope",)


class Scope:
    """Returned by `ActorSystem.scope` (not implemented yet).

    Example:
        ```python
        async with system.scope() as scope:
            ...
        ```
    """

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
