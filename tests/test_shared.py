"""`Shared`: read-mostly state. Lock-free reads, serialised writers (read-copy-update), only
sendable values, no lost update under concurrent writers on many threads."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT
from test_examples import run_example

import actors
from actors import Actor, ActorSystem, NotSendableError, Shared


class Config(msgspec.Struct, frozen=True):
    limit: int
    banned: frozenset[str] = frozenset()


class Mutable(msgspec.Struct):
    items: list[int]


def test_get_returns_the_value_and_update_replaces_it() -> None:
    config = Shared(Config(limit=10))
    first = config.get()
    assert first == Config(limit=10)
    assert config.version == 0
    new = config.update(lambda c: msgspec.structs.replace(c, limit=20))
    assert new == Config(limit=20)
    assert config.get() is new
    assert config.version == 1
    assert first == Config(limit=10)  # a reader's snapshot never changes under its feet
    assert "version=1" in repr(config)


@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, {1}, bytearray(b"x"), Mutable([1])])
def test_a_mutable_value_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="not sendable"):
        Shared(value)
    with pytest.raises(NotSendableError):
        Shared((1, value))  # also nested


def test_an_update_to_a_mutable_value_is_refused_and_the_old_value_kept() -> None:
    shared: Shared[Any] = Shared((1, 2))
    with pytest.raises(NotSendableError, match="new value of a Shared"):
        shared.update(lambda old: [*old, 3])
    assert shared.get() == (1, 2)
    assert shared.version == 0


def test_an_update_function_that_raises_keeps_the_old_value() -> None:
    shared = Shared(1)

    def boom(old: int) -> int:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        shared.update(boom)
    assert shared.get() == 1
    assert shared.update(lambda old: old + 1) == 2  # the lock was released


def test_update_from_inside_its_own_function_is_refused() -> None:
    shared = Shared(0)

    def nested(old: int) -> int:
        shared.update(lambda inner: inner + 1)
        return old + 1

    with pytest.raises(RuntimeError, match="inside its own update function"):
        shared.update(nested)
    assert (shared.get(), shared.version) == (0, 0)


def test_shared_is_sendable() -> None:
    actors.check_sendable(Shared(1))  # a handle meant to be shared: may travel in messages


def test_threads_many_readers_concurrent_writers_no_lost_update() -> None:
    writers, updates, readers = 4, 2000, 4
    shared: Shared[tuple[int, int]] = Shared((0, 0))  # (n, 2n): a reader must never see a torn pair
    start = threading.Barrier(writers + readers)
    stop = threading.Event()
    problems: list[str] = []

    def write() -> None:
        start.wait(WAIT)
        for _ in range(updates):
            shared.update(lambda old: (old[0] + 1, old[1] + 2))

    def read() -> None:
        start.wait(WAIT)
        last_version = last_n = -1
        while not stop.is_set():
            version = shared.version
            n, double = shared.get()
            if double != 2 * n:
                problems.append(f"torn value {(n, double)}")
            if n < last_n or version < last_version:
                problems.append(f"went back: {n} after {last_n}")
            last_n, last_version = n, version

    threads = [threading.Thread(target=write) for _ in range(writers)]
    threads += [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads[:writers]:
        thread.join(WAIT)
    stop.set()
    for thread in threads[writers:]:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []
    assert shared.get() == (writers * updates, 2 * writers * updates)
    assert shared.version == writers * updates


# -- from actors on several loops --------------------------------------------------------------


class Limit(actors.Request[int], frozen=True):
    pass


class Bump(actors.Request[int], frozen=True):
    pass


class Reader(Actor[Limit | Bump]):
    def __init__(self, config: Shared[Config]) -> None:
        self.config = config

    async def receive(self, message: Limit | Bump) -> int:
        match message:
            case Limit():
                return self.config.get().limit
            case Bump():
                return self.config.update(
                    lambda c: msgspec.structs.replace(c, limit=c.limit + 1)
                ).limit


@pytest.mark.anyio
async def test_actors_on_several_loops_read_and_update() -> None:
    config = Shared(Config(limit=0))
    with anyio.fail_after(WAIT):
        async with ActorSystem(workers=3) as system:
            readers = [await system.spawn(lambda: Reader(config)) for _ in range(6)]
            async with anyio.create_task_group() as tg:
                for reader in readers:
                    for _ in range(50):
                        tg.start_soon(reader.ask, Bump())
            assert config.get().limit == 6 * 50
            assert {await reader.ask(Limit()) for reader in readers} == {300}


def test_the_docs_example_runs() -> None:
    assert run_example("patterns/shared.py").splitlines() == [
        "limit 10, version 0",
        "a mutable value is refused: NotSendableError",
        "gateways let 10 requests through, refused 5",
        "limit 20, version 1; the old snapshot still says 10",
        "gateways let 20 requests through, refused 0",
        "a mutable update is refused, the value kept: limit 20, version 1",
        "4 threads x 1000 increments: counter 4000, version 4000",
    ]
