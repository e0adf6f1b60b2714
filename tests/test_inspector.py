"""The live inspector's ASGI app (`actors.inspector`): endpoints, paging, the event stream,
actions, bad input; driven through httpx's ASGI transport and, for the stream, straight
through the ASGI interface, on asyncio, uvloop and trio hosts alike."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec
import pytest
from _chromium import Chromium, find_chromium
from _support import WAIT, Flag, Hold, Recorder, Tick, wait_until
from test_examples import run_example

import actors
import actors.inspector as inspector

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, MutableMapping

ROOT = Path(__file__).resolve().parent.parent


class Deposit(msgspec.Struct, frozen=True):
    amount: int


class Crash(msgspec.Struct, frozen=True):
    pass


class Account(actors.Actor[Deposit | Crash | Hold]):
    def __init__(self) -> None:
        self.balance = 0

    async def receive(self, message: Deposit | Crash | Hold) -> None:
        match message:
            case Deposit(amount):
                self.balance += amount
            case Crash():
                raise RuntimeError("crash on purpose")
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()


class Balance(actors.Request[int], frozen=True):
    pass


class Bank(actors.Actor[Balance]):
    def __init__(self, accounts: int) -> None:
        self.accounts = accounts

    async def on_start(self) -> None:
        for i in range(self.accounts):
            await self.spawn(Account, name=f"account-{i}")

    async def receive(self, message: Balance) -> int:
        return 0


def client(app: Any, base: str = "http://inspector") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


@pytest.mark.anyio
async def test_endpoints_answer_with_json() -> None:
    async with actors.ActorSystem(workers=2) as system:
        await system.spawn(lambda: Bank(3), name="bank")
        await system.spawn_pool(Recorder, size=2, routing="pull", name="pool")
        async with client(inspector.app(system)) as http:
            meta = (await http.get("/api/meta")).json()
            assert meta["allow_actions"] is False
            assert meta["node"] == system.name
            overview = (await http.get("/api/overview")).json()
            node = overview["nodes"][0]
            assert node["local"] is True
            assert node["running"] is True
            assert node["root"] == "/user"
            assert [loop["loop"] for loop in node["loops"]] == ["0", "1"]
            # bank + 3 accounts + pool (supervisor, 2 workers, dispatcher) + the dead-letter tap
            assert node["actors"] == 9
            assert sum(loop["actors"] for loop in node["loops"]) == 9
            bank = (await http.get("/api/actor", params={"path": "/user/bank"})).json()
            assert (bank["type"], bank["children"], bank["status"]) == ("Bank", 3, "running")
            pools = (await http.get("/api/pools")).json()
            assert [(p["path"], p["routing"], p["size"]) for p in pools] == [
                ("/user/pool", "pull", 2)
            ]
            assert [w["path"] for w in pools[0]["workers"]] == [
                "/user/pool/worker-0",
                "/user/pool/worker-1",
            ]
            top = (await http.get("/api/top", params={"by": "depth", "limit": 3})).json()
            assert len(top) == 3
            page = await http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert b"actors inspector" in page.content


@pytest.mark.anyio
async def test_children_are_paged_in_start_order() -> None:
    async with actors.ActorSystem(workers=2) as system:
        await system.spawn(lambda: Bank(250), name="bank")
        async with client(inspector.app(system)) as http:
            names: list[str] = []
            for offset in (0, 100, 200):
                answer = await http.get(
                    "/api/children", params={"path": "/user/bank", "offset": offset, "limit": 100}
                )
                page = answer.json()
                assert page["total"] == 250
                assert page["offset"] == offset
                assert page["parent"]["path"] == "/user/bank"
                names += [actor["name"] for actor in page["actors"]]
            assert names == [f"account-{i}" for i in range(250)]
            beyond = (await http.get("/api/children?path=/user/bank&offset=300")).json()
            assert (beyond["total"], beyond["actors"]) == (250, [])
            root = (await http.get("/api/children")).json()  # no path: the root guardian's
            assert root["parent"]["path"] == "/user"
            assert "/user/bank" in [actor["path"] for actor in root["actors"]]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "url", "body", "status", "says"),
    [
        ("GET", "/api/children?path=/user/nobody", None, 404, "no live actor"),
        ("GET", "/api/actor?path=/user/nobody", None, 404, "no live actor"),
        ("GET", "/api/actor", None, 400, "path is required"),
        ("GET", "/api/children?limit=0", None, 400, "limit must be from 1 to 500"),
        ("GET", "/api/children?limit=501", None, 400, "limit must be from 1 to 500"),
        ("GET", "/api/children?offset=-1", None, 400, "offset must be >= 0"),
        ("GET", "/api/children?offset=two", None, 400, "offset must be an integer"),
        ("GET", "/api/top?by=fame", None, 400, "top order must be"),
        ("GET", "/api/stream?watch=user", None, 400, "watch must be PATH:OFFSET:LIMIT"),
        ("GET", "/api/stream?watch=/user:x", None, 400, "watch must be PATH:OFFSET:LIMIT"),
        ("GET", "/api/stream?" + "&".join(["watch=/user"] * 33), None, 400, "at most 32"),
        ("GET", "/api/nothing", None, 404, "no such endpoint"),
        ("GET", "/elsewhere", None, 404, "no such page"),
        ("POST", "/api/overview", b"{}", 405, "use GET"),
        ("GET", "/api/stop", None, 405, "use POST"),
        ("POST", "/api/send", b"{not json", 400, "not valid JSON"),
        ("POST", "/api/send", b'{"path": "/user/acc"}', 400, "bad request body"),
        ("POST", "/api/stop", b'{"path": 7}', 400, "bad request body"),
        ("POST", "/api/stop", b'{"path": "/user/nobody"}', 404, "no live actor"),
        ("POST", "/api/stop", b'{"path": "/user"}', 400, "root guardian"),
        (
            "POST",
            "/api/send",
            b'{"path": "/user/acc", "type": "Withdraw", "message": {}}',
            400,
            "unknown message type 'Withdraw'; registered types: Crash, Deposit",
        ),
        (
            "POST",
            "/api/send",
            b'{"path": "/user/acc", "type": "Deposit", "message": {"amount": "ten"}}',
            422,
            "not a valid Deposit",
        ),
        (
            "POST",
            "/api/send",
            b'{"path": "/user/nobody", "type": "Deposit", "message": {"amount": 1}}',
            404,
            "no live actor",
        ),
    ],
)
async def test_bad_input_gets_a_clear_4xx(
    method: str, url: str, body: bytes | None, status: int, says: str
) -> None:
    async with actors.ActorSystem(workers=1) as system:
        await system.spawn(Account, name="acc")
        app = inspector.app(system, allow_actions=True, message_types=[Deposit, Crash])
        async with client(app) as http:
            answer = await http.request(method, url, content=body)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()
        assert error["status"] == status
        assert says in error["error"]


@pytest.mark.anyio
async def test_actions_are_refused_without_the_flag() -> None:
    async with actors.ActorSystem(workers=1) as system:
        account = await system.spawn(Account, name="acc")
        async with client(inspector.app(system, message_types=[Deposit])) as http:
            stop = await http.post("/api/stop", json={"path": "/user/acc"})
            send = await http.post(
                "/api/send", json={"path": "/user/acc", "type": "Deposit", "message": {"amount": 1}}
            )
        for answer in (stop, send):
            assert answer.status_code == 403
            assert "allow_actions=True" in answer.json()["error"]
        assert account.is_alive
        assert account.statistics().mailbox.high_water == 0


@pytest.mark.anyio
async def test_actions_with_the_flag_send_and_stop() -> None:
    async with actors.ActorSystem(workers=1) as system:
        account = await system.spawn(Account, name="acc")
        app = inspector.app(system, allow_actions=True, message_types={"deposit": Deposit})
        async with client(app) as http:
            sent = await http.post(
                "/api/send",
                json={"path": "/user/acc", "type": "deposit", "message": {"amount": 5}},
            )
            assert sent.status_code == 200, sent.text
            assert sent.json() == {"path": "/user/acc", "type": "deposit", "sent": True}
            await wait_until(lambda: account.statistics().mailbox.depth == 0)
            meta = (await http.get("/api/meta")).json()
            assert (meta["allow_actions"], meta["message_types"]) == (True, ["deposit"])
            stopped = await http.post("/api/stop", json={"path": "/user/acc"})
            assert stopped.status_code == 200, stopped.text
            assert stopped.json() == {"path": "/user/acc", "status": "stopped"}
        assert not account.is_alive


@pytest.mark.anyio
async def test_mounted_under_a_prefix_in_starlette() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    async with actors.ActorSystem(workers=1) as system:
        web = Starlette(routes=[Mount("/inspector", app=inspector.app(system))])
        async with client(web) as http:
            bare = await http.get("/inspector")
            assert bare.status_code in (307, 308)
            assert bare.headers["location"].endswith("/inspector/")
            page = await http.get("/inspector/")
            assert page.status_code == 200
            assert b"actors inspector" in page.content
            overview = await http.get("/inspector/api/overview")
            assert overview.json()["nodes"][0]["name"] == system.name


def test_app_checks_its_options() -> None:
    system = actors.ActorSystem(workers=1)
    with pytest.raises(ValueError, match=r"refresh must be at least 1\.0"):
        inspector.app(system, refresh=0.5)
    with pytest.raises(TypeError, match="refresh must be a number"):
        inspector.app(system, refresh="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must hold classes"):
        inspector.app(system, message_types=[Deposit(1)])  # type: ignore[list-item]
    assert "read-only" in repr(inspector.app(system))


# -- the event stream, through the ASGI interface itself ---------------------------------------


class _Stream:
    """Calls the app for ``GET api/stream`` as a server would and parses its events."""

    def __init__(self, app: Any, query: str, headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
        self.app = app
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/stream",
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
        }
        self.disconnect = anyio.Event()
        self.sent, self.received = anyio.create_memory_object_stream[bytes](100)
        self.status: int | None = None

    async def _receive(self) -> MutableMapping[str, Any]:
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message.get("body"):
            await self.sent.send(message["body"])

    async def run(self) -> None:
        async with self.sent:
            await self.app(self.scope, self._receive, self._send)

    async def snapshots(self) -> AsyncIterator[dict[str, Any]]:
        buffer = b""
        async with self.received:  # ends when the app returns (`run` closes the other end)
            async for chunk in self.received:
                buffer += chunk
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    fields = dict(
                        line.split(b": ", 1) for line in event.split(b"\n") if b": " in line
                    )
                    if fields.get(b"event") == b"snapshot":
                        yield json.loads(fields[b"data"])


@pytest.mark.anyio
async def test_stream_shows_a_depth_change_and_a_restart() -> None:
    async with actors.ActorSystem(workers=2) as system:
        account = await system.spawn(Account, name="acc")
        app = inspector.app(system)
        stream = _Stream(app, "watch=/user:0:100")
        release, entered = Flag(), Flag()
        seen: list[tuple[int, int]] = []  # (depth, restarts) of /user/acc, event by event
        with anyio.fail_after(4 * WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(stream.run)
                step = 0
                async for snapshot in stream.snapshots():
                    (page,) = snapshot["pages"]
                    assert page["parent"]["path"] == "/user"
                    (acc,) = [a for a in page["actors"] if a["path"] == "/user/acc"]
                    seen.append((acc["mailbox_depth"], acc["restarts"]))
                    assert snapshot["overview"]["nodes"][0]["running"] is True
                    if step == 0:  # park the account and queue three deposits behind it
                        await account.send(Hold(release, entered))
                        await entered.wait()
                        for amount in (1, 2, 3):
                            await account.send(Deposit(amount))
                        step = 1
                    elif step == 1 and acc["mailbox_depth"] == 3:
                        release.set()
                        await account.send(Crash())
                        step = 2
                    elif step == 2 and acc["restarts"] == 1 and acc["mailbox_depth"] == 0:
                        assert acc["failed"] == 1
                        stream.disconnect.set()  # the client goes away: the app returns
                        step = 3
        assert stream.status == 200
        assert step == 3
        assert (3, 0) in seen
        assert seen[-1] == (0, 1)


@pytest.mark.anyio
async def test_stream_carries_dead_letters_once() -> None:
    async with actors.ActorSystem(workers=1) as system:
        doomed = await system.spawn(Account, name="doomed", restart=actors.Restart.TEMPORARY)
        app = inspector.app(system)
        async with client(app) as http:  # the first request starts watching dead letters
            assert (await http.get("/api/dead-letters")).json() == {"total": 0, "letters": []}
        release, entered = Flag(), Flag()
        await doomed.send(Hold(release, entered))
        await entered.wait()
        await doomed.send(Crash())
        await doomed.send(Deposit(7))  # queued behind the crash: a dead letter
        release.set()
        await doomed.join()
        stream = _Stream(app, "after=0")
        letters: list[dict[str, Any]] = []
        with anyio.fail_after(4 * WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(stream.run)
                events = 0
                async for snapshot in stream.snapshots():
                    letters += snapshot["dead_letters"]["letters"]
                    events += 1
                    if letters and events >= 2:  # a second event repeats none of them
                        stream.disconnect.set()
        assert [(lt["recipient"], lt["type"], lt["reason"]) for lt in letters] == [
            ("/user/doomed", "Deposit", "failed")
        ]
        assert letters[0]["message"] == "Deposit(amount=7)"


@pytest.mark.anyio
async def test_stream_ends_by_itself_and_resumes_after_the_last_event_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import actors.inspector._app as inspector_app

    # A few events (one each `refresh`), then it ends. Shorter than `app`'s floor of 1 s per
    # event: the test waits for the stream to end three times.
    monkeypatch.setattr(inspector_app, "STREAM_SECONDS", 0.5)
    async with actors.ActorSystem(workers=1) as system:
        doomed = await system.spawn(Account, name="doomed", restart=actors.Restart.TEMPORARY)
        app = inspector.app(system)
        app.refresh = 0.2
        async with client(app) as http:  # the first request starts watching dead letters
            await http.get("/api/meta")
        release, entered = Flag(), Flag()
        await doomed.send(Hold(release, entered))
        await entered.wait()
        await doomed.send(Crash())
        await doomed.send(Deposit(1))
        await doomed.send(Deposit(2))
        release.set()
        await doomed.join()
        for last_id, expected in ((b"0", [1, 2]), (b"1", [2]), (b"2", [])):
            stream = _Stream(app, "after=0", [(b"last-event-id", last_id)])
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as group:
                    group.start_soon(stream.run)
                    events = [snapshot async for snapshot in stream.snapshots()]
            assert events  # and it ended by itself (no disconnect)
            seqs = [
                letter["seq"] for event in events for letter in event["dead_letters"]["letters"]
            ]
            assert seqs == expected


@pytest.mark.anyio
async def test_stream_reports_a_parent_that_ended() -> None:
    async with actors.ActorSystem(workers=1) as system:
        app = inspector.app(system)
        stream = _Stream(app, "watch=/user/gone:0:10")
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as group:
                group.start_soon(stream.run)
                async for snapshot in stream.snapshots():
                    (page,) = snapshot["pages"]
                    assert page["path"] == "/user/gone"
                    assert "no live actor" in page["error"]
                    stream.disconnect.set()


@pytest.mark.anyio
async def test_inspects_a_stopped_system() -> None:
    system = actors.ActorSystem(workers=1)
    async with system:
        await system.spawn(Account, name="acc")
    async with client(inspector.app(system)) as http:
        node = (await http.get("/api/overview")).json()["nodes"][0]
        assert (node["running"], node["actors"]) == (False, 0)
        page = (await http.get("/api/children?path=/user")).json()
        assert (page["parent"]["status"], page["total"]) == ("stopped", 0)
        assert (await http.get("/api/actor?path=/user/acc")).status_code == 404
        assert (await http.get("/api/dead-letters")).json()["letters"] == []


@pytest.mark.anyio
async def test_tick_messages_are_counted_in_rates() -> None:
    # Rates need two readings a second apart: poll the view until the rate shows.
    async with actors.ActorSystem(workers=1) as system:
        recorder = await system.spawn(Recorder, name="rec")
        view = inspector.SystemView.of(system)
        assert view.actor("/user/rec").rate == 0.0  # the first reading

        async def rate() -> float:
            for n in range(50):
                await recorder.send(Tick(n))
            return view.actor("/user/rec").rate

        with anyio.fail_after(WAIT):
            while await rate() == 0.0:  # noqa: ASYNC110 - a rate has no event to wait on
                await anyio.sleep(0.05)


# -- against a real server on 127.0.0.1: `top` through a pty, `inspect`, a headless browser ------


class _LiveServer:
    """A system with a bank of accounts and the inspector, served by uvicorn in a thread."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.stop = Flag()
        self.url = ""
        self.busy: actors.ActorRef[Deposit | Crash | Hold] | None = None
        self.doomed: actors.ActorRef[Deposit | Crash | Hold] | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="inspector-live-server")

    def _main(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as error:
            self.failure = error
            self.ready.set()

    async def _serve(self) -> None:
        import uvicorn

        async with actors.ActorSystem(workers=2, name="live") as system:
            await system.spawn(lambda: Bank(120), name="bank")
            self.busy = await system.spawn(Account, name="busy")
            # Crashes once in the browser test, with a message queued: a dead letter.
            self.doomed = await system.spawn(
                Account, name="doomed", restart=actors.Restart.TEMPORARY
            )
            await system.spawn_pool(Recorder, size=2, routing="least-loaded", name="workers")
            system.events.subscribe(self.busy, Deposit)
            config = uvicorn.Config(
                inspector.app(system),
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan="off",
            )
            server = uvicorn.Server(config)
            async with anyio.create_task_group() as group:
                group.start_soon(server.serve)
                with anyio.fail_after(WAIT):
                    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                        await anyio.sleep(0.01)
                port = server.servers[0].sockets[0].getsockname()[1]
                self.url = f"http://127.0.0.1:{port}/"
                self.ready.set()
                await self.stop.wait()
                server.should_exit = True


@pytest.fixture(scope="module")
def live() -> Iterator[_LiveServer]:
    server = _LiveServer()
    server.thread.start()
    assert server.ready.wait(WAIT)
    if server.failure is not None:
        raise server.failure
    try:
        yield server
    finally:
        server.stop.set()
        server.thread.join(WAIT)


def _python_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", COLUMNS="120", LINES="40", TERM="xterm")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Pty:
    """A child process on a pseudo-terminal; `expect` reads its screen with a deadline."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        # The size `top` sees: fcntl TIOCSWINSZ (rows, columns).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actors", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_python_env(),
            cwd=ROOT,
            close_fds=True,
        )
        os.close(slave)
        self.screen = b""

    def expect(self, pattern: bytes, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while pattern not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} never appeared; the screen so far:\n{self.screen!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child has exited and closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(
                        f"{pattern!r} never appeared before the end:\n{self.screen!r}"
                    )
                self.screen += chunk

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait(self) -> int:
        """The exit status; what it wrote until then is read into `screen`."""
        try:
            code = self.process.wait(timeout=WAIT)
            while select.select([self.master], [], [], 0)[0]:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the terminal has no writer left
                    break
                if not chunk:
                    break
                self.screen += chunk
            return code
        finally:
            os.close(self.master)


def test_top_in_a_terminal_quits_on_q(live: _LiveServer) -> None:
    top = Pty("top", live.url, "--limit", "5")
    top.expect(b"\x1b[?1049h")  # the alternate screen
    top.expect(b"actors top - live (running)")
    top.expect(b"ACTOR (by rate)")
    top.expect(b"/user/bank")
    top.type(b"d")  # rank by mailbox depth
    top.expect(b"ACTOR (by depth)")
    top.type(b"q")
    assert top.wait() == 0
    assert top.screen.endswith(b"\x1b[?25h\x1b[?1049l")  # cursor and screen restored


def test_top_in_a_terminal_quits_on_ctrl_c(live: _LiveServer) -> None:
    top = Pty("top", live.url)
    top.expect(b"ACTOR (by rate)")
    top.process.send_signal(signal.SIGINT)
    assert top.wait() == 0
    assert top.screen.endswith(b"\x1b[?25h\x1b[?1049l")


def test_top_once_and_inspect_print_without_a_terminal(live: _LiveServer) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "actors", *args],
            capture_output=True,
            text=True,
            env=_python_env(),
            cwd=ROOT,
            timeout=WAIT * 3,
            check=False,
        )

    once = run("top", live.url.rstrip("/"), "--once", "--by", "depth", "--limit", "3")
    assert once.returncode == 0, once.stderr
    assert once.stdout.startswith("actors top - live (running)  actors 127")
    assert "ACTOR (by depth)" in once.stdout
    shown = run("inspect", live.url, "--no-browser")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"actors inspector of 'live' (127 actors, read-only): {live.url}",
        f"terminal view: python -m actors top {live.url}",
    ]
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{unused.getsockname()[1]}/inspector/"
        missing = run("inspect", dead, "--no-browser")
        gone = run("top", dead, "--once")
    assert missing.returncode == 1
    assert f"no inspector answers at {dead}" in missing.stderr
    assert gone.returncode == 1
    assert "no answer from" in gone.stderr
    usage = run("top")
    assert usage.returncode == 2
    assert "usage: python -m actors top" in usage.stderr


@pytest.mark.skipif(
    find_chromium() is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
)
def test_in_a_headless_browser(live: _LiveServer, tmp_path: Path) -> None:
    binary = find_chromium()
    assert binary is not None
    busy = live.busy
    assert busy is not None
    release, entered = Flag(), Flag()
    with Chromium(binary, tmp_path / "profile") as browser:
        browser.navigate(live.url)
        row = 'document.querySelector(\'tr[data-path="{}"] td[data-field="{}"]\')?.textContent'
        assert browser.wait_for(row.format("/user/busy", "depth")) == "0/1000"
        # Expand the bank: its first page of accounts appears, with a pager for the rest.
        browser.evaluate("document.querySelector('button[data-toggle=\"/user/bank\"]').click()")
        browser.wait_for("!!document.querySelector('tr[data-path=\"/user/bank/account-99\"]')")
        assert (
            browser.evaluate("document.querySelectorAll('tr[data-path^=\"/user/bank/\"]').length")
            == 100
        )
        assert browser.wait_for("document.querySelector('.pager')?.textContent.includes('of 120')")
        # A mailbox fills behind a parked handler: the page shows the depth.
        busy.blocking_send(Hold(release, entered))
        entered.wait_blocking()
        for amount in (1, 2, 3):
            busy.blocking_send(Deposit(amount))
        browser.wait_for(f"{row.format('/user/busy', 'depth')} === '3/1000'")
        # It crashes and is restarted: the page shows the restart.
        busy.blocking_send(Crash())
        release.set()
        browser.wait_for(f"{row.format('/user/busy', 'restarts')} === '1'")
        browser.wait_for(f"{row.format('/user/busy', 'depth')} === '0/1000'")
        # A temporary actor fails with a message queued behind: the page streams it.
        doomed = live.doomed
        assert doomed is not None
        release, entered = Flag(), Flag()
        doomed.blocking_send(Hold(release, entered))
        entered.wait_blocking()
        doomed.blocking_send(Crash())
        doomed.blocking_send(Deposit(7))
        release.set()
        letters = "document.querySelector('#letters').textContent"
        browser.wait_for(f"{letters}.includes('failed → /user/doomed: Deposit(amount=7)')")
        assert browser.evaluate("document.getElementById('node').textContent") == "live"
        # The node list: a system without a cluster is its one node.
        node = "document.querySelector('tr[data-node=\"live\"]')?.textContent"
        assert "this node" in browser.wait_for(node)
        browser.evaluate("document.querySelector('button[data-toggle=\"/user/bank\"]').click()")
        browser.wait_for("!document.querySelector('tr[data-path=\"/user/bank/account-0\"]')")
        browser.wait_for("document.querySelector('#pools tbody').textContent.includes('workers')")
        shot = tmp_path / "inspector.png"
        browser.screenshot(shot)
    assert shot.read_bytes().startswith(b"\x89PNG")
    keep = os.environ.get("INSPECTOR_SCREENSHOT")  # where to keep it: docs/img/inspector.png
    if keep:
        shutil.copyfile(shot, keep)


# -- the examples ---------------------------------------------------------------------------------


def test_example_observed() -> None:
    out = run_example(
        "observed.py", "--items", "200", "--loops", "2", "--port", "0", "--linger", "0"
    )
    lines = out.splitlines()
    assert re.fullmatch(r"inspector: http://127\.0\.0\.1:\d+/inspector/", lines[0])
    assert lines[1] == "terminal:  python -m actors top " + lines[0].split(": ", 1)[1]
    assert lines[2:7] == [
        "pipeline: 198 blocks checked, 2 crashed a compress worker",
        "inspector saw /user/compress: pull, 2 workers",
        "inspector saw /user/check: least-loaded, 2 workers",
        "inspector saw /user/tally: consistent-hash, 2 workers",
        "inspector saw 2 restarts of compress workers",
    ]
    # Tracing is on: a span per handled message (200 blocks through 3 pools and more).
    spans = re.fullmatch(r"traces: (\d+) spans in (\d+) traces", lines[7])
    assert spans is not None
    assert int(spans[1]) >= 3 * 200
    assert re.fullmatch(r"a crashed block's trace: [0-9a-f]{32}", lines[8])
    assert lines[9] == (
        "to see them: OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317, then Jaeger"
    )
    assert len(lines) == 10


def test_example_inspector_scale() -> None:
    # A small run of the measurement quoted in docs/howto/inspector.md (100,000 actors there).
    out = run_example(
        "howto/inspector_scale.py", "--actors", "2000", "--rounds", "1", "--messages", "20000"
    )
    lines = out.splitlines()
    assert re.fullmatch(r"spawned 2,000 actors in \d+\.\d s", lines[0])
    assert re.fullmatch(r"open the page: \d+\.\d\d s \(first\), \d+\.\d\d s \(again\)", lines[1])
    assert re.fullmatch(r"same-loop tells: [\d,]+ msg/s without, [\d,]+ msg/s with .*", lines[2])
