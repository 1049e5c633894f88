"""The software switch: wire protocol, dataplane pipeline, control plane, UDP daemon."""

from switch_dataplane.kernel_cache import use_layout_cache

use_layout_cache()
