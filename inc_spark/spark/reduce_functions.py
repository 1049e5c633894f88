"""Which reduce functions the switch can run: recognised by identity or by their bytecode, never
by calling them.

A plain function (lambda or ``def``) is the switch's sum, min or max when its code is that of
``lambda a, b: a + b``, ``lambda a, b: min(a, b)`` or ``lambda a, b: max(a, b)`` (parameter names
and docstring aside), it has no closure, no defaults and no other parameters, and the names it
reads resolve to the builtins ``min`` / ``max``. ``b + a`` is not ``a + b`` (str, lists and
tuples concatenate in order), nor is ``operator.iadd`` (in place: numpy arrays keep their dtype).

>>> import operator
>>> switch_op_of(operator.add), switch_op_of(min), switch_op_of(lambda x, y: x + y)
('sum', 'min', 'sum')
>>> switch_op_of(lambda a, b: b + a), switch_op_of(lambda a, b=1: a + b)
(None, None)
"""

from __future__ import annotations

import builtins
import inspect
import operator
from collections.abc import Callable
from types import CodeType, FunctionType
from typing import Any

#: function -> switch operation, for functions recognised by identity.
SWITCH_OPS: dict[Any, str] = {
    operator.add: "sum",
    min: "min",
    max: "max",
}


#: code flags of functions that are not a plain two-argument call (``*args``, generators, ...)
_NOT_PLAIN = (
    inspect.CO_VARARGS
    | inspect.CO_VARKEYWORDS
    | inspect.CO_GENERATOR
    | inspect.CO_COROUTINE
    | inspect.CO_ASYNC_GENERATOR
    | inspect.CO_ITERABLE_COROUTINE
)


def _code(func: Callable[[Any, Any], Any]) -> CodeType:
    return func.__code__  # type: ignore[attr-defined]


#: the code of each recognised lambda spelling -> (switch operation, the builtin its names read)
_SPELLINGS: list[tuple[CodeType, str, Any]] = [
    (_code(lambda a, b: a + b), "sum", None),
    (_code(lambda a, b: min(a, b)), "min", builtins.min),
    (_code(lambda a, b: max(a, b)), "max", builtins.max),
]


def _resolves_to(func: FunctionType, name: str, target: Any) -> bool:
    """Whether the global ``name`` read by ``func`` is ``target`` (a global shadows builtins)."""
    if name in func.__globals__:
        return func.__globals__[name] is target
    found = func.__builtins__
    found = found.get(name) if isinstance(found, dict) else getattr(found, name, None)
    return found is target


def _op_of_code(func: Any) -> str | None:
    """The switch operation of a plain function whose code is a recognised spelling."""
    if type(func) is not FunctionType:
        return None
    if func.__closure__ or func.__defaults__ or func.__kwdefaults__:
        return None
    code = func.__code__
    for reference, op, builtin in _SPELLINGS:
        if (
            code.co_code == reference.co_code
            and code.co_names == reference.co_names
            and code.co_argcount == 2
            and code.co_kwonlyargcount == 0
            and not code.co_flags & _NOT_PLAIN
            and all(_resolves_to(func, name, builtin) for name in code.co_names)
        ):
            return op
    return None


def switch_op_of(func: Callable[[Any, Any], Any]) -> str | None:
    """'sum', 'min' or 'max' if ``func`` is a function the switch runs, else None."""
    try:
        op = SWITCH_OPS.get(func)
    except TypeError:  # unhashable callable
        return None
    return op if op is not None else _op_of_code(func)


def why_not(func: Callable[[Any, Any], Any]) -> str:
    """The reason a function runs as vanilla reduceByKey, for the log."""
    name = getattr(func, "__qualname__", repr(func))
    return (
        f"reduce function {name} is not one the switch runs: operator.add, min, max, or a "
        "function without closure, defaults or other globals whose body is exactly "
        "a + b, min(a, b) or max(a, b)"
    )
