"""Streaming an actor's items to a browser as server-sent events: Starlette, uvicorn.

Each named job is an actor; a registry actor (the parent) creates them on demand and stays
responsive, because the streaming happens in the children, one stream per job at a time.
``GET /jobs/NAME/events`` streams the job's progress lines as server-sent events; a client
that disconnects stops the job's producer at its next item (its ``finally`` runs), and the
job goes on with its next message. ``GET /jobs/NAME`` reports what the job's streams did.

    python3 dev.py run examples/streaming.py             # http://127.0.0.1:8000
    curl -N localhost:8000/jobs/build/events?steps=5     # data: build: step 1 of 5 ...
    curl localhost:8000/jobs/build                       # {"started":1,"finished":1,...}

Needs the ``examples`` extra (``pip install -e '.[examples]'``); ``dev.py`` installs it.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from typing import TYPE_CHECKING

import anyio
import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

import actors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

PACE = 0.02  # seconds between two progress lines of a job


# --8<-- [start:actors]
class Progress(actors.StreamRequest[str], frozen=True):
    """The job's progress lines: ``steps`` of them, or endless (0) until the reader leaves."""

    steps: int = 0


class Counts(msgspec.Struct, frozen=True):
    started: int  # streams of progress begun
    finished: int  # read to their end
    abandoned: int  # closed early: the reader left


class Report(actors.Request[Counts], frozen=True):
    pass


class Job(actors.Actor[Progress | Report]):
    def __init__(self) -> None:
        self.started = self.finished = self.abandoned = 0

    async def receive(self, message: Progress | Report) -> AsyncIterator[str] | Counts:
        match message:
            case Progress():
                return self.progress(message.steps)  # an async generator: streamed
            case Report():
                return Counts(self.started, self.finished, self.abandoned)

    async def progress(self, steps: int) -> AsyncIterator[str]:
        # Runs in the actor's turn: it may use the actor's state, and the actor handles
        # nothing else until the stream ends or its reader leaves.
        self.started += 1
        done = False
        try:
            for step in range(1, steps + 1) if steps else itertools.count(1):
                await anyio.sleep(PACE)  # the work that produces the next line
                yield f"{self.name}: step {step}" + (f" of {steps}" if steps else "")
            done = True
        finally:  # on a disconnect, the generator is closed at its `yield`
            if done:
                self.finished += 1
            else:
                self.abandoned += 1


class JobFor(actors.Request[actors.ActorRef[Progress | Report]], frozen=True):
    name: str


class Jobs(actors.Actor[JobFor]):
    """The parent: answers at once, whatever its children are streaming."""

    def __init__(self) -> None:
        self.jobs: dict[str, actors.ActorRef[Progress | Report]] = {}

    async def receive(self, message: JobFor) -> actors.ActorRef[Progress | Report]:
        if message.name not in self.jobs:
            self.jobs[message.name] = await self.spawn(Job, name=message.name)
        return self.jobs[message.name]


# --8<-- [end:actors]


# --8<-- [start:endpoints]
async def job_for(request: Request) -> actors.ActorRef[Progress | Report]:
    jobs: actors.ActorRef[JobFor] = request.app.state.jobs
    return await jobs.ask(JobFor(request.path_params["name"]))


async def events(job: actors.ActorRef[Progress | Report], steps: int) -> AsyncIterator[str]:
    # `async with`: however this generator ends (the client disconnected and Starlette
    # cancelled or dropped it), leaving the block closes the stream and stops the job.
    async with job.stream(Progress(steps), window=8) as lines:
        async for line in lines:
            yield f"data: {line}\n\n"
    yield "event: end\ndata: done\n\n"


async def stream_events(request: Request) -> StreamingResponse | JSONResponse:
    try:
        steps = int(request.query_params.get("steps", "0"))
    except ValueError:
        steps = -1
    if steps < 0:
        return JSONResponse({"error": "steps is a whole number >= 0"}, status_code=400)
    job = await job_for(request)
    return StreamingResponse(events(job, steps), media_type="text/event-stream")


async def report(request: Request) -> JSONResponse:
    # Queued behind the job's current stream, if any: answered once that stream ended.
    job = await job_for(request)
    return JSONResponse(msgspec.structs.asdict(await job.ask(Report())))


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with actors.ActorSystem(workers=2, name="streaming") as system:
        app.state.jobs = await system.spawn(Jobs, name="jobs")
        yield
    print("streaming: actor system shut down cleanly", flush=True)


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/jobs/{name}/events", stream_events),
            Route("/jobs/{name}", report),
        ],
        lifespan=lifespan,
    )


# --8<-- [end:endpoints]


def main() -> None:
    parser = argparse.ArgumentParser(description="Stream an actor's items as server-sent events.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    options = parser.parse_args()
    uvicorn.run(create_app(), host=options.host, port=options.port, log_level="info")


if __name__ == "__main__":
    main()
