"""`run`: the entry point for programs whose whole life is an async main function."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeVar, TypeVarTuple, Unpack

import anyio

from ._runtime import uvloop_available

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("run",)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def run(
    main: Callable[[Unpack[Ts]], Awaitable[T]],
    *args: *Ts,
    backend: Literal["asyncio", "trio"] = "asyncio",
    use_uvloop: bool | None = None,
) -> T:
    """Run ``main(*args)`` in a new event loop and return its result, like ``anyio.run``.

    On the asyncio backend the loop is uvloop where it is installed (``use_uvloop=None``),
    so the host's own actors (placement="host") get the fast loop too.

    Example:
        ```python
        async def main() -> None:
            async with actors.ActorSystem() as system:
                ...

        actors.run(main)
        ```
    """
    options: dict[str, Any] = {}
    if backend == "asyncio":
        options["use_uvloop"] = uvloop_available() if use_uvloop is None else use_uvloop
    return anyio.run(main, *args, backend=backend, backend_options=options)
