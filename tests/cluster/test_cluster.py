"""actors.cluster over a real nats-server: lookup, send, ask, refs in messages, errors,
backpressure, try_send, order, plain threads, death watch, leaving, queue groups, security.

Every test runs on asyncio, uvloop and trio hosts: the NATS client lives on its own loop in
the cluster thread, whatever the host runs. One server serves the whole module; each test
uses its own subject prefix, so tests never see each other's nodes.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import msgspec
import pytest
from _support import WAIT, Flag, wait_until
from cluster_support import (
    Account,
    Balance,
    Crash,
    Deposit,
    Echo,
    Entries,
    Entry,
    Log,
    NatsServer,
    NodeFactory,
    Relay,
    Relayer,
    Stop,
    Watcher,
    lose_down_notices,
    prefix_fixture,
    server_fixture,
)

import actors
from actors.cluster import ClusterError, Nats, NodeDown, RemoteRef, WireError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

server = server_fixture()
prefix = prefix_fixture("t")
node = NodeFactory(heartbeat_interval=0.1, heartbeat_timeout=1.0)


class Pair:
    def __init__(self, a: actors.ActorSystem, b: actors.ActorSystem) -> None:
        self.a = a
        self.b = b


@pytest.fixture
async def pair(server: NatsServer, prefix: str) -> AsyncIterator[Pair]:
    async with (
        actors.ActorSystem(workers=2, name="a", cluster=node(server.url, "a", prefix)) as a,
        actors.ActorSystem(workers=2, name="b", cluster=node(server.url, "b", prefix)) as b,
    ):
        yield Pair(a, b)


# -- the contract of issue 7 ----------------------------------------------------------------


async def test_lookup_send_and_ask_a_public_actor(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="account-7", public=True)
        account = await pair.b.lookup_remote("account-7", Deposit | Balance)
        assert isinstance(account, actors.Ref)
        assert isinstance(account, RemoteRef)
        assert account.node == "a"
        assert account.path == "/user/account-7"
        assert account.name == "account-7"
        assert account.is_alive
        await account.send(Deposit(5))
        await account.send(Deposit(7))
        balance = await account.ask(Balance(), timeout=2.0)
        assert balance == 12
        assert "RemoteRef /user/account-7" in repr(account)
        # One ref per remote actor: lookups agree, and compare equal.
        again = await pair.b.lookup_remote("account-7", Deposit | Balance)
        assert again == account
        assert hash(again) == hash(account)


async def test_lookup_of_an_unknown_name_waits_then_raises_actor_not_found(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        started = time.monotonic()
        with pytest.raises(actors.ActorNotFound, match="nobody"):
            await pair.b.lookup_remote("nobody", timeout=0.3)
        assert time.monotonic() - started >= 0.3
        with pytest.raises(LookupError):
            await pair.b.lookup_remote("nobody", timeout=0.0)


async def test_a_public_name_is_visible_from_another_node_as_soon_as_spawn_returns(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loaded machine may take over a second to answer: the one attempt waits for it, since
    # what this checks is that the server has the name (no "no responders"), not the speed.
    monkeypatch.setattr("actors.cluster._lookup._LOOKUP_ANSWER_WAIT", WAIT)
    with anyio.fail_after(2 * WAIT):
        for i in range(5):
            await pair.a.spawn(Account, name=f"acct-{i}", public=True)
            # timeout=0: a single attempt, no retry; the name must already be there.
            found = await pair.b.lookup_remote(f"acct-{i}", timeout=0.0)
            assert found.path == f"/user/acct-{i}"


async def test_a_lookup_from_the_owning_node_returns_the_local_ref(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        local = await pair.a.spawn(Account, name="mine", public=True)
        found = await pair.a.lookup_remote("mine")
        assert found is local


async def test_builtin_exceptions_arrive_as_themselves_others_as_remote_error(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="failing", public=True)
        account = await pair.b.lookup_remote("failing", Crash | Balance)
        with pytest.raises(ValueError, match="bad amount") as builtin:
            await account.ask(Crash("value"))
        assert "/user/failing" in str(builtin.value)
        assert "node a" in str(builtin.value)
        with pytest.raises(actors.RemoteError) as custom:
            await account.ask(Crash("custom"))
        assert custom.value.type_name == "Boom"
        assert "custom failure" in str(custom.value)
        assert "/user/failing" in str(custom.value)
        assert "node a" in str(custom.value)
        # The actor was restarted by its supervisor, on its node, and serves on.
        assert await account.ask(Balance()) == 0


class NotRegisteredAnywhere(msgspec.Struct, frozen=True):
    pass


async def test_wrong_message_types_fail_at_the_call_site(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="typed", public=True)
        account: actors.Ref[Any] = await pair.b.lookup_remote("typed")
        with pytest.raises(actors.MessageTypeError, match="does not accept"):
            await account.send(NotRegisteredAnywhere())
        with pytest.raises(TypeError):
            account.try_send("a string")
        with pytest.raises(TypeError):
            await account.send([1, 2])
        # Declaring an accepts the remote actor cannot take is caught at lookup.
        with pytest.raises(actors.MessageTypeError):
            await pair.b.lookup_remote("typed", NotRegisteredAnywhere)
        assert await account.ask(Balance()) == 0


async def test_lookup_by_the_actor_class_gives_a_ref_for_its_messages(pair: Pair) -> None:
    """Regression (issue 13): ``lookup_remote(name, Account)`` raised "does not accept Account"."""
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="by-class", public=True)
        account = await pair.b.lookup_remote("by-class", Account)  # the class spawned there
        assert isinstance(account, RemoteRef)
        assert account == await pair.b.lookup_remote("by-class", Deposit | Balance)
        await account.send(Deposit(5))
        assert await account.ask(Balance(), timeout=2.0) == 5
        # A wrong message still fails at the call site, and nothing is sent.
        loose: actors.Ref[Any] = account
        with pytest.raises(actors.MessageTypeError, match="does not accept Entry"):
            await loose.send(Entry(1, 1))
        with pytest.raises(actors.MessageTypeError):
            loose.try_send(NotRegisteredAnywhere())
        # The class's message types are checked against the remote's, as a message type is.
        with pytest.raises(actors.MessageTypeError, match=r"does not accept Entry \| Entries"):
            await pair.b.lookup_remote("by-class", Log)
        assert await account.ask(Balance(), timeout=2.0) == 5


async def test_refs_to_non_public_actors_travel_in_messages_and_work(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.b.spawn(Relayer, name="relayer", public=True)
        private = await pair.a.spawn(Account)  # not public
        relayer = await pair.a.lookup_remote("relayer", Echo | Relay)
        # b receives a's private ref, sends to it and asks it, remotely.
        assert await relayer.ask(Relay(private, 10)) == 10
        assert await relayer.ask(Relay(private, 5)) == 15
        # A ref that goes there and back arrives as the very same local ref.
        back = await relayer.ask(Echo(private))
        assert back is private


async def test_send_waits_while_the_remote_mailbox_is_full(pair: Pair) -> None:
    release, entered = Flag(), Flag()
    handled: list[int] = []

    class Gated(actors.Actor[Deposit | Balance]):
        async def receive(self, message: Deposit | Balance) -> int | None:
            match message:
                case Deposit(amount):
                    if not handled:
                        entered.set()
                        await release.wait()
                    handled.append(amount)
                case Balance():
                    return len(handled)
            return None

    with anyio.fail_after(WAIT):
        local = await pair.a.spawn(Gated, name="gated", capacity=1, public=True)
        remote = await pair.b.lookup_remote("gated", Deposit | Balance)
        await remote.send(Deposit(1))  # handled: parks the actor
        await entered.wait()
        await remote.send(Deposit(2))  # fills the mailbox (capacity 1)
        # The latest report says full: try_send refuses at once.
        with pytest.raises(actors.MailboxFull) as full:
            remote.try_send(Deposit(99))
        assert full.value.message == Deposit(99)
        done = Flag()

        async def third() -> None:
            await remote.send(Deposit(3))
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            # The target node waits to enqueue it, like a local sender would.
            await wait_until(lambda: local.statistics().mailbox.waiting_senders == 1)
            assert not done.is_set()
            release.set()
            await done.wait()
        assert await remote.ask(Balance()) == 3
        assert handled == [1, 2, 3]


async def test_send_with_a_timeout_to_a_full_remote_mailbox_raises_send_timeout(
    pair: Pair,
) -> None:
    release, entered = Flag(), Flag()

    class Stuck(actors.Actor[Deposit]):
        async def receive(self, message: Deposit) -> None:
            entered.set()
            await release.wait()

    with anyio.fail_after(WAIT):
        await pair.a.spawn(Stuck, name="stuck", capacity=1, public=True)
        remote = await pair.b.lookup_remote("stuck", Deposit)
        await remote.send(Deposit(1))
        await entered.wait()
        await remote.send(Deposit(2))
        with pytest.raises(actors.SendTimeout) as timed_out:
            await remote.send(Deposit(3), timeout=0.2)
        assert timed_out.value.message == Deposit(3)
        release.set()


async def test_try_send_delivers_when_there_is_room(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="roomy", capacity=100, public=True)
        remote = await pair.b.lookup_remote("roomy", Deposit | Balance)
        for _ in range(10):
            remote.try_send(Deposit(1))
        await wait_until_async(remote, 10)


async def wait_until_async(remote: actors.Ref[Any], expected: int) -> None:
    # try_send has no acknowledgement to await: poll the balance (bounded by fail_after).
    while await remote.ask(Balance()) != expected:  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_per_sender_order_is_kept_and_nothing_is_duplicated(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Log, name="log", capacity=8, public=True)
        remote = await pair.b.lookup_remote("log", Entry | Entries)

        async def sender(index: int) -> None:
            for seq in range(100):
                await remote.send(Entry(index, seq))

        async with anyio.create_task_group() as tg:
            for index in range(4):
                tg.start_soon(sender, index)
        entries = await remote.ask(Entries())
        assert len(entries) == 400
        for index in range(4):
            assert [seq for s, seq in entries if s == index] == list(range(100))


async def test_blocking_send_and_ask_from_a_plain_thread(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="threaded", public=True)
        remote = await pair.b.lookup_remote("threaded", Deposit | Balance)

        def work() -> int:
            for _ in range(3):
                remote.blocking_send(Deposit(2))
            result: int = remote.blocking_ask(Balance(), timeout=2.0)
            return result

        assert await anyio.to_thread.run_sync(work) == 6
        with pytest.raises(RuntimeError, match="blocking"):
            remote.blocking_send(Deposit(1))


class Forward(actors.Request[int], frozen=True):
    amount: int


class Teller(actors.Actor[Forward]):
    def __init__(self, account: actors.Ref[Deposit | Balance]) -> None:
        self.account = account

    async def receive(self, message: Forward) -> int:
        await self.account.send(Deposit(message.amount))
        result: int = await self.account.ask(Balance())
        return result


async def test_remote_actors_can_be_used_from_actor_handlers(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="teller-account", public=True)
        remote = await pair.b.lookup_remote("teller-account", Deposit | Balance)
        teller = await pair.b.spawn(lambda: Teller(remote))
        assert await teller.ask(Forward(4)) == 4
        assert await teller.ask(Forward(1)) == 5


async def test_a_remote_ref_offers_only_what_it_can_honour(pair: Pair) -> None:
    # stop and statistics are local-only: a remote ref is a Ref, not an ActorRef, and has
    # neither (before, it had both and raised NotImplementedError).
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="local-only", public=True)
        remote = await pair.b.lookup_remote("local-only")
        assert isinstance(remote, actors.Ref)
        assert not isinstance(remote, actors.ActorRef)
        assert not hasattr(remote, "stop")
        assert not hasattr(remote, "statistics")
        assert not hasattr(remote, "take_credit")  # the credit view is not on the ref either
        local = pair.a.lookup("/user/local-only")
        assert isinstance(local, actors.ActorRef)
        assert local.statistics().path == "/user/local-only"


class HandOver(msgspec.Struct, frozen=True):
    """A ref in a field typed Ref: may come from any node."""

    ref: actors.Ref[Any]


class HandOverLocal(msgspec.Struct, frozen=True):
    """The same field typed ActorRef: local-only, refused before it leaves the node."""

    ref: actors.ActorRef[Any]


class Handled(actors.Request[int], frozen=True):
    pass


class Holder(actors.Actor[HandOver | HandOverLocal | Handled]):
    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: HandOver | HandOverLocal | Handled) -> str | int:
        if isinstance(message, Handled):
            return self.handled
        self.handled += 1
        return message.ref.path


async def test_a_field_typed_actor_ref_is_refused_at_the_call_site(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Holder, name="holder", public=True)
        holder = await pair.b.lookup_remote("holder", Holder)
        local = await pair.b.spawn(Account)
        assert await holder.ask(HandOver(local)) == local.path  # typed Ref: it travels
        bad = HandOverLocal(local)
        for attempt in (holder.send(bad), holder.ask(bad)):
            with pytest.raises(
                WireError, match=r"HandOverLocal\.ref is typed ActorRef.*actors\.Ref"
            ):
                await attempt
        with pytest.raises(WireError, match=r"HandOverLocal\.ref"):
            holder.try_send(bad)
        assert await holder.ask(Handled()) == 1  # nothing of the refused ones arrived


class Reading(msgspec.Struct, frozen=True):
    """A sensor reading: any int in Python, 64 bits at most in msgpack."""

    value: int


class Gauge(actors.Actor[Reading | Handled]):
    def __init__(self) -> None:
        self.handled = 0

    def receive(self, message: Reading | Handled) -> int | None:
        if isinstance(message, Handled):
            return self.handled
        self.handled += 1
        return None


async def test_B2_a_message_that_cannot_be_encoded_fails_at_the_call_site(pair: Pair) -> None:
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Gauge, name="gauge", public=True)
        gauge = await pair.b.lookup_remote("gauge", Reading | Handled)
        await gauge.send(Reading(2**64 - 1))  # the largest that fits: it travels
        bad = Reading(2**70)
        with pytest.raises(WireError, match=r"cannot encode Reading for the wire"):
            await gauge.send(bad)
        with pytest.raises(WireError, match=r"cannot encode Reading for the wire"):
            gauge.try_send(bad)
        # The link is still usable, and nothing of the refused ones arrived.
        assert await gauge.ask(Handled()) == 1


def collector() -> tuple[list[actors.Terminated], Flag, Any]:
    events: list[actors.Terminated] = []
    flag = Flag()
    lock = threading.Lock()

    def seen(event: actors.Terminated) -> None:
        with lock:
            events.append(event)
        flag.set()

    return events, flag, seen


async def test_watch_of_a_remote_actor_gets_terminated_when_it_stops(pair: Pair) -> None:
    events, got, seen = collector()
    with anyio.fail_after(WAIT):
        await pair.a.spawn(Account, name="mortal", public=True, restart=actors.Restart.TEMPORARY)
        remote = await pair.b.lookup_remote("mortal", Deposit | Stop)
        watcher = await pair.b.spawn(lambda: Watcher(seen))
        await watcher.send(remote)
        # The watch is registered once the watcher handled the ref.
        await wait_until(lambda: _watched(remote))
        await remote.send(Stop())
        await got.wait()
        assert events[0].ref == remote
        assert events[0].reason is None
        assert not remote.is_alive
        assert await remote.join() is None
        with pytest.raises(actors.ActorStopped):
            await remote.send(Deposit(1))


def _watched(ref: actors.Ref[Any]) -> bool:
    watchers = ref._cell.watchers  # pyright: ignore[reportPrivateUsage]
    return bool(watchers)


async def test_a_node_that_leaves_terminates_its_actors_for_their_watchers(
    server: NatsServer, prefix: str
) -> None:
    events, got, seen = collector()
    with anyio.fail_after(WAIT):
        async with actors.ActorSystem(
            workers=1, name="a", cluster=node(server.url, "a", prefix)
        ) as a:
            async with actors.ActorSystem(
                workers=1, name="b", cluster=node(server.url, "b", prefix)
            ) as b:
                await b.spawn(Account, name="leaving", public=True)
                remote = await a.lookup_remote("leaving", Deposit | Balance)
                watcher = await a.spawn(lambda: Watcher(seen))
                await watcher.send(remote)
                await wait_until(lambda: _watched(remote))
            # b has shut down: it told the others it left.
            await got.wait()
            assert events[0].ref == remote
            assert events[0].reason is None
            with pytest.raises(actors.ActorStopped):
                await remote.send(Deposit(1))
            with pytest.raises(actors.ActorNotFound):
                await a.lookup_remote("leaving", timeout=0.2)
            assert "b" not in a.cluster.statistics().members  # type: ignore[union-attr]


async def test_a_stopped_actor_whose_down_notice_was_lost_is_found_stopped_at_the_next_send(
    server: NatsServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # b never gets a's down notices (they are at most once): a send to the stopped actor
    # gets "no responders", and a, asked, confirms the actor is gone. Not the heartbeats:
    # a stays alive and b would wait 30 s before declaring it down.
    lose_down_notices(monkeypatch, "b")  # before the nodes subscribe
    events, got, seen = collector()
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(
                workers=1, name="a", cluster=node(server.url, "a", prefix, heartbeat_timeout=30.0)
            ) as a,
            actors.ActorSystem(
                workers=1, name="b", cluster=node(server.url, "b", prefix, heartbeat_timeout=30.0)
            ) as b,
        ):
            cluster_a = a.cluster
            assert isinstance(cluster_a, Nats)
            local = await a.spawn(
                Account, name="mortal", public=True, restart=actors.Restart.TEMPORARY
            )
            remote = await b.lookup_remote("mortal", Deposit | Stop)
            watcher = await b.spawn(lambda: Watcher(seen))
            await watcher.send(remote)
            await wait_until(lambda: _watched(remote))
            await remote.send(Stop())
            await local.join()
            await wait_until(lambda: cluster_a.statistics().exported == 0)
            await anyio.sleep(0.1)  # its subscription is being removed
            assert remote.is_alive  # b has not heard
            cluster_b = b.cluster
            assert isinstance(cluster_b, Nats)
            started = time.monotonic()
            # Within the credit a send returns at once (pipelined); its frame gets "no
            # responders", a asked confirms the end, and the tell becomes a dead letter.
            # Without credit the send itself raises. Either way the ref learns it is stopped.
            pipelined = True
            try:
                await remote.send(Deposit(1), timeout=10.0)
            except NodeDown:
                raise AssertionError("a is alive: its actor stopped, not its node") from None
            except actors.ActorStopped:
                pipelined = False
            await wait_until(lambda: not remote.is_alive)
            assert time.monotonic() - started < 2.0
            if pipelined:
                await wait_until(lambda: cluster_b.statistics().undelivered == 1)
            with pytest.raises(actors.ActorStopped) as raised:
                await remote.send(Deposit(2), timeout=10.0)
            assert not isinstance(raised.value, NodeDown)
            await got.wait()
            assert events[0].ref == remote
            assert events[0].reason is None
            with pytest.raises(actors.ActorStopped):
                await remote.ask(Balance(), timeout=1.0)  # type: ignore[arg-type]


async def test_a_send_to_a_node_that_vanished_without_leaving_raises_node_down(
    server: NatsServer, prefix: str
) -> None:
    # a's connection closes without a leave notice: b's send gets "no responders", a does
    # not answer the probe either, so b retries until the heartbeats declare a down.
    heartbeat_timeout = 1.0
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
        ):
            cluster_a = a.cluster
            assert isinstance(cluster_a, Nats)
            await a.spawn(Account, name="stranded", public=True)
            remote = await b.lookup_remote("stranded", Deposit | Balance)
            await remote.send(Deposit(1))
            transport = cluster_a._node.transport  # pyright: ignore[reportPrivateUsage]
            client = transport.client
            assert client is not None
            await transport.call(client.close())
            vanished = time.monotonic()
            cluster_b = b.cluster
            assert isinstance(cluster_b, Nats)
            letters = b.dead_letters.count
            # Within the credit the send returns (pipelined), and its frame is sent again until
            # the heartbeats declare a down: then it is a dead letter. Else the send raises.
            try:
                await remote.send(Deposit(2), timeout=10.0)
                pipelined = True
            except NodeDown:
                pipelined = False
            await wait_until(lambda: not remote.is_alive)
            assert time.monotonic() - vanished < heartbeat_timeout + 1.5
            if pipelined:
                # Deposit(1) too, if its reply had not come back before the close.
                await wait_until(
                    lambda: (
                        b.dead_letters.count - letters == cluster_b.statistics().undelivered >= 1
                    )
                )
            with pytest.raises(actors.ActorStopped, match="declared down"):
                await remote.send(Deposit(3), timeout=10.0)  # known down: refused at once


async def test_a_name_served_by_several_nodes_is_a_queue_group(
    server: NatsServer, prefix: str
) -> None:
    with anyio.fail_after(WAIT):
        async with (
            actors.ActorSystem(workers=1, name="a", cluster=node(server.url, "a", prefix)) as a,
            actors.ActorSystem(workers=1, name="b", cluster=node(server.url, "b", prefix)) as b,
            actors.ActorSystem(workers=1, name="c", cluster=node(server.url, "c", prefix)) as c,
        ):
            await a.spawn(Account, name="pool", public=True)
            await b.spawn(Account, name="pool", public=True)
            nodes: set[str] = set()
            for _ in range(40):
                found = await c.lookup_remote("pool", Deposit | Balance)
                assert isinstance(found, RemoteRef)
                nodes.add(found.node)
                if len(nodes) == 2:
                    break
            assert nodes == {"a", "b"}


async def test_wrong_credentials_are_refused_and_right_ones_accepted(prefix: str) -> None:
    with NatsServer("--user", "actors", "--pass", "s3cret") as secured:
        with anyio.fail_after(WAIT):
            wrong = Nats(secured.url, node="a", prefix=prefix, user="actors", password="nope")
            with pytest.raises(ClusterError, match="refused the credentials"):
                async with actors.ActorSystem(workers=1, cluster=wrong):
                    pass
            nobody = Nats(secured.url, node="a", prefix=prefix, connect_timeout=1.0)
            with pytest.raises(ClusterError):
                async with actors.ActorSystem(workers=1, cluster=nobody):
                    pass
            right = Nats(secured.url, node="a", prefix=prefix, user="actors", password="s3cret")
            async with actors.ActorSystem(workers=1, cluster=right) as system:
                await system.spawn(Account, name="secured", public=True)
                assert (await system.lookup_remote("secured")).path == "/user/secured"


async def test_an_unreachable_server_fails_start_within_connect_timeout() -> None:
    from cluster_support import free_port

    with anyio.fail_after(WAIT):
        cluster = Nats(f"nats://127.0.0.1:{free_port()}", node="lonely", connect_timeout=0.5)
        with pytest.raises(ClusterError, match="could not connect"):
            async with actors.ActorSystem(workers=1, cluster=cluster):
                pass


def test_node_and_prefix_names_are_validated() -> None:
    with pytest.raises(ValueError, match="node name"):
        Nats(node="a.b")
    with pytest.raises(ValueError, match="prefix"):
        Nats(node="a", prefix="x y")
    with pytest.raises(ValueError, match="heartbeat"):
        Nats(node="a", heartbeat_interval=2.0, heartbeat_timeout=1.0)


async def test_a_public_name_must_be_a_subject_token(pair: Pair) -> None:
    with anyio.fail_after(WAIT), pytest.raises(ValueError, match="public actor name"):
        await pair.a.spawn(Account, name="has.dot", public=True)
    assert pair.a.lookup("/user/has.dot") is None


def test_node_down_is_an_actor_stopped() -> None:
    assert issubclass(NodeDown, actors.ActorStopped)
