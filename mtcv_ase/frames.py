"""Atoms <-> frame datasets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mtcv_core.interfaces import System
from mtcv_core.schema import make_frames


def system_frames(system: System, positions: np.ndarray, energy: np.ndarray,
                  forces: np.ndarray, **kwargs: Any) -> xr.Dataset:
    """A frame dataset for ``system`` (atomic numbers, masses and basins
    taken from it). Arrays as in :func:`mtcv_core.schema.make_frames`."""
    atoms = system.make_atoms()
    return make_frames(positions, energy, forces, numbers=atoms.get_atomic_numbers(),
                       masses=atoms.get_masses(), basins=system.basins,
                       attrs={"system": system.name}, **kwargs)


def frames_to_atoms(frames: xr.Dataset) -> list[Atoms]:
    """One ``Atoms`` per frame, with energy and forces in a single-point
    calculator and the per-frame variables in ``atoms.info``."""
    numbers = frames["Z"].values
    masses = frames["masses"].values
    out = []
    for i in range(frames.sizes["frame"]):
        atoms = Atoms(numbers=numbers, positions=frames["coordinates"].values[i], masses=masses)
        atoms.calc = SinglePointCalculator(atoms, energy=float(frames["energy"].values[i]),
                                           forces=frames["forces"].values[i])
        for name in ("label", "source", "split", "trajectory", "time", "temperature"):
            atoms.info[name] = frames[name].values[i].item()
        out.append(atoms)
    return out


def atoms_to_arrays(images: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """positions (n, n_atoms, 3), energy (n,), forces (n, n_atoms, 3) of images
    that carry energies: a calculator or single-point results, or (as ASE's
    AMBER-netCDF reader leaves them) ``info["energy"]`` and ``arrays["forces"]``."""
    pos, ene, frc = [], [], []
    for i, atoms in enumerate(images):
        if atoms.calc is None and "energy" in atoms.info and "forces" in atoms.arrays:
            ene.append(float(atoms.info["energy"]))
            frc.append(np.array(atoms.arrays["forces"], dtype=float))
        else:
            try:
                ene.append(atoms.get_potential_energy())
                frc.append(atoms.get_forces())
            except Exception as exc:
                raise ValueError(f"image {i} has no energy/forces: {exc}") from exc
        pos.append(atoms.get_positions())
    return np.array(pos), np.array(ene), np.array(frc)
