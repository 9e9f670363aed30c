"""Transition path sampling by one-way shooting.

Each chain holds a reactive path from basin ``initial`` to basin ``final``.
A shot picks a shooting point uniformly among the path's interior frames,
draws fresh Maxwell-Boltzmann velocities and integrates Langevin dynamics
forward or (with reversed velocities) backward in time until the segment
reaches a basin. The new path is the old one up to (from) the shooting point
plus the segment; it is accepted if it is reactive, with the Metropolis factor
``min(1, n_old / n_new)`` (interior frames) that uniform shooting-point
selection requires.

Every segment is kept: its frames (every ``stride`` steps, from the shooting
point on) carry the basin the segment committed to (``committed_basin``).
Segments that reach no basin within ``max_segment_steps`` are dropped and
counted. The first ``burn_in_shots`` shots of each chain, which start from the
high-temperature seed path, are not recorded.

Forgetting the seed
-------------------
The shooting point always stays in the new path, so a path forgets the seed
temperature only as new segments replace its frames: on alanine dipeptide
at 50 K from a 700 K seed, the potential energy of the transition-region
frames falls from 0.79 to a plateau of 0.45-0.46 eV (above the C7eq minimum)
after 50-60 uniform shots. Burn-in shots therefore always pick their
shooting points uniformly. Energy-biased selection
(``shooting_energy_width_eV`` > 0, probability ~ exp(V / width)) raises the
acceptance but (1) keeps picking a hot seed's hottest frame, so the chain
stays hot (0.90-1.04 eV over 30 shots of the same test; after 80 uniform
burn-in shots, 40 biased ones took some chains back up to 1.1 eV, the 95th
percentile), and (2) even in
equilibrium starts the recorded segments from frames whose orthogonal
degrees of freedom are hotter than ``temperature_K`` (effective
``1 / (1/kT - 1/width)`` for a harmonic one: measured 1.33 x kT/2 on a
decoupled harmonic coordinate at 300 K with width 0.05 eV, against
1.00 +- 0.03 with uniform selection). The default is uniform.

The seed path comes from a run at ``seed_temperature_K`` started in
``initial`` (the stretch from its last visit of ``initial`` to its first
arrival in ``final``), or from a file (``initial_path``), never from
hand-placed points.

A segment that blows up (non-finite positions or energies, or |energy|
beyond the engine's bound) is dropped like one that reaches no basin and the
chain shoots again from its current path; a seed-run walker that blows up
stops. Both are counted (``tps_blown_segments``, ``tps_blown_seed_walkers``)
and reported with their seed and step in the ``blow_ups`` attribute (a JSON
list) and a warning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_ase.frames import system_frames
from mtcv_ase.md import LangevinParams, blow_up_record, make_propagator, maxwell_boltzmann
from mtcv_ase.md_options import MDOptions, chunks
from mtcv_core.config import ConfigError, doc, nonneg, positive
from mtcv_core.errors import SimulationError
from mtcv_core.execution import TaskStore, map_tasks, task_rng
from mtcv_core.interfaces import DataSource, Footprint, MDSettings, System
from mtcv_core.io import DatasetError
from mtcv_core.schema import concat_frames


@dataclass(kw_only=True)
class TPS(MDOptions, DataSource):
    """One-way shooting TPS between pairs of basins (see module docstring)."""

    #: finished tasks are kept in the sample stage's ``store`` (resumable)
    stores_partial_results: ClassVar[bool] = True

    name: ClassVar[str] = "tps"
    transitions: list[list[str]] = field(default_factory=lambda: [["A", "B"]], metadata={
        "doc": "basin pairs [initial, final] to sample paths between"})
    chains: int = positive(8, "independent chains per transition (train split)")
    shots_per_chain: int = positive(50, "recorded shots per chain")
    burn_in_shots: int = nonneg(5, "unrecorded shots per chain after the seed path, with "
                                   "uniform shooting points; enough to forget the seed "
                                   "temperature (alanine at 50 K from 700 K: ~60)")
    stride: int = positive(5, "record every stride-th step of a segment")
    max_frames_per_segment: int = nonneg(
        0, "at most this many frames per segment, evenly spaced (0: no limit); long "
           "segments that dwell in an intermediate minimum otherwise dominate the data")
    max_segment_steps: int = positive(50000, "steps after which a segment is dropped")
    seed_temperature_K: float = positive(2500.0, "temperature of the seed-path run, K")
    seed_max_steps: int = positive(400000, "step limit of the seed-path run")
    seed_walkers: int = positive(32, "walkers of the seed-path run")
    seed_max_path_steps: int = positive(20000, "longest seed path kept, steps")
    seed_min_paths: int = nonneg(
        0, "stop the seed run once this many paths are found and share them between the "
           "task's chains (0: one path per chain); chains decorrelate in the burn-in shots")
    shooting_energy_width_eV: float = nonneg(
        0.0, "after burn-in, shooting points are drawn with probability ~ exp(V / width) "
             "along the path, favouring the transition region (0: uniform); the "
             "acceptance corrects the path ensemble, but the recorded segments then start "
             "from hotter-than-temperature_K frames (see the module docstring)")
    initial_path: str | None = doc(None, "a trajectory file holding a reactive path to "
                                         "start from instead of the high-temperature run")

    def check(self, system: System) -> None:
        """Raise :class:`ConfigError` for options that do not fit ``system``
        (called before any stage runs)."""
        for pair in self.transitions:
            if len(pair) != 2 or any(b not in system.basins for b in pair) or pair[0] == pair[1]:
                raise ConfigError(f"transitions: {pair!r} is not a pair of two different "
                                  f"basins of {list(system.basins)}")
        if self.initial_path is not None and not Path(self.initial_path).is_file():
            raise ConfigError(f"initial_path: {self.initial_path}: no such file")

    def footprint(self, system: System, *, n_atoms: int, scale: float = 1.0) -> Footprint:
        """A lower bound (path lengths depend on the dynamics): every recorded
        shot keeps at least one frame; the seed run holds ``seed_walkers``
        paths of up to ``seed_max_path_steps`` steps."""
        from mtcv_core.schema import frame_bytes

        shots = (len(self.transitions) * max(1, round(self.chains * scale))
                 * self.shots_per_chain)
        seed_frames = self.seed_walkers * (self.seed_max_path_steps // self.stride + 1)
        size = float(shots) * frame_bytes(n_atoms)
        return Footprint(memory_bytes=2 * size + seed_frames * frame_bytes(n_atoms),
                         disk_bytes=size,
                         what=f"at least {shots:.3g} frames of {n_atoms} atoms (one per shot)")

    def run(self, system: System, *, seed: int, split: str = "train", scale: float = 1.0,
            md: MDSettings | None = None, client: Any = None,
            progress: bool = False, store: Path | None = None) -> xr.Dataset:
        params = self.params(md)
        try:
            self.check(system)
        except ConfigError as exc:
            raise ConfigError(f"tps.{exc}") from None
        fast = self.use_fast(system, md)
        specs = []
        traj_offset = 0
        for initial, final in self.transitions:
            n = max(1, round(self.chains * scale))
            for k, (start, count) in enumerate(chunks(n, self.task_size(fast))):
                specs.append(dict(system=system, initial=initial, final=final, count=count,
                                  first_id=traj_offset + start * (self.shots_per_chain +
                                                                  self.burn_in_shots),
                                  seed=seed, split=split, task=k, params=params, fast=fast,
                                  options=self))
            traj_offset += n * (self.shots_per_chain + self.burn_in_shots)
        results = map_tasks(_tps_task, specs, client=client, progress=progress,
                            desc=f"tps {split}",
                            store=None if store is None else TaskStore(store))
        frames = concat_frames([r["frames"] for r in results])
        totals = {key: int(sum(r["stats"][key] for r in results))
                  for key in results[0]["stats"]}
        frames.attrs.update({f"tps_{k}": v for k, v in totals.items()})
        blow_ups = [b for r in results for b in r["blow_ups"]]
        for b in blow_ups:
            what = (f"seed-run walker {b['walker']}" if b["phase"] == "seed_run" else
                    f"shot {b['shot']} of chain {b['chain']} (trajectory {b['trajectory']})")
            warnings.warn(f"tps: {what} ({split} split, {b['initial']}->{b['final']}, seed "
                          f"{seed}) blew up at step {b['step']} (energy {b['energy_eV']} eV); "
                          "dropped, the others are kept", RuntimeWarning, stacklevel=2)
        frames.attrs["blow_ups"] = json.dumps(blow_ups)
        return frames


def seed_paths(system: System, initial: str, final: str, count: int, params: LangevinParams,
               rng: np.random.Generator, *, split: str, fast: bool, max_steps: int,
               n_walkers: int = 32, max_path_steps: int = 20000, min_paths: int = 0,
               blow_ups: list[dict[str, Any]] | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Reactive paths (every step) from ``n_walkers`` runs at
    ``params.temperature_K`` started in ``initial``: each path runs from a
    walker's last frame in ``initial`` to its first in ``final`` without
    visiting a third basin. Returns ``count`` pairs of positions (L, n_atoms, 3)
    and energies (L,) eV. The run stops once ``min_paths`` paths (``count``
    when 0) are found, or after ``max_steps``; with fewer paths than
    ``count`` the paths are shared between chains. A walker that blows up
    stops; with a list ``blow_ups``, ``{"walker", "step", "energy_eV"}`` is
    appended to it for each."""
    i_idx, f_idx = system.basins.index(initial), system.basins.index(final)
    n_walkers = max(n_walkers, count)
    x0 = system.start_positions(initial, n_walkers, rng=rng, split=split)
    masses = system.make_atoms().get_masses()
    prop = make_propagator(system, params, rng, n_walkers, fast, on_blow_up="drop")
    prop.reset(np.arange(n_walkers), x0, maxwell_boltzmann(
        masses, params.temperature_K, rng, n=n_walkers, dof_mask=system.dof_mask))
    buf = np.zeros((n_walkers, max_path_steps) + x0.shape[1:])
    buf_e = np.zeros((n_walkers, max_path_steps))
    buf[:, 0] = x0
    buf_e[:, 0] = prop_energy(prop, np.arange(n_walkers))
    ptr = np.zeros(n_walkers, dtype=int)
    valid = np.ones(n_walkers, dtype=bool)  # the buffer starts in `initial`
    paths: list[tuple[np.ndarray, np.ndarray]] = []
    active = np.arange(n_walkers)
    n_blown = 0
    for _step in range(max_steps):
        if not active.size:
            break
        x, e, _ = prop.step(active)
        blown = prop.last_blown
        if blown.any():  # these walkers stop; the others go on with the same streams
            for j in np.flatnonzero(blown):
                n_blown += 1
                if blow_ups is not None:
                    blow_ups.append(blow_up_record(walker=int(active[j]), step=_step + 1,
                                                   energy=prop.last_energy[j]))
            valid[active[blown]] = False
        basin = system.basin_index(x)
        home = basin == i_idx
        ptr[active] = np.where(home, 0, ptr[active] + 1)
        valid[active] |= home
        full = ptr[active] >= max_path_steps
        valid[active] &= ~full & ~((basin >= 0) & (basin != i_idx) & (basin != f_idx))
        ptr[active] = np.minimum(ptr[active], max_path_steps - 1)
        buf[active, ptr[active]] = x
        buf_e[active, ptr[active]] = e
        done = (basin == f_idx) & valid[active]
        for c in active[done]:
            paths.append((buf[c, : ptr[c] + 1].copy(), buf_e[c, : ptr[c] + 1].copy()))
        if len(paths) >= (min(min_paths, count) if min_paths > 0 else count):
            break
        active = active[~done & ~blown]
    if not paths:
        why = f" ({n_blown} of them blew up)" if n_blown else ""
        raise SimulationError(
            f"tps: none of {n_walkers} seed runs at {params.temperature_K} K found a path "
            f"{initial}->{final} within {max_steps} steps{why}; "
            + ("lower seed_temperature_K or timestep_fs, " if n_blown else
               "raise seed_temperature_K or seed_max_steps, ")
            + "or give initial_path")
    return [paths[k % len(paths)] for k in range(count)]


def prop_energy(prop: Any, slots: np.ndarray) -> np.ndarray:
    """Energies (eV) of the propagator's current configurations in ``slots``."""
    if hasattr(prop, "e"):
        return prop.e[slots]
    return np.array([prop.atoms[s].get_potential_energy() for s in slots])


def _tps_task(spec: dict[str, Any]) -> dict[str, Any]:
    """TPS for a group of chains, advanced together (one segment per chain at a time)."""
    system: System = spec["system"]
    opts: TPS = spec["options"]
    params: LangevinParams = spec["params"]
    count, split = spec["count"], spec["split"]
    initial, final = spec["initial"], spec["final"]
    i_idx, f_idx = system.basins.index(initial), system.basins.index(final)
    rng = task_rng(spec["seed"], "tps", split, initial, final, spec["task"])
    where = dict(source="tps", split=split, initial=initial, final=final, seed=int(spec["seed"]),
                 stream=["tps", split, initial, final, int(spec["task"])])
    blow_ups: list[dict[str, Any]] = []
    if opts.initial_path:
        paths = [_read_path(opts.initial_path, system, i_idx, f_idx)] * count
    else:
        hot = LangevinParams(opts.seed_temperature_K, params.timestep_fs,
                             params.friction_per_fs)
        seed_blow_ups: list[dict[str, Any]] = []
        paths = seed_paths(system, initial, final, count, hot, rng, split=split,
                           fast=spec["fast"], max_steps=opts.seed_max_steps,
                           n_walkers=opts.seed_walkers, max_path_steps=opts.seed_max_path_steps,
                           min_paths=opts.seed_min_paths, blow_ups=seed_blow_ups)
        blow_ups += [dict(where, phase="seed_run", **b) for b in seed_blow_ups]
    masses = system.make_atoms().get_masses()
    prop = make_propagator(system, params, rng, count, spec["fast"], on_blow_up="drop")
    n_atoms = paths[0][0].shape[1]
    seg_x = np.zeros((count, opts.max_segment_steps, n_atoms, 3))
    seg_e = np.zeros((count, opts.max_segment_steps))
    seg_f = np.zeros_like(seg_x)
    seg_len = np.zeros(count, dtype=int)
    shoot_at = np.zeros(count, dtype=int)
    forward = np.zeros(count, dtype=bool)
    shots_done = np.zeros(count, dtype=int)
    n_shots = opts.shots_per_chain + opts.burn_in_shots
    stats = dict(shots=0, accepted=0, reactive=0, dropped_segments=0, recorded_segments=0,
                 blown_segments=0, blown_seed_walkers=len(blow_ups))
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "e", "f", "label", "traj", "t")}

    def width_of(c: int) -> float:
        # burn-in shots pick shooting points uniformly: a hot seed path's
        # hottest frame would otherwise be picked again and again, and the
        # shooting point always stays in the new path, so the chain would
        # never forget the seed temperature
        return width if shots_done[c] >= opts.burn_in_shots else 0.0

    def shoot(c: int) -> None:
        path, energy = paths[c]
        s = _pick_shooting_point(energy, width_of(c), rng)
        shoot_at[c] = s
        forward[c] = bool(rng.random() < 0.5)
        v = maxwell_boltzmann(masses, params.temperature_K, rng, dof_mask=system.dof_mask)
        prop.reset(np.array([c]), path[s][None], v[None])
        seg_len[c] = 0

    width = opts.shooting_energy_width_eV
    for c in range(count):
        shoot(c)
    active = np.arange(count)
    while active.size:
        x, e, f = prop.step(active)
        blown = prop.last_blown
        seg_x[active, seg_len[active]] = x
        seg_e[active, seg_len[active]] = e
        seg_f[active, seg_len[active]] = f
        seg_len[active] += 1
        basin = np.where(blown, -2, system.basin_index(x))
        finished = (basin >= 0) | (seg_len[active] >= opts.max_segment_steps) | blown
        for j in np.flatnonzero(finished):
            c = int(active[j])
            n = int(seg_len[c])
            committed = int(basin[j])
            stats["shots"] += 1
            record = shots_done[c] >= opts.burn_in_shots
            if committed == -2:  # blew up: dropped, the chain shoots again from its path
                stats["blown_segments"] += 1
                blow_ups.append(blow_up_record(
                    **where, phase="shot", chain=c, shot=int(shots_done[c]),
                    trajectory=int(spec["first_id"] + c * n_shots + shots_done[c]),
                    walker=c, step=n, energy=prop.last_energy[j]))
            elif committed < 0:
                stats["dropped_segments"] += 1
            elif record:
                sel = _recorded_frames(n, opts.stride, opts.max_frames_per_segment)
                out["x"].append(seg_x[c, sel])
                out["e"].append(seg_e[c, sel])
                out["f"].append(seg_f[c, sel])
                out["label"].append(np.full(sel.size, committed))
                out["traj"].append(np.full(sel.size, spec["first_id"] + c * n_shots
                                           + shots_done[c]))
                out["t"].append((sel + 1) * params.timestep_fs)
                stats["recorded_segments"] += 1
            old_e = paths[c][1]
            new = _trial_path(paths[c], seg_x[c, :n], seg_e[c, :n], int(shoot_at[c]),
                              bool(forward[c]), committed == (f_idx if forward[c] else i_idx))
            if new is not None:
                stats["reactive"] += 1
                # p_new(s) / p_old(s) for the shooting-point selection rule
                w_c = width_of(c)
                ratio = _selection_norm(old_e, w_c) / _selection_norm(new[1], w_c)
                if rng.random() < min(1.0, ratio):
                    paths[c] = new
                    stats["accepted"] += 1
            shots_done[c] += 1
            if shots_done[c] < n_shots:
                shoot(c)
        active = np.flatnonzero(shots_done < n_shots)
    if out["x"]:
        frames = system_frames(
            system, np.concatenate(out["x"]), np.concatenate(out["e"]),
            np.concatenate(out["f"]), label=np.concatenate(out["label"]),
            label_source="committed_basin", source="tps", split=split,
            trajectory=np.concatenate(out["traj"]), time=np.concatenate(out["t"]),
            temperature=params.temperature_K)
    else:
        frames = system_frames(system, seg_x[0, :0], seg_e[0, :0], seg_f[0, :0],
                               source="tps", split=split)
    stats["path_steps"] = int(sum(len(p[0]) for p in paths))
    return {"frames": frames, "stats": stats, "blow_ups": blow_ups}


def _recorded_frames(n: int, stride: int, cap: int) -> np.ndarray:
    """Indices of the frames kept from a committed segment of ``n`` steps:
    every ``stride``-th, thinned evenly to at most ``cap`` (0: no cap), and
    always the committed end."""
    sel = np.arange(stride - 1, n, stride)
    if cap and sel.size > cap:
        sel = sel[np.unique(np.linspace(0, sel.size - 1, cap).round().astype(int))]
    if sel.size == 0 or sel[-1] != n - 1:
        sel = np.append(sel, n - 1)  # always keep the committed end
    return sel


def _trial_path(path: tuple[np.ndarray, np.ndarray], seg: np.ndarray, seg_energy: np.ndarray,
                s: int, forward: bool, reactive: bool
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """The trial path of a one-way shot from frame ``s`` of ``path``
    (positions, energies): the old path up to ``s`` then the new forward
    segment, or the reversed backward segment then the old path from ``s``;
    None when the segment did not commit to the basin the shot needed."""
    if not reactive:
        return None
    old, old_e = path
    if forward:
        return np.concatenate([old[: s + 1], seg]), np.concatenate([old_e[: s + 1], seg_energy])
    return np.concatenate([seg[::-1], old[s:]]), np.concatenate([seg_energy[::-1], old_e[s:]])


def _selection_norm(energy: np.ndarray, width: float) -> float:
    """Sum of the selection weights of a path's interior frames."""
    inner = energy[1:-1]
    if width <= 0:
        return float(len(inner))
    return float(np.exp((inner - energy.max()) / width).sum())


def _pick_shooting_point(energy: np.ndarray, width: float, rng: np.random.Generator) -> int:
    """Index of a shooting point: an interior frame, chosen uniformly
    (``width`` 0) or with probability proportional to exp(V / width)."""
    if len(energy) <= 2:
        return 0
    if width <= 0:
        return int(rng.integers(1, len(energy) - 1))
    w = np.exp((energy[1:-1] - energy.max()) / width)
    return 1 + int(rng.choice(len(w), p=w / w.sum()))


def _read_path(path: str, system: System, i_idx: int, f_idx: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a supplied reactive path; its ends must lie in the basins.
    An unreadable file, or one whose frames do not fit ``system``, raises
    :class:`DatasetError` naming it."""
    import ase.io

    try:
        images = ase.io.read(path, ":")
    except Exception as exc:  # ASE's readers raise a zoo of types for a bad file
        raise DatasetError(f"tps.initial_path: {path}: not a readable trajectory file "
                           f"({type(exc).__name__}: {exc})") from exc
    n_atoms = len(system.make_atoms())
    if not images or any(len(a) != n_atoms for a in images):
        raise DatasetError(f"tps.initial_path: {path}: expected frames of {n_atoms} atoms "
                           f"(system {system.name!r}), got {[len(a) for a in images][:5]}")
    x = np.array([a.get_positions() for a in images])
    if not np.isfinite(x).all() or len(x) < 3:
        raise DatasetError(f"tps.initial_path: {path}: expected at least 3 frames with finite "
                           f"positions, got {len(x)} frame(s)")
    if system.supports_batch:
        energy = system.energy_and_forces(x)[0]
    else:
        atoms = system.make_atoms()
        energy = np.empty(len(x))
        for k, xk in enumerate(x):
            atoms.set_positions(xk)
            energy[k] = atoms.get_potential_energy()
    ends = system.basin_index(x[[0, -1]])
    if ends[0] != i_idx or ends[1] != f_idx:
        raise DatasetError(f"tps.initial_path: {path}: the path must start in basin "
                           f"{system.basins[i_idx]!r} and end in {system.basins[f_idx]!r}; its "
                           f"ends are in basins "
                           f"{[system.basins[b] if b >= 0 else None for b in ends]}")
    return x, energy

