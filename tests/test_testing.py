"""The test kit `actors.testing`, used the way its users would: on real actors, on every
anyio backend where it applies (the deterministic mode needs an asyncio host).

Also the kit's own failures: they are what a user's failing test shows."""

from __future__ import annotations

import inspect as pyinspect
import itertools
import threading
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import pytest
from _support import WAIT, Flag, Recorder, Tick, park
from test_examples import load_example, run_example

import actors
from actors import Actor, ActorRef, ActorSystem, ManualClock, Restart, Terminated, testing

pytestmark = pytest.mark.anyio

monitor = load_example("testing/peer_monitor")


@pytest.fixture
def asyncio_host(anyio_backend: Any) -> None:
    """For tests of the deterministic mode, which runs actors on the host's asyncio loop."""
    if anyio_backend == "trio":
        pytest.skip("the deterministic mode needs an asyncio host")


# -- actors under test ---------------------------------------------------------------------


class Receipt(msgspec.Struct, frozen=True):
    balance: int


class Refused(msgspec.Struct, frozen=True):
    amount: int
    balance: int


class Deposit(msgspec.Struct, frozen=True):
    amount: int
    reply_to: ActorRef[Receipt]


class Withdraw(msgspec.Struct, frozen=True):
    amount: int
    reply_to: ActorRef[Receipt | Refused]


class Fail(msgspec.Struct, frozen=True):
    release: Flag
    entered: Flag | None = None


class Account(Actor[Deposit | Withdraw | Fail]):
    def __init__(self, opening: int = 0) -> None:
        self.balance = opening
        self.history: list[int] = []

    async def receive(self, message: Deposit | Withdraw | Fail) -> None:
        match message:
            case Deposit(amount, reply_to):
                self.balance += amount
                self.history.append(amount)
                await reply_to.send(Receipt(self.balance))
            case Withdraw(amount, reply_to) if amount > self.balance:
                await reply_to.send(Refused(amount, self.balance))
            case Withdraw(amount, reply_to):
                self.balance -= amount
                self.history.append(-amount)
                await reply_to.send(Receipt(self.balance))
            case Fail(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
                raise RuntimeError("account broke")


class Relay(Actor[Tick]):
    """Forwards every Tick to the next actor: a chain of work across loops."""

    def __init__(self, after: ActorRef[Tick]) -> None:
        self.after = after
        self.forwarded = 0

    async def receive(self, message: Tick) -> None:
        self.forwarded += 1
        await self.after.send(message)


class Quote(actors.Request[int], frozen=True):
    item: str


class Shop(Actor[Quote]):
    """Asks a price service (a probe in the tests) and adds a margin."""

    def __init__(self, prices: ActorRef[Quote]) -> None:
        self.prices = prices

    async def receive(self, message: Quote) -> int:
        price: int = await self.prices.ask(message)
        return price + 1


async def spawn_account(system: ActorSystem, opening: int = 100) -> ActorRef[Any]:
    return await system.spawn(lambda: Account(opening))


# -- Probe -----------------------------------------------------------------------------------


async def test_a_probe_is_an_actor_ref_that_others_can_send_to() -> None:
    async with ActorSystem(workers=2) as system:
        probe = await testing.Probe.spawn(system, name="listener")
        assert isinstance(probe, ActorRef)
        assert probe.path == "/user/listener"
        assert system.lookup("/user/listener") == probe  # the same actor as its plain ref
        assert repr(probe).startswith("<Probe /user/listener running unread=0")
        actors.check_sendable(Deposit(1, reply_to=probe))  # it travels in messages
        account = await spawn_account(system)
        await account.send(Deposit(5, reply_to=probe))
        receipt = await probe.expect(Receipt)
        assert receipt == Receipt(105)
        default = await testing.Probe.spawn(system)
        assert default.name.startswith("probe-")


async def test_expect_takes_messages_in_order_with_a_condition() -> None:
    async with ActorSystem(workers=2) as system:
        account = await spawn_account(system, 10)
        probe = await testing.Probe.spawn(system)
        await account.send(Withdraw(50, reply_to=probe))
        await account.send(Deposit(5, reply_to=probe))
        refused = await probe.expect(Refused, where=lambda r: r.amount == 50)
        assert refused == Refused(50, 10)
        assert await probe.expect(object) == Receipt(15)
        assert probe.messages == ()


async def test_expect_of_the_wrong_type_names_both_types() -> None:
    async with ActorSystem(workers=1) as system:
        account = await spawn_account(system, 10)
        probe = await testing.Probe.spawn(system)
        await account.send(Withdraw(50, reply_to=probe))
        with pytest.raises(AssertionError, match=r"expected Receipt, got Refused: Refused\("):
            await probe.expect(Receipt)
        assert probe.messages == ()  # the rejected message was taken


async def test_expect_fails_when_the_condition_does_not_hold() -> None:
    async with ActorSystem(workers=1) as system:
        account = await spawn_account(system, 10)
        probe = await testing.Probe.spawn(system)
        await account.send(Deposit(1, reply_to=probe))
        with pytest.raises(AssertionError, match=r"Receipt\(balance=11\).*`where`"):
            await probe.expect(Receipt, where=lambda r: r.balance == 99)


async def test_expect_fails_when_nothing_comes_in_time_and_takes_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        probe = await testing.Probe.spawn(system)
        with pytest.raises(AssertionError, match=r"expected Receipt within 0\.05 s, got nothing"):
            await probe.expect(Receipt, timeout=0.05)
        await probe.send(Receipt(1))
        assert await probe.expect(Receipt) == Receipt(1)


async def test_a_cancelled_expect_takes_nothing() -> None:
    async with ActorSystem(workers=1) as system:
        probe = await testing.Probe.spawn(system)
        with anyio.move_on_after(0.02):
            await probe.expect(Receipt, timeout=None)
        await probe.send(Receipt(2))
        assert await probe.expect(Receipt) == Receipt(2)


async def test_expect_no_message() -> None:
    async with ActorSystem(workers=2) as system:
        account = await spawn_account(system)
        probe = await testing.Probe.spawn(system)
        await probe.expect_no_message(within=0.02)
        await probe.expect_no_message(within=None)  # settles the system instead of sleeping
        await account.send(Deposit(1, reply_to=probe))
        with pytest.raises(AssertionError, match=r"expected no message within 1\.0 s, got Rec"):
            await probe.expect_no_message(within=1.0)
        with pytest.raises(AssertionError, match=r"no message once the system settled, got Rec"):
            await probe.expect_no_message(within=None)
        assert probe.messages == (Receipt(101),)  # it stays in the probe


async def test_receive_n_takes_several_or_nothing() -> None:
    async with ActorSystem(workers=2) as system:
        account = await spawn_account(system, 0)
        probe = await testing.Probe.spawn(system)
        for amount in (1, 2, 3):
            await account.send(Deposit(amount, reply_to=probe))
        assert await probe.receive_n(3) == (Receipt(1), Receipt(3), Receipt(6))
        await account.send(Deposit(4, reply_to=probe))
        with pytest.raises(AssertionError, match=r"expected 2 messages within 0\.05 s, got 1"):
            await probe.receive_n(2, timeout=0.05)
        assert await probe.receive_n(1) == (Receipt(10),)
        assert await probe.receive_n(0) == ()
        with pytest.raises(ValueError, match="count >= 0"):
            await probe.receive_n(-1)


async def test_a_probe_answers_asks_with_its_reply_function() -> None:
    async with ActorSystem(workers=2) as system:
        prices = await testing.Probe.spawn(system, reply=lambda quote: len(quote.item))
        shop = await system.spawn(lambda: Shop(prices))
        assert await shop.ask(Quote("apple")) == 6
        assert await prices.expect(Quote) == Quote("apple")  # the ask was recorded too
        silent = await testing.Probe.spawn(system)
        assert await silent.ask(Quote("pear")) is None


async def test_a_probe_watches_actors_for_termination() -> None:
    async with ActorSystem(workers=2) as system:
        probe = await testing.Probe.spawn(system)
        account = await system.spawn(lambda: Account(1), restart=Restart.TEMPORARY)
        quitter = await system.spawn(Recorder)
        await probe.watch(account)
        await probe.watch(quitter)
        await quitter.stop()
        stopped = await probe.expect(Terminated)
        assert stopped.ref == quitter
        assert stopped.reason is None
        release = Flag()
        await account.send(Fail(release))
        release.set()
        failed = await probe.expect(Terminated, where=lambda event: event.ref == account)
        assert isinstance(failed.reason, RuntimeError)


# -- inspect ---------------------------------------------------------------------------------


async def test_inspect_reads_state_between_messages() -> None:
    async with ActorSystem(workers=2) as system:
        account = await spawn_account(system, 0)
        probe = await testing.Probe.spawn(system)
        for amount in (50, 20):
            await account.send(Deposit(amount, reply_to=probe))
        await probe.receive_n(2)
        assert await testing.inspect(account, lambda a: a.balance) == 70
        history = await testing.inspect(account, lambda a: tuple(a.history), kind=Account)
        assert history == (50, 20)


async def test_inspect_runs_on_the_actors_own_thread_at_a_message_boundary() -> None:
    async with ActorSystem(workers=1) as system:
        recorder = await system.spawn(Recorder)
        release = await park(recorder)  # busy in a handler: inspect must wait for its end
        await recorder.send(Tick(1))  # queued: inspect runs before it (the control lane)
        seen: list[tuple[tuple[int, ...], str]] = []
        async with anyio.create_task_group() as tg:

            async def look() -> None:
                seen.append(
                    await testing.inspect(
                        recorder, lambda r: (tuple(r.seen), threading.current_thread().name)
                    )
                )

            tg.start_soon(look)
            await anyio.sleep(0.02)
            assert seen == []
            release.set()
        assert seen == [((), "actors-worker-0")]
        await testing.settle(system)  # inspect would overtake the queued Tick again
        assert await testing.inspect(recorder, lambda r: tuple(r.seen)) == (1,)


async def test_inspect_of_a_stopped_actor_raises_actor_stopped() -> None:
    async with ActorSystem(workers=1) as system:
        account = await spawn_account(system)
        await account.stop()
        with pytest.raises(actors.ActorStopped, match="no state to inspect"):
            await testing.inspect(account, lambda a: a.balance)


async def test_inspect_of_an_actor_that_fails_before_the_call_raises_actor_stopped() -> None:
    async with ActorSystem(workers=1) as system:
        account = await system.spawn(lambda: Account(1), restart=Restart.TEMPORARY)
        release, entered, started = Flag(), Flag(), Flag()
        await account.send(Fail(release, entered))
        await entered.wait()  # busy in the handler: the call must wait in the control lane
        outcome: list[BaseException] = []

        async def look() -> None:
            started.set()  # inspect queues its call before it first waits
            try:
                await testing.inspect(account, lambda a: a.balance)
            except actors.ActorStopped as error:
                outcome.append(error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            await started.wait()
            release.set()  # the handler fails: the queued call is dropped with the actor
        assert len(outcome) == 1
        assert "stopped before it could be inspected" in str(outcome[0])


async def test_inspect_errors_reach_the_caller_and_spare_the_actor() -> None:
    async with ActorSystem(workers=1) as system:
        account = await spawn_account(system)
        with pytest.raises(AttributeError, match="no_such_field"):
            await testing.inspect(account, lambda a: a.no_such_field)
        with pytest.raises(TypeError, match=r"is a Account, not a Recorder"):
            await testing.inspect(account, lambda r: r.seen, kind=Recorder)
        assert account.is_alive
        assert await testing.inspect(account, lambda a: a.balance) == 100


async def test_inspect_times_out_on_an_actor_stuck_in_a_handler() -> None:
    async with ActorSystem(workers=1) as system:
        recorder = await system.spawn(Recorder)
        release = await park(recorder)
        with pytest.raises(TimeoutError, match=r"did not reach a message boundary within 0\.05"):
            await testing.inspect(recorder, lambda r: r.seen, timeout=0.05)
        release.set()


class Introspective(Actor[Tick]):
    async def receive(self, message: Tick) -> str:
        try:
            await testing.inspect(self.ref, lambda me: me)
        except actors.DeadlockError as error:
            return str(error)
        return "no error"


async def test_an_actor_cannot_inspect_itself() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Introspective)
        assert "inspected itself" in await ref.ask(Tick())


# -- settle and advance ----------------------------------------------------------------------


async def test_settle_waits_for_a_chain_of_actors_across_loops() -> None:
    async with ActorSystem(workers=3) as system:
        last = await system.spawn(Recorder)
        middle = await system.spawn(lambda: Relay(last))
        first = await system.spawn(lambda: Relay(middle))
        for n in range(200):
            await first.send(Tick(n))
        await testing.settle(system)
        # No ask, no polling: everything the sends caused has happened.
        assert await testing.inspect(last, lambda r: len(r.seen)) == 200
        assert all(ref.statistics().mailbox.depth == 0 for ref in (first, middle, last))


async def test_settle_names_the_actors_still_busy_when_it_times_out() -> None:
    async with ActorSystem(workers=1) as system:
        recorder = await system.spawn(Recorder, name="stuck")
        release = await park(recorder)
        with pytest.raises(TimeoutError, match=r"still busy after 0\.05 s: /user/stuck"):
            await testing.settle(system, timeout=0.05)
        release.set()
        await testing.settle(system)


async def test_advance_needs_a_manual_clock_and_goes_forward_only() -> None:
    async with ActorSystem(workers=1) as system:
        with pytest.raises(TypeError, match="clock=ManualClock"):
            await testing.advance(system, 1.0)
    async with ActorSystem(workers=1, clock=ManualClock()) as system:
        with pytest.raises(ValueError, match="cannot go back"):
            await testing.advance(system, -1.0)


class Beat(msgspec.Struct, frozen=True):
    pass


class StartBeating(msgspec.Struct, frozen=True):
    every: float


class Metronome(Actor[Beat | StartBeating]):
    """Records the clock time of every beat it handles."""

    def __init__(self) -> None:
        self.beats: list[float] = []
        self.timer: actors.Timer | None = None

    async def receive(self, message: Beat | StartBeating) -> None:
        match message:
            case StartBeating(every):
                self.timer = self.send_every(every, Beat())
            case Beat():
                self.beats.append(self.system.clock.now())


async def test_advance_handles_every_tick_at_its_own_time() -> None:
    clock = ManualClock()
    async with ActorSystem(workers=2, clock=clock) as system:
        stepped = await system.spawn(Metronome)
        await stepped.send(StartBeating(every=0.5))  # advance settles first: the timer starts
        await testing.advance(system, 2.0)
        assert await testing.inspect(stepped, lambda m: tuple(m.beats)) == (0.5, 1.0, 1.5, 2.0)
        assert await testing.inspect(stepped, lambda m: m.timer.skipped) == 0
        assert clock.now() == 2.0

        # The clock's own advance fires everything at once, before any actor runs: a
        # periodic timer then skips what was due while its first tick waited.
        bunched = await system.spawn(Metronome)
        await bunched.send(StartBeating(every=0.5))
        await testing.settle(system)
        clock.advance(2.0)
        await testing.settle(system)
        assert await testing.inspect(bunched, lambda m: len(m.beats)) == 1
        assert await testing.inspect(bunched, lambda m: m.timer.skipped) == 3


async def test_advance_fires_a_zero_delay_timer_and_lands_on_the_target() -> None:
    clock = ManualClock(start=0.1)
    async with ActorSystem(workers=1, clock=clock) as system:
        metronome = await system.spawn(Metronome)
        await metronome.send(StartBeating(every=0.1))
        await testing.advance(system, 0.3)  # 0.1 + 0.1 + ... is not exact in floating point
        beats = await testing.inspect(metronome, lambda m: tuple(m.beats))
        assert beats == pytest.approx((0.2, 0.3, 0.4))
        assert clock.now() == pytest.approx(0.4)
        await testing.advance(system, 0.0)
        assert len(await testing.inspect(metronome, lambda m: m.beats)) == 3


# -- the deterministic mode ------------------------------------------------------------------


@pytest.mark.usefixtures("asyncio_host")
async def test_deterministic_system_runs_everything_on_the_test_thread() -> None:
    async with testing.deterministic_system() as system:
        assert isinstance(system.clock, ManualClock)
        recorder = await system.spawn(Recorder)
        probe = await testing.Probe.spawn(system)
        for ref in (recorder, probe):
            assert ref.statistics().loop == "host"
        where = await testing.inspect(recorder, lambda r: threading.current_thread())
        assert where is threading.current_thread()
    clock = ManualClock(start=5.0)
    async with testing.deterministic_system(clock=clock, name="mine") as system:
        assert system.clock is clock
        assert system.name == "mine"


class Say(msgspec.Struct, frozen=True):
    text: str


class Go(msgspec.Struct, frozen=True):
    peers: tuple[ActorRef[Say], ...]
    rounds: int


class Chatter(Actor[Go | Say]):
    """Sends to its peers, yielding between sends, and reports all it hears to a log."""

    def __init__(self, log: ActorRef[Say]) -> None:
        self.log = log

    async def receive(self, message: Go | Say) -> None:
        match message:
            case Go(peers, rounds):
                for n in range(rounds):
                    for peer in peers:
                        await peer.send(Say(f"{self.name}:{n}"))
                        await anyio.lowlevel.checkpoint()  # let the others interleave
            case Say(text):
                await self.log.send(Say(f"{self.name}<-{text}"))


async def chatter_trace() -> tuple[str, ...]:
    async with testing.deterministic_system() as system:
        log = await testing.Probe.spawn(system)
        chatters = [await system.spawn(lambda: Chatter(log), name=f"c{i}") for i in range(4)]
        for chatter in chatters:
            others = tuple(peer for peer in chatters if peer is not chatter)
            await chatter.send(Go(others, rounds=5))
        await testing.settle(system)
        heard = await log.receive_n(4 * 3 * 5)
        await log.expect_no_message(within=None)
        return tuple(message.text for message in heard)


@pytest.mark.usefixtures("asyncio_host")
async def test_deterministic_system_interleaves_identically_on_every_run() -> None:
    first = await chatter_trace()
    # The trace does interleave the chatters (it is not one sender after another)...
    senders = [text.split("<-")[1].split(":")[0] for text in first]
    switches = sum(a != b for a, b in itertools.pairwise(senders))
    assert switches > len(first) // 2, first
    # ...and the interleaving is exactly the same, run after run.
    for _ in range(4):
        assert await chatter_trace() == first


async def test_deterministic_system_refuses_a_trio_host(anyio_backend: Any) -> None:
    if anyio_backend != "trio":
        pytest.skip("about trio hosts")
    with pytest.raises(RuntimeError, match="not an asyncio"):
        async with testing.deterministic_system():
            pass


# -- the examples of docs/patterns/testing.md ------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_example_probes(backend: str) -> None:
    assert run_example("testing/probes.py", backend).splitlines() == [
        "passed: test_an_overdraft_is_refused",
        "passed: test_the_history_records_every_move",
        "passed: test_a_stopped_account_cannot_be_inspected",
    ]


def test_example_peer_monitor() -> None:
    assert run_example("testing/peer_monitor.py").splitlines() == [
        "passed: test_pings_every_second_and_stays_calm_while_answered",
        "passed: test_raises_the_alarm_once_after_three_silent_seconds",
    ]


@pytest.mark.usefixtures("asyncio_host")
async def test_peer_monitor_example_on_the_current_host_loop() -> None:
    await monitor.test_pings_every_second_and_stays_calm_while_answered()
    await monitor.test_raises_the_alarm_once_after_three_silent_seconds()


async def test_peer_monitor_with_worker_loops_on_every_backend() -> None:
    """The same actor, on worker loops and any host: `advance` and probes still suffice."""
    async with ActorSystem(workers=2, clock=ManualClock()) as system:
        peer = await testing.Probe.spawn(system)
        alarm = await testing.Probe.spawn(system)
        await system.spawn(lambda: monitor.PeerMonitor(peer, alarm))
        await testing.advance(system, 1.0)
        ping = await peer.expect(monitor.Ping)
        await ping.reply_to.send(monitor.Pong(ping.seq))
        await testing.advance(system, 3.0)  # t = 4: the last pong was at 1
        await alarm.expect(monitor.PeerDown, where=lambda down: down.silent_for == 3.0)
        assert len(await peer.receive_n(3)) == 3


# -- the kit's public surface ----------------------------------------------------------------


def test_the_kit_is_documented() -> None:
    assert isinstance(testing.__all__, tuple)
    for name in testing.__all__:
        value = getattr(testing, name)
        if name == "DEFAULT_TIMEOUT":
            continue
        doc = pyinspect.getdoc(value) or ""
        assert "Example" in doc, name
        if pyinspect.iscoroutinefunction(value):
            assert "Cancellation:" in doc, name
    for attr, member in vars(testing.Probe).items():
        if not attr.startswith("_") and pyinspect.iscoroutinefunction(
            getattr(member, "__func__", member)
        ):
            assert "Cancellation:" in (pyinspect.getdoc(member) or ""), attr
    assert testing.DEFAULT_TIMEOUT < WAIT  # a kit call fails before the suite calls it a hang
