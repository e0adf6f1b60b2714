"""A small order-processing service built from actors, printing what it did.

Shape of the service:

* ingest: two tasks on the host's event loop flood the workers with orders. Each order is
  offered with ``try_send`` first; when the worker's small mailbox is full that fails at once
  with ``MailboxFull`` (handing the order back), and the task falls back to ``await send``,
  which waits for room: backpressure. The report says how long the producers were blocked.
* workers: slow actors (each order takes a few milliseconds) spread round-robin over the
  worker loops, one thread per loop. Each forwards a ``Processed`` record to the aggregator.
* aggregator: one actor that owns the running totals and answers ``ask`` queries.
* phone client: a plain thread (no event loop) using ``blocking_send`` and ``blocking_ask``.
* shutdown: ``stop`` on each worker drains what its mailbox already accepted, so no order is
  lost; the final summary proves it.

Every figure in the summary is deterministic; only the timings and how often a mailbox was
found full depend on the machine.

    python3 dev.py demo                       # 4 worker loops, 200 orders
    python3 dev.py demo --workers 2 --messages 1000
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import threading
import time

import anyio
import msgspec

import actors

PHONE_ORDERS = 10
PHONE_CUSTOMER = "phone"
CUSTOMERS = ("ada", "grace", "linus", "barbara", "ken")
MAILBOX = 4  # a small mailbox, so that the ingest side feels backpressure
WORK_SECONDS = 0.005  # simulated slow work per order (an I/O call, say)

# -- messages: frozen Structs, so they are "sendable" (immutable) ---------------------------


class Order(msgspec.Struct, frozen=True):
    id: int
    customer: str
    cents: int


class Location(msgspec.Struct, frozen=True):
    actor: str
    thread: str
    loop: str


class WhereAreYou(actors.Request[Location], frozen=True):
    """Ask a worker where it runs."""


class Processed(msgspec.Struct, frozen=True):
    order_id: int
    customer: str
    cents: int


class WorkerDone(msgspec.Struct, frozen=True):
    """A worker's last word, sent from its on_stop."""

    worker: str
    thread: str
    handled: int


class CustomerTotal(msgspec.Struct, frozen=True):
    customer: str
    orders: int
    cents: int


class Report(msgspec.Struct, frozen=True):
    orders: int
    cents: int
    by_customer: tuple[CustomerTotal, ...]  # tuples, not lists or dicts: a reply must be immutable
    by_worker: tuple[WorkerDone, ...]


class Summary(actors.Request[Report], frozen=True):
    """Ask the aggregator for everything it has seen so far."""


class TotalFor(actors.Request[CustomerTotal], frozen=True):
    """Ask the aggregator about one customer."""

    customer: str


# -- actors ---------------------------------------------------------------------------------


class Aggregator(actors.Actor[Processed | WorkerDone | Summary | TotalFor]):
    def __init__(self) -> None:
        # State owned by this actor alone: no lock, one message at a time.
        self.totals: dict[str, tuple[int, int]] = {}
        self.workers: list[WorkerDone] = []

    async def receive(
        self, message: Processed | WorkerDone | Summary | TotalFor
    ) -> Report | CustomerTotal | None:
        match message:
            case Processed(customer=customer, cents=cents):
                orders, total = self.totals.get(customer, (0, 0))
                self.totals[customer] = (orders + 1, total + cents)
            case WorkerDone():
                self.workers.append(message)
            case TotalFor(customer=customer):
                return self._total(customer)
            case Summary():
                by_customer = tuple(self._total(name) for name in sorted(self.totals))
                return Report(
                    orders=sum(c.orders for c in by_customer),
                    cents=sum(c.cents for c in by_customer),
                    by_customer=by_customer,
                    by_worker=tuple(sorted(self.workers, key=lambda w: w.worker)),
                )
        return None

    def _total(self, customer: str) -> CustomerTotal:
        orders, cents = self.totals.get(customer, (0, 0))
        return CustomerTotal(customer, orders, cents)


class Worker(actors.Actor[Order | WhereAreYou]):
    def __init__(self, aggregator: actors.ActorRef[Processed | WorkerDone]) -> None:
        self.aggregator = aggregator
        self.handled = 0
        self.thread = ""

    async def on_start(self) -> None:
        self.thread = threading.current_thread().name  # the home loop's thread

    async def receive(self, message: Order | WhereAreYou) -> Location | None:
        match message:
            case Order():
                await anyio.sleep(WORK_SECONDS)  # the slow part
                await self.aggregator.send(Processed(message.id, message.customer, message.cents))
                self.handled += 1
            case WhereAreYou():
                loop = type(asyncio.get_running_loop())
                return Location(self.name, self.thread, f"{loop.__module__}.{loop.__qualname__}")
        return None

    async def on_stop(self) -> None:
        # Runs after the last accepted order: the aggregator is still running (it was
        # spawned first, so it is stopped last).
        await self.aggregator.send(WorkerDone(self.name, self.thread, self.handled))


# -- the ingest side: tasks on the host loop ------------------------------------------------


@dataclasses.dataclass
class IngestStats:
    """Counters of the ingest tasks. Only touched on the host loop's thread."""

    accepted: int = 0  # try_send found room
    refused: int = 0  # try_send raised MailboxFull
    refuse_seconds: float = 0.0  # time spent in the refused try_send calls
    blocked_seconds: float = 0.0  # time spent waiting in send
    longest_block: float = 0.0


def make_order(order_id: int, customer: str | None = None) -> Order:
    cents = 250 + (order_id * 7919) % 5000  # deterministic amounts: $2.50 .. $52.49
    return Order(order_id, customer or CUSTOMERS[order_id % len(CUSTOMERS)], cents)


WorkerRef = actors.ActorRef[Order | WhereAreYou]


def route(order: Order, workers: list[WorkerRef]) -> WorkerRef:
    return workers[order.id % len(workers)]


# --8<-- [start:ingest]
async def ingest(orders: list[Order], workers: list[WorkerRef], stats: IngestStats) -> None:
    for order in orders:
        worker = route(order, workers)
        started = time.perf_counter()
        try:
            worker.try_send(order)  # never waits
        except actors.MailboxFull:  # nothing was enqueued; the error also carries the order
            stats.refused += 1
            stats.refuse_seconds += time.perf_counter() - started
            started = time.perf_counter()
            await worker.send(order)  # backpressure: wait for room
            waited = time.perf_counter() - started
            stats.blocked_seconds += waited
            stats.longest_block = max(stats.longest_block, waited)
        else:
            stats.accepted += 1


# --8<-- [end:ingest]


# -- the plain-thread client ----------------------------------------------------------------


class PhoneClient:
    """Runs in its own thread, which has no event loop: it uses the blocking_* calls."""

    def __init__(
        self, orders: list[Order], workers: list[WorkerRef], aggregator: actors.ActorRef[TotalFor]
    ) -> None:
        self.orders = orders
        self.workers = workers
        self.aggregator = aggregator
        self.blocked_seconds = 0.0
        self.total: CustomerTotal | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            started = time.perf_counter()
            for order in self.orders:
                route(order, self.workers).blocking_send(order, timeout=10)
            self.blocked_seconds = time.perf_counter() - started
            # Per-sender FIFO: each worker answers this ask only after it handled this
            # thread's earlier orders, and it forwarded them to the aggregator before that.
            for worker in self.workers:
                worker.blocking_ask(WhereAreYou(), timeout=10)
            self.total = self.aggregator.blocking_ask(TotalFor(PHONE_CUSTOMER), timeout=10)
        except BaseException as error:  # handed to the main thread, which re-raises it
            self.error = error


# -- the report -----------------------------------------------------------------------------


def dollars(cents: int) -> str:
    return f"${cents / 100:,.2f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def main(loops: int, messages: int) -> int:
    worker_count = 2 * loops
    total_orders = messages + PHONE_ORDERS
    print(
        f"orders service: {loops} worker loops, {worker_count} workers "
        f"(mailbox capacity {MAILBOX}), {messages} orders from 2 ingest tasks "
        f"+ {PHONE_ORDERS} from a plain thread"
    )
    async with actors.ActorSystem(workers=loops) as system:
        # Spawn order matters at shutdown, which goes in reverse: the aggregator, spawned
        # first, is stopped last, so the workers can still report to it while they drain.
        aggregator = await system.spawn(Aggregator, name="aggregator")
        workers = [
            await system.spawn(lambda: Worker(aggregator), name=f"worker-{i}", capacity=MAILBOX)
            for i in range(worker_count)
        ]

        print("\nplacement (round-robin over the loops in spawn order, after the aggregator)")
        for worker in workers:
            where = await worker.ask(WhereAreYou(), timeout=2.0)
            print(f"  {where.actor:<10} thread {where.thread:<18} loop {where.loop}")

        # The plain thread runs concurrently with the ingest tasks.
        orders = [make_order(i) for i in range(messages)]
        phone = PhoneClient(
            [make_order(i, PHONE_CUSTOMER) for i in range(messages, total_orders)],
            workers,
            aggregator,
        )
        thread = threading.Thread(target=phone.run, name="phone-client")
        thread.start()
        stats = IngestStats()
        async with anyio.create_task_group() as tg:
            for k in range(2):
                tg.start_soon(ingest, orders[k::2], workers, stats)
        # Every ingested order is now in a mailbox or already handled.
        before = await aggregator.ask(Summary(), timeout=2.0)
        await anyio.to_thread.run_sync(thread.join)  # join without stalling the host loop
        if phone.error is not None:
            raise phone.error
        assert phone.total is not None

        host = threading.current_thread().name
        print(f"\nbackpressure (ingest tasks on the host loop, thread {host})")
        print(f"  try_send accepted {stats.accepted} orders at once")
        if stats.refused:
            each = stats.refuse_seconds / stats.refused * 1e6
            print(
                f"  try_send refused {stats.refused} with MailboxFull, "
                f"{each:.1f} microseconds per refusal"
            )
            print(
                f"  then send waited for room: producers blocked "
                f"{ms(stats.blocked_seconds)} in total, longest {ms(stats.longest_block)}"
            )

        print(f"\nplain thread {thread.name!r} (no event loop)")
        sent = ms(phone.blocked_seconds)
        print(
            f"  blocking_send {PHONE_ORDERS} orders in {sent} (it blocks while a mailbox is full)"
        )
        total = phone.total
        print(f"  blocking_ask  -> {total.customer}: {total.orders} orders, {dollars(total.cents)}")

        print("\ngraceful shutdown")
        print(f"  when ingest finished, {before.orders} of {total_orders} orders were processed")
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.stop)  # refuse new orders, drain the mailbox, run on_stop
        try:
            await workers[0].send(make_order(total_orders))
        except actors.ActorStopped as stopped:
            print(f"  a late order raised ActorStopped and came back: {stopped.message}")

        report = await aggregator.ask(Summary(), timeout=2.0)
        lost = total_orders - report.orders
        print(
            f"  workers drained their mailboxes: {report.orders} of {total_orders} processed, "
            + ("none lost" if lost == 0 else f"{lost} LOST")
        )

        print("\nsummary (ask to the aggregator)")
        print(f"  orders {report.orders}, revenue {dollars(report.cents)}")
        for done in report.by_worker:
            print(f"  {done.worker:<10} handled {done.handled:>4} on {done.thread}")
        for customer in report.by_customer:
            revenue = dollars(customer.cents)
            print(f"  {customer.customer:<10} {customer.orders:>4} orders {revenue:>10}")
    # Leaving the block stopped the aggregator and joined the worker threads.
    print("\nshut down cleanly")
    return 0 if lost == 0 else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--workers", type=int, default=4, metavar="N", help="worker loops (4)")
    parser.add_argument("--messages", type=int, default=200, metavar="N", help="orders (200)")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.messages < 1:
        parser.error("--workers and --messages must be at least 1")
    return args


if __name__ == "__main__":
    options = parse_args(sys.argv[1:])
    sys.exit(actors.run(main, options.workers, options.messages))
