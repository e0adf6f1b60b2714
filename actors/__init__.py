"""actors: typed, bounded-mailbox actors for asyncio and trio applications, on all cores.

Example:
    ```python
    import msgspec
    import actors

    class Greet(msgspec.Struct, frozen=True):
        name: str

    class Greeter(actors.Actor[Greet]):
        async def receive(self, message: Greet) -> None:
            print("hello", message.name)

    async def main() -> None:
        async with actors.ActorSystem() as system:
            greeter = await system.spawn(Greeter)
            await greeter.send(Greet("ada"))

    actors.run(main)
    ```
"""

from __future__ import annotations

from ._actor import Actor
from ._cell import ActorStatistics
from ._clock import Clock, ManualClock
from ._deadletters import DeadLetter, DeadLetters
from ._entry import run
from ._errors import (
    ActorError,
    ActorNotFound,
    ActorStopped,
    AskTimeout,
    DeadlockError,
    DuplicateName,
    InvalidStateMachine,
    MailboxFull,
    MessageTypeError,
    NotSendableError,
    PostponeOverflow,
    RemoteError,
    SendTimeout,
    StashFull,
    StateMachineError,
    StreamClosed,
    StreamError,
    StreamNotSupported,
    StreamRequestError,
    SupervisionError,
    SyncHandlerError,
    SystemNotRunning,
    UnhandledMessage,
    UnknownState,
)
from ._events import EventBus, Subscription
from ._mailbox import MailboxStatistics
from ._message import Request
from ._metrics import ActorMetrics, LoopMetrics, SystemMetrics
from ._placement import PlacementStatistics
from ._pool import Pool, Routing
from ._ref import COOPERATIVE_BUDGET, DEFAULT_ASK_TIMEOUT, ActorRef, Ref
from ._request import deadline
from ._scope import Scope
from ._sendable import Moved, check_sendable, register_sendable
from ._shared import Shared
from ._statem import State, StateMachine, StateMachineStatistics, Transition
from ._strategy import (
    Backoff,
    OneForAll,
    OneForOne,
    Restart,
    RestForOne,
    SupervisionStrategy,
    Terminated,
)
from ._stream import DEFAULT_WINDOW, BlockingReplyStream, ReplyStream, StreamRequest
from ._system import DEFAULT_CAPACITY, DEFAULT_DRAIN_TIMEOUT, DEFAULT_THROUGHPUT, ActorSystem
from ._timers import Timer
from ._watchdog import DEFAULT_BLOCKED_THRESHOLD

__all__ = (
    "COOPERATIVE_BUDGET",
    "DEFAULT_ASK_TIMEOUT",
    "DEFAULT_BLOCKED_THRESHOLD",
    "DEFAULT_CAPACITY",
    "DEFAULT_DRAIN_TIMEOUT",
    "DEFAULT_THROUGHPUT",
    "DEFAULT_WINDOW",
    "Actor",
    "ActorError",
    "ActorMetrics",
    "ActorNotFound",
    "ActorRef",
    "ActorStatistics",
    "ActorStopped",
    "ActorSystem",
    "AskTimeout",
    "Backoff",
    "BlockingReplyStream",
    "Clock",
    "DeadLetter",
    "DeadLetters",
    "DeadlockError",
    "DuplicateName",
    "EventBus",
    "InvalidStateMachine",
    "LoopMetrics",
    "MailboxFull",
    "MailboxStatistics",
    "ManualClock",
    "MessageTypeError",
    "Moved",
    "NotSendableError",
    "OneForAll",
    "OneForOne",
    "PlacementStatistics",
    "Pool",
    "PostponeOverflow",
    "Ref",
    "RemoteError",
    "ReplyStream",
    "Request",
    "RestForOne",
    "Restart",
    "Routing",
    "Scope",
    "SendTimeout",
    "Shared",
    "StashFull",
    "State",
    "StateMachine",
    "StateMachineError",
    "StateMachineStatistics",
    "StreamClosed",
    "StreamError",
    "StreamNotSupported",
    "StreamRequest",
    "StreamRequestError",
    "Subscription",
    "SupervisionError",
    "SupervisionStrategy",
    "SyncHandlerError",
    "SystemMetrics",
    "SystemNotRunning",
    "Terminated",
    "Timer",
    "Transition",
    "UnhandledMessage",
    "UnknownState",
    "check_sendable",
    "deadline",
    "register_sendable",
    "run",
)

__version__ = "0.1.0"
