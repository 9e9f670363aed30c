"""Biased umbrella-sampling throughput on the 5D Muller-Brown model.

Window-steps per second (one walker advanced one step under its own
restraint on a learned-CV-sized network), in one run:

1. the plain path: ASE's ``Langevin`` on ``Atoms`` whose calculator is the
   :class:`mtcv_umbrella.UmbrellaBias` wrapping the system's calculator,
   one walker at a time (what an ASE script would write);
2. the fast path: :class:`mtcv_umbrella.UmbrellaSampler` with the batched
   engine, many windows x walkers advanced together, the CV evaluated once
   per step for all of them.

The CV is the encoder of a multitask model with the quick demo's
architecture (Cartesian features, hidden [32, 16], 1D latent), exported to
TorchScript exactly as ``mtcv run`` does; its weights are untrained, which
changes nothing in the cost. Both paths record the CV every 10 steps.

Usage: python benchmarks/umbrella_throughput.py
Last line: JSON with ``speedup`` (fast path at the largest batch over the
plain path) and the per-configuration rates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit, machine, table, write_section  # noqa: E402

from mtcv_ase.md import FS, maxwell_boltzmann
from mtcv_core import load_plugins
from mtcv_core.export import to_torchscript
from mtcv_core.model import build_model, model_config
from mtcv_umbrella import UmbrellaBias, UmbrellaSampler

TEMPERATURE_K = 300.0


def make_cv(system, registry) -> torch.jit.ScriptModule:
    """A TorchScript CV with the quick demo's architecture (untrained)."""
    torch.manual_seed(0)
    featurizer = registry.create("featurizer", "cartesian", dof_mask=system.dof_mask.tolist())
    n_atoms = len(system.make_atoms())
    config = model_config(featurizer="cartesian",
                          featurizer_options={"dof_mask": system.dof_mask.tolist()},
                          n_atoms=n_atoms, n_features=featurizer.n_features(n_atoms),
                          latent_dim=1, hidden=[32, 16], n_classes=2,
                          basins=list(system.basins), heads={"classifier": {}})
    model = build_model(config, registry)
    return to_torchscript(model, dtype=torch.float64)


def plain_rate(system, cv, n_steps: int) -> float:
    """Window-steps per second: ASE Langevin + UmbrellaBias, one walker."""
    from ase.md.langevin import Langevin

    atoms = system.make_atoms("A")
    rng = np.random.default_rng(0)
    atoms.set_velocities(maxwell_boltzmann(atoms.get_masses(), TEMPERATURE_K, rng,
                                           dof_mask=system.dof_mask))
    with torch.no_grad():
        xi0 = cv(torch.tensor(atoms.get_positions()[None])).numpy()[0]
    atoms.calc = UmbrellaBias(atoms.calc, cv, xi0, np.full(1, 1.0))
    dyn = Langevin(atoms, timestep=1.0 * FS, temperature_K=TEMPERATURE_K,
                   friction=0.01 / FS, fixcm=False, rng=rng)
    record = []
    dyn.attach(lambda: record.append(atoms.calc.results["cv"]), interval=10)
    t0 = time.perf_counter()
    dyn.run(n_steps)
    return n_steps / (time.perf_counter() - t0)


def fast_rate(system, cv, n_windows: int, walkers: int, n_steps: int) -> float:
    """Window-steps per second: batched engine, n_windows x walkers at once."""
    rng = np.random.default_rng(1)
    start = system.start_positions("A", n_windows, rng=rng)
    with torch.no_grad():
        xi = cv(torch.tensor(start)).numpy()
    sampler = UmbrellaSampler(engine="fast", walkers_per_window=walkers, n_steps=n_steps,
                              equilibration_steps=0, stride=10, windows_per_task=n_windows,
                              temperature_K=TEMPERATURE_K)
    t0 = time.perf_counter()
    sampler.run_windows(system, cv, seed=0, centers=xi, spring_constants=np.full_like(xi, 1.0),
                start_positions=start)
    return n_windows * walkers * n_steps / (time.perf_counter() - t0)


def main() -> None:
    torch.set_num_threads(1)
    registry = load_plugins()
    system = registry.create("system", "muller_brown_5d")
    system.critical_points()
    cv = make_cv(system, registry)
    plain = plain_rate(system, cv, 2000)
    rows = [{"path": "ASE Langevin + UmbrellaBias (plain)", "windows x walkers": "1",
             "window-steps/s": f"{plain:,.0f}", "speedup": "1"}]
    rates = {}
    for n_win, walkers in ((1, 1), (24, 1), (24, 16), (300, 4)):
        rate = fast_rate(system, cv, n_win, walkers, 2000)
        rates[f"{n_win}x{walkers}"] = round(rate, 1)
        rows.append({"path": "batched fast path", "windows x walkers": f"{n_win} x {walkers}",
                     "window-steps/s": f"{rate:,.0f}", "speedup": f"{rate / plain:,.1f}"})
    best = max(rates.values())
    write_section("umbrella_throughput", f"""## Umbrella throughput (5D Muller-Brown, 300 K)

`python benchmarks/umbrella_throughput.py` on {machine()}, one thread. A
window-step is one walker advanced one step under its restraint on a
TorchScript CV of the quick demo's size (Cartesian features -> [32, 16] ->
1D); the plain path is ASE's `Langevin` with the `UmbrellaBias` calculator,
one walker at a time. Both record the CV every 10 steps.

{table(rows, ["path", "windows x walkers", "window-steps/s", "speedup"])}

The quick demo's windows run as 24 x 16 (along xi) and ~300 x 4 (the 2D
true-CV reference).
""")
    emit({"plain_window_steps_per_s": round(plain, 1), "fast_window_steps_per_s": rates,
          "speedup": round(best / plain, 1)})


if __name__ == "__main__":
    main()
