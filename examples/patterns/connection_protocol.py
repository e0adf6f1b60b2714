"""A connection protocol as a typed state machine: connect -> authenticate -> active -> closing.

Run: python examples/patterns/connection_protocol.py

Each phase is a `State` class that declares the messages it handles; data sent before the
login is postponed and goes out, in order, once the session is active; each phase has a
state timeout. Time is a ManualClock (`testing.deterministic_system`), so the story, the
timeouts included, is the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

import actors
from actors import State, StateMachine, Transition, testing


# --8<-- [start:messages]
class Frame(msgspec.Struct, frozen=True):
    """What the connection writes to the wire."""

    text: str


class Connected(msgspec.Struct, frozen=True):
    """The transport is up."""


class Login(msgspec.Struct, frozen=True):
    user: str
    token: str


class Send(msgspec.Struct, frozen=True):
    data: str


class Close(msgspec.Struct, frozen=True):
    pass


class Phase(actors.Request[str], frozen=True):
    """Asks for the name of the current phase."""


Message = Connected | Login | Send | Close | Phase
# --8<-- [end:messages]


# --8<-- [start:states]
class Connecting(State["Connection", Connected | Send | Close | Phase]):
    timeout = 5.0  # seconds to get the transport up

    async def on_enter(self, machine: Connection) -> None:
        machine.write("SYN")

    async def handle(
        self, machine: Connection, message: Connected | Send | Close | Phase
    ) -> Transition:
        match message:
            case Connected():
                return machine.goto(Authenticating())
            case _:
                return machine.before_login(message, "connecting")

    async def on_timeout(self, machine: Connection) -> Transition:
        return machine.goto(Closing("connect timed out"))


class Authenticating(State["Connection", Login | Send | Close | Phase]):
    timeout = 10.0  # seconds for the client to log in

    async def handle(
        self, machine: Connection, message: Login | Send | Close | Phase
    ) -> Transition:
        match message:
            case Login(user, token) if token == machine.tokens.get(user):
                return machine.goto(Active(user))
            case Login(user):
                return machine.goto(Closing(f"bad token for {user}"))
            case _:
                return machine.before_login(message, "authenticating")

    async def on_timeout(self, machine: Connection) -> Transition:
        return machine.goto(Closing("login timed out"))


@dataclass(frozen=True)
class Active(State["Connection", Send | Close | Phase]):
    user: str
    timeout: float | None = 60.0  # the session's lifetime

    async def on_enter(self, machine: Connection) -> None:
        machine.write(f"WELCOME {self.user}")

    async def handle(self, machine: Connection, message: Send | Close | Phase) -> Transition:
        match message:
            case Send(data):
                machine.write(f"DATA {self.user}: {data}")
                return machine.stay()
            case Close():
                return machine.goto(Closing("closed by the client"))
            case Phase():
                return machine.stay(reply=f"active as {self.user}")

    async def on_timeout(self, machine: Connection) -> Transition:
        return machine.goto(Closing("session expired"))


@dataclass(frozen=True)
class Closing(State["Connection", Send | Close | Phase]):
    reason: str
    timeout: float | None = 1.0  # linger, then stop

    async def on_enter(self, machine: Connection) -> None:
        machine.write(f"FIN ({self.reason})")

    async def handle(self, machine: Connection, message: Send | Close | Phase) -> Transition:
        match message:
            case Send(data):
                machine.write(f"DROP {data}")  # too late: the connection is going away
                return machine.stay()
            case Close():
                return machine.stay()
            case Phase():
                return machine.stay(reply=f"closing: {self.reason}")

    async def on_timeout(self, machine: Connection) -> Transition:
        machine.stop()
        return machine.stay()


# --8<-- [end:states]


# --8<-- [start:machine]
class Connection(StateMachine[Connecting | Authenticating | Active | Closing, Message]):
    """One client connection; frames go to ``wire``."""

    def __init__(self, wire: actors.ActorRef[Frame], tokens: dict[str, str]) -> None:
        self.wire = wire
        self.tokens = tokens

    def initial_state(self) -> Connecting | Authenticating | Active | Closing:
        return Connecting()

    def write(self, text: str) -> None:
        self.wire.try_send(Frame(text))

    def before_login(self, message: Send | Close | Phase, phase: str) -> Transition:
        """What the states before Active do with the client's messages (shared code)."""
        match message:
            case Send():
                return self.postpone()  # sent once the session is active
            case Close():
                return self.goto(Closing("closed by the client"))
            case Phase():
                return self.stay(reply=phase)

    async def on_halt(self) -> None:
        self.write("CLOSED")


# --8<-- [end:machine]


class Wire(actors.Actor[Frame]):
    """Stands for the socket: prints each frame with the clock's time."""

    async def receive(self, message: Frame) -> None:
        print(f"  t={self.system.clock.now():>4.0f}  wire <- {message.text}")


async def session(system: actors.ActorSystem, wire: actors.ActorRef[Frame], login: Login) -> None:
    # --8<-- [start:drive]
    tokens = {"ada": "s3cret"}
    # Transient: its own stop() after Closing is the end (a permanent one would restart).
    conn = await system.spawn(lambda: Connection(wire, tokens), restart=actors.Restart.TRANSIENT)
    await conn.send(Send("hello"))  # too early: postponed
    await conn.send(Send("world"))
    await testing.advance(system, 1.0)
    await conn.send(Connected())
    print("phase:", await conn.ask(Phase()))
    await conn.send(login)
    print("phase:", await conn.ask(Phase()))  # the postponed data went out, in order
    await conn.send(Close())
    await testing.advance(system, 1.0)  # Closing lingers 1 s, then the actor stops
    await conn.join()
    # --8<-- [end:drive]


async def main() -> None:
    async with testing.deterministic_system() as system:
        wire = await system.spawn(Wire, name="wire")
        print("a good login:")
        await session(system, wire, Login("ada", "s3cret"))
        print("a bad login:")
        await session(system, wire, Login("ada", "guess"))
        print("a client that never logs in:")
        # --8<-- [start:timeout]
        conn = await system.spawn(lambda: Connection(wire, {}), restart=actors.Restart.TRANSIENT)
        await conn.send(Connected())
        await testing.advance(system, 10.0)  # Authenticating's timeout
        print("phase:", await conn.ask(Phase()))
        await testing.advance(system, 1.0)
        await conn.join()
        # --8<-- [end:timeout]
        print("a connection stopped while data waits:")
        # --8<-- [start:stopped]
        conn = await system.spawn(lambda: Connection(wire, {}))
        await conn.send(Send("unsent"))  # postponed: the transport never came up
        await conn.stop()  # the postponed message becomes a dead letter, not lost
        await testing.settle(system)
        print("dead letters:", system.dead_letters.count)
        # --8<-- [end:stopped]


if __name__ == "__main__":
    actors.run(main)
