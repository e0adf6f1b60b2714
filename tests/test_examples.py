"""The files in examples/ and the README's example run as documented: exit code 0 and the
lines the docs promise. The servers (web, chat) are driven over real loopback sockets and
through their own ``main()`` as a separate process, stopped with Ctrl-C."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module, to drive its parts from a test."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # msgspec resolves the Structs' annotations through it
    spec.loader.exec_module(module)
    return module


def run_example(name: str | Path, *args: str) -> str:
    """Run ``examples/<name>`` (or a path) with this interpreter; return its checked stdout."""
    env = dict(os.environ)
    # `import actors` must find this checkout even when the package is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],  # an absolute `name` replaces EXAMPLES
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    report = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, f"{name} exited with {done.returncode}\n{report}"
    return done.stdout


def test_quickstart() -> None:
    # Deterministic: every line is sequenced by an await in main (spawn waits for on_start,
    # ask for the reply, stop for on_stop).
    assert run_example("quickstart.py").splitlines() == [
        "greeter: started",
        "french: started",
        "greeter: hello, Ada",
        "greeter counted 1",
        "french: bonjour, Grace",
        "french counted 1",
        "greeter: stopped after 1 greeting(s)",
        "greeter is stopped: send raised ActorStopped",
        "french: stopped after 1 greeting(s)",
        "done",
    ]


def test_demo_defaults() -> None:
    out = run_example("demo.py")
    assert "orders service: 4 worker loops, 8 workers" in out
    # Round-robin placement: the aggregator took loop 0, the workers follow on 1, 2, 3, 0, ...
    for i in range(8):
        assert re.search(rf"worker-{i} +thread actors-worker-{(i + 1) % 4} ", out), out
    # 200 orders into 8 mailboxes of 4 with slow workers: try_send must have been refused.
    assert re.search(r"try_send refused [1-9]\d* with MailboxFull", out), out
    assert "then send waited for room: producers blocked" in out
    assert "plain thread 'phone-client' (no event loop)" in out
    assert "blocking_ask  -> phone: 10 orders, $268.55" in out
    assert "a late order raised ActorStopped and came back: Order(id=210" in out
    assert "workers drained their mailboxes: 210 of 210 processed, none lost" in out
    assert "orders 210, revenue $5,699.55" in out
    assert out.rstrip().endswith("shut down cleanly")


@pytest.mark.parametrize(("workers", "messages"), [(1, 5), (3, 120)])
def test_demo_options(workers: int, messages: int) -> None:
    out = run_example("demo.py", "--workers", str(workers), "--messages", str(messages))
    total = messages + 10
    assert f"orders service: {workers} worker loops, {2 * workers} workers" in out
    assert f"workers drained their mailboxes: {total} of {total} processed, none lost" in out
    assert f"orders {total}, revenue $" in out


def test_demo_rejects_bad_options() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--workers", "0"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--workers and --messages must be at least 1" in done.stderr


def test_readme_example(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md has no python code block"
    script = tmp_path / "readme_example.py"
    script.write_text(match.group(1), encoding="utf-8")
    assert run_example(script).splitlines() == ["hello, Ada", "1"]


# -- the tutorial's programs (docs/tutorial.md includes them) --------------------------------


def test_tutorial_account() -> None:
    assert run_example("tutorial/account.py").splitlines() == [
        "deposit 50 -> 150",
        "withdraw 500 -> False",
        "withdraw 30 -> True",
        "balance: 120",
        "<ActorRef /user/ada running mailbox=0/1000 loop=0>",
    ]


def test_tutorial_bank() -> None:
    out = run_example("tutorial/bank.py").splitlines()
    assert out[0] == "total before: 400"
    assert re.fullmatch(r"800 transfers, \d+ refused for lack of funds", out[1]), out
    assert out[2:] == ["total after: 400"]


# -- examples/bank.py -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--accounts", "5", "--clients", "12", "--workers", "3", "--crash-rate", "0.05"),
        ("--crash-rate", "0"),
    ],
)
def test_bank(args: tuple[str, ...]) -> None:
    # Concurrent transfers with crashes injected into the accounts: the branch restarts them,
    # they reload their balance from the ledger, and not a cent is created or lost. The
    # program itself exits non-zero unless both totals at the end equal the one at the start.
    out = run_example("bank.py", *args).splitlines()
    accounts = int(args[1]) if "--accounts" in args else 8
    total = accounts * 100
    assert out[0].startswith(f"bank: {accounts} accounts"), out
    assert out[0].endswith(f"{total} in total"), out
    assert re.fullmatch(r"\d+ clients made \d+ transfers \(\d+ refused for lack of funds\)", out[1])
    crashes = re.fullmatch(r"accounts crashed (?:and were restarted )?(\d+) times", out[2])
    assert crashes, out
    if args[-2:] == ("--crash-rate", "0"):
        assert crashes[1] == "0"
    else:  # 2 % or 5 % of several thousand messages: 0 would mean no crash was injected
        assert int(crashes[1]) > 0, out
    assert out[3:] == [
        f"total after: {total}, in the ledger: {total} (conserved)",
        "shut down cleanly",
    ]


# -- examples/supervision.py (docs/supervision.md includes it) -------------------------------

SUPERVISION_STORY = [
    "== the tree, and what a restart keeps",
    "  ada: __init__",
    "  ada: on_start, parent /user/bank",
    "  grace: __init__",
    "  grace: on_start, parent /user/bank",
    "bank's children: /user/bank/ada, /user/bank/grace",
    "lookup('/user/bank/ada') is the same ref: True",
    "  ada: on_stop, balance was 30",
    "  ada: __init__",
    "  ada: on_start, parent /user/bank",
    "  ada: on_restart after InjectedCrash('ada crashed on purpose')",
    "after the restart: balance 5, restarts 1",
    "  grace: on_stop, balance was 0",
    "  ada: on_stop, balance was 5",
    "== strategies",
    "OneForOne: cache crashes",
    "  cache: on_stop",
    "  cache: on_restart",
    "  counts: db 1, cache 0, api 1 (0: restarted)",
    "  api: on_stop",
    "  cache: on_stop",
    "  db: on_stop",
    "OneForAll: cache crashes",
    "  cache: on_stop",
    "  api: on_stop",
    "  db: on_stop",
    "  db: on_restart",
    "  cache: on_restart",
    "  api: on_restart",
    "  counts: db 0, cache 0, api 0 (0: restarted)",
    "  api: on_stop",
    "  cache: on_stop",
    "  db: on_stop",
    "RestForOne: cache crashes",
    "  cache: on_stop",
    "  api: on_stop",
    "  cache: on_restart",
    "  api: on_restart",
    "  counts: db 1, cache 0, api 0 (0: restarted)",
    "  api: on_stop",
    "  cache: on_stop",
    "  db: on_stop",
    "== random crashes",
    "300 jobs sent at random to 3 workers under RestForOne, 10 of them poison:",
    "  290 handled once, 0 twice, 0 lost; every worker restarted: True",
    "== restart types, death watch, dead letters",
    "transient report finishes normally:",
    "  watcher: /user/jobs/report stopped normally",
    "  join() -> None, restarts 0",
    "temporary importer crashes on a bad line:",
    "  importer: imported 1",
    "  importer: imported 2",
    "  dead letter for /user/jobs/importer (failed): Line(text='4')",
    "  dead letter for /user/jobs/importer (failed): Line(text='5')",
    "  watcher: /user/jobs/importer failed with InjectedCrash",
    "  join() -> InjectedCrash(\"cannot import 'three'\")",
    "  a later send raised ActorStopped and handed back Line(text='6')",
    "  lines: 6 sent = 3 handled + 2 dead letters + 1 rejected",
    "  jobs has 0 children left",
    "== backoff",
    "  upstream: on_stop",
    "  upstream: on_restart",
    "crash 1: restarted after a backoff of 0.05 s (waited at least that)",
    "  upstream: on_stop",
    "  upstream: on_restart",
    "crash 2: restarted after a backoff of 0.10 s (waited at least that)",
    "  upstream: on_stop",
    "  upstream: on_restart",
    "crash 3: restarted after a backoff of 0.20 s (waited at least that)",
    "  upstream: on_stop",
    "== a supervisor that works",
    "pitfall: the ask timed out; the child restarts only after this handler returns",
    "  then the child answers again: count 0",
    "== escalation",
    "  teller: on_stop",
    "  teller: on_restart",
    "teller crash 1: restarted by the branch",
    "  teller: on_stop",
    "  teller: on_restart",
    "teller crash 2: restarted by the branch",
    "  teller: on_stop",
    "  watcher: /user/hq failed with SupervisionError",
    "teller crash 3: the branch gives up, then headquarters does; the root records:",
    "  SupervisionError: actor /user/hq gave up: restarting /user/hq/branch",
    "  SupervisionError: actor /user/hq/branch gave up: restarting /user/hq/branch/teller",
    "  InjectedCrash: teller crashed on purpose",
    "  system.failures: 1; hq or branch alive: False",
    "shut down cleanly",
]


def test_supervision() -> None:
    # Crashes on purpose and recovers. Every line is ordered by a reply that main waits for, so
    # the whole story is the same on every run: the hook order of a restart, which siblings
    # each strategy restarts and in which order, no message lost or handled twice under
    # random crashes, restart types, Terminated events, dead letters, backoff, escalation.
    assert run_example("supervision.py").splitlines() == SUPERVISION_STORY


# -- servers run as their own process -------------------------------------------------------


class Process:
    """An example started with ``python examples/NAME.py ARGS``; its output read line by line."""

    def __init__(self, name: str, *args: str) -> None:
        env = dict(os.environ, PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.popen = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first line of output, from here on, that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None
            if line is None:
                raise AssertionError(f"exited before printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def interrupt(self, timeout: float = 20.0) -> list[str]:
        """Ctrl-C; wait for a clean exit and return every line printed."""
        self.popen.send_signal(signal.SIGINT)
        try:
            code = self.popen.wait(timeout=timeout)
        finally:
            self.popen.kill()
        self.reader.join(timeout)
        while (line := self.lines.get_nowait()) is not None:
            self.seen.append(line)
        assert code == 0, f"exit code {code}: {self.seen}"
        return self.seen

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()


# -- examples/web.py: Starlette behind uvicorn ----------------------------------------------

web = load_example("web")


async def test_web_asgi(anyio_backend: object) -> None:
    # The real ASGI app in process, through httpx; its lifespan runs the actor system.
    app = web.create_app()
    transport = httpx.ASGITransport(app=app)
    with anyio.fail_after(20):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://web") as client,
        ):
            assert (await client.get("/counters")).json() == {"counters": []}
            missing = await client.get("/counters/visits")
            assert missing.status_code == 404
            first = await client.post("/counters/visits")
            assert (first.status_code, first.json()) == (200, {"name": "visits", "value": 1})
            more = await client.post("/counters/visits", json={"by": 5})
            assert more.json() == {"name": "visits", "value": 6}

            # Concurrent requests: one actor per counter, one message at a time, none lost.
            async def hit(name: str) -> None:
                response = await client.post(f"/counters/{name}")
                assert response.status_code == 200

            async with anyio.create_task_group() as group:
                for i in range(60):
                    group.start_soon(hit, f"c{i % 3}")
            for i in range(3):
                assert (await client.get(f"/counters/c{i}")).json()["value"] == 20
            assert (await client.get("/counters")).json() == {
                "counters": ["c0", "c1", "c2", "visits"]
            }

            bad_name = await client.post("/counters/Not-Lower")
            assert bad_name.status_code == 400
            bad_body = await client.post("/counters/visits", json={"by": "five"})
            assert bad_body.status_code == 400
            assert "Expected `int`" in bad_body.json()["error"]
            not_json = await client.post("/counters/visits", content=b"{oops")
            assert not_json.status_code == 400
            assert (await client.get("/counters/visits")).json()["value"] == 6
        # Leaving the lifespan shut the actor system down: no actors-* thread is left
        # (the no_thread_leaks fixture checks it).


def test_web_uvicorn() -> None:
    # The example's own main(): a real uvicorn on a free loopback port, stopped with Ctrl-C.
    server = Process("web.py", "--host", "127.0.0.1", "--port", "0")
    try:
        port = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.post("/counters/visits", json={"by": 2}).json()["value"] == 2
            assert client.post("/counters/visits").json()["value"] == 3
            assert client.get("/counters/visits").json() == {"name": "visits", "value": 3}
            assert client.get("/counters/none").status_code == 404
        out = server.interrupt()
    finally:
        server.close()
    assert "web: actor system shut down cleanly" in out
    assert any("Application shutdown complete" in line for line in out), out


# -- examples/streaming.py: an actor's items as server-sent events ---------------------------

streaming = load_example("streaming")


async def test_streaming_asgi(anyio_backend: object) -> None:
    # In process through httpx (both backends): a finite stream, read to its end.
    app = streaming.create_app()
    transport = httpx.ASGITransport(app=app)
    with anyio.fail_after(20):
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://sse") as client,
        ):
            response = await client.get("/jobs/build/events", params={"steps": "3"})
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.text.split("\n\n")[:4] == [
                "data: build: step 1 of 3",
                "data: build: step 2 of 3",
                "data: build: step 3 of 3",
                "event: end\ndata: done",
            ]
            report = (await client.get("/jobs/build")).json()
            assert report == {"started": 1, "finished": 1, "abandoned": 0}
            bad = await client.get("/jobs/build/events", params={"steps": "many"})
            assert bad.status_code == 400


def test_streaming_uvicorn_client_disconnects_and_the_producer_stops() -> None:
    # A real uvicorn on a loopback port; the client leaves mid-stream. The job's report is
    # queued behind its stream (one message at a time), so its answer proves the producer
    # stopped: its generator was closed at a `yield` (abandoned), not left running.
    server = Process("streaming.py", "--host", "127.0.0.1", "--port", "0")
    try:
        port = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for round_ in range(1, 3):
                with client.stream("GET", "/jobs/endless/events") as response:
                    lines = response.iter_lines()
                    data = [line for line in itertools.islice(lines, 6) if line]
                    assert data == [f"data: endless: step {n}" for n in (1, 2, 3)]
                # The connection is closed here: the client has left mid-stream.
                report = client.get("/jobs/endless").json()
                assert report == {"started": round_, "finished": 0, "abandoned": round_}
        out = server.interrupt()
    finally:
        server.close()
    assert "streaming: actor system shut down cleanly" in out


# -- examples/chat.py: TCP chat on anyio streams --------------------------------------------

chat = load_example("chat")


class ChatClient:
    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.lines = BufferedByteReceiveStream(stream)

    @classmethod
    async def connect(cls, port: int, name: str) -> ChatClient:
        client = cls(await anyio.connect_tcp("127.0.0.1", port))
        assert await client.read() == "welcome! what is your name?"
        await client.say(name)
        return client

    async def say(self, text: str) -> None:
        await self.stream.send(text.encode() + b"\n")

    async def read(self) -> str:
        return (await self.lines.receive_until(b"\n", 4096)).decode()

    async def closed(self) -> bool:
        try:
            await self.lines.receive_until(b"\n", 4096)
        except anyio.IncompleteRead:
            return True
        return False


def asyncio_only(anyio_backend: object) -> None:
    if anyio_backend == "trio":
        pytest.skip('connection actors use placement="host", which needs an asyncio host')


async def test_chat(anyio_backend: object) -> None:
    asyncio_only(anyio_backend)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as server:
            port = await server.start(chat.run_server, "127.0.0.1", 0)
            ada = await ChatClient.connect(port, "ada")
            assert await ada.read() == "hello ada, 1 online"
            bob = await ChatClient.connect(port, "bob")
            assert await bob.read() == "hello bob, 2 online"
            assert await ada.read() == "* bob joined"

            await ada.say("hi bob")
            assert await bob.read() == "ada: hi bob"
            await bob.say("hi ada")
            assert await ada.read() == "bob: hi ada"
            # Nobody hears their own lines: the next thing ada reads is the answer to /who.
            await ada.say("/who")
            assert await ada.read() == "online: ada, bob"

            taken = await ChatClient.connect(port, "bob")
            assert await taken.read() == "name taken: bob"
            assert await taken.closed()

            await bob.say("/quit")
            assert await bob.read() == "bye"
            assert await bob.closed()
            assert await ada.read() == "* bob left"

            # A client that just goes away leaves the room too.
            cy = await ChatClient.connect(port, "cy")
            assert await cy.read() == "hello cy, 2 online"
            assert await ada.read() == "* cy joined"
            await cy.stream.aclose()
            assert await ada.read() == "* cy left"

            # Cancelling the server closes every connection and shuts the actors down.
            server.cancel_scope.cancel()
        assert await ada.closed()
        await ada.stream.aclose()
        await bob.stream.aclose()
        await taken.stream.aclose()


def test_chat_main() -> None:
    server = Process("chat.py", "--port", "0")
    try:
        port = int(server.wait_for(r"chat: listening on 127\.0\.0\.1:(\d+)").group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            lines = sock.makefile("rwb")
            assert lines.readline() == b"welcome! what is your name?\n"
            lines.write(b"ada\n")
            lines.flush()
            assert lines.readline() == b"hello ada, 1 online\n"
            out = server.interrupt()
            assert lines.readline() == b""  # the server closed the connection
    finally:
        server.close()
    assert out[-2:] == ["chat: server stopped", "chat: bye"]


# -- examples/pipeline.py (docs/patterns/pools.md includes it) -------------------------------


def test_pipeline() -> None:
    # Three pools chained by map_stream, with corrupt blocks crashing compress workers on
    # purpose. The stream digest is recomputed here from the blocks themselves: every good
    # block went through every stage, in input order, exactly once.
    out = run_example("pipeline.py", "--items", "200", "--loops", "2").splitlines()
    pipeline = load_example("pipeline")
    expected = hashlib.sha256()
    for index in range(200):
        if index not in pipeline.CORRUPT:
            expected.update(hashlib.sha256(pipeline.block_data(index)).digest())
    assert out[:7] == [
        "pipeline: 200 blocks of 64 KiB (12.5 MiB) through 3 pools on 2 loops",
        "compress stage scaled 1 -> 2 workers",
        "corrupt blocks 13 and 101: their compress worker crashed and was replaced "
        "(2 restarts, 2 blocks skipped)",
        "checked 198 blocks: 12.4 MiB -> 5.7 MiB",
        f"stream digest: {expected.hexdigest()[:16]}",
        "tally: 5 kinds on 2 shards, each kind on one shard: True; totals agree: True",
        "spot check with map(): 8 of 8 digests match",
    ]
    assert re.fullmatch(r"cores busy: \d+\.\d of \d+ \(process CPU time / wall time\)", out[7])
    if len(out) > 8:  # where the resource module exists
        assert re.fullmatch(
            r"peak memory: \d+ MiB after 10% of the input, \d+ MiB at the end.*", out[8]
        )
