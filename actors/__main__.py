"""``python -m actors COMMAND``: the benchmark suite, and the inspector from a shell.

``bench`` runs the benchmark suite of a repository checkout; ``inspect URL`` and ``top URL``
talk to a live inspector (`actors.inspector`) served by another process (see
`actors.inspector._cli`).

The suite (the ``benchmarks`` package) lives next to ``actors/`` in the repository and is
not part of the installed wheel, so this entry point only delegates to it. It finds the
package on ``sys.path`` or, failing that, in the checkout that this ``actors`` package was
imported from.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Callable

USAGE = """usage: python -m actors bench [--quick] [--only NAME] [--json PATH] [--plot PATH]
       python -m actors inspect URL [--no-browser]
       python -m actors top URL [--by rate|depth|failed|restarts] [--limit N] [--once]

commands:
  bench    run the benchmark suite (benchmarks/ in a checkout of the repository);
           `python -m actors bench --help` lists its options
  inspect  check the live inspector mounted at URL, print where it is, open it
  top      a refreshing table of the inspector at URL, like top (q quits)
"""


def _bench_main() -> Callable[[list[str]], int] | str:
    """The suite's ``main``, or why it cannot be imported."""
    checkout = Path(__file__).resolve().parent.parent
    try:
        module = importlib.import_module("benchmarks.__main__")
    except ModuleNotFoundError as error:
        if error.name not in ("benchmarks", "benchmarks.__main__"):
            return f"the benchmark suite needs {error.name!r}: pip install '.[bench]' ({error})"
        if not (checkout / "benchmarks" / "__main__.py").is_file():
            return (
                "the benchmark suite is not importable: it lives in benchmarks/ of a checkout "
                "of the actors repository, not in the installed package; run this from a "
                "clone (python3 dev.py bench ...)"
            )
        sys.path.insert(0, str(checkout))
        try:
            module = importlib.import_module("benchmarks.__main__")
        except ModuleNotFoundError as inner:
            return f"the benchmark suite needs {inner.name!r}: pip install '.[bench]' ({inner})"
    return cast("Callable[[list[str]], int]", module.main)


def main(argv: list[str]) -> int:
    """Dispatch ``python -m actors COMMAND ...``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in ("inspect", "top"):
        from .inspector._cli import inspect_main, top_main

        return inspect_main(rest) if command == "inspect" else top_main(rest)
    if command != "bench":
        print(f"python -m actors: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    bench = _bench_main()
    if isinstance(bench, str):
        print(f"python -m actors bench: {bench}", file=sys.stderr)
        return 2
    return bench(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
