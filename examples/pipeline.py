"""A three-stage pipeline over worker pools: every core busy, memory flat, nothing lost.

    python3 dev.py run examples/pipeline.py               # 2,000 blocks of 64 KiB
    python3 dev.py run examples/pipeline.py --items 200   # a quick run

docs/patterns/pools.md includes its parts. The input is a lazy stream of blocks:

1. **compress** (a pull pool): zlib-compresses each block. zlib releases the GIL while it
   works, so the workers on different loops compress in parallel. A few blocks are corrupt
   on purpose: their worker crashes, the pool replaces it, and the stream carries on.
2. **check** (a least-loaded pool): decompresses each block again and hashes it (also
   without the GIL).
3. **tally** (a consistent-hash pool): totals per kind of block, each kind owned by one
   shard, fed with plain sends.

Stages 1 and 2 are chained `map_stream`s: each keeps at most ``--in-flight`` blocks in
flight and reads its input only when there is room, so backpressure reaches back to the
generator of blocks and memory stays flat however long the input. A progress bar goes to
stderr; the report, to stdout, ends with how busy the cores were and the peak memory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
import zlib
from typing import TYPE_CHECKING

import msgspec

import actors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

BLOCK = 64 * 1024
KINDS = ("html", "json", "log", "csv", "xml")
CORRUPT = frozenset({13, 101, 1999})  # blocks that crash their compress worker


def _corpus() -> bytes:
    """1 MiB of text-like bytes (compressible about 2:1), the same on every run."""
    rng = random.Random(2024)
    words = [
        "".join(rng.choices("etaoinshrdlucmfwypvbgkjqxz", k=rng.randint(2, 9))) for _ in range(3000)
    ]
    return " ".join(rng.choices(words, k=190_000)).encode()[: 1 << 20]


CORPUS = _corpus()


def block_data(index: int) -> bytes:
    """The contents of block ``index``: a slice of the corpus."""
    start = (index * 40_503) % (len(CORPUS) - BLOCK)
    return CORPUS[start : start + BLOCK]


# -- messages ----------------------------------------------------------------------------------


class Packed(msgspec.Struct, frozen=True):
    index: int
    raw: int
    data: bytes


class Digest(msgspec.Struct, frozen=True):
    index: int
    raw: int
    packed: int
    sha256: bytes


# --8<-- [start:stages]
class Block(actors.Request[Packed], frozen=True):
    index: int


class Check(actors.Request[Digest], frozen=True):
    block: Packed


class CorruptBlock(Exception):
    pass


class Compressor(actors.Actor[Block]):
    async def receive(self, message: Block) -> Packed:
        if message.index in CORRUPT:
            raise CorruptBlock(f"block {message.index} is corrupt")
        data = block_data(message.index)
        return Packed(message.index, len(data), zlib.compress(data, 6))  # GIL released


class Checker(actors.Actor[Check]):
    async def receive(self, message: Check) -> Digest:
        packed = message.block
        data = zlib.decompress(packed.data)
        assert len(data) == packed.raw
        sha = hashlib.sha256(data).digest()
        return Digest(packed.index, packed.raw, len(packed.data), sha)


# --8<-- [end:stages]


# --8<-- [start:tally]
class Tally(msgspec.Struct, frozen=True):
    kind: str
    raw: int
    packed: int


class Totals(actors.Request[tuple[tuple[str, int, int, int], ...]], frozen=True):
    """Per kind: (kind, blocks, raw bytes, packed bytes)."""


class Tallier(actors.Actor[Tally | Totals]):
    def __init__(self) -> None:
        self.totals: dict[str, tuple[int, int, int]] = {}  # owned by this shard

    async def receive(self, message: Tally | Totals) -> object:
        match message:
            case Tally(kind, raw, packed):
                blocks, raws, packs = self.totals.get(kind, (0, 0, 0))
                self.totals[kind] = (blocks + 1, raws + raw, packs + packed)
            case Totals():
                return tuple((kind, *sums) for kind, sums in sorted(self.totals.items()))
        return None


# --8<-- [end:tally]


class Progress:
    """A text progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.drawn < 0.1:
            return
        self.drawn = now
        share = done / self.total
        bar = "#" * int(30 * share)
        rate = done * BLOCK / (1 << 20) / max(1e-9, now - self.started)
        sys.stderr.write(
            f"\r[{bar:<30}] {share:4.0%} {done:,}/{self.total:,} blocks {rate:6.1f} MiB/s"
        )
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


async def main(items: int, loops: int, in_flight: int) -> None:
    async with actors.ActorSystem(workers=loops) as system:
        # --8<-- [start:spawn]
        compress = await system.spawn_pool(
            Compressor,
            size=1,  # starts small; scaled up below once blocks flow
            routing="pull",  # irregular work: an idle worker takes the next block
            supervision=actors.OneForOne(max_restarts=5, within=1.0),
            name="compress",
        )
        check = await system.spawn_pool(Checker, size=loops, routing="least-loaded", name="check")
        tally = await system.spawn_pool(
            Tallier,
            size=2,
            routing="consistent-hash",
            key=lambda message: message.kind,  # each kind always reaches the same shard
            capacity=64,
            name="tally",
        )
        # --8<-- [end:spawn]
        print(
            f"pipeline: {items:,} blocks of {BLOCK // 1024} KiB ({items * BLOCK / (1 << 20):.1f} "
            f"MiB) through 3 pools on {loops} loops"
        )
        progress = Progress(items)
        failed: list[CorruptBlock] = []
        sample = {i: b"" for i in range(0, items, max(1, items // 8))}
        stream_sha = hashlib.sha256()
        expected: dict[str, list[int]] = {}
        done = 0
        mid_rss: float | None = None
        wall, cpu = time.monotonic(), time.process_time()

        # --8<-- [start:stream]
        def blocks() -> Iterator[Block]:
            for index in range(items):  # lazy: read only when a stage has room
                yield Block(index)

        async def compressed() -> AsyncIterator[Check]:
            outcomes = compress.map_stream(
                blocks(), max_in_flight=in_flight, timeout=10.0, return_exceptions=True
            )
            async for outcome in outcomes:
                if isinstance(outcome, CorruptBlock):
                    failed.append(outcome)  # its worker crashed; the pool replaced it
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    yield Check(outcome)

        async for digest in check.map_stream(compressed(), max_in_flight=in_flight):
            stream_sha.update(digest.sha256)  # in input order
            kind = KINDS[digest.index % len(KINDS)]
            await tally.send(Tally(kind, digest.raw, digest.packed))  # waits if the shard is full
            # --8<-- [end:stream]
            sums = expected.setdefault(kind, [0, 0, 0])
            sums[0] += 1
            sums[1] += digest.raw
            sums[2] += digest.packed
            if digest.index in sample:
                sample[digest.index] = digest.sha256
            done = digest.index + 1
            progress.update(done)
            if done == max(1, items // 20) and compress.size == 1:
                # --8<-- [start:resize]
                await compress.resize(loops)  # blocks are flowing: use every loop
                # --8<-- [end:resize]
                print(f"compress stage scaled 1 -> {compress.size} workers")
            if mid_rss is None and done >= items // 10:
                mid_rss = peak_rss_mib()
        progress.update(items, final=True)
        wall, cpu = time.monotonic() - wall, time.process_time() - cpu

        corrupt = sorted(CORRUPT & set(range(items)))
        restarts = sum(worker.statistics().restarts for worker in compress.workers)
        if corrupt:
            names = " and ".join(map(str, corrupt))
            print(
                f"corrupt blocks {names}: their compress worker crashed and was replaced "
                f"({restarts} restarts, {len(failed)} blocks skipped)"
            )
        raw = sum(sums[1] for sums in expected.values())
        packed = sum(sums[2] for sums in expected.values())
        checked = sum(sums[0] for sums in expected.values())
        print(
            f"checked {checked:,} blocks: {raw / (1 << 20):.1f} MiB -> {packed / (1 << 20):.1f} MiB"
        )
        print(f"stream digest: {stream_sha.hexdigest()[:16]}")

        # --8<-- [start:totals]
        shards = await tally.ask_all(Totals())  # one reply per shard
        # --8<-- [end:totals]
        merged = {kind: [b, r, p] for shard in shards for kind, b, r, p in shard}
        owners = [kind for shard in shards for kind, *_ in shard]
        one_owner = len(owners) == len(set(owners))
        agree = merged == expected
        print(
            f"tally: {len(merged)} kinds on {len(shards)} shards, each kind on one shard: "
            f"{one_owner}; totals agree: {agree}"
        )

        # --8<-- [start:map]
        indexes = [i for i in sample if i not in CORRUPT]
        repacked = await compress.map([Block(i) for i in indexes], timeout=10.0)
        digests = await check.map([Check(p) for p in repacked], timeout=10.0)
        # --8<-- [end:map]
        same = sum(d.sha256 == sample[d.index] for d in digests)
        print(f"spot check with map(): {same} of {len(digests)} digests match")

        cores = cpu / wall if wall > 0 else 0.0
        print(f"cores busy: {cores:.1f} of {os.cpu_count()} (process CPU time / wall time)")
        end_rss = peak_rss_mib()
        if mid_rss is not None and end_rss is not None:
            print(
                f"peak memory: {mid_rss:.0f} MiB after 10% of the input, {end_rss:.0f} MiB "
                f"at the end ({in_flight} blocks in flight per stage)"
            )
        if not (agree and one_owner and same == len(digests)):
            sys.exit("pipeline: results do not add up")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A three-stage pipeline over worker pools.")
    parser.add_argument("--items", type=int, default=2000, help="blocks to push through")
    parser.add_argument("--loops", type=int, default=os.cpu_count() or 1, help="worker loops")
    parser.add_argument("--in-flight", type=int, default=16, help="blocks in flight per stage")
    options = parser.parse_args()
    if options.items < 1 or options.loops < 1 or options.in_flight < 1:
        parser.error("--items, --loops and --in-flight must be at least 1")
    actors.run(main, options.items, options.loops, options.in_flight)
