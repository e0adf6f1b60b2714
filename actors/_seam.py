"""The seam between an `ActorSystem` and a cluster transport (``actors.cluster``).

The core knows nothing about NATS: it calls these four methods of whatever ``cluster=`` it
was given, at start, at each ``spawn(public=True)``, at ``lookup_remote`` and at shutdown.
Keeping the seam this narrow keeps the import direction one way (the cluster package uses
the core, never the reverse) and the core location-transparent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._ref import ActorRef, Ref
    from ._system import ActorSystem

__all__ = ("ClusterBackend",)


class ClusterBackend(Protocol):
    """What `ActorSystem(cluster=...)` needs from a transport such as `actors.cluster.Nats`.

    Example:
        ```python
        from actors.cluster import Nats

        async with ActorSystem(cluster=Nats("nats://127.0.0.1:4222", node="a")) as system:
            ...
        ```
    """

    async def attach(self, system: ActorSystem) -> None:
        """Connect and join the cluster; called once the system's loops and root exist."""
        ...

    async def register(self, name: str, ref: ActorRef[Any], *, durable: bool = False) -> None:
        """Make ``ref`` reachable from every node under ``name`` before ``spawn`` returns.

        ``durable``: remote messages to it must go through an at-least-once mailbox; a
        backend that has none raises `ValueError`.
        """
        ...

    async def lookup(self, name: str, accepts: Any, timeout: float) -> Ref[Any]:
        """A ref to the public actor ``name`` on any node; raise `ActorNotFound` after timeout."""
        ...

    async def detach(self) -> None:
        """Leave the cluster and disconnect; called before the actors stop."""
        ...
