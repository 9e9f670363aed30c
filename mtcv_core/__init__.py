"""mtcv core: plugin system, interfaces, dataset schema, model, pipeline.

This layer is engine-agnostic: it never imports ASE or a plugin.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: The one marker plugins use for their hook implementations.
hookimpl = pluggy.HookimplMarker("mtcv")

from mtcv_core.plugins import Registry, load_plugins  # noqa: E402

__all__ = ["__version__", "hookimpl", "load_plugins", "Registry"]
