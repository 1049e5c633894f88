"""When the host path's merge order can change a result: vanilla ``reduceByKey`` folds each key's
values in the order they come (partition by partition, in local order within one), keeping the
first of equal keys; the switch combines Python ints in any order, so an entry merged after the
switch's may differ from vanilla's fold in its key's type or, on ties, its value's type.

Host-path entries alone keep vanilla's order (each sender folds its own in order, and merges take
the senders in partition order); only their meeting with a travelled int matters. Sums of the
numeric types below are order-free up to float rounding (their result type does not depend on the
order); a min or max is order-free unless a host value ties with (or cannot be ordered against)
the switch's int.

>>> merges_out_of_order("sum", "a", 1.5, 2), merges_out_of_order("min", "a", 2.0, 2)
(False, True)
>>> merges_out_of_order("sum", True, 1, 1)  # vanilla keeps True or 1: whichever came first
True
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

#: value types whose sum with Python ints has the same value (up to float rounding) and type in
#: any order; narrower numpy types are not (an int that fits int64 may not fit int8).
SUM_ORDER_FREE = frozenset({int, bool, float, complex, Fraction, Decimal, np.int64, np.float64})
_EXACT_KEY_TYPES = (str, bytes, int, type(None))


def key_kind(key: Any) -> str:
    """'exact' for a key of the types a travelled key decodes to (str, bytes, int, None, tuples
    of them); 'never' for one no such key equals (a non-integral float, say); else 'maybe': it
    may equal a travelled key of other types (True and 1, 1.0 and 1, (1, True) and (1, 1))."""
    t = type(key)
    if t in _EXACT_KEY_TYPES:
        return "exact"
    if t is tuple:
        kinds = {key_kind(item) for item in key}
        return "never" if "never" in kinds else "maybe" if "maybe" in kinds else "exact"
    if t is float:
        return "maybe" if key.is_integer() else "never"  # NaN and infinities: never
    return "maybe"


def merges_out_of_order(op: str, key: Any, value: Any, switch_value: int) -> bool:
    """Whether merging host entry (key, value) into a travelled entry of an equal key with value
    ``switch_value`` may give other than vanilla's fold in its order."""
    if key_kind(key) != "exact":
        return True
    if op in ("sum", "count"):
        return type(value) not in SUM_ORDER_FREE
    try:
        return not (value < switch_value or switch_value < value)
    except TypeError:
        return True


def may_merge_out_of_order(op: str, key: Any, value: Any) -> bool:
    """Whether a host entry may merge out of order with some travelled int of its key
    (``merges_out_of_order`` for every int it could meet): checked by the senders where the
    switch's entries are not at hand."""
    kind = key_kind(key)
    if kind != "exact":
        return kind == "maybe"
    if op in ("sum", "count"):
        return type(value) not in SUM_ORDER_FREE
    if type(value) is int:
        return False
    if type(value) is float:
        return math.isnan(value) or value.is_integer()
    return True
