"""A same-loop tell in instructions: `actors` next to the two peers that bound it, piece by piece.

Run as ``python -m benchmarks.tell_instructions`` (``--messages``, ``--python``). Each row
runs one variant in a fresh process under ``valgrind --tool=callgrind`` twice, with
``--messages`` messages and with none, and prints (difference) / messages: the
instructions one more message costs. Callgrind counts instructions, not seconds, so a row
reads the same on a busy machine as on a quiet one (with ``PYTHONHASHSEED=0``, which this
sets, and the collector off, which each variant does).

The variants (``python -m benchmarks.tell_instructions --variant NAME N`` runs one without
valgrind):

* ``send``: the `tell-same` workload: a producer actor does ``await ref.send(Inc(i))`` to a
  ``def receive`` counter on its own loop (capacity 1,000);
* ``send-roomy``: the same with capacity 200,000: no producer ever waits;
* ``try-send``: ``ref.try_send(Inc(i))`` instead (capacity 200,000: it never fails);
* ``put-nowait``: the ref's private mailbox ``put_nowait`` instead (capacity 200,000);
* ``put-nop``: the same to a counter whose ``receive`` does nothing (the drain's own work
  per message: ``put-nop`` minus ``mailbox`` minus ``call``);
* ``queue``: the ``asyncio.Queue`` actor's `tell-same` code, on one uvloop loop;
* ``callback``: the callback actor's `tell-same` code, on one uvloop loop;
* ``loop``: the producer's ``for`` loop and ``Inc(i)`` alone, in an actor;
* ``handle``: the benchmark's handler (``CounterState.handle``) over a list, minus the list;
* ``call``: an empty ``def receive`` called over a list, minus the list: the call alone;
* ``append``, ``locked-append``, ``mailbox``: ``Inc(i)`` put in a loop, with no consumer, by
  a bare ``deque.append``; the same inside a ``threading.Lock``'s ``acquire()`` and
  ``release()``; a mailbox's ``put_nowait`` (its consumer token taken, so nothing wakes).

``docs/benchmarks.md`` ("In instructions, with a synchronous counter") reads the pieces.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import re
import shutil
import subprocess
import sys
import threading

import msgspec

import actors
from actors._mailbox import Mailbox

from .common import CAPACITY, Collect, CounterState, Echo, Inc
from .peers.callback_actor import CallbackActor
from .peers.callback_actor import _produce as callback_produce  # pyright: ignore[reportPrivateUsage]
from .peers.queue_actor import _produce_same, _spawn_counter  # pyright: ignore[reportPrivateUsage]
from .subject import SyncCounter

ROOMY = 200_000


class NopCounter(actors.Actor[Inc | Collect | Echo]):
    """`SyncCounter` with a handler that does nothing: the drain's own cost per message."""

    def receive(self, message: Inc | Collect | Echo) -> None:
        return None


ACTOR_VARIANTS: dict[str, tuple[str, int, type[actors.Actor[Inc | Collect | Echo]]]] = {
    # name: (producer job, counter capacity, counter)
    "send": ("send", CAPACITY, SyncCounter),
    "send-roomy": ("send", ROOMY, SyncCounter),
    "try-send": ("try", ROOMY, SyncCounter),
    "put-nowait": ("put", ROOMY, SyncCounter),
    "put-nop": ("put", ROOMY, NopCounter),
    "loop": ("loop", CAPACITY, SyncCounter),
}
VARIANTS = (
    *ACTOR_VARIANTS,
    "queue",
    "callback",
    "handle",
    "call",
    "append",
    "locked-append",
    "mailbox",
)


class Job(msgspec.Struct, frozen=True):
    """Produce ``n`` messages to ``target`` the way ``how`` says."""

    how: str
    target: actors.ActorRef[Inc | Collect | Echo]
    n: int


class Producer(actors.Actor[Job]):
    async def receive(self, message: Job) -> None:
        target, n = message.target, message.n
        if message.how == "send":
            send = target.send
            for i in range(n):
                await send(Inc(i))
        elif message.how == "try":
            try_send = target.try_send
            for i in range(n):
                try_send(Inc(i))
        elif message.how == "put":
            put = target._mailbox.put_nowait  # pyright: ignore[reportPrivateUsage]
            for i in range(n):
                put(Inc(i))
        else:
            for i in range(n):
                Inc(i)


async def _actors(
    how: str, capacity: int, kind: type[actors.Actor[Inc | Collect | Echo]], n: int
) -> None:
    system = actors.ActorSystem(workers=1, use_uvloop=True, name="instructions")
    await system.start()
    try:
        counter = await system.spawn(kind, placement=0, capacity=capacity)
        producer = await system.spawn(Producer, placement=0)
        await producer.ask(Job(how, counter, 1000), timeout=None)  # warm every path up
        await producer.ask(Job(how, counter, n), timeout=None)
        await counter.ask(Collect(), timeout=None)
    finally:
        await system.shutdown()


async def _queue(n: int) -> None:
    actor = await _spawn_counter(CAPACITY)
    await _produce_same(actor, 1000)
    await _produce_same(actor, n)
    await actor.ask(Collect())


async def _callback(n: int) -> None:
    actor = CallbackActor(CounterState().handle)
    await callback_produce(actor, 1000)
    await callback_produce(actor, n)
    await actor.ask(Collect())


def _handle(n: int) -> None:
    messages = [Inc(i) for i in range(n)]
    handle = CounterState().handle
    for message in messages:
        handle(message)


def _puts(name: str, n: int) -> None:
    if name == "mailbox":
        mailbox: Mailbox[Inc] = Mailbox(n + 1, lambda: None, scheduled=True)
        put_nowait = mailbox.put_nowait
        for i in range(n):
            put_nowait(Inc(i))
        return
    queue: collections.deque[Inc] = collections.deque()
    append = queue.append
    if name == "append":
        for i in range(n):
            append(Inc(i))
        return
    lock = threading.Lock()
    for i in range(n):
        lock.acquire()
        append(Inc(i))
        lock.release()


class _Receiver:
    def receive(self, message: Inc) -> None:  # `NopCounter.receive`, outside an actor
        return None


def _call(n: int) -> None:
    messages = [Inc(i) for i in range(n)]
    receive = _Receiver().receive
    for message in messages:
        receive(message)


def _list(n: int) -> None:
    messages = [Inc(i) for i in range(n)]
    for _ in messages:
        pass


def run_variant(name: str, n: int) -> None:
    """Run one variant with ``n`` messages in this process."""
    gc.disable()  # instructions of the transport, not of collections
    if name in ACTOR_VARIANTS:
        how, capacity, kind = ACTOR_VARIANTS[name]
        asyncio.run(_actors(how, capacity, kind, n))
    elif name in ("queue", "callback"):
        import uvloop  # the peers' loop; only here: there is no uvloop on Windows

        uvloop.run(_queue(n) if name == "queue" else _callback(n))
    elif name == "handle":
        _handle(n)
    elif name == "call":
        _call(n)
    elif name in ("append", "locked-append", "mailbox"):
        _puts(name, n)
    elif name == "list":
        _list(n)
    else:
        raise SystemExit(f"unknown variant {name!r}; one of {', '.join(VARIANTS)}")


def count(python: str, variant: list[str], *, module: str = "benchmarks.tell_instructions") -> int:
    """Instructions callgrind counts for one run of ``module --variant *variant``."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        python,
        "-m",
        module,
        "--variant",
        *variant,
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(
            f"no instruction count from callgrind for {variant}: {done.stderr[-500:]}"
        )
    return int(found.group(1))


def per_message(python: str, name: str, n: int) -> float:
    extra = count(python, [name, str(n)]) - count(python, [name, "0"])
    if name in ("handle", "call"):  # the call alone: minus making and walking the list
        extra -= count(python, ["list", str(n)]) - count(python, ["list", "0"])
    return extra / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A same-loop tell in instructions (callgrind).")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--variant", nargs=2, metavar=("NAME", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant is not None:
        run_variant(args.variant[0], int(args.variant[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: this benchmark counts with callgrind")
    rows: dict[str, float] = {}
    for name in VARIANTS:
        rows[name] = per_message(args.python, name, args.messages)
        print(f"{name:<12} {rows[name]:>9,.0f} instructions per message", flush=True)
    # A rate is the inverse of the instructions a message costs.
    sends = rows["send"]
    print(f"actors / queue actor, as rates:    {rows['queue'] / sends:.2f}x (target >= 2x)")
    print(f"actors / callback actor, as rates: {rows['callback'] / sends:.2f}x (target >= 0.6x)")


if __name__ == "__main__":
    main()
