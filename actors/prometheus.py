"""Prometheus exporter for `ActorSystem.metrics` (the optional extra ``actors[prometheus]``).

Each scrape takes one `SystemMetrics` snapshot and renders it: counters per actor path
(received, processed, failed, restarts, handler seconds), gauges (mailbox depth, high water,
capacity; loop actors, CPU seconds and scheduling lag) and, with
``ActorSystem(handler_timing=True)``, a handler-latency histogram per actor.

Example:
    ```python
    from actors.prometheus import PrometheusExporter

    async with ActorSystem() as system:
        with PrometheusExporter(system, port=9464) as exporter:
            print("scrape me at", exporter.url)
            ...
    ```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator
    from types import TracebackType
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from ._system import ActorSystem

__all__ = ("MetricsCollector", "PrometheusExporter")

# ActorMetrics fields rendered per actor path, with their help texts.
_ACTOR_COUNTERS = (
    ("received", "messages accepted by the mailbox"),
    ("processed", "messages handled without an exception"),
    ("failed", "handler failures"),
    ("restarts", "restarts"),
    ("handler_seconds", "wall time spent in handlers"),
    ("asks_expired", "queued asks skipped: their asker's timeout had run out"),
    ("asks_cancelled", "queued asks skipped: their asker was cancelled"),
    ("handlers_cancelled", "handlers cancelled because their asker gave up"),
)
_ACTOR_GAUGES = (
    ("mailbox_depth", "messages waiting"),
    ("mailbox_high_water", "largest mailbox depth seen"),
    ("mailbox_capacity", "mailbox bound"),
)


class MetricsCollector(Collector):
    """A prometheus_client collector that renders one system's snapshot per scrape.

    Register it in your own registry to serve it from an existing endpoint.

    Example:
        ```python
        registry = CollectorRegistry()
        registry.register(MetricsCollector(system))
        ```
    """

    def __init__(self, system: ActorSystem, *, prefix: str = "actors") -> None:
        self._system = system
        self._prefix = prefix

    def collect(self) -> Iterator[Metric]:
        snapshot = self._system.metrics()
        name = self._prefix
        for field, help_text in _ACTOR_COUNTERS:
            counter = CounterMetricFamily(f"{name}_{field}", help_text, labels=["path"])
            for actor in snapshot.actors:
                counter.add_metric([actor.path], float(getattr(actor, field)))
            yield counter
        for field, help_text in _ACTOR_GAUGES:
            gauge = GaugeMetricFamily(f"{name}_{field}", help_text, labels=["path"])
            for actor in snapshot.actors:
                gauge.add_metric([actor.path], float(getattr(actor, field)))
            yield gauge
        states = GaugeMetricFamily(
            f"{name}_machine_state",
            "1 for the current state of each state machine",
            labels=["path", "state"],
        )
        for actor in snapshot.actors:
            if actor.state:
                states.add_metric([actor.path, actor.state], 1.0)
        yield states
        histogram = HistogramMetricFamily(
            f"{name}_handler_latency_seconds", "handler latency", labels=["path"]
        )
        for actor in snapshot.actors:
            if not actor.handler_histogram:
                continue
            buckets: list[tuple[str, float]] = []
            running = 0
            for bound, count in actor.handler_histogram:
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            histogram.add_metric([actor.path], buckets, actor.handler_seconds)
        yield histogram
        loop_actors = GaugeMetricFamily(f"{name}_loop_actors", "actors per loop", labels=["loop"])
        loop_busy = CounterMetricFamily(
            f"{name}_loop_cpu_seconds", "CPU time of the loop's thread", labels=["loop"]
        )
        loop_lag = GaugeMetricFamily(
            f"{name}_loop_lag_seconds", "last scheduling lag of the loop", labels=["loop"]
        )
        for loop in snapshot.loops:
            loop_actors.add_metric([loop.loop], loop.actors)
            if loop.busy_seconds is not None:
                loop_busy.add_metric([loop.loop], loop.busy_seconds)
            if loop.lag_seconds is not None:
                loop_lag.add_metric([loop.loop], loop.lag_seconds)
        yield loop_actors
        yield loop_busy
        yield loop_lag
        yield CounterMetricFamily(
            f"{name}_dead_letters", "dead letters", value=snapshot.dead_letters
        )


class PrometheusExporter:
    """Serve a system's metrics over HTTP for Prometheus, from a background thread.

    Binds to ``addr`` (loopback by default: expose it deliberately) and ``port`` (0 picks a
    free one; see `port` after `start`).

    Example:
        ```python
        exporter = PrometheusExporter(system, port=9464).start()
        ...
        exporter.stop()
        ```
    """

    def __init__(self, system: ActorSystem, *, port: int = 9464, addr: str = "127.0.0.1") -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(MetricsCollector(system))
        self._port = port
        self._addr = addr
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the real one once started with port 0)."""
        return self._server.server_port if self._server is not None else self._port

    @property
    def url(self) -> str:
        """The scrape URL."""
        return f"http://{self._addr}:{self.port}/metrics"

    def start(self) -> PrometheusExporter:
        """Start serving. Returns self.

        Example:
            ```python
            exporter = PrometheusExporter(system, port=0).start()
            ```
        """
        if self._server is None:
            self._server, self._thread = start_http_server(
                self._port, addr=self._addr, registry=self._registry
            )
        return self

    def stop(self) -> None:
        """Stop serving and join the server thread. Idempotent.

        Example:
            ```python
            exporter.stop()
            ```
        """
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> PrometheusExporter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
