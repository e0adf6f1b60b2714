"""Queue groups: a public name served from several nodes shares their load, per message.

Three nodes serve ``resize`` with a pool each (one of them the example program
``examples/cluster/pool_worker.py`` in a process of its own), a fourth sends through a
`GroupRef`: every message is handled exactly once, the load spreads over the nodes, and
when nodes leave the others go on serving. Also: `lookup_group` over public actors, a group
nobody serves, and the refusals. Asyncio host only (child processes; the transport itself
is covered on every host by test_cluster.py).
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from _support import WAIT
from cluster_support import (
    Account,
    Balance,
    Deposit,
    Echo,
    NatsServer,
    NodeFactory,
    Relay,
    Relayer,
    asyncio_backend_fixture,
    prefix_fixture,
    running_script,
    server_fixture,
)

import actors
from actors.cluster import GroupRef, RemoteRef, lookup_group, serve_pool

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
POOL_WORKER = ROOT / "examples" / "cluster" / "pool_worker.py"  # "cluster/pool_worker.py"

sys.path.insert(0, str(ROOT / "examples" / "cluster"))
from pool_worker import Resizer  # noqa: E402
from protocol import Resize  # noqa: E402

anyio_backend = asyncio_backend_fixture()
server = server_fixture()
prefix = prefix_fixture("g")
node = NodeFactory(heartbeat_interval=0.2, heartbeat_timeout=1.0)


async def resize_all(ref: actors.Ref[Resize], images: range) -> Counter[str]:
    """Ask every image concurrently (16 at a time); count the answers per node."""
    answers: dict[int, str] = {}
    limit = anyio.Semaphore(16)

    async def one(image: int) -> None:
        async with limit:
            answer = await ref.ask(Resize(image, 64), timeout=5.0)
        assert answer.endswith(f"image {image} at 64 px")
        answers[image] = answer.split(":")[0]

    async with anyio.create_task_group() as group:
        for image in images:
            group.start_soon(one, image)
    assert sorted(answers) == list(images)  # every message answered
    return Counter(answers.values())


async def test_a_pool_served_from_three_nodes_handles_each_message_once_and_survives_leavers(
    server: NatsServer,
) -> None:
    # The child process uses the default prefix, so this test does too (its own name).
    done = {"a": list[int](), "b": list[int]()}
    with running_script(str(POOL_WORKER), server.url, "p1") as child, anyio.fail_after(WAIT):
        async with contextlib.AsyncExitStack() as stack:
            systems: dict[str, actors.ActorSystem] = {}
            for name in ("a", "b", "client"):
                system = actors.ActorSystem(
                    workers=1, name=name, cluster=node(server.url, name, "actors")
                )
                systems[name] = await stack.enter_async_context(system)
            for name in ("a", "b"):
                pool = await systems[name].spawn_pool(
                    lambda name=name: Resizer(name, done[name]), size=2
                )
                await serve_pool(systems[name], pool, name="resize")
            resizer = await systems["client"].lookup_remote("resize", Resize)
            assert isinstance(resizer, GroupRef)
            assert resizer.group == "resize"
            assert "GroupRef resize" in repr(resizer)

            # All three serve: each message goes to one of them, chosen per message.
            first = await resize_all(resizer, range(0, 300))
            assert set(first) == {"a", "b", "p1"}

            # p1 leaves (its system shuts down): the others take everything.
            assert child.stdin is not None
            child.stdin.close()
            assert child.stdout is not None
            line = await anyio.to_thread.run_sync(child.stdout.readline)
            handled_by_p1 = int(line.split()[1])
            second = await resize_all(resizer, range(300, 400))
            assert set(second) == {"a", "b"}

            # a leaves too: b alone serves, through the same ref.
            await systems["a"].shutdown()
            third = await resize_all(resizer, range(400, 450))
            assert set(third) == {"b"}

    # Exactly once: all 450 were answered (handled at least once), the nodes handled 450 in
    # all, and none twice here.
    assert handled_by_p1 == first["p1"]
    here = done["a"] + done["b"]
    assert len(here) + handled_by_p1 == 450
    assert len(set(here)) == len(here)


async def test_lookup_group_spreads_tells_over_public_actors_of_several_nodes(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
            actors.ActorSystem(workers=1, name="c", cluster=node(server.url, "c", prefix)) as c,
        ):
            on_a = await a.spawn(Account, name="ledger", public=True)
            on_b = await b.spawn(Account, name="ledger", public=True)
            bound = await c.lookup_remote("ledger", Deposit | Balance)
            assert isinstance(bound, RemoteRef)
            assert not isinstance(bound, GroupRef)  # actors: a lookup binds to one
            group = await lookup_group(c, "ledger", Deposit | Balance)
            assert isinstance(group, GroupRef)
            assert await lookup_group(c, "ledger") == group  # one GroupRef per name
            for _ in range(200):
                await group.send(Deposit(1))  # acknowledged: enqueued on one node
            balances = [await on_a.ask(Balance()), await on_b.ask(Balance())]
            assert sum(balances) == 200
            assert min(balances) > 0


async def test_a_group_nobody_serves_raises_actor_not_found_and_works_again_later(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="c", cluster=node(server.url, "c", prefix)) as c,
        ):
            done: list[int] = []
            pool = await a.spawn_pool(lambda: Resizer("a", done), size=1)
            await serve_pool(a, pool, name="resize")
            resizer = await c.lookup_remote("resize", Resize)
            assert isinstance(resizer, GroupRef)
            await pool.stop()

            async def refused() -> bool:
                try:
                    await resizer.ask(Resize(1, 8), timeout=0.5)
                except actors.ActorNotFound:
                    return True
                except (actors.ActorStopped, actors.AskTimeout):
                    # The member was still leaving: it refused the message (or, at most
                    # once, it was lost with the member's subscription).
                    return False
                return False

            for _ in range(500):  # the member drains its subscription: soon nobody serves
                if await refused():
                    break
                await anyio.sleep(0.01)
            else:
                pytest.fail("the stopped pool still serves the name")
            assert resizer.is_alive  # a group does not end with its members
            with pytest.raises(actors.ActorNotFound):
                await resizer.send(Resize(2, 8))
            again = await a.spawn_pool(lambda: Resizer("a", done), size=1)
            await serve_pool(a, again, name="resize")
            assert await resizer.ask(Resize(3, 8)) == "a: image 3 at 8 px"
            with pytest.raises(ValueError, match="letters, digits"):
                await serve_pool(a, again, name="no spaces")
            with pytest.raises(actors.ActorStopped):
                await serve_pool(a, pool, name="resize")
            with pytest.raises(actors.ActorNotFound):
                await lookup_group(c, "nobody", timeout=0.1)
            # A GroupRef cannot travel in a message (send the name instead).
            await a.spawn(Relayer, name="relayer", public=True)
            relayer = await c.lookup_remote("relayer", Echo | Relay)
            with pytest.raises(actors.cluster.WireError, match="GroupRef"):
                await relayer.ask(Echo(resizer))  # type: ignore[arg-type]


async def test_serve_pool_needs_a_nats_cluster() -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1) as system:
            pool = await system.spawn_pool(lambda: Resizer("x", []), size=1)
            with pytest.raises(ValueError, match="no NATS cluster"):
                await serve_pool(system, pool, name="resize")
            with pytest.raises(ValueError, match="no NATS cluster"):
                await lookup_group(system, "resize")
