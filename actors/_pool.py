"""Worker pools: a supervised group of identical workers behind one routing handle.

(Placeholder with the public signatures; the implementation lands with issue 4.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._actor import Actor
    from ._supervision import SupervisionStrategy
    from ._system import ActorSystem

__all__ = ("Pool", "Routing", "spawn_pool")

M = TypeVar("M", contravariant=True)

Routing = Literal["round-robin", "least-loaded", "consistent-hash", "broadcast", "pull"]
"""How a `Pool` picks the worker for each message.

Example:
    ```python
    pool = await system.spawn_pool(Worker, size=4, routing="least-loaded")
    ```
"""


class Pool(Generic[M]):
    """A pool of workers started by `ActorSystem.spawn_pool` (not implemented yet).

    Example:
        ```python
        pool = await system.spawn_pool(Worker, size=4)
        ```
    """


async def spawn_pool(
    system: ActorSystem,
    factory: Callable[[], Actor[M]],
    *,
    size: int,
    routing: Routing,
    key: Callable[[Any], object] | None,
    supervision: SupervisionStrategy | None,
    name: str | None,
    capacity: int | None,
) -> Pool[M]:
    raise NotImplementedError("worker pools are not implemented yet")
