"""The Python a remote ask costs, stage by stage, without the network, in µs per ask.

Run as ``python -m benchmarks.cluster_ask_cost`` (``--reps``, ``--asks``, ``--url``). Two
nodes in this process join a nats-server (for their identities, registries and a
`RemoteRef`; nothing is asked over it): the owner serves the suite's counting actor on the
host loop, next to this code, as an owner's lane serves an actor of its own loop. Three
stages, each the median of ``--reps`` timings:

* **asker, before the publish**: `Asks.parts` (``_ask_parts`` before the outbound split)
  for one ``Echo`` through the asking node's `RemoteRef` of the actor (the checks,
  deadline, key, encoding, envelope), with ``timeit``;
* **asker, the reply**: `Requests.read_reply` (``_read_reply`` before) of an OK reply
  frame (check, decode, the ref's credit and hint, the body);
* **owner, the ask**: `Inbound.on_lane_frame` for ``--asks`` ask frames on a stand-in for
  the lane (its `Answers` and `Asking`, a ``respond`` that encodes the reply and publishes
  nothing), then until every answer is encoded: the thread's CPU time per ask (the checks,
  decoding, type admission, enqueue, the handler, the answer, its deadline).

The network's share (nats-py, the server, the sockets) is not here: that is what the raw
nats-py row of ``python -m benchmarks.cluster`` measures. To compare two trees, run this
file in each (``PYTHONPATH=<tree>``; copy it into an older tree).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import timeit
from typing import Any

import anyio
import msgspec

import actors
from actors.cluster import Nats, RemoteRef
from actors.cluster._answers import Answers
from actors.cluster._asking import Asking
from actors.cluster._wire import ASK, OK, WIRE_VERSION, Envelope, Reply, message_name

from .cluster import nats_server
from .common import Echo, median
from .subject import Counter

_CALLS = 20_000


class _Msg:
    """A received frame as nats-py hands it to a subscription callback."""

    __slots__ = ("data", "headers", "reply", "subject")

    def __init__(self, subject: str, data: bytes, reply: str) -> None:
        self.subject = subject
        self.data = data
        self.reply = reply
        self.headers = None


class _Lane:
    """Stands for an `AskLane` taking asks on this loop: answers are encoded, not sent."""

    name = "lane-bench"
    closing = False

    def __init__(self, registry: Any, node: str, expected: int) -> None:
        self.served = 0
        self.answered = 0
        self.expected = expected
        self.all_answered = asyncio.Event()
        self.decoders: dict[type, Any] = {}
        self.asking = Asking(remembered=0)
        self.answers = Answers(self, node, registry, self.respond, self.asking)
        self._tasks: set[asyncio.Task[Any]] = set()

    def own(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def respond(self, reply_to: str, reply: Reply, exports: list[int]) -> None:
        msgspec.msgpack.encode(reply)
        self.answered += 1
        if self.answered == self.expected:
            self.all_answered.set()


def _us(call: Any, reps: int) -> float:
    return median([timeit.timeit(call, number=_CALLS) / _CALLS * 1e6 for _ in range(reps)])


async def stages(url: str, reps: int, asks: int) -> dict[str, float]:
    """Median µs per ask of each stage (see the module)."""
    owning = Nats(url, node="bench-owner", prefix="bench-cost")
    asking = Nats(url, node="bench-asker", prefix="bench-cost")
    async with (
        actors.ActorSystem(workers=1, name="bench-owner", cluster=owning) as owner_system,
        actors.ActorSystem(workers=1, name="bench-asker", cluster=asking) as asker_system,
    ):
        await owner_system.spawn(
            Counter, name="counter", public=True, placement="host", capacity=asks
        )
        ref = await asker_system.lookup_remote("counter", timeout=10.0)
        assert isinstance(ref, RemoteRef)
        asker: Any = asking._node  # pyright: ignore[reportPrivateUsage]
        node: Any = owning._node  # pyright: ignore[reportPrivateUsage]
        outbox, inbound = asker.outbox, node.inbound
        message = Echo(5)
        out = outbox.prepare(ref, ASK, message, 5.0, key=7)
        reply = msgspec.msgpack.encode(Reply(WIRE_VERSION, OK, msgspec.Raw(b"\x05"), 50))
        result = {
            "asker: _ask_parts": _us(lambda: outbox.asks.parts(ref, message, 5.0), reps),
            "asker: _read_reply": _us(
                lambda: outbox.requests.read_reply(ref, reply, int, message), reps
            ),
        }
        export = next(iter(node.registry.exports.values()))
        subject = f"{out.subject.rpartition('.')[0]}.l1.{export.id}"
        name = message_name(Echo)
        owner: list[float] = []
        for rep in range(reps + 1):
            lane = _Lane(node.registry, node.me.node, asks)
            frames = [
                _Msg(subject, msgspec.msgpack.encode(_ask(name, i, rep * asks + i + 1)), f"r.{i}")
                for i in range(asks)
            ]
            started = time.thread_time()
            for frame in frames:
                await inbound.on_lane_frame(lane, frame)
            with anyio.fail_after(30):
                await lane.all_answered.wait()
            if rep:  # the first is a warm-up
                owner.append((time.thread_time() - started) / asks * 1e6)
        result["owner: on_lane_frame to the answer encoded"] = median(owner)
        return result


def _ask(name: str, n: int, key: int) -> Envelope:
    body = msgspec.Raw(msgspec.msgpack.encode(Echo(n)))
    return Envelope(WIRE_VERSION, ASK, name, body, 5.0, "bench-asker", key=key)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster_ask_cost",
        description="the Python of a remote ask, stage by stage, without the network",
    )
    parser.add_argument("--url", help="a running NATS server (default: start nats-server)")
    parser.add_argument("--reps", type=int, default=7, help="timings per stage (default 7)")
    parser.add_argument("--asks", type=int, default=2000, help="asks per owner timing")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(nats_server())
        result = anyio.run(stages, url, max(1, args.reps), max(1, args.asks), backend="asyncio")
    for stage, us in result.items():
        print(f"{stage:45s} {us:7.2f} µs per ask")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
