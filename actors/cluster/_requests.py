"""Requests: a frame to one remote actor or name whose caller waits for the reply.

The full path of an ask, of a group's send, of an acknowledged send's fallback: the frame
goes through the pump (``_pump``), its reply is read here (`Requests.read_reply`: the
reply's credit and home noted, an error raised as the caller's exception).

No responders: a request to an actor's subject that nobody subscribes to right now comes
back as "no responders" (NATS status 503). That is no proof that the actor has stopped: its
node may be reconnecting (after a server restart, whichever node is back first gets 503s
until the others have re-subscribed). So `Requests.request` asks the owner node itself, on
its node subject ``p.actor.<node>.<incarnation>.0`` (no exported actor has id 0), whether
the export still exists (`Requests.owner_says_gone`, answered by `Inbound.on_node_probe`
from the export table, whatever the state of the subscriptions). Only "gone" finishes the
ref; anything else (the actor is still exported, or the owner does not answer: it is
reconnecting, or dead and soon declared down by the heartbeats) is transient, and the
request is published again, backing off, within its own timeout. A 503 means nobody
received the frame, so publishing it again never duplicates a message.

Holds: while an acknowledged send or an ask of a ref travels over the cluster connection,
it is held in the ref's credit (`Requests.holding`), so that no later ask takes an ask
lane past it (`Credit.quiet`, ``_lanes``). A hold ends when the frame is answered, or,
when it was abandoned (a timeout, a cancellation), once nothing sent before can arrive
after a later frame.

Invariants:

- An ask never overtakes the tells of its ref: `request` waits for the ref's stream to
  drain before its frame goes out (one of them may yet be sent again).
- No frame is published that could not be waited for: a retry with no time left raises
  the timeout instead.
- `read_reply` is called on the cluster loop, or on an ask lane's loop for a lane's reply;
  it touches only the ref's credit (thread-safe) and home hint.

Imports: ``_frames``, ``_pump`` and the cluster's data modules; ``_tells``, ``_asks``,
``_lookup`` and ``_outbound`` import this module, never the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, Final, TypeVar

import msgspec

from .._errors import ActorNotFound, ActorStopped, AskTimeout, SendTimeout, SystemNotRunning
from .._ref import cell_of
from ._frames import Outbound
from ._inbound import NIL, as_wire_error
from ._pump import NoResponders
from ._remote import (
    address_of,
    by_name,
    credit_of,
    finish_proxy,
    note_home,
    stopped_error,
    target_of,
    window_of,
)
from ._wire import (
    DECODING,
    ERROR,
    MALFORMED,
    OK,
    PROBE,
    WIRE_VERSION,
    Envelope,
    ErrorInfo,
    NodeDown,
    Reply,
    WireError,
    check_frame,
    decoder_for,
    error_from,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator

    from ._frames import Frames
    from ._membership import Membership
    from ._options import Limits
    from ._pump import Pump
    from ._registry import Registry
    from ._remote import RemoteRef
    from ._transport import Transport

__all__ = ("RETRY_FIRST", "RETRY_MAX", "Requests")

T = TypeVar("T")

RETRY_FIRST: Final = 0.05  # after a transient "no responders", the first pause (doubling)
RETRY_MAX: Final = 0.5  # ... up to this

_OWNER_ANSWER_WAIT: Final = 1.0  # seconds one probe of an owner node waits for its answer


class Requests:
    """Requests to remote actors and names, their replies, and the holds on their refs.

    Example:
        ```python
        requests = Requests(transport, registry, membership, frames, pump, Limits(), 30.0)
        value = await requests.request(ref, out, 5.0, int, on_timeout)  # on the cluster loop
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        membership: Membership,
        frames: Frames,
        pump: Pump,
        limits: Limits,
        ack_timeout: float,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._membership = membership
        self._frames = frames
        self._pump = pump
        self._limits = limits
        self._ack_timeout = ack_timeout
        self._replies_decoder: msgspec.msgpack.Decoder[Reply] = decoder_for(Reply, None)

    def read_reply(self, ref: RemoteRef[Any], data: bytes, reply_type: Any, message: object) -> Any:
        """The value in reply frame ``data`` from ``ref``, or its error raised."""
        try:
            check_frame(data, self._limits.max_message_size, self._limits.max_depth)
            reply = self._replies_decoder.decode(data)
        except MALFORMED as error:
            self._transport.reject(f"a reply from {ref.path}", error)
            raise as_wire_error(error) from None
        credit_of(ref).settle(reply.free)
        note_home(ref, reply.home)  # where its next lane ask goes (``_lanes``)
        if reply.status == OK:
            try:
                return self._registry.decoder(reply_type).decode(reply.body)
            except DECODING as error:
                raise WireError(
                    f"the reply of remote actor {ref.path} on node {ref.node} is not a "
                    f"{_show(reply_type)}: {error}"
                ) from None
        info = reply.error or ErrorInfo("other", "Error", "no detail", ref.path, ref.node)
        failure = error_from(info, message)
        stopped = isinstance(failure, ActorStopped) and not isinstance(failure, NodeDown)
        if stopped and by_name(ref) is None:  # one member stopping ends no name-bound ref
            finish_proxy(cell_of(ref), None)
        raise failure

    async def request(
        self,
        ref: RemoteRef[Any],
        out: Outbound,
        wait: float | None,
        reply_type: Any,
        on_timeout: Callable[[], Exception],
    ) -> Any:
        """Send ``out`` to ``ref`` and read its reply, riding out "no responders". Loop only."""
        target = target_of(ref)
        deadline = None if wait is None else time.monotonic() + wait
        if target is not None:
            # An ask must not overtake the tells of its ref: one of them may yet have to be
            # sent again (after a lost reply or a reconnect), and would then come after it.
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):  # not `wait_for`: see `Pump.exchange`
                    await window_of(ref).wait_drained()
            except TimeoutError:
                raise on_timeout() from None
        delay = RETRY_FIRST
        retry = False
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if retry and remaining == 0.0:  # publish no frame that could not be waited for
                raise on_timeout()
            retry = True
            try:
                data = await self._pump.exchange(out, target, remaining)
            except NoResponders:
                name = by_name(ref)
                if name is not None:
                    raise ActorNotFound(
                        f"no node of the cluster serves {name!r} right now; message not delivered",
                        out.message,
                    ) from None
                # Nobody received the frame. Stopped for good only if its node says so.
                if await self.owner_says_gone(ref, deadline):
                    finish_proxy(cell_of(ref), None)
                    raise stopped_error(ref, out.message) from None
                pause = delay if deadline is None else min(delay, deadline - time.monotonic())
                if pause <= 0:
                    raise on_timeout() from None
                await asyncio.sleep(pause)
                delay = min(delay * 2, RETRY_MAX)
                if target is not None and self._membership.is_dead(target):
                    raise NodeDown(f"node {target[0]} is down", out.message) from None
                if not ref.is_alive:  # a down notice came meanwhile
                    raise stopped_error(ref, out.message) from None
                continue
            except TimeoutError:
                raise on_timeout() from None
            return self.read_reply(ref, data, reply_type, out.message)

    async def owner_says_gone(self, ref: RemoteRef[Any], deadline: float | None) -> bool:
        """Whether the node owning ``ref``'s actor confirms the actor has stopped.

        False when the owner says the actor is still exported, and when it does not answer
        (it is not connected right now: reconnecting, or dead and soon declared down).
        Loop only.

        Raises:
            NodeDown: the owner was declared down meanwhile.
        """
        address = address_of(ref)
        body = msgspec.Raw(msgspec.msgpack.encode(address.id))
        envelope = Envelope(WIRE_VERSION, PROBE, "", body, None, self._me.node)
        out = Outbound(
            self._me.node_subject(address.node, address.incarnation),
            msgspec.msgpack.encode(envelope),
            [],
            None,
        )
        wait = _OWNER_ANSWER_WAIT
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                return False
        try:
            frame = await self._pump.exchange(out, target_of(ref), wait)
            check_frame(frame, self._limits.max_message_size, self._limits.max_depth)
            reply = self._replies_decoder.decode(frame)
        except (NoResponders, TimeoutError):
            return False
        except MALFORMED as error:
            self._transport.reject(f"the answer of node {address.node} about {address.path}", error)
            return False
        info = reply.error
        return reply.status == ERROR and info is not None and info.type == "ActorStopped"

    # -- holds: no ask lane past a frame on the cluster connection ----------------------------

    async def held(self, ref: RemoteRef[Any], call: Awaitable[T]) -> T:
        """``call``: an acknowledged send or an ask of ``ref`` over the cluster connection,
        held in the ref's credit while its frame may be on its way (no ask takes a lane
        past it: `Credit.quiet`). Any thread.

        Cancellation: the hold ends once the frame can no longer arrive after a later one.
        """
        with self.holding(ref):
            return await call

    @contextlib.contextmanager
    def holding(self, ref: RemoteRef[Any]) -> Generator[None]:
        """The hold of `held` around a block (also a plain thread's blocking call)."""
        credit = credit_of(ref)
        credit.hold()
        try:
            yield
        except (AskTimeout, SendTimeout):  # abandoned: the frame may still be on its way
            self._release_when_quiet(ref)
            raise
        except Exception:  # answered (a refusal, a remote error) or never sent
            credit.release()
            raise
        except BaseException:  # cancelled: as abandoned
            self._release_when_quiet(ref)
            raise
        credit.release()

    def _release_when_quiet(self, ref: RemoteRef[Any]) -> None:
        """Release ``ref``'s hold once nothing sent before can arrive after a later frame."""
        try:
            self._transport.post(self._start_quiet_release, ref)
        except SystemNotRunning:  # leaving: no lane takes an ask any more
            credit_of(ref).release()

    def _start_quiet_release(self, ref: RemoteRef[Any]) -> None:
        if self._transport.closing:
            credit_of(ref).release()
            return
        self._transport.own(self._quiet_then_release(ref))

    async def _quiet_then_release(self, ref: RemoteRef[Any]) -> None:
        """Loop only: after the ref's stream drained (an abandoned send stays in it until
        answered), a probe through the pump comes back behind everything queued before."""
        try:
            await window_of(ref).wait_drained()
            envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self._me.node)
            subject = self._frames.subject_of(ref)
            probe = Outbound(subject, msgspec.msgpack.encode(envelope), [], None)
            with contextlib.suppress(Exception):  # any answer, or none: the frame is past
                await self._pump.exchange(probe, target_of(ref), self._ack_timeout)
        finally:
            credit_of(ref).release()


def _show(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)
