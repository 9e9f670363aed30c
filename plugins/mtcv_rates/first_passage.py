"""Brute-force rate constants: many unbiased walkers, first passages between
basins counted by the state last visited (:func:`mtcv_core.rates.first_passages`,
online).

Each walker starts in a basin (as many in each), runs plain Langevin MD
with the run's engine, and is labelled by ``system.basin_index`` every
``check_every`` steps. Its last visited basin changes i -> j: one transition
i -> j; the time until then counts for i. The rate ``k_ij = N_ij / T_i``
(1/s) with a 95 % interval from the Poisson distribution of ``N_ij``
(transitions of well-separated rare events are close to Poisson; the
interval assumes it), and the mean first-passage time ``1 / k_ij``.
Walkers that blow up stop counting (reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from mtcv_ase.md import LangevinParams, make_propagator, maxwell_boltzmann
from mtcv_core.execution import map_tasks, task_rng
from mtcv_core.interfaces import System
from mtcv_core.rates import FS_PER_S
from mtcv_core.schema import SCHEMA_ATTR

#: the schema name of :func:`rates_dataset`'s datasets
FIRST_PASSAGE_SCHEMA = "mtcv.first_passages/1"


@dataclass(frozen=True)
class BruteForceRates:
    """Plain MD of ``walkers`` walkers for ``n_steps`` each (fs steps of
    ``timestep_fs``, Langevin friction ``friction_per_fs`` 1/fs, at
    ``temperature_K``), labelled every ``check_every`` steps;
    ``walkers_per_task`` advanced together in one task. ``states``: the
    basins counted (default all); a walker in another basin is in transit,
    as outside every basin (an intermediate that a rate A -> B passes
    through), and walkers start only in these."""

    temperature_K: float
    walkers: int = 256
    n_steps: int = 100_000
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    check_every: int = 10
    walkers_per_task: int = 64
    states: tuple[str, ...] | None = None

    def run(self, system: System, *, seed: int, client: Any = None,
            progress: bool = False) -> xr.Dataset:
        """Counts, times and rates (:func:`rates_dataset`)."""
        for name in ("walkers", "n_steps", "check_every", "walkers_per_task"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"brute-force rates: {name} must be >= 1, got "
                                 f"{getattr(self, name)}")
        states = None
        if self.states is not None:
            unknown = [b for b in self.states if b not in system.basins]
            if unknown or len(set(self.states)) < 2:
                raise ValueError(f"brute-force rates: states must be two or more of the "
                                 f"basins {list(system.basins)}, got {list(self.states)}")
            states = [system.basins.index(b) for b in self.states]
        params = LangevinParams(temperature_K=self.temperature_K,
                                timestep_fs=self.timestep_fs,
                                friction_per_fs=self.friction_per_fs)
        specs = []
        for task, start in enumerate(range(0, self.walkers, self.walkers_per_task)):
            count = min(self.walkers_per_task, self.walkers - start)
            specs.append(dict(system=system, params=params, count=count, seed=seed,
                              task=task, first=start, n_steps=self.n_steps,
                              check_every=self.check_every, states=states))
        results = map_tasks(_first_passage_task, specs, client=client, progress=progress,
                            desc="brute-force rates")
        counts = sum(r["counts"] for r in results)
        time_fs = sum(r["time_fs"] for r in results)
        blown = int(sum(r["blown"] for r in results))
        out = rates_dataset(counts, time_fs, list(system.basins))
        out.attrs.update(temperature_K=float(self.temperature_K), walkers=int(self.walkers),
                         n_steps=int(self.n_steps), timestep_fs=float(self.timestep_fs),
                         friction_per_fs=float(self.friction_per_fs),
                         check_every=int(self.check_every), blown_walkers=blown,
                         states=" ".join(system.basins[i] for i in states)
                         if states is not None else " ".join(system.basins),
                         engine="batched Langevin (mtcv_ase.md, ASE's Langevin scheme)",
                         seed=int(seed))
        return out


def _first_passage_task(spec: dict[str, Any]) -> dict[str, Any]:
    """``count`` walkers started round-robin in the basins: transition
    counts (n_b, n_b) and time (fs) per last visited basin (n_b,)."""
    system: System = spec["system"]
    params: LangevinParams = spec["params"]
    count, check = int(spec["count"]), int(spec["check_every"])
    rng = task_rng(spec["seed"], "first_passage", spec["task"])
    basins = list(system.basins)
    n_b = len(basins)
    states = spec.get("states")
    counted = list(range(n_b)) if states is None else list(states)
    start = [basins[counted[(spec["first"] + w) % len(counted)]] for w in range(count)]
    x0 = np.concatenate([system.start_positions(b, 1, rng=rng, split="train")
                         for b in start])
    masses = system.make_atoms(basins[0]).get_masses()
    v0 = maxwell_boltzmann(masses, params.temperature_K, rng, n=count,
                           dof_mask=system.dof_mask)
    prop = make_propagator(system, params, rng, count, True, on_blow_up="drop")
    slots = np.arange(count)
    prop.reset(slots, x0, v0)
    last = np.array([basins.index(b) for b in start])
    alive = np.ones(count, bool)
    counts = np.zeros((n_b, n_b), dtype=np.int64)
    time_fs = np.zeros(n_b)
    steps_done = 0
    while steps_done < spec["n_steps"]:
        block = min(check, spec["n_steps"] - steps_done)
        for _ in range(block):
            x, _, _ = prop.step(slots)
            alive &= ~prop.last_blown
        steps_done += block
        np.add.at(time_fs, last[alive], block * params.timestep_fs)
        lab = system.basin_index(x)
        if states is not None:
            lab = np.where(np.isin(lab, counted), lab, -1)
        moved = alive & (lab >= 0) & (lab != last)
        np.add.at(counts, (last[moved], lab[moved]), 1)
        last[moved] = lab[moved]
    return {"counts": counts, "time_fs": time_fs, "blown": int((~alive).sum())}


def rates_dataset(counts: np.ndarray, time_fs: np.ndarray, basins: list[str]) -> xr.Dataset:
    """Rates from transition counts (n_b, n_b) and time per last visited
    basin (fs, (n_b,)): ``rate`` (1/s), its 95 % Poisson interval
    ``rate_lo``/``rate_hi``, ``mfpt`` (s), with ``count`` and
    ``time_in_state`` (s); dims ``(basin_from, basin_to)``."""
    from scipy.stats import chi2

    n = np.asarray(counts, float)
    t_s = np.asarray(time_fs, float) / FS_PER_S
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(t_s[:, None] > 0, 1.0 / t_s[:, None], np.nan)
        rate = n * per
        lo = np.where(n > 0, chi2.ppf(0.025, 2 * n) / 2, 0.0) * per
        hi = chi2.ppf(0.975, 2 * n + 2) / 2 * per
        mfpt = np.where(rate > 0, 1.0 / rate, np.inf)
    eye = np.eye(len(basins), dtype=bool)
    for a in (rate, lo, hi, mfpt):
        a[eye] = np.nan
    pair = ("basin_from", "basin_to")
    names = np.array(basins, dtype=object)
    return xr.Dataset(
        {"count": (pair, np.asarray(counts, np.int64),
                   {"units": "1", "long_name": "transitions basin_from -> basin_to"}),
         "time_in_state": (("basin_from",), t_s,
                           {"units": "s", "long_name": "time with basin_from the last "
                                                       "basin visited"}),
         "rate": (pair, rate, {"units": "1/s", "long_name": "rate constant"}),
         "rate_lo": (pair, lo, {"units": "1/s", "long_name": "95 % interval, lower end "
                                                            "(Poisson)"}),
         "rate_hi": (pair, hi, {"units": "1/s", "long_name": "95 % interval, upper end "
                                                            "(Poisson)"}),
         "mfpt": (pair, mfpt, {"units": "s", "long_name": "mean first-passage time 1/rate"})},
        coords={"basin_from": ("basin_from", names), "basin_to": ("basin_to", names)},
        attrs={SCHEMA_ATTR: FIRST_PASSAGE_SCHEMA})


__all__ = ["BruteForceRates", "rates_dataset"]
