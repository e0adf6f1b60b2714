"""Same-loop tell, piece by piece, in ns per message (run with the repository on PYTHONPATH)."""

import asyncio
import collections
import gc
import statistics
import threading
import time

import actors
from benchmarks.common import Collect, CounterState, Echo, Inc
from benchmarks.subject import Counter

N, K, REPS = 200_000, 1000, 7  # N messages a piece, in chunks of K (the default capacity)
clock = time.perf_counter_ns


class Handler:  # Counter.receive outside an actor
    def __init__(self):
        self.state = CounterState()

    async def receive(self, message):
        return self.state.handle(message)


class MinBox:  # the least a thread-safe bounded mailbox does: a lock, a bound, a closed flag
    def __init__(self):
        self.lock, self.queue, self.closed = threading.Lock(), collections.deque(), False

    async def send(self, message):
        lock = self.lock
        lock.acquire()
        try:
            if self.closed or len(self.queue) >= K + 16:
                raise RuntimeError("closed or full")
            self.queue.append(message)
        finally:
            lock.release()


async def main():
    res = collections.defaultdict(list)
    async with actors.ActorSystem(workers=1) as system:
        big = await system.spawn(Counter, placement="host", capacity=K + 16)  # never full
        bounded = await system.spawn(Counter, placement="host")  # capacity 1000
        receive = Handler().receive
        dq, q, box, lock = collections.deque(), asyncio.Queue(K + 16), MinBox(), threading.Lock()
        ready = asyncio.get_running_loop().create_future()
        ready.set_result(None)

        async def put(m):
            dq.append(m)

        def put_ready(m):  # a sync "send" returning an already-done awaitable
            dq.append(m)
            return ready

        async def drain_actor():
            assert (await big.ask(Collect())).count == K

        async def drain_queue():
            for _ in range(K):
                await receive(await q.get())

        async def drain_deque(queue=dq):
            while queue:
                await receive(queue.popleft())

        async def drain_minbox():
            queue = box.queue
            while queue:
                item = queue.popleft()
                if type(item) is Echo:  # one dispatch test, like Cell._run's
                    continue
                await receive(item)

        handled = [Inc(i) for i in range(K)]

        async def handler_only():
            for m in handled:
                await receive(m)

        pieces = [  # name, call (each loop also makes Inc(i)), awaited?, consumer or None
            ("Inc(i) + for loop", None, False, None),
            ("lock.acquire(); lock.release() (no Inc)", lock, False, None),
            ("await ref.send(m)", big.send, True, drain_actor),
            ("ref.try_send(m)", big.try_send, False, drain_actor),
            ("Mailbox.put_nowait(m) (private)", big._cell.mailbox.put_nowait, False, drain_actor),
            ("await queue.put(m)", q.put, True, drain_queue),
            ("floor: await put(m), a deque append", put, True, drain_deque),
            ("sync put returning a done future", put_ready, True, drain_deque),
            ("minimal locked bounded send", box.send, True, drain_minbox),
        ]
        for _ in range(REPS):
            for name, call, awaited, drain in pieces:
                gc.collect()
                produced = consumed = 0
                for base in range(0, N, K):
                    t0 = clock()
                    if call is None:
                        for i in range(base, base + K):
                            Inc(i)
                    elif call is lock:
                        for _ in range(base, base + K):
                            lock.acquire()
                            lock.release()
                    elif awaited:
                        for i in range(base, base + K):
                            await call(Inc(i))
                    else:
                        for i in range(base, base + K):
                            call(Inc(i))
                    t1 = clock()
                    if drain is not None:
                        await drain()
                    produced, consumed = produced + t1 - t0, consumed + clock() - t1
                res["producer: " + name].append(produced / N)
                if drain is not None:
                    res["consumer after: " + name].append(consumed / N)
            t0 = clock()
            for _ in range(N // K):
                await handler_only()
            res["handler alone: for m in a list: await receive(m)"].append((clock() - t0) / N)
            for name, ref in (("actors", bounded), ("asyncio.Queue", None)):
                gc.collect()
                t0 = clock()
                if ref is not None:
                    send = ref.send
                    for i in range(N):
                        await send(Inc(i))
                    assert (await ref.ask(Collect())).count == N
                else:
                    q2 = asyncio.Queue(K)

                    async def consume(q2=q2):
                        for _ in range(N):
                            await receive(await q2.get())

                    task = asyncio.create_task(consume())
                    for i in range(N):
                        await q2.put(Inc(i))
                    await task
                res[f"whole tell, {name}, capacity {K}"].append((clock() - t0) / N)
            for timeout in (5.0, None):
                t0 = clock()
                for i in range(N // 20):
                    await big.ask(Echo(i), timeout=timeout)
                res[f"ask round trip, timeout={timeout}"].append((clock() - t0) / (N // 20))
            t0 = clock()
            for _ in range(N // 4):
                await asyncio.sleep(0)
            res["loop turn: await asyncio.sleep(0)"].append((clock() - t0) / (N // 4))
            t0 = clock()
            for _ in range(N):
                asyncio.get_running_loop()
            res["asyncio.get_running_loop() + for loop"].append((clock() - t0) / N)

    for name, values in res.items():
        print(f"{name:55} {statistics.median(values):7.1f}  ({min(values):.0f}-{max(values):.0f})")


actors.run(main)
