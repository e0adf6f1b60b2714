"""The inspector's cluster view over a real nats-server (actors/cluster/_inspection.py).

Each node answers ``<prefix>.inspect.<node>``; `SystemView.overview` lists this node, then
the others as they last answered: counts, loops, public actors, served groups, durable
mailboxes. Hostile requests and answers (garbage, oversized, another wire version, an
answer naming another node) are refused, counted, and change nothing else.

asyncio host only: `SystemView` is synchronous and thread-safe (tests/test_inspector.py runs
the inspector app on every host), and the hostile peers are raw nats-py clients.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _chromium import Chromium, find_chromium
from _support import WAIT, Flag, Hold, Tick, wait_until
from cluster_support import (
    Account,
    NatsServer,
    NodeFactory,
    asyncio_backend_fixture,
    prefix_fixture,
    server_fixture,
)
from test_inspector import Pty

import actors
from actors import inspector
from actors.cluster import Nats, serve_pool
from actors.cluster._inspection import REQUEST_MAX, InspectReply, InspectRequest
from actors.cluster._wire import WIRE_VERSION, Heartbeat
from actors.inspector import NodeView, SystemView

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

anyio_backend = asyncio_backend_fixture()
server = server_fixture(jetstream=True)
prefix = prefix_fixture("i")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=2.0)


def nodes_of(system: actors.ActorSystem) -> dict[str, NodeView]:
    return {view.name: view for view in SystemView.of(system).overview().nodes}


async def seen_from(system: actors.ActorSystem, name: str, ready: Any = bool) -> NodeView:
    """Node ``name`` as ``system``'s overview shows it, once ``ready(view)`` holds."""
    found: list[NodeView] = []

    def answered() -> bool:
        view = nodes_of(system).get(name)
        if view is not None and view.error == "" and ready(view):
            found.append(view)
            return True
        return False

    await wait_until(answered)
    return found[0]


async def test_each_node_lists_the_others_with_their_public_actors_groups_and_mailboxes(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(3 * WAIT):
        async with (
            actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            await a.spawn(Account, name="acct-a", public=True)
            acct_b = await b.spawn(Account, name="acct-b", public=True)
            await b.spawn(Account, name="ledger", durable=True)
            pool = await b.spawn_pool(Account, size=2, name="workers")
            await serve_pool(b, pool, name="resize")

            # This node first, with its own lists; no network wait in overview itself.
            mine = nodes_of(a)["a"]
            assert mine.local
            assert mine.root == "/user"
            other = await seen_from(a, "b", lambda view: len(view.public) == 2)
            assert not other.local
            assert other.running
            assert other.actors >= 4  # acct-b, ledger, the pool and its workers
            assert [loop.loop for loop in other.loops] == ["0"]
            assert [(p.name, p.path, p.type) for p in other.public] == [
                ("acct-b", "/user/acct-b", "Account"),
                ("ledger", "/user/ledger", "Account"),
            ]
            (group,) = other.groups
            assert (group.name, group.path, group.size) == ("resize", "/user/workers", 2)
            assert group.workers == tuple(worker.path for worker in pool.workers)
            assert [(d.name, d.path) for d in other.durable] == [("ledger", "/user/ledger")]
            assert other.age < WAIT
            mine = nodes_of(a)["a"]
            assert [p.name for p in mine.public] == ["acct-a"]
            # The other way round too.
            assert [p.name for p in (await seen_from(b, "a", lambda v: v.public)).public] == [
                "acct-a"
            ]
            # A public actor that stops leaves the list.
            await acct_b.stop()
            after = await seen_from(a, "b", lambda view: len(view.public) == 1)
            assert [p.name for p in after.public] == ["ledger"]


async def test_a_node_without_a_cluster_lists_itself_only() -> None:
    async with actors.ActorSystem(workers=1, name="alone") as system:
        (only,) = SystemView.of(system).overview().nodes
        assert only.name == "alone"
        assert only.local
        assert (only.public, only.groups, only.durable, only.error) == ((), (), (), "")


# -- hostile frames (from raw nats-py clients) ---------------------------------------------------


@pytest.fixture
async def raw(server: NatsServer) -> AsyncIterator[Any]:
    import nats

    client = await nats.connect(server.url)  # pyright: ignore[reportUnknownMemberType]
    try:
        yield client
    finally:
        await client.close()


async def test_malformed_or_oversized_requests_are_refused_and_the_node_keeps_answering(
    server: NatsServer, prefix: str, raw: Any
) -> None:
    subject = f"{prefix}.inspect.a"
    with anyio.fail_after(2 * WAIT):
        async with actors.ActorSystem(
            workers=1, name="a", cluster=node(server.url, "a", prefix)
        ) as a:
            cluster = a.cluster
            assert isinstance(cluster, Nats)
            hostile = [
                b"\xc1 not msgpack",
                msgspec.msgpack.encode(InspectRequest(WIRE_VERSION, "x" * REQUEST_MAX)),
                msgspec.msgpack.encode(InspectRequest(WIRE_VERSION + 1, "x")),
                msgspec.msgpack.encode(["deep", [[[[["nested"]]]]]]),
            ]
            for frame in hostile:
                with pytest.raises(Exception, match=r"[Tt]imeout"):
                    await raw.request(subject, frame, timeout=0.3)
            await wait_until(lambda: cluster.statistics().rejected == len(hostile))
            # Still answering, with its own summary.
            good = msgspec.msgpack.encode(InspectRequest(WIRE_VERSION, "x"))
            answer = await raw.request(subject, good, timeout=WAIT)
            reply = msgspec.msgpack.decode(answer.data, type=InspectReply)
            assert reply.node.name == "a"
            assert reply.node.local  # as the answering node sees itself; the asker says False
            assert cluster.statistics().rejected == len(hostile)


class FakeNode:
    """A member made of a raw client: heartbeats as ``x``, answers inspection with ``answer``."""

    def __init__(self, raw: Any, prefix: str) -> None:
        self.raw = raw
        self.prefix = prefix
        self.answer = b""

    async def run(self) -> None:
        async def on_request(msg: Any) -> None:
            await self.raw.publish(msg.reply, self.answer)

        await self.raw.subscribe(f"{self.prefix}.inspect.x", cb=on_request)
        beat = msgspec.msgpack.encode(Heartbeat(WIRE_VERSION, "x", "inc-x", False))
        while True:
            await self.raw.publish(f"{self.prefix}.hb.x", beat)
            await asyncio.sleep(0.05)


def summary(name: str, **changes: Any) -> NodeView:
    base = NodeView(
        name=name,
        local=True,
        running=True,
        actors=7,
        top_level=1,
        root="/user",
        loops=(),
        dead_letters=0,
        pools=0,
        subscriptions=0,
        warnings=(),
        census_age=0.0,
    )
    return msgspec.structs.replace(base, **changes)


async def test_malformed_answers_are_refused_and_shown_as_the_nodes_error(
    server: NatsServer, prefix: str, raw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Six answers in turn, each seen only at the next refresh: at most one a second would
    # make this test wait about six seconds.
    monkeypatch.setattr("actors.cluster._inspection.REFRESH_EVERY", 0.05)
    with anyio.fail_after(3 * WAIT):
        async with actors.ActorSystem(
            workers=1,
            name="a",
            cluster=node(server.url, "a", prefix, max_message_size=64 * 1024),
        ) as a:
            cluster = a.cluster
            assert isinstance(cluster, Nats)
            fake = FakeNode(raw, prefix)
            async with anyio.create_task_group() as tg:
                tg.start_soon(fake.run)
                fake.answer = msgspec.msgpack.encode(InspectReply(WIRE_VERSION, summary("x")))
                good = await seen_from(a, "x")
                assert (good.local, good.actors) == (False, 7)

                def shown(error: str) -> bool:
                    view = nodes_of(a).get("x")
                    return view is not None and error in view.error

                # Each refusal keeps the last good answer, with why it is old.
                hostile = {
                    "malformed answer": b"\xc1 garbage",
                    "node 'y'": msgspec.msgpack.encode(InspectReply(WIRE_VERSION, summary("y"))),
                    "exceeds the limit": msgspec.msgpack.encode(
                        InspectReply(WIRE_VERSION, summary("x", root="r" * 100_000))
                    ),
                    "wire version": msgspec.msgpack.encode(
                        InspectReply(WIRE_VERSION + 1, summary("x"))
                    ),
                }
                rejected = cluster.statistics().rejected
                for error, frame in hostile.items():
                    fake.answer = frame
                    await wait_until(lambda error=error: shown(error))
                    stale = nodes_of(a)["x"]
                    assert (stale.actors, stale.root) == (7, "/user")
                assert cluster.statistics().rejected >= rejected + len(hostile)
                # A good answer again clears the error.
                fake.answer = msgspec.msgpack.encode(
                    InspectReply(WIRE_VERSION, summary("x", actors=8))
                )
                assert (await seen_from(a, "x", lambda v: v.actors == 8)).error == ""
                tg.cancel_scope.cancel()


# -- as a user sees it: the page in headless Chromium, `top` in a terminal -----------------------


class Doomed(actors.Actor[Hold | Tick | str]):
    """Parks on `Hold`, fails on any string."""

    async def receive(self, message: Hold | Tick | str) -> None:
        match message:
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
            case Tick():
                pass
            case str():
                raise RuntimeError(message)


class ClusterLive:
    """Nodes ``live`` (serving the inspector) and ``peer`` (a public actor, a served pool),
    in a thread of their own; ``live`` also has an actor that fails with a message queued."""

    def __init__(self, url: str) -> None:
        self.server_url = url
        self.ready = threading.Event()
        self.stop = Flag()
        self.url = ""
        self.doomed: actors.ActorRef[Hold | Tick | str] | None = None
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="inspection-live-server")

    def _main(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as error:
            self.failure = error
            self.ready.set()

    async def _serve(self) -> None:
        import uvicorn

        async with (
            actors.ActorSystem(
                workers=1, name="live", cluster=node(self.server_url, "live", "v")
            ) as live,
            actors.ActorSystem(
                workers=1, name="peer", cluster=node(self.server_url, "peer", "v")
            ) as peer,
        ):
            await peer.spawn(Account, name="acct", public=True)
            await serve_pool(
                peer, await peer.spawn_pool(Account, size=2, name="pool"), name="resize"
            )
            self.doomed = await live.spawn(Doomed, name="doomed", restart=actors.Restart.TEMPORARY)
            config = uvicorn.Config(
                inspector.app(live), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
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

    def dead_letter(self) -> None:
        """``doomed`` fails with ``Tick(7)`` queued behind: that is a dead letter."""
        doomed = self.doomed
        assert doomed is not None
        release, entered = Flag(), Flag()
        doomed.blocking_send(Hold(release, entered))
        entered.wait_blocking()
        doomed.blocking_send("crash")
        doomed.blocking_send(Tick(7))
        release.set()


@pytest.fixture(scope="module")
def live(server: NatsServer) -> Iterator[ClusterLive]:
    running = ClusterLive(server.url)
    running.thread.start()
    assert running.ready.wait(WAIT)
    if running.failure is not None:
        raise running.failure
    try:
        yield running
    finally:
        running.stop.set()
        running.thread.join(WAIT)


def test_top_in_a_terminal_shows_the_nodes_and_the_dead_letters(live: ClusterLive) -> None:
    top = Pty("top", live.url, "--limit", "3")
    try:
        top.expect(b"actors top - live (running)")
        top.expect(b"NODE")
        top.expect(b"this node")
        top.expect(b"answered")  # peer, once it answered
        live.dead_letter()
        top.expect(b"DEAD LETTERS (latest)")
        top.expect(b"failed -> /user/doomed: Tick(n=7)")
        top.type(b"q")
        assert top.wait() == 0
    finally:
        if top.process.poll() is None:
            top.process.kill()
    # peer: one loop, one public actor (acct), one group (resize), no durable mailbox.
    screen = top.screen.decode(errors="replace")
    assert re.search(r"peer\s+\d+\s+1\s+1\s+1\s+0\s+answered", screen), screen


@pytest.mark.skipif(find_chromium() is None, reason="no chromium on PATH")
def test_the_page_lists_the_nodes_with_their_public_actors_and_groups(
    live: ClusterLive, tmp_path: Path
) -> None:
    binary = find_chromium()
    assert binary is not None
    with Chromium(binary, tmp_path / "profile") as browser:
        browser.navigate(live.url)
        row = "(document.querySelector('tr[data-node=\"{}\"]')?.textContent ?? '')"
        assert "this node" in browser.wait_for(row.format("live"))
        peer = browser.wait_for(
            f"{row.format('peer')}.includes('acct (Account)') && {row.format('peer')}"
        )
        assert "answered" in peer
        assert "resize (2 workers)" in peer
