"""Clean-up that runs when a SparkContext stops: the embedded switch, temporary storage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("inc_spark")


def on_stop(sc: Any, callback: Callable[[], None]) -> None:
    """Call ``callback`` once, after ``sc.stop()`` (also when stopped through its session).

    >>> class Context:
    ...     def stop(self): print("stopped")
    >>> sc = Context()
    >>> on_stop(sc, lambda: print("cleaned"))
    >>> sc.stop()
    stopped
    cleaned
    >>> sc.stop()
    stopped
    """
    callbacks: list[Callable[[], None]] | None = getattr(sc, "_inc_spark_on_stop", None)
    if callbacks is None:
        callbacks = sc._inc_spark_on_stop = []
        original = sc.stop

        def stop() -> None:
            try:
                original()
            finally:
                while callbacks:
                    try:
                        callbacks.pop(0)()
                    except Exception:  # one failed clean-up must not skip the others
                        log.exception("inc-spark: clean-up at SparkContext stop failed")

        sc.stop = stop
    callbacks.append(callback)
