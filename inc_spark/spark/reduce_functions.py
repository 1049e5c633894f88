"""Which reduce functions the switch can run, recognised by identity (never by probing).

>>> import operator
>>> switch_op_of(operator.add), switch_op_of(min), switch_op_of(lambda a, b: a + b)
('sum', 'min', None)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

#: function -> switch operation. Equivalent spellings of the same operation are listed here.
SWITCH_OPS: dict[Any, str] = {
    operator.add: "sum",
    operator.iadd: "sum",
    int.__add__: "sum",
    min: "min",
    max: "max",
}


def switch_op_of(func: Callable[[Any, Any], Any]) -> str | None:
    """'sum', 'min' or 'max' if ``func`` is a function the switch runs, else None."""
    try:
        return SWITCH_OPS.get(func)
    except TypeError:  # unhashable callable
        return None


def why_not(func: Callable[[Any, Any], Any]) -> str:
    """The reason a function runs as vanilla reduceByKey, for the log."""
    name = getattr(func, "__qualname__", repr(func))
    return (
        f"reduce function {name} is not one the switch runs (operator.add, min, max); "
        "a lambda cannot be recognised, pass operator.add instead of lambda a, b: a + b"
    )
