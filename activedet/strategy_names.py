"""The names of the registered query strategies, read without importing the methods (standard library only).

``activedet.strategies`` imports every method module, and with them torch; checking a strategy name typed on the
command line should not cost that. :func:`strategy_names` reads the names from the source instead: every
``@register("name", ...)`` decorator on a function or class of a module directly in the strategies package or in
a method's package (``activedet/methods/<method>/``).
When the registry is already loaded it also returns the names registered at run time (a method module outside the
package, imported by the user).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

__all__ = ["strategy_names"]

ROOT = Path(__file__).resolve().parent
#: the modules whose decorators register the built-in methods
SOURCES = ("strategies/*.py", "methods/*/*.py")


def strategy_names() -> tuple[str, ...]:
    """The registered strategy names, sorted; the same names as ``activedet.strategies.STRATEGIES``."""
    paths = sorted(path for pattern in SOURCES for path in ROOT.glob(pattern))
    names = {name for path in paths for name in _registered_in(path)}
    loaded = sys.modules.get("activedet.strategies.registry")
    if loaded is not None:
        names.update(loaded.METHODS)
    return tuple(sorted(names))


def _registered_in(path: Path) -> list[str]:
    """The literal names of the ``register`` decorators (``@register("x")`` or ``@registry.register("x")``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for decorator in node.decorator_list:
            if not (isinstance(decorator, ast.Call) and decorator.args):
                continue
            func = decorator.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            first = decorator.args[0]
            if called == "register" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
    return found
