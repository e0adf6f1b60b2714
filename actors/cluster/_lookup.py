"""Lookups: which node serves a public name, asked over the cluster, patiently.

A lookup publishes a probe on the name's subject (``<prefix>.name.<name>``), whose queue
group holds every node serving it; one of them answers with the `Address` of what it
serves there. "No responders" means nobody serves the name yet: the lookup asks again,
backing off, within its timeout (a name may be published a moment after the caller asks).

Invariants:

- A timeout of one attempt means a slow owner (nobody subscribed answers "no responders"
  at once), so the next attempt waits twice as long for it, within the caller's timeout:
  an owner slow under load is waited for, not asked again and again.
- An answer naming a node declared down is not taken: the lookup asks again.
- Loop only.

Imports: ``_frames``, ``_pump`` and the registry (which makes the refs); only
``_outbound`` imports this module.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import msgspec

from .._errors import ActorNotFound
from ._frames import Outbound
from ._inbound import NIL
from ._pump import NoResponders
from ._registry import GROUP_ID
from ._wire import (
    MALFORMED,
    OK,
    PROBE,
    WIRE_VERSION,
    Address,
    Envelope,
    Reply,
    WireError,
    check_frame,
    decoder_for,
)

if TYPE_CHECKING:
    from ._membership import Membership
    from ._options import Limits
    from ._pump import Pump
    from ._registry import Registry
    from ._transport import Transport

__all__ = ("Lookups",)

# Seconds the first lookup attempt waits for a subscribed owner's answer; each attempt that
# times out doubles it, within the caller's timeout (an owner slow under load is waited for,
# not asked again and again while its first answer is on its way).
_LOOKUP_ANSWER_WAIT = 1.0


class Lookups:
    """Finds what serves a public name anywhere in the cluster.

    Example:
        ```python
        lookups = Lookups(transport, registry, membership, pump, Limits())
        ref = await lookups.lookup("ledger", 5.0)  # on the cluster loop
        ```
    """

    def __init__(
        self,
        transport: Transport,
        registry: Registry,
        membership: Membership,
        pump: Pump,
        limits: Limits,
    ) -> None:
        self._transport = transport
        self._me = transport.me
        self._registry = registry
        self._membership = membership
        self._pump = pump
        self._limits = limits
        self._replies_decoder: msgspec.msgpack.Decoder[Reply] = decoder_for(Reply, None)
        self._addresses: msgspec.msgpack.Decoder[Address] = decoder_for(Address, None)

    async def lookup(self, name: str, timeout: float, *, group: bool = False) -> Any:
        """The ref of whatever serves public ``name``, waiting up to ``timeout`` for one.

        A durable actor's name gives its `DurableRef`, a served pool's (or ``group``) a
        `GroupRef`, else the one actor's `RemoteRef`. Loop only.

        Raises:
            ActorNotFound: nobody served ``name`` within ``timeout`` seconds.
        """
        envelope = Envelope(WIRE_VERSION, PROBE, "", NIL, None, self._me.node)
        data = msgspec.msgpack.encode(envelope)
        deadline = time.monotonic() + timeout
        delay = 0.01
        attempts = 0
        answer_wait = _LOOKUP_ANSWER_WAIT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 and attempts:
                raise ActorNotFound(
                    f"no node of the cluster serves a public actor named {name!r} "
                    f"(waited {timeout} s)"
                )
            attempts += 1
            out = Outbound(self._me.name_subject(name), data, [], None)
            try:
                # An owner that is subscribed answers at once; under load (a saturated
                # GIL) that can still take a while: "no responders" comes back at once, so
                # a timeout means a slow owner, and the next attempt waits longer for it.
                wait = max(_LOOKUP_ANSWER_WAIT, min(answer_wait, remaining))
                frame = await self._pump.exchange(out, None, wait)
                check_frame(frame, self._limits.max_message_size, self._limits.max_depth)
                reply = self._replies_decoder.decode(frame)
                if reply.status != OK:
                    raise WireError("the lookup was refused")
                address = self._addresses.decode(reply.body)
            except NoResponders:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.2)
                continue
            except TimeoutError:
                answer_wait *= 2
                continue
            except MALFORMED as error:
                self._transport.reject(f"a lookup answer for {name!r}", error)
                continue
            if self._membership.is_dead((address.node, address.incarnation)):
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            if address.durable and not group:  # durable on every node, the owner's too
                return self._registry.durable_ref(address.durable, address)
            if group or address.id == GROUP_ID:  # a served pool: address the whole group
                return self._registry.group_ref(name, address)
            return self._registry.ref_for(address)
