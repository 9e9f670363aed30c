"""Frames of an earlier mtcv run: its ``data.nc`` as a data source.

``[sample.sources.run_frames] path = "runs/quick/data.nc"`` gives a new run
exactly the frames (split, labels, their sources and label sources) of a
finished one, so a second CV -- another featurizer, a CV trained elsewhere
(``train.cv_file``), other heads -- is compared on the same data without
sampling again. The file must be of the same system (atom count, and its
``system`` attribute when it has one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import xarray as xr

from mtcv_core.config import ConfigError, doc
from mtcv_core.interfaces import DataSource, MDSettings, System
from mtcv_core.io import read_frames
from mtcv_core.schema import SchemaError, category_names


@dataclass(kw_only=True)
class RunFrames(DataSource):
    """The train or test split of an mtcv ``data.nc``, as it is."""

    name: ClassVar[str] = "run_frames"
    path: str = doc("", "data.nc of an earlier mtcv run of the same system")

    def check(self, system: System) -> None:
        """ConfigError for no path or a missing file (its contents are
        checked when read)."""
        if not self.path:
            raise ConfigError("path: no data.nc given")
        if not Path(self.path).is_file():
            raise ConfigError(f"path: {self.path}: no such file")

    def run(self, system: System, *, seed: int, split: str = "train", scale: float = 1.0,
            md: MDSettings | None = None, client: Any = None,
            progress: bool = False) -> xr.Dataset:
        """The frames of ``split`` (``seed``, ``scale`` and ``md`` do not apply:
        the frames exist)."""
        path = Path(self.path)
        frames = read_frames(path)
        made_for = frames.attrs.get("system")
        if made_for is not None and made_for != system.name:
            raise SchemaError(f"run_frames: {path}: frames of system {made_for!r}, this run's "
                              f"is {system.name!r}")
        n_atoms = len(system.make_atoms())
        if frames.sizes["atom"] != n_atoms:
            raise SchemaError(f"run_frames: {path}: {frames.sizes['atom']} atoms, system "
                              f"{system.name!r} has {n_atoms}")
        names = category_names(frames, "split")
        if split not in names:
            raise SchemaError(f"run_frames: {path}: no {split!r} split (has {names})")
        keep = frames["split"].values == names.index(split)
        part = frames.isel(frame=keep)
        part.attrs = {k: v for k, v in part.attrs.items() if k not in ("config", "seed")}
        return part.load()


__all__ = ["RunFrames"]
