"""Shots from configurations on a dividing surface ``xi = xi*``: the raw
material of the reactive-flux transmission coefficient and of the committor
test (:mod:`mtcv_core.rates`).

Every configuration is shot ``shots`` times with fresh Maxwell-Boltzmann
velocities and run ``n_steps`` steps of the system's own (unbiased)
Langevin dynamics. Recorded: ``xi_dot0 = grad xi . v(0)`` ([xi]/fs), xi
every ``record_every`` steps, and the first basin each shot reaches
(``system.basin_index``, checked at the same steps; -1 if none within the
run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_ase.md import LangevinParams, make_propagator, maxwell_boltzmann
from mtcv_core.execution import map_tasks, task_rng
from mtcv_core.interfaces import System
from mtcv_core.rates import SQRT_EV_PER_AMU_IN_A_PER_FS


@dataclass(frozen=True)
class SurfaceShots:
    """``shots`` shots of ``n_steps`` steps (``timestep_fs``, friction
    ``friction_per_fs``, ``temperature_K``) from each configuration, xi and
    the basin recorded every ``record_every`` steps; ``configs_per_task``
    configurations (all their shots together) in one task. ``antithetic``:
    the shots of a configuration come in pairs with opposite velocities (the
    forward and the backward trajectory of one velocity draw), so that the
    initial flux averages to zero exactly and kappa's noise from it
    cancels; ``shots`` must then be even. ``states``: the basins a shot
    commits to (default all; others are passed through, e.g. an
    intermediate between the two ends of a transition)."""

    temperature_K: float
    shots: int = 10
    n_steps: int = 2000
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    record_every: int = 10
    configs_per_task: int = 32
    antithetic: bool = True
    states: tuple[str, ...] | None = None

    def run(self, system: System, cv: torch.nn.Module, configurations: np.ndarray, *,
            seed: int, client: Any = None, progress: bool = False) -> xr.Dataset:
        """Shoot from ``configurations`` (n_configs, n_atoms, 3) angstrom
        along the 1D CV ``cv`` (TorchScript or torch module, positions ->
        (n, 1)). Returns ``xi_dot0`` (config, shot), ``xi`` (config, shot,
        time), ``committed`` (config, shot) basin index (-1: none) and
        ``xi0`` (config), with ``time`` (fs)."""
        x = np.asarray(configurations, float)
        if x.ndim != 3 or x.shape[2] != 3 or len(x) == 0:
            raise ValueError(f"surface shots: configurations must be (n_configs, n_atoms, 3), "
                             f"got {x.shape}")
        for name in ("shots", "n_steps", "record_every", "configs_per_task"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"surface shots: {name} must be >= 1, got "
                                 f"{getattr(self, name)}")
        if self.antithetic and self.shots % 2:
            raise ValueError(f"surface shots: antithetic shots come in pairs (v, -v); shots "
                             f"must be even, got {self.shots}")
        params = LangevinParams(temperature_K=self.temperature_K, timestep_fs=self.timestep_fs,
                                friction_per_fs=self.friction_per_fs)
        cv_bytes = _script_bytes(cv)
        specs = [dict(system=system, cv=cv_bytes, x=x[i:i + self.configs_per_task],
                      shots=self.shots, n_steps=self.n_steps, every=self.record_every,
                      params=params, seed=seed, task=t, antithetic=bool(self.antithetic),
                      states=None if self.states is None
                      else [system.basins.index(b) for b in self.states])
                 for t, i in enumerate(range(0, len(x), self.configs_per_task))]
        parts = map_tasks(_shots_task, specs, client=client, progress=progress,
                          desc="surface shots")
        n_rec = self.n_steps // self.record_every
        time = (np.arange(1, n_rec + 1) * self.record_every * self.timestep_fs)
        out = xr.Dataset(
            {"xi_dot0": (("config", "shot"), np.concatenate([p["xi_dot0"] for p in parts]),
                         {"units": "[xi]/fs", "long_name": "d xi/dt at the start of the shot"}),
             "xi": (("config", "shot", "time"), np.concatenate([p["xi"] for p in parts]),
                    {"long_name": "xi along the shot"}),
             "committed": (("config", "shot"), np.concatenate([p["committed"] for p in parts]),
                           {"units": "1", "long_name": "first basin reached (index into "
                                                       "the system's basins; -1: none)"}),
             "xi0": (("config",), np.concatenate([p["xi0"] for p in parts]),
                     {"long_name": "xi of the configuration"})},
            coords={"time": ("time", time, {"units": "fs"})})
        out.attrs.update(temperature_K=float(self.temperature_K),
                         timestep_fs=float(self.timestep_fs),
                         friction_per_fs=float(self.friction_per_fs),
                         basins=" ".join(system.basins), seed=int(seed),
                         antithetic=int(bool(self.antithetic)),
                         engine="batched Langevin (mtcv_ase.md, ASE's Langevin scheme)")
        return out


def _script_bytes(cv: torch.nn.Module) -> bytes:
    import io

    module = cv if isinstance(cv, torch.jit.ScriptModule) else torch.jit.script(cv)
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def _xi_and_gradient(cv: torch.nn.Module, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xi (n,) and d xi / d r (n, n_atoms, 3) of a 1D CV."""
    pos = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    xi = cv(pos)
    if xi.ndim != 2 or xi.shape[1] != 1:
        raise ValueError(f"surface shots: the CV must give (n, 1), got {tuple(xi.shape)}")
    (g,) = torch.autograd.grad(xi[:, 0].sum(), pos)
    return xi[:, 0].detach().numpy(), g.numpy()


def _xi(cv: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return cv(torch.as_tensor(x, dtype=torch.float64))[:, 0].numpy()


def _shots_task(spec: dict[str, Any]) -> dict[str, np.ndarray]:
    import io

    system: System = spec["system"]
    params: LangevinParams = spec["params"]
    cv = torch.jit.load(io.BytesIO(spec["cv"])).to(torch.float64)
    configs = spec["x"]
    m, shots = len(configs), int(spec["shots"])
    n = m * shots
    rng = task_rng(spec["seed"], "surface_shots", spec["task"])
    x0 = np.repeat(configs, shots, axis=0)
    masses = system.make_atoms(system.basins[0]).get_masses()
    if spec.get("antithetic", False):
        half = maxwell_boltzmann(masses, params.temperature_K, rng, n=n // 2,
                                 dof_mask=system.dof_mask).reshape(m, shots // 2, -1, 3)
        v0 = np.stack([half, -half], axis=2).reshape(n, -1, 3)
    else:
        v0 = maxwell_boltzmann(masses, params.temperature_K, rng, n=n,
                               dof_mask=system.dof_mask)
    xi0, grad = _xi_and_gradient(cv, x0)
    xi_dot0 = np.einsum("nij,nij->n", grad, v0) * SQRT_EV_PER_AMU_IN_A_PER_FS
    prop = make_propagator(system, params, rng, n, True, on_blow_up="drop")
    slots = np.arange(n)
    prop.reset(slots, x0, v0)
    every, n_rec = int(spec["every"]), int(spec["n_steps"]) // int(spec["every"])
    xi = np.full((n, n_rec), np.nan)
    committed = np.full(n, -1)
    alive = np.ones(n, bool)
    for r in range(n_rec):
        for _ in range(every):
            x, _, _ = prop.step(slots)
            alive &= ~prop.last_blown
        xi[:, r] = np.where(alive, _xi(cv, x), np.nan)
        lab = system.basin_index(x)
        if spec.get("states") is not None:
            lab = np.where(np.isin(lab, spec["states"]), lab, -1)
        first = alive & (committed < 0) & (lab >= 0)
        committed[first] = lab[first]
    return {"xi_dot0": xi_dot0.reshape(m, shots), "xi": xi.reshape(m, shots, n_rec),
            "committed": committed.reshape(m, shots), "xi0": xi0.reshape(m, shots)[:, 0]}


__all__ = ["SurfaceShots"]
