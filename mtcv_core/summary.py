"""Numbers for ``summary.json`` computed from datasets."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.schema import basin_names


def _meanings(var: xr.DataArray) -> dict[int, str]:
    values = np.atleast_1d(var.attrs["flag_values"]).tolist()
    return dict(zip(values, var.attrs["flag_meanings"].split(), strict=True))


def frame_counts(frames: xr.Dataset) -> dict[str, Any]:
    """n_train, n_test and frame counts per split, source and label."""
    split = _meanings(frames["split"])
    source = _meanings(frames["source"])
    label = {i - 1: name for i, name in enumerate(["none", *basin_names(frames)])}
    s = frames["split"].values
    counts: dict[str, Any] = {
        "n_train": int((s == 0).sum()),
        "n_test": int((s == 1).sum()),
        "frame_counts": {},
    }
    for sc, sname in split.items():
        table: dict[str, dict[str, int]] = {}
        for oc, oname in source.items():
            sel = (s == sc) & (frames["source"].values == oc)
            if not sel.any():
                continue
            labs = frames["label"].values[sel]
            table[oname] = {label[lc]: int((labs == lc).sum()) for lc in label
                            if (labs == lc).any()}
        counts["frame_counts"][sname] = table
    return counts
