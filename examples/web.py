"""A web service with actors behind its endpoints: Starlette, served by uvicorn.

Each named counter is an actor that owns its value; a registry actor creates them on demand.
The actor system lives exactly as long as the app: the lifespan starts it before the first
request and shuts it down (draining every mailbox) after the last.

    python3 dev.py run examples/web.py                 # http://127.0.0.1:8000
    curl -X POST localhost:8000/counters/visits        # {"name":"visits","value":1}
    curl -X POST localhost:8000/counters/visits -d '{"by": 5}'
    curl localhost:8000/counters/visits                # {"name":"visits","value":6}
    curl localhost:8000/counters                       # {"counters":["visits"]}

Needs the ``examples`` extra (``pip install -e '.[examples]'``); ``dev.py`` installs it.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from typing import TYPE_CHECKING

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import actors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request


# --8<-- [start:actors]
class Increment(actors.Request[int], frozen=True):
    by: int = 1


class Read(actors.Request[int], frozen=True):
    pass


class Counter(actors.Actor[Increment | Read]):
    def __init__(self) -> None:
        self.value = 0

    async def receive(self, message: Increment | Read) -> int:
        if isinstance(message, Increment):
            self.value += message.by
        return self.value


CounterRef = actors.ActorRef[Increment | Read]


class CounterFor(actors.Request[CounterRef | None], frozen=True):
    """The counter called ``name``; made on demand if ``create``, else None if missing."""

    name: str
    create: bool


class Names(actors.Request[tuple[str, ...]], frozen=True):
    pass


class Registry(actors.Actor[CounterFor | Names]):
    def __init__(self) -> None:
        self.counters: dict[str, CounterRef] = {}

    async def receive(self, message: CounterFor | Names) -> CounterRef | tuple[str, ...] | None:
        match message:
            case CounterFor(name=name, create=create):
                if name not in self.counters and create:
                    self.counters[name] = await self.system.spawn(Counter, name=f"counter-{name}")
                return self.counters.get(name)
            case Names():
                return tuple(sorted(self.counters))


# --8<-- [end:actors]


# --8<-- [start:lifespan]
@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Started before the first request, on the server's own event loop (the host loop);
    # the actors themselves run on the system's worker loops.
    async with actors.ActorSystem(workers=2, name="web") as system:
        app.state.registry = await system.spawn(Registry, name="registry")
        yield
    # Leaving the block stopped every actor, draining its mailbox, and joined the threads.
    print("web: actor system shut down cleanly", flush=True)


# --8<-- [end:lifespan]


# --8<-- [start:endpoints]
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
ASK_TIMEOUT = 2.0  # seconds; a counter this far behind is overloaded: answer 503


class Body(msgspec.Struct, forbid_unknown_fields=True):
    by: int = 1


async def registry_ask(request: Request, create: bool) -> CounterRef | None:
    registry: actors.ActorRef[CounterFor] = request.app.state.registry
    return await registry.ask(CounterFor(request.path_params["name"], create), timeout=ASK_TIMEOUT)


async def read_counter(request: Request) -> JSONResponse:
    counter = await registry_ask(request, create=False)
    if counter is None:
        return JSONResponse({"error": "no such counter"}, status_code=404)
    value = await counter.ask(Read(), timeout=ASK_TIMEOUT)
    return JSONResponse({"name": request.path_params["name"], "value": value})


async def increment_counter(request: Request) -> JSONResponse:
    name = request.path_params["name"]
    if not NAME.fullmatch(name):
        return JSONResponse({"error": "a name is 1-40 of a-z, 0-9, _ and -"}, status_code=400)
    try:
        body = msgspec.json.decode(await request.body() or b"{}", type=Body)
    except msgspec.ValidationError as error:
        return JSONResponse({"error": str(error)}, status_code=400)
    except msgspec.DecodeError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=400)
    counter = await registry_ask(request, create=True)
    assert counter is not None
    value = await counter.ask(Increment(body.by), timeout=ASK_TIMEOUT)
    return JSONResponse({"name": name, "value": value})


async def list_counters(request: Request) -> JSONResponse:
    registry: actors.ActorRef[Names] = request.app.state.registry
    return JSONResponse({"counters": list(await registry.ask(Names(), timeout=ASK_TIMEOUT))})


async def overloaded(request: Request, error: Exception) -> JSONResponse:
    # An ask that timed out: the actor is too far behind. Tell the client to back off.
    return JSONResponse({"error": "busy, try again"}, status_code=503, headers={"Retry-After": "1"})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/counters", list_counters),
            Route("/counters/{name}", read_counter, methods=["GET"]),
            Route("/counters/{name}", increment_counter, methods=["POST"]),
        ],
        lifespan=lifespan,
        exception_handlers={actors.AskTimeout: overloaded},
    )


# --8<-- [end:endpoints]


def main() -> None:
    parser = argparse.ArgumentParser(description="A web service with actors behind its endpoints.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args()
    # uvicorn runs the app on its own event loop (uvloop where installed) until Ctrl-C or
    # SIGTERM, then runs the lifespan's shutdown half.
    uvicorn.run(create_app(), host=options.host, port=options.port, log_level="info")


if __name__ == "__main__":
    main()
