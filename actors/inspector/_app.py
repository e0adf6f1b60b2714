"""The inspector's ASGI app: the page, its JSON endpoints, a server-sent event stream, actions.

Routes, below wherever the app is mounted (``GET`` unless said otherwise):

| route | answer |
| --- | --- |
| ``/`` | the page (one HTML file, no build step, no external assets) |
| ``api/meta`` | the node, whether actions are allowed, the registered message types |
| ``api/overview`` | an `Overview`: nodes, loops, counts, blocked-loop warnings |
| ``api/children?path=&offset=&limit=`` | a `ChildrenPage` |
| ``api/actor?path=`` | an `ActorView` |
| ``api/top?by=rate|depth|failed|restarts&limit=`` | the busiest actors |
| ``api/pools`` | the `PoolView`s |
| ``api/subscriptions?offset=&limit=`` | a `SubscriptionsPage` |
| ``api/dead-letters?after=`` | a `DeadLettersPage` |
| ``api/stream?watch=PATH:OFFSET:LIMIT&...&after=`` | ``text/event-stream``: a snapshot a tick |
| ``POST api/stop`` ``{"path"}`` | stop an actor (``allow_actions=True`` only, else 403) |
| ``POST api/send`` ``{"path", "type", "message"}`` | send a registered message type |

Every refusal is a 4xx with a JSON body ``{"error": ..., "status": ...}``.

The stream sends one snapshot per tick (``refresh`` seconds, at least one): the overview,
the pages the client watches (at most `MAX_WATCHED`, each at most `MAX_PAGE` actors: a
browser that opens a node reconnects with one more ``watch``), the dead letters after the
last one it got, the pools, the first subscriptions and the busiest actors. Each snapshot is
taken in a worker thread (`anyio.to_thread`), so a census of a huge tree never holds up the
host's event loop. The stream ends when the client goes away, or after `STREAM_SECONDS`
(an ``EventSource`` reconnects by itself, its ``Last-Event-ID`` saying which dead letters
it has), so that an open page never holds up a server's graceful shutdown for long.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.to_thread
import msgspec

from .._errors import ActorStopped, MailboxFull, MessageTypeError, NotSendableError
from .._inspect import MAX_PAGE, SystemView, TopOrder
from ._http import (
    HTTPError,
    Query,
    encode,
    read_body,
    respond,
    respond_error,
    route_path,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, MutableMapping

    from .._system import ActorSystem

    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

__all__ = ("MAX_WATCHED", "InspectorApp", "app")

MAX_WATCHED: Final = 32
"""The most pages one event stream watches."""

_STOP_WAIT: Final = 5.0  # seconds `POST api/stop` waits for the actor to have stopped
# Seconds one event stream lasts; the browser's EventSource then reconnects by itself (with
# Last-Event-ID). A server's graceful shutdown waits for open responses (uvicorn does), so
# an open page must not hold it up for long.
STREAM_SECONDS: Final = 15.0


class _Watch(msgspec.Struct, frozen=True):
    path: str
    offset: int
    limit: int


class _StopRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str


class _SendRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str
    type: str
    message: Any = None


class _Snapshot(msgspec.Struct, frozen=True):
    """One event of the stream."""

    overview: Any
    pages: list[Any]
    dead_letters: Any
    pools: Any
    subscriptions: Any
    top: Any


class InspectorApp:
    """The inspector of one `ActorSystem`, as an ASGI application; made by `app`.

    Mount it in any ASGI app (Starlette's ``Mount``, FastAPI's ``app.mount``) or serve it
    on its own (``uvicorn.run(inspector.app(system))``). It runs on asyncio, uvloop or trio
    hosts alike, and only reads the system (`SystemView`) unless made with
    ``allow_actions=True``.

    Example:
        ```python
        from starlette.applications import Starlette
        from starlette.routing import Mount

        web = Starlette(routes=[Mount("/inspector", app=actors.inspector.app(system))])
        ```
    """

    def __init__(
        self,
        system: ActorSystem,
        *,
        allow_actions: bool,
        message_types: Mapping[str, type[Any]],
        refresh: float,
    ) -> None:
        self.view = SystemView.of(system)
        """The read-only view the endpoints answer from."""
        self.allow_actions = allow_actions
        """Whether ``POST api/stop`` and ``POST api/send`` are served (else 403)."""
        self.message_types = dict(message_types)
        """The types ``POST api/send`` may build, by name."""
        self.refresh = refresh
        """Seconds between two events of a stream."""
        self._page = (
            importlib.resources.files("actors.inspector").joinpath("static/index.html").read_bytes()
        )
        self._tapping = False

    def __repr__(self) -> str:
        actions = "actions allowed" if self.allow_actions else "read-only"
        return f"<InspectorApp {self.view.node} {actions} refresh={self.refresh}>"

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Serve one ASGI connection (HTTP only; a lifespan is acknowledged and ignored).

        Cancellation: the request is abandoned; nothing in the system is left half done.
        """
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return  # websockets: not served (the server answers 403 to an ignored one)
        try:
            await self._serve(scope, receive, send)
        except HTTPError as error:
            await respond_error(send, error)

    async def _serve(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        path = route_path(scope)
        method: str = scope.get("method", "GET")
        if path == "":  # mounted at /inspector and asked for /inspector: relative links need /
            location = scope.get("root_path", "") + scope.get("path", "") + "/"
            await respond(send, 308, b"", "text/plain", [(b"location", location.encode())])
            return
        if path == "/":
            self._check_method(method, "GET")
            await respond(send, 200, self._page, "text/html; charset=utf-8")
            return
        if not path.startswith("/api/"):
            raise HTTPError(404, f"no such page: {path!r}")
        name = path[len("/api/") :]
        if name in ("stop", "send"):
            self._check_method(method, "POST")
            if not self.allow_actions:
                raise HTTPError(
                    403,
                    "actions are off: mount the inspector with allow_actions=True (behind your "
                    "own authentication) to stop actors or send messages",
                )
            body = await read_body(receive)
            done = await (self._stop(body) if name == "stop" else self._send(body))
            await respond(send, 200, encode(done))
            return
        self._check_method(method, "GET")
        await self._watch_dead_letters()
        query = Query(scope)
        if name == "stream":
            await self._stream(scope, query, receive, send)
            return
        reader = self._reader(name, query)
        answer: object = await anyio.to_thread.run_sync(_guarded, reader)
        await respond(send, 200, encode(answer))

    @staticmethod
    def _check_method(method: str, allowed: str) -> None:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise HTTPError(405, f"method {method} is not allowed here; use {allowed}")

    def _reader(self, name: str, query: Query) -> Callable[[], object]:
        """The call that answers ``GET api/<name>``, its parameters checked (400) first."""
        view = self.view
        match name:
            case "meta":
                return self._meta
            case "overview":
                return view.overview
            case "children":
                path = query.text("path", "")
                offset = query.integer("offset", 0, 0)
                limit = query.integer("limit", 100, 1, MAX_PAGE)
                return lambda: view.children(path or view.root(), offset=offset, limit=limit)
            case "actor":
                path = query.text("path", "")
                if not path:
                    raise HTTPError(400, "path is required (such as ?path=/user/bank)")
                return lambda: view.actor(path)
            case "top":
                by = _top_order(query.text("by", "rate"))
                limit = query.integer("limit", 20, 1, MAX_PAGE)
                return lambda: view.top(by, limit=limit)
            case "pools":
                return view.pools
            case "subscriptions":
                offset = query.integer("offset", 0, 0)
                limit = query.integer("limit", 100, 1, MAX_PAGE)
                return lambda: view.subscriptions(offset=offset, limit=limit)
            case "dead-letters":
                after = query.integer("after", 0, 0)
                return lambda: view.dead_letters(after=after)
            case _:
                raise HTTPError(404, f"no such endpoint: api/{name}")

    def _meta(self) -> dict[str, object]:
        return {
            "node": self.view.node,
            "allow_actions": self.allow_actions,
            "message_types": sorted(self.message_types),
            "refresh": self.refresh,
            "max_page": MAX_PAGE,
            "max_watched": MAX_WATCHED,
        }

    async def _watch_dead_letters(self) -> None:
        if not self._tapping:  # until the system runs (the app may be made before it starts)
            self._tapping = await self.view.watch_dead_letters()

    # -- the stream --------------------------------------------------------------------------

    async def _stream(
        self, scope: MutableMapping[str, Any], query: Query, receive: Receive, send: Send
    ) -> None:
        watches = [_parse_watch(text) for text in query.texts("watch")]
        if len(watches) > MAX_WATCHED:
            raise HTTPError(400, f"at most {MAX_WATCHED} watch parameters, got {len(watches)}")
        after = query.integer("after", 0, 0)
        by = _top_order(query.text("top", "rate"))
        last = dict(scope.get("headers", ())).get(b"last-event-id", b"")  # a reconnection
        if last.isdigit():
            after = max(after, int(last))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-store"),
                    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"retry: 1000\n\n", "more_body": True})
        with anyio.move_on_after(STREAM_SECONDS):
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                try:
                    while True:
                        snapshot = await anyio.to_thread.run_sync(
                            self._snapshot, watches, after, by
                        )
                        letters = snapshot.dead_letters.letters
                        if letters:
                            after = letters[-1].seq
                        event = b"event: snapshot\nid: %d\ndata: %s\n\n" % (after, encode(snapshot))
                        await send({"type": "http.response.body", "body": event, "more_body": True})
                        await anyio.sleep(self.refresh)
                except OSError:  # the server says the client has gone (uvicorn's)
                    group.cancel_scope.cancel()
        with contextlib.suppress(OSError):  # the client may have gone already
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _snapshot(self, watches: list[_Watch], after: int, by: TopOrder) -> _Snapshot:
        view = self.view
        pages: list[Any] = []
        for watch in watches:
            try:
                page: object = view.children(watch.path, offset=watch.offset, limit=watch.limit)
            except LookupError as error:  # ended since the client opened it
                page = {"path": watch.path, "offset": watch.offset, "error": str(error)}
            pages.append(page)
        return _Snapshot(
            overview=view.overview(),
            pages=pages,
            dead_letters=view.dead_letters(after=after),
            pools=view.pools(),
            subscriptions=view.subscriptions(limit=100),
            top=view.top(by, limit=10),
        )

    # -- actions -----------------------------------------------------------------------------

    async def _stop(self, body: bytes) -> dict[str, object]:
        request = _decode(body, _StopRequest)
        system = self.view.system
        root = system.tree.root
        if root is not None and request.path == root.path:
            raise HTTPError(400, "the root guardian is not stopped from here; shut the system down")
        ref = system.lookup(request.path)
        if ref is None:
            raise HTTPError(404, f"no live actor at {request.path!r}")
        with anyio.move_on_after(_STOP_WAIT):
            await ref.stop()
        return {"path": request.path, "status": ref.statistics().status}

    async def _send(self, body: bytes) -> dict[str, object]:
        request = _decode(body, _SendRequest)
        message_type = self.message_types.get(request.type)
        if message_type is None:
            known = ", ".join(sorted(self.message_types)) or "none"
            raise HTTPError(
                400, f"unknown message type {request.type!r}; registered types: {known}"
            )
        ref = self.view.system.lookup(request.path)
        if ref is None:
            raise HTTPError(404, f"no live actor at {request.path!r}")
        try:
            message = msgspec.convert(request.message, message_type)
        except msgspec.ValidationError as error:
            raise HTTPError(422, f"not a valid {request.type}: {error}") from None
        try:
            ref.try_send(message)
        except (MessageTypeError, NotSendableError) as error:
            raise HTTPError(422, str(error)) from None
        except MailboxFull:
            raise HTTPError(409, f"the mailbox of {request.path} is full; try again") from None
        except ActorStopped:
            raise HTTPError(404, f"actor {request.path} has stopped") from None
        return {"path": request.path, "type": request.type, "sent": True}


def app(
    system: ActorSystem,
    *,
    allow_actions: bool = False,
    message_types: Iterable[type[Any]] | Mapping[str, type[Any]] = (),
    refresh: float = 1.0,
) -> InspectorApp:
    """The live inspector of ``system``, as an ASGI app to mount in your web app.

    Read-only unless ``allow_actions`` is True: then ``POST api/stop`` stops an actor and
    ``POST api/send`` sends it a message of one of ``message_types``, built from JSON. Put
    an inspector with actions behind your own authentication: anyone who reaches it can stop
    any actor.

    Args:
        system: the system to inspect (started or not: the page shows what there is).
        allow_actions: serve the stop and send actions (else they answer 403).
        message_types: the types the send action may build: classes (named by their
            ``__qualname__``) or a mapping of name to class; msgspec converts the JSON.
        refresh: seconds between two updates of a live page, at least 1.0.

    Raises:
        ValueError: ``refresh`` below 1.0, or two message types with the same name.
        TypeError: a message type that is not a class.

    Example:
        ```python
        from fastapi import FastAPI

        web = FastAPI(lifespan=lifespan)  # starts `system` (docs: Starlette and FastAPI)
        web.mount("/inspector", actors.inspector.app(system))
        ```
    """
    if isinstance(refresh, bool) or not isinstance(refresh, int | float):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"refresh must be a number of seconds, got {refresh!r}")
    if not math.isfinite(refresh) or refresh < 1.0:
        raise ValueError(f"refresh must be at least 1.0 second (bounded cost), got {refresh!r}")
    types: dict[str, type[Any]] = {}
    pairs: list[tuple[str, Any]]
    if isinstance(message_types, Mapping):
        named = cast("Mapping[str, Any]", message_types)
        pairs = [(str(name), cls) for name, cls in named.items()]
    else:
        pairs = [(getattr(cls, "__qualname__", repr(cls)), cls) for cls in message_types]
    for name, cls in pairs:
        if not isinstance(cls, type):
            raise TypeError(f"message_types must hold classes, got {cls!r}")
        if name in types and types[name] is not cls:
            raise ValueError(f"two message types are named {name!r}; pass a mapping of names")
        types[name] = cls
    return InspectorApp(
        system, allow_actions=bool(allow_actions), message_types=types, refresh=float(refresh)
    )


# -- helpers -----------------------------------------------------------------------------------


def _guarded(reader: Callable[[], object]) -> object:
    """Run a reader in a worker thread; its refusals become 4xx errors."""
    try:
        return reader()
    except LookupError as error:
        raise HTTPError(404, str(error.args[0] if error.args else error)) from None
    except ValueError as error:
        raise HTTPError(400, str(error)) from None


def _top_order(text: str) -> TopOrder:
    if text in ("rate", "depth", "failed", "restarts"):
        return text  # type: ignore[return-value]
    raise HTTPError(400, f"top order must be rate, depth, failed or restarts, got {text!r}")


def _parse_watch(text: str) -> _Watch:
    """``PATH:OFFSET:LIMIT`` (offset and limit optional: 0 and 100)."""
    path, _, rest = text.partition(":")
    offset_text, _, limit_text = rest.partition(":")
    try:
        offset = int(offset_text) if offset_text else 0
        limit = int(limit_text) if limit_text else 100
    except ValueError:
        raise HTTPError(400, f"watch must be PATH:OFFSET:LIMIT, got {text!r}") from None
    if not path.startswith("/") or offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise HTTPError(
            400,
            f"watch must be PATH:OFFSET:LIMIT with an absolute path, offset >= 0 and a limit "
            f"from 1 to {MAX_PAGE}, got {text!r}",
        )
    return _Watch(path, offset, limit)


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as error:
        raise HTTPError(400, f"bad request body: {error}") from None
    except msgspec.DecodeError as error:
        raise HTTPError(400, f"the request body is not valid JSON: {error}") from None


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            scope.cancel()
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    """Served on its own, the app has nothing to start: acknowledge the lifespan."""
    while True:
        message = await receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
