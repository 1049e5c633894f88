"""One compile cache per wire layout, for every numba kernel of the project.

numba's on-disk cache (``cache=True``) is keyed by a kernel's own source file, not by the
constants the kernel reads from other modules. When protocol v2 widened the header from 32 to
40 bytes, a kernel whose own file had not changed (the packer's) was loaded from the cache with
32 baked in and failed. So the cache directory is named after the files that define the
constants kernels share (the wire format, the key hashes, the key encoding): a change there
compiles into a directory of its own. ``switch_dataplane/__init__`` applies this before any
kernel is defined (every module with kernels imports from ``switch_dataplane``). A constant one
module's kernel reads from another belongs in one of ``LAYOUT_SOURCES``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

ROOT = Path(__file__).resolve().parent.parent
LAYOUT_SOURCES = (
    "switch_dataplane/wire.py",
    "switch_dataplane/frame_check.py",
    "switch_dataplane/key_hash.py",
    "inc_spark/host/key_codec.py",
)


def layout_tag() -> str:
    """A short digest of the files whose constants kernels share."""
    digest = hashlib.sha256()
    for name in LAYOUT_SOURCES:
        path = ROOT / name
        digest.update(path.read_bytes() if path.is_file() else name.encode())
    return digest.hexdigest()[:12]


def use_layout_cache() -> None:
    """Point numba's cache at ``$NUMBA_CACHE_DIR/layout-TAG`` (default base: the user's cache
    directory), before any ``cache=True`` kernel is defined."""
    base = os.environ.get("NUMBA_CACHE_DIR") or str(Path.home() / ".cache" / "inc-spark-numba")
    numba.config.CACHE_DIR = str(Path(base) / f"layout-{layout_tag()}")
