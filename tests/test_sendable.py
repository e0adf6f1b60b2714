"""Tests of the sendable rule: which values may travel between actors (`actors.check_sendable`).

A message is passed by reference, so anything mutable would become state shared by two actors.
Accepted: immutable values, containers and records of them, `ActorRef`s, `Moved` hand-overs and
registered types. Everything else is refused with a `NotSendableError` that says why.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import threading
import uuid
from typing import Any, Generic, Literal, TypeVar

import anyio
import msgspec
import pytest

import actors

T = TypeVar("T")

WAIT = 10.0


# -- message types used below -----------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


class Shapes(msgspec.Struct, frozen=True):
    name: str | None
    kind: Literal["line", "polygon"]
    points: tuple[Point, ...]
    tags: frozenset[str]
    origin: Point | None = None
    weight: int | float = 1
    when: datetime.datetime | None = None


class Node(msgspec.Struct, frozen=True):
    """A recursive frozen Struct: a linked list."""

    value: int
    next: Node | None = None


class Batch(msgspec.Struct, frozen=True):
    rows: actors.Moved[list[int]]


class Envelope(msgspec.Struct, frozen=True):
    payload: Any


class Wrapper(msgspec.Struct, Generic[T], frozen=True):
    item: T


class Loose(msgspec.Struct, frozen=True):
    payload: object


class Mutable(msgspec.Struct):
    x: int


class WithList(msgspec.Struct, frozen=True):
    items: list[int]


class WithDict(msgspec.Struct, frozen=True):
    table: dict[str, int]


class WithSet(msgspec.Struct, frozen=True):
    members: set[int]


class WithMutableStruct(msgspec.Struct, frozen=True):
    inner: Mutable


class WithTupleOfLists(msgspec.Struct, frozen=True):
    rows: tuple[list[int], ...]


class WithOptionalList(msgspec.Struct, frozen=True):
    items: list[int] | None = None


@dataclasses.dataclass(frozen=True)
class FrozenRecord:
    name: str
    point: Point
    extra: Any = None


@dataclasses.dataclass
class MutableRecord:
    name: str


@dataclasses.dataclass(frozen=True)
class FrozenRecordWithList:
    items: list[int]


class Plain:
    """A class the rule knows nothing about."""

    def __repr__(self) -> str:  # no address: test ids must match across pytest-xdist workers
        return "Plain()"


@actors.register_sendable
class Vector:
    """An immutable custom class, declared sendable."""

    __slots__ = ("x", "y")

    def __init__(self, x: float, y: float) -> None:
        self.x = x
        self.y = y


class WithVector(msgspec.Struct, frozen=True):
    vector: Vector


# -- accepted ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**70),
        1.5,
        float("nan"),
        2 + 3j,
        "text",
        b"bytes",
        Color.RED,
        Level.LOW,
        Perm.READ | Perm.WRITE,
        decimal.Decimal("1.10"),
        fractions.Fraction(1, 3),
        uuid.UUID(int=7),
        datetime.date(2024, 1, 2),
        datetime.time(12, 30),
        datetime.datetime(2024, 1, 2, 3, 4, tzinfo=datetime.UTC),
        datetime.timedelta(seconds=3),
        datetime.UTC,
        range(3),
        ...,
    ],
    ids=repr,
)
def test_immutable_scalars_are_sendable(value: object) -> None:
    actors.check_sendable(value)


@pytest.mark.parametrize(
    "value",
    [
        (),
        (1, "a", None),
        ((1, 2), (3, (4, (b"5",)))),
        frozenset({1, 2}),
        frozenset({(1, frozenset({"a"}))}),
        (Color.RED, Point(1, 2), (Point(3, 4),)),
    ],
    ids=repr,
)
def test_tuples_and_frozensets_of_sendables_are_sendable(value: object) -> None:
    actors.check_sendable(value)


@pytest.mark.parametrize(
    "value",
    [
        Point(1, 2),
        Shapes(
            name=None,
            kind="line",
            points=(Point(0, 0), Point(1, 1)),
            tags=frozenset({"a"}),
            origin=Point(0, 0),
            weight=2.5,
            when=datetime.datetime(2024, 1, 1),
        ),
        Node(1, Node(2, Node(3))),
        Batch(actors.Moved([1, 2, 3])),
        WithVector(Vector(1.0, 2.0)),
    ],
    ids=lambda value: type(value).__name__,
)
def test_frozen_structs_with_sendable_fields_are_sendable(value: object) -> None:
    actors.check_sendable(value)


def test_frozen_dataclass_with_sendable_fields_is_sendable() -> None:
    actors.check_sendable(FrozenRecord("a", Point(1, 2)))
    actors.check_sendable(FrozenRecord("a", Point(1, 2), extra=(1, 2)))


def test_moved_hands_over_a_mutable_object() -> None:
    rows = [1, 2]
    moved = actors.Moved(rows)
    actors.check_sendable(moved)
    assert moved.value is rows
    assert repr(moved) == "Moved([1, 2])"
    actors.check_sendable((actors.Moved({"a": [1]}), 1))


def test_registered_class_is_sendable() -> None:
    actors.check_sendable(Vector(1.0, 2.0))
    actors.check_sendable((Vector(0.0, 0.0),))


def test_register_sendable_returns_the_class_and_changes_the_verdict() -> None:
    class Late:
        pass

    with pytest.raises(actors.NotSendableError):
        actors.check_sendable(Late())
    assert actors.register_sendable(Late) is Late
    actors.check_sendable(Late())


@pytest.mark.parametrize("value", [1, "a", (1, 2), Point(1, 2), actors.Moved([1])], ids=repr)
def test_any_and_object_fields_are_checked_per_value_and_accept_sendables(value: object) -> None:
    actors.check_sendable(Envelope(value))
    actors.check_sendable(Loose(value))
    actors.check_sendable(Wrapper(value))


# -- refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ([1], "list"),
        ({"a": 1}, "dict"),
        ({1}, "set"),
        (bytearray(b"x"), "bytearray"),
        (memoryview(b"x"), "memoryview"),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else value,
)
def test_mutable_builtins_are_refused_naming_the_type(value: object, type_name: str) -> None:
    with pytest.raises(actors.NotSendableError, match=f"{type_name} is mutable") as error:
        actors.check_sendable(value)
    assert f"of type {type_name} " in str(error.value)
    assert "Moved" in str(error.value)  # the message shows the way out


def test_not_sendable_error_is_a_type_error_and_an_actor_error() -> None:
    with pytest.raises(TypeError):
        actors.check_sendable([1])
    with pytest.raises(actors.ActorError):
        actors.check_sendable([1])
    assert issubclass(actors.NotSendableError, TypeError)
    assert issubclass(actors.NotSendableError, actors.ActorError)


def test_error_message_starts_with_what_was_checked() -> None:
    with pytest.raises(actors.NotSendableError, match=r"^reply of type list is not sendable"):
        actors.check_sendable([1], "reply")
    with pytest.raises(actors.NotSendableError, match=r"^message of type dict is not sendable"):
        actors.check_sendable({})


def test_non_frozen_struct_is_refused_and_told_to_be_frozen() -> None:
    with pytest.raises(actors.NotSendableError, match=r"Mutable.*must be frozen \(frozen=True\)"):
        actors.check_sendable(Mutable(1))


def test_non_frozen_dataclass_is_refused_and_told_to_be_frozen() -> None:
    with pytest.raises(actors.NotSendableError, match=r"MutableRecord.*dataclass must be frozen"):
        actors.check_sendable(MutableRecord("a"))


@pytest.mark.parametrize(
    "value",
    [
        WithList([1]),
        WithList([]),
        WithDict({}),
        WithSet(set()),
        WithMutableStruct(Mutable(1)),
        WithTupleOfLists(()),
        WithOptionalList(None),  # the field's type admits a list: refused whatever the value
        FrozenRecordWithList([]),
    ],
    ids=lambda value: type(value).__name__,
)
def test_frozen_record_with_a_mutable_field_type_is_refused(value: object) -> None:
    with pytest.raises(actors.NotSendableError, match=type(value).__name__):
        actors.check_sendable(value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (WithList([1]), "items"),
        (WithDict({}), "table"),
        (FrozenRecordWithList([]), "items"),
    ],
    ids=["WithList", "WithDict", "FrozenRecordWithList"],
)
def test_refusal_of_a_frozen_record_names_the_unsendable_field(value: object, field: str) -> None:
    # The record is frozen already: the error must point at the field whose type is not
    # sendable, not advise to "make it a frozen msgspec Struct".
    with pytest.raises(actors.NotSendableError) as error:
        actors.check_sendable(value)
    text = str(error.value)
    assert field in text, text
    assert "make it a frozen msgspec Struct" not in text, text


@pytest.mark.parametrize(
    "value",
    [
        (1, [2]),
        ((1, ((2, [3]),)),),
        frozenset({(1, Plain())}),
        (Point(1, 2), {"a": 1}),
    ],
    ids=repr,
)
def test_containers_holding_a_mutable_value_are_refused(value: object) -> None:
    with pytest.raises(actors.NotSendableError, match="it contains"):
        actors.check_sendable(value)


def test_nested_refusal_names_the_innermost_culprit() -> None:
    with pytest.raises(actors.NotSendableError) as error:
        actors.check_sendable((1, (2, [3])))
    assert str(error.value) == (
        "message of type tuple is not sendable: it contains tuple: it contains list: "
        "list is mutable; send a tuple/frozenset, or wrap it in actors.Moved"
    )


@pytest.mark.parametrize("value", [[1], {"a": 1}, (1, [2]), Mutable(1), Plain()], ids=repr)
def test_any_and_object_fields_holding_mutable_values_are_refused(value: object) -> None:
    for record in (
        Envelope(value),
        Loose(value),
        Wrapper(value),
        FrozenRecord("a", Point(0, 0), value),
    ):
        with pytest.raises(actors.NotSendableError, match=type(record).__name__):
            actors.check_sendable(record)


def test_verdict_for_an_any_field_is_per_value_not_cached_from_the_first_value() -> None:
    class Holder(msgspec.Struct, frozen=True):
        value: Any

    actors.check_sendable(Holder(1))
    with pytest.raises(actors.NotSendableError):
        actors.check_sendable(Holder([1]))
    actors.check_sendable(Holder(2))


def test_plain_class_is_refused_with_the_way_out() -> None:
    with pytest.raises(actors.NotSendableError) as error:
        actors.check_sendable(Plain())
    text = str(error.value)
    assert "of type Plain" in text
    assert "register_sendable" in text


def test_tuple_subclass_is_checked_deeply() -> None:
    class Pair(tuple[object, ...]):
        pass

    actors.check_sendable(Pair((1, ())))
    with pytest.raises(actors.NotSendableError):
        actors.check_sendable(Pair((1, [2])))


def test_slice_holding_a_mutable_object_is_refused() -> None:
    # A slice is an immutable container like a tuple: what it holds must be sendable too.
    actors.check_sendable(slice(1, 2))
    with pytest.raises(actors.NotSendableError):
        actors.check_sendable(slice([1], None))


# -- through an actor -------------------------------------------------------------------------


class Count(actors.Request[int], frozen=True):
    pass


class GiveList(actors.Request[list[int]], frozen=True):
    pass


class Remember(msgspec.Struct, frozen=True):
    peer: actors.ActorRef[Count]


class Sink(actors.Actor[list[int] | Count | GiveList | Remember]):
    """Accepts lists by type, so only the sendable rule stands between them and the mailbox."""

    def __init__(self) -> None:
        self.received = 0

    async def receive(self, message: list[int] | Count | GiveList | Remember) -> Any:
        match message:
            case Count():
                return self.received
            case GiveList():
                return [1, 2]
            case _:
                self.received += 1
        return None


class EnvelopeSink(actors.Actor[Envelope | Count]):
    def __init__(self) -> None:
        self.received = 0

    async def receive(self, message: Envelope | Count) -> int | None:
        if isinstance(message, Count):
            return self.received
        self.received += 1
        return None


@pytest.mark.anyio
async def test_actor_ref_is_sendable() -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            ref = await system.spawn(Sink)
            actors.check_sendable(ref)
            actors.check_sendable((ref, ref))
            actors.check_sendable(Remember(ref))
            actors.check_sendable(Envelope(ref))
            await ref.send(Remember(ref))
            assert await ref.ask(Count()) == 1


@pytest.mark.anyio
async def test_unsendable_message_is_refused_before_it_reaches_the_mailbox() -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            ref = await system.spawn(Sink)
            with pytest.raises(actors.NotSendableError, match="list is mutable"):
                await ref.send([1])
            with pytest.raises(actors.NotSendableError):
                ref.try_send([1])
            with pytest.raises(actors.NotSendableError):
                await ref.ask([1])
            with pytest.raises(actors.NotSendableError):
                await anyio.to_thread.run_sync(ref.blocking_send, [1])
            assert await ref.ask(Count()) == 0  # nothing was enqueued
            assert ref.is_alive


@pytest.mark.anyio
async def test_refused_message_type_is_remembered_per_value_not_per_type() -> None:
    # A checked type is only skipped later when every value of it is sendable.
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            ref = await system.spawn(EnvelopeSink)
            await ref.send(Envelope(1))
            with pytest.raises(actors.NotSendableError):
                await ref.send(Envelope([1]))
            await ref.send(Envelope(2))
            assert await ref.ask(Count()) == 2


@pytest.mark.anyio
async def test_unsendable_reply_fails_the_ask_and_the_actor() -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            ref = await system.spawn(Sink, restart=actors.Restart.TEMPORARY)
            with pytest.raises(actors.NotSendableError, match="reply") as error:
                await ref.ask(GiveList())
            assert "list is mutable" in str(error.value)
            reason = await ref.join()
            assert isinstance(reason, actors.NotSendableError)
            assert not ref.is_alive
            with pytest.raises(actors.ActorStopped):
                await ref.send(Count())


def test_verdicts_are_safe_to_compute_from_many_threads() -> None:
    # The verdict cache is written without a lock: racing first checks must agree.
    classes = [
        msgspec.defstruct(f"Generated{i}", [("items", list[int])], frozen=True) for i in range(20)
    ]
    fine = [msgspec.defstruct(f"Fine{i}", [("value", int)], frozen=True) for i in range(20)]
    barrier = threading.Barrier(8)
    failures: list[str] = []

    def check() -> None:
        barrier.wait(WAIT)
        for bad, good in zip(classes, fine, strict=True):
            try:
                actors.check_sendable(bad(items=[]))
            except actors.NotSendableError:
                pass
            else:
                failures.append(bad.__name__)
            actors.check_sendable(good(value=1))

    threads = [threading.Thread(target=check, daemon=True) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert failures == []
