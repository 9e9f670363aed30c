"""Umbrella sampling along a CV: windows as Dask tasks, batched or ASE engine.

Each window holds ``walkers_per_window`` independent walkers restrained to
its centre; after ``equilibration_steps`` the CV and the unbiased energy are
recorded every ``stride`` steps. Windows are grouped into tasks of
``windows_per_task`` (by the config, not by the cluster, so results do not
depend on the number of workers); with a ``store`` directory every window is
written there atomically as soon as its task finishes, and windows already
there are reused when a run resumes.

Every step of every walker is checked for a blow-up (non-finite positions or
energies, or |energy| beyond the engine's bound). A window with a walker
that blows up is dropped -- its other walkers stop, the other windows go on
with unchanged random streams -- and reported with its seed and step in the
result's ``blow_ups`` attribute (a JSON list) and a warning; it is not
stored, so it is run again (and dropped again) on resume. Only when every
window blows up does the sampler fail (:class:`~mtcv_core.errors.SimulationError`).
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import xarray as xr

from mtcv_ase.md import (
    BatchLangevin,
    BlowUpError,
    GroupedNormals,
    LangevinParams,
    ase_langevin,
    blow_up_record,
    blown_up,
    maxwell_boltzmann,
    run_ase_langevin,
)
from mtcv_ase.md_options import MDOptions, chunks
from mtcv_core.config import nonneg, positive
from mtcv_core.errors import SimulationError
from mtcv_core.execution import map_tasks, task_rng
from mtcv_core.interfaces import (
    CollectiveVariable,
    Footprint,
    MDSettings,
    Sampler,
    StartFrames,
    System,
)
from mtcv_core.io import DatasetError, write_dataset
from mtcv_core.units import kT_eV
from mtcv_umbrella import windows as planning
from mtcv_umbrella.bias import BatchedBias, UmbrellaBias
from mtcv_umbrella.schema import make_window_dataset, merge_windows, read_window

#: windows per Dask task on the batched engine unless ``windows_per_task`` says
BATCH_WINDOWS_PER_TASK = 16


def cv_to_bytes(cv: torch.nn.Module) -> bytes:
    """A TorchScript CV as bytes (TorchScript modules do not pickle)."""
    buf = io.BytesIO()
    torch.jit.save(cv if isinstance(cv, torch.jit.ScriptModule) else torch.jit.script(cv), buf)
    return buf.getvalue()


def cv_from_bytes(data: bytes) -> torch.nn.Module:
    return torch.jit.load(io.BytesIO(data)).to(torch.float64).eval()


@dataclass(kw_only=True)
class UmbrellaSampler(MDOptions, Sampler):
    """Harmonic windows along a CV, planned, run and refined (see module
    docstring): along a line between the first transition's basins for a 1D
    CV, on a grid over the data for a 2D one."""

    name: ClassVar[str] = "umbrella"
    walkers_per_window: int = positive(4, "independent walkers per window")
    n_steps: int = positive(20000, "recorded steps per walker")
    equilibration_steps: int = nonneg(2000, "unrecorded steps per walker")
    stride: int = positive(10, "record the CV every stride-th step")
    windows_per_task: int | None = field(default=None, metadata={
        "gt": 0, "doc": "windows advanced together in one Dask task (default: 16 on the "
                        "batched engine; 1 on ASE's, so that a calculator that cannot batch "
                        "runs its windows as parallel tasks)"})
    n_windows: int = field(default=24, metadata={
        "min": 2, "doc": "windows along a 1D CV (before refinement)"})
    width_factor: float = positive(0.5, "window width sqrt(kT/k) in units of the spacing "
                                        "(0.5: neighbours two thermal widths apart)")
    refine_overlap: float = nonneg(0.02, "add a window between 1D neighbours whose overlap is "
                                         "below this")
    max_refinements: int = nonneg(4, "passes that add windows where the previous pass fell "
                                     "short")
    grid_points: int = positive(14, "grid nodes per dimension for a 2D CV (spacing: the data's "
                                    "span / grid_points)")
    grid_spacing: float | None = field(default=None, metadata={
        "gt": 0, "doc": "grid spacing for a 2D CV, CV units (overrides grid_points)"})
    spectator_moves: int = nonneg(
        0, "every this many MD steps (equilibration included) one Monte Carlo move per "
           "walker: the system's periodic spectator coordinates redrawn uniformly, accepted "
           "by Metropolis on the restraint energy -- exact for the window's ensemble, as the "
           "potential energy does not depend on spectators. Walkers then need not wait for "
           "slow spectators that xi reads (on the 5D models the embedding angles relax over "
           "hundreds of ps, windows run tens). 0: off; needs a system declaring periodic "
           "spectators (System.spectator_periods)")

    reseed_passes: int = nonneg(
        1, "passes that run again the windows whose walkers disagree beyond their own "
           "statistics (mtcv_core.ergodicity.walker_excess, p < reseed_p: a mode slower than "
           "the run keeps each walker near its start), each time with new starts and random "
           "streams and reseed_factor times the steps; the new run replaces the window. "
           "Windows still disagreeing after the last pass are listed in the result "
           "(windows_disagreeing). 0: off")
    reseed_factor: int = field(default=2, metadata={
        "min": 1, "doc": "steps of a re-seeded window, in units of the previous run's"})
    reseed_p: float = field(default=1e-3, metadata={
        "gt": 0, "lt": 1, "doc": "walker-agreement test level that sends a window to be "
                                 "re-seeded"})
    reseed_max_fraction: float = field(default=0.25, metadata={
        "gt": 0, "max": 1, "doc": "re-seed only when at most this fraction of the windows "
                                  "disagree: more means modes orthogonal to the CV that no "
                                  "affordable window equilibrates (alanine at 50 K: 38 of 52 "
                                  "windows, still disagreeing at twice the steps); they are "
                                  "reported, not run again"})

    def bias_calculator(self, calc: Any, cv: torch.nn.Module, *, center: np.ndarray,
                        spring_constant: np.ndarray, period: np.ndarray | None = None) -> Any:
        """:class:`mtcv_umbrella.UmbrellaBias`: the harmonic restraint
        0.5 k (xi - c)^2 (minimum image along periodic dimensions) on top of
        ``calc``."""
        from mtcv_umbrella.bias import UmbrellaBias

        return UmbrellaBias(calc, cv, center, spring_constant, period=period)

    def check(self, system: System) -> None:
        """``spectator_moves`` needs periodic spectators to move."""
        from mtcv_core.config import ConfigError
        from mtcv_core.spectators import periodic_spectators

        if self.spectator_moves and not len(periodic_spectators(system)):
            raise ConfigError(f"spectator_moves = {self.spectator_moves}: system "
                              f"{system.name!r} declares no periodic spectator coordinates "
                              "(System.spectator_names / spectator_periods); set it to 0")

    def task_windows(self, fast: bool) -> int:
        """Windows per Dask task: ``windows_per_task``, else
        :data:`BATCH_WINDOWS_PER_TASK` on the batched engine and 1 on ASE's
        (every window draws its own random streams: the grouping changes no
        trajectory)."""
        if self.windows_per_task is not None:
            return int(self.windows_per_task)
        return BATCH_WINDOWS_PER_TASK if fast else 1

    def footprint(self, system: System, *, n_atoms: int, cv_dim: int) -> Footprint:
        """The windows' series (CV values and energy, float64) held together
        and written; windows before refinement (``n_windows`` along a line,
        ``grid_points`` squared on a grid), so a lower bound along a line."""
        windows = self.n_windows if cv_dim == 1 else self.grid_points ** cv_dim
        samples = float(windows) * self.walkers_per_window * (self.n_steps // self.stride)
        size = samples * (cv_dim + 1) * 8
        per_task = self.windows_per_task or BATCH_WINDOWS_PER_TASK
        walkers = float(per_task) * self.walkers_per_window * n_atoms * 3 * 8 * 8
        return Footprint(memory_bytes=3 * size + walkers, disk_bytes=size,
                         what=f"{windows} windows x {self.walkers_per_window} walkers x "
                              f"{self.n_steps // self.stride} samples")

    # ---------------------------------------------------------- the stage's entry point
    def run(self, system: System, cv: CollectiveVariable, *, frames: StartFrames,
            transitions: Sequence[tuple[int, int]], md: MDSettings | None = None, seed: int,
            client: Any = None, store: Path | None = None,
            progress: bool = False) -> xr.Dataset:
        """Plan windows along ``cv`` from the start ``frames``, run them,
        then up to ``max_refinements`` passes that add windows where the
        previous pass fell short (each pass runs only the new windows; the
        rest come back from ``store``). The result's ``windows_added`` counts
        the windows refinement added."""
        settings = self.settings(md)
        kT = kT_eV(settings.temperature_K)
        values = np.asarray(frames.cv_values, float).reshape(len(frames.cv_values), -1)
        if values.shape[1] != cv.dim:
            raise ValueError(f"umbrella: frames.cv_values has {values.shape[1]} columns for a "
                             f"{cv.dim}-dimensional CV {cv.names}")
        if cv.dim == 1:
            if not transitions:
                raise ValueError("umbrella: a 1D CV needs a transition (basin pair) to span")
            a, b = transitions[0]
            plan = planning.plan_windows(values[:, 0], frames.labels, a, b,
                                         n_windows=self.n_windows, kT=kT,
                                         width_factor=self.width_factor)
        elif cv.dim == 2:
            spacing = (self.grid_spacing if self.grid_spacing is not None else
                       (values.max(axis=0) - values.min(axis=0)) / self.grid_points)
            plan = planning.plan_grid(values, spacing=spacing, kT=kT,
                                      width_factor=self.width_factor)
        else:
            raise ValueError(f"umbrella: windows along a {cv.dim}-dimensional CV are not "
                             "supported (1 or 2 dimensions)")

        def run(plan: planning.WindowPlan, first_id: int = 0,
                sampler: UmbrellaSampler = self) -> xr.Dataset:
            starts = planning.walker_starts(values, plan.centers, self.walkers_per_window, seed,
                                            first_id=first_id)
            return sampler.run_windows(system, cv.module, centers=plan.centers,
                                       spring_constants=plan.spring_constants,
                                       start_positions=frames.positions[starts], md=settings,
                                       seed=seed, client=client, store=store,
                                       first_id=first_id, cv_names=cv.names,
                                       cv_units=cv.units, cv_periods=cv.periods,
                                       progress=progress)

        result = run(plan)
        added = 0
        for _ in range(self.max_refinements):
            if cv.dim == 1:
                new = self.refine_line(result, plan, values[:, 0], kT=kT, frames=frames,
                                       cv=cv.module, timestep_fs=settings.timestep_fs)
            else:
                new = self.refine_grid(result, plan)
            if len(new.centers) == len(plan.centers):
                break
            added += len(new.centers) - len(plan.centers)
            plan = new
            result = run(plan)
        result = self.reseed(result, run, first_id=len(plan.centers), kT=kT,
                             periods=cv.periods)
        result.attrs["windows_added"] = int(added)
        return result

    # ---------------------------------------------------------- re-seeding
    def reseed(self, result: xr.Dataset, run: Any, *, first_id: int, kT: float,
               periods: Any = None) -> xr.Dataset:
        """``result`` with every window whose walkers disagree beyond their own
        statistics (:func:`mtcv_core.ergodicity.walker_excess` below
        ``reseed_p``) run again, up to ``reseed_passes`` times: new walker
        starts and random streams (new window ids from ``first_id``),
        ``reseed_factor`` times the previous run's steps; the new run takes
        the old one's place. Windows that a stiffer window at their centre
        stands in for (the refiner's answer to an unstable window, left out
        by the estimator) are not re-seeded. ``run(plan, first_id, sampler)``
        runs a plan. Nothing is run again when more than
        ``reseed_max_fraction`` of the windows disagree (systemic: modes
        slower than any window). Attributes added: ``windows_reseeded`` (JSON list of
        ``{"window", "replaced_by", "pass", "ratio", "p"}``) and
        ``windows_disagreeing`` (JSON list of ``{"window", "ratio", "p"}``
        still failing after the last pass)."""
        import dataclasses

        from mtcv_core.ergodicity import superseded_windows, walker_excess

        walkers = int(result.attrs.get("walkers", self.walkers_per_window))
        records: list[dict[str, Any]] = []
        sampler: UmbrellaSampler = self
        failing: list[dict[str, Any]] = []
        for n_pass in range(self.reseed_passes + 1):
            ids = result["window"].values
            k = result["spring_constant"].values
            stood_in = superseded_windows(result["center"].values, k, kT, periods=periods,
                                          unstable=np.zeros(len(ids), bool))
            failing = []
            for w in range(len(ids)):
                if stood_in[w]:
                    continue
                n = int(result["n_samples"].values[w])
                ratio, p = walker_excess(result["cv_values"].values[w, :n], walkers)
                if p == p and p < self.reseed_p:
                    failing.append({"window": int(ids[w]), "index": w, "ratio": round(ratio, 3),
                                    "p": float(f"{p:.3g}")})
            if (not failing or n_pass == self.reseed_passes
                    or len(failing) > self.reseed_max_fraction * len(ids)):
                break
            sampler = dataclasses.replace(sampler, n_steps=sampler.n_steps * self.reseed_factor)
            index = np.array([f["index"] for f in failing])
            plan = planning.WindowPlan(result["center"].values[index],
                                       result["spring_constant"].values[index])
            new = run(plan, first_id, sampler)
            new_ids = [int(i) for i in new["window"].values]
            kept_old = np.setdiff1d(np.arange(len(ids)), index)
            replaced = {int(first_id + j): f for j, f in enumerate(failing)}
            for new_id in new_ids:
                f = replaced[new_id]
                records.append({"window": f["window"], "replaced_by": new_id,
                                "pass": n_pass + 1, "ratio": f["ratio"], "p": f["p"]})
            attrs = dict(result.attrs)
            attrs["blow_ups"] = json.dumps(json.loads(attrs.get("blow_ups", "[]"))
                                           + json.loads(new.attrs.get("blow_ups", "[]")))
            if "spectator_acceptance" in attrs:
                attrs["spectator_acceptance"] = json.dumps({
                    **json.loads(attrs["spectator_acceptance"]),
                    **json.loads(new.attrs.get("spectator_acceptance", "{}"))})
            result = xr.concat([result.isel(window=kept_old), new], dim="window",
                               join="outer", data_vars="minimal", coords="minimal",
                               compat="override", combine_attrs="override")
            result.attrs.update(attrs)
            first_id += len(failing)
        result.attrs["windows_reseeded"] = json.dumps(records)
        result.attrs["windows_disagreeing"] = json.dumps(
            [{k: f[k] for k in ("window", "ratio", "p")} for f in failing])
        return result

    # ---------------------------------------------------------- refinement
    def refine_line(self, result: xr.Dataset, plan: planning.WindowPlan, xi: np.ndarray, *,
                    kT: float, frames: StartFrames | None = None, cv: Any = None,
                    timestep_fs: float = 1.0, tolerance: float = 4.0) -> planning.WindowPlan:
        """The plan extended where the first pass fell short
        (:func:`mtcv_umbrella.windows.refine_line_centers`): stiffer windows
        over every stretch of xi that no window visited and where a window's
        walkers disagree, and a window between neighbours whose overlap is
        below ``refine_overlap``. Existing windows keep their order (and so
        their ids).

        With the start ``frames`` behind ``xi`` and the ``cv`` module, springs
        are capped so that the restraint's frequency in configuration space,
        sqrt(k |grad xi|^2 / m), stays below 0.2 / timestep: a sharp CV with a
        stiff spring would otherwise make the integrator inaccurate or
        unstable."""
        n = result.sizes["window"]
        samples = [result["cv_values"].values[w, : int(result["n_samples"][w]), 0]
                   for w in range(n)]
        centers = result["center"].values[:, 0]
        k = result["spring_constant"].values[:, 0]
        k_max = np.inf
        if frames is not None and cv is not None:
            k_max = self._stable_spring(k, xi, centers, frames.positions, cv, frames.masses,
                                        timestep_fs)
        new_c, new_k = planning.refine_line_centers(
            centers, k, samples, walkers=int(result.attrs.get("walkers", 1)), kT=kT,
            overlap_threshold=self.refine_overlap, k_max=k_max, tolerance=tolerance)
        if not new_c.size:
            return plan
        return planning.WindowPlan(np.concatenate([plan.centers, new_c[:, None]]),
                                   np.concatenate([plan.spring_constants, new_k[:, None]]))

    def refine_grid(self, result: xr.Dataset, plan: planning.WindowPlan, *,
                    tolerance: float = 4.0) -> planning.WindowPlan:
        """The plan with a four times stiffer window at the centre of every
        window whose walkers disagree (a soft window on a saddle of a
        many-dimensional free-energy surface); centres whose stiffest window
        already agrees get nothing."""
        n = result.sizes["window"]
        walkers = int(result.attrs.get("walkers", 1))
        centers = result["center"].values
        k = result["spring_constant"].values
        ok = planning.consistent_windows(
            [result["cv_values"].values[w, : int(result["n_samples"][w])] for w in range(n)],
            walkers, tolerance)
        add = []
        for w in np.flatnonzero(~ok):
            same = np.all(np.isclose(centers, centers[w]), axis=1)
            if k[w].sum() >= k[same].sum(axis=1).max():
                add.append(w)
        if not add:
            return plan
        add_arr = np.array(add)
        return planning.WindowPlan(np.concatenate([plan.centers, centers[add_arr]]),
                                   np.concatenate([plan.spring_constants, 4.0 * k[add_arr]]))

    def _stable_spring(self, k: np.ndarray, xi: np.ndarray, centers: np.ndarray,
                       positions: np.ndarray, cv: Any, masses: np.ndarray,
                       timestep_fs: float) -> float:
        """The stiffest spring that keeps the restraint's angular frequency
        sqrt(k sum_i |grad_i xi|^2 / m_i) below 0.2 / timestep at the frames
        nearest the windows (99th percentile of the mass-weighted squared
        gradient; never softer than the softest existing window)."""
        near = np.argsort(np.abs(xi[None, :] - centers[:, None]), axis=1)[:, :20]
        g2 = float(np.quantile(_grad_norm2(cv, positions[np.unique(near.ravel())], masses), 0.99))
        amu_per_dt2 = 103.6427 / timestep_fs**2  # eV/A^2 per amu at this time step
        return max(float(np.min(k)), 0.04 * amu_per_dt2 / max(g2, 1e-12))

    # --------------------------------------------------------------- run
    def run_windows(self, system: System, cv: Any, *, seed: int, client: Any = None,
                    centers: np.ndarray, spring_constants: np.ndarray,
                    start_positions: np.ndarray, md: MDSettings | None = None,
                    store: str | Path | None = None, first_id: int = 0,
                    cv_names: tuple[str, ...] | None = None, cv_units: str = "1",
                    cv_periods: Any = None, progress: bool = False) -> xr.Dataset:
        """Run windows ``first_id, first_id + 1, ...`` as given (no planning).

        centers, spring_constants: (n_windows, d); start_positions:
        (n_windows, n_atoms, 3) angstrom (all walkers of a window start
        there) or (n_windows, n_starts, n_atoms, 3) (walker j starts from
        ``start_positions[w, j % n_starts]``); ``cv`` a torch module
        positions -> (n, d); ``cv_periods`` (d,) the periods of periodic CV
        dimensions (0: not periodic); ``md`` the run's MD settings (the
        sampler's own options override them). Returns the umbrella dataset of
        these windows.
        """
        params = self.params(md)
        centers = np.atleast_2d(np.asarray(centers, float))
        ks = np.broadcast_to(np.asarray(spring_constants, float), centers.shape)
        n_win = len(centers)
        if cv_names is None:
            d = centers.shape[1]
            cv_names = ("xi",) if d == 1 else tuple(f"xi{i}" for i in range(d))
        ids = np.arange(first_id, first_id + n_win)
        start_positions = np.asarray(start_positions, float)
        if start_positions.ndim == 3:
            start_positions = start_positions[:, None]
        if start_positions.ndim != 4 or len(start_positions) != n_win:
            raise ValueError(f"umbrella: start_positions must be (n_windows, [n_starts,] "
                             f"n_atoms, 3) with n_windows={n_win}, got shape "
                             f"{start_positions.shape}")
        store_dir = Path(store) if store is not None else None
        done: dict[int, xr.Dataset] = {}
        if store_dir is not None:
            for i, w in enumerate(ids):
                path = store_dir / f"window_{w:04d}.nc"
                if path.exists():
                    try:
                        win = read_window(path)
                    except DatasetError as exc:  # damaged since it was written: run it again
                        warnings.warn(f"{exc}; running the window again", RuntimeWarning,
                                      stacklevel=2)
                        continue
                    if _same_window(win, centers[i], ks[i], self.walkers_per_window):
                        done[int(w)] = win
                    else:  # planned differently (changed code or options): run it again
                        warnings.warn(f"{path}: stored window has another centre, spring or "
                                      "walker count than planned; running it again",
                                      RuntimeWarning, stacklevel=2)
        todo = [i for i in range(n_win) if int(ids[i]) not in done]
        cv_bytes = cv_to_bytes(cv)
        specs = [dict(system=system, cv=cv_bytes, ids=ids[todo[s:s + c]],
                      centers=centers[todo[s:s + c]], k=ks[todo[s:s + c]],
                      start=start_positions[todo[s:s + c]], params=params,
                      seed=seed, fast=self.use_fast(system, md), walkers=self.walkers_per_window,
                      n_steps=self.n_steps, n_eq=self.equilibration_steps, stride=self.stride,
                      spectator_moves=self.spectator_moves,
                      cv_names=cv_names, cv_units=cv_units,
                      cv_periods=None if cv_periods is None else
                      np.broadcast_to(np.asarray(cv_periods, float), centers.shape[1:]).copy())
                 for s, c in chunks(len(todo), self.task_windows(self.use_fast(system, md)))]

        def keep(_: int, result: dict[str, Any]) -> None:
            """A task's windows, written as soon as it finishes (an
            interrupted run resumes from them)."""
            for win in result["windows"]:
                w = int(win.attrs["window_id"])
                if store_dir is not None:
                    write_dataset(win, store_dir / f"window_{w:04d}.nc")
                done[w] = win

        results = map_tasks(_window_task, specs, client=client, progress=progress,
                            desc="umbrella windows", on_result=keep)
        blow_ups = [b for result in results for b in result["blow_ups"]]
        for b in blow_ups:
            warnings.warn(f"umbrella: window {b['window']} (walker {b['walker']}, seed {seed}) "
                          f"blew up at step {b['step']} (energy {b['energy_eV']} eV); the "
                          "window is dropped, the others are kept", RuntimeWarning, stacklevel=2)
        kept = [done[int(w)] for w in ids if int(w) in done]
        if not kept:
            raise SimulationError(
                f"umbrella: all {n_win} windows blew up (first: window {blow_ups[0]['window']} "
                f"at step {blow_ups[0]['step']}, seed {seed}); lower timestep_fs or the "
                "spring constants")
        merged = merge_windows(kept, temperature_K=params.temperature_K)
        merged.attrs["blow_ups"] = json.dumps(sorted(blow_ups, key=lambda b: b["window"]))
        if self.spectator_moves:
            merged.attrs["spectator_moves"] = int(self.spectator_moves)
            merged.attrs["spectator_acceptance"] = json.dumps(
                {int(w.attrs["window_id"]): w.attrs.get("spectator_acceptance") for w in kept})
        return merged


def _grad_norm2(cv: Any, positions: np.ndarray, masses: np.ndarray | None = None
                ) -> np.ndarray:
    """sum_i |grad_i xi|^2 / m_i at each frame (1/(angstrom^2 amu), summed
    over CV components); unit masses when ``masses`` is None."""
    pos = torch.tensor(positions, dtype=torch.float64, requires_grad=True)
    xi = cv.to(torch.float64)(pos)
    inv_m = torch.ones(pos.shape[1], dtype=torch.float64) if masses is None else \
        1.0 / torch.as_tensor(np.asarray(masses, float))
    out = np.zeros(len(positions))
    for d in range(xi.shape[1]):
        (g,) = torch.autograd.grad(xi[:, d].sum(), pos, retain_graph=True)
        out += ((g**2).sum(dim=2) * inv_m).sum(dim=1).detach().numpy()
    return out


def _same_window(win: xr.Dataset, center: np.ndarray, k: np.ndarray, walkers: int) -> bool:
    """Whether a stored window was run with this centre, spring and walkers."""
    return (np.allclose(win["center"].values, center, rtol=1e-12, atol=0.0)
            and np.allclose(win["spring_constant"].values, k, rtol=1e-12, atol=0.0)
            and int(win.attrs.get("walkers", -1)) == int(walkers))


def _window_task(spec: dict[str, Any]) -> dict[str, list[Any]]:
    """Advance a group of windows; returns ``{"windows": one dataset per
    window that did not blow up, "blow_ups": a record per window that did}``."""
    system: System = spec["system"]
    params: LangevinParams = spec["params"]
    cv = cv_from_bytes(spec["cv"])
    torch.set_num_threads(1)
    ids, centers, k, start = spec["ids"], spec["centers"], spec["k"], spec["start"]
    m = spec["walkers"]
    # one random stream per window: a window's samples do not depend on the
    # windows it shares a task with (so a resumed run equals an uninterrupted one)
    rngs = [task_rng(spec["seed"], "umbrella-window", int(w)) for w in ids]
    # spectator moves draw from streams of their own: with moves off (the
    # default) the dynamics are exactly those of a run without the option
    every = int(spec.get("spectator_moves", 0))
    mc_rngs = [task_rng(spec["seed"], "umbrella-spectators", int(w)) for w in ids] if every \
        else []
    masses = system.make_atoms().get_masses()
    n_rec = spec["n_steps"] // spec["stride"]
    # walker order: window-major, m walkers per window
    x0 = start[:, np.arange(m) % start.shape[1]].reshape(-1, *start.shape[2:])
    v0 = np.concatenate([maxwell_boltzmann(masses, params.temperature_K, r, n=m,
                                           dof_mask=system.dof_mask) for r in rngs])
    run = dict(system=system, cv=cv, centers=np.repeat(centers, m, axis=0),
               springs=np.repeat(k, m, axis=0), x0=x0, v0=v0, masses=masses, rngs=rngs, m=m,
               params=params, n_eq=spec["n_eq"], n_steps=spec["n_steps"],
               stride=spec["stride"], periods=spec["cv_periods"],
               cv_rec=np.zeros((n_rec, len(x0), centers.shape[1])),
               e_rec=np.zeros((n_rec, len(x0))), blown={},
               every=every, mc_rngs=mc_rngs, kT=kT_eV(params.temperature_K),
               mc_tries=np.zeros(len(x0)), mc_accepted=np.zeros(len(x0)))

    def blow_up(j: int, step: int, energy: float) -> None:
        """Walker ``j`` (task order) blew up at ``step``: drop its window."""
        i = j // m
        if i not in run["blown"]:
            run["blown"][i] = blow_up_record(
                source="umbrella", window=int(ids[i]), walker=int(j % m),
                seed=int(spec["seed"]), stream=["umbrella-window", int(ids[i])], step=step,
                energy=energy)

    (_fast_windows if spec["fast"] else _ase_windows)(run, blow_up)
    blown, cv_rec, e_rec = run["blown"], run["cv_rec"], run["e_rec"]
    out = []
    for i, w in enumerate(ids):
        if i in blown:
            continue
        sel = slice(i * m, (i + 1) * m)
        # samples: walker-major so each walker's series stays contiguous
        series = np.swapaxes(cv_rec[:, sel], 0, 1).reshape(-1, centers.shape[1])
        energy = e_rec[:, sel].T.reshape(-1)
        win = make_window_dataset(
            window_id=int(w), center=centers[i], spring_constant=k[i], cv_values=series,
            energy=energy, walkers=m, temperature_K=params.temperature_K,
            cv_names=spec["cv_names"], cv_units=spec["cv_units"], cv_period=spec["cv_periods"])
        if every:
            tries = float(run["mc_tries"][sel].sum())
            win.attrs["spectator_moves"] = every
            win.attrs["spectator_acceptance"] = (float(run["mc_accepted"][sel].sum()) / tries
                                                 if tries else float("nan"))
        out.append(win)
    return {"windows": out, "blow_ups": [blown[i] for i in sorted(blown)]}


def _fast_windows(run: dict[str, Any], blow_up: Any) -> None:
    """All walkers of the task advanced together (:class:`BatchLangevin` on
    :class:`BatchedBias`), recording xi and the unbiased energy into
    ``run["cv_rec"]``/``run["e_rec"]``. A walker that blows up drops its
    window: all the window's walkers are parked, the others go on."""
    m, n_eq, n_steps, stride = run["m"], run["n_eq"], run["n_steps"], run["stride"]
    forces = BatchedBias(run["system"], run["cv"], run["centers"], run["springs"],
                         periods=run["periods"])
    noise = GroupedNormals(run["rngs"], [m] * len(run["rngs"]))
    integ = BatchLangevin(forces, run["masses"], run["params"], noise,
                          dof_mask=run["system"].dof_mask)
    x, v = run["x0"], run["v0"]
    with np.errstate(over="ignore", invalid="ignore"):
        e, f = integ.evaluate(x)
    alive = np.ones(len(x), dtype=bool)
    held = np.array(x, dtype=float)
    window_of = np.arange(len(x)) // m
    x_prev = x
    for s in range(0, n_eq + n_steps + 1):
        if s:
            x_prev = x
            x, v, f, e = integ.step(x, v, f)
        bad = integ.blown(x, e) & alive
        if bad.any():  # drop the windows of these walkers; park all their walkers
            for j in np.flatnonzero(bad):
                blow_up(int(j), s, e[j])
            rows = np.isin(window_of, list(run["blown"])) & alive
            good = alive & ~rows
            fallback = x[good][0] if good.any() else 0.0
            held[rows] = np.where(bad[rows, None, None], x_prev[rows] if s else fallback,
                                  x[rows])
            alive &= ~rows
            if not alive.any():
                break  # every window of this task blew up
        if not alive.all():
            integ.hold(x, v, f, ~alive, held)
        if run["every"] and s and s % run["every"] == 0:
            x, e, f = _spectator_move_batch(run, forces, integ, x, e, f, alive)
        if s > n_eq and (s - n_eq) % stride == 0:
            r = (s - n_eq) // stride - 1
            run["cv_rec"][r] = forces.last_cv
            run["e_rec"][r] = forces.last_unbiased


def _spectator_move_batch(run: dict[str, Any], forces: BatchedBias, integ: BatchLangevin,
                          x: np.ndarray, e: np.ndarray, f: np.ndarray, alive: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One spectator Monte Carlo move of every live walker (see
    ``UmbrellaSampler.spectator_moves``): the periodic spectators redrawn
    (:func:`mtcv_core.spectators.redraw_periodic`, each window from its own
    stream), accepted with probability ``min(1, exp(-(b_new - b_old)/kT))``
    of the restraint energies b. Velocities are kept (they are independent
    of positions in equilibrium). Returns the new x, energy and forces."""
    from mtcv_core.spectators import redraw_periodic

    m = run["m"]
    bias_old = forces.last_bias.copy()
    proposal = np.empty_like(x)
    u = np.empty(len(x))
    for i, rng in enumerate(run["mc_rngs"]):
        sel = slice(i * m, (i + 1) * m)
        proposal[sel] = redraw_periodic(run["system"], x[sel], rng)
        u[sel] = rng.uniform(size=m)
    bias_new, _, _ = forces.bias(proposal)
    with np.errstate(over="ignore", invalid="ignore"):
        accept = alive & (u < np.exp(-(bias_new - bias_old) / run["kT"]))
    run["mc_tries"] += alive
    run["mc_accepted"] += accept
    if accept.any():
        x = np.where(accept[:, None, None], proposal, x)
        e, f = integ.evaluate(x)  # also refreshes forces.last_cv / last_bias
    return x, e, f


def _spectator_move_ase(atoms: Any, system: System, rng: np.random.Generator, kT: float,
                        tally: np.ndarray) -> None:
    """The move of :func:`_spectator_move_batch` on one ASE walker whose
    calculator is an :class:`UmbrellaBias`; ``tally`` (2,) counts tries and
    acceptances."""
    from mtcv_core.spectators import redraw_periodic

    atoms.get_potential_energy()
    old = atoms.get_positions()
    bias_old = float(atoms.calc.results["bias_energy"])
    proposal = redraw_periodic(system, old[None], rng)[0]
    u = rng.uniform()
    atoms.set_positions(proposal)
    atoms.get_potential_energy()
    bias_new = float(atoms.calc.results["bias_energy"])
    tally[0] += 1
    with np.errstate(over="ignore"):
        if u < np.exp(-(bias_new - bias_old) / kT):
            tally[1] += 1
        else:  # back, with the calculator's results (recorded next) for it
            atoms.set_positions(old)
            atoms.get_potential_energy()


def _ase_windows(run: dict[str, Any], blow_up: Any) -> None:
    """Each walker by ASE's own Langevin on the system's calculator wrapped in
    :class:`UmbrellaBias`, one after the other (the reference path)."""
    m, n_eq, n_steps, stride = run["m"], run["n_eq"], run["n_steps"], run["stride"]
    params = run["params"]
    for w in range(len(run["x0"])):
        if w // m in run["blown"]:
            continue  # its window already blew up
        rng = run["rngs"][w // m]
        atoms = run["system"].make_atoms()
        atoms.set_positions(run["x0"][w])
        atoms.set_velocities(run["v0"][w])
        atoms.calc = UmbrellaBias(atoms.calc, run["cv"], run["centers"][w], run["springs"][w],
                                  period=run["periods"])
        cvs, es = [], []

        def record(a=atoms, cvs=cvs, es=es, dyn_steps=lambda: 0) -> None:
            _check_finite(a, n_eq + dyn_steps())
            cvs.append(np.atleast_1d(a.calc.results["cv"]).copy())
            es.append(a.calc.results["unbiased_energy"])

        every = run["every"]
        tally = np.zeros(2)

        def move(a=atoms, mc=run["mc_rngs"][w // m] if every else None, tally=tally) -> None:
            _spectator_move_ase(a, run["system"], mc, run["kT"], tally)

        try:
            if n_eq and every:  # the move counts steps from the start, as the batched path
                eq = ase_langevin(atoms, params, rng)
                for start in range(0, n_eq, every):
                    eq.run(min(every, n_eq - start))
                    if start + every <= n_eq:
                        move()
                _check_finite(atoms, n_eq)
            elif n_eq:
                run_ase_langevin(atoms, n_eq, params, rng, stride=1)
            dyn = ase_langevin(atoms, params, rng)
            if every:
                offset = n_eq % every

                def move_on_schedule(d=dyn, offset=offset, every=every, move=move) -> None:
                    if d.nsteps and (d.nsteps + offset) % every == 0:
                        move()

                dyn.attach(move_on_schedule, interval=1)
            dyn.attach(record, interval=1, dyn_steps=lambda d=dyn: d.nsteps)
            with np.errstate(over="ignore", invalid="ignore"):
                dyn.run(n_steps)
        except BlowUpError as exc:
            blow_up(w, exc.step if exc.step is not None else 0,
                    atoms.calc.results.get("energy", np.nan))
            continue
        run["cv_rec"][:, w] = np.array(cvs[stride::stride])  # ASE records step 0 too
        run["e_rec"][:, w] = np.array(es[stride::stride])
        run["mc_tries"][w], run["mc_accepted"][w] = tally


def _check_finite(atoms: Any, step: int) -> None:
    """Raise :class:`BlowUpError` if ``atoms`` has blown up (at ``step``)."""
    energy = atoms.get_potential_energy()
    if blown_up(atoms.get_positions()[None], np.array([energy]), 1e6)[0]:
        raise BlowUpError(f"ASE umbrella walker blew up: energy {energy!r}", step=step)
