"""Queue groups: a public name served from several nodes shares their load, per message.

A name is served by a *queue group*: every node that serves it subscribes to the name's
subject in the same NATS queue group, and the server hands each message published there
to exactly one member. `serve_pool` adds a local `Pool` to a name's group; `spawn(...,
public=True)` adds a single actor to it. A `GroupRef` (from `ActorSystem.lookup_remote`
for a name served by pools, or from `lookup_group` for any name) publishes every message
on that subject, so the server picks a member per message; a plain `RemoteRef` from a
lookup of a name served by actors stays bound to the one member that answered.

These are functions of the cluster package, not methods of `ActorSystem`: the core knows
nothing of queue groups (see `actors._seam`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from .._validation import check_seconds
from ._nats import Nats

if TYPE_CHECKING:
    from .._pool import Pool
    from .._system import ActorSystem
    from ._remote import GroupRef

__all__ = ("lookup_group", "serve_pool")

M = TypeVar("M")


def _nats_of(system: ActorSystem) -> Nats:
    cluster = system.cluster
    if not isinstance(cluster, Nats):
        raise ValueError(
            f"actor system {system.name} has no NATS cluster; pass cluster=actors.cluster.Nats(...)"
        )
    return cluster


async def serve_pool(system: ActorSystem, pool: Pool[M], *, name: str) -> None:
    """Serve ``pool`` under the public name ``name``, sharing its load with other nodes.

    The pool joins the queue group of ``name``: with the same name served on several
    nodes, each message sent through a `GroupRef` of the name goes to one of them (chosen
    by the NATS server per message) and is routed there by the pool's own `Routing`.
    Serving ends when the pool stops or the node leaves; returns once the server has the
    subscription, so a lookup made afterwards finds it.

    Raises:
        ValueError: the system has no `Nats` cluster, or ``name`` is not a subject token
            (letters, digits, ``-`` and ``_``).
        ActorStopped: the pool has stopped.

    Cancellation: the name may already be served.

    Example:
        ```python
        pool = await system.spawn_pool(Resizer, size=4)
        await actors.cluster.serve_pool(system, pool, name="resize")
        # on any node: each message goes to one node serving "resize"
        resizer = await other.lookup_remote("resize", ResizeMsg)
        ```
    """
    await _nats_of(system).serve_pool(name, pool)


async def lookup_group(
    system: ActorSystem, name: str, accepts: type[M] | Any = Any, *, timeout: float = 5.0
) -> GroupRef[M]:
    """A `GroupRef` whose every message goes to one node serving ``name`` (a queue group).

    Waits up to ``timeout`` seconds for some node to serve the name (with `serve_pool`
    or `ActorSystem.spawn` with ``public=True``), like `ActorSystem.lookup_remote`, whose
    result for a name served by actors is bound to one member instead.

    Raises:
        ValueError: the system has no `Nats` cluster.
        ActorNotFound: no node serves ``name`` within ``timeout``.
        MessageTypeError: the member that answered does not accept ``accepts``.

    Cancellation: only the wait is abandoned.

    Example:
        ```python
        accounts = await actors.cluster.lookup_group(system, "ledger", LedgerMsg)
        await accounts.send(Entry(5))  # any node serving "ledger" may take it
        ```
    """
    check_seconds("timeout", timeout)
    found: GroupRef[M] = await _nats_of(system).lookup_group(name, accepts, timeout)
    return found
