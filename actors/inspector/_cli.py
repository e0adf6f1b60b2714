"""``python -m actors inspect URL`` and ``python -m actors top URL``: the inspector from a shell.

Standard library only (urllib, ANSI escapes, termios), so that they run on a machine with
nothing but Python and this package, against an inspector served by another process:

- ``inspect URL`` checks that an inspector answers at URL, prints where its page is and
  opens it in a browser when there is one (``--no-browser``: print only).
- ``top URL`` redraws a table like ``top`` every second from the same JSON endpoints: the
  node's counts, its loops, the other nodes of its cluster, the latest dead letters, and the
  busiest actors. Keys: ``q`` quits, ``r``/``d``/``f``/``s``
  rank by rate, depth, failures, restarts. Ctrl-C quits too; the terminal is restored.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ("inspect_main", "top_main")

_ORDERS: Final = {"r": "rate", "d": "depth", "f": "failed", "s": "restarts"}
_TIMEOUT: Final = 5.0  # seconds for one request to the inspector
_LETTERS_SHOWN: Final = 5  # the latest dead letters on the screen


class InspectorUnreachable(Exception):
    """The inspector did not answer (or answered with an error)."""


def base_url(url: str) -> str:
    """``URL`` with a scheme and a trailing slash, so that ``api/...`` resolves below it."""
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith("/") else url + "/"


def fetch(base: str, endpoint: str, **params: object) -> Any:
    """GET ``base + endpoint`` and decode its JSON."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = urllib.parse.urljoin(base, endpoint) + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read()).get("error", error.reason)
        except ValueError:
            detail = error.reason
        raise InspectorUnreachable(f"{url}: {error.code} {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise InspectorUnreachable(f"{url}: {reason}") from None


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    """The argument parser of ``python -m actors COMMAND URL``."""
    parser = argparse.ArgumentParser(prog=f"python -m actors {command}", description=description)
    parser.add_argument(
        "url", help="where the inspector is mounted, e.g. http://127.0.0.1:8000/inspector/"
    )
    return parser


# -- inspect ---------------------------------------------------------------------------------


def inspect_main(argv: list[str]) -> int:
    """``python -m actors inspect URL [--no-browser]``; returns the exit status."""
    parser = _parser("inspect", "Check the inspector at URL, print where its page is, open it.")
    parser.add_argument("--no-browser", action="store_true", help="print the address only")
    options = parser.parse_args(argv)
    base = base_url(options.url)
    try:
        meta = fetch(base, "api/meta")
        overview = fetch(base, "api/overview")
    except InspectorUnreachable as error:
        print(f"python -m actors inspect: no inspector answers at {base}: {error}", file=sys.stderr)
        return 1
    node = overview["nodes"][0]
    actions = "actions allowed" if meta.get("allow_actions") else "read-only"
    print(f"actors inspector of {meta['node']!r} ({node['actors']:,} actors, {actions}): {base}")
    print(f"terminal view: python -m actors top {base}")
    if not options.no_browser and webbrowser.open(base):
        print("opened in your browser")
    return 0


# -- top -------------------------------------------------------------------------------------


def _number(value: object, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _node_lines(nodes: list[Any]) -> list[str]:
    """The nodes of a cluster, one line each (nothing for a system alone)."""
    if len(nodes) < 2:
        return []
    lines = [
        "",
        f" {'NODE':<16} {'ACTORS':>9} {'LOOPS':>5} {'PUBLIC':>6} {'GROUPS':>6} "
        f"{'DURABLE':>7}  STATE",
    ]
    for node in nodes:
        if node["local"]:
            state = "this node"
        else:
            state = f"answered {node['age']:.1f} s ago"
            if node["error"]:
                state = f"{node['error']} ({state})"
        lines.append(
            f" {node['name']:<16} {_number(node['actors']):>9} {len(node['loops']):>5} "
            f"{len(node['public']):>6} {len(node['groups']):>6} {len(node['durable']):>7}  {state}"
        )
    return lines


def _letter_lines(letters: list[Any]) -> list[str]:
    """The latest dead letters, newest last."""
    if not letters:
        return []
    lines = ["", " DEAD LETTERS (latest)"]
    for letter in letters:
        at = time.strftime("%H:%M:%S", time.localtime(letter["at"]))
        lines.append(
            f"  #{letter['seq']} {at} {letter['reason']} -> {letter['recipient']}: "
            f"{letter['message']}"
        )
    return lines


def render(
    overview: Any, top: Any, by: str, width: int, height: int, letters: list[Any] | None = None
) -> list[str]:
    """The lines of one screen (without escapes), cut to ``width`` and ``height``."""
    node = overview["nodes"][0]
    state = "running" if node["running"] else "stopped"
    lines = [
        f"actors top - {node['name']} ({state})  actors {node['actors']:,}  "
        f"dead letters {node['dead_letters']:,}  pools {node['pools']}  "
        f"subscriptions {node['subscriptions']}   [{time.strftime('%H:%M:%S')}]",
        "",
        f"{'LOOP':>5} {'ACTORS':>9} {'CPU%':>6} {'LAG ms':>8} {'MAX ms':>8}  STATE",
    ]
    for loop in node["loops"]:
        lag = loop["lag_seconds"]
        lines.append(
            f"{loop['loop']:>5} {_number(loop['actors']):>9} {_number(loop['cpu_percent'], 1):>6} "
            f"{_number(None if lag is None else lag * 1000, 2):>8} "
            f"{_number(loop['max_lag_seconds'] * 1000, 2):>8}  "
            f"{'BLOCKED' if loop['blocked'] else 'turning'}"
        )
    for warning in node["warnings"][-3:]:
        lines.append(f"  ! {warning['message']}")
    lines += _node_lines(overview["nodes"])
    lines += _letter_lines(letters or [])
    lines += [
        "",
        f"{'MAILBOX':>9} {'HIGH':>7} {'MSGS/S':>9} {'FAILED':>7} {'RESTARTS':>8}  "
        f"{'STATE':<10} {'LOOP':>4}  ACTOR (by {by})",
    ]
    for actor in top:
        lines.append(
            f"{_number(actor['mailbox_depth']):>9} {_number(actor['mailbox_high_water']):>7} "
            f"{_number(actor['rate'], 1):>9} {_number(actor['failed']):>7} "
            f"{_number(actor['restarts']):>8}  {actor['status']:<10} {actor['loop']:>4}  "
            f"{actor['path']} ({actor['type']})"
        )
    lines.append("")
    lines.append("q quit   r/d/f/s rank by rate/depth/failures/restarts")
    return [line[:width] for line in lines[:height]]


@contextlib.contextmanager
def _keyboard(stream: TextIO) -> Generator[bool]:
    """Single keys without Enter while inside (True), if ``stream`` is a terminal."""
    if not stream.isatty():
        yield False
        return
    try:
        import termios
        import tty
    except ImportError:  # Windows: no keys, Ctrl-C still quits
        yield False
        return
    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _key(stream: TextIO, keys: bool, timeout: float) -> str | None:
    """A key pressed within ``timeout`` seconds, or None (just waits without a keyboard)."""
    if not keys:
        time.sleep(timeout)
        return None
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    data = os.read(stream.fileno(), 32)
    if not data:  # end of input: treat it as quitting
        return "q"
    return data.decode(errors="replace")[-1:]


def top_main(argv: list[str]) -> int:
    """``python -m actors top URL [--by ...] [--limit N] [--interval S]``; the exit status."""
    parser = _parser("top", "A refreshing table of the inspector at URL: loops, busiest actors.")
    parser.add_argument("--by", choices=sorted(_ORDERS.values()), default="rate")
    parser.add_argument("--limit", type=int, default=20, help="actors shown (1 to 500)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between redraws (>= 1)"
    )
    parser.add_argument("--once", action="store_true", help="print one table and exit")
    options = parser.parse_args(argv)
    if not 1 <= options.limit <= 500:
        parser.error("--limit must be from 1 to 500")
    if options.interval < 1.0:
        parser.error("--interval must be at least 1.0 second")
    base = base_url(options.url)
    by: str = options.by
    out = sys.stdout
    screen = out.isatty() and not options.once
    letters: list[Any] = []  # the latest dead letters seen, newest last
    try:
        with _keyboard(sys.stdin) as keys:
            if screen:
                out.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
            try:
                while True:
                    size = shutil.get_terminal_size()
                    try:
                        overview = fetch(base, "api/overview")
                        top = fetch(base, "api/top", by=by, limit=options.limit)
                        after = letters[-1]["seq"] if letters else 0
                        letters += fetch(base, "api/dead-letters", after=after)["letters"]
                        del letters[:-_LETTERS_SHOWN]
                        lines = render(overview, top, by, size.columns, size.lines - 1, letters)
                    except InspectorUnreachable as error:
                        lines = [f"actors top: no answer from {base}", str(error)[: size.columns]]
                        if options.once:
                            print("\n".join(lines), file=sys.stderr)
                            return 1
                    if screen:
                        out.write("\x1b[H\x1b[2J" + "\n".join(lines))
                    else:
                        out.write("\n".join(lines) + "\n")
                    out.flush()
                    if options.once:
                        return 0
                    key = _key(sys.stdin, keys, options.interval)
                    if key in ("q", "Q"):
                        return 0
                    if key is not None and key.lower() in _ORDERS:
                        by = _ORDERS[key.lower()]
            finally:
                if screen:
                    out.write("\x1b[?25h\x1b[?1049l")
                    out.flush()
    except KeyboardInterrupt:
        return 0
