"""The peers: what people use instead of `actors`, one module each.

* `queue_actor`: the naive actor people hand-roll, a task reading an ``asyncio.Queue``.
* `callback_actor`: a synchronous handler invoked from a deque (the ceiling, not a peer to beat).
* `bare`: a bare cross-thread future round trip (the floor under a cross-loop ask).
* `pykka_peer`: pykka's ``ThreadingActor``.
* `thespian_peer`: thespian's in-process ``simpleSystemBase``.
* `xoscar_peer`: xoscar with an in-process actor pool.

The third-party peers are imported only when they run, so a missing one is just skipped.
"""

from __future__ import annotations

from .bare import BareDriver
from .callback_actor import CallbackDriver
from .pykka_peer import PykkaDriver
from .queue_actor import LoopThread, QueueActor, QueueDriver
from .thespian_peer import ThespianDriver
from .xoscar_peer import XoscarDriver

__all__ = (
    "BareDriver",
    "CallbackDriver",
    "LoopThread",
    "PykkaDriver",
    "QueueActor",
    "QueueDriver",
    "ThespianDriver",
    "XoscarDriver",
)
