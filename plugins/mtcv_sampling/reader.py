"""Frames from existing trajectory files (ASE ``.traj``, extxyz, AMBER netCDF).

The files must carry energies (and forces) -- a single-point calculator in
``.traj``, ``energy=``/``forces`` columns in extxyz, ``energy``/``forces``
variables in netCDF. Each file is one trajectory. Labels come from a labeler
(``starting_basin``, ``committed_basin``, ``cv_region`` or ``none``).

A file that is missing raises :class:`~mtcv_core.io.MissingFileError`, one
that no ASE reader opens :class:`~mtcv_core.io.DatasetError`, one whose
frames do not fit the system (atom count, no energies or forces, non-finite
values, no frames) :class:`~mtcv_core.schema.SchemaError`; each names the
file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_ase.frames import atoms_to_arrays, system_frames
from mtcv_core.config import ConfigError, doc, positive
from mtcv_core.interfaces import DataSource, MDSettings, System
from mtcv_core.io import DatasetError, MissingFileError, check_complete
from mtcv_core.schema import SchemaError, concat_frames, set_category, validate_frames
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
    temperature_K: float = field(default=float("nan"), metadata={
        "gt": 0, "doc": "temperature the files were sampled at, K (default: unknown, NaN)"})

    def check(self, system: System) -> None:
        """Raise :class:`ConfigError` for a labeler that does not exist, a
        split without files or a file that does not exist (called before any
        stage runs; the files' contents are checked when they are read)."""
        if self.labeler != "none" and self.labeler not in LABELERS:
            raise ConfigError(f"labeler: unknown labeler {self.labeler!r}; expected one of "
                              f"{['none', *LABELERS]}")
        for key in ("paths", "test_paths"):
            files = getattr(self, key)
            if not files:
                split = "train" if key == "paths" else "test"
                raise ConfigError(f"{key}: no files given for the {split} split (at least "
                                  "one is needed)")
            for k, path in enumerate(files):
                if not Path(path).is_file():
                    raise ConfigError(f"{key}[{k}]: {path}: no such file")

    def run(self, system: System, *, seed: int, split: str = "train", scale: float = 1.0,
            md: MDSettings | None = None, client: Any = None,
            progress: bool = False) -> xr.Dataset:
        if self.labeler != "none" and self.labeler not in LABELERS:
            raise ConfigError(f"trajectory_files.labeler: unknown labeler {self.labeler!r}; "
                              f"expected one of {['none', *LABELERS]}")
        paths = self.paths if split == "train" else self.test_paths
        parts = [_read_file(Path(path), system, split=split, trajectory=k, stride=self.stride,
                            temperature_K=self.temperature_K)
                 for k, path in enumerate(paths)]
        if not parts:
            raise ConfigError(f"trajectory_files: no files given for the {split} split")
        frames = concat_frames(parts)
        if self.labeler != "none":
            frames["label"] = ("frame", LABELERS[self.labeler]().label(frames, system),
                               frames["label"].attrs)
            frames = set_category(frames, "label_source", self.labeler)
        return frames


def _read_file(p: Path, system: System, *, split: str, trajectory: int, stride: int,
               temperature_K: float) -> xr.Dataset:
    """One trajectory file as a validated frame dataset (errors name ``p``)."""
    import ase.io

    if not p.is_file():
        raise MissingFileError(f"trajectory_files: {p}: no such file")
    try:
        check_complete(p)  # a truncated netCDF-3 file reads as zeros otherwise
    except DatasetError as exc:
        raise DatasetError(f"trajectory_files: {exc}") from exc
    try:
        images = ase.io.read(p, f"::{stride}")
    except Exception as exc:  # ASE's readers raise a zoo of types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DatasetError(f"trajectory_files: {p}: not a readable trajectory file "
                           f"({type(exc).__name__}: {first})") from exc
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise SchemaError(f"trajectory_files: {p}: holds no frames")
    n_atoms = len(system.make_atoms())
    sizes = sorted({len(a) for a in images})
    if sizes != [n_atoms]:
        raise SchemaError(f"trajectory_files: {p}: frames have {sizes} atoms, system "
                          f"{system.name!r} has {n_atoms}")
    try:
        pos, ene, frc = atoms_to_arrays(images)
    except Exception as exc:
        raise SchemaError(f"trajectory_files: {p}: {exc}") from exc
    if frc.shape != pos.shape:
        raise SchemaError(f"trajectory_files: {p}: forces have shape {frc.shape}, expected "
                          f"{pos.shape} (eV/angstrom per atom)")
    frames = system_frames(system, pos, ene, frc, source="file", split=split,
                           trajectory=trajectory, time=np.arange(len(pos), dtype=float),
                           temperature=temperature_K)
    return validate_frames(frames, where=f"trajectory_files: {p}")
