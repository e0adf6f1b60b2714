"""The options of `Nats`, grouped into a few frozen option objects with documented defaults.

Each object validates itself when built, so a bad value fails where it is written. `Nats`
takes them as ``timeouts=``, ``limits=``, ``heartbeats=``, ``reconnect=``,
``credentials=`` and ``durable=``; its older flat keyword arguments (``ack_timeout=``,
``durable_window=``, ...) still work and override the matching field (`NatsKeywords`
lists them, `Config.build` maps them). The parts of a node read their own object only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Final, TypedDict

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence

__all__ = (
    "DEFAULT_ACK_TIMEOUT",
    "DEFAULT_DURABLE_ACK_WAIT",
    "DEFAULT_DURABLE_DEDUP_WINDOW",
    "DEFAULT_DURABLE_MAX_DELIVER",
    "DEFAULT_DURABLE_OUTSTANDING",
    "DEFAULT_DURABLE_RETRY_DELAY",
    "DEFAULT_DURABLE_WINDOW",
    "DEFAULT_HEARTBEAT_INTERVAL",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Config",
    "Credentials",
    "DurableOptions",
    "Heartbeats",
    "Limits",
    "NatsKeywords",
    "Reconnect",
    "Timeouts",
)

DEFAULT_HEARTBEAT_INTERVAL: Final = 1.0
"""Seconds between two heartbeats of a node."""

DEFAULT_HEARTBEAT_TIMEOUT: Final = 5.0
"""Seconds without a heartbeat after which a node is declared down."""

DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024
"""Largest frame sent or accepted, in bytes (NATS's own default ``max_payload``)."""

DEFAULT_MAX_DEPTH: Final = 32
"""Deepest nesting of arrays and maps accepted in a frame."""

DEFAULT_ACK_TIMEOUT: Final = 30.0
"""Seconds a ``send`` without a timeout waits for its acknowledgement before giving up."""

DEFAULT_DURABLE_ACK_WAIT: Final = 30.0
"""Seconds JetStream waits for a durable message's ack before redelivering it.

While the handler runs the owning node keeps the message alive (in-progress acks), so this
bounds how long after a node's death its unfinished message is redelivered.
"""

DEFAULT_DURABLE_MAX_DELIVER: Final = 5
"""Attempts at a durable message (deliveries) before it is given up on as poison."""

DEFAULT_DURABLE_WINDOW: Final = 1
"""Durable messages in flight per durable actor (JetStream ``max_ack_pending``).

1 keeps the stream's order exactly, redeliveries included; more overlaps the round trips
to the server with handling, and then a redelivered message comes after later ones.
"""

DEFAULT_DURABLE_RETRY_DELAY: Final = 1.0
"""Seconds before a message whose handler failed is redelivered (doubling each attempt)."""

DEFAULT_DURABLE_DEDUP_WINDOW: Final = 120.0
"""Seconds JetStream remembers a message id to drop re-published copies (its own default)."""

DEFAULT_DURABLE_OUTSTANDING: Final = 1024
"""Durable messages a node holds admitted and not yet stored (awaiting their PubAck).

Beyond it a durable ``send`` waits for room and ``try_send`` raises `MailboxFull`.
"""

TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]+$")  # a subject token: node, prefix, public name


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """How long a node waits for the server and for acknowledgements.

    Attributes:
        ack: seconds a ``send(timeout=None)`` waits for its acknowledgement before raising
            `SendTimeout` (`DEFAULT_ACK_TIMEOUT`, 30 s).
        connect: seconds `Nats.attach` may take to connect and join before it gives up
            with `ClusterError` (5 s).

    Example:
        ```python
        Nats(url, node="a", timeouts=Timeouts(ack=10.0, connect=2.0))
        ```
    """

    ack: float = DEFAULT_ACK_TIMEOUT
    connect: float = 5.0

    def __post_init__(self) -> None:
        if self.ack <= 0 or self.connect <= 0:
            raise ValueError(f"timeouts must be positive, got {self}")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a frame may be: checked before sending and before decoding what arrives.

    Attributes:
        max_message_size: largest frame sent or accepted, in bytes, at least 64
            (`DEFAULT_MAX_MESSAGE_SIZE`, 1 MiB).
        max_depth: deepest nesting of arrays and maps accepted, at least 4
            (`DEFAULT_MAX_DEPTH`, 32).

    Example:
        ```python
        Nats(url, node="a", limits=Limits(max_message_size=64 * 1024))
        ```
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        if self.max_message_size < 64 or self.max_depth < 4:
            raise ValueError("max_message_size must be at least 64 and max_depth at least 4")


@dataclasses.dataclass(frozen=True)
class Heartbeats:
    """How nodes tell each other they are alive.

    Attributes:
        interval: seconds between two heartbeats of this node
            (`DEFAULT_HEARTBEAT_INTERVAL`, 1 s).
        timeout: seconds without a heartbeat after which another node is declared down
            and its actors count as stopped (`DEFAULT_HEARTBEAT_TIMEOUT`, 5 s); more than
            ``interval``.

    Example:
        ```python
        Nats(url, node="a", heartbeats=Heartbeats(interval=0.5, timeout=2.0))
        ```
    """

    interval: float = DEFAULT_HEARTBEAT_INTERVAL
    timeout: float = DEFAULT_HEARTBEAT_TIMEOUT

    def __post_init__(self) -> None:
        if not 0 < self.interval < self.timeout:
            raise ValueError(
                "need 0 < heartbeat_interval < heartbeat_timeout, got "
                f"{self.interval} and {self.timeout}"
            )


@dataclasses.dataclass(frozen=True)
class Reconnect:
    """What nats-py does after losing the connection.

    Attributes:
        wait: seconds between reconnect attempts to one server (0.5 s).
        max_attempts: attempts per server after a drop; -1 (the default) retries forever.
        pending_size: bytes buffered while disconnected; beyond, sends fail (2 MiB).

    Example:
        ```python
        Nats(url, node="a", reconnect=Reconnect(wait=0.1))
        ```
    """

    wait: float = 0.5
    max_attempts: int = -1
    pending_size: int = 2 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.wait < 0 or self.max_attempts < -1 or self.pending_size < 0:
            raise ValueError(f"need wait >= 0, max_attempts >= -1, pending_size >= 0: {self}")


@dataclasses.dataclass(frozen=True, repr=False)
class Credentials:
    """Authentication and TLS, passed to nats-py as they are (None: not used).

    Attributes:
        user: a user name.
        password: that user's password.
        token: an authentication token.
        nkeys_seed: the path of an nkey seed file.
        user_credentials: the path of a JWT ``.creds`` file.
        tls: an `ssl.SSLContext` (server verification, client certificates).
        tls_hostname: the server name to verify, when it differs from the URL's host.

    Example:
        ```python
        Nats(url, node="a", credentials=Credentials(user="actors", password="s3cret"))
        ```
    """

    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkeys_seed: str | None = None
    user_credentials: str | None = None
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None

    def __repr__(self) -> str:
        # Never print a secret: name the fields that are set.
        given = [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]
        return f"Credentials({', '.join(given)})"

    def given(self) -> dict[str, Any]:
        """The fields that are set, as nats-py's ``connect`` keywords."""
        fields = dataclasses.fields(self)
        return {f.name: getattr(self, f.name) for f in fields if getattr(self, f.name) is not None}


@dataclasses.dataclass(frozen=True)
class DurableOptions:
    """Durable mailboxes on JetStream (``spawn(durable=True)``, see ``docs/cluster-durable.md``).

    Attributes:
        ack_wait: seconds JetStream waits for a message's ack before it redelivers it
            (`DEFAULT_DURABLE_ACK_WAIT`, 30 s): how soon a message a crashed node was
            handling goes to the restarted one.
        max_deliver: attempts at a message before it is given up on as poison
            (`DEFAULT_DURABLE_MAX_DELIVER`, 5).
        window: messages in flight per durable actor (`DEFAULT_DURABLE_WINDOW`, 1); 1
            keeps the order exactly, redeliveries included.
        retry_delay: seconds before a failed message is redelivered, doubling with each
            attempt (`DEFAULT_DURABLE_RETRY_DELAY`, 1 s).
        dedup_window: seconds JetStream drops re-published copies of a message id
            (`DEFAULT_DURABLE_DEDUP_WINDOW`, 120 s); a send stops retrying when it has passed.
        outstanding: durable messages this node holds sent and not yet stored, awaiting
            their PubAck (`DEFAULT_DURABLE_OUTSTANDING`, 1024): beyond, ``send`` waits.

    Example:
        ```python
        Nats(url, node="a", durable=DurableOptions(window=8, max_deliver=3))
        ```
    """

    ack_wait: float = DEFAULT_DURABLE_ACK_WAIT
    max_deliver: int = DEFAULT_DURABLE_MAX_DELIVER
    window: int = DEFAULT_DURABLE_WINDOW
    retry_delay: float = DEFAULT_DURABLE_RETRY_DELAY
    dedup_window: float = DEFAULT_DURABLE_DEDUP_WINDOW
    outstanding: int = DEFAULT_DURABLE_OUTSTANDING

    def __post_init__(self) -> None:
        if self.ack_wait <= 0 or self.dedup_window <= 0 or self.retry_delay < 0:
            raise ValueError(
                "need durable_ack_wait > 0, durable_dedup_window > 0, durable_retry_delay >= 0"
            )
        if self.max_deliver < 1 or self.window < 1 or self.outstanding < 1:
            raise ValueError(
                "durable_max_deliver, durable_window and durable_outstanding must be at least 1"
            )


class NatsKeywords(TypedDict, total=False):
    """The flat keyword arguments of `Nats` (each overrides one field of an option object)."""

    heartbeat_interval: float
    heartbeat_timeout: float
    max_message_size: int
    max_depth: int
    ack_timeout: float
    user: str | None
    password: str | None
    token: str | None
    nkeys_seed: str | None
    user_credentials: str | None
    tls: ssl.SSLContext | None
    tls_hostname: str | None
    connect_timeout: float
    reconnect_time_wait: float
    max_reconnect_attempts: int
    pending_size: int
    durable_ack_wait: float
    durable_max_deliver: int
    durable_window: int
    durable_retry_delay: float
    durable_dedup_window: float
    durable_outstanding: int


# Flat keyword -> (option object, field).
_KEYWORDS: Final[dict[str, tuple[str, str]]] = {
    "heartbeat_interval": ("heartbeats", "interval"),
    "heartbeat_timeout": ("heartbeats", "timeout"),
    "max_message_size": ("limits", "max_message_size"),
    "max_depth": ("limits", "max_depth"),
    "ack_timeout": ("timeouts", "ack"),
    "connect_timeout": ("timeouts", "connect"),
    "reconnect_time_wait": ("reconnect", "wait"),
    "max_reconnect_attempts": ("reconnect", "max_attempts"),
    "pending_size": ("reconnect", "pending_size"),
    **{name: ("credentials", name) for name in ("user", "password", "token", "nkeys_seed")},
    **{name: ("credentials", name) for name in ("user_credentials", "tls", "tls_hostname")},
    **{f"durable_{f}": ("durable", f) for f in ("ack_wait", "max_deliver", "window")},
    **{f"durable_{f}": ("durable", f) for f in ("retry_delay", "dedup_window", "outstanding")},
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a node is configured with, validated; what the parts are built from."""

    servers: tuple[str, ...]
    node: str
    prefix: str
    timeouts: Timeouts
    limits: Limits
    heartbeats: Heartbeats
    reconnect: Reconnect
    credentials: Credentials
    durable: DurableOptions

    @classmethod
    def build(
        cls,
        servers: str | Sequence[str],
        node: str,
        prefix: str,
        groups: dict[str, Any],
        keywords: NatsKeywords,
    ) -> Config:
        """Validate, and fold the flat ``keywords`` into the option objects of ``groups``.

        Raises:
            ValueError: a bad node name or prefix, a bad value, or an unknown keyword.
            TypeError: an unknown keyword argument.
        """
        if not TOKEN.match(node):
            raise ValueError(f"a node name may hold letters, digits, - and _ only, got {node!r}")
        if not TOKEN.match(prefix):
            raise ValueError(f"a prefix may hold letters, digits, - and _ only, got {prefix!r}")
        defaults: dict[str, Any] = {
            "timeouts": Timeouts(),
            "limits": Limits(),
            "heartbeats": Heartbeats(),
            "reconnect": Reconnect(),
            "credentials": Credentials(),
            "durable": DurableOptions(),
        }
        chosen = {key: groups.get(key) or default for key, default in defaults.items()}
        changes: dict[str, dict[str, Any]] = {}
        for keyword, value in dict(keywords).items():
            if keyword not in _KEYWORDS:
                raise TypeError(f"Nats() got an unexpected keyword argument {keyword!r}")
            group, field = _KEYWORDS[keyword]
            changes.setdefault(group, {})[field] = value
        for group, fields in changes.items():
            chosen[group] = dataclasses.replace(chosen[group], **fields)
        listed = (servers,) if isinstance(servers, str) else tuple(servers)
        return cls(listed, node, prefix, **chosen)

    def connect_options(self) -> dict[str, Any]:
        """The keywords of nats-py's ``connect`` (besides the callbacks)."""
        reconnect = self.reconnect
        return {
            "servers": list(self.servers),
            "name": f"actors:{self.node}",
            "reconnect_time_wait": reconnect.wait,
            "max_reconnect_attempts": reconnect.max_attempts,
            # nats-py's own per-attempt timeout; attach bounds the whole join itself.
            "connect_timeout": max(1, min(int(self.timeouts.connect), 2)),
            "pending_size": reconnect.pending_size,
            "allow_reconnect": True,
            **self.credentials.given(),
        }
