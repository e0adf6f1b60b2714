"""actors.cluster under faults: hostile frames on an actor's subject, oversized messages, the
NATS server killed and restarted on the same port, a node process killed, and the example
front-end and worker programs run as separate processes.

These drive a raw nats-py client and child processes, so they run on the asyncio host only
(the transport itself is covered on every host by test_cluster.py).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    Account,
    Balance,
    Deposit,
    NatsServer,
    NodeFactory,
    Watcher,
    asyncio_backend_fixture,
    prefix_fixture,
    raw_client_fixture,
    running_script,
    server_fixture,
)

import actors
from actors.cluster import MessageTooLarge, Nats, NodeDown, RemoteRef
from actors.cluster._wire import ASK, ERROR, WIRE_VERSION, Envelope, Reply

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "examples" / "cluster" / "worker.py"  # "cluster/worker.py"
FRONTEND = ROOT / "examples" / "cluster" / "frontend.py"  # "cluster/frontend.py"
# Both import "cluster/protocol.py", so running them runs it too.

sys.path.insert(0, str(ROOT / "examples" / "cluster"))
from protocol import Balance as WorkerBalance  # noqa: E402
from protocol import Deposit as WorkerDeposit  # noqa: E402

anyio_backend = asyncio_backend_fixture()
server = server_fixture()
prefix = prefix_fixture("f")
raw = raw_client_fixture()
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0, reconnect_time_wait=0.05)


def _deep(levels: int) -> bytes:
    return b"\x91" * levels + b"\x00"


def _envelope(kind: int, type_name: str, body: bytes, version: int = WIRE_VERSION) -> bytes:
    return msgspec.msgpack.encode(
        Envelope(version, kind, type_name, msgspec.Raw(body), None, "evil")
    )


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path("/tmp/actors-pwned"),))  # never executed: no pickle


def _pwned() -> bool:
    return Path("/tmp/actors-pwned").exists()


HOSTILE = {
    "invalid byte": b"\xc1",
    "truncated": b"\x96\x01\x01",
    "trailing bytes": _envelope(ASK, "x", b"\xc0") + b"\x00",
    "str32 claiming 4 GiB": b"\xdb\xff\xff\xff\xff",
    "array32 claiming 4 G items": b"\xdd\xff\xff\xff\xff\x00",
    "100k nested arrays": _deep(100_000),
    "extension type": b"\xd4\x01\x00",
    "pickle": pickle.dumps(Evil()),
    "wrong version": _envelope(ASK, "cluster_support:Balance", b"\x90", version=99),
    "unknown type": _envelope(ASK, "no.such:Type", b"\x90"),
    "wrong schema": _envelope(ASK, "cluster_support:Deposit", b"\x81\xa6amount\xa3abc"),
    "deep body": _envelope(ASK, "cluster_support:Deposit", _deep(50)),
    "oversized": _envelope(ASK, "cluster_support:Deposit", b"\xc4\x00" + b"\x00" * 70_000),
    # msgspec raises UnicodeDecodeError (not DecodeError) for it: it used to escape the
    # receiver, which then never answered (found by the property test in test_cluster_wire).
    "a type name that is not UTF-8": _envelope(ASK, "ab", b"\x90").replace(
        b"\xa2ab", b"\xa2\xff\xfe"
    ),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_hostile_frames_are_rejected_and_the_actor_is_unharmed(
    server: NatsServer, prefix: str, raw: Any, kind: str
) -> None:
    cluster = node(server.url, "a", prefix, max_message_size=64 * 1024)
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1, cluster=cluster) as system:
            await system.spawn(Account, name="target", public=True)
            ref = await system.lookup_remote("target")
            await ref.send(Deposit(3))
            subject = f"{prefix}.name.target"
            answer = await raw.request(subject, HOSTILE[kind], timeout=2.0)
            reply = msgspec.msgpack.decode(answer.data, type=Reply)
            assert reply.status == ERROR
            assert reply.error is not None
            assert cluster.statistics().rejected == 1
            # Also published without a reply subject: dropped, counted, nothing breaks.
            await raw.publish(subject, HOSTILE[kind])
            await raw.flush()
            await wait_until(lambda: cluster.statistics().rejected == 2)
            assert await ref.ask(Balance()) == 3
            assert not _pwned()


async def test_a_frame_for_a_type_the_actor_does_not_accept_is_refused(
    server: NatsServer, prefix: str, raw: Any
) -> None:
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(workers=1, cluster=node(server.url, "a", prefix)) as system:
            await system.spawn(Account, name="target", public=True)
            frame = _envelope(ASK, "builtins:int", msgspec.msgpack.encode(5))
            answer = await raw.request(f"{prefix}.name.target", frame, timeout=2.0)
            reply = msgspec.msgpack.decode(answer.data, type=Reply)
            assert reply.error is not None
            assert reply.error.type == "MessageTypeError"


async def test_an_oversized_message_fails_at_the_call_site(server: NatsServer, prefix: str) -> None:
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(
                workers=1, name="b", cluster=node(server.url, "b", prefix, max_message_size=1024)
            ) as b,
        ):

            class Blob(msgspec.Struct, frozen=True):
                data: bytes

            class Sink(actors.Actor[Blob]):
                async def receive(self, message: Blob) -> None:
                    pass

            await a.spawn(Sink, name="sink", public=True)
            sink = await b.lookup_remote("sink", Blob)
            with pytest.raises(MessageTooLarge):
                await sink.send(Blob(b"x" * 4096))
            await sink.send(Blob(b"x" * 10))


async def test_the_nodes_reconnect_after_the_server_restarts(prefix: str) -> None:
    server = NatsServer()
    server.start()
    try:
        with anyio.fail_after(WAIT):
            async with (
                actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
                actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
            ):
                assert isinstance(a.cluster, Nats)
                assert isinstance(b.cluster, Nats)
                cluster_a, cluster_b = a.cluster, b.cluster
                await a.spawn(Account, name="survivor", public=True)
                account = await b.lookup_remote("survivor", Deposit | Balance)
                await account.send(Deposit(1))
                server.kill()
                await wait_until(lambda: not cluster_b.statistics().connected)
                # Disconnected: try_send fails fast; a short ask times out.
                with pytest.raises(actors.MailboxFull, match="not connected"):
                    account.try_send(Deposit(100))
                with pytest.raises(actors.AskTimeout):
                    await account.ask(Balance(), timeout=0.2)
                server.start()
                await wait_until(lambda: cluster_a.statistics().reconnects >= 1)
                await wait_until(lambda: cluster_b.statistics().reconnects >= 1)
                # Resumed: the same ref works, and nobody was declared down meanwhile.
                await account.send(Deposit(2))
                assert await account.ask(Balance(), timeout=2.0) == 3
                assert account.is_alive
                assert (await b.lookup_remote("survivor")) == account
    finally:
        server.stop()


async def test_a_killed_node_process_terminates_its_actors_within_the_heartbeat_timeout(
    server: NatsServer, prefix: str
) -> None:
    events: list[actors.Terminated] = []
    got = Flag()

    def seen(event: actors.Terminated) -> None:
        events.append(event)
        got.set()

    heartbeat_timeout = 1.0
    cluster = node(server.url, "watcher", "actors", heartbeat_timeout=heartbeat_timeout)
    name = f"worker-{prefix}"
    with running_script(str(WORKER), server.url, name, "0.1") as process:
        with anyio.fail_after(WAIT):
            async with actors.ActorSystem(workers=1, cluster=cluster) as system:
                account = await system.lookup_remote("account-7", timeout=5.0)
                assert isinstance(account, RemoteRef)
                assert account.node == name
                await account.send(WorkerDeposit(5))
                assert await account.ask(WorkerBalance()) == 5
                watcher = await system.spawn(lambda: Watcher(seen))
                await watcher.send(account)
                await wait_until(lambda: bool(account._cell.watchers))  # pyright: ignore[reportPrivateUsage]
                process.kill()
                process.wait(timeout=WAIT)
                killed = anyio.current_time()
                await got.wait()
                assert anyio.current_time() - killed <= heartbeat_timeout + 0.5
                assert isinstance(events[0].reason, NodeDown)
                with pytest.raises(actors.ActorStopped):
                    await account.send(WorkerDeposit(1))
                with pytest.raises(actors.ActorNotFound):
                    await system.lookup_remote("account-7", timeout=0.2)
                assert name not in cluster.statistics().members


def test_the_example_frontend_talks_to_the_example_worker_in_another_process(
    server: NatsServer,
) -> None:
    with running_script(str(WORKER), server.url, "worker-1", "0.2") as worker:
        result = subprocess.run(
            [sys.executable, str(FRONTEND), server.url],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().splitlines() == [
            "found /user/account-7 on worker-1",
            "balance: 100",
            "after withdrawing 30: 70",
            "refused: cannot withdraw 1000, the balance is 70",
            "account-8: not found",
        ]
        assert worker.poll() is None  # still serving until its stdin closes
