"""OPES-metaD and well-tempered metadynamics samplers: several walkers under
one shared, history-dependent bias along a 1D or 2D CV.

All walkers advance in lockstep; every ``pace`` steps the bias is updated
with the CV of every live walker at once (multiple walkers, one bias). Two
engines run the same loop: the batched one (all walkers in one
:class:`~mtcv_ase.md.BatchLangevin` on ``System.energy_and_forces``) and
ASE's (each walker an ``Atoms`` with a
:class:`~mtcv_opes.calculator.HistoryBiasCalculator` of the shared bias and
its own ``Langevin``; the bias is updated by the step callback
:func:`~mtcv_opes.calculator.deposit_callback`). Every ``stride`` steps each
walker's CV, unbiased energy, bias and reweighting factor are recorded (and
the system's true CVs, when it has them, as observables), before that
step's deposit.

With a ``store`` directory the whole state (kernels, walkers, random
streams, records) is written there atomically every ``checkpoint_every``
steps; a run that finds a checkpoint made with the same options resumes
from it and gives exactly the result of an uninterrupted run.

Results are ``mtcv.biased/1`` datasets (:mod:`mtcv_core.schema_biased`),
plus the final kernels (``kernel_center``, ``kernel_sigma``,
``kernel_height``), for the estimator ``reweight``
(:class:`mtcv_opes.estimator.ReweightEstimator`). The walkers share one
bias, so they run in one process: the Dask client is not used.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import xarray as xr

from mtcv_ase.md import BatchLangevin, LangevinParams, ase_langevin, blown_up, maxwell_boltzmann
from mtcv_ase.md_options import MDOptions
from mtcv_core.config import ConfigError, nonneg, positive
from mtcv_core.errors import SimulationError
from mtcv_core.execution import task_rng
from mtcv_core.interfaces import CollectiveVariable, Footprint, MDSettings, Sampler, StartFrames
from mtcv_core.schema_biased import BIASED_SCHEMA, make_biased_dataset
from mtcv_core.units import kT_eV
from mtcv_opes.bias import HistoryBias, MetadBias, OpesBias, min_image
from mtcv_opes.calculator import HistoryBiasCalculator

#: the checkpoint file in the sampler's store
CHECKPOINT = "checkpoint.npz"


class BiasedForces:
    """System energy and forces plus a history-dependent bias on the CV, for
    many walkers at once (the batched engine's force field). Keeps the last
    CV values (n, d), bias (n,) eV and unbiased energies (n,) eV."""

    def __init__(self, system: Any, cv: Any, bias: HistoryBias) -> None:
        self.system, self.cv, self.bias = system, cv, bias
        self.last_cv = np.zeros((0, bias.dim))
        self.last_bias = np.zeros(0)
        self.last_unbiased = np.zeros(0)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e0, f0 = self.system.energy_and_forces(x)
        pos = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            s = self.cv(pos)
            v, dv = self.bias.evaluate(s.detach().numpy())
            (grad,) = torch.autograd.grad(s, pos, grad_outputs=torch.as_tensor(dv))
        self.last_cv, self.last_bias, self.last_unbiased = s.detach().numpy(), v, e0
        return e0 + v, f0 - grad.numpy()


class _BatchEngine:
    """All walkers in one :class:`BatchLangevin`; blown-up walkers parked."""

    def __init__(self, system: Any, cv: Any, bias: HistoryBias, params: LangevinParams,
                 rngs: list[np.random.Generator], x0: np.ndarray, v0: np.ndarray) -> None:
        self.rng = rngs[0]
        #: the spectator moves' stream (set by the sampler)
        self.mc_rng = np.random.default_rng(0)
        self.forces = BiasedForces(system, cv, bias)
        masses = system.make_atoms().get_masses()
        self.integ = BatchLangevin(self.forces, masses, params, self.rng,
                                   dof_mask=system.dof_mask)
        self.x, self.v = np.array(x0, float), np.array(v0, float)
        self.alive = np.ones(len(self.x), dtype=bool)
        self.held = self.x.copy()
        self.refresh()

    def refresh(self) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            self.e, self.f = self.integ.evaluate(self.x)
        if not self.alive.all():
            self.integ.hold(self.x, self.v, self.f, ~self.alive, self.held)

    def step(self) -> np.ndarray:
        """One step; returns the walkers (bool (n,)) that blew up in it."""
        x_prev = self.x
        with np.errstate(over="ignore", invalid="ignore"):
            self.x, self.v, self.f, self.e = self.integ.step(self.x, self.v, self.f)
        bad = self.integ.blown(self.x, self.e) & self.alive
        if bad.any():
            self.held[bad] = x_prev[bad]
            self.alive &= ~bad
        if not self.alive.all():
            self.integ.hold(self.x, self.v, self.f, ~self.alive, self.held)
        return bad

    def spectator_move(self, system: Any, rng: np.random.Generator, kT: float) -> None:
        """One Monte Carlo move of every live walker's periodic spectators
        (accepted with min(1, exp(-(V_new - V_old) / kT)) on the bias V)."""
        from mtcv_core.spectators import redraw_periodic

        old = self.forces.last_bias.copy()
        proposal = redraw_periodic(system, self.x, rng)
        u = rng.uniform(size=len(self.x))
        with torch.no_grad():
            s_new = self.forces.cv(torch.as_tensor(proposal, dtype=torch.float64)).numpy()
        new, _ = self.forces.bias.evaluate(s_new)
        with np.errstate(over="ignore"):
            accept = self.alive & (u < np.exp(-(new - old) / kT))
        if accept.any():
            self.x = np.where(accept[:, None, None], proposal, self.x)
            self.refresh()

    @property
    def cv(self) -> np.ndarray:
        return self.forces.last_cv

    @property
    def bias_value(self) -> np.ndarray:
        return self.forces.last_bias

    @property
    def unbiased(self) -> np.ndarray:
        return self.forces.last_unbiased

    def state(self) -> dict[str, Any]:
        return {"x": self.x, "v": self.v, "alive": self.alive, "held": self.held,
                "rng": [json.dumps(self.rng.bit_generator.state),
                        json.dumps(self.mc_rng.bit_generator.state)]}

    def set_state(self, st: dict[str, Any]) -> None:
        self.x, self.v = np.array(st["x"], float), np.array(st["v"], float)
        self.alive, self.held = np.array(st["alive"], bool), np.array(st["held"], float)
        self.rng.bit_generator.state = json.loads(str(st["rng"][0]))
        self.mc_rng.bit_generator.state = json.loads(str(st["rng"][1]))
        self.refresh()


class _AseEngine:
    """Each walker an ``Atoms`` with a :class:`HistoryBiasCalculator` of the
    shared bias and ASE's own ``Langevin`` (the reference path)."""

    def __init__(self, system: Any, cv: Any, bias: HistoryBias, params: LangevinParams,
                 rngs: list[np.random.Generator], x0: np.ndarray, v0: np.ndarray) -> None:
        self.rngs = rngs
        self.atoms = []
        self.dyn = []
        for x, v, rng in zip(x0, v0, rngs, strict=True):
            atoms = system.make_atoms()
            atoms.set_positions(x)
            atoms.set_velocities(v)
            atoms.calc = HistoryBiasCalculator(atoms.calc, cv, bias)
            self.atoms.append(atoms)
            self.dyn.append(ase_langevin(atoms, params, rng))
        n = len(self.atoms)
        self.alive = np.ones(n, dtype=bool)
        self.cv = np.full((n, bias.dim), np.nan)
        self.bias_value = np.full(n, np.nan)
        self.unbiased = np.full(n, np.nan)
        self.refresh()

    @property
    def x(self) -> np.ndarray:
        return np.stack([a.get_positions() for a in self.atoms])

    def refresh(self) -> None:
        for j, atoms in enumerate(self.atoms):
            if self.alive[j]:
                self._read(j, atoms)

    def _read(self, j: int, atoms: Any) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            atoms.get_potential_energy()
        r = atoms.calc.results
        self.cv[j] = np.atleast_1d(r["cv"])
        self.bias_value[j] = r["bias_energy"]
        self.unbiased[j] = r["unbiased_energy"]

    def step(self) -> np.ndarray:
        bad = np.zeros(len(self.atoms), dtype=bool)
        for j, (atoms, dyn) in enumerate(zip(self.atoms, self.dyn, strict=True)):
            if not self.alive[j]:
                continue
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    dyn.run(1)
                self._read(j, atoms)
                e = atoms.get_potential_energy()
            except (FloatingPointError, ValueError, RuntimeError):
                e = np.nan
            if blown_up(atoms.get_positions()[None], np.array([e]), 1e6)[0]:
                bad[j] = True
                self.alive[j] = False
        return bad

    def state(self) -> dict[str, Any]:
        return {"x": self.x, "v": np.stack([a.get_velocities() for a in self.atoms]),
                "alive": self.alive,
                "rng": [json.dumps(r.bit_generator.state) for r in self.rngs]}

    def set_state(self, st: dict[str, Any]) -> None:
        self.alive = np.array(st["alive"], bool)
        for j, atoms in enumerate(self.atoms):
            atoms.set_positions(np.asarray(st["x"][j], float))
            atoms.set_velocities(np.asarray(st["v"][j], float))
            self.rngs[j].bit_generator.state = json.loads(str(st["rng"][j]))
        self.refresh()


@dataclass(kw_only=True)
class HistorySampler(MDOptions, Sampler):
    """Walkers under one history-dependent bias (see the module docstring);
    :class:`OpesSampler` and :class:`MetadSampler` say which bias."""

    name: ClassVar[str] = "history"
    samples_schema: ClassVar[str] = BIASED_SCHEMA

    n_walkers: int = positive(8, "walkers sharing the bias (started alternately in the two "
                                 "basins of the first transition)")
    n_steps: int = positive(100000, "MD steps per walker")
    pace: int = positive(500, "deposit a kernel per walker every pace steps")
    stride: int = positive(50, "record every stride-th step")
    sigma: list[float] | float | None = field(default=None, metadata={
        "doc": "kernel width(s), CV units, one per CV dimension (default: the smallest "
               "standard deviation of the CV over the labelled frames of the first "
               "transition's two basins -- the fluctuation in a basin, as PLUMED's adaptive "
               "estimate)"})
    starts: Literal["basins", "first", "spread"] = field(default="spread", metadata={
        "doc": "'spread': walker j starts from the frame at the (j + 1/2)/n_walkers "
               "quantile of the first CV dimension over the start frames (TPS frames put "
               "some on the way between the basins), so the first kernels already cover "
               "the path; 'basins': alternately in the first transition's two basins; "
               "'first': all in the first transition's first basin"})
    transient_fraction: float = field(default=0.2, metadata={
        "min": 0.0, "lt": 1.0, "doc": "the first fraction of the run whose samples the "
                                      "estimator discards (transient_fs in the samples)"})
    checkpoint_every: int = positive(20000, "with a store: write the whole state every this "
                                            "many steps (a killed run resumes there)")
    spectator_moves: int = field(default=0, metadata={
        "min": 0, "doc": "every this many steps one Monte Carlo move per walker: the "
                         "system's periodic spectator coordinates redrawn uniformly, accepted "
                         "by Metropolis on the bias (exact between updates: the potential "
                         "does not depend on spectators), as the umbrella sampler's option "
                         "of the same name. 0: off; batched engine only"})
    record_true_cvs: bool = field(default=True, metadata={
        "doc": "record the system's true CVs (when it has them) as observables, for "
               "reweighting along them"})

    # ------------------------------------------------------------------ API
    def check(self, system: Any) -> None:
        if self.spectator_moves:
            from mtcv_core.spectators import periodic_spectators

            if not len(periodic_spectators(system)):
                raise ConfigError(f"{self.name}.spectator_moves: system "
                                  f"{getattr(system, 'name', system)!r} declares no periodic "
                                  "spectator coordinates to redraw; set it to 0")

    def make_bias(self, *, dim: int, kT: float, sigma: np.ndarray, periods: np.ndarray,
                  cv_range: np.ndarray) -> HistoryBias:
        """The bias this sampler deposits (``cv_range`` (2, d): the span of the
        start frames' CV values)."""
        raise NotImplementedError

    def plumed_action(self, bias: HistoryBias, arg: str) -> str:
        """The PLUMED line of this bias on ``arg`` (kJ/mol, ps)."""
        raise NotImplementedError

    def footprint(self, system: Any, *, n_atoms: int, cv_dim: int) -> Footprint:
        n_rec = self.n_walkers * (self.n_steps // self.stride)
        n_obs = len(getattr(system, "true_cv_names", ()) or ())
        per = 8 * (cv_dim + 3 + n_obs)
        return Footprint(memory_bytes=float(n_rec * per * 2 + self.n_walkers * n_atoms * 48),
                         disk_bytes=float(n_rec * per), what=f"{n_rec:.1e} recorded samples")

    def run(self, system: Any, cv: CollectiveVariable, *, frames: StartFrames,
            transitions: Any, md: MDSettings, seed: int, client: Any = None,
            store: Path | None = None, progress: bool = False) -> xr.Dataset:
        """Biased walkers along ``cv`` (see the module docstring); the
        ``mtcv.biased/1`` dataset of their samples."""
        from tqdm.auto import tqdm

        params = self.params(md)
        kT = kT_eV(params.temperature_K)
        dim = cv.dim
        periods = (np.zeros(dim) if cv.periods is None
                   else np.broadcast_to(np.asarray(cv.periods, float), (dim,)).copy())
        module = cv.module.to(torch.float64) if hasattr(cv.module, "to") else cv.module
        values = np.asarray(frames.cv_values, float).reshape(len(frames.cv_values), dim)
        pair = tuple(transitions[0]) if len(transitions) else (0, 1)
        sigma = self._sigma(values, np.asarray(frames.labels), pair, periods)
        cv_range = np.stack([np.nanmin(values, axis=0), np.nanmax(values, axis=0)])
        bias = self.make_bias(dim=dim, kT=kT, sigma=sigma, periods=periods, cv_range=cv_range)
        x0 = (self._spread_starts(frames, values) if self.starts == "spread"
              else self._starts(frames, pair, task_rng(seed, self.name, "starts")))
        masses = np.asarray(frames.masses, float)
        rngs = [task_rng(seed, self.name, "walker", j) for j in range(self.n_walkers)]
        v0 = np.stack([maxwell_boltzmann(masses, params.temperature_K, r,
                                         dof_mask=system.dof_mask) for r in rngs])
        fast = self.use_fast(system, md)
        if self.spectator_moves and not fast:
            raise ConfigError(f"{self.name}.spectator_moves: needs the batched engine "
                              f"(engine = 'fast' and a system with energy_and_forces)")
        engine = (_BatchEngine if fast else _AseEngine)(system, module, bias, params, rngs,
                                                        x0, v0)
        engine.mc_rng = task_rng(seed, self.name, "spectators")
        observe = self._observer(system)
        n_rec = self.n_steps // self.stride
        n_w = self.n_walkers
        rec = {"cv": np.full((n_rec, n_w, dim), np.nan), "bias": np.full((n_rec, n_w), np.nan),
               "log_weight": np.full((n_rec, n_w), np.nan),
               "energy": np.full((n_rec, n_w), np.nan)}
        if observe is not None:
            rec["observables"] = np.full((n_rec, n_w, len(observe[1])), np.nan)
        blow_ups: list[dict[str, Any]] = []
        step0 = 0
        key = self._key(system, cv, seed, params, fast, sigma)
        path = Path(store) / CHECKPOINT if store is not None else None
        if path is not None and path.exists():
            step0 = self._resume(path, key, bias, engine, rec, blow_ups)
        with tqdm(total=self.n_steps, initial=step0, desc=f"{self.name} walkers",
                  disable=not progress, leave=False, mininterval=1.0) as bar:
            for step in range(step0 + 1, self.n_steps + 1):
                bad = engine.step()
                for j in np.flatnonzero(bad):
                    blow_ups.append({"source": self.name, "walker": int(j), "step": step,
                                     "seed": int(seed)})
                    warnings.warn(f"{self.name}: walker {j} (seed {seed}) blew up at step "
                                  f"{step}; it is dropped, the others go on",
                                  RuntimeWarning, stacklevel=2)
                if not engine.alive.any():
                    raise SimulationError(f"{self.name}: every walker blew up (the last at "
                                          f"step {step}, seed {seed}); lower timestep_fs or "
                                          "the barrier / height of the bias")
                if self.spectator_moves and step % self.spectator_moves == 0:
                    engine.spectator_move(system, engine.mc_rng, kT)
                if step % self.stride == 0:
                    r = step // self.stride - 1
                    live = engine.alive
                    rec["cv"][r, live] = engine.cv[live]
                    rec["bias"][r, live] = engine.bias_value[live]
                    rec["log_weight"][r, live] = bias.log_weight(engine.bias_value[live])
                    rec["energy"][r, live] = engine.unbiased[live]
                    if observe is not None:
                        rec["observables"][r, live] = observe[0](engine.x[live])
                if step % self.pace == 0:
                    bias.update(engine.cv[engine.alive])
                    engine.refresh()
                if path is not None and step % self.checkpoint_every == 0 \
                        and step < self.n_steps:
                    self._save(path, key, step, bias, engine, rec, blow_ups)
                if step % 1000 == 0:
                    bar.update(1000)
        return self._dataset(rec, bias, params, cv, periods, observe, system, blow_ups,
                             n_atoms=int(np.shape(frames.positions)[1]))

    # ------------------------------------------------------------ helpers
    def _sigma(self, values: np.ndarray, labels: np.ndarray, pair: tuple[int, ...],
               periods: np.ndarray) -> np.ndarray:
        dim = values.shape[1]
        if self.sigma is not None:
            sigma = np.broadcast_to(np.asarray(self.sigma, float), (dim,)).copy()
            if not np.all(sigma > 0):
                raise ConfigError(f"{self.name}.sigma: expected widths > 0, got "
                                  f"{sigma.tolist()}")
            return sigma
        stds = []
        for b in pair:
            v = values[labels == b]
            if len(v) >= 2:
                centred = min_image(v - v[0], periods)
                stds.append(np.std(centred, axis=0))
        span = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
        if not stds:
            return np.maximum(span / 50.0, 1e-6)
        sigma = np.min(np.stack(stds), axis=0)
        return np.where(sigma > 0, sigma, np.maximum(span / 50.0, 1e-6))

    def _starts(self, frames: StartFrames, pair: tuple[int, ...],
                rng: np.random.Generator) -> np.ndarray:
        """Walker j starts from a frame of basin pair[j % 2] (any frame when a
        basin has none)."""
        labels = np.asarray(frames.labels)
        out = []
        for j in range(self.n_walkers):
            basin = pair[0] if self.starts == "first" else pair[j % len(pair)]
            pool = np.flatnonzero(labels == basin)
            if len(pool) == 0:
                pool = np.flatnonzero(labels >= 0) if np.any(labels >= 0) else \
                    np.arange(len(labels))
            out.append(frames.positions[int(rng.choice(pool))])
        return np.stack(out)

    def _spread_starts(self, frames: StartFrames, values: np.ndarray) -> np.ndarray:
        """Walker j from the frame nearest the (j + 1/2)/n quantile of the
        first CV dimension."""
        order = np.argsort(values[:, 0], kind="stable")
        q = ((np.arange(self.n_walkers) + 0.5) / self.n_walkers * len(order)).astype(int)
        return np.asarray(frames.positions)[order[np.minimum(q, len(order) - 1)]]

    def _observer(self, system: Any) -> tuple[Any, list[str], str, Any] | None:
        if not self.record_true_cvs or not getattr(system, "true_cv_names", ()):
            return None
        try:
            system.true_cv(system.make_atoms().get_positions()[None])
        except NotImplementedError:
            return None
        periods = list(system.true_cv_periods) or None
        return (system.true_cv, list(system.true_cv_names), system.true_cv_units, periods)

    def _key(self, system: Any, cv: CollectiveVariable, seed: int, params: LangevinParams,
             fast: bool, sigma: np.ndarray) -> str:
        """A hash of everything the trajectory depends on (a checkpoint of
        other inputs is not resumed)."""
        h = hashlib.sha256()
        h.update(json.dumps({"options": asdict(self), "seed": int(seed), "fast": fast,
                             "params": asdict(params), "sigma": sigma.tolist(),
                             "system": system.describe(), "cv_names": list(cv.names)},
                            sort_keys=True, default=str).encode())
        state = cv.module.state_dict() if hasattr(cv.module, "state_dict") else {}
        for name in sorted(state):
            h.update(name.encode())
            h.update(state[name].detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def _save(self, path: Path, key: str, step: int, bias: HistoryBias, engine: Any,
              rec: dict[str, np.ndarray], blow_ups: list[dict[str, Any]]) -> None:
        from mtcv_core.io import atomic_path

        arrays = {f"rec_{k}": v for k, v in rec.items()}
        arrays.update({f"bias_{k}": np.asarray(v) for k, v in bias.state().items()})
        arrays.update({f"engine_{k}": np.asarray(v) for k, v in engine.state().items()})
        arrays["meta"] = np.array(json.dumps({"key": key, "step": int(step),
                                              "blow_ups": blow_ups}))
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    def _resume(self, path: Path, key: str, bias: HistoryBias, engine: Any,
                rec: dict[str, np.ndarray], blow_ups: list[dict[str, Any]]) -> int:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("key") != key:
                    warnings.warn(f"{path}: a checkpoint of a run with other options, seed, "
                                  "CV or system; starting afresh", RuntimeWarning, stacklevel=3)
                    return 0
                bias.set_state({k[5:]: data[k] for k in data.files if k.startswith("bias_")})
                for k in rec:
                    rec[k][...] = data[f"rec_{k}"]
                engine.set_state({k[7:]: data[k] for k in data.files
                                  if k.startswith("engine_")})
        except (OSError, ValueError, KeyError) as exc:
            warnings.warn(f"{path}: the checkpoint cannot be read ({type(exc).__name__}: "
                          f"{exc}); starting afresh", RuntimeWarning, stacklevel=3)
            return 0
        blow_ups.extend(meta.get("blow_ups", []))
        return int(meta["step"])

    def _dataset(self, rec: dict[str, np.ndarray], bias: HistoryBias, params: LangevinParams,
                 cv: CollectiveVariable, periods: np.ndarray, observe: Any, system: Any,
                 blow_ups: list[dict[str, Any]], n_atoms: int | None = None) -> xr.Dataset:
        time = (np.arange(len(rec["bias"])) + 1) * self.stride * params.timestep_fs
        obs = None if observe is None else np.swapaxes(rec["observables"], 0, 1)
        options = {k: v for k, v in asdict(self).items()}
        ds = make_biased_dataset(
            np.swapaxes(rec["cv"], 0, 1), rec["bias"].T, rec["log_weight"].T, time,
            temperature_K=params.temperature_K, method=self.name, cv_names=cv.names,
            cv_units=cv.units, cv_period=periods if np.any(periods > 0) else None,
            energy=rec["energy"].T, observables=obs,
            observable_names=() if observe is None else observe[1],
            observable_units="1" if observe is None else observe[2],
            observable_periods=None if observe is None else observe[3],
            transient_fs=self.transient_fraction * self.n_steps * params.timestep_fs,
            attrs={"sampler_options": json.dumps(options, sort_keys=True, default=str),
                   "bias_state": json.dumps({k: v for k, v in bias.state().items()
                                             if np.ndim(v) == 0}, default=float),
                   "sigma": " ".join(repr(float(s)) for s in np.atleast_1d(
                       getattr(bias, "sigma0", np.nan))),
                   "kernels_deposited": int(bias.n_deposited),
                   "blow_ups": json.dumps(blow_ups), "walkers": self.n_walkers})
        ds["kernel_center"] = (("kernel", "cv"), bias.centers, {
            "units": cv.units, "long_name": "final kernel centres"})
        ds["kernel_sigma"] = (("kernel", "cv"), bias.sigmas, {
            "units": cv.units, "long_name": "final kernel widths"})
        ds["kernel_height"] = (("kernel",), bias.heights, {
            "units": "eV" if isinstance(bias, MetadBias) else "1",
            "long_name": "final kernel heights (OPES: weights of the probability estimate)"})
        ds.attrs["plumed_input"] = self.plumed_input(bias, cv, params, n_atoms)
        return ds

    def plumed_input(self, bias: HistoryBias, cv: CollectiveVariable,
                     params: LangevinParams, n_atoms: int | None = None) -> str:
        """A PLUMED input for the same run on ``cv_plumed.pt``
        (:func:`mtcv_opes.plumed.plumed_cv`), kJ/mol and ps."""
        from mtcv_opes.plumed import plumed_input

        return plumed_input(self.plumed_action(bias, "cv.node-0" if cv.dim == 1 else
                                               ",".join(f"cv.node-{i}" for i in range(cv.dim))),
                            temperature_K=params.temperature_K, stride=self.stride,
                            timestep_fs=params.timestep_fs, n_walkers=self.n_walkers,
                            n_atoms=n_atoms)

    def companion_files(self, samples: xr.Dataset, cv_module: Any) -> dict[str, bytes]:
        """``plumed.dat`` (the PLUMED input of this run) and ``cv_plumed.pt``
        (the CV wrapped for PLUMED's PYTORCH_MODEL), for the umbrella stage to
        write beside the samples."""
        from mtcv_opes.plumed import plumed_cv

        text = str(samples.attrs.get("plumed_input", ""))
        if not text:
            return {}
        return {"plumed.dat": text.encode(), "cv_plumed.pt": plumed_cv(cv_module)}


@dataclass(kw_only=True)
class OpesSampler(HistorySampler):
    """OPES-metaD walkers (:class:`mtcv_opes.bias.OpesBias`)."""

    name: ClassVar[str] = "opes"
    barrier_eV: float = positive(1.0, "OPES barrier parameter dE, eV: a little above the "
                                      "highest barrier to cross")
    biasfactor: float | None = field(default=None, metadata={
        "gt": 1, "doc": "bias factor gamma (default: dE / kT, i.e. flat target)"})
    epsilon: float | None = field(default=None, metadata={
        "gt": 0, "doc": "regularisation epsilon (default: exp(-dE / ((1 - 1/gamma) kT)))"})
    kernel_cutoff: float | None = field(default=None, metadata={
        "gt": 0, "doc": "kernel truncation, in widths (default: sqrt(2 dE / ((1 - 1/gamma) "
                        "kT)))"})
    compression_threshold: float = nonneg(1.0, "merge a new kernel into an existing one closer "
                                               "than this many of its widths (0: never)")
    fixed_sigma: bool = field(default=False, metadata={
        "doc": "keep the kernel width (default: it shrinks as the effective sample size "
               "grows, as in OPES)"})
    explore: bool = field(default=False, metadata={
        "doc": "OPES-explore (PLUMED's OPES_METAD_EXPLORE): the kernels estimate the sampled "
               "distribution, so early kernels deposited under a still-wrong bias weigh "
               "no more than later ones; more robust with a CV that misses slow modes"})

    def make_bias(self, *, dim: int, kT: float, sigma: np.ndarray, periods: np.ndarray,
                  cv_range: np.ndarray) -> HistoryBias:
        if self.biasfactor is None and not self.barrier_eV > kT:
            raise ConfigError(f"opes.barrier_eV: {self.barrier_eV} eV is not above kT = "
                              f"{kT:.4f} eV; raise it (or give biasfactor)")
        return OpesBias(dim=dim, kT=kT, barrier_eV=self.barrier_eV, sigma=sigma,
                        periods=periods, biasfactor=self.biasfactor, epsilon=self.epsilon,
                        cutoff=self.kernel_cutoff,
                        compression_threshold=self.compression_threshold,
                        fixed_sigma=self.fixed_sigma, explore=self.explore)

    def plumed_action(self, bias: HistoryBias, arg: str) -> str:
        assert isinstance(bias, OpesBias)
        kj = 96.485332  # kJ/mol per eV
        action = "OPES_METAD_EXPLORE" if self.explore else "OPES_METAD"
        parts = [f"opes: {action} ARG={arg} PACE={self.pace}",
                 f"BARRIER={bias.barrier * kj:.6g}",
                 "SIGMA=" + ",".join(f"{s:.6g}" for s in bias.sigma0)]
        if self.biasfactor is not None:
            parts.append(f"BIASFACTOR={self.biasfactor:.6g}")
        if self.fixed_sigma:
            parts.append("FIXED_SIGMA")
        parts.append("FILE=KERNELS STATE_WFILE=STATE STATE_WSTRIDE=10000")
        return " ".join(parts)


@dataclass(kw_only=True)
class MetadSampler(HistorySampler):
    """Well-tempered metadynamics walkers (:class:`mtcv_opes.bias.MetadBias`)."""

    name: ClassVar[str] = "metad"
    height_eV: float | None = field(default=None, metadata={
        "gt": 0, "doc": "initial Gaussian height, eV (default: kT / 2)"})
    biasfactor: float = field(default=10.0, metadata={
        "gt": 1, "doc": "bias factor gamma (the CV samples temperature T gamma)"})
    grid_points: int = positive(300, "grid nodes per dimension for c(t)")
    grid_margin: float = nonneg(0.25, "the c(t) grid spans the start frames' CV range widened "
                                      "by this fraction of it on each side")

    def make_bias(self, *, dim: int, kT: float, sigma: np.ndarray, periods: np.ndarray,
                  cv_range: np.ndarray) -> HistoryBias:
        span = cv_range[1] - cv_range[0]
        span = np.where(span > 0, span, 1.0)
        return MetadBias(dim=dim, kT=kT, height_eV=self.height_eV or 0.5 * kT, sigma=sigma,
                         biasfactor=self.biasfactor, periods=periods,
                         grid_min=cv_range[0] - self.grid_margin * span,
                         grid_max=cv_range[1] + self.grid_margin * span,
                         grid_points=self.grid_points)

    def plumed_action(self, bias: HistoryBias, arg: str) -> str:
        assert isinstance(bias, MetadBias)
        kj = 96.485332
        lo, hi = bias.table.points.min(axis=0), bias.table.points.max(axis=0)
        return (f"metad: METAD ARG={arg} PACE={self.pace} HEIGHT={bias.height * kj:.6g} "
                "SIGMA=" + ",".join(f"{s:.6g}" for s in bias.sigma0)
                + f" BIASFACTOR={bias.gamma:.6g} CALC_RCT "
                + "GRID_MIN=" + ",".join(f"{v:.6g}" for v in lo)
                + " GRID_MAX=" + ",".join(f"{v:.6g}" for v in hi) + " FILE=HILLS")


__all__ = ["HistorySampler", "OpesSampler", "MetadSampler", "BiasedForces", "CHECKPOINT"]

