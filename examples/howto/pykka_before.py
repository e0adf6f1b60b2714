"""How-to, migrating from pykka: the pykka version of a small counter.

Run it with ``python3 dev.py run examples/howto/pykka_before.py`` (pykka is in the ``bench``
extra, which ``dev.py`` installs).
"""

from __future__ import annotations

from typing import Any

# --8<-- [start:all]
import pykka


class Counter(pykka.ThreadingActor):
    def __init__(self, start: int) -> None:
        super().__init__()
        self.total = start

    def on_receive(self, message: Any) -> Any:
        match message:
            case {"add": int(n)}:
                self.total += n
            case "get":
                return self.total
        return None


def main() -> None:
    counter = Counter.start(10)  # a thread per actor
    counter.tell({"add": 5})
    print("total:", counter.ask("get", timeout=5))
    pykka.ActorRegistry.stop_all()


if __name__ == "__main__":
    main()
# --8<-- [end:all]
