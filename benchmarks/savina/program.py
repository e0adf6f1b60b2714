"""What a Savina program declares: its main behaviour, its sizes, its check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..portable import Behaviour

__all__ = ("Program",)


@dataclass(frozen=True)
class Program:
    """One benchmark program.

    ``main(n)`` is built by the driver and sent `START`; the run ends when a behaviour calls
    ``ctx.finish(result)``. ``check(n, result)`` returns what is wrong with the result, or
    None. ``ops(n)`` is what the rate counts (messages, or actors created, per ``unit``).
    ``size`` is the full-run size for a fast implementation; `size_for` scales it for a
    slower one (so that every implementation runs for a comparable time) and for --quick.
    """

    name: str
    title: str
    main: type[Behaviour]
    size: int
    ops: Callable[[int], int]
    expected: Callable[[int], Any]
    unit: str = "msgs/s"
    minimum: int = 10
    scale_size: Callable[[int, float], int] | None = None

    def check(self, n: int, result: object) -> str | None:
        want = self.expected(n)
        if result != want:
            return f"{self.name}(n={n}) returned {result!r}, expected {want!r}"
        return None

    def size_for(self, scale: float) -> int:
        """The size for an implementation ``scale`` times as fast as the reference."""
        if self.scale_size is not None:
            return self.scale_size(self.size, scale)
        return max(self.minimum, _round(self.size * scale))


def _round(n: float) -> int:
    value = max(1, int(n))
    digits = 10 ** max(0, len(str(value)) - 2)
    return max(1, round(value / digits)) * digits


def log_scaled(size: int, scale: float, base: float) -> int:
    """For programs whose work grows like ``base ** n``: shrink n, not the work."""
    return max(2, size + round(math.log(scale) / math.log(base)))
