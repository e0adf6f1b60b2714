"""A TCP chat server on anyio streams: one actor per connection, one actor for the room.

    python3 dev.py run examples/chat.py          # listens on 127.0.0.1:7777
    nc 127.0.0.1 7777                            # in two other terminals: chat

The first line a client sends is its name. Then every line it sends goes to everybody else
in the room; ``/who`` lists who is online and ``/quit`` leaves.

Shape:

* the room (on a worker loop) owns the set of members and broadcasts; it never waits on a
  client: it offers each line with ``try_send``, and a client too slow to keep up with its
  small mailbox misses lines instead of stalling the room for everybody;
* a ``Connection`` actor per client owns the socket's sending side, so exactly one task ever
  writes to it. It lives on the host loop (``placement="host"``), because a socket belongs
  to the event loop that accepted it;
* the connection's reader is a plain task in the listener's task group: it reads lines and
  sends them to the room.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

import actors

MAX_LINE = 1024  # bytes; a longer line disconnects the client
CLIENT_MAILBOX = 64  # lines waiting for a slow client before it starts missing some


# --8<-- [start:connection]
class Line(msgspec.Struct, frozen=True):
    text: str


class Connection(actors.Actor[Line]):
    """Writes lines to one client. The only writer of its socket."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream  # the sending half is ours from now on

    async def receive(self, message: Line) -> None:
        # A client that has gone is not an error here: its reader notices and leaves.
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.stream.send(message.text.encode() + b"\n")


# --8<-- [end:connection]


# --8<-- [start:room]
ConnectionRef = actors.ActorRef[Line]


class Join(actors.Request[bool], frozen=True):
    name: str
    connection: ConnectionRef


class Leave(msgspec.Struct, frozen=True):
    name: str


class Say(msgspec.Struct, frozen=True):
    name: str
    text: str


class Who(actors.Request[tuple[str, ...]], frozen=True):
    pass


class Room(actors.Actor[Join | Leave | Say | Who]):
    def __init__(self) -> None:
        self.members: dict[str, ConnectionRef] = {}
        self.missed = 0  # lines dropped because a client's mailbox was full

    async def receive(self, message: Join | Leave | Say | Who) -> bool | tuple[str, ...] | None:
        match message:
            case Join(name=name, connection=connection):
                if name in self.members:
                    return False
                self.members[name] = connection
                self.offer(connection, f"hello {name}, {len(self.members)} online")
                self.broadcast(f"* {name} joined", skip=name)
                return True
            case Leave(name=name):
                if self.members.pop(name, None) is not None:
                    self.broadcast(f"* {name} left", skip=name)
            case Say(name=name, text=text):
                self.broadcast(f"{name}: {text}", skip=name)
            case Who():
                return tuple(sorted(self.members))
        return None

    def broadcast(self, text: str, skip: str) -> None:
        for name, connection in self.members.items():
            if name != skip:
                self.offer(connection, text)

    def offer(self, connection: ConnectionRef, text: str) -> None:
        try:
            connection.try_send(Line(text))  # never waits on a slow client
        except actors.MailboxFull:
            self.missed += 1
        except actors.ActorStopped:
            pass  # disconnected; its Leave is on the way


# --8<-- [end:room]


# --8<-- [start:handler]
async def handle(
    system: actors.ActorSystem,
    room: actors.ActorRef[Join | Leave | Say | Who],
    client: anyio.abc.SocketStream,
) -> None:
    """Serve one client: runs as a task of the listener, on the host loop."""
    async with client:
        lines = BufferedByteReceiveStream(client)
        await client.send(b"welcome! what is your name?\n")
        try:
            name = (await lines.receive_until(b"\n", MAX_LINE)).decode().strip()
        except (anyio.IncompleteRead, anyio.DelimiterNotFound, UnicodeDecodeError):
            return
        # From here on only the connection actor writes to the socket.
        connection = await system.spawn(
            lambda: Connection(client), capacity=CLIENT_MAILBOX, placement="host"
        )
        joined = False
        try:
            joined = bool(name) and await room.ask(Join(name, connection))
            if not joined:
                await connection.send(Line(f"name taken: {name or '(empty)'}"))
                return
            while True:
                try:
                    text = (await lines.receive_until(b"\n", MAX_LINE)).decode().strip()
                except (anyio.IncompleteRead, anyio.DelimiterNotFound, UnicodeDecodeError):
                    return  # disconnected, or sent something that is not a line of text
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                if text == "/quit":
                    await connection.send(Line("bye"))
                    return
                if text == "/who":
                    online = await room.ask(Who())
                    await connection.send(Line("online: " + ", ".join(online)))
                elif text:
                    await room.send(Say(name, text))
        finally:
            # Shielded: when the server is cancelled, the client still leaves the room and
            # its connection actor still writes what it was given before the socket closes.
            with anyio.CancelScope(shield=True):
                if joined:
                    await room.send(Leave(name))
                await connection.stop()


# --8<-- [end:handler]


# --8<-- [start:server]
async def run_server(
    host: str = "127.0.0.1",
    port: int = 7777,
    *,
    task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled. ``task_status.started`` gets the port (useful with port 0)."""
    try:
        async with actors.ActorSystem(workers=2, name="chat") as system:
            room = await system.spawn(Room, name="room")
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
            async with listener:
                bound = listener.extra(anyio.abc.SocketAttribute.local_port)
                print(f"chat: listening on {host}:{bound}", flush=True)
                task_status.started(bound)
                await listener.serve(functools.partial(handle, system, room))
    finally:
        print("chat: server stopped", flush=True)


# --8<-- [end:server]


def main() -> None:
    parser = argparse.ArgumentParser(description="A TCP chat server built from actors.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7777)
    options = parser.parse_args()
    try:
        actors.run(run_server, options.host, options.port)
    except KeyboardInterrupt:  # Ctrl-C: run_server was cancelled and has shut down
        print("chat: bye", flush=True)


if __name__ == "__main__":
    main()
