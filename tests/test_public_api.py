"""The public surface: `actors.__all__`, docstrings, and the exception tree."""

from __future__ import annotations

import ast
import inspect
import itertools
import pkgutil
import types
from pathlib import Path

import pytest

import actors


def test_all_is_a_tuple_of_unique_names() -> None:
    assert isinstance(actors.__all__, tuple)
    assert len(set(actors.__all__)) == len(actors.__all__)


def test_nothing_private_is_exported() -> None:
    assert [name for name in actors.__all__ if name.startswith("_")] == []


@pytest.mark.parametrize("name", actors.__all__)
def test_every_exported_name_exists(name: str) -> None:
    assert hasattr(actors, name)


def test_every_public_attribute_is_exported() -> None:
    """Whatever `import actors` shows without an underscore is in `__all__` (no leaks)."""
    leaked = [
        name
        for name, value in vars(actors).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # `from __future__ import annotations`
        and name not in actors.__all__
    ]
    assert leaked == []


def _attribute_docstrings() -> dict[str, str]:
    """Docstrings of module-level constants (a string right after the assignment)."""
    found: dict[str, str] = {}
    package = Path(actors.__file__).parent
    for module in pkgutil.iter_modules([str(package)]):
        if module.ispkg:
            continue  # subpackages (actors.cluster) export nothing through actors.__all__
        tree = ast.parse((package / f"{module.name}.py").read_text())
        body = tree.body
        for statement, following in itertools.pairwise(body):
            target: ast.expr | None = None
            if isinstance(statement, ast.AnnAssign):
                target = statement.target
            elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
            if (
                isinstance(target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                found[target.id] = following.value.value
    return found


@pytest.mark.parametrize("name", actors.__all__)
def test_every_exported_name_has_a_docstring(name: str) -> None:
    value = getattr(actors, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert doc, f"{name} has no docstring of its own"
        assert doc.strip(), f"{name} has an empty docstring"
        assert value.__module__.startswith("actors"), f"{name} is re-exported from elsewhere"
    else:
        doc = _attribute_docstrings().get(name)
        assert doc, f"constant {name} has no docstring after its assignment"
        assert doc.strip(), f"constant {name} has an empty docstring"


def test_public_async_methods_document_cancellation() -> None:
    """House style: every public coroutine method says what cancellation does."""
    missing: list[str] = []
    for name in actors.__all__:
        value = getattr(actors, name)
        if not inspect.isclass(value):
            continue
        for attr, member in vars(value).items():
            if attr.startswith("_") or not inspect.iscoroutinefunction(member):
                continue
            if value is actors.Actor:  # hooks users override, not calls they make
                continue
            if "Cancellation:" not in (member.__doc__ or ""):
                missing.append(f"{name}.{attr}")
    assert missing == []


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (actors.MailboxFull, ()),
        (actors.ActorStopped, ()),
        (actors.AskTimeout, (TimeoutError,)),
        (actors.SendTimeout, (TimeoutError,)),
        (actors.DeadlockError, (RuntimeError,)),
        (actors.NotSendableError, (TypeError,)),
        (actors.MessageTypeError, (TypeError,)),
        (actors.DuplicateName, (ValueError,)),
        (actors.SystemNotRunning, ()),
        (actors.SupervisionError, ()),
        (actors.ActorNotFound, (LookupError,)),
        (actors.RemoteError, ()),
        (actors.StreamError, ()),
        (actors.StreamRequestError, (actors.StreamError, TypeError)),
        (actors.StreamClosed, (actors.StreamError, RuntimeError)),
        (actors.StreamNotSupported, (actors.StreamError, NotImplementedError)),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_error_tree_is_rooted_at_actor_error(
    error: type[Exception], bases: tuple[type, ...]
) -> None:
    assert issubclass(error, actors.ActorError)
    assert issubclass(actors.ActorError, Exception)
    for base in bases:
        assert issubclass(error, base)


def test_every_exported_error_is_in_the_tree() -> None:
    errors = [
        value
        for value in (getattr(actors, name) for name in actors.__all__)
        if inspect.isclass(value) and issubclass(value, BaseException)
    ]
    assert {e.__name__ for e in errors} == {
        "ActorError",
        "ActorNotFound",
        "ActorStopped",
        "AskTimeout",
        "DeadlockError",
        "DuplicateName",
        "MailboxFull",
        "MessageTypeError",
        "NotSendableError",
        "RemoteError",
        "SendTimeout",
        "SupervisionError",
        "SystemNotRunning",
        "SyncHandlerError",
        "StashFull",
        "StateMachineError",
        "UnknownState",
        "UnhandledMessage",
        "PostponeOverflow",
        "InvalidStateMachine",
        "StreamError",
        "StreamRequestError",
        "StreamClosed",
        "StreamNotSupported",
    }


@pytest.mark.parametrize("error", [actors.MailboxFull, actors.ActorStopped, actors.SendTimeout])
def test_undelivered_errors_hand_the_message_back(error: type[actors.ActorError]) -> None:
    message = ("payload", 1)
    raised = error("not delivered", message)  # type: ignore[call-arg]
    assert raised.message is message  # type: ignore[attr-defined]
    assert str(raised) == "not delivered"
