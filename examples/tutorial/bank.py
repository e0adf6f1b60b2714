"""Tutorial, step 2: a bank of account actors, with transfers from concurrent clients.

Run it with ``python3 dev.py run examples/tutorial/bank.py``.
"""

from __future__ import annotations

import random

import anyio
from account import Account, AccountMessage, Balance, Deposit, Withdraw

import actors

# --8<-- [start:messages]
AccountRef = actors.ActorRef[AccountMessage]


class Open(actors.Request[AccountRef], frozen=True):
    """Open an account; the reply is its ref."""

    owner: str
    opening: int


class Transfer(actors.Request[bool], frozen=True):
    """Move money between two accounts; the reply says whether it happened."""

    source: str
    target: str
    amount: int


class Total(actors.Request[int], frozen=True):
    """The sum of every balance: what an auditor checks."""


BankMessage = Open | Transfer | Total
# --8<-- [end:messages]


# --8<-- [start:bank]
class Bank(actors.Actor[BankMessage]):
    def __init__(self) -> None:
        self.accounts: dict[str, AccountRef] = {}

    async def receive(self, message: BankMessage) -> AccountRef | bool | int:
        match message:
            case Open(owner=owner, opening=opening):
                account = await self.system.spawn(lambda: Account(opening), name=f"account-{owner}")
                self.accounts[owner] = account
                return account
            case Transfer(source=source, target=target, amount=amount):
                if amount <= 0 or source == target:
                    return False
                if not await self.accounts[source].ask(Withdraw(amount)):
                    return False  # not enough money: nothing moved
                await self.accounts[target].ask(Deposit(amount))
                return True
            case Total():
                return sum([await account.ask(Balance()) for account in self.accounts.values()])


# --8<-- [end:bank]


# --8<-- [start:main]
OWNERS = ("ada", "grace", "linus", "barbara")
CLIENTS = 8
TRANSFERS = 100  # per client


async def client(bank: actors.ActorRef[Transfer], seed: int, done: list[bool]) -> None:
    rng = random.Random(seed)
    for _ in range(TRANSFERS):
        source, target = rng.sample(OWNERS, 2)
        done.append(await bank.ask(Transfer(source, target, rng.randint(1, 40))))


async def main() -> None:
    async with actors.ActorSystem(workers=2) as system:
        bank = await system.spawn(Bank, name="bank")
        for owner in OWNERS:
            await bank.ask(Open(owner, opening=100))
        print("total before:", await bank.ask(Total()))

        done: list[bool] = []
        async with anyio.create_task_group() as clients:
            for seed in range(CLIENTS):
                clients.start_soon(client, bank, seed, done)
        print(f"{len(done)} transfers, {done.count(False)} refused for lack of funds")
        total = await bank.ask(Total())
        print("total after:", total)
        assert total == 100 * len(OWNERS), "money was created or destroyed"


if __name__ == "__main__":
    actors.run(main)
# --8<-- [end:main]
