"""The ``reactive_flux`` rate estimator: the rate stage's default.

For every transition ``a -> b`` of the run (and its reverse) along the
learned 1D CV:

1. the dividing surface ``xi*`` at the top of the PMF (``fes.nc``) between
   the basins' minima;
2. configurations on it from restrained MD started at the training frames
   nearest to ``xi*`` (transition-path frames, where TPS supplied them),
   weighted to undo the restraint, with ``<|grad xi|_M>`` for the flux of
   transition-state theory (:class:`~mtcv_rates.surface.SurfaceSampler`);
3. ``k_TST`` both ways from the PMF (:func:`mtcv_core.rates.tst_rates`);
4. shots with fresh Maxwell-Boltzmann velocities and the run's Langevin
   dynamics (time step, friction): Bennett-Chandler kappa(t), its plateau,
   and the committor test (:class:`~mtcv_rates.surface_shots.SurfaceShots`,
   :mod:`mtcv_rates.analysis`);
5. ``k = kappa k_TST`` with the relative errors of kappa (bootstrap over
   configurations) and of k_TST (``barrier_err / kT`` from the estimator's
   bootstrap over windows) added in quadrature.

With ``brute_force`` options, many unbiased walkers count first passages
between the same basins (:class:`~mtcv_rates.first_passage.BruteForceRates`)
as a reference. Partial results go to the stage's store: an interrupted
stage resumes with the transitions and the reference already done (parts are keyed by a
hash of the PMF, the options, the seed and the MD settings: a part computed
from other inputs is never reused).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_core.config import ConfigError, doc, positive
from mtcv_core.interfaces import (
    CollectiveVariable,
    MDSettings,
    RateEstimator,
    StartFrames,
    System,
)
from mtcv_core.io import read_dataset, write_dataset
from mtcv_core.rates import dividing_surface
from mtcv_core.schema import SCHEMA_ATTR
from mtcv_core.schema_rates import RATES_SCHEMA
from mtcv_core.units import kT_eV
from mtcv_rates.along_cv import RatesAlongCV
from mtcv_rates.first_passage import BruteForceRates
from mtcv_rates.surface import SurfaceSampler
from mtcv_rates.surface_shots import SurfaceShots

#: options of the parts that the run's MD settings fill in
_MD_KEYS = ("temperature_K", "timestep_fs", "friction_per_fs")


def _option_names(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)} - set(_MD_KEYS) - {"spring"}


@dataclass
class ReactiveFluxRates(RateEstimator):
    """Rates along xi by transition-state theory on the PMF times the
    Bennett-Chandler transmission coefficient (module docstring). Its MD
    (restrained surface walkers, shots, brute force) always runs on the
    batched Langevin engine through ``System.energy_and_forces``, at the
    run's temperature, time step and friction, whatever ``[sample] engine``
    says; ``rates.nc`` records the engine and the thermostat."""

    name: ClassVar[str] = "reactive_flux"

    surface: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the restrained surface sampling (walkers, equilibration_steps, "
               "n_steps, stride, slab); the spring is set from the PMF's bin width"})
    shots: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the shots (shots per configuration, n_steps, record_every, "
               "configs_per_task)"})
    max_configs: int = positive(64, "surface configurations shot (evenly spaced over the "
                                    "surface samples)")
    n_starts: int = positive(16, "training frames nearest to xi* that start the surface "
                                 "walkers")
    committor_bins: int | None = field(default=None, metadata={
        "gt": 0, "doc": "bins of the committor histogram on [0, 1] (none: one per value "
                        "k / shots a configuration can take)"})
    brute_force: dict[str, Any] | None = field(default=None, metadata={
        "doc": "options of a brute-force reference (walkers, n_steps, check_every, "
               "walkers_per_task); none: no reference"})
    gate: bool = doc(True, "warn when kappa's plateau or the committor is not resolved")

    def __post_init__(self) -> None:
        for where, given, cls in (("surface", self.surface, SurfaceSampler),
                                  ("shots", self.shots, SurfaceShots),
                                  ("brute_force", self.brute_force or {}, BruteForceRates)):
            if not isinstance(given, dict):
                raise ConfigError(f"rate.options.{where}: expected a table, got {given!r}")
            unknown = sorted(set(given) - _option_names(cls) -
                             ({"timestep_fs", "friction_per_fs"}))
            if unknown:
                raise ConfigError(f"rate.options.{where}: unknown option(s) {unknown}; "
                                  f"expected some of {sorted(_option_names(cls))}")

    def check(self, system: System) -> None:
        try:
            system.energy_and_forces(np.asarray(system.start_positions(
                system.basins[0], 1, rng=np.random.default_rng(0), split="train")))
        except NotImplementedError:
            raise ConfigError(f"rate.estimator: reactive_flux runs batched MD through "
                              f"System.energy_and_forces, which {system.name!r} does not "
                              "provide") from None

    def options_json(self) -> str:
        """The options, as recorded in ``rates.nc`` and keyed into the store."""
        import dataclasses

        return json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                          sort_keys=True)

    def _md(self, md: MDSettings, given: dict[str, Any]) -> dict[str, Any]:
        return {"temperature_K": md.temperature_K, "timestep_fs": md.timestep_fs,
                "friction_per_fs": md.friction_per_fs, **given}

    def rates(self, system: System, cv: CollectiveVariable, fes: xr.Dataset, *,
              frames: StartFrames, transitions: Sequence[tuple[int, int]], md: MDSettings,
              seed: int, client: Any = None, store: Path | None = None,
              progress: bool = False) -> xr.Dataset:
        if cv.dim != 1 or fes["pmf"].dims != ("bin",):
            raise ValueError("reactive_flux: needs a 1D CV and a 1D PMF")
        if "basin_minimum" not in fes.variables:
            raise ValueError("reactive_flux: fes has no 'basin_minimum' (basin, cv): the "
                             "estimator must locate the basins along xi")
        names = list(system.basins)
        pairs: list[tuple[int, int]] = []
        for a, b in transitions:
            if (a, b) not in pairs and (b, a) not in pairs:
                pairs.append((int(a), int(b)))
        kt = kT_eV(md.temperature_K)
        pmf = np.asarray(fes["pmf"].values, float)
        centers = np.asarray(fes["bin_center"].values, float)
        fes_basins = [str(n) for n in fes["basin"].values]
        minimum = {n: float(fes["basin_minimum"].values[i, 0]) for i, n in enumerate(fes_basins)}
        xi_frames = np.asarray(frames.cv_values, float)[:, 0]
        if store is not None:
            store.mkdir(parents=True, exist_ok=True)
        parts = []
        labels = np.asarray(frames.labels)
        for i, n in enumerate(names):
            if math.isfinite(minimum.get(n, math.nan)):
                continue
            mine = xi_frames[labels == i]
            if len(mine) == 0:
                continue
            minimum[n] = float(np.median(mine))
            warnings.warn(f"reactive_flux: the PMF along xi has no bin in basin {n!r} (the "
                          f"CV's basins do not separate there); its typical xi is the median "
                          f"over its labelled frames instead ({minimum[n]:.3g})",
                          RuntimeWarning, stacklevel=2)
        for a, b in pairs:
            na, nb = names[a], names[b]
            if not (math.isfinite(minimum.get(na, math.nan))
                    and math.isfinite(minimum.get(nb, math.nan))):
                raise ValueError(f"reactive_flux: neither fes.nc nor the labelled frames "
                                 f"locate basin {na!r} or {nb!r} along xi")
            key = _fingerprint(pmf, centers, minimum[na], minimum[nb], self.options_json(),
                               seed, md)
            path = None if store is None else store / f"transition_{na}_{nb}_{key}.nc"
            if path is not None and path.exists():
                parts.append(read_dataset(path))
                continue
            xi_star, _ = dividing_surface(pmf, centers, minimum[na], minimum[nb])
            near = np.argsort(np.abs(xi_frames - xi_star))[:self.n_starts]
            run = RatesAlongCV(temperature_K=md.temperature_K,
                               surface={k: v for k, v in self._md(md, self.surface).items()
                                        if k != "temperature_K"},
                               shots={k: v for k, v in self._md(md, self.shots).items()
                                      if k != "temperature_K"},
                               max_configs=self.max_configs, seed=seed,
                               committor_bins=self.committor_bins)
            res = run.run(system, cv.module, pmf, centers, minimum[na], minimum[nb],
                          np.asarray(frames.positions)[near], product=b, reactant=a,
                          client=client, progress=progress)
            part = _pair_dataset(res, fes, na, nb, kt)
            part.attrs.update({SCHEMA_ATTR: RATES_SCHEMA,
                               "temperature_K": float(md.temperature_K)})
            if path is not None:
                write_dataset(part, path)
            parts.append(part)
        out = xr.concat(parts, dim="transition", data_vars="minimal", coords="minimal",
                        join="outer", compat="equals", combine_attrs="drop_conflicts")
        if self.brute_force is not None:
            ends = {i for pair in pairs for i in pair}
            states = tuple(b for i, b in enumerate(names) if i in ends)
            _add_reference(out, self._brute_force(system, md, seed, client, store, progress,
                                                  states))
        out.attrs.update({SCHEMA_ATTR: RATES_SCHEMA, "temperature_K": float(md.temperature_K),
                          "method": "TST along xi from the PMF x Bennett-Chandler kappa "
                                    "(reactive flux)",
                          "options": self.options_json(),
                          "timestep_fs": float(md.timestep_fs),
                          "friction_per_fs": float(md.friction_per_fs),
                          "thermostat": "Langevin", "seed": int(seed)})
        return out

    def _brute_force(self, system: System, md: MDSettings, seed: int, client: Any,
                     store: Path | None, progress: bool, states: tuple[str, ...]
                     ) -> xr.Dataset:
        """The brute-force reference; by default it counts the basins at the
        ends of the transitions (another basin, e.g. an intermediate, is in
        transit, as the shots see it)."""
        opts = self._md(md, {"states": states, **(self.brute_force or {})})
        opts["states"] = tuple(opts["states"]) if opts["states"] is not None else None
        key = _fingerprint(json.dumps(opts, sort_keys=True), seed, md)
        path = None if store is None else store / f"brute_force_{key}.nc"
        if path is not None and path.exists():
            return read_dataset(path)
        ref = BruteForceRates(**opts).run(system, seed=seed, client=client, progress=progress)
        if path is not None:
            write_dataset(ref, path)
        return ref


def _fingerprint(*parts: Any) -> str:
    """A short hash of what a stored part was computed from (arrays by their
    bytes): a part is reused only for the same PMF, options, seed and MD, so
    a stage rerun after its inputs changed computes it afresh."""
    import hashlib

    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(np.ascontiguousarray(p, float).tobytes())
        elif isinstance(p, MDSettings):
            h.update(repr((p.temperature_K, p.timestep_fs, p.friction_per_fs,
                           p.engine)).encode())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()[:12]


def _pair_dataset(res: dict[str, Any], fes: xr.Dataset, na: str, nb: str,
                  kt: float) -> xr.Dataset:
    """Both directions of one transition as a rates dataset (no schema
    attributes yet)."""
    curves = res["curves"]
    committor = curves["committor"]
    rows = []
    for tag, frm, to in (("forward", na, nb), ("backward", nb, na)):
        barrier_err = float(fes["barrier_err"].sel(basin_from=frm, basin_to=to).values)
        rel_tst = barrier_err / kt if math.isfinite(barrier_err) else 0.0
        k_tst = res[f"k_tst_{tag}_per_s"]
        kappa, kappa_err = res[f"kappa_{tag}"], res[f"kappa_{tag}_err"]
        rel_kappa = kappa_err / kappa if kappa > 0 and math.isfinite(kappa_err) else 0.0
        k = res[f"k_{tag}_per_s"]
        if not kappa > 0:
            warnings.warn(f"reactive_flux: kappa({frm}->{to}) has no positive plateau "
                          f"({kappa:.3g} ± {kappa_err:.3g}): the shots do not resolve it "
                          "(more configurations or shots), or xi is far from a reaction "
                          "coordinate; its rate is left undefined (NaN)", RuntimeWarning,
                          stacklevel=3)
            k = math.nan
        elif math.isfinite(kappa_err) and kappa < 2 * kappa_err:
            warnings.warn(f"reactive_flux: kappa({frm}->{to}) = {kappa:.3g} ± {kappa_err:.3g} "
                          "is not resolved from zero: trajectories recross xi* many times "
                          "(xi is far from a reaction coordinate there) or the shots are "
                          "too few", RuntimeWarning, stacklevel=3)
        rows.append(dict(frm=frm, to=to, k=k, k_err=abs(k) * math.hypot(rel_tst, rel_kappa),
                         ln_err=math.hypot(rel_tst, rel_kappa),
                         k_tst=k_tst, k_tst_err=k_tst * rel_tst, kappa=kappa,
                         kappa_err=kappa_err, plateau=res[f"kappa_{tag}_plateau_fs"],
                         curve=curves[tag]))
    # p_B is the probability of the product of the forward direction; seen
    # from the reverse direction it is 1 - p_B
    p_b = np.asarray(committor["p_B"], float)
    means = [committor["mean"], 1.0 - committor["mean"]]
    counts = [np.asarray(committor["histogram"]), np.asarray(committor["histogram"])[::-1]]

    def var(key: str, units: str | None, long_name: str) -> tuple[Any, ...]:
        attrs = {"long_name": long_name, **({"units": units} if units else {})}
        return ("transition", np.array([r[key] for r in rows], float), attrs)

    time = curves["forward"]["time"].values
    out = xr.Dataset(
        {"rate": var("k", "1/s", "rate constant kappa k_TST"),
         "rate_err": var("k_err", "1/s", "its error: kappa's (bootstrap over surface "
                                         "configurations) and k_TST's (the PMF's barrier "
                                         "error / kT) in quadrature"),
         "rate_ln_err": var("ln_err", "1", "standard error of ln k: k is known to within "
                                           "a factor exp(rate_ln_err), the honest form "
                                           "when it is large"),
         "rate_tst": var("k_tst", "1/s", "transition-state-theory rate along xi"),
         "rate_tst_err": var("k_tst_err", "1/s", "k_TST x barrier_err / kT"),
         "kappa": var("kappa", "1", "transmission coefficient (plateau of kappa(t))"),
         "kappa_err": var("kappa_err", "1", "its bootstrap error"),
         "kappa_plateau_start": var("plateau", "fs", "start of the plateau of kappa(t)"),
         "xi_star": ("transition", np.full(2, res["xi_star"]),
                     {"long_name": "dividing surface xi*"}),
         "mean_grad_norm": ("transition", np.full(2, res["mean_grad_norm"]),
                            {"units": "1/(angstrom sqrt(amu))",
                             "long_name": "<|grad xi|_M> on the surface"}),
         "committor_mean": ("transition", np.array(means, float),
                            {"units": "1", "long_name": "mean committor to basin_to at xi*"}),
         "committor_std": ("transition", np.full(2, committor["std"]),
                           {"units": "1", "long_name": "its standard deviation over "
                                                      "configurations"}),
         "committor_counts": (("transition", "p_B_bin"), np.stack(counts).astype(np.int64),
                              {"units": "1", "long_name": "configurations per committor "
                                                          "bin (towards basin_to)"}),
         "p_B_edges": ("p_B_edge", np.asarray(committor["edges"], float), {"units": "1"}),
         "committor_p_B": (("transition", "committor_config"), np.stack([p_b, 1.0 - p_b]),
                           {"units": "1", "long_name": "committor to basin_to of each shot "
                                                      "configuration (NaN: padding)"}),
         "kappa_t": (("transition", "time"), np.stack([r["curve"]["kappa"].values
                                                       for r in rows]),
                     {"units": "1", "long_name": "kappa(t)"}),
         "kappa_t_err": (("transition", "time"), np.stack([r["curve"]["kappa_err"].values
                                                           for r in rows]),
                         {"units": "1", "long_name": "bootstrap error of kappa(t)"})},
        coords={"basin_from": ("transition", np.array([na, nb], dtype=object)),
                "basin_to": ("transition", np.array([nb, na], dtype=object)),
                "time": ("time", time, {"units": "fs"})})
    n_shots = int(res["n_shot_configs"]) * int(res["shots_per_config"])
    uncommitted = int(res["committor_uncommitted_shots"])
    if n_shots and uncommitted > 0.1 * n_shots:
        warnings.warn(f"reactive_flux: {uncommitted} of {n_shots} shots from xi* of {na}<->{nb} "
                      "reached neither basin within shots.n_steps; the committor leaves them "
                      "out (biased towards the nearer basin) and kappa(t) may not have "
                      "settled: raise shots.n_steps", RuntimeWarning, stacklevel=3)
    out.attrs.update(n_surface_configs=int(res["n_surface_configs"]),
                     n_shot_configs=int(res["n_shot_configs"]), spring=float(res["spring"]),
                     committor_uncommitted_shots=int(res["committor_uncommitted_shots"]),
                     engine=str(res["shots_engine"]))
    return out


def _add_reference(out: xr.Dataset, ref: xr.Dataset) -> None:
    """Brute-force rates of the same directed transitions, with their 95 %
    intervals and transition counts."""
    for name, src, long_name in (
            ("reference_rate", "rate", "brute-force rate (first passages of unbiased MD)"),
            ("reference_rate_lo", "rate_lo", "its 95 % interval (Poisson), lower end"),
            ("reference_rate_hi", "rate_hi", "its 95 % interval (Poisson), upper end"),
            ("reference_count", "count", "transitions counted")):
        values = [float(ref[src].sel(basin_from=f, basin_to=t).values)
                  for f, t in zip(out["basin_from"].values, out["basin_to"].values,
                                  strict=True)]
        out[name] = ("transition", np.array(values),
                     {"units": "1" if src == "count" else "1/s", "long_name": long_name})
    out.attrs.update(reference_walkers=int(ref.attrs["walkers"]),
                     reference_n_steps=int(ref.attrs["n_steps"]),
                     reference_blown_walkers=int(ref.attrs["blown_walkers"]))


__all__ = ["ReactiveFluxRates"]
