"""Which values may cross from one actor to another ("sendable", as Rust's ``Send``).

An actor owns its state; a message is copied by reference, so a mutable message would be
state shared between two actors. The rule is therefore immutability: None, bool, int, float,
complex, str, bytes, enums, immutable stdlib values (Decimal, Fraction, UUID, date/time types),
tuples and frozensets of sendables, frozen msgspec Structs and frozen dataclasses whose field
types are sendable, `ActorRef`s, `Moved` wrappers and types registered with
`register_sendable`. Values are checked at most `MAX_NESTING` levels deep; a deeper one is
refused.

Design notes:

* The verdict for a type is computed once and cached in ``_verdicts`` (type -> verdict), so the
  common case costs one dictionary look-up. Field types of Structs and dataclasses are read
  from their annotations: the annotations are trusted, as a type checker enforces them.
* Containers (tuples, frozensets) and fields annotated ``Any``/``object`` cannot be judged by
  type alone; their contents are checked per value.
* Thread safety: ``_verdicts`` is only ever added to, and a racing duplicate insert stores the
  same verdict, so readers need no lock (dict operations are atomic with or without the GIL).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import types
import typing
import uuid
from typing import Any, Final, Generic, TypeVar

import msgspec

from ._errors import NotSendableError

__all__ = ("Moved", "check_sendable", "is_always_sendable", "known_sendable", "register_sendable")

T = TypeVar("T")


class Moved(Generic[T]):
    """Hand a mutable object over to another actor, promising never to touch it again.

    This is the explicit escape hatch from the sendable rule, the equivalent of a Rust move:
    the sender gives up the object, the receiver becomes its only owner. Nothing enforces the
    promise at run time; the wrapper makes the hand-over visible in code review and in types.

    Example:
        ```python
        class Batch(msgspec.Struct, frozen=True):
            rows: Moved[list[Row]]

        await writer.send(Batch(Moved(rows)))
        rows = None  # the sender lets go; the writer reads message.rows.value
        ```
    """

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value: Final[T] = value

    def __repr__(self) -> str:
        return f"Moved({self.value!r})"


_ALWAYS: Final = 1  # sendable whatever the value
_NEVER: Final = 2  # never sendable
_DEEP: Final = 3  # sendable if every element is: tuples, frozensets
_FIELDS: Final = 4  # a frozen record whose listed fields need a per-value check

_Verdict = tuple[int, tuple[str, ...]]

MAX_NESTING: Final = 256
"""Containers and records nested deeper than this in a message are refused (not sendable)."""

_ATOMS: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    decimal.Decimal,
    fractions.Fraction,
    uuid.UUID,
    datetime.date,
    datetime.time,
    datetime.datetime,
    datetime.timedelta,
    datetime.timezone,
    range,
    type(Ellipsis),
    Moved,
)
_MUTABLE: tuple[type, ...] = (list, dict, set, bytearray, memoryview)

_verdicts: dict[type, _Verdict] = {t: (_ALWAYS, ()) for t in _ATOMS}
_verdicts.update({t: (_DEEP, ()) for t in (tuple, frozenset)})
_verdicts[slice] = (_FIELDS, ("start", "stop", "step"))  # a slice can hold any object


def register_sendable(cls: type[T]) -> type[T]:
    """Declare that instances of ``cls`` are immutable and may be sent between actors.

    Usable as a class decorator. Use it for your own immutable types that are neither frozen
    Structs nor frozen dataclasses.

    Example:
        ```python
        @actors.register_sendable
        class Point:
            __slots__ = ("x", "y")
            ...
        ```
    """
    _verdicts[cls] = (_ALWAYS, ())
    return cls


def is_always_sendable(cls: type) -> bool:
    """True when every instance of ``cls`` is sendable, so a check can be skipped for it."""
    return _verdict_for(cls)[0] == _ALWAYS


def known_sendable(value: object) -> bool:
    """True when ``value``'s type is already known to be always sendable (one lookup).

    For hot paths that would otherwise build `check_sendable`'s description for nothing.
    """
    verdict = _verdicts.get(type(value))
    return verdict is not None and verdict[0] == _ALWAYS


def check_sendable(value: object, what: str = "message") -> None:
    """Raise `NotSendableError` unless ``value`` is sendable.

    Example:
        ```python
        check_sendable((1, "a"))  # fine
        check_sendable([1])       # NotSendableError: a list is mutable
        ```
    """
    verdict = _verdicts.get(type(value))
    if verdict is not None and verdict[0] == _ALWAYS:
        return
    problem = _find_problem(value)
    if problem is not None:
        raise NotSendableError(
            f"{what} of type {type(value).__qualname__} is not sendable: {problem}"
        )


def _find_problem(value: object, depth: int = 0) -> str | None:
    """Say why ``value`` is not sendable, or None when it is."""
    kind, fields = _verdict_for(type(value))
    if kind == _ALWAYS:
        return None
    if kind == _NEVER:
        return _why_not(type(value), fields)
    if depth >= MAX_NESTING:
        # Refused rather than walked: a deeper value would exhaust the interpreter's stack
        # here (RecursionError), and in every consumer that walks it (repr, the wire codec).
        return f"it is nested more than {MAX_NESTING} levels deep"
    items: typing.Iterable[object]
    if kind == _DEEP:
        items = typing.cast("typing.Iterable[object]", value)
    else:
        items = (getattr(value, name) for name in fields)
    for item in items:
        problem = _find_problem(item, depth + 1)
        if problem is not None:
            return f"it contains {type(item).__qualname__}: {problem}"
    return None


def _why_not(cls: type, culprit: tuple[str, ...]) -> str:
    name: str = cls.__qualname__
    if culprit:
        field, annotation = culprit
        return (
            f"field {field!r} is annotated {annotation}, which is not sendable; "
            "use an immutable type (tuple[...], frozenset[...], a frozen Struct) or Moved[...]"
        )
    if _is_struct(cls) and not _is_frozen(cls):
        return "a msgspec Struct must be frozen (frozen=True)"
    if _is_dataclass(cls) and not _is_frozen(cls):
        return "a dataclass must be frozen (frozen=True)"
    if _is_mutable_builtin(cls):
        return f"{name} is mutable; send a tuple/frozenset, or wrap it in actors.Moved"
    return (
        f"{name} is not known to be immutable; make it a frozen msgspec Struct, "
        "or declare it with actors.register_sendable"
    )


def _verdict_for(cls: type) -> _Verdict:
    verdict = _verdicts.get(cls)
    if verdict is None:
        verdict = _judge_type(cls, in_progress=set())
        _verdicts[cls] = verdict
    return verdict


def _judge_type(cls: type, in_progress: set[type]) -> _Verdict:
    """Compute the verdict for a runtime type (the type of an actual value)."""
    known = _verdicts.get(cls)
    if known is not None:
        return known
    if _is_atom(cls):
        return (_ALWAYS, ())
    if _is_container(cls):
        return (_DEEP, ())
    if _is_record(cls):
        if not _is_frozen(cls):
            return (_NEVER, ())
        return _judge_record(cls, in_progress)
    if getattr(cls, "__actors_sendable__", False):  # ActorRef and friends opt in this way
        return (_ALWAYS, ())
    return (_NEVER, ())


def _judge_record(cls: type, in_progress: set[type]) -> _Verdict:
    in_progress.add(cls)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to checking values
        hints = {}
    names = _field_names(cls)
    to_check: list[str] = []
    for name in names:
        annotation = hints.get(name, Any)
        static = _judge_annotation(annotation, in_progress)
        if static is False:
            return (_NEVER, (name, _show(annotation)))
        if static is None:
            to_check.append(name)
    if not to_check:
        return (_ALWAYS, ())
    return (_FIELDS, tuple(to_check))


def _show(annotation: object) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _judge_annotation(tp: object, in_progress: set[type]) -> bool | None:
    """True: every value of this annotation is sendable; False: none is; None: check values."""
    if tp is Any or tp is object or isinstance(tp, TypeVar):
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _judge_annotation(typing.get_args(tp)[0], in_progress)
    if origin is typing.Literal:
        return True
    if origin is typing.Union or origin is types.UnionType:
        return _all_of(typing.get_args(tp), in_progress)
    if origin is tuple or origin is frozenset:
        args = tuple(a for a in typing.get_args(tp) if a is not Ellipsis)
        return _all_of(args, in_progress) if args else None
    if origin is not None:  # list[int], dict[str, int], ActorRef[M], Moved[T], ...
        tp = origin
    if not isinstance(tp, type):
        return None
    if tp in in_progress:  # a recursive record: judged by the rest of its fields
        return True
    verdict = _judge_type(tp, in_progress)
    if verdict[0] == _ALWAYS:
        return True
    if verdict[0] == _NEVER:
        return False if (_is_mutable_builtin(tp) or _is_record(tp)) else None
    return None


def _all_of(args: tuple[object, ...], in_progress: set[type]) -> bool | None:
    verdicts = [_judge_annotation(a, in_progress) for a in args]
    if False in verdicts:
        return False
    if None in verdicts:
        return None
    return True


# The predicates below take a plain `type` and return bool rather than narrowing, which keeps
# the strict type checker from inferring partially-unknown types for the callers.


def _is_atom(cls: type) -> bool:
    return issubclass(cls, enum.Enum) or issubclass(cls, _ATOMS)


def _is_container(cls: type) -> bool:
    return issubclass(cls, (tuple, frozenset))


def _is_mutable_builtin(cls: type) -> bool:
    return issubclass(cls, _MUTABLE)


def _is_struct(cls: type) -> bool:
    return issubclass(cls, msgspec.Struct)


def _is_dataclass(cls: type) -> bool:
    return hasattr(cls, "__dataclass_fields__")


def _is_record(cls: type) -> bool:
    return _is_struct(cls) or _is_dataclass(cls)


def _is_frozen(cls: type) -> bool:
    if _is_struct(cls):
        config: Any = getattr(cls, "__struct_config__", None)
        return bool(config.frozen)
    params = getattr(cls, "__dataclass_params__", None)
    return bool(getattr(params, "frozen", False))


def _field_names(cls: type) -> tuple[str, ...]:
    if _is_struct(cls):
        names: tuple[str, ...] = getattr(cls, "__struct_fields__", ())
        return names
    record: Any = cls
    return tuple(f.name for f in dataclasses.fields(record))
