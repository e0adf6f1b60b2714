"""The messages the front-end and worker nodes exchange, registered under stable names.

Both programs import this module; the explicit names make the wire independent of how
each program imports it (as ``protocol`` from a script, or as a package module).
"""

from __future__ import annotations

import msgspec

import actors
from actors.cluster import register_message


# --8<-- [start:messages]
@register_message(name="bank.Deposit")
class Deposit(msgspec.Struct, frozen=True):
    amount: int


@register_message(name="bank.Withdraw")
class Withdraw(actors.Request[int], frozen=True):
    """Take ``amount`` out; the reply is the new balance. Overdrawing raises ValueError."""

    amount: int


@register_message(name="bank.Balance")
class Balance(actors.Request[int], frozen=True):
    pass


AccountMsg = Deposit | Withdraw | Balance
# --8<-- [end:messages]


# --8<-- [start:resize]
@register_message(name="media.Resize")
class Resize(actors.Request[str], frozen=True):
    """Resize image ``image`` to ``width`` pixels; the reply says which node did it."""

    image: int
    width: int


# --8<-- [end:resize]
