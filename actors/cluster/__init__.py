"""Actors across processes and hosts over NATS: ``ActorSystem(cluster=Nats(...))``.

Needs the ``cluster`` extra (``pip install 'actors[cluster]'``, which brings nats-py).
See ``docs/cluster.md`` for the topology, the wire format, the delivery guarantees, flow
control, membership, security and what is not done yet, and ``docs/cluster-durable.md`` for
durable (at-least-once) mailboxes on JetStream: ``spawn(..., durable=True)``.

Example:
    ```python
    from actors.cluster import Nats

    async with ActorSystem(cluster=Nats("nats://127.0.0.1:4222", node="node-a")) as system:
        await system.spawn(Account, name="account-7", public=True)

    # on another node
    async with ActorSystem(cluster=Nats("nats://127.0.0.1:4222", node="node-b")) as system:
        account = await system.lookup_remote("account-7", AccountMsg)
        await account.send(Deposit(5))
        balance = await account.ask(Balance(), timeout=2.0)
    ```
"""

from __future__ import annotations

from ._groups import lookup_group, serve_pool
from ._nats import (
    ClusterError,
    ClusterStatistics,
    Nats,
)
from ._options import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_DURABLE_ACK_WAIT,
    DEFAULT_DURABLE_DEDUP_WINDOW,
    DEFAULT_DURABLE_MAX_DELIVER,
    DEFAULT_DURABLE_OUTSTANDING,
    DEFAULT_DURABLE_RETRY_DELAY,
    DEFAULT_DURABLE_WINDOW,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_MESSAGE_SIZE,
    Credentials,
    DurableOptions,
    Heartbeats,
    Limits,
    Reconnect,
    Timeouts,
)
from ._remote import DurableRef, GroupRef, RemoteRef
from ._wire import WIRE_VERSION, MessageTooLarge, NodeDown, WireError, register_message

__all__ = (
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_DURABLE_ACK_WAIT",
    "DEFAULT_DURABLE_DEDUP_WINDOW",
    "DEFAULT_DURABLE_MAX_DELIVER",
    "DEFAULT_DURABLE_OUTSTANDING",
    "DEFAULT_DURABLE_RETRY_DELAY",
    "DEFAULT_DURABLE_WINDOW",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "WIRE_VERSION",
    "ClusterError",
    "ClusterStatistics",
    "Credentials",
    "DurableOptions",
    "DurableRef",
    "GroupRef",
    "Heartbeats",
    "Limits",
    "MessageTooLarge",
    "Nats",
    "NodeDown",
    "Reconnect",
    "RemoteRef",
    "Timeouts",
    "WireError",
    "lookup_group",
    "register_message",
    "serve_pool",
)
