"""Compiled kernels are cached per wire layout: a layout change never loads a stale kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numba

from switch_dataplane import kernel_cache


def test_kernels_cache_under_the_current_layout() -> None:
    assert Path(numba.config.CACHE_DIR).name == f"layout-{kernel_cache.layout_tag()}"


def test_a_changed_layout_source_gets_another_cache(tmp_path: Path, monkeypatch) -> None:
    for name in kernel_cache.LAYOUT_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(kernel_cache.ROOT / name, tmp_path / name)
    monkeypatch.setattr(kernel_cache, "ROOT", tmp_path)
    before = kernel_cache.layout_tag()
    wire = tmp_path / "switch_dataplane/wire.py"
    wire.write_text(wire.read_text() + "\nHEADER_BYTES = 48\n")
    assert kernel_cache.layout_tag() != before
