"""actors.cluster security over a real nats-server: token, nkey, JWT ``.creds`` files and TLS
(server and client certificates) pass through to nats-py, wrong credentials are refused with
ClusterError, and the subject permissions documented in docs/cluster.md let a node work while
keeping it from impersonating another node's heartbeats or down notices and from reading its
replies.

The JWT chain (operator, account, users) is made in the test with the ``nkeys`` package
(cluster_support.JwtOperator), as the ``nsc`` tool would make it.

The options go to nats-py on the cluster loop whatever the host runs, so these run on the
asyncio host only (test_cluster.py covers user/password on every host).
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    Account,
    Balance,
    Deposit,
    Echo,
    JwtOperator,
    NatsServer,
    NodeFactory,
    Relay,
    Relayer,
    Stop,
    Watcher,
    asyncio_backend_fixture,
    prefix_fixture,
    write_config,
)

import actors
from actors.cluster import ClusterError, Nats
from actors.cluster._wire import WIRE_VERSION, Heartbeat

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
anyio_backend = asyncio_backend_fixture()
prefix = prefix_fixture("s")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=2.0, connect_timeout=2.0)


async def roundtrip(a: Nats, b: Nats) -> None:
    """A public actor on ``a``, looked up, sent to and asked from ``b``."""
    async with (
        actors.ActorSystem(workers=1, name="a", cluster=a) as system_a,
        actors.ActorSystem(workers=1, name="b", cluster=b) as system_b,
    ):
        await system_a.spawn(Account, name="account", public=True)
        account = await system_b.lookup_remote("account", Deposit | Balance)
        await account.send(Deposit(4))
        assert await account.ask(Balance(), timeout=2.0) == 4
        # The host loop's ask lane connects with the same credentials (and TLS): it answers.
        assert isinstance(b, Nats)
        with anyio.fail_after(WAIT):
            while b.statistics().lane_asks == 0:
                assert await account.ask(Balance(), timeout=2.0) == 4


async def refused(cluster: Nats, match: str | None = None) -> None:
    with pytest.raises(ClusterError, match=match):
        async with actors.ActorSystem(workers=1, cluster=cluster):
            pass


# -- token ------------------------------------------------------------------------------------


async def test_a_token_is_passed_through_and_a_wrong_one_refused(prefix: str) -> None:
    with NatsServer("--auth", "t0ken-s3cret") as server, anyio.fail_after(WAIT):
        await refused(node(server.url, "a", prefix, token="wrong"), "refused the credentials")
        await refused(node(server.url, "a", prefix))  # no token at all
        await roundtrip(
            node(server.url, "a", prefix, token="t0ken-s3cret"),
            node(server.url, "b", prefix, token="t0ken-s3cret"),
        )


# -- nkeys ------------------------------------------------------------------------------------


def user_nkey(directory: Path, name: str) -> tuple[str, str]:
    """A fresh user nkey: (path of its seed file, its public key)."""
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public: bytes = nkeys.from_seed(bytearray(seed)).public_key
    path = directory / f"{name}.nk"
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    return str(path), public.decode()


async def test_an_nkey_seed_is_passed_through_and_an_unknown_key_refused(
    prefix: str, tmp_path: Path
) -> None:
    pytest.importorskip("nkeys", reason="nats-py needs the nkeys package for nkeys_seed")
    seed_a, public_a = user_nkey(tmp_path, "a")
    seed_b, public_b = user_nkey(tmp_path, "b")
    stranger, _ = user_nkey(tmp_path, "stranger")
    config = write_config(
        tmp_path,
        f'authorization {{ users = [ {{ nkey: "{public_a}" }}, {{ nkey: "{public_b}" }} ] }}\n',
    )
    with NatsServer("-c", config) as server, anyio.fail_after(WAIT):
        await refused(node(server.url, "a", prefix, nkeys_seed=stranger), "refused")
        await refused(node(server.url, "a", prefix))
        await roundtrip(
            node(server.url, "a", prefix, nkeys_seed=seed_a),
            node(server.url, "b", prefix, nkeys_seed=seed_b),
        )


# -- JWT (decentralized auth: operator, account, user .creds) ---------------------------------


@pytest.fixture
def operator() -> JwtOperator:
    pytest.importorskip("nkeys", reason="nats-py needs the nkeys package for user_credentials")
    return JwtOperator()


async def test_a_jwt_creds_file_is_passed_through(
    operator: JwtOperator, prefix: str, tmp_path: Path
) -> None:
    account = operator.account("actors")
    with NatsServer("-c", operator.config(tmp_path, account)) as server, anyio.fail_after(WAIT):
        await refused(node(server.url, "a", prefix))  # no credentials at all
        await roundtrip(
            node(server.url, "a", prefix, user_credentials=account.creds(tmp_path, "a")),
            node(server.url, "b", prefix, user_credentials=account.creds(tmp_path, "b")),
        )


@pytest.mark.parametrize("wrong", ["unknown-account", "tampered", "expired", "other-seed"])
async def test_a_wrong_jwt_creds_file_is_refused(
    operator: JwtOperator, prefix: str, tmp_path: Path, wrong: str
) -> None:
    account = operator.account("actors")
    past = int(time.time()) - 60
    match wrong:
        case "unknown-account":  # signed by the trusted operator, but not known to the server
            creds = operator.account("stranger").creds(tmp_path, "a")
        case "tampered":  # an expired JWT whose expiry was pushed back after signing
            creds = account.creds(tmp_path, "a", expires=past, tamper={"exp": past + 3600})
        case "expired":
            creds = account.creds(tmp_path, "a", expires=past)
        case _:  # a valid JWT without its user's seed (a stolen JWT)
            creds = account.creds(tmp_path, "a", foreign_seed=True)
    with NatsServer("-c", operator.config(tmp_path, account)) as server, anyio.fail_after(WAIT):
        await refused(
            node(server.url, "a", prefix, user_credentials=creds), "refused the credentials"
        )


# -- TLS --------------------------------------------------------------------------------------


class Pki:
    """A throwaway CA with a server certificate for 127.0.0.1, written to files."""

    def __init__(self, directory: Path) -> None:
        trustme = pytest.importorskip("trustme")
        self.ca = trustme.CA()
        self.directory = directory
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert = directory / "server.pem"
        self.server_key = directory / "server.key"
        self.ca_cert = directory / "ca.pem"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        for extra in server.cert_chain_pems[1:]:
            extra.write_to_path(str(self.server_cert), append=True)
        server.private_key_pem.write_to_path(str(self.server_key))
        self.ca.cert_pem.write_to_path(str(self.ca_cert))

    def trusting(self, *, client_cert: str | None = None) -> ssl.SSLContext:
        """A client context that trusts the CA (and presents a certificate for ``client_cert``)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        if client_cert is not None:
            self.ca.issue_cert(client_cert).configure_cert(context)
        return context

    def server_args(self, *, verify_clients: bool = False) -> tuple[str, ...]:
        args = ["--tls", "--tlscert", str(self.server_cert), "--tlskey", str(self.server_key)]
        if verify_clients:
            args += ["--tlsverify", "--tlscacert", str(self.ca_cert)]
        return tuple(args)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


async def test_tls_with_the_ca_trusted_works_and_without_it_is_refused(
    pki: Pki, prefix: str
) -> None:
    # Each refusal below takes the whole connect_timeout (a TLS failure is retried).
    with NatsServer(*pki.server_args()) as server, anyio.fail_after(3 * WAIT):
        url = f"tls://127.0.0.1:{server.port}"
        # The system's trust store does not know the throwaway CA: verification fails.
        await refused(node(url, "a", prefix, tls=ssl.create_default_context()))
        # Without TLS at all, a server that requires it refuses the client.
        await refused(node(server.url, "a", prefix))
        await roundtrip(
            node(url, "a", prefix, tls=pki.trusting()),
            node(url, "b", prefix, tls=pki.trusting(), tls_hostname="127.0.0.1"),
        )


async def test_S4_a_server_whose_name_does_not_match_its_certificate_is_refused(
    pki: Pki, prefix: str
) -> None:
    # A trusted CA is not enough: the certificate must also name the server the node meant.
    # The server's certificate names 127.0.0.1 and localhost.
    with NatsServer(*pki.server_args()) as server, anyio.fail_after(3 * WAIT):
        url = f"tls://127.0.0.1:{server.port}"
        await refused(node(url, "a", prefix, tls=pki.trusting(), tls_hostname="db.example"))
        await roundtrip(
            node(url, "a", prefix, tls=pki.trusting(), tls_hostname="localhost"),
            node(url, "b", prefix, tls=pki.trusting()),
        )


async def test_tls_client_certificates_are_required_when_the_server_verifies_them(
    pki: Pki, prefix: str
) -> None:
    with (
        NatsServer(*pki.server_args(verify_clients=True)) as server,
        anyio.fail_after(3 * WAIT),
    ):
        url = f"tls://127.0.0.1:{server.port}"
        await refused(node(url, "a", prefix, tls=pki.trusting()))  # no client certificate
        await roundtrip(
            node(url, "a", prefix, tls=pki.trusting(client_cert="node-a")),
            node(url, "b", prefix, tls=pki.trusting(client_cert="node-b")),
        )


# -- subject permissions ----------------------------------------------------------------------


def permissions(name: str, prefix: str = "actors") -> tuple[list[str], list[str]]:
    """The subjects node ``name`` may publish to and subscribe to (docs/cluster.md)."""
    publish = [f"{prefix}.actor.>", f"{prefix}.name.>", f"{prefix}.hb.{name}"]
    publish += [f"{prefix}.down.{name}", f"{prefix}.events.{name}", f"{prefix}.inspect.*"]
    subscribe = [f"{prefix}.actor.{name}.>", f"{prefix}.name.>", f"{prefix}.hb.*"]
    subscribe += [f"{prefix}.down.*", f"{prefix}.events.*", f"{prefix}.inspect.{name}"]
    subscribe += [f"_INBOX.{prefix}.{name}.>"]
    return publish, subscribe


def permissions_config(directory: Path, names: list[str]) -> str:
    users = []
    for name in names:
        publish, subscribe = permissions(name)
        users.append(
            f"{{ user: {name}, password: {name}-pw, permissions: {{\n"
            f"    publish: {{ allow: {msgspec.json.encode(publish).decode()} }}\n"
            f"    subscribe: {{ allow: {msgspec.json.encode(subscribe).decode()} }}\n"
            "    allow_responses: true\n"
            "} }"
        )
    return write_config(directory, "authorization {\n  users = [\n" + "\n".join(users) + "\n]}\n")


def test_the_documented_permissions_are_the_tested_ones() -> None:
    text = (ROOT / "docs" / "cluster.md").read_text()
    block = text[text.index("authorization {") :]
    block = block[: block.index("```")]
    publish_line = re.search(r"publish:\s*\{ allow: \[(.*?)\] \}", block, re.DOTALL)
    subscribe_line = re.search(r"subscribe:\s*\{ allow: \[(.*?)\] \}", block, re.DOTALL)
    assert publish_line is not None
    assert subscribe_line is not None
    publish, subscribe = permissions("a")
    assert re.findall(r'"([^"]+)"', publish_line.group(1)) == publish
    assert re.findall(r'"([^"]+)"', subscribe_line.group(1)) == subscribe
    assert "allow_responses: true" in block


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer("-c", permissions_config(tmp_path, ["a", "b"])) as server:
        yield server


def violations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for r in caplog.records if "permissions violation" in (m := r.getMessage()).lower()]


async def test_nodes_with_the_documented_permissions_work(
    guarded: NatsServer, caplog: pytest.LogCaptureFixture, anyio_backend_name: str
) -> None:
    events: list[actors.Terminated] = []
    got = Flag()

    def seen(event: actors.Terminated) -> None:
        events.append(event)
        got.set()

    url = guarded.url
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(
                workers=1, name="a", cluster=node(url, "a", "actors", user="a", password="a-pw")
            ) as a,
            actors.ActorSystem(
                workers=1, name="b", cluster=node(url, "b", "actors", user="b", password="b-pw")
            ) as b,
        ):
            # Public actors, lookups, send, ask, both ways.
            await a.spawn(Account, name="account", public=True, restart=actors.Restart.TEMPORARY)
            account = await b.lookup_remote("account", Deposit | Balance | Stop)
            await account.send(Deposit(2))
            assert await account.ask(Balance(), timeout=2.0) == 2
            account.try_send(Deposit(1))
            await b.spawn(Relayer, name="relayer", public=True)
            relayer = await a.lookup_remote("relayer", Echo | Relay)
            # A ref of a's private actor travels to b, which sends to it and asks it.
            private = await a.spawn(Account)
            assert await relayer.ask(Relay(private, 5), timeout=2.0) == 5
            assert await relayer.ask(Echo(private), timeout=2.0) is private
            # The host's ask lane works within the same permissions (its replies come to
            # the node's own inbox).
            while b.cluster.statistics().lane_asks == 0:  # type: ignore[union-attr]
                assert await account.ask(Balance(), timeout=2.0) == 3
            # So does the owner's: the lane of the account's loop takes its asks in a's own
            # subjects and answers on the connection that received them (a trio host asks
            # through its cluster loop, which takes no lane).
            while anyio_backend_name != "trio" and a.cluster.statistics().lane_served == 0:  # type: ignore[union-attr]
                assert await account.ask(Balance(), timeout=2.0) == 3
            # Membership: each sees the other's heartbeats.
            assert a.cluster is not None
            assert b.cluster is not None
            await wait_until(lambda: "b" in a.cluster.statistics().members)  # type: ignore[union-attr]
            await wait_until(lambda: "a" in b.cluster.statistics().members)  # type: ignore[union-attr]
            # Remote death watch: a's down notice reaches b's watcher.
            watcher = await b.spawn(lambda: Watcher(seen))
            await watcher.send(account)
            await wait_until(lambda: bool(account._cell.watchers))  # pyright: ignore[reportPrivateUsage]
            await account.send(Stop())
            await got.wait()
            assert events[0].reason is None
            assert not events[0].ref.is_alive
    assert not violations(caplog)


async def raw_client(url: str, user: str, errors: list[str]) -> Any:
    import nats

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    return await nats.connect(
        url, user=user, password=f"{user}-pw", error_cb=on_error, allow_reconnect=False
    )


async def closed(client: Any) -> None:
    """Close a raw client even when the test is being cancelled (a timeout): left open, its
    socket and reader task outlive the test and load the next one's set-up."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(WAIT):
        await client.close()


@pytest.mark.parametrize("kind", ["hb", "down"])
async def test_a_node_cannot_publish_as_another_node(guarded: NatsServer, kind: str) -> None:
    forged = msgspec.msgpack.encode(Heartbeat(WIRE_VERSION, "b", "0000", True))  # "b left"
    received: list[tuple[str, bytes]] = []
    marker = Flag()
    evil_errors: list[str] = []

    async def on_message(msg: Any) -> None:
        received.append((msg.subject, msg.data))
        if msg.data == b"marker":
            marker.set()

    def refused() -> bool:
        return any(
            "permissions violation for publish" in e.lower() and f"actors.{kind}.b" in e
            for e in evil_errors
        )

    with anyio.fail_after(2 * WAIT):  # the connects, the test and the closes
        async with contextlib.AsyncExitStack() as clients:
            observer = await raw_client(guarded.url, "b", [])
            clients.push_async_callback(closed, observer)
            evil = await raw_client(guarded.url, "a", evil_errors)
            clients.push_async_callback(closed, evil)
            await observer.subscribe(f"actors.{kind}.*", cb=on_message)
            await observer.flush()
            # a impersonates b, then publishes as itself (allowed) on the same connection:
            # the marker arriving proves the forged frame would have arrived before it.
            await evil.publish(f"actors.{kind}.b", forged)
            # Any marker published after the forged frame proves it, so a marker that does
            # not come (seen about once in ten loaded runs, cause unknown) is sent again.
            while not marker.is_set():
                await evil.publish(f"actors.{kind}.a", b"marker")
                await evil.flush()
                with anyio.move_on_after(1.0):
                    await marker.wait()
            # The refusal itself, not just any first error (the server's -ERR is delivered
            # to the callback on its own schedule, which a loaded machine stretches).
            await wait_until(refused)
    assert received
    assert set(received) == {(f"actors.{kind}.a", b"marker")}  # markers only: nothing forged


async def test_a_node_cannot_read_another_nodes_replies(guarded: NatsServer) -> None:
    errors: list[str] = []
    with anyio.fail_after(WAIT):
        evil = await raw_client(guarded.url, "a", errors)
        try:
            await evil.subscribe("_INBOX.actors.b.>")
            await evil.flush()
            await wait_until(lambda: bool(errors))
        finally:
            await closed(evil)
    assert any("permissions violation for subscription" in e.lower() for e in errors), errors


async def test_a_node_with_another_nodes_name_cannot_serve_its_actors(
    guarded: NatsServer,
) -> None:
    # Node "b" connecting with a's credentials cannot subscribe to b's actor subjects.
    errors: list[str] = []
    with anyio.fail_after(WAIT):
        evil = await raw_client(guarded.url, "a", errors)
        try:
            await evil.subscribe("actors.actor.b.>")
            await evil.flush()
            await wait_until(lambda: bool(errors))
        finally:
            await closed(evil)
    assert any("permissions violation for subscription" in e.lower() for e in errors), errors
