"""Patch pyspark's RDD class when it loads: add ``inc_reduce_by_key``, wrap ``reduceByKey``.

The wrapper runs vanilla reduceByKey unless ``inc_spark.install()`` was called or the
SparkContext has ``spark.inc.replaceReduceByKey=true``. ``import inc_spark`` activates this; so
does the ``inc_spark_autohook.pth`` file (``make env`` installs it into the project's venv), which
is how the conf key reaches programs that never import inc_spark. Kept tiny: nothing heavy is
imported until ``pyspark`` is.

    inc-spark-autohook install     # write the .pth into this environment
    inc-spark-autohook uninstall
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
import sysconfig
from types import ModuleType

TARGET = "pyspark"  # patch once the whole package has loaded
PTH_NAME = "inc_spark_autohook.pth"


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> object:
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_wrap(module: ModuleType) -> None:
            exec_module(module)
            _import_hook()

        spec.loader.exec_module = exec_then_wrap  # type: ignore[method-assign]
        return spec


def _import_hook() -> None:
    """Importing inc_spark.spark.hook patches RDD; if it is being imported right now, it will."""
    if "inc_spark.spark.hook" not in sys.modules:
        importlib.import_module("inc_spark.spark.hook")


def activate() -> None:
    if TARGET in sys.modules:
        _import_hook()
    elif not any(isinstance(f, _PatchAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchAfterImport())


def _pth_path() -> str:
    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["install"]:
        with open(_pth_path(), "w") as f:
            f.write("import inc_spark\n")
        print(f"installed {_pth_path()}")
        return 0
    if argv == ["uninstall"]:
        if os.path.exists(_pth_path()):
            os.remove(_pth_path())
        return 0
    print("usage: inc-spark-autohook install|uninstall", file=sys.stderr)
    return 2
