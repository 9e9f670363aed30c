"""Basin labelers.

- ``starting_basin``: every frame of a trajectory carries the basin its first
  frame is in (basin MD: no transition happens in a short run).
- ``committed_basin``: every frame carries the basin its trajectory ends in
  (relaxation and shooting segments).
- ``cv_region``: each frame carries the basin region it lies in, by the
  system's basin definition on its known CVs (-1 outside every basin).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import xarray as xr

from mtcv_core.interfaces import System


def _by_trajectory(frames: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """unique ids, index of each id's first and last frame (in frame order)."""
    traj = frames["trajectory"].values
    ids, first = np.unique(traj, return_index=True)
    _, last_rev = np.unique(traj[::-1], return_index=True)
    last = len(traj) - 1 - last_rev
    return ids, first, last


class Labeler(ABC):
    """Assigns basin labels to frames (the ``labeler`` option of
    :class:`~mtcv_sampling.reader.TrajectoryFiles`)."""

    name: ClassVar[str]

    @abstractmethod
    def label(self, frames: xr.Dataset, system: System) -> np.ndarray:
        """(n_frames,) int basin labels (-1 for unlabelled)."""


@dataclass
class StartingBasin(Labeler):
    name: ClassVar[str] = "starting_basin"

    def label(self, frames: xr.Dataset, system: System) -> np.ndarray:
        ids, first, _ = _by_trajectory(frames)
        start = system.basin_index(frames["coordinates"].values[first])
        lookup = dict(zip(ids.tolist(), start.tolist(), strict=True))
        return np.array([lookup[t] for t in frames["trajectory"].values], dtype=np.int32)


@dataclass
class CommittedBasin(Labeler):
    name: ClassVar[str] = "committed_basin"

    def label(self, frames: xr.Dataset, system: System) -> np.ndarray:
        ids, _, last = _by_trajectory(frames)
        end = system.basin_index(frames["coordinates"].values[last])
        lookup = dict(zip(ids.tolist(), end.tolist(), strict=True))
        return np.array([lookup[t] for t in frames["trajectory"].values], dtype=np.int32)


@dataclass
class CVRegion(Labeler):
    name: ClassVar[str] = "cv_region"

    def label(self, frames: xr.Dataset, system: System) -> np.ndarray:
        return system.basin_index(frames["coordinates"].values).astype(np.int32)


LABELERS = {cls.name: cls for cls in (StartingBasin, CommittedBasin, CVRegion)}
