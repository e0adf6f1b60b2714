"""Testing a timer-driven actor deterministically: `deterministic_system` and `advance`.

`PeerMonitor` pings a peer every second and raises an alarm once the peer has not answered
for three seconds. The tests drive its timers by hand and stand in for the peer and the
alarm with probes. ``main`` runs them: ``python3 dev.py run examples/testing/peer_monitor.py``.
"""

from __future__ import annotations

import anyio
import msgspec

import actors
from actors import testing


# --8<-- [start:actor]
class Pong(msgspec.Struct, frozen=True):
    seq: int


class Ping(msgspec.Struct, frozen=True):
    seq: int
    reply_to: actors.ActorRef[Pong]


class PeerDown(msgspec.Struct, frozen=True):
    peer: str
    silent_for: float


class Beat(msgspec.Struct, frozen=True):
    """The monitor's own timer tick."""


class PeerMonitor(actors.Actor[Pong | Beat]):
    def __init__(
        self,
        peer: actors.ActorRef[Ping],
        alarm: actors.ActorRef[PeerDown],
        interval: float = 1.0,
        timeout: float = 3.0,
    ) -> None:
        self.peer, self.alarm = peer, alarm
        self.interval, self.timeout = interval, timeout
        self.seq = 0
        self.down = False

    async def on_start(self) -> None:
        self.last_pong = self.system.clock.now()  # the system's clock: a ManualClock in tests
        self.send_every(self.interval, Beat())

    async def receive(self, message: Pong | Beat) -> None:
        now = self.system.clock.now()
        match message:
            case Pong():
                self.last_pong, self.down = now, False
            case Beat():
                silent = now - self.last_pong
                if silent >= self.timeout and not self.down:
                    self.down = True
                    await self.alarm.send(PeerDown(self.peer.path, silent))
                self.seq += 1
                await self.peer.send(Ping(self.seq, reply_to=self.ref))


# --8<-- [end:actor]


# --8<-- [start:tests]
async def test_pings_every_second_and_stays_calm_while_answered() -> None:
    async with testing.deterministic_system() as system:
        peer = await testing.Probe.spawn(system)
        alarm = await testing.Probe.spawn(system)
        await system.spawn(lambda: PeerMonitor(peer, alarm))

        await peer.expect_no_message(within=None)  # no ping before the first second
        for second in range(1, 6):
            await testing.advance(system, 1.0)  # the tick is handled before this returns
            ping = await peer.expect(Ping)
            assert ping.seq == second
            await ping.reply_to.send(Pong(ping.seq))  # the probe plays the peer
        await alarm.expect_no_message(within=None)


async def test_raises_the_alarm_once_after_three_silent_seconds() -> None:
    async with testing.deterministic_system() as system:
        peer = await testing.Probe.spawn(system)
        alarm = await testing.Probe.spawn(system)
        monitor = await system.spawn(lambda: PeerMonitor(peer, alarm))

        await testing.advance(system, 2.0)
        await alarm.expect_no_message(within=None)
        await testing.advance(system, 1.0)  # t = 3: three seconds without a pong
        down = await alarm.expect(PeerDown)
        assert down.silent_for == 3.0
        await testing.advance(system, 10.0)
        await alarm.expect_no_message(within=None)  # raised once, not at every beat
        assert len(await peer.receive_n(13)) == 13  # it kept pinging meanwhile
        assert await testing.inspect(monitor, lambda m: m.down) is True


# --8<-- [end:tests]


async def main() -> None:
    tests = (
        test_pings_every_second_and_stays_calm_while_answered,
        test_raises_the_alarm_once_after_three_silent_seconds,
    )
    for test in tests:
        await test()
        print(f"passed: {test.__name__}")


if __name__ == "__main__":
    anyio.run(main)
