"""Testing an actor with `actors.testing`: probes as reply addresses, and state inspection.

The test functions below are what you would put in a pytest module (with
``pytestmark = pytest.mark.anyio``); here ``main`` runs them, so that the file also runs on
its own: ``python3 dev.py run examples/testing/probes.py [asyncio|trio]``.
"""

from __future__ import annotations

import sys

import anyio
import msgspec

import actors
from actors import testing


# --8<-- [start:actor]
class Receipt(msgspec.Struct, frozen=True):
    balance: int


class Refused(msgspec.Struct, frozen=True):
    amount: int
    balance: int


class Deposit(msgspec.Struct, frozen=True):
    amount: int
    reply_to: actors.ActorRef[Receipt]


class Withdraw(msgspec.Struct, frozen=True):
    amount: int
    reply_to: actors.ActorRef[Receipt | Refused]


class Account(actors.Actor[Deposit | Withdraw]):
    """Answers every operation to its ``reply_to``, and keeps a history of the moves."""

    def __init__(self, opening: int = 0) -> None:
        self.balance = opening
        self.history: list[int] = []

    async def receive(self, message: Deposit | Withdraw) -> None:
        match message:
            case Deposit(amount, reply_to):
                self.balance += amount
                self.history.append(amount)
                await reply_to.send(Receipt(self.balance))
            case Withdraw(amount, reply_to) if amount > self.balance:
                await reply_to.send(Refused(amount, self.balance))
            case Withdraw(amount, reply_to):
                self.balance -= amount
                self.history.append(-amount)
                await reply_to.send(Receipt(self.balance))


# --8<-- [end:actor]


# --8<-- [start:probe]
async def test_an_overdraft_is_refused() -> None:
    async with actors.ActorSystem(workers=2) as system:
        account = await system.spawn(lambda: Account(100))
        probe = await testing.Probe.spawn(system)  # a recording actor, and an ActorRef

        await account.send(Withdraw(30, reply_to=probe))
        receipt = await probe.expect(Receipt)  # typed: a Receipt, or AssertionError
        assert receipt.balance == 70

        await account.send(Withdraw(500, reply_to=probe))
        await probe.expect(Refused, where=lambda refused: refused.balance == 70)
        await probe.expect_no_message(within=0.05)  # nothing else arrived


# --8<-- [end:probe]


# --8<-- [start:inspect]
async def test_the_history_records_every_move() -> None:
    async with actors.ActorSystem(workers=2) as system:
        account = await system.spawn(lambda: Account(0))
        probe = await testing.Probe.spawn(system)
        for amount in (50, 20):
            await account.send(Deposit(amount, reply_to=probe))
        await account.send(Withdraw(30, reply_to=probe))
        await probe.receive_n(3)  # the three receipts: everything was handled

        # Read the actor's state on its own loop, between two messages. Return copies.
        history = await testing.inspect(account, lambda a: tuple(a.history), kind=Account)
        assert history == (50, 20, -30)


# --8<-- [end:inspect]


async def test_a_stopped_account_cannot_be_inspected() -> None:
    async with actors.ActorSystem(workers=1) as system:
        account = await system.spawn(Account)
        await account.stop()
        try:
            await testing.inspect(account, lambda a: a.balance)
        except actors.ActorStopped:
            pass
        else:
            raise AssertionError("inspect of a stopped actor must raise ActorStopped")


async def main() -> None:
    tests = (
        test_an_overdraft_is_refused,
        test_the_history_records_every_move,
        test_a_stopped_account_cannot_be_inspected,
    )
    for test in tests:
        await test()
        print(f"passed: {test.__name__}")


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
