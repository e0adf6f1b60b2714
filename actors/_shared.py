"""`Shared`: read-mostly state that many actors read and few write (the RwLock pattern).

(Placeholder with the public signatures; the implementation lands with issue 4.)
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ("Shared",)

T = TypeVar("T")


class Shared(Generic[T]):
    """An immutable value that readers get without a lock (not implemented yet).

    Example:
        ```python
        config = actors.Shared(Config(limit=10))
        ```
    """
