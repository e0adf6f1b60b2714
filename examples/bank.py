"""A bank of account actors: money is conserved under concurrent transfers and crashes.

The finished program of the tutorial (docs/tutorial.md), with knobs:

    python3 dev.py run examples/bank.py
    python3 dev.py run examples/bank.py --accounts 20 --clients 16 --crash-rate 0.05

Shape:

* a ledger actor stands for the database: it holds every account's saved balance;
* account actors own a balance each, load it from the ledger when they start and save
  every change before they acknowledge it. With ``--crash-rate`` above 0 they crash at
  random, on purpose, at the start of a message, before they change anything;
* a branch actor supervises the accounts: it restarts a crashed account (``OneForOne``), and
  the new instance reloads its balance from the ledger;
* the bank actor runs each transfer as a withdrawal followed by a deposit, and retries a
  step whose account crashed: safe, because a crashed step changed nothing.

Many clients transfer money at once; at the end the bank's total, counted both from the
accounts and from the ledger, is exactly what it was at the start.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from typing import TypeVar

import anyio
import msgspec

import actors

OPENING = 100  # every account opens with this much
R = TypeVar("R")


# --8<-- [start:ledger]
class Load(actors.Request[int], frozen=True):
    owner: str


class Save(actors.Request[None], frozen=True):
    owner: str
    balance: int


class LedgerTotal(actors.Request[int], frozen=True):
    pass


class Ledger(actors.Actor[Load | Save | LedgerTotal]):
    """The durable store. A real service would use a database; the shape is the same."""

    def __init__(self) -> None:
        self.balances: dict[str, int] = {}

    async def receive(self, message: Load | Save | LedgerTotal) -> int | None:
        match message:
            case Load(owner=owner):
                return self.balances[owner]
            case Save(owner=owner, balance=balance):
                self.balances[owner] = balance
            case LedgerTotal():
                return sum(self.balances.values())
        return None


# --8<-- [end:ledger]


# --8<-- [start:account]
class Deposit(actors.Request[int], frozen=True):
    amount: int


class Withdraw(actors.Request[bool], frozen=True):
    amount: int


class Balance(actors.Request[int], frozen=True):
    pass


AccountMessage = Deposit | Withdraw | Balance
AccountRef = actors.ActorRef[AccountMessage]
LedgerRef = actors.ActorRef[Load | Save]


class InjectedCrash(Exception):
    """A crash on purpose, raised before the account has changed anything."""


class Account(actors.Actor[AccountMessage]):
    def __init__(self, owner: str, ledger: LedgerRef, crash_rate: float) -> None:
        self.owner = owner
        self.ledger = ledger
        self.crash_rate = crash_rate
        self.balance = 0

    async def on_start(self) -> None:
        # Runs at the first start and after every restart: the saved balance is the truth.
        self.balance = await self.ledger.ask(Load(self.owner))

    async def receive(self, message: AccountMessage) -> int | bool:
        if random.random() < self.crash_rate:
            raise InjectedCrash(f"{self.owner} crashed on purpose")
        match message:
            case Deposit(amount=amount):
                await self.save(self.balance + amount)
                return self.balance
            case Withdraw(amount=amount):
                if amount > self.balance:
                    return False
                await self.save(self.balance - amount)
                return True
            case Balance():
                return self.balance

    async def save(self, balance: int) -> None:
        await self.ledger.ask(Save(self.owner, balance))  # saved first ...
        self.balance = balance  # ... then changed, then acknowledged (the reply)


# --8<-- [end:account]


# --8<-- [start:branch]
class Open(actors.Request[AccountRef], frozen=True):
    owner: str
    opening: int


class Branch(actors.Actor[Open]):
    """Supervises the accounts: a crashed account is restarted, alone (one for one).

    More than 1000 restarts within a second would mean something is badly wrong: the branch
    then gives up, stops the accounts and fails itself (escalation). The limit is this high
    only because this program crashes on purpose; a real service allows a few a minute.
    """

    supervision = actors.OneForOne(max_restarts=1000, within=1.0)

    def __init__(self, ledger: actors.ActorRef[Load | Save], crash_rate: float) -> None:
        self.ledger = ledger
        self.crash_rate = crash_rate

    async def receive(self, message: Open) -> AccountRef:
        owner, ledger, crash_rate = message.owner, self.ledger, self.crash_rate
        await ledger.ask(Save(owner, message.opening))
        return await self.spawn(
            lambda: Account(owner, ledger, crash_rate),
            name=owner,
            restart=actors.Restart.PERMANENT,
        )


# --8<-- [end:branch]


# --8<-- [start:bank]
class Transfer(actors.Request[bool], frozen=True):
    source: str
    target: str
    amount: int


class Total(actors.Request[int], frozen=True):
    pass


class Crashes(actors.Request[int], frozen=True):
    pass


BankMessage = Transfer | Total | Crashes

RETRIES = 20  # attempts per step; each crash costs one


class Bank(actors.Actor[BankMessage]):
    def __init__(self, accounts: dict[str, AccountRef]) -> None:
        self.accounts = accounts
        self.crashes = 0

    async def receive(self, message: BankMessage) -> bool | int:
        match message:
            case Transfer(source=source, target=target, amount=amount):
                if amount <= 0 or source == target:
                    return False
                if not await self.call(source, Withdraw(amount)):
                    return False
                await self.call(target, Deposit(amount))
                return True
            case Total():
                return sum([await self.call(owner, Balance()) for owner in self.accounts])
            case Crashes():
                return self.crashes

    async def call(self, owner: str, request: actors.Request[R]) -> R:
        """Ask an account; if it crashed on the request, ask again once it is restarted."""
        for _ in range(RETRIES):
            try:
                return await self.accounts[owner].ask(request)
            except InjectedCrash:
                self.crashes += 1  # the step changed nothing: retrying it is safe
        raise RuntimeError(f"account {owner} keeps crashing")


# --8<-- [end:bank]


async def client(
    bank: actors.ActorRef[Transfer], owners: list[str], transfers: int, seed: int
) -> int:
    """Make random transfers; return how many were refused for lack of funds."""
    rng = random.Random(seed)
    refused = 0
    for _ in range(transfers):
        source, target = rng.sample(owners, 2)
        if not await bank.ask(Transfer(source, target, rng.randint(1, OPENING // 2))):
            refused += 1
    return refused


class Outcome(msgspec.Struct, frozen=True):
    before: int
    after: int
    ledger: int


# --8<-- [start:main]
async def run_bank(
    accounts: int, clients: int, transfers: int, workers: int, crash_rate: float
) -> Outcome:
    owners = [f"owner{i}" for i in range(accounts)]
    async with actors.ActorSystem(workers=workers, name="bank") as system:
        ledger = await system.spawn(Ledger, name="ledger")
        branch = await system.spawn(lambda: Branch(ledger, crash_rate), name="branch")
        refs = {owner: await branch.ask(Open(owner, OPENING)) for owner in owners}
        bank = await system.spawn(lambda: Bank(refs), name="bank")
        before = await bank.ask(Total())
        print(f"bank: {accounts} accounts on {workers} worker loops, {before} in total")

        refused: list[int] = []

        async def one_client(seed: int) -> None:
            refused.append(await client(bank, owners, transfers, seed))

        async with anyio.create_task_group() as group:
            for seed in range(clients):
                group.start_soon(one_client, seed)
        print(
            f"{clients} clients made {clients * transfers} transfers "
            f"({sum(refused)} refused for lack of funds)"
        )
        crashes = await bank.ask(Crashes())
        print(f"accounts crashed {'and were restarted ' if crashes else ''}{crashes} times")
        outcome = Outcome(before, await bank.ask(Total()), await ledger.ask(LedgerTotal()))
        verdict = "conserved" if outcome.before == outcome.after == outcome.ledger else "LOST"
        print(f"total after: {outcome.after}, in the ledger: {outcome.ledger} ({verdict})")
    print("shut down cleanly")
    return outcome


# --8<-- [end:main]


def main() -> None:
    parser = argparse.ArgumentParser(description="Concurrent transfers between account actors.")
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--transfers", type=int, default=200, help="per client")
    parser.add_argument("--workers", type=int, default=2, help="worker event loops")
    parser.add_argument("--crash-rate", type=float, default=0.02, help="per message, 0..0.05")
    options = parser.parse_args()
    if options.accounts < 2 or min(options.clients, options.transfers, options.workers) < 1:
        parser.error("need at least 2 accounts and at least 1 client, transfer and worker")
    if not 0 <= options.crash_rate <= 0.05:
        parser.error("--crash-rate must be between 0 and 0.05")
    # The injected crashes are logged at ERROR with a traceback each: too many to read.
    logging.basicConfig(level=logging.CRITICAL)
    outcome = actors.run(
        run_bank,
        options.accounts,
        options.clients,
        options.transfers,
        options.workers,
        options.crash_rate,
    )
    sys.exit(0 if outcome.before == outcome.after == outcome.ledger else 1)


if __name__ == "__main__":
    main()
