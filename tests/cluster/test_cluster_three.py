"""actors.cluster against a three-server NATS cluster (docs/cluster.md, "Running against a
three-server NATS cluster"): nodes connected to different servers find and use each other's
actors, a queue-group pool is served from nodes on different servers, and a node whose
server dies fails over to another one without its peers declaring it down.

Three nats-server processes joined by routes on 127.0.0.1, without JetStream; asyncio host
only (the transport is the same on every host, see test_cluster.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from _support import WAIT, wait_until
from cluster_support import (
    Account,
    Balance,
    Deposit,
    Entries,
    Entry,
    Log,
    NatsCluster,
    NodeFactory,
    Watcher,
    asyncio_backend_fixture,
    prefix_fixture,
)

import actors
from actors.cluster import Nats, RemoteRef, lookup_group, serve_pool

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

anyio_backend = asyncio_backend_fixture()
prefix = prefix_fixture("c")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=3.0, reconnect_time_wait=0.05)


@pytest.fixture
def servers() -> Iterator[NatsCluster]:
    with NatsCluster(3) as cluster:
        yield cluster


def connected_to(cluster: Nats) -> str:
    """The URL of the server ``cluster`` is connected to right now."""
    client = cluster._node.transport.client  # pyright: ignore[reportPrivateUsage]
    assert client is not None
    server = client.connected_url
    assert server is not None
    return f"nats://{server.hostname}:{server.port}"


async def test_nodes_on_different_servers_use_each_others_actors(
    servers: NatsCluster, prefix: str
) -> None:
    urls = servers.urls
    with anyio.fail_after(2 * WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node([urls[0]], "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node([urls[1]], "b", prefix)) as b,
        ):
            assert a.cluster is not None
            assert b.cluster is not None
            assert connected_to(a.cluster) == urls[0]  # type: ignore[arg-type]
            assert connected_to(b.cluster) == urls[1]  # type: ignore[arg-type]
            await a.spawn(Account, name="account", public=True)
            # The name's interest crosses the route within milliseconds: lookup retries.
            account = await b.lookup_remote("account", Deposit | Balance, timeout=5.0)
            assert isinstance(account, RemoteRef)
            assert account.node == "a"
            await account.send(Deposit(3))
            assert await account.ask(Balance(), timeout=2.0) == 3
            # Membership crosses the routes too.
            await wait_until(lambda: "a" in b.cluster.statistics().members)  # type: ignore[union-attr]
            await wait_until(lambda: "b" in a.cluster.statistics().members)  # type: ignore[union-attr]


async def test_a_pool_served_from_nodes_on_different_servers(
    servers: NatsCluster, prefix: str
) -> None:
    urls = servers.urls
    with anyio.fail_after(3 * WAIT):
        async with (
            actors.ActorSystem(workers=1, name="w1", cluster=node([urls[0]], "w1", prefix)) as w1,
            actors.ActorSystem(workers=1, name="w2", cluster=node([urls[1]], "w2", prefix)) as w2,
            actors.ActorSystem(workers=1, name="f", cluster=node([urls[2]], "f", prefix)) as front,
        ):
            pools = {}
            for name, system in (("w1", w1), ("w2", w2)):
                pools[name] = await system.spawn_pool(Account, size=2)
                await serve_pool(system, pools[name], name="accounts")
            group = await lookup_group(front, "accounts", Deposit | Balance, timeout=5.0)

            async def handled() -> dict[str, int]:
                return {
                    name: sum([await w.ask(Balance()) for w in pool.workers], start=0)
                    for name, pool in pools.items()
                }

            # The server of node f hands each message to one member, on either server (until
            # both members' interest has crossed the routes, all may go to one: keep sending,
            # bounded by fail_after, until both have served some).
            sent = 0
            counts = await handled()
            while not all(counts.values()):
                for _ in range(20):
                    await group.send(Deposit(1))
                sent += 20
                counts = await handled()
            assert sum(counts.values()) == sent  # each exactly once
            assert await group.ask(Balance(), timeout=2.0) >= 0


async def test_a_node_whose_server_dies_fails_over_and_stays_reachable(
    servers: NatsCluster, prefix: str
) -> None:
    urls = servers.urls
    events: list[actors.Terminated] = []
    heartbeat_timeout = 3.0
    with anyio.fail_after(4 * WAIT):
        # a knows all three servers (nats-py picks one); b connects to another one only.
        cluster_a = node(urls, "a", prefix, heartbeat_timeout=heartbeat_timeout)
        async with actors.ActorSystem(workers=1, name="a", cluster=cluster_a) as a:
            first = connected_to(cluster_a)
            other = next(url for url in urls if url != first)
            cluster_b = node([other], "b", prefix, heartbeat_timeout=heartbeat_timeout)
            async with actors.ActorSystem(workers=1, name="b", cluster=cluster_b) as b:
                await a.spawn(Account, name="account", public=True)
                account = await b.lookup_remote("account", Deposit | Balance, timeout=5.0)
                await account.send(Deposit(1))
                # Answered before the kill: a pipelined tell whose reply the dying server
                # loses is sent again at a's failover, which is not what this test is
                # about (test_tells_whose_replies_die_with_the_owners_server_... is).
                assert await account.ask(Balance(), timeout=WAIT) == 1
                watcher = await b.spawn(lambda: Watcher(events.append))
                await watcher.send(account)
                await wait_until(lambda: bool(account._cell.watchers))  # pyright: ignore[reportPrivateUsage]
                await wait_until(lambda: "a" in cluster_b.statistics().members)

                killed = time.monotonic()
                servers.servers[urls.index(first)].kill()
                await wait_until(lambda: cluster_a.statistics().reconnects >= 1)
                failover = time.monotonic() - killed
                assert connected_to(cluster_a) != first
                assert failover < heartbeat_timeout, failover
                # a's subscriptions were replayed on its new server, and the interest
                # crosses the route to b's: b reaches the same actor through the same ref.
                # How soon depends on the machine's load (milliseconds when idle); what
                # must hold meanwhile is that b keeps a as a member.
                attempts = 0
                while True:
                    attempts += 1
                    try:
                        assert await account.ask(Balance(), timeout=0.5) == 1
                        break
                    except actors.AskTimeout:
                        assert "a" in cluster_b.statistics().members
                        assert account.is_alive
                reached = time.monotonic() - killed
                assert reached < WAIT, f"a's actor unreachable for {reached:.1f} s after failover"
                await account.send(Deposit(2))
                assert await account.ask(Balance(), timeout=2.0) == 3
                assert account.is_alive
                assert (await b.lookup_remote("account", timeout=2.0)) == account
                # b never took a for dead: no Terminated, and a is still a member.
                await wait_until(lambda: time.monotonic() - killed > heartbeat_timeout)
                assert "a" in cluster_b.statistics().members
                assert account.is_alive
                assert not events
                print(
                    f"\nfailover: {failover:.3f} s, reached after {reached:.3f} s ({attempts} asks)"
                )


async def test_tells_whose_replies_die_with_the_owners_server_are_settled_at_its_failover(
    servers: NatsCluster, prefix: str
) -> None:
    """A window of pipelined tells, enqueued by the owner, whose replies its dying server
    loses: the sender's server is fine (no reconnect there), so only the owner's failover
    can tell it. Without that, the ref's next ask waits for ``ack_timeout`` (30 s).

    The loss is made certain, not timed: node a drops its replies to b from before b's
    tells arrive until its server is killed, and after that every late reply to those
    transmissions too (a resend carries a reply subject of its own, which goes through).
    """
    urls = servers.urls
    count = 40
    with anyio.fail_after(4 * WAIT):
        cluster_a = node(urls, "a", prefix, ack_timeout=30.0)
        async with actors.ActorSystem(workers=1, name="a", cluster=cluster_a) as a:
            first = connected_to(cluster_a)
            other = next(url for url in urls if url != first)
            cluster_b = node([other], "b", prefix, ack_timeout=30.0)
            async with actors.ActorSystem(workers=1, name="b", cluster=cluster_b) as b:
                local = await a.spawn(Log, name="log", public=True)
                log = await b.lookup_remote("log", Entry | Entries, timeout=5.0)
                assert await log.ask(Entries(), timeout=WAIT) == ()  # the credit is known
                await wait_until(lambda: "a" in cluster_b.statistics().members)

                inbox = cluster_b._node.transport.me.inbox  # pyright: ignore[reportPrivateUsage]
                client = cluster_a._node.transport.client  # pyright: ignore[reportPrivateUsage]
                assert client is not None
                publish = client.publish
                dropping = True
                lost: set[str] = set()  # the reply subjects whose replies died

                async def lossy(subject: str, payload: bytes = b"", **kw: Any) -> None:
                    if subject.startswith(inbox) and (dropping or subject in lost):
                        lost.add(subject)  # lost with the server, as far as b can tell
                        return
                    await publish(subject, payload, **kw)

                client.publish = lossy  # type: ignore[method-assign]
                for seq in range(count):
                    await log.send(Entry(1, seq))  # within the credit: none waits
                sent = tuple((1, seq) for seq in range(count))
                await wait_until(lambda: len(local_entries(a, local)) == count and bool(lost))
                assert cluster_b.statistics().pipelined >= count
                dropping = False

                servers.servers[urls.index(first)].kill()
                await wait_until(lambda: cluster_a.statistics().reconnects >= 1)
                assert cluster_b.statistics().reconnects == 0  # b saw no outage itself
                killed = time.monotonic()
                # The ask waits for the tells before it; they are settled at a's failover.
                with anyio.fail_after(WAIT):
                    assert await log.ask(Entries(), timeout=WAIT) == sent
                settled = time.monotonic() - killed
                # Every tell enqueued once, in order; none failed; the stream goes on.
                for seq in range(count, 2 * count):
                    await log.send(Entry(1, seq))
                everything = tuple((1, seq) for seq in range(2 * count))
                assert await log.ask(Entries(), timeout=WAIT) == everything
                stats = cluster_b.statistics()
                assert stats.undelivered == 0
                assert stats.resent >= 1
                print(f"\nsettled {settled:.3f} s after a's failover ({len(lost)} replies lost)")


def local_entries(system: actors.ActorSystem, ref: actors.ActorRef[Any]) -> list[Any]:
    """What a local `Log` has handled so far, read without a message (test only)."""
    instance = ref._cell.instance  # pyright: ignore[reportPrivateUsage]
    assert isinstance(instance, Log)
    return instance.entries
