"""The live inspector: a web page and JSON endpoints showing what a system's actors are doing.

Mount `app` in your Starlette or FastAPI app (or serve it alone); open its page in a
browser, or watch it from a terminal with ``python -m actors top URL``. It shows, live:
the supervision tree (paged and collapsed by parent), each actor's type, loop, state,
mailbox depth and high water, messages per second, failures and restarts; the loops (actors,
CPU, lag, blocked-loop warnings); dead letters as a stream; pools and their workers; the
event bus's subscriptions; with a cluster, every node with its public actors, served groups
and durable mailboxes (each node answers an inspection subject).

It has no dependencies beyond `actors` itself (a raw ASGI app) and runs on asyncio, uvloop
and trio hosts. Read-only by default; see `app` for the actions and why they belong behind
your own authentication. `SystemView` is the same information as Python objects.

Example:
    ```python
    import actors.inspector

    web.mount("/inspector", actors.inspector.app(system))
    ```
"""

from __future__ import annotations

from .._inspect import (
    MAX_LISTED,
    MAX_PAGE,
    ActorView,
    BlockedWarning,
    ChildrenPage,
    DeadLettersPage,
    DeadLetterView,
    DurableView,
    GroupView,
    LoopView,
    NodeView,
    Overview,
    PoolView,
    PublicActorView,
    SubscriptionsPage,
    SubscriptionView,
    SystemView,
    TopOrder,
)
from ._app import MAX_WATCHED, InspectorApp, app

__all__ = (
    "MAX_LISTED",
    "MAX_PAGE",
    "MAX_WATCHED",
    "ActorView",
    "BlockedWarning",
    "ChildrenPage",
    "DeadLetterView",
    "DeadLettersPage",
    "DurableView",
    "GroupView",
    "InspectorApp",
    "LoopView",
    "NodeView",
    "Overview",
    "PoolView",
    "PublicActorView",
    "SubscriptionView",
    "SubscriptionsPage",
    "SystemView",
    "TopOrder",
    "app",
)
