"""Frames from existing trajectory files (ASE ``.traj``, extxyz, AMBER netCDF).

The files must carry energies (and forces) -- a single-point calculator in
``.traj``, ``energy=``/``forces`` columns in extxyz, ``energy``/``forces``
variables in netCDF. Each file is one trajectory. Labels come from a labeler
(``starting_basin``, ``committed_basin``, ``cv_region`` or ``none``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_ase.frames import atoms_to_arrays, system_frames
from mtcv_core.config import doc, positive
from mtcv_core.interfaces import DataSource, System
from mtcv_core.schema import concat_frames
from mtcv_sampling.labelers import LABELERS


@dataclass(kw_only=True)
class TrajectoryFiles(DataSource):
    """Read trajectories with their energies; label them with ``labeler``."""

    name: ClassVar[str] = "trajectory_files"
    paths: list[str] = field(default_factory=list, metadata={"doc": "trajectory files"})
    test_paths: list[str] = field(default_factory=list, metadata={
        "doc": "trajectory files of the test split"})
    labeler: str = doc("cv_region", "starting_basin, committed_basin, cv_region or none")
    stride: int = positive(1, "keep every stride-th frame")
    temperature_K: float = doc(float("nan"), "temperature the files were sampled at, K")

    def run(self, system: System, *, seed: int, client: Any = None, split: str = "train",
            scale: float = 1.0, temperature_K: float | None = None,
            progress: bool = False) -> xr.Dataset:
        import ase.io

        if self.labeler != "none" and self.labeler not in LABELERS:
            raise ValueError(f"trajectory_files.labeler: unknown labeler {self.labeler!r}; "
                             f"expected one of {['none', *LABELERS]}")
        paths = self.paths if split == "train" else self.test_paths
        parts = []
        for k, path in enumerate(paths):
            p = Path(path)
            if not p.is_file():
                raise FileNotFoundError(f"trajectory_files: {p}: no such file")
            try:
                images = ase.io.read(p, f"::{self.stride}")
            except Exception as exc:
                raise ValueError(f"trajectory_files: {p}: cannot read ({exc})") from exc
            if not images:
                raise ValueError(f"trajectory_files: {p}: holds no frames")
            try:
                pos, ene, frc = atoms_to_arrays(images)
            except ValueError as exc:
                raise ValueError(f"trajectory_files: {p}: {exc}") from exc
            n_atoms = len(system.make_atoms())
            if pos.shape[1] != n_atoms:
                raise ValueError(f"trajectory_files: {p}: frames have {pos.shape[1]} atoms, "
                                 f"system {system.name!r} has {n_atoms}")
            parts.append(system_frames(system, pos, ene, frc, source="file", split=split,
                                       trajectory=k, time=np.arange(len(pos), dtype=float),
                                       temperature=self.temperature_K))
        if not parts:
            raise ValueError(f"trajectory_files: no files given for the {split} split")
        frames = concat_frames(parts)
        if self.labeler != "none":
            frames["label"] = ("frame", LABELERS[self.labeler]().label(frames, system),
                               frames["label"].attrs)
            codes = frames["label_source"].attrs["flag_meanings"].split()
            frames["label_source"][:] = codes.index(self.labeler)
        return frames
