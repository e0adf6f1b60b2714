"""The seam between an `ActorSystem` and a cluster transport (``actors.cluster``).

The core knows nothing about NATS: it calls these four methods of whatever ``cluster=`` it
was given, at start, at each ``spawn(public=True)``, at ``lookup_remote`` and at shutdown.
Keeping the seam this narrow keeps the import direction one way (the cluster package uses
the core, never the reverse) and the core location-transparent.

A transport may also be an `InspectableCluster`: the live inspector (`actors._inspect`)
then lists the other nodes through its one method, and never imports the cluster.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._inspect import NodeView
    from ._ref import ActorRef, Ref
    from ._system import ActorSystem

__all__ = ("ClusterBackend", "InspectableCluster")


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


@runtime_checkable
class InspectableCluster(Protocol):
    """A cluster transport that can tell the inspector about the other nodes.

    Example:
        ```python
        nodes = cluster.inspect(SystemView.of(system).local_node())
        ```
    """

    def inspect(self, local: NodeView) -> tuple[NodeView, ...]:
        """``local`` with what the cluster adds to it, then the other nodes' latest answers.

        Any thread; never waits on the network (answers come in the background).
        """
        ...
