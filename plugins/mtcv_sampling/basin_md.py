"""Unbiased Langevin MD started in each basin; frames carry their starting basin.

A trajectory that leaves its basin (a frame inside another basin) is cut
there: only the frames up to its last frame in its own basin are kept, and the
cut is counted in the dataset's attributes (``n_cut_trajectories``,
``n_dropped_frames``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_ase.frames import system_frames
from mtcv_ase.md import BatchLangevin, LangevinParams, maxwell_boltzmann, run_ase_langevin
from mtcv_core.config import nonneg, positive
from mtcv_core.execution import map_tasks, task_rng
from mtcv_core.interfaces import DataSource, System
from mtcv_core.schema import concat_frames
from mtcv_sampling.common import MDOptions, chunks


@dataclass(kw_only=True)
class BasinMD(MDOptions, DataSource):
    """Langevin MD in each basin.

    ``trajectories_per_basin`` walkers per basin (times the split's scale),
    ``equilibration_steps`` unrecorded steps, then ``n_steps`` steps recorded
    every ``stride``.
    """

    name: ClassVar[str] = "basin_md"
    trajectories_per_basin: int = positive(16, "trajectories per basin (train split)")
    n_steps: int = positive(2000, "recorded steps per trajectory")
    stride: int = positive(10, "record every stride-th step")
    equilibration_steps: int = nonneg(500, "unrecorded steps before recording")
    basins: list[str] | None = None

    def run(self, system: System, *, seed: int, client: Any = None, split: str = "train",
            scale: float = 1.0, temperature_K: float | None = None,
            progress: bool = False) -> xr.Dataset:
        params = self.params(temperature_K)
        basins = self.basins or list(system.basins)
        unknown = [b for b in basins if b not in system.basins]
        if unknown:
            raise ValueError(f"basin_md.basins: {unknown} not among {list(system.basins)}")
        fast = self.use_fast(system)
        specs = []
        traj_offset = 0
        for basin in basins:
            n = max(1, round(self.trajectories_per_basin * scale))
            for k, (start, count) in enumerate(chunks(n, self.walkers_per_task)):
                specs.append(dict(system=system, basin=basin, count=count,
                                  first_id=traj_offset + start, seed=seed, split=split,
                                  task=k, params=params, fast=fast, n_steps=self.n_steps,
                                  stride=self.stride, n_eq=self.equilibration_steps))
            traj_offset += n
        results = map_tasks(_basin_task, specs, client=client, progress=progress,
                            desc=f"basin_md {split}")
        frames = concat_frames([r["frames"] for r in results])
        frames.attrs.update(
            n_trajectories=int(traj_offset),
            n_cut_trajectories=int(sum(r["n_cut"] for r in results)),
            n_dropped_frames=int(sum(r["n_dropped"] for r in results)))
        return frames


def _basin_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One chunk of walkers in one basin: returns their kept frames."""
    system: System = spec["system"]
    params: LangevinParams = spec["params"]
    basin: str = spec["basin"]
    count: int = spec["count"]
    rng = task_rng(spec["seed"], "basin_md", spec["split"], basin, spec["task"])
    x0 = system.start_positions(basin, count, rng=rng, split=spec["split"])
    masses = system.make_atoms(basin).get_masses()
    v0 = maxwell_boltzmann(masses, params.temperature_K, rng, n=count, dof_mask=system.dof_mask)
    n_eq, n_steps, stride = spec["n_eq"], spec["n_steps"], spec["stride"]
    if spec["fast"]:
        integ = BatchLangevin(system.energy_and_forces, masses, params, rng,
                              dof_mask=system.dof_mask)
        eq = integ.run(x0, v0, n_eq, stride=max(n_eq, 1)) if n_eq else {"x": x0, "v": v0}
        rec = integ.run(eq["x"], eq["v"], n_steps, stride)
        pos = np.swapaxes(rec["positions"], 0, 1)  # (walker, n_rec, n_atoms, 3)
        ene = rec["energy"].T
        frc = np.swapaxes(rec["forces"], 0, 1)
        steps = rec["step"]
    else:
        pos_l, ene_l, frc_l = [], [], []
        for w in range(count):
            atoms = system.make_atoms(basin)
            atoms.set_positions(x0[w])
            atoms.set_velocities(v0[w])
            rec = run_ase_langevin(atoms, n_eq + n_steps, params, rng, stride=1)
            sel = slice(n_eq + stride - 1, None, stride)
            pos_l.append(rec["positions"][sel])
            ene_l.append(rec["energy"][sel])
            frc_l.append(rec["forces"][sel])
        pos, ene, frc = np.array(pos_l), np.array(ene_l), np.array(frc_l)
        steps = np.arange(stride, n_steps + 1, stride)
    target = system.basins.index(basin)
    keep_pos, keep_ene, keep_frc, traj, time = [], [], [], [], []
    n_cut = n_dropped = 0
    for w in range(count):
        keep, cut = _kept_frames(system.basin_index(pos[w]), target)
        n_cut += cut
        n_dropped += pos.shape[1] - keep
        keep_pos.append(pos[w, :keep])
        keep_ene.append(ene[w, :keep])
        keep_frc.append(frc[w, :keep])
        traj.append(np.full(keep, spec["first_id"] + w))
        time.append(steps[:keep] * params.timestep_fs)
    frames = system_frames(
        system, np.concatenate(keep_pos), np.concatenate(keep_ene), np.concatenate(keep_frc),
        label=target, label_source="starting_basin", source="basin_md", split=spec["split"],
        trajectory=np.concatenate(traj), time=np.concatenate(time),
        temperature=params.temperature_K)
    return {"frames": frames, "n_cut": n_cut, "n_dropped": n_dropped}


def _kept_frames(basin: np.ndarray, target: int) -> tuple[int, bool]:
    """How many leading frames of a trajectory keep the starting basin's
    label, and whether it left.

    A trajectory has left when a frame lies in another basin: it is cut there.
    Frames outside every basin (-1) are thermal excursions while the
    trajectory returns to its basin; those after its last frame in the basin
    are dropped too, since where they were heading is unknown.
    """
    other = (basin >= 0) & (basin != target)
    end = int(np.argmax(other)) if other.any() else len(basin)
    inside = np.flatnonzero(basin[:end] == target)
    keep = int(inside[-1]) + 1 if inside.size else 0
    return keep, bool(other.any())
