"""The sample stage: every data source on the train and test splits ->
``data.nc`` (parts under ``sample/`` so that an interrupted run resumes)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any

import xarray as xr

from mtcv_core.config import ConfigError
from mtcv_core.errors import MtcvError
from mtcv_core.interfaces import DataSource
from mtcv_core.io import read_frames, write_dataset
from mtcv_core.plugins import blame
from mtcv_core.schema import concat_frames, provenance, validate_frames
from mtcv_core.stages.common import (
    blow_ups,
    build_checked,
    component,
    note_blow_ups,
    system_component,
)
from mtcv_core.stages.context import RunContext
from mtcv_core.summary import frame_counts


def build_sources(ctx: RunContext) -> dict[str, DataSource]:
    """The ``[sample.sources.NAME]`` data sources, built and checked."""
    return {name: build_checked(ctx, "data_source", name, options, f"sample.sources.{name}",
                                name_where="sample.sources", interface=DataSource)
            for name, options in ctx.config.sample.sources.items()}


def split_temperature(cfg: Any, split: str) -> float:
    """K: the split's temperature (``[sample] train_temperature_K`` /
    ``test_temperature_K``), else the run's. A source's own ``temperature_K``
    option overrides it inside the source."""
    train = cfg.sample.train_temperature_K or cfg.temperature_K
    if split == "test" and cfg.sample.test_temperature_K is not None:
        return float(cfg.sample.test_temperature_K)
    return float(train)


def stored_part(path: Path) -> xr.Dataset | None:
    """A data source's split saved by an earlier, interrupted run, or None
    when there is none or it cannot be read (damaged after it was written:
    it is sampled again, with a warning)."""
    if not path.exists():
        return None
    try:
        return read_frames(path)
    except MtcvError as exc:
        warnings.warn(f"{exc}; sampling it again", RuntimeWarning, stacklevel=2)
        return None


def run_sample(ctx: RunContext) -> None:
    """Run every data source on the train and test splits; write ``data.nc``."""
    cfg = ctx.config
    if not cfg.sample.sources:
        raise ConfigError("sample.sources: no data source configured (a "
                          "[sample.sources.NAME] table per data source plugin)")
    sources = build_sources(ctx)
    f = cfg.sample.test_fraction
    scales = {"train": 1.0, "test": f / (1.0 - f)}
    parts_dir = ctx.out / "sample"
    parts = []
    found: list[Any] = []
    for name, source in sources.items():
        for split, scale in scales.items():
            part_path = parts_dir / f"{name}_{split}.nc"
            part = stored_part(part_path)  # finished before an interruption
            if part is None:
                # a source that keeps its finished tasks resumes from them
                store = parts_dir / f".{name}_{split}.tasks"
                extra = {"store": store} if source.stores_partial_results else {}
                with blame(component(ctx, "data_source", name), system_component(ctx),
                           action=f"sampling the {split} split"):
                    part = source.run(ctx.system, seed=cfg.seed, split=split, scale=scale,
                                      md=ctx.md(split_temperature(cfg, split)),
                                      client=ctx.client(), progress=ctx.progress, **extra)
                if part.sizes.get("frame", 0):  # a source may find nothing in a split
                    validate_frames(part, where=f"sample.sources.{name} ({split} split)")
                part.attrs.update(provenance(seed=cfg.seed))
                write_dataset(part, part_path)
                shutil.rmtree(store, ignore_errors=True)
            found += blow_ups(part)
            parts.append(part)
    note_blow_ups(ctx, "sample", found)
    data = concat_frames(parts)
    data.attrs.update(provenance(config=ctx.summary["config"], seed=cfg.seed,
                                 system=ctx.system.name))
    write_dataset(data, ctx.out / "data.nc")
    ctx.summary.update(frame_counts(data))
    try:
        true = ctx.system.true_cv(data["coordinates"].values)
    except NotImplementedError:
        return  # no true CVs to plot against
    from mtcv_core.plots import plot_frames

    plot_frames(data, true, ctx.out / "figures" / "data.png",
                names=list(ctx.system.true_cv_names) or ["cv0", "cv1"])


__all__ = ["run_sample", "build_sources", "split_temperature", "stored_part"]
