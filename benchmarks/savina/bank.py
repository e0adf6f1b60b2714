"""Bank transaction: a teller runs n transfers between 1000 accounts (100 in flight at a time).

A transfer is four messages: Debit (teller to source), Credit (source to destination), and
the acknowledgements back (destination to source, source to teller). Savina's teller sends
every transfer at once; with bounded mailboxes that can deadlock (the teller blocked on a full
account whose acknowledgement waits on the teller's full mailbox), so this teller keeps a
window of 100. At the end it collects every balance: money is neither created nor lost.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from ..portable import EXIT, Behaviour, Ref, Start
from .program import Program

ACCOUNTS = 1000
WINDOW = 100
INITIAL = 1_000_000


class Debit(msgspec.Struct, frozen=True):
    amount: int
    destination: Ref
    teller: Ref


class Credit(msgspec.Struct, frozen=True):
    amount: int
    source: Ref
    teller: Ref


class Credited(msgspec.Struct, frozen=True):
    teller: Ref


class Transferred(msgspec.Struct, frozen=True):
    pass


class GetBalance(msgspec.Struct, frozen=True):
    reply_to: Ref


class Balance(msgspec.Struct, frozen=True):
    amount: int


TRANSFERRED = Transferred()


class Teller(Behaviour):
    def __init__(self, n: int) -> None:
        self.n = n
        self.sent = 0
        self.done = 0
        self.balances = 0
        self.reported = 0
        self.accounts: list[Any] = []
        self.random = random.Random(42)

    async def _transfer(self) -> None:
        self.sent += 1
        source, destination = self.random.sample(range(ACCOUNTS), 2)
        amount = self.random.randrange(1, 1000)
        debit = Debit(amount, self.accounts[destination], self.ctx.self_ref)
        await self.accounts[source].send(debit)

    async def receive(self, message: Any) -> None:
        if type(message) is Transferred:
            self.done += 1
            if self.sent < self.n:
                await self._transfer()
            elif self.done == self.n:
                me = self.ctx.self_ref
                for account in self.accounts:
                    await account.send(GetBalance(me))
        elif type(message) is Balance:
            self.balances += message.amount
            self.reported += 1
            if self.reported == ACCOUNTS:
                for account in self.accounts:
                    await account.send(EXIT)
                self.ctx.finish((self.done, self.balances))
                self.ctx.stop()
        elif type(message) is Start:
            self.accounts = [await self.ctx.spawn(Account) for _ in range(ACCOUNTS)]
            for _ in range(min(WINDOW, self.n)):
                await self._transfer()


class Account(Behaviour):
    def __init__(self) -> None:
        self.balance = INITIAL

    async def receive(self, message: Any) -> None:
        if type(message) is Debit:
            self.balance -= message.amount
            credit = Credit(message.amount, self.ctx.self_ref, message.teller)
            await message.destination.send(credit)
        elif type(message) is Credit:
            self.balance += message.amount
            await message.source.send(Credited(message.teller))
        elif type(message) is Credited:
            await message.teller.send(TRANSFERRED)
        elif type(message) is GetBalance:
            await message.reply_to.send(Balance(self.balance))
        else:
            self.ctx.stop()


PROGRAM = Program(
    "bank",
    f"Bank transaction: n transfers between {ACCOUNTS} accounts",
    Teller,
    size=50_000,
    ops=lambda n: 4 * n + 3 * ACCOUNTS,
    expected=lambda n: (n, ACCOUNTS * INITIAL),
)
