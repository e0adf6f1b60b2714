"""What checking and decoding an inbound frame costs, in ns per frame.

Run as ``python -m benchmarks.wire_cost`` (``--reps``). Three frames as a node receives
them: a ``TELL`` envelope of one ``Inc``, a ``TELLS`` frame of 64 of them (a batch of a
pipelined stream), and an OK reply. For each, `check_frame` (the scan every inbound frame
goes through before msgspec sees it) and the decoding that follows it (the envelope, the
tells of a batch, each body). Prints the median and the minimum of ``--reps`` timings.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from typing import TYPE_CHECKING

import msgspec

from actors.cluster._wire import (
    TELL,
    TELLS,
    WIRE_VERSION,
    Envelope,
    Reply,
    Told,
    check_frame,
    decoder_for,
    message_name,
)

from .common import Inc, median

if TYPE_CHECKING:
    from collections.abc import Callable

_ENVELOPES = decoder_for(Envelope, None)
_TOLDS = decoder_for(list[Told], None)
_REPLIES = decoder_for(Reply, None)
_INCS = decoder_for(Inc, None)
_LIMIT = 1 << 20
_DEPTH = 32


def frames() -> dict[str, bytes]:
    """The three frames, encoded as a node encodes them."""
    name = message_name(Inc)
    one = Envelope(WIRE_VERSION, TELL, name, msgspec.Raw(msgspec.msgpack.encode(Inc(5))))
    tells = [Told(name, msgspec.Raw(msgspec.msgpack.encode(Inc(i)))) for i in range(64)]
    batch = Envelope(
        WIRE_VERSION, TELLS, "", msgspec.Raw(msgspec.msgpack.encode(tells)), None, "node-a", 7, 1
    )
    reply = Reply(WIRE_VERSION, 0, msgspec.Raw(b"\xc0"), 50)
    return {
        "TELL of one Inc": msgspec.msgpack.encode(one),
        "TELLS of 64 Inc": msgspec.msgpack.encode(batch),
        "OK reply": msgspec.msgpack.encode(reply),
    }


def _decode(kind: str, data: bytes) -> object:
    if kind == "OK reply":
        return _REPLIES.decode(data)
    envelope = _ENVELOPES.decode(data)
    if envelope.kind == TELLS:
        return [_INCS.decode(told.body) for told in _TOLDS.decode(envelope.body)]
    return _INCS.decode(envelope.body)


def _ns(call: Callable[[], object], reps: int) -> tuple[float, float]:
    number = 200
    times = [timeit.timeit(call, number=number) / number * 1e9 for _ in range(reps)]
    return median(times), min(times)


def table(reps: int) -> str:
    rows = [
        "| frame | bytes | check_frame: median (min) | decode: median (min) |",
        "|---|--:|--:|--:|",
    ]
    for kind, data in frames().items():
        check = _ns(lambda data=data: check_frame(data, _LIMIT, _DEPTH), reps)
        decode = _ns(lambda kind=kind, data=data: _decode(kind, data), reps)
        rows.append(
            f"| {kind} | {len(data)} | {check[0]:,.0f} ns ({check[1]:,.0f}) "
            f"| {decode[0]:,.0f} ns ({decode[1]:,.0f}) |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.wire_cost",
        description="ns per inbound frame: the pre-decode check and the decoding",
    )
    parser.add_argument("--reps", type=int, default=9, help="timings per figure (default 9)")
    args = parser.parse_args(argv)
    print(table(max(1, args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
