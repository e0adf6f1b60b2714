"""The exception hierarchy of `actors`.

Every error the library raises on purpose derives from `ActorError`, and where a builtin
category fits, also from that builtin so that plain ``except`` clauses keep working::

    ActorError
    ├── MailboxFull                 the mailbox is full (try_send; a self-send that would deadlock)
    ├── ActorStopped                the target stopped, or stopped while the caller waited
    ├── AskTimeout  (TimeoutError)  no reply within the ask timeout
    ├── SendTimeout (TimeoutError)  no room in the mailbox within the send timeout
    ├── DeadlockError (RuntimeError) an actor asked itself
    ├── NotSendableError (TypeError) a message or reply is mutable
    ├── DuplicateName (ValueError)  an actor with that name already exists among its siblings
    ├── SupervisionError            a parent gave up restarting a child (restart intensity)
    ├── ActorNotFound (LookupError) no actor of that name, here or in the cluster
    ├── RemoteError                 a remote handler raised an exception of a non-builtin type
    ├── MessageTypeError (TypeError) the target does not accept this message type
    ├── SyncHandlerError (TypeError) a synchronous handler returned an awaitable
    ├── StashFull                   an actor's stash is at its stash_capacity
    ├── StreamError                 a streamed reply could not be served as asked
    │   ├── StreamRequestError (TypeError)     a StreamRequest sent or asked; no items returned
    │   ├── StreamClosed (RuntimeError)        a stream read again: consumed, or closed
    │   └── StreamNotSupported (NotImplementedError)  a kind of ref that cannot stream
    ├── SystemNotRunning            the ActorSystem is not started, or already shut down
    └── StateMachineError           a state machine refused a transition, message or definition
        ├── UnknownState (ValueError)        a transition to a value that is not one of its states
        ├── UnhandledMessage (TypeError)     the current state does not declare the message
        ├── PostponeOverflow                 more postponed messages than postpone_capacity
        └── InvalidStateMachine (TypeError)  a machine or state class defined wrongly

Errors raised by a failed send carry the message back (``error.message``), like tokio's
``SendError(T)``, so that nothing is lost silently.
"""

from __future__ import annotations

__all__ = (
    "ActorError",
    "ActorNotFound",
    "ActorStopped",
    "AskTimeout",
    "DeadlockError",
    "DuplicateName",
    "InvalidStateMachine",
    "MailboxFull",
    "MessageTypeError",
    "NotSendableError",
    "PostponeOverflow",
    "RemoteError",
    "SendTimeout",
    "StashFull",
    "StateMachineError",
    "StreamClosed",
    "StreamError",
    "StreamNotSupported",
    "StreamRequestError",
    "SupervisionError",
    "SyncHandlerError",
    "SystemNotRunning",
    "UnhandledMessage",
    "UnknownState",
)


class ActorError(Exception):
    """Base class of every error raised by `actors`.

    Example:
        ```python
        try:
            ref.try_send(Ping())
        except actors.ActorError as error:
            log.warning("not delivered: %s", error)
        ```
    """


class _Undelivered(ActorError):
    """An error that hands back the message it failed to deliver."""

    def __init__(self, text: str, message: object = None) -> None:
        super().__init__(text)
        self.message = message
        """The message that was not delivered."""


class MailboxFull(_Undelivered):
    """The target's mailbox is at capacity and the message was not enqueued.

    Raised by `ActorRef.try_send`, and by a send an actor makes to itself while its own
    mailbox is full (waiting would deadlock). ``error.message`` is the rejected message.

    Example:
        ```python
        try:
            ref.try_send(Tick())
        except actors.MailboxFull as full:
            dropped.append(full.message)
        ```
    """


class ActorStopped(_Undelivered):
    """The target actor has stopped (or stopped while the caller waited); nothing was enqueued.

    Example:
        ```python
        await ref.stop()
        with pytest.raises(actors.ActorStopped):
            await ref.send(Ping())
        ```
    """


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask timeout. A reply arriving later is dropped.

    Example:
        ```python
        try:
            await ref.ask(Slow(), timeout=0.1)
        except TimeoutError:  # AskTimeout is a TimeoutError
            ...
        ```
    """


class SendTimeout(_Undelivered, TimeoutError):
    """The mailbox stayed full for the whole send timeout; nothing was enqueued.

    Example:
        ```python
        try:
            await ref.send(Job(), timeout=0.5)
        except actors.SendTimeout as error:
            requeue(error.message)
        ```
    """


class DeadlockError(ActorError, RuntimeError):
    """An actor asked itself: its handler would wait for a reply only it can give.

    Example:
        ```python
        async def receive(self, message):
            await self.ref.ask(Count())  # raises DeadlockError at once
        ```
    """


class NotSendableError(ActorError, TypeError):
    """A message or a reply is mutable, so sending it would share owned state.

    Use immutable values (frozen msgspec Structs, tuples, ...) or hand a mutable object over
    explicitly with `actors.Moved`.

    Example:
        ```python
        with pytest.raises(TypeError):
            await ref.send([1, 2, 3])  # a list is not sendable
        ```
    """


class MessageTypeError(ActorError, TypeError):
    """The target actor does not accept messages of this type.

    Example:
        ```python
        with pytest.raises(TypeError):
            await greeter.send(Withdraw(5))  # Greeter accepts Greet | Count
        ```
    """


class SyncHandlerError(ActorError, TypeError):
    """A synchronous handler (``def receive``) returned an awaitable, which nobody awaits.

    It called an ``async`` method without ``await`` (``self.spawn(...)``, ``ref.send(...)``),
    or is an ``async`` function in disguise. The awaitable is closed (nothing of it ran) and
    the handler fails, as if it had raised this. Use the forms that do not wait
    (`Actor.spawn_soon`, `ActorRef.try_send`), or write ``async def receive``.

    Example:
        ```python
        def receive(self, message: Job) -> None:
            self.spawn(Worker)  # SyncHandlerError: use self.spawn_soon(Worker)
        ```
    """


class StashFull(_Undelivered):
    """`Actor.stash` refused a message: the stash holds ``stash_capacity`` already.

    Raised in the handler that stashes; unless it catches it, the actor fails (and the
    message is lost with the failure). ``error.message`` is the message.

    Example:
        ```python
        try:
            self.stash(message)
        except actors.StashFull:
            return  # drop it instead
        ```
    """


class StreamError(ActorError):
    """A streamed reply (`actors.StreamRequest`) could not be served as asked.

    Example:
        ```python
        try:
            async for token in model.stream(Generate(prompt)):
                print(token)
        except actors.StreamError as error:
            log.warning("stream refused: %s", error)
        ```
    """


class StreamRequestError(StreamError, TypeError):
    """A `StreamRequest` went the wrong way, or its handler produced no items to stream.

    A stream request is read with ``ref.stream(request)``, never ``send``/``ask`` (refused
    before anything is enqueued); its handler is an ``async def receive`` that returns an
    async iterable (an async generator); a synchronous handler cannot stream.

    Example:
        ```python
        with pytest.raises(actors.StreamRequestError):
            await model.ask(Generate("hi"))  # use: async for t in model.stream(...)
        ```
    """


class StreamClosed(StreamError, RuntimeError):
    """A stream was read again after it was consumed, or after its consumer closed it.

    A stream is read once, by one task. Leaving it (``aclose``, leaving its ``async with``, a
    cancelled or timed-out read) closes it for good and stops its producer; reading it again
    would silently lose the items it skipped, so it raises this instead.

    Example:
        ```python
        tokens = model.stream(Generate("hi"))
        async for token in tokens:
            ...
        async for token in tokens:  # StreamClosed: already consumed
            ...
        ```
    """


class StreamNotSupported(StreamError, NotImplementedError):
    """This kind of ref cannot stream (`ActorRef` and ``actors.cluster.RemoteRef`` can).

    Example:
        ```python
        with pytest.raises(actors.StreamNotSupported):
            actors.Ref.stream(ref, Generate("hi"))  # the base class: no way to stream
        ```
    """


class SystemNotRunning(ActorError):
    """The `ActorSystem` is not running: it was not started, or it is shutting down.

    Example:
        ```python
        await system.shutdown()
        with pytest.raises(actors.SystemNotRunning):
            await system.spawn(Greeter)
        ```
    """


class DuplicateName(ActorError, ValueError):
    """An actor with this name already exists in the same place of the tree.

    Example:
        ```python
        await system.spawn(Greeter, name="greeter")
        with pytest.raises(actors.DuplicateName):
            await system.spawn(Greeter, name="greeter")
        ```
    """


class SupervisionError(ActorError):
    """A parent gave up: restarting a failed child would exceed its restart intensity.

    The parent then stops its other children and fails with this error, which escalates to
    its own parent; ``__cause__`` is the child's failure, so the chain of causes names every
    level. At the top of the tree it is recorded in `ActorSystem.failures`.

    Example:
        ```python
        failure = await system.wait_failure()
        if isinstance(failure, actors.SupervisionError):
            log.error("gave up: %s (root cause: %r)", failure, failure.__cause__)
        ```
    """


class ActorNotFound(ActorError, LookupError):
    """No actor is registered under that name (locally or, for a cluster, on any node).

    Example:
        ```python
        try:
            ref = await system.lookup_remote("billing", BillingMsg, timeout=1.0)
        except actors.ActorNotFound:
            ...
        ```
    """


class RemoteError(ActorError):
    """A remote actor's handler raised an exception whose type is not a builtin one.

    ``type_name`` is the qualified name of the original type; the message names the remote
    actor's path and node. Builtin exceptions (ValueError, KeyError, ...) arrive as
    themselves instead.

    Example:
        ```python
        try:
            await remote.ask(Charge(10))
        except actors.RemoteError as error:
            log.error("remote failure of type %s: %s", error.type_name, error)
        ```
    """

    def __init__(self, text: str, type_name: str = "") -> None:
        super().__init__(text)
        self.type_name = type_name
        """The qualified name of the remote exception's type."""


class StateMachineError(ActorError):
    """Base class of the errors a `StateMachine` raises.

    Example:
        ```python
        try:
            await connection.ask(Status())
        except actors.StateMachineError as error:
            log.warning("protocol error: %s", error)
        ```
    """


class UnknownState(StateMachineError, ValueError):
    """A transition to a value that is not one of the machine's states.

    Raised by `StateMachine.goto` (and for a bad `StateMachine.initial_state`), at the call.

    Example:
        ```python
        machine.goto("open")  # raises UnknownState: not an instance of Closed | Open
        ```
    """


class UnhandledMessage(StateMachineError, TypeError):
    """The current state does not declare this message; the actor fails with this error.

    Attributes:
        message: the message.
        state: the state it arrived in.

    Example:
        ```python
        class Connecting(actors.State["Connection", Connected | Send]):
            ...  # a Close arriving now fails the actor with UnhandledMessage
        ```
    """

    def __init__(self, text: str, message: object, state: object) -> None:
        super().__init__(text)
        self.message = message
        """The message no handler took."""
        self.state = state
        """The state it arrived in."""


class PostponeOverflow(StateMachineError):
    """A postpone beyond `StateMachine.postpone_capacity`; the actor fails with this error.

    The message is on the error (``error.message``); the ones postponed before it become
    dead letters when the actor ends, as always.

    Example:
        ```python
        class Buffering(actors.StateMachine[Waiting | Ready, Job]):
            postpone_capacity = 10  # the eleventh postponed Job fails the actor
        ```
    """

    def __init__(self, text: str, message: object) -> None:
        super().__init__(text)
        self.message = message
        """The message that did not fit."""


class InvalidStateMachine(StateMachineError, TypeError):
    """A state machine or state class is defined wrongly.

    A state without ``handle``, a handler that is not ``async def``, a timeout without
    ``on_timeout``, a machine without ``initial_state``, a machine that overrides
    ``receive``, ``on_start`` or ``on_stop``, a ``S`` that names something else than
    `State` classes. Raised when the class is created, or at the first spawn when it names
    classes defined later in its module.

    Example:
        ```python
        class Idle(actors.State["Door", Open]):
            pass  # no handle(): spawning a machine with this state raises InvalidStateMachine
        ```
    """
