"""Every exception the project defines survives pickling, so Spark executors and process pools
report it instead of failing to unpickle it (a pool then hangs for ever)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest

import inc_spark
import switch_dataplane
from switch_dataplane import wire

#: a sample argument for each constructor annotation an exception of the project uses
SAMPLES = {
    "str": "what went wrong",
    "int": 0x1234ABCD,
    "wire.Status": wire.Status.STALE_EPOCH,
    "tuple[str, int]": ("10.0.0.7", 9900),
}


def project_exceptions() -> list[type[BaseException]]:
    found = set()
    for package in (inc_spark, switch_dataplane):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            loaded = importlib.import_module(module.name)
            for _, cls in inspect.getmembers(loaded, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == module.name:
                    found.add(cls)
    return sorted(found, key=lambda cls: cls.__qualname__)


def sample_args(cls: type[BaseException]) -> tuple:
    if "__init__" not in vars(cls) and not any(
        "__init__" in vars(base) for base in cls.__mro__[1:] if base.__module__ != "builtins"
    ):
        return ("what went wrong",)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    missing = [p.annotation for p in parameters if p.annotation not in SAMPLES]
    assert not missing, f"add a sample for {missing} ({cls.__qualname__}) to SAMPLES"
    return tuple(SAMPLES[p.annotation] for p in parameters)


EXCEPTIONS = project_exceptions()


def test_the_project_defines_exceptions() -> None:
    names = {cls.__name__ for cls in EXCEPTIONS}
    assert {
        "ControlRequestFailed",
        "ExchangeRejected",
        "MemoryRefused",
        "MemoryWaitExpired",
        "SwitchRestarted",
    } <= names


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda cls: cls.__qualname__)
def test_pickles_to_an_equal_exception(cls: type[BaseException]) -> None:
    error = cls(*sample_args(cls))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is cls
    assert str(again) == str(error) and again.args == error.args
    assert vars(again) == vars(error)
