"""Tutorial, step 1: one account actor that owns a balance.

Run it with ``python3 dev.py run examples/tutorial/account.py``.
"""

from __future__ import annotations

# --8<-- [start:messages]
import actors


class Deposit(actors.Request[int], frozen=True):
    """Add money; the reply is the new balance."""

    amount: int


class Withdraw(actors.Request[bool], frozen=True):
    """Take money out; the reply says whether there was enough."""

    amount: int


class Balance(actors.Request[int], frozen=True):
    """How much is in the account?"""


AccountMessage = Deposit | Withdraw | Balance
# --8<-- [end:messages]


# --8<-- [start:actor]
class Account(actors.Actor[AccountMessage]):
    def __init__(self, opening: int = 0) -> None:
        self.balance = opening  # owned by this actor: only its own task touches it

    async def receive(self, message: AccountMessage) -> int | bool:
        match message:
            case Deposit(amount=amount):
                self.balance += amount
                return self.balance
            case Withdraw(amount=amount):
                if amount > self.balance:
                    return False  # an expected outcome is a reply, not an exception
                self.balance -= amount
                return True
            case Balance():
                return self.balance


# --8<-- [end:actor]


# --8<-- [start:main]
async def main() -> None:
    async with actors.ActorSystem(workers=2) as system:
        ada = await system.spawn(lambda: Account(opening=100), name="ada")
        print("deposit 50 ->", await ada.ask(Deposit(50)))
        print("withdraw 500 ->", await ada.ask(Withdraw(500)))
        print("withdraw 30 ->", await ada.ask(Withdraw(30)))
        print("balance:", await ada.ask(Balance()))
        print(ada)


if __name__ == "__main__":
    actors.run(main)
# --8<-- [end:main]
