"""The sending side of a remote tell (actors/cluster/_outbound.py and its parts) on a fake
client: what a pipelined tell is checked and encoded into in its caller's thread
(`Outbox.prepare_tell`, `Frames.prepare_tell`), and the frames the cluster loop makes of it.
Last, the outbound parts' one-way imports.

`prepare_tell` encodes only a tell's body and bounds its size; the frame is made on the loop.
These tests hold it to `Outbox.prepare`, which encodes the whole envelope: the same
refusals, the same bytes, the same size verdict at every size near the limit.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import itertools
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, wait_until
from cluster_support import asyncio_backend_fixture
from test_cluster_parts import Parts

import actors
import actors.cluster
from actors._ref import cell_of
from actors.cluster import Limits, MessageTooLarge, RemoteRef, register_message
from actors.cluster._remote import finish_proxy
from actors.cluster._transport import ClusterHome
from actors.cluster._wire import (
    ASK,
    TELL,
    TELLS,
    Address,
    Envelope,
    Told,
    message_name,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from actors.cluster._window import Tell

pytestmark = pytest.mark.anyio

anyio_backend = asyncio_backend_fixture()  # the parts run on the cluster's asyncio loop

LIMIT = 256


@register_message(name="outbound-test.Blob")
class Blob(msgspec.Struct, frozen=True):
    data: bytes


@register_message(name="outbound-test.Blöb✓")  # a wire name of more bytes than characters
class Wide(msgspec.Struct, frozen=True):
    data: bytes


class Special(Blob, frozen=True):
    """A subclass of an accepted type: accepted as `Blob` is."""


@register_message(name="outbound-test.Unwanted")
class Unwanted(msgspec.Struct, frozen=True):
    n: int


@register_message(name="outbound-test.Hello")
class Hello(msgspec.Struct, frozen=True):
    who: actors.Ref[Any]  # a ref: msgspec cannot encode it natively


ACCEPTS = (message_name(Blob), message_name(Wide), message_name(Hello))


def remote(parts: Parts, id: int, accepts: tuple[str, ...] | None = ACCEPTS) -> RemoteRef[Any]:
    ref = parts.registry.ref_for(Address("b", "inc-b", id, f"/user/sink-{id}", accepts, 10))
    assert isinstance(ref, RemoteRef)
    return ref


@contextlib.asynccontextmanager
async def sending(limit: int = LIMIT) -> AsyncGenerator[Parts]:
    """Parts of a node whose limit is ``limit``, attached to a system, on the test's loop."""
    parts = Parts(limits=Limits(max_message_size=limit))
    loop = asyncio.get_running_loop()  # the test's loop and thread stand for the cluster's
    parts.transport.loop = loop
    parts.transport.home = ClusterHome(loop, threading.get_ident(), "a")
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            parts.registry.bind(system, parts.outbox, parts.durable)
            await parts.outbox.listen(parts.client)  # type: ignore[arg-type]
            yield parts


def whole_envelope(
    parts: Parts, ref: RemoteRef[Any], message: object, timeout: float | None
) -> int:
    """The size `prepare` finds (it encodes the envelope), or -1 if it refuses the size."""
    try:
        return len(parts.outbox.prepare(ref, TELL, message, timeout).data)
    except MessageTooLarge:
        return -1


async def test_a_tell_is_refused_for_its_size_exactly_where_its_whole_envelope_would_be() -> None:
    refused = 0
    async with sending() as parts:
        ref = remote(parts, 5)
        for length, kind, timeout in itertools.product(
            range(LIMIT - 80, LIMIT + 8), (Blob, Wide), (None, 2, 0.25, 1e300)
        ):
            message = kind(b"x" * length)
            encoded = whole_envelope(parts, ref, message, timeout)
            if encoded < 0:
                refused += 1
                with pytest.raises(MessageTooLarge, match=f"limit of {LIMIT}"):
                    parts.outbox.prepare_tell(ref, message, timeout)
                continue
            tell = parts.outbox.prepare_tell(ref, message, timeout)
            assert tell.size >= len(msgspec.msgpack.encode(tell.told))  # the budget's bound
            assert bytes(tell.told.body) == msgspec.msgpack.encode(message)
    assert 0 < refused < 88 * 2 * 4  # both verdicts, at every size around the limit


async def test_a_tell_carries_what_its_envelope_would() -> None:
    async with sending(1 << 20) as parts:
        ref = remote(parts, 5)
        message = Wide(b"abc")
        for _ in range(2):  # the first learns that the type needs no checks; the second skips them
            tell = parts.outbox.prepare_tell(ref, message, 1.5)
            envelope = parts.outbox.prepare(ref, TELL, message, 1.5).envelope
            assert envelope is not None
            assert tell.told == Told(envelope.type, envelope.body, envelope.timeout, envelope.trace)
            assert tell.message is message
            assert tell.exports == []


async def test_a_type_one_actor_accepts_is_still_refused_by_one_that_does_not() -> None:
    async with sending() as parts:
        parts.outbox.prepare_tell(remote(parts, 5), Blob(b"1"), None)  # the type is now known
        picky = remote(parts, 6, accepts=(message_name(Hello),))
        with pytest.raises(actors.MessageTypeError, match="does not accept Blob"):
            parts.outbox.prepare_tell(picky, Blob(b"2"), None)
        with pytest.raises(actors.MessageTypeError, match="does not accept Unwanted"):
            parts.outbox.prepare_tell(remote(parts, 5), Unwanted(1), None)
        # A subclass of an accepted type goes, as it does to a local actor.
        tell = parts.outbox.prepare_tell(remote(parts, 5), Special(b"3"), None)
        assert tell.told.type == message_name(Special)


async def test_an_ask_of_a_known_plain_type_is_still_refused_by_one_that_does_not_take_it() -> None:
    # `prepare` (asks, acknowledged sends) takes the tells' shortcut for a type known to
    # need no sendable checks: what the target accepts is checked all the same.
    async with sending() as parts:
        first = parts.outbox.prepare(remote(parts, 5), ASK, Blob(b"1"), None)  # learned
        again = parts.outbox.prepare(remote(parts, 5), ASK, Blob(b"1"), None)  # shortcut
        assert first.data == again.data
        picky = remote(parts, 6, accepts=(message_name(Hello),))
        with pytest.raises(actors.MessageTypeError, match="does not accept Blob"):
            parts.outbox.prepare(picky, ASK, Blob(b"2"), None)
        # A subclass of an accepted type goes, as it does to a local actor.
        out = parts.outbox.prepare(remote(parts, 5), ASK, Special(b"3"), None)
        assert out.envelope is not None
        assert out.envelope.type == message_name(Special)


async def test_a_known_type_that_holds_a_ref_is_encoded_with_the_ref_as_its_address() -> None:
    async with sending(1 << 20) as parts:
        target, other = remote(parts, 5), remote(parts, 7)
        for _ in range(2):  # learned, then through the known type's path
            tell = parts.outbox.prepare_tell(target, Hello(other), None)
            envelope = parts.outbox.prepare(target, TELL, Hello(other), None).envelope
            assert envelope is not None
            assert tell.told.body == envelope.body
            address = msgspec.msgpack.decode(tell.told.body, type=dict[str, Address])["who"]
            assert (address.node, address.id) == ("b", 7)


class Quiet(actors.Actor[Blob]):
    async def receive(self, message: Blob) -> None:
        pass


async def test_a_known_type_that_holds_a_local_ref_exports_it_every_time() -> None:
    async with sending(1 << 20) as parts:
        system = parts.registry.system
        assert system is not None
        local = await system.spawn(Quiet, name="quiet")
        target = remote(parts, 5)
        tells = [parts.outbox.prepare_tell(target, Hello(local), None) for _ in range(2)]
        address, _ = parts.registry.export(local)
        for tell in tells:  # learned, then through the known type's path: exported both times
            assert tell.exports == [address.id]
            encoded = msgspec.msgpack.decode(tell.told.body, type=dict[str, Address])["who"]
            assert encoded == address


async def test_a_tell_to_a_stopped_actor_is_refused_before_anything_is_encoded() -> None:
    async with sending() as parts:
        ref = remote(parts, 5)
        parts.outbox.prepare_tell(ref, Blob(b"1"), None)
        finish_proxy(cell_of(ref), None)
        with pytest.raises(actors.ActorStopped, match="sink-5"):
            parts.outbox.prepare_tell(ref, Blob(b"2"), None)


async def test_the_loop_makes_one_frame_of_the_tells_with_their_seqs_and_one_subject() -> None:
    async with sending(1 << 20) as parts:
        client = parts.client
        ref = remote(parts, 5)
        outbox = parts.outbox
        tells: list[Tell] = [outbox.prepare_tell(ref, Blob(bytes([i])), None) for i in range(3)]
        outbox.tells.submit_run(ref, tells)
        last = outbox.prepare_tell(ref, Blob(b"z"), 2.0)
        outbox.tells.submit_run(ref, [last])
        await wait_until(lambda: len(client.published) == 2)
    batch, single = (msgspec.msgpack.decode(m.data, type=Envelope) for m in client.published)
    assert {m.subject for m in client.published} == {"t.actor.b.inc-b.5"}
    assert (batch.kind, batch.seq, batch.base, batch.sender) == (TELLS, 1, 1, "a")
    items = msgspec.msgpack.decode(batch.body, type=list[Told])
    assert items == [tell.told for tell in tells]
    assert (single.kind, single.seq, single.stream) == (TELL, 4, batch.stream)
    assert (single.type, bytes(single.body), single.timeout) == (
        message_name(Blob),
        msgspec.msgpack.encode(Blob(b"z")),
        2.0,
    )


# -- the outbound parts import one way ------------------------------------------------------

# The parts of the outbox, each after every part it may import (``_outbound``'s docstring).
OUTBOUND_PARTS = ("_frames", "_pump", "_requests", "_tells", "_asks", "_lookup", "_outbound")


def test_the_outbound_parts_import_one_way() -> None:
    """No part imports a part after it in `OUTBOUND_PARTS`, not even for type checking;
    no part imports a module that imports the outbox (no circle through another module);
    and only the outbox composes `Tells`, `Asks` and `Lookups` (the remote streams share
    the lower parts: ``_frames``, ``_pump``, ``_requests``)."""
    package = Path(actors.cluster.__file__).parent
    for place, name in enumerate(OUTBOUND_PARTS):
        later = set(OUTBOUND_PARTS[place + 1 :])
        assert not imported_parts(package / f"{name}.py") & later, name
    users = {path.stem for path in package.glob("_*.py") if "_outbound" in imported_parts(path)}
    for name in OUTBOUND_PARTS[:-1]:
        assert not imported_parts(package / f"{name}.py") & users, name
    for path in package.glob("_*.py"):
        if path.stem not in OUTBOUND_PARTS:
            assert not imported_parts(path) & {"_tells", "_asks", "_lookup"}, path.stem


def imported_parts(path: Path) -> set[str]:
    """The sibling modules ``path`` imports (``from ._x import ...``), at any depth."""
    tree = ast.parse(path.read_text())
    return {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is not None
    }
