"""The cluster's wire format without a server: the frame pre-check, the type registry, and
how errors are rebuilt on the asking side."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import actors
from actors.cluster import MessageTooLarge, NodeDown, WireError, register_message
from actors.cluster._registry import local_only_field
from actors.cluster._wire import (
    MALFORMED,
    Envelope,
    ErrorInfo,
    check_frame,
    decoder_for,
    error_from,
    error_info,
    known_name,
    message_name,
    message_type,
)


class Point(msgspec.Struct, frozen=True):
    x: int
    y: int


@pytest.mark.parametrize(
    "value",
    [None, True, 1, -1, 2**63, -(2**63), 1.5, "text", b"bytes", [1, [2, [3]]], {"a": {"b": 1}}],
)
def test_well_formed_frames_pass_the_check(value: object) -> None:
    check_frame(msgspec.msgpack.encode(value), 1 << 20, 8)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated"),
        (b"\xc1", "invalid"),
        (b"\x92\x01", "count header"),
        (b"\xdb\xff\xff\xff\xff", "length header"),
        (b"\xdd\xff\xff\xff\xff", "count header"),
        (b"\xd4\x01\x00", "extension"),
        (b"\xc7\x01\x01\x00", "extension"),
        (b"\x01\x02", "trailing"),
        (b"\x91" * 9 + b"\x00", "deeper"),
    ],
)
def test_malformed_frames_are_refused_before_decoding(frame: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        check_frame(frame, 1 << 20, 8)


def test_an_oversized_frame_is_refused_first() -> None:
    with pytest.raises(MessageTooLarge):
        check_frame(b"\xc0" * 100, 99, 8)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
@example(b"\x96\x00\x00\xa2\x00\x80\x00\x00\x00")  # a str that is not UTF-8 (found by it)
def test_arbitrary_bytes_never_get_past_check_and_decode_unnoticed(data: bytes) -> None:
    # Either refused with WireError/DecodeError/ValidationError, or a well-formed envelope.
    decoder = decoder_for(Envelope, None)
    try:
        check_frame(data, 1 << 20, 8)
        decoder.decode(data)
    except MALFORMED:  # what every receiver catches: nothing else may escape
        pass


_REASONS = ("truncated", "length header", "count header", "extension", "invalid", "deeper")
_FIXED_SIZES = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2}
_FIXED_SIZES |= {0xD2: 4, 0xD3: 8, 0xC0: 0, 0xC2: 0, 0xC3: 0}
_WIDTHS = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}


class _Refused(Exception):
    pass


def _reference_check(data: bytes, max_depth: int) -> str:
    """What `check_frame` must say about ``data``, by a plain recursive descent: the
    specification the iterative scan is measured against (slow, and fine for tests)."""

    def skip(pos: int, n: int) -> int:
        if pos + n > len(data):
            raise _Refused("length header")
        return pos + n

    def item(pos: int, depth: int) -> int:
        if pos >= len(data):
            raise _Refused("truncated")
        head = data[pos]
        pos += 1
        if head <= 0x7F or head >= 0xE0:
            return pos
        if 0xA0 <= head <= 0xBF:
            return skip(pos, head & 0x1F)
        if head in _FIXED_SIZES:
            return skip(pos, _FIXED_SIZES[head])
        if head in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB):
            width = _WIDTHS[head]
            return skip(pos + width, int.from_bytes(data[pos : pos + width], "big"))
        if 0x80 <= head <= 0x9F:
            count = head & 0x0F if head >= 0x90 else 2 * (head & 0x0F)
        elif head in (0xDC, 0xDD, 0xDE, 0xDF):
            width = _WIDTHS[head]
            if pos + width > len(data):
                raise _Refused("truncated")
            count = int.from_bytes(data[pos : pos + width], "big") * (2 if head >= 0xDE else 1)
            pos += width
        elif 0xC7 <= head <= 0xC9 or 0xD4 <= head <= 0xD8:
            raise _Refused("extension")
        else:
            raise _Refused("invalid")
        if count:
            if count > len(data) - pos:
                raise _Refused("count header")
            if depth >= max_depth:
                raise _Refused("deeper")
            for _ in range(count):
                pos = item(pos, depth + 1)
        return pos

    try:
        end = item(0, 0)
    except _Refused as refused:
        return str(refused)
    return "ok" if end == len(data) else "trailing"


def _verdict(data: bytes, max_depth: int) -> str:
    try:
        check_frame(data, 1 << 20, max_depth)
    except WireError as error:
        reasons = [reason for reason in (*_REASONS, "trailing") if reason in str(error)]
        return reasons[0] if len(reasons) == 1 else f"unclear: {error}"
    return "ok"


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=40)
    | st.binary(max_size=300),
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=60,
)


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    """Well-formed MessagePack, then maybe damaged: bytes changed, cut, inserted."""
    data = bytearray(msgspec.msgpack.encode(draw(_values)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["set", "cut", "insert"])):
            case "set" if at < len(data):
                data[at] = draw(st.integers(0, 255))
            case "cut":
                del data[at:]
            case _:
                data.insert(at, draw(st.integers(0, 255)))
    return bytes(data)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_frames(), st.binary(max_size=64)), st.integers(min_value=1, max_value=6))
@example(b"\x91" * 6 + b"\x90", 5)  # an empty container one level too deep: accepted
@example(b"\xa5ab", 4)  # a fixstr that runs past the end, as the last item
@example(b"\x92\xa5ab", 4)  # ... and with an item still expected after it
def test_the_frame_scan_agrees_with_a_recursive_reference(data: bytes, max_depth: int) -> None:
    # The scan is a hand-tuned loop (one table lookup per scalar, a scalar's end checked
    # lazily); every verdict and reason must be those of the plain recursive descent.
    assert _verdict(data, max_depth) == _reference_check(data, max_depth)


def test_message_names_default_to_module_and_qualname_and_can_be_chosen() -> None:
    assert message_name(Point) == f"{__name__}:Point"
    assert message_type(f"{__name__}:Point") is Point

    @register_message(name="tests.Custom")
    class Custom(msgspec.Struct, frozen=True):
        pass

    assert message_name(Custom) == "tests.Custom"
    with pytest.raises(ValueError, match="already registered"):
        register_message(Point, name="tests.Custom")
    with pytest.raises(ValueError, match="already registered as"):
        register_message(Custom, name="tests.Other")
    assert register_message(Custom, name="tests.Custom") is Custom  # idempotent


def test_a_type_never_registered_here_is_checked_by_its_default_name() -> None:
    # Regression: a sender whose process had not registered the type yet (the receiver
    # registers it when exporting its actor, in another process) refused its own message.
    class Fresh(msgspec.Struct, frozen=True):
        pass

    name = f"{__name__}:{Fresh.__qualname__}"
    assert known_name(Fresh) == name
    assert message_type(name) is None  # known_name never registers
    assert message_name(Fresh) == name
    assert message_type(name) is Fresh


def test_builtin_errors_come_back_as_themselves_with_path_and_node() -> None:
    info = error_info(KeyError("k"), "/user/a", "node-a")
    assert info.kind == "builtin"
    rebuilt = error_from(info)
    assert type(rebuilt) is KeyError
    assert "/user/a" in str(rebuilt)
    assert "node-a" in str(rebuilt)


def test_actors_errors_come_back_as_themselves_carrying_the_message() -> None:
    rebuilt = error_from(error_info(actors.MailboxFull("full"), "/user/a", "n"), "msg")
    assert isinstance(rebuilt, actors.MailboxFull)
    assert rebuilt.message == "msg"
    down = error_from(error_info(NodeDown("gone"), "/user/a", "n"))
    assert isinstance(down, NodeDown)


def test_other_errors_come_back_as_remote_error_with_the_type_name() -> None:
    class Custom(Exception):
        pass

    rebuilt = error_from(error_info(Custom("boom"), "/user/a", "n"))
    assert isinstance(rebuilt, actors.RemoteError)
    assert rebuilt.type_name.endswith("Custom")
    # Nothing executable travels: a forged builtin name that is not an exception is refused.
    forged = error_from(ErrorInfo("builtin", "print", "x", "/user/a", "n"))
    assert isinstance(forged, actors.RemoteError)


def _modules_of_actors() -> list[tuple[Path, ast.Module]]:
    root = Path(actors.__file__).parent
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in root.rglob("*.py")]


def test_S1_no_module_of_actors_imports_a_pickle_kin() -> None:
    banned = {"pickle", "cloudpickle", "dill", "marshal", "shelve"}
    modules = _modules_of_actors()
    assert len(modules) > 50  # the whole package, subpackages included
    for path, tree in modules:
        for item in ast.walk(tree):
            if isinstance(item, ast.Import):
                assert not {a.name.split(".")[0] for a in item.names} & banned, path
            elif isinstance(item, ast.ImportFrom) and item.module:
                assert item.module.split(".")[0] not in banned, path


def test_S1_every_msgspec_decoder_in_actors_is_given_its_type() -> None:
    # Untyped decoding (``msgspec.msgpack.decode(data)``) would hand whatever a peer sent to
    # the code as dicts and lists; every decoder must be built for, or told, its type.
    seen = 0
    for path, tree in _modules_of_actors():
        for call in (item for item in ast.walk(tree) if isinstance(item, ast.Call)):
            name = ast.unparse(call.func)
            if name.endswith(("msgpack.Decoder", "json.Decoder")):
                seen += 1
                assert call.args or any(k.arg == "type" for k in call.keywords), (path, name)
            elif name.endswith(("msgpack.decode", "json.decode")):
                seen += 1
                assert any(k.arg == "type" for k in call.keywords), (path, call.lineno, name)
    assert seen >= 4  # the scan finds the decoders there are


# -- frames of wire version 1, as bytes: what a node of any later build must still decode ----

GOLDEN_FRAMES = {
    # Envelope(version, kind, type, body, timeout, sender): a tell and an ask.
    "tell": "960101ac62616e6b2e4465706f7369749105c0a66e6f64652d61",
    "ask": "960103ac62616e6b2e42616c616e636590cb4004000000000000a66e6f64652d62",
    # Reply(version, status, body, free, error): an answer, and an error.
    "reply_ok": "9501002a07c0",
    "reply_err": (
        "950101c0ff95a76275696c74696eaa56616c75654572726f72a3626164a72f757365722f61a66e6f64652d61"
    ),
    "heartbeat": "9401a66e6f64652d61a5696e632d31c2",
    "down": "9401a5696e632d3103c0",
    "address": (
        "97a66e6f64652d61a5696e632d3103a72f757365722f6191ac62616e6b2e4465706f736974"
        "0aa96163636f756e742d37"
    ),
    # An address from a node that predates durable mailboxes: no trailing ``durable``.
    "address_before_durable": "96a66e6f64652d61a5696e632d3103a72f757365722f61c00a",
}


def test_frames_of_wire_version_1_still_decode() -> None:
    """Fixed bytes, not a round trip: a change of the format (a field moved, a type changed)
    fails here even when encoder and decoder change together."""
    from actors.cluster._wire import (
        ASK,
        ERROR,
        OK,
        TELL,
        WIRE_VERSION,
        Address,
        Down,
        Heartbeat,
        Reply,
    )

    def decode(tp: type, name: str) -> object:
        return decoder_for(tp, None).decode(bytes.fromhex(GOLDEN_FRAMES[name]))

    assert WIRE_VERSION == 1
    tell = decode(Envelope, "tell")
    assert isinstance(tell, Envelope)
    assert (tell.version, tell.kind, tell.type, tell.timeout, tell.sender) == (
        1,
        TELL,
        "bank.Deposit",
        None,
        "node-a",
    )
    assert msgspec.msgpack.decode(tell.body) == [5]
    ask = decode(Envelope, "ask")
    assert isinstance(ask, Envelope)
    assert (ask.kind, ask.type, ask.timeout, ask.sender) == (ASK, "bank.Balance", 2.5, "node-b")
    ok = decode(Reply, "reply_ok")
    assert isinstance(ok, Reply)
    assert (ok.status, msgspec.msgpack.decode(ok.body), ok.free, ok.error) == (OK, 42, 7, None)
    failed = decode(Reply, "reply_err")
    assert isinstance(failed, Reply)
    assert failed.status == ERROR
    assert failed.error == ErrorInfo("builtin", "ValueError", "bad", "/user/a", "node-a")
    assert decode(Heartbeat, "heartbeat") == Heartbeat(1, "node-a", "inc-1", False)
    assert decode(Down, "down") == Down(1, "inc-1", 3, None)
    address = Address("node-a", "inc-1", 3, "/user/a", ("bank.Deposit",), 10, "account-7")
    assert decode(Address, "address") == address
    older = decode(Address, "address_before_durable")
    assert older == Address("node-a", "inc-1", 3, "/user/a", None, 10, "")


# -- refs in message types: a field typed ActorRef cannot cross nodes ---------------------


class _Portable(msgspec.Struct, frozen=True):
    reply_to: actors.Ref[Any]


class _LocalOnly(msgspec.Struct, frozen=True):
    reply_to: actors.ActorRef[Any]


class _Nested(msgspec.Struct, frozen=True):
    name: str
    inner: list[dict[str, tuple[int, _LocalOnly | None]]]


class _Tree(msgspec.Struct, frozen=True):
    children: list[_Tree]
    owner: actors.Ref[Any] | None = None


def test_a_field_typed_actor_ref_is_found_however_deep() -> None:
    assert local_only_field(_LocalOnly) == "_LocalOnly.reply_to"
    assert local_only_field(_Nested) == "_LocalOnly.reply_to"
    assert local_only_field(_Nested) == "_LocalOnly.reply_to"  # cached: the same answer


def test_fields_typed_ref_and_recursive_types_pass() -> None:
    assert local_only_field(_Portable) is None
    assert local_only_field(_Tree) is None  # recursive: scanned once per node of the graph
    assert local_only_field(int) is None
    assert local_only_field(actors.ActorRef) is None  # a bare ref: its declared type decides
