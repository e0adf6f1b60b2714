"""The serving node of ``python -m benchmarks.cluster``: a public counter in its own process.

Run by the benchmark (not by hand) as::

    python -m benchmarks.cluster_node nats://127.0.0.1:4222 bench-server [--uvloop] [--durable]

It spawns the suite's counting actor (`benchmarks.subject.Counter`, the same handler as in
every other case) as the public actor ``bench-counter`` on worker 0, prints ``ready``, and
leaves the cluster when its standard input closes. With ``--durable`` (a server with
JetStream) it spawns only the durable sink of the ``durable-send`` row instead: the
counting actor as the durable actor ``bench-durable``, whose stream the raw row publishes
into too.

Beside it, for the floor rows, a plain nats-py client of its own serves the same work with
no actors in between (`RawSink`): ``bench.raw.tell`` decodes an actors tell frame of `Inc`
and counts it, ``bench.raw.collect`` answers the `Tally` and resets it, and
``bench.raw.echo`` answers each request with its own bytes (NATS request-reply).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

import anyio
import anyio.to_thread
import msgspec

import actors
from actors.cluster import Nats, register_message
from actors.cluster._wire import TELL, WIRE_VERSION, Envelope, message_name

from .common import CAPACITY, Inc, Tally
from .subject import Counter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from nats.aio.msg import Msg

NAME = "bench-counter"
"""The public name of the counter."""

PONGER = "bench-ponger"
"""The public name of the ping-pong partner (Savina PingPong split over two nodes)."""

STREAMER = "bench-streamer"
"""The public name of the actor that streams `Items` (the ``remote-stream`` row)."""

DURABLE = "bench-durable"
"""The durable name of the counter the ``durable-send`` rows publish to."""

RAW_TELL: Final = "bench.raw.tell"
RAW_COLLECT: Final = "bench.raw.collect"
RAW_ECHO: Final = "bench.raw.echo"

_ENVELOPE: Final = msgspec.msgpack.Decoder(Envelope)
_INC: Final = msgspec.msgpack.Decoder(Inc)


def tell_frame(n: int, sender: str) -> bytes:
    """The bytes an actors node publishes for ``Inc(n)``: the raw rows send the same size."""
    body = msgspec.Raw(msgspec.msgpack.encode(Inc(n)))
    return msgspec.msgpack.encode(
        Envelope(WIRE_VERSION, TELL, message_name(Inc), body, None, sender)
    )


@register_message(name="bench.Ball")  # the serving node runs as __main__: a stable name
class Ball(msgspec.Struct, frozen=True):
    """Savina PingPong's serve, across nodes: the ponger returns it to ``reply_to``."""

    reply_to: actors.Ref[Ball]
    n: int


class Ponger(actors.Actor[Ball]):
    """Returns every ball to its sender (a remote tell back)."""

    async def receive(self, message: Ball) -> None:
        await message.reply_to.send(Ball(self.ref, message.n))


@register_message(name="bench.Items")
class Items(actors.StreamRequest[int], frozen=True):
    """Stream 0 .. ``n`` - 1 back (the streamed-reply rows, local and over NATS)."""

    n: int


class Streamer(actors.Actor[Items]):
    """Streams the numbers an `Items` asks for, as fast as its reader lets it."""

    async def receive(self, message: Items) -> AsyncIterator[int]:
        return self.items(message.n)

    async def items(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


class RawSink:
    """The counter's work on plain nats-py callbacks: decode, count, answer."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    async def on_tell(self, msg: Msg) -> None:
        envelope = _ENVELOPE.decode(msg.data)
        self.count += 1
        self.total += _INC.decode(envelope.body).n

    async def on_collect(self, msg: Msg) -> None:
        tally, self.count, self.total = Tally(self.count, self.total), 0, 0
        await msg.respond(msgspec.msgpack.encode(tally))

    async def on_echo(self, msg: Msg) -> None:
        await msg.respond(msg.data)


async def serve_durable(url: str, node: str, use_uvloop: bool) -> None:
    """The durable sink alone: fetching 64 at a time, so that the stream stays short."""
    cluster = Nats(url, node=node, prefix="bench", durable_window=64)
    async with actors.ActorSystem(
        workers=1, use_uvloop=use_uvloop, name="bench-server", cluster=cluster
    ) as system:
        await system.spawn(Counter, name=DURABLE, durable=True, placement=0, capacity=CAPACITY)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the benchmark closes stdin


async def serve(url: str, node: str, use_uvloop: bool) -> None:
    cluster = Nats(url, node=node, prefix="bench")
    async with actors.ActorSystem(
        workers=1, use_uvloop=use_uvloop, name="bench-server", cluster=cluster
    ) as system:
        await system.spawn(Counter, name=NAME, public=True, placement=0, capacity=CAPACITY)
        await system.spawn(Ponger, name=PONGER, public=True, placement=0)
        await system.spawn(Streamer, name=STREAMER, public=True, placement=0)
        import nats  # the cluster extra: installed wherever actors.cluster runs

        raw = await nats.connect(url, name=f"{node}-raw")
        sink = RawSink()
        await raw.subscribe(RAW_TELL, cb=sink.on_tell)
        await raw.subscribe(RAW_COLLECT, cb=sink.on_collect)
        await raw.subscribe(RAW_ECHO, cb=sink.on_echo)
        await raw.flush()
        try:
            print("ready", flush=True)
            await anyio.to_thread.run_sync(sys.stdin.read)  # until the benchmark closes stdin
        finally:
            await raw.close()


if __name__ == "__main__":
    main = serve_durable if "--durable" in sys.argv[3:] else serve
    actors.run(main, sys.argv[1], sys.argv[2], "--uvloop" in sys.argv[3:])
