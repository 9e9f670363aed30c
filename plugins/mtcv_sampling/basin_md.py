"""Unbiased Langevin MD started in each basin; frames carry their starting basin.

A trajectory that leaves its basin (a frame inside another basin) is cut
there: only the frames up to its last frame in its own basin are kept, and the
cut is counted in the dataset's attributes (``n_cut_trajectories``,
``n_dropped_frames``).

A trajectory that blows up (non-finite positions or energies, or |energy|
beyond the engine's bound) is dropped whole, the others go on unchanged;
each is reported with its seed and step in the ``blow_ups`` attribute (a
JSON list) and a warning. Only when every trajectory of a split blows up
does the source fail (:class:`mtcv_core.errors.SimulationError`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_ase.frames import system_frames
from mtcv_ase.md import LangevinParams, blow_up_record, make_walkers, maxwell_boltzmann
from mtcv_ase.md_options import MDOptions, chunks
from mtcv_core.config import ConfigError, nonneg, positive
from mtcv_core.errors import SimulationError
from mtcv_core.execution import TaskStore, map_tasks, task_rng
from mtcv_core.interfaces import DataSource, Footprint, MDSettings, System
from mtcv_core.schema import concat_frames


@dataclass(kw_only=True)
class BasinMD(MDOptions, DataSource):
    """Langevin MD in each basin.

    ``trajectories_per_basin`` walkers per basin (times the split's scale),
    ``equilibration_steps`` unrecorded steps, then ``n_steps`` steps recorded
    every ``stride``.
    """

    #: finished tasks are kept in the sample stage's ``store`` (resumable)
    stores_partial_results: ClassVar[bool] = True

    name: ClassVar[str] = "basin_md"
    trajectories_per_basin: int = positive(16, "trajectories per basin (train split)")
    n_steps: int = positive(2000, "recorded steps per trajectory")
    stride: int = positive(10, "record every stride-th step")
    equilibration_steps: int = nonneg(500, "unrecorded steps before recording")
    basins: list[str] | None = None

    def check(self, system: System) -> None:
        """Raise :class:`ConfigError` for options that do not fit ``system``
        (called before any stage runs)."""
        unknown = [b for b in (self.basins or []) if b not in system.basins]
        if unknown:
            raise ConfigError(f"basins: {unknown} are not basins of {system.name!r}; "
                              f"expected a subset of {list(system.basins)}")

    def footprint(self, system: System, *, n_atoms: int, scale: float = 1.0) -> Footprint:
        """Every recorded frame of every trajectory (held together, then
        written once)."""
        from mtcv_core.schema import frame_bytes

        n_basins = len(self.basins or system.basins)
        frames = (n_basins * max(1, round(self.trajectories_per_basin * scale))
                  * (self.n_steps // self.stride + 1))
        size = float(frames) * frame_bytes(n_atoms)
        return Footprint(memory_bytes=2 * size, disk_bytes=size,
                         what=f"{frames:.3g} frames of {n_atoms} atoms")

    def run(self, system: System, *, seed: int, split: str = "train", scale: float = 1.0,
            md: MDSettings | None = None, client: Any = None,
            progress: bool = False, store: Path | None = None) -> xr.Dataset:
        params = self.params(md)
        basins = self.basins or list(system.basins)
        try:
            self.check(system)
        except ConfigError as exc:
            raise ConfigError(f"basin_md.{exc}") from None
        fast = self.use_fast(system, md)
        specs = []
        traj_offset = 0
        for basin in basins:
            n = max(1, round(self.trajectories_per_basin * scale))
            for k, (start, count) in enumerate(chunks(n, self.task_size(fast))):
                specs.append(dict(system=system, basin=basin, count=count,
                                  first_id=traj_offset + start, seed=seed, split=split,
                                  task=k, params=params, fast=fast, n_steps=self.n_steps,
                                  stride=self.stride, n_eq=self.equilibration_steps))
            traj_offset += n
        results = map_tasks(_basin_task, specs, client=client, progress=progress,
                            desc=f"basin_md {split}",
                            store=None if store is None else TaskStore(store))
        blow_ups = [b for r in results for b in r["blow_ups"]]
        for b in blow_ups:
            warnings.warn(f"basin_md: trajectory {b['trajectory']} ({split} split, basin "
                          f"{b['basin']}, seed {seed}) blew up at step {b['step']} (energy "
                          f"{b['energy_eV']} eV); dropped, the others are kept",
                          RuntimeWarning, stacklevel=2)
        if len(blow_ups) == traj_offset:
            raise SimulationError(
                f"basin_md: all {traj_offset} trajectories of the {split} split blew up "
                f"(first: trajectory {blow_ups[0]['trajectory']} at step {blow_ups[0]['step']}, "
                f"seed {seed}); lower timestep_fs or the temperature")
        frames = concat_frames([r["frames"] for r in results])
        frames.attrs.update(
            n_trajectories=int(traj_offset),
            n_cut_trajectories=int(sum(r["n_cut"] for r in results)),
            n_dropped_frames=int(sum(r["n_dropped"] for r in results)),
            n_blown_trajectories=len(blow_ups),
            blow_ups=json.dumps(blow_ups))
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
    blow_step = np.full(count, -1)
    blow_energy = np.full(count, np.nan)
    walkers = make_walkers(system, params, rng, spec["fast"], basin=basin)
    eq = (walkers.run(x0, v0, n_eq, stride=max(n_eq, 1), on_blow_up="drop") if n_eq else
          {"x": x0, "v": v0, "alive": None})
    rec = walkers.run(eq["x"], eq["v"], n_steps, stride, on_blow_up="drop", alive=eq["alive"],
                      first_step=n_eq)
    for r in (eq, rec):
        if "blow_up_step" in r:
            hit = r["blow_up_step"] >= 0
            blow_step[hit] = r["blow_up_step"][hit]
            blow_energy[hit] = r["blow_up_energy"][hit]
    pos = np.swapaxes(rec["positions"], 0, 1)  # (walker, n_rec, n_atoms, 3)
    ene = rec["energy"].T
    frc = np.swapaxes(rec["forces"], 0, 1)
    steps = rec["step"] - n_eq
    target = system.basins.index(basin)
    keep_pos, keep_ene, keep_frc, traj, time = [], [], [], [], []
    n_cut = n_dropped = 0
    blow_ups = []
    for w in range(count):
        if blow_step[w] >= 0:  # a trajectory that blew up is dropped whole
            blow_ups.append(blow_up_record(
                source="basin_md", split=spec["split"], basin=basin,
                trajectory=int(spec["first_id"] + w), walker=w, seed=int(spec["seed"]),
                stream=["basin_md", spec["split"], basin, int(spec["task"])],
                step=int(blow_step[w]), energy=blow_energy[w]))
            continue
        keep, cut = _kept_frames(system.basin_index(pos[w]), target)
        n_cut += cut
        n_dropped += pos.shape[1] - keep
        keep_pos.append(pos[w, :keep])
        keep_ene.append(ene[w, :keep])
        keep_frc.append(frc[w, :keep])
        traj.append(np.full(keep, spec["first_id"] + w))
        time.append(steps[:keep] * params.timestep_fs)
    if not keep_pos:  # every walker of this task blew up
        keep_pos, keep_ene, keep_frc = [pos[0, :0]], [ene[0, :0]], [frc[0, :0]]
        traj, time = [np.zeros(0, dtype=int)], [np.zeros(0)]
    frames = system_frames(
        system, np.concatenate(keep_pos), np.concatenate(keep_ene), np.concatenate(keep_frc),
        label=target, label_source="starting_basin", source="basin_md", split=spec["split"],
        trajectory=np.concatenate(traj), time=np.concatenate(time),
        temperature=params.temperature_K)
    return {"frames": frames, "n_cut": n_cut, "n_dropped": n_dropped, "blow_ups": blow_ups}


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
