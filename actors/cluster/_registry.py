"""The registry: local actors exported to other nodes, proxies of remote ones, and refs on the wire.

A local ref that leaves this node (a public actor, or a ref inside a message or a reply) is
exported: it gets an id, and with it the address ``p.actor.<node>.<incarnation>.<id>``.
When the actor ends, its export is retired and a `Down` notice tells the other nodes. An
address that arrives becomes a `RemoteRef` (one per address while anything holds it, in
a weak table) or, for one of our own actors, the local ref again. The address of a durable
actor (``spawn(durable=True)``) carries its public name, and becomes the one `DurableRef`
of that name (bound to the name, not to a node: its tells go through JetStream).

`Registry` is handed the transport (for the loop and to own the retiring of exports) and
membership (whether an address's node is down; the nodes it learns of), and shares the
proxy table with membership. The refs it makes carry their couriers (`bind`): the outbox
sends for them, and the durable mailboxes store a `DurableRef`'s tells. Those couriers
encode and decode through this registry, so they are bound after it is built, once,
before the node attaches: the one late link of the object graph.

Guarded by `Identity.lock`: the export table and the proxy table (callers' threads encode
and decode refs). The decoder cache takes no lock: the cluster loop and the ask lanes'
loops read replies through it; each get and set is one dict operation (atomic on its own,
also on free-threaded CPython, which locks each dict), and two threads that miss the same
type at once each build a decoder, equal ones, the last stored staying.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
from typing import TYPE_CHECKING, Any, Final

import msgspec
import msgspec.inspect

from .._cell import Cell
from .._ref import ActorRef, Ref, cell_of
from ._remote import DurableRef, GroupRef, RemoteRef, address_of, credit_of, finish_proxy
from ._window import Streams
from ._wire import (
    WIRE_VERSION,
    Address,
    Down,
    NodeDown,
    WireError,
    decoder_for,
    error_info,
    message_name,
)

if TYPE_CHECKING:
    import asyncio

    from nats.aio.subscription import Subscription

    from .._system import ActorSystem
    from ._membership import Membership
    from ._remote import Courier, DurableCourier, ProxyTable
    from ._transport import Transport

GROUP_ID: Final = 0  # the address id of a served pool (exported actors count from 1)


class Export:
    """A local actor reachable from other nodes (loop only, except ``ref``/``cell``)."""

    __slots__ = ("cell", "durable", "id", "ready", "ref", "streams", "subs", "tasks")

    def __init__(self, ref: ActorRef[Any], cell: Cell, id: int) -> None:
        self.ref = ref
        self.cell = cell
        self.id = id
        self.ready: asyncio.Future[None] | None = None
        self.subs: list[Subscription] = []
        self.durable = ""  # its public name once registered durable (guarded by _lock)
        self.tasks: list[asyncio.Task[Any]] = []  # its JetStream consumer, cancelled at the end
        self.streams = Streams()  # the pipelined tells it receives, per sending ref

    @property
    def path(self) -> str:
        return self.cell.path

    @property
    def accepts(self) -> tuple[type, ...] | None:
        return self.cell.accepts

    def free(self) -> int:
        box = self.cell.mailbox
        return max(0, box.capacity - len(box))


class Registry:
    """Exports, proxies, and the encoding of refs into addresses and back.

    Example:
        ```python
        registry = Registry(transport, membership, proxies)
        registry.bind(system, outbox, durable)
        address, _ = registry.export(ref)
        ```
    """

    def __init__(self, transport: Transport, membership: Membership, proxies: ProxyTable) -> None:
        self._transport = transport
        self._me = transport.me
        self._membership = membership
        self._proxies = proxies
        self._system: ActorSystem | None = None
        self._courier: Courier | None = None
        self._mailbox: DurableCourier | None = None
        # Guarded by me.lock.
        self.exports: dict[int, Export] = {}
        self._export_ids: dict[Cell, int] = {}
        self._ids = itertools.count(1)
        # Loop only.
        self._decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}

    def bind(self, system: ActorSystem, courier: Courier, mailbox: DurableCourier) -> None:
        """Set the system whose refs are exported and the couriers of the refs made here."""
        self._system = system
        self._courier = courier
        self._mailbox = mailbox

    @property
    def system(self) -> ActorSystem | None:
        """The system this node belongs to (None until attached)."""
        return self._system

    def exported(self, id: int) -> Export | None:
        """The export of ``id``, if it still exists. Any thread."""
        with self._me.lock:
            return self.exports.get(id)

    def count(self) -> int:
        with self._me.lock:
            return len(self.exports)

    # -- exports (local actors reachable from elsewhere) ------------------------------------

    def export(self, ref: ActorRef[Any], *, durable: str = "") -> tuple[Address, bool]:
        """The address of local ``ref``, exporting it on first use. Any thread.

        ``durable``: mark the export durable under that public name (its addresses then
        carry the name, so that whoever receives one sends through JetStream).
        """
        cell: Cell = cell_of(ref)
        if cell.system is not self._system:
            raise WireError(
                f"the ref to {cell.path} belongs to another actor system than node "
                f"{self._me.node}'s"
            )
        with self._me.lock:
            id = self._export_ids.get(cell)
            new = id is None
            if id is None:
                id = next(self._ids)
                self.exports[id] = Export(ref, cell, id)
                self._export_ids[cell] = id
            export = self.exports[id]
            if durable:
                export.durable = durable
            durable = export.durable
        if new:
            cell.terminated.when_set(functools.partial(self._on_export_ended, id))
        accepts = cell.accepts
        names = None if accepts is None else tuple(message_name(t) for t in accepts)
        box = cell.mailbox
        address = Address(
            self._me.node,
            self._me.incarnation,
            id,
            cell.path,
            names,
            max(0, box.capacity - len(box)),
            durable,
        )
        return address, new

    def _on_export_ended(self, id: int, reason: BaseException | None) -> None:
        # Any thread (wherever the actor ended).
        loop = self._transport.loop
        if loop is None or self._transport.closing:
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._unexport, id, reason, context=contextvars.Context())

    def _unexport(self, id: int, reason: BaseException | None) -> None:
        with self._me.lock:
            export = self.exports.pop(id, None)
            if export is None:
                return
            self._export_ids.pop(export.cell, None)
        self._transport.own(self._retire(export, reason))

    async def _retire(self, export: Export, reason: BaseException | None) -> None:
        for task in export.tasks:
            task.cancel()  # its consumer: what it fetched and did not ack is redelivered
        for sub in export.subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        client = self._transport.client
        if client is None:
            return
        info = None if reason is None else error_info(reason, export.cell.path, self._me.node)
        down = Down(WIRE_VERSION, self._me.incarnation, export.id, info)
        with contextlib.suppress(Exception):
            await client.publish(
                f"{self._me.prefix}.down.{self._me.node}", msgspec.msgpack.encode(down)
            )

    # -- encoding and decoding values ------------------------------------------------------

    def encode(self, value: object, exports: list[int]) -> bytes:
        """Encode ``value``, exporting the local refs in it (their ids go to ``exports``).

        Raises:
            WireError: ``value`` cannot be encoded, or its type has a field typed
                `ActorRef`, which the receiving node could not fill (see `local_only_field`).
        """
        field = local_only_field(type(value))
        if field is not None:
            raise WireError(
                f"{field} is typed ActorRef, a local-only handle that cannot hold a ref from "
                f"another node; type it actors.Ref to send {type(value).__qualname__} across "
                "nodes"
            )
        try:
            # Most messages hold no ref: msgspec encodes them natively, and never calls a
            # hook for what it encodes natively, so these are the bytes the hook's path
            # makes, without building the hook and its encoder per call.
            return msgspec.msgpack.encode(value)
        except (TypeError, ValueError, OverflowError):
            pass  # a ref, or what cannot be encoded: the hook's path below says which
        return self.encode_refs(value, exports)

    def encode_refs(self, value: object, exports: list[int]) -> bytes:
        """`encode`'s path for a value msgspec cannot encode natively: refs become
        addresses (local ones exported, their ids to ``exports``); anything else fails.

        Raises:
            WireError: ``value`` cannot be encoded (a `GroupRef` in it, an unknown type).
        """

        def hook(obj: Any) -> Any:
            if isinstance(obj, GroupRef):
                raise WireError(
                    f"a GroupRef (of {obj.group!r}) cannot travel in a message; send the name"
                )
            if isinstance(obj, RemoteRef):
                return address_of(obj)  # pyright: ignore[reportUnknownArgumentType]
            if isinstance(obj, ActorRef):
                address, _ = self.export(obj)  # pyright: ignore[reportUnknownArgumentType]
                exports.append(address.id)
                return address
            raise NotImplementedError

        try:
            return msgspec.msgpack.encode(value, enc_hook=hook)
        except WireError:
            raise
        except (TypeError, ValueError, OverflowError) as error:
            raise WireError(
                f"cannot encode {type(value).__qualname__} for the wire: {error}"
            ) from None

    def decoder(self, tp: Any) -> msgspec.msgpack.Decoder[Any]:
        """The cached decoder of ``tp`` (see the module docstring for the race). Any thread."""
        decoder = self._decoders.get(tp)
        if decoder is None:
            decoder = self._decoders[tp] = self.new_decoder(tp)
        return decoder

    def new_decoder(self, tp: Any) -> msgspec.msgpack.Decoder[Any]:
        """A decoder of ``tp`` (refs become refs), for another loop's own cache. Any thread."""
        return decoder_for(tp, self._dec_hook)

    def _dec_hook(self, tp: Any, obj: Any) -> Any:
        origin = getattr(tp, "__origin__", tp)
        if isinstance(origin, type) and issubclass(origin, Ref):
            try:
                address = msgspec.convert(obj, Address)
            except msgspec.ValidationError as error:
                raise ValueError(f"a malformed actor address: {error}") from None
            return self.ref_for(address)
        raise NotImplementedError(f"cannot decode {tp!r}")

    def ref_for(self, address: Address) -> Ref[Any]:
        """The ref for an address that arrived: a local ref for our own actors."""
        if address.node == self._me.node and address.incarnation == self._me.incarnation:
            with self._me.lock:
                export = self.exports.get(address.id)
            if export is not None:
                return export.ref
        if address.durable:
            return self.durable_ref(address.durable, address)
        key = (address.node, address.incarnation, address.id)
        with self._me.lock:
            ref = self._proxies.get(key)
            if ref is None:
                proxy = self._proxy(address.path.rsplit("/", 1)[-1], address.path)
                ref = RemoteRef[Any](proxy, self._couriers()[0], address)
                proxy.handle = ref
                self._proxies[key] = ref
            dead = self._membership.is_dead((key[0], key[1]))
        if address.node == self._me.node:
            # Our own actor that has stopped since, or one of an earlier run of this node.
            gone = address.incarnation == self._me.incarnation
            finish_proxy(
                cell_of(ref),
                None if gone else NodeDown(f"node {address.node} has restarted since"),
            )
        elif dead:
            finish_proxy(
                cell_of(ref),
                NodeDown(f"node {address.node} (incarnation {address.incarnation}) is gone"),
            )
        elif self._transport.on_cluster_thread():
            # Learnt from an address: it counts as alive until its heartbeats stop.
            self._membership.learn((key[0], key[1]))
        return ref

    def _proxy(self, name: str, path: str) -> Cell:
        """A cell standing for a remote actor (the caller sets its ref); it never runs."""
        system, home = self._system, self._transport.home
        assert system is not None
        assert home is not None
        return Cell(system, _no_factory, name=name, path=path, home=home, capacity=1, throughput=1)

    def group_ref(self, name: str, member: Address) -> GroupRef[Any]:
        """The one `GroupRef` of public ``name`` (while anything holds it)."""
        key = ("*", name, GROUP_ID)
        address = Address("*", "*", GROUP_ID, f"/group/{name}", member.accepts, member.free)
        with self._me.lock:
            ref = self._proxies.get(key)
            if isinstance(ref, GroupRef):
                credit_of(ref).settle(member.free)
                return ref
            proxy = self._proxy(name, address.path)
            group = GroupRef[Any](proxy, self._couriers()[0], address, name)
            proxy.handle = group
            self._proxies[key] = group
        return group

    def durable_ref(self, name: str, member: Address) -> DurableRef[Any]:
        """The one `DurableRef` of durable ``name`` (while anything holds it)."""
        # "*durable" is no valid node name, so no node's end ever finishes this proxy.
        key = ("*durable", name, GROUP_ID)
        address = Address("*", "*", GROUP_ID, member.path, member.accepts, member.free, name)
        with self._me.lock:
            ref = self._proxies.get(key)
            if isinstance(ref, DurableRef):
                return ref
            proxy = self._proxy(name, address.path)
            courier, mailbox = self._couriers()
            durable = DurableRef[Any](proxy, courier, address, name, mailbox)
            proxy.handle = durable
            self._proxies[key] = durable
        return durable

    def _couriers(self) -> tuple[Courier, DurableCourier]:
        courier, mailbox = self._courier, self._mailbox
        assert courier is not None, "Registry.bind was not called"
        assert mailbox is not None
        return courier, mailbox


def _no_factory() -> Any:
    raise RuntimeError("a proxy for a remote actor never runs")


# type -> its first field typed ActorRef ("" for none). Written from callers' threads: a
# race computes the same answer twice, and one dict store per key is safe without the GIL.
_LOCAL_ONLY: dict[type, str] = {}


def local_only_field(tp: type) -> str | None:
    """The first field of ``tp`` (as ``"Type.field"``) typed `ActorRef`, or None.

    A message that crosses nodes is decoded against its type on the receiving node, where
    a ref from any other node becomes a ``RemoteRef``: a `Ref`, not an `ActorRef`. A field
    typed `ActorRef` could only be filled there by a ref of the receiver's own actors, so
    such a type is refused before it is sent, with the fix, rather than failing to decode
    at the other end. Cached per type: the scan runs once per message class.
    """
    found = _LOCAL_ONLY.get(tp)
    if found is None:
        found = _LOCAL_ONLY[tp] = _scan(tp) or ""
    return found or None


def _scan(tp: type) -> str | None:
    if issubclass(tp, Ref):  # a bare ref (a reply, say): the reply's declared type decides
        return None
    try:
        info = msgspec.inspect.type_info(tp)
    except (TypeError, ValueError):  # not a type msgspec knows: the encoder will say so
        return None
    return _find_local_only(info, tp.__qualname__, set())


def _find_local_only(info: msgspec.inspect.Type, where: str, seen: set[int]) -> str | None:
    if id(info) in seen:  # recursive types: each node of the type graph once
        return None
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.CustomType):
        return where if issubclass(info.cls, ActorRef) else None
    fields: tuple[msgspec.inspect.Field, ...] = getattr(info, "fields", ())
    if fields:
        owner = getattr(info, "cls", None)
        prefix = owner.__qualname__ if isinstance(owner, type) else where
        for field in fields:
            found = _find_local_only(field.type, f"{prefix}.{field.name}", seen)
            if found is not None:
                return found
        return None
    inner: list[msgspec.inspect.Type] = [
        *getattr(info, "types", ()),
        *getattr(info, "item_types", ()),
    ]
    for name in ("item_type", "key_type", "value_type"):
        part = getattr(info, name, None)
        if isinstance(part, msgspec.inspect.Type):
            inner.append(part)
    for part in inner:
        found = _find_local_only(part, where, seen)
        if found is not None:
            return found
    return None
