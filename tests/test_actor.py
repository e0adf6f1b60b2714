"""The `Actor` base class: ownership, the handler discipline, typed mailboxes, lifecycle hooks.

Catalogue IDs (RELIABILITY.md) appear in test names where a test implements one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import types
from typing import Any, Union

import anyio
import anyio.lowlevel
import msgspec
import pytest
from _support import (
    DELIVERIES,
    WAIT,
    Count,
    Flag,
    Hold,
    Recorder,
    Seen,
    Tick,
    park,
)

import actors
from actors import Actor, ActorRef, ActorSystem, Restart

TEMPORARY = Restart.TEMPORARY
TRANSIENT = Restart.TRANSIENT

pytestmark = pytest.mark.anyio


class Ping(msgspec.Struct, frozen=True):
    pass


class Stranger(msgspec.Struct, frozen=True):
    """A message type that no typed actor in this module accepts."""


class WhoAmI(actors.Request[tuple[str, str, ActorRef[Any], int]], frozen=True):
    """Ask an actor for (name in __init__, name now, its own ref, id of its system)."""


class Threads(actors.Request[tuple[int, ...]], frozen=True):
    """Ask for the thread ids that ran __init__, on_start and every handler so far."""


# -- ownership ---------------------------------------------------------------------------------


async def test_spawn_returns_a_ref_never_the_instance() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder)
        assert isinstance(ref, ActorRef)
        assert not isinstance(ref, Actor)
        assert not hasattr(ref, "seen")  # the actor's state is not reachable through the ref
        assert not hasattr(ref, "receive")


@pytest.mark.parametrize("cls", [Recorder, Actor], ids=["subclass", "base"])
def test_constructing_an_actor_directly_raises_type_error(cls: type[Actor[Any]]) -> None:
    with pytest.raises(TypeError, match=r"system\.spawn"):
        cls()


class _Tagged:
    """A mixin after `Actor` in the MRO whose ``__new__`` tags each instance it makes."""

    tag: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        self = super().__new__(cls)
        self.tag = "made by the mixin"
        return self


class Tag(actors.Request[str], frozen=True):
    pass


class Tagged(Actor[Tag], _Tagged):
    def receive(self, message: Tag) -> str:
        return self.tag


async def test_a_new_of_a_class_after_actor_in_the_mro_is_still_called() -> None:
    # `Actor.__new__` calls `object.__new__` directly only when nothing else would be found.
    assert Recorder.__actors_plain_new__
    assert not Tagged.__actors_plain_new__
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            tagged = await system.spawn(Tagged)
            assert await tagged.ask(Tag()) == "made by the mixin"


async def test_factory_must_return_a_new_actor() -> None:
    def not_an_actor() -> Any:
        return "hello"

    async with ActorSystem(workers=1) as system:
        with pytest.raises(TypeError, match="must return a new Actor instance"):
            await system.spawn(not_an_actor)
        # The failed spawn left nothing behind: the system still works.
        ref = await system.spawn(Recorder)
        assert await ref.ask(Count()) == 0


class SelfAware(Actor[WhoAmI | Threads]):
    def __init__(self) -> None:
        # self.ref, self.system and self.name work from __init__ on.
        self.name_at_init = self.name
        self.ref_at_init = self.ref
        self.system_at_init = self.system
        self.threads = [threading.get_ident()]

    async def on_start(self) -> None:
        self.threads.append(threading.get_ident())

    async def receive(self, message: WhoAmI | Threads) -> Any:
        self.threads.append(threading.get_ident())
        match message:
            case WhoAmI():
                assert self.ref == self.ref_at_init
                assert self.system is self.system_at_init
                return (self.name_at_init, self.name, self.ref, id(self.system))
            case Threads():
                return tuple(self.threads)


async def test_ref_system_and_name_inside_the_actor() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(SelfAware, name="me")
        name_at_init, name, own_ref, system_id = await ref.ask(WhoAmI())
        assert name_at_init == name == ref.name == "me"
        assert own_ref == ref
        assert system_id == id(system)


async def test_hooks_and_handlers_run_on_the_home_thread_init_on_the_spawners() -> None:
    async with ActorSystem(workers=2) as system:
        ref = await system.spawn(SelfAware, placement=1)
        for _ in range(3):
            await ref.ask(WhoAmI())
        threads = await ref.ask(Threads())
        assert len(threads) == 6  # __init__, on_start, 3 x WhoAmI, Threads
        # The factory runs where spawn is called (no round trip to the home loop) ...
        assert threads[0] == threading.get_ident()
        # ... everything else on the home loop: a worker thread, not the test's.
        assert len(set(threads[1:])) == 1
        assert threads[1] != threading.get_ident()


# -- one message at a time ---------------------------------------------------------------------


class Journal(Actor[Hold | Tick | Seen]):
    """Logs +n / -n around each handler, so interleaved handlers would show."""

    def __init__(self, ticked: Flag) -> None:
        self.log: list[int] = []
        self.ticked = ticked

    async def receive(self, message: Hold | Tick | Seen) -> Any:
        match message:
            case Hold(release, entered):
                self.log.append(+1)
                if entered is not None:
                    entered.set()
                await release.wait()  # a real suspension: the loop runs other tasks meanwhile
                self.log.append(-1)
            case Tick(n):
                self.log.append(+n)
                self.ticked.set()
                self.log.append(-n)
            case Seen():
                return tuple(self.log)
        return None


async def test_a_suspended_handler_keeps_the_actor_busy() -> None:
    """An awaiting handler is not re-entered: the next message waits until it returns."""
    ticked = Flag()
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Journal(ticked))
        release, entered = Flag(), Flag()
        await ref.send(Hold(release, entered))
        with anyio.fail_after(WAIT):
            await entered.wait()
        await ref.send(Tick(2))  # enqueued now, while the first handler is suspended
        with anyio.move_on_after(0.05):  # give a re-entrant runtime the chance to misbehave
            await ticked.wait()
        assert not ticked.is_set()
        release.set()
        with anyio.fail_after(WAIT):
            await ticked.wait()
            assert await ref.ask(Seen()) == (+1, -1, +2, -2)


# -- typed mailboxes ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", DELIVERIES)
async def test_B1_wrong_message_type_is_refused_and_nothing_enqueued(how: str) -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder, name="typed")
        loose: ActorRef[Any] = ref
        with pytest.raises(actors.MessageTypeError) as caught:
            await DELIVERIES[how](loose, Stranger())
        assert isinstance(caught.value, TypeError)
        text = str(caught.value)
        assert "/user/typed" in text
        assert "Stranger" in text
        for accepted in ("Tick", "Count", "Seen", "Hold"):
            assert accepted in text
        # Nothing was enqueued, and the actor still takes valid messages.
        await ref.send(Tick(1))
        assert await ref.ask(Seen()) == (1,)


async def test_wrong_type_stays_refused_after_valid_sends_were_cached() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Recorder)
        loose: ActorRef[Any] = ref
        for n in range(3):
            await ref.send(Tick(n))
            with pytest.raises(actors.MessageTypeError):
                await loose.send(Stranger())
        assert await ref.ask(Count()) == 3


class Anything(Actor):  # pyright: ignore[reportMissingTypeArgument]  # bare on purpose
    def __init__(self) -> None:
        self.seen: list[object] = []

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Count):
            return len(self.seen)
        self.seen.append(message)
        return None


class AnythingAny(Actor[Any]):
    async def receive(self, message: Any) -> Any:
        return message


async def test_actor_without_a_type_parameter_accepts_any_sendable_message() -> None:
    async with ActorSystem(workers=1) as system:
        ref: ActorRef[Any] = await system.spawn(Anything)
        for message in (1, "two", (3, 4.0), Ping(), Stranger(), None, frozenset({5})):
            await ref.send(message)
        assert await ref.ask(Count()) == 7
        echo: ActorRef[Any] = await system.spawn(AnythingAny)
        assert await echo.ask(Stranger()) == Stranger()
        # "Any type" is not "anything": a mutable message is still refused.
        with pytest.raises(actors.NotSendableError):
            await ref.send([1, 2])


class Subscriber(Recorder):
    """Inherits Recorder's message types without restating them."""


async def test_a_subclass_inherits_the_accepted_message_types() -> None:
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(Subscriber)
        loose: ActorRef[Any] = ref
        with pytest.raises(actors.MessageTypeError):
            loose.try_send(Stranger())
        await ref.send(Tick(1))
        assert await ref.ask(Count()) == 1


class EagerSelfSender(Actor[Ping | Count]):
    """Sends to itself from __init__, before the runtime has finished setting it up."""

    def __init__(self) -> None:
        self.handled = 0
        loose: ActorRef[Any] = self.ref
        loose.try_send(Stranger())  # not a Ping or a Count: must be refused, even here

    async def receive(self, message: Ping | Count) -> Any:
        if isinstance(message, Count):
            return self.handled
        self.handled += 1
        return None


async def test_own_ref_enforces_the_message_type_already_in_init() -> None:
    """Regression: a wrong type sent via self.ref in __init__ slipped past the type check.

    Worse, the type was then cached as admitted, so every later sender could send it too.
    """
    async with ActorSystem(workers=1) as system:
        with pytest.raises(actors.MessageTypeError):
            await system.spawn(EagerSelfSender)


# -- lifecycle hooks ---------------------------------------------------------------------------


class Starter(Actor[Seen]):
    def __init__(self, release: Flag, log: list[str]) -> None:
        self.release = release
        self.log = log
        self.log.append("init")

    async def on_start(self) -> None:
        self.log.append("start:begin")
        await self.release.wait()
        self.log.append("start:end")

    async def receive(self, message: Seen) -> Any:
        self.log.append("receive")
        return None

    async def on_stop(self) -> None:
        self.log.append("stop")


async def test_on_start_runs_before_the_first_message_and_spawn_waits_for_it() -> None:
    log: list[str] = []
    release = Flag()
    spawned: list[ActorRef[Seen]] = []
    returned = Flag()
    async with ActorSystem(workers=1) as system:

        async def spawn() -> None:
            spawned.append(await system.spawn(lambda: Starter(release, log)))
            returned.set()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(spawn)
                with anyio.move_on_after(0.05):  # spawn must not return while on_start waits
                    await returned.wait()
                assert not returned.is_set()
                release.set()
            (ref,) = spawned
            assert log == ["init", "start:begin", "start:end"]
            await ref.ask(Seen())
            await ref.stop()
    assert log == ["init", "start:begin", "start:end", "receive", "stop"]


class LateHooks(Actor[int]):
    """Its hooks are set on the class after its definition (see the test below)."""

    log: list[str] = []  # noqa: RUF012

    def receive(self, message: int) -> None:
        LateHooks.log.append(f"receive {message}")
        self.stop()


async def test_hooks_set_on_the_class_later_run() -> None:
    """The spawn and the end look the hooks up on the class each time, not once."""

    async def on_start(self: LateHooks) -> None:
        LateHooks.log.append("start")

    async def on_stop(self: LateHooks) -> None:
        LateHooks.log.append("stop")

    LateHooks.log = []  # each backend's run afresh
    LateHooks.on_start = on_start  # type: ignore[method-assign]
    LateHooks.on_stop = on_stop  # type: ignore[method-assign]
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            ref = await system.spawn(LateHooks, placement=0, restart=Restart.TEMPORARY)
            await ref.send(1)
            assert await ref.join() is None
    assert LateHooks.log == ["start", "receive 1", "stop"]


class BadStart(Actor[Ping]):
    stopped = False

    async def on_start(self) -> None:
        raise ValueError("no database")

    async def receive(self, message: Ping) -> None:
        pass

    async def on_stop(self) -> None:
        BadStart.stopped = True


async def test_exception_in_on_start_propagates_from_spawn_and_the_actor_is_gone() -> None:
    async with ActorSystem(workers=1) as system:
        with pytest.raises(ValueError, match="no database") as caught:
            await system.spawn(BadStart, name="fragile")
        assert any("/user/fragile" in note for note in caught.value.__notes__)
        assert not BadStart.stopped  # it never started, so it does not stop either
        # The name is free again: the failed actor is not registered any more.
        ref = await system.spawn(Recorder, name="fragile")
        assert await ref.ask(Count()) == 0


class Failing(Actor[Tick | Count]):
    def __init__(self, stops: list[str]) -> None:
        self.stops = stops

    async def receive(self, message: Tick | Count) -> Any:
        if isinstance(message, Tick) and message.n < 0:
            raise KeyError(message.n)
        return 0

    async def on_stop(self) -> None:
        self.stops.append("stop")


async def test_exception_in_a_told_handler_stops_a_temporary_actor() -> None:
    stops: list[str] = []
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Failing(stops), name="told", restart=TEMPORARY)
        await ref.send(Tick(-1))
        with anyio.fail_after(WAIT):
            reason = await ref.join()
        assert isinstance(reason, KeyError)
        assert any("/user/told" in note for note in reason.__notes__)
        assert not ref.is_alive
        assert stops == ["stop"]
        with pytest.raises(actors.ActorStopped, match="/user/told"):
            await ref.send(Tick(1))


class RaisesBase(Actor[Tick | Count]):
    """Raises a BaseException that is not a cancellation of the actor (F15)."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    async def receive(self, message: Tick | Count) -> int:
        raise self.error


@pytest.mark.parametrize("error", [asyncio.CancelledError, SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("how", ["tell", "ask"])
async def test_F15_base_exceptions_from_a_handler_are_failures(
    how: str, error: type[BaseException]
) -> None:
    """A stray CancelledError passed on would look like a cancellation of the asker;
    SystemExit/KeyboardInterrupt would take the whole worker loop down with every actor on
    it. Each is a failure of this actor only, reported as a RuntimeError caused by it."""
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: RaisesBase(error), name="stray", restart=TEMPORARY)
        neighbour = await system.spawn(Recorder)  # same (only) worker loop
        if how == "tell":
            await ref.send(Tick(1))
        else:
            with anyio.fail_after(WAIT), pytest.raises(RuntimeError, match=error.__name__):
                await ref.ask(Count())
        with anyio.fail_after(WAIT):
            reason = await ref.join()
        assert isinstance(reason, RuntimeError)
        assert "/user/stray" in str(reason)
        assert type(reason.__cause__) is error
        assert not ref.is_alive
        with anyio.fail_after(WAIT):
            assert await neighbour.ask(Count()) == 0  # the worker loop is still serving


class Quitter(Actor[Tick | Hold]):
    def __init__(self, log: list[object]) -> None:
        self.log = log

    async def receive(self, message: Tick | Hold) -> None:
        match message:
            case Hold(release, entered):
                if entered is not None:
                    entered.set()
                await release.wait()
            case Tick(n):
                self.log.append(n)
                if n == 0:
                    self.stop()  # graceful: what the mailbox already accepted is still handled

    async def on_stop(self) -> None:
        self.log.append("stop")


async def test_actor_stop_from_its_handler_drains_what_was_accepted() -> None:
    """A transient actor's own stop() is final (a permanent one is restarted: test_supervision)."""
    log: list[object] = []
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(lambda: Quitter(log), capacity=8, restart=TRANSIENT)
        with anyio.fail_after(WAIT):
            release = await park(ref)
            for n in range(3):
                ref.try_send(Tick(n))
            release.set()
            assert await ref.join() is None
        assert log == [0, 1, 2, "stop"]
        with pytest.raises(actors.ActorStopped):
            ref.try_send(Tick(3))


# -- anyio inside handlers ---------------------------------------------------------------------


class AnyioUser(Actor[Count]):
    async def receive(self, message: Count) -> int:
        await anyio.sleep(0)  # noqa: ASYNC115  # anyio.sleep itself is what is exercised
        event = anyio.Event()
        event.set()
        await event.wait()
        with anyio.fail_after(WAIT):
            await anyio.lowlevel.checkpoint()
        return 1


async def test_handlers_may_use_anyio_whatever_the_host_backend() -> None:
    """Regression: under a trio host, anyio inside a handler picked the trio backend.

    Actor tasks inherited the contextvars of whoever woke them (here the trio host, whose
    sniffio marker says "trio"), so anyio on the worker's asyncio loop called into trio.
    """
    async with ActorSystem(workers=1) as system:
        ref = await system.spawn(AnyioUser)
        with anyio.fail_after(WAIT):
            assert await ref.ask(Count()) == 1


# -- spawning on the actor's own loop (no hand-shake) -----------------------------------------


class SendsToItself(Actor[Tick | Count | Seen]):
    """No on_start: a spawn on its own loop builds it in place; __init__ already sends."""

    handled: Flag | None = None  # set by a test: the first Tick was handled

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.ref.try_send(Tick(1))

    async def receive(self, message: Tick | Count | Seen) -> object:
        match message:
            case Tick(n):
                self.seen.append(n)
                if SendsToItself.handled is not None:
                    SendsToItself.handled.set()
            case Count():
                return len(self.seen)
            case Seen():
                return tuple(self.seen)


def sniffio_is_trio() -> bool:
    import sniffio

    return sniffio.current_async_library() == "trio"


def _broken() -> Actor[Any]:
    raise LookupError("no such thing")


_FACTORIES: dict[str, Any] = {
    "sends": SendsToItself,
    "starts": lambda: SelfAware(),
    "broken": _broken,
    "bad-start": BadStart,
    "not-an-actor": lambda: "hello",
}


class SpawnHere(actors.Request[ActorRef[Any]], frozen=True):
    factory: str


class Spawner(Actor[SpawnHere]):
    """Spawns on its own loop (placement = its worker) the factory it is asked to."""

    async def receive(self, message: SpawnHere) -> ActorRef[Any]:
        placement = int(self.ref.statistics().loop)
        return await self.system.spawn(_FACTORIES[message.factory], placement=placement)


async def _spawn_on_own_loop(system: ActorSystem, where: str, factory: str) -> ActorRef[Any]:
    if where == "host":
        if sniffio_is_trio():
            pytest.skip('placement="host" needs an asyncio host')
        return await system.spawn(_FACTORIES[factory], placement="host")
    spawner = await system.spawn(Spawner, placement=0)
    return await spawner.ask(SpawnHere(factory))


@pytest.mark.parametrize("where", ["host", "actor"])
async def test_a_spawn_on_the_actors_own_loop_runs_what_init_sent(where: str) -> None:
    SendsToItself.handled = handled = Flag()
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            ref = await _spawn_on_own_loop(system, where, "sends")
            await handled.wait()  # with nothing else sent: the start-up ran the actor
            assert await ref.ask(Seen()) == (1,)
            await ref.send(Tick(2))
            assert await ref.ask(Seen()) == (1, 2)


@pytest.mark.parametrize("where", ["host", "actor"])
async def test_a_spawn_on_the_actors_own_loop_still_waits_for_on_start(where: str) -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            ref = await _spawn_on_own_loop(system, where, "starts")
            threads = await ref.ask(Threads())
            assert len(threads) == 3  # __init__, on_start (done before spawn returned), receive


@pytest.mark.parametrize("where", ["host", "actor"])
async def test_a_spawn_on_the_actors_own_loop_raises_what_the_factory_raised(where: str) -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(LookupError, match="no such thing") as caught:
                await _spawn_on_own_loop(system, where, "broken")
            assert any("while starting actor" in note for note in caught.value.__notes__)
            with pytest.raises(ValueError, match="no database"):
                await _spawn_on_own_loop(system, where, "bad-start")
            # `begin_here` checks what the factory made itself (no `_construct` call).
            with pytest.raises(TypeError, match="must return a new Actor instance, got str"):
                await _spawn_on_own_loop(system, where, "not-an-actor")
            # Nothing was left behind: only the spawner (if any) is alive.
            assert await (await _spawn_on_own_loop(system, where, "sends")).ask(Count()) == 1


def test_a_closed_run_coroutine_is_not_a_failure() -> None:
    # A run task abandoned with its loop is finalized by the garbage collector, which closes
    # its coroutine with GeneratorExit: that must propagate, not be logged as a crash.
    from actors._cell import Cell

    assert Cell._as_failure(object.__new__(Cell), GeneratorExit(), Tick(0)) is None  # pyright: ignore[reportPrivateUsage]


# -- the actor's own context --------------------------------------------------------------------

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


class Remembers(Actor[actors.Request[Any]]):
    """Reads a context variable in its handler; may set it in __init__ or a handler."""

    def __init__(self, set_in_init: bool) -> None:
        if set_in_init:
            _request_id.set("from-init")

    async def receive(self, message: actors.Request[Any]) -> Any:
        if isinstance(message, Seen):  # set it here: the next handler must see it
            _request_id.set("from-handler")
            return ()
        return _request_id.get("unset")


class ReadVar(actors.Request[str], frozen=True):
    pass


@pytest.mark.parametrize("where", ["host", "actor"])
async def test_an_actor_has_its_own_context_from_init_on_and_never_the_senders(
    where: str,
) -> None:
    async with ActorSystem(workers=1) as system:
        token = _request_id.set("the-spawners")  # must not leak into any actor
        try:
            with anyio.fail_after(WAIT):
                placement: Any = "host" if where == "host" else 0
                if where == "host" and sniffio_is_trio():
                    pytest.skip('placement="host" needs an asyncio host')
                setter = await system.spawn(lambda: Remembers(True), placement=placement)
                plain = await system.spawn(lambda: Remembers(False), placement=placement)
                assert await setter.ask(ReadVar()) == "from-init"
                assert await plain.ask(ReadVar()) == "unset"
                await plain.ask(Seen())
                assert await plain.ask(ReadVar()) == "from-handler"
                assert await setter.ask(ReadVar()) == "from-init"
            assert _request_id.get() == "the-spawners"
        finally:
            _request_id.reset(token)


class MakesAnActor(Actor[ReadVar]):
    """Sets a variable in __init__ (its construction context is kept); its handler tries to
    build an actor directly, which only a spawn may do."""

    def __init__(self) -> None:
        _request_id.set("kept")

    def receive(self, message: ReadVar) -> str:
        try:
            Remembers(False)
        except TypeError:
            return "refused"
        return "built"


class SpawnMaker(actors.Request[str], frozen=True):
    pass


class MakerSpawner(Actor[SpawnMaker]):
    async def receive(self, message: SpawnMaker) -> str:
        maker = await self.system.spawn(MakesAnActor)  # on this loop: built in place
        return await maker.ask(ReadVar())


async def test_a_kept_construction_context_does_not_keep_the_construction_marker() -> None:
    """The marker that lets `Actor.__new__` bind an instance to its cell is gone from the
    context the handlers run in, built on the actor's loop or elsewhere."""
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            from_host = await system.spawn(MakesAnActor, placement=0)
            assert await from_host.ask(ReadVar()) == "refused"
            spawner = await system.spawn(MakerSpawner, placement=0)
            assert await spawner.ask(SpawnMaker()) == "refused"


# -- forward references in the message type (issue 13, defect 5) -------------------------------


class ForwardOnly(Actor["Pong"]):
    """Names its message class before it is defined (Pong is at the end of this section)."""

    def __init__(self) -> None:
        self.handled = 0

    async def receive(self, message: Any) -> int:
        self.handled += 1
        return self.handled


class ForwardInUnion(ForwardOnly, Actor[Union[Ping, "Pong"]]):
    pass


class ForwardUnionString(ForwardOnly, Actor["Ping | Pong"]):
    pass


class InheritsForward(ForwardOnly):
    """Declares nothing itself: takes ForwardOnly's forward reference."""


class ForwardToNowhere(ForwardOnly, Actor["Nowhere"]):  # unresolvable on purpose
    pass


class Pong(actors.Request[int], frozen=True):
    """Defined after the actors that name it; answers how many messages they handled."""


@pytest.mark.parametrize(
    ("cls", "takes_ping"),
    [
        (ForwardOnly, False),
        (InheritsForward, False),
        (ForwardInUnion, True),
        (ForwardUnionString, True),
    ],
    ids=["string", "inherited", "union-with-string", "union-in-string"],
)
async def test_a_forward_reference_to_a_later_class_is_enforced(
    cls: type[Actor[Any]], takes_ping: bool
) -> None:
    """Regression: a forward reference made the actor accept any message at all."""
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            ref: ActorRef[Any] = await system.spawn(cls, name="forward")
            wrong: list[object] = [Stranger(), 1, "two", Tick(3)]
            if not takes_ping:
                wrong.append(Ping())
            for message in wrong:
                with pytest.raises(actors.MessageTypeError, match=r"it accepts .*Pong"):
                    await ref.send(message)
            if takes_ping:
                await ref.send(Ping())
            assert await ref.ask(Pong()) == (2 if takes_ping else 1)


async def test_an_unresolvable_forward_reference_fails_the_spawn_with_a_clear_error() -> None:
    async with ActorSystem(workers=1) as system:
        with anyio.fail_after(WAIT):
            with pytest.raises(TypeError) as caught:
                await system.spawn(ForwardToNowhere)
            text = str(caught.value)
            assert "ForwardToNowhere" in text
            assert "'Nowhere' is not defined" in text
            assert "Actor[Nowhere]" in text  # what to write instead

            class Local(Actor["LocalMessage"]):
                async def receive(self, message: Any) -> None:
                    return None

            class LocalMessage(msgspec.Struct, frozen=True):  # local: out of a string's reach
                pass

            with pytest.raises(TypeError, match=r"inside a function.*Actor\[LocalMessage\]"):
                await system.spawn(Local)
            # Still refused on a second try, and the system is unharmed.
            with pytest.raises(TypeError, match="'Nowhere' is not defined"):
                await system.spawn(ForwardToNowhere)
            assert await (await system.spawn(ForwardOnly)).ask(Pong()) == 1


# -- hooks must be coroutine functions (issue 13, defect 6); receive may be either (issue 17),
# and so may on_terminated (a drain handles a plain one's notices in place) --

HOOKS = {
    "on_start": "async def on_start(self)",
    "on_stop": "async def on_stop(self)",
    "on_restart": "async def on_restart(self, error)",
}


def _actor_class(**namespace: object) -> type[Actor[Any]]:
    return types.new_class("Defined", (Actor[Any],), exec_body=lambda ns: ns.update(namespace))


@pytest.mark.parametrize("hook", list(HOOKS))
def test_a_handler_or_hook_defined_without_async_is_refused_at_class_definition(
    hook: str,
) -> None:
    """Regression: a ``def`` hook ran its side effects, then failed the actor."""

    def plain(self: object, *args: object) -> None:
        return None

    with pytest.raises(TypeError) as caught:
        _actor_class(**{hook: plain})
    text = str(caught.value)
    assert f"Defined.{hook}" in text
    assert f"write `{HOOKS[hook]}`" in text


def test_an_async_generator_receive_is_refused() -> None:
    async def receive(self: object, message: object) -> Any:
        yield message

    with pytest.raises(TypeError, match=r"async generator.*without `yield`"):
        _actor_class(receive=receive)


def test_async_handlers_pass_also_wrapped_or_static() -> None:
    async def handler(self: object, *args: object) -> None:
        return None

    @functools.wraps(handler)
    def wrapper(*args: object) -> Any:
        return handler(*args)  # a coroutine: awaiting the call works

    async def static_hook() -> None:
        return None

    _actor_class(receive=wrapper, on_start=handler, on_stop=staticmethod(static_hook))


# -- F15: an ordinary exception in on_stop ---------------------------------------------------


class Knock(actors.Request[int], frozen=True):
    """Answer with this instance's count of messages; ``fail``: raise instead."""

    fail: bool = False


class Leaky(Actor[Knock]):
    """An actor whose clean-up always raises."""

    def __init__(self) -> None:
        self.knocks = 0

    async def receive(self, message: Knock) -> int:
        self.knocks += 1
        if message.fail:
            raise LookupError("knocked over")
        return self.knocks

    async def on_stop(self) -> None:
        raise ValueError("clean-up failed")


def _on_stop_reports(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("on_stop of actor")]


async def test_F15_an_exception_in_on_stop_is_logged_once_and_the_stop_stays_normal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="actors")
    async with ActorSystem(workers=1) as system:
        leaky = await system.spawn(Leaky, name="leaky", restart=Restart.TEMPORARY)
        with anyio.fail_after(WAIT):
            assert await leaky.ask(Knock()) == 1
            await leaky.stop()
            assert await leaky.join() is None  # a normal end, not a failure
    [report] = _on_stop_reports(caplog)
    assert report.getMessage() == "on_stop of actor /user/leaky raised"
    assert report.exc_info is not None
    assert isinstance(report.exc_info[1], ValueError)


async def test_F15_an_exception_in_on_stop_does_not_hold_up_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="actors")
    async with ActorSystem(workers=1) as system:
        leaky = await system.spawn(Leaky, name="leaky")
        with anyio.fail_after(WAIT):
            with pytest.raises(LookupError):
                await leaky.ask(Knock(fail=True))
            assert await leaky.ask(Knock()) == 1  # a fresh instance answers
            assert leaky.statistics().restarts == 1
    # The old instance's on_stop before the restart, the new one's at shutdown.
    assert len(_on_stop_reports(caplog)) == 2
