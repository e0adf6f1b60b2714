"""Test kit for code built on `actors`: probes, expectations, state inspection, time control.

(Placeholder; the implementation lands with issue 4.)
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
