"""Publish and subscribe: market events on the system's event bus (docs/patterns/events.md).

    python3 dev.py run examples/patterns/events.py

A ledger must see every trade (policy "wait": the publisher waits for it); a dashboard only
cares about the latest prices (policy "drop_oldest": a slow dashboard skips stale ones); an
audit log subscribes to the base class and sees everything.

Every actor runs on the host's loop (``placement="host"``) so that the output is the same on
every run: the ten prices are published without the dashboard getting a turn in between.
"""

from __future__ import annotations

import msgspec

import actors


# --8<-- [start:events]
class MarketEvent(msgspec.Struct, frozen=True):
    symbol: str


class PriceChanged(MarketEvent, frozen=True):
    price: int


class TradeExecuted(MarketEvent, frozen=True):
    quantity: int


# --8<-- [end:events]


class Summary(actors.Request[str], frozen=True):
    pass


# --8<-- [start:subscribers]
class Dashboard(actors.Actor[PriceChanged | Summary]):
    def __init__(self) -> None:
        self.updates: list[int] = []

    async def receive(self, message: PriceChanged | Summary) -> str | None:
        match message:
            case PriceChanged(price=price):
                self.updates.append(price)
            case Summary():
                return f"dashboard showed {self.updates}"
        return None


class Ledger(actors.Actor[TradeExecuted | Summary]):
    def __init__(self) -> None:
        self.position = 0

    async def receive(self, message: TradeExecuted | Summary) -> str | None:
        match message:
            case TradeExecuted(quantity=quantity):
                self.position += quantity
            case Summary():
                return f"ledger position {self.position}"
        return None


class Audit(actors.Actor[MarketEvent | Summary]):  # the base class: every market event
    def __init__(self) -> None:
        self.kinds: dict[str, int] = {}

    async def receive(self, message: MarketEvent | Summary) -> str | None:
        if isinstance(message, Summary):
            return f"audit logged {sorted(self.kinds.items())}"
        kind = type(message).__name__
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return None


# --8<-- [end:subscribers]


async def main() -> None:
    async with actors.ActorSystem(placement="host") as system:
        # --8<-- [start:subscribe]
        dashboard = await system.spawn(Dashboard, name="dashboard", capacity=3)
        ledger = await system.spawn(Ledger, name="ledger", capacity=1)
        audit = await system.spawn(Audit, name="audit")
        system.events.subscribe(dashboard, PriceChanged, policy="drop_oldest")
        system.events.subscribe(ledger, TradeExecuted, policy="wait")
        system.events.subscribe(audit, MarketEvent)  # drop_newest, the default
        # --8<-- [end:subscribe]

        # --8<-- [start:publish]
        for price in range(100, 110):
            await system.events.publish(PriceChanged("ACME", price))
        for quantity in (5, -2, 10):
            await system.events.publish(TradeExecuted("ACME", quantity))
        # --8<-- [end:publish]
        print("published 10 prices and 3 trades")
        for ref in (dashboard, ledger, audit):
            print(await ref.ask(Summary()))

        # --8<-- [start:statistics]
        for sub in system.events.subscriptions():
            print(
                f"{sub.subscriber.name} <- {sub.event_type.__name__} ({sub.policy}): "
                f"delivered {sub.delivered}, dropped {sub.dropped}, evicted {sub.evicted}"
            )
        # --8<-- [end:statistics]

        # --8<-- [start:errors]
        try:
            system.events.subscribe(ledger, PriceChanged)  # type: ignore[arg-type]
        except actors.MessageTypeError as error:
            print(f"MessageTypeError: {error}")
        try:
            await system.events.publish(["a", "list"])
        except actors.NotSendableError:
            print("a mutable event is refused: NotSendableError")
        # --8<-- [end:errors]

        # --8<-- [start:dead]
        await audit.stop()  # a subscriber that stops is unsubscribed
        print([sub.subscriber.name for sub in system.events.subscriptions()])
        # --8<-- [end:dead]


if __name__ == "__main__":
    actors.run(main)
