"""Built-in data sources (basin MD, TPS by one-way shooting, trajectory
files, an earlier run's frames) and basin labelers."""

from __future__ import annotations

from mtcv_core import __version__, hookimpl
from mtcv_sampling.basin_md import BasinMD
from mtcv_sampling.reader import TrajectoryFiles
from mtcv_sampling.run_frames import RunFrames
from mtcv_sampling.tps import TPS

__all__ = ["__version__", "BasinMD", "TPS", "TrajectoryFiles", "RunFrames"]


@hookimpl
def mtcv_register_data_sources(register):
    register("basin_md", BasinMD)
    register("tps", TPS)
    register("trajectory_files", TrajectoryFiles)
    register("run_frames", RunFrames)

