"""The Savina programs (Imam and Sarkar, "Savina: an actor benchmark suite", AGERE 2014).

One module per program, each written once against `benchmarks.portable` and run unchanged on
every implementation. Each program checks its own result (`Program.check`): a wrong answer
fails the run. Sizes follow Savina's shape, scaled down for Python.
"""

from __future__ import annotations

from typing import Final

from . import (
    bank,
    big,
    chameneos,
    concdict,
    counting,
    fibonacci,
    fjcreation,
    fjthroughput,
    pingpong,
    threadring,
)
from .program import Program

__all__ = ("PROGRAMS", "Program")

PROGRAMS: Final = tuple(
    module.PROGRAM
    for module in (
        pingpong,
        counting,
        threadring,
        fjthroughput,
        fjcreation,
        fibonacci,
        chameneos,
        big,
        bank,
        concdict,
    )
)
