"""The documentation's promises that a strict mkdocs build cannot check by itself.

- Every public name is in the API reference, with an example (from its docstring or next to
  it on the page).
- The snippets the pages include exist and are run by a test (the files under examples/).
- The programs of the how-to guides print what their pages say.
- Every page is in the navigation, and the navigation names no missing page.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING

import pytest
from test_examples import EXAMPLES, ROOT, run_example

import actors

if TYPE_CHECKING:
    from pathlib import Path

DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
INCLUDE = re.compile(r'^\s*--8<-- "([^":]+)(?::([\w-]+))?"\s*$', re.MULTILINE)


def reference_sections() -> dict[str, str]:
    """``name -> the markdown that follows its ::: directive, up to the next one or heading``."""
    text = REFERENCE.read_text(encoding="utf-8")
    parts = re.split(r"^::: actors\.(\w+)\s*$", text, flags=re.MULTILINE)
    sections: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        assert name not in sections, f"{name} is rendered twice in reference.md"
        sections[name] = re.split(r"^#", body, maxsplit=1, flags=re.MULTILINE)[0]
    return sections


def test_reference_renders_every_public_name() -> None:
    sections = reference_sections()
    missing = [name for name in actors.__all__ if name not in sections]
    assert not missing, f"add `::: actors.NAME` to docs/reference.md for: {missing}"
    unknown = [name for name in sections if name not in actors.__all__]
    assert not unknown, f"reference.md renders names that are not public: {unknown}"


def test_reference_has_an_example_for_every_public_name() -> None:
    without: list[str] = []
    for name, section in reference_sections().items():
        value = getattr(actors, name)
        doc = inspect.getdoc(value) if callable(value) else None
        if "Example" not in (doc or "") and "```python" not in section:
            without.append(name)
    assert not without, f"no example in the docstring or in reference.md for: {without}"


def included_snippets() -> list[tuple[str, Path, str | None]]:
    found: list[tuple[str, Path, str | None]] = []
    for page in sorted(DOCS.rglob("*.md")):
        for match in INCLUDE.finditer(page.read_text(encoding="utf-8")):
            found.append((str(page.relative_to(ROOT)), ROOT / match[1], match[2]))
    return found


def test_snippets_exist_and_are_examples() -> None:
    snippets = included_snippets()
    assert snippets
    for page, path, section in snippets:
        assert path.is_file(), f"{page} includes {path}, which does not exist"
        # Docs only show code that the test suite runs: the programs under examples/.
        assert path.is_relative_to(EXAMPLES), f"{page} includes {path}, outside examples/"
        if section is not None:
            text = path.read_text(encoding="utf-8")
            assert f"# --8<-- [start:{section}]" in text, f"{page}: no section {section!r}"
            assert f"# --8<-- [end:{section}]" in text, f"{page}: section {section!r} never ends"


def test_every_included_example_is_run_by_a_test() -> None:
    tests = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for page, path, _ in included_snippets():
        relative = path.relative_to(EXAMPLES).as_posix()
        stem = path.stem
        assert f'"{relative}"' in tests or f'"{stem}"' in tests, (
            f"{page} includes {relative}, which no test runs"
        )


def test_tutorial_code_is_all_included() -> None:
    # Every python block of the tutorial comes from a tested file, none is typed inline.
    text = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert blocks
    for block in blocks:
        assert INCLUDE.fullmatch(block.strip()), f"inline code in tutorial.md:\n{block}"


def nav_pages(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_navigation_lists_every_page() -> None:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = re.findall(r"^\s+- (?:[^:\n]+: )?([\w/.-]+\.md)\s*$", text, re.MULTILINE)
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


# -- the programs of the how-to guides print what the pages say -----------------------------


def test_howto_trio() -> None:
    assert run_example("howto/trio_app.py").splitlines() == [
        "asked from three trio tasks: ['A', 'B', 'C']",
        "slow ask cancelled by trio: True",
        "blocking_ask from a worker thread: THREAD",
        "host thread: MainThread",
        "done",
    ]


def test_howto_blocking() -> None:
    assert run_example("howto/blocking.py").splitlines() == [
        "EUR rate: 1.08",
        "primes below 100,000: 9,592",
        "primes below 200,000: 17,984",
    ]


@pytest.mark.parametrize("name", ["howto/pykka_before.py", "howto/pykka_after.py"])
def test_howto_pykka_side_by_side(name: str) -> None:
    assert run_example(name).splitlines() == ["total: 15"]


def test_howto_pykka_threads() -> None:
    assert run_example("howto/pykka_threads.py").splitlines() == ["total: 10"]


def test_pattern_heartbeat() -> None:
    lines = run_example("patterns/heartbeat.py").splitlines()
    assert lines[:4] == [
        "t=3 alive: True",
        "t=4 alive: True",
        "t=5 alive: False",
        "samples by t=5: 5",
    ]
    assert lines[-2:] == ["loops: [1, 1]", "json bytes: True"]
    assert lines[4].startswith("/user/sampler: received=")
