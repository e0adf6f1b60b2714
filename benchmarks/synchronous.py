"""The Savina behaviours as synchronous handlers, for `actors`' ``def receive`` rows.

The programs are written once, against `portable` (``async def receive``, ``await
ref.send(m)``, ``await self.ctx.spawn(...)``), and none of them ever needs to wait: the
synchronous peers (the callback actor, pykka, thespian) run every handler to completion
without suspending. So the synchronous form is the same source with the waiting taken
out, derived mechanically rather than kept as a second copy: `synchronous` recompiles a
behaviour's ``async def`` methods as plain ``def``s, with every ``await x`` becoming
``x``, and every ``.send`` becoming ``.try_send`` (the non-waiting send of an
`actors.ActorRef`). ``self.ctx.spawn`` is then the context's synchronous spawn
(`actors.Actor.spawn_soon`). What runs is exactly what a user would write by hand: a
``def receive`` calling ``try_send``.

``try_send`` does not wait for room, so the driver gives these actors a mailbox large
enough for the largest fan-out of a program (as the peers' unbounded queues are).
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .portable import Behaviour

__all__ = ("synchronous",)

_made: dict[type, type] = {}


class _Unwait(ast.NodeTransformer):
    """``async def`` -> ``def``, ``await x`` -> ``x``, ``.send`` -> ``.try_send``."""

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        plain = ast.FunctionDef(
            name=node.name,
            args=node.args,
            body=node.body,
            decorator_list=node.decorator_list,
            returns=node.returns,
            type_comment=node.type_comment,
            type_params=getattr(node, "type_params", []),
        )
        return ast.copy_location(plain, node)

    def visit_Await(self, node: ast.Await) -> ast.expr:
        inner: ast.expr = self.visit(node.value)
        return inner

    def visit_Attribute(self, node: ast.Attribute) -> ast.Attribute:
        self.generic_visit(node)
        if node.attr == "send":
            node.attr = "try_send"
        return node


def synchronous(cls: type[Behaviour]) -> type[Behaviour]:
    """A subclass of ``cls`` whose ``async def`` methods are synchronous (see the module)."""
    made = _made.get(cls)
    if made is not None:
        return made
    module = sys.modules[cls.__module__]
    namespace: dict[str, Any] = {}
    for name, value in vars(cls).items():
        if not inspect.iscoroutinefunction(value):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(value)))
        tree = ast.fix_missing_locations(_Unwait().visit(tree))
        code = compile(tree, inspect.getfile(value), "exec")
        scope: dict[str, Any] = {}
        exec(code, vars(module), scope)  # the program's own module: its names, its messages
        namespace[name] = scope[name]
    made = types.new_class(cls.__name__, (cls,), exec_body=lambda ns: ns.update(namespace))
    _made[cls] = made
    return made
