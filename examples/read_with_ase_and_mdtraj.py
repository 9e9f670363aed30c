"""Open an mtcv frame dataset with ASE and with MDTraj.

mtcv writes frame datasets (``data.nc`` of ``mtcv run``) as classic
64-bit-offset netCDF in the AMBER trajectory convention, so other tools read
them without mtcv. This script makes a small dataset of alanine dipeptide by
a short basin MD (mtcv's ``basin_md`` data source, amber99sb through
OpenMM), writes it with mtcv's own writer (:func:`mtcv_core.io.write_dataset`)
and reads it back

* with ASE, ``ase.io.read(path, ":")``: positions in angstrom, plus the
  energies (``atoms.info["energy"]``, eV) and forces
  (``atoms.arrays["forces"]``, eV/angstrom) that ASE's AMBER reader picks up;
* with MDTraj, ``mdtraj.load(path, top=topology.pdb)``: positions in nm
  (MDTraj's unit), so ``traj.xyz * 10`` must equal mtcv's angstrom. MDTraj
  needs a topology; a PDB of the first frame is written with ASE next to
  the data.

Note: mtcv stores ``time`` in fs (its units attribute says so), while AMBER
readers such as MDTraj assume ps; MDTraj's ``traj.time`` is therefore the
time in fs.

Usage::

    python examples/read_with_ase_and_mdtraj.py [--small] [--out DIR]
                                                [--system alanine_dipeptide]

``--small`` (a few frames, seconds) is what the tests run. ``--system``
takes any installed mtcv system (``mtcv plugins``); alanine dipeptide needs
OpenMM (``pip install "mtcv[openmm]"``). Without MDTraj installed the MDTraj
half is skipped with a message (``pip install mdtraj``), unless
``--require-mdtraj`` is given.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np


def make_dataset(system_name: str, small: bool, seed: int = 0):
    """A short basin MD of ``system_name`` as an mtcv frame dataset."""
    from mtcv_core.interfaces import MDSettings
    from mtcv_core.plugins import load_plugins

    registry = load_plugins()
    system = registry.create("system", system_name)
    timestep = 0.5 if system_name == "alanine_dipeptide" else 1.0
    source = registry.create(
        "data_source", "basin_md", trajectories_per_basin=1 if small else 4,
        equilibration_steps=20 if small else 500, n_steps=40 if small else 2000,
        stride=10, walkers_per_task=4, timestep_fs=timestep)
    frames = source.run(system, seed=seed, split="train",
                        md=MDSettings(temperature_K=system.temperature_K))
    return system, frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="a few frames (tests)")
    parser.add_argument("--out", type=Path, default=Path("read_with_ase_and_mdtraj_out"),
                        help="folder for frames.nc and topology.pdb")
    parser.add_argument("--system", default="alanine_dipeptide", help="mtcv system name")
    parser.add_argument("--require-mdtraj", action="store_true",
                        help="fail instead of skipping when MDTraj is not installed")
    args = parser.parse_args(argv)

    import ase.io

    from mtcv_core.io import read_frames, write_dataset

    system, frames = make_dataset(args.system, args.small)
    args.out.mkdir(parents=True, exist_ok=True)
    path = write_dataset(frames, args.out / "frames.nc")
    frames = read_frames(path)  # mtcv's own validating reader
    xyz = frames["coordinates"].values  # (n_frames, n_atoms, 3) angstrom
    print(f"wrote {path}: {xyz.shape[0]} frames of {args.system}, {xyz.shape[1]} atoms")

    # --- ASE ------------------------------------------------------------
    images = ase.io.read(path, ":")
    pos_ase = np.array([a.get_positions() for a in images])
    assert pos_ase.shape == xyz.shape, (pos_ase.shape, xyz.shape)
    assert all(np.array_equal(a.numbers, frames["Z"].values) for a in images)
    d_ase = float(np.abs(pos_ase - xyz).max())
    assert d_ase < 1e-10, d_ase
    energy = np.array([a.info["energy"] for a in images])
    forces = np.array([a.arrays["forces"] for a in images])
    np.testing.assert_allclose(energy, frames["energy"].values, rtol=1e-12)
    np.testing.assert_allclose(forces, frames["forces"].values, rtol=1e-12, atol=1e-12)
    print(f"ase.io.read: {len(images)} frames, positions agree (max |diff| {d_ase:.1e} "
          "angstrom), energies and forces agree")

    # --- MDTraj ---------------------------------------------------------
    if importlib.util.find_spec("mdtraj") is None:
        if args.require_mdtraj:
            raise SystemExit("mdtraj is not installed (pip install mdtraj)")
        print("mdtraj: not installed, skipped (pip install mdtraj)")
        return 0
    import mdtraj

    top = args.out / "topology.pdb"
    ase.io.write(top, images[0])
    traj = mdtraj.load(str(path), top=str(top))
    assert traj.xyz.shape == xyz.shape, (traj.xyz.shape, xyz.shape)
    # MDTraj keeps float32 nm: compare at float32 precision
    d_md = float(np.abs(traj.xyz.astype(np.float64) * 10.0 - xyz).max())
    tol = 1e-5 * max(1.0, float(np.abs(xyz).max()))
    assert d_md < tol, (d_md, tol)
    np.testing.assert_allclose(traj.time, frames["time"].values, rtol=1e-6)
    print(f"mdtraj.load: {traj.n_frames} frames, {traj.n_atoms} atoms; positions agree "
          f"(max |10 * xyz_nm - xyz_A| {d_md:.1e} angstrom)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
