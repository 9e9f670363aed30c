"""Tutorial: a temperature-dependent CG free energy A(x, T) from one temperature.

Thermodynamic coarse graining after Duschatko et al. (arXiv:2405.19386) with
the :mod:`mtcv_thermo` API, on the exact test model ``thermo_exact``
(:class:`mtcv_thermo.ThermoExactModel`: a double well in the CG coordinate
x coupled to harmonic modes whose stiffness depends on x and to rotors, so
that A(x, T), <u | x> and the marginal p(x, T) are closed form). Two
neural models A_theta(x, T) are trained on exact samples at 300 K only,
one by force matching and one by force + energy matching, and compared with
the exact answers at 300 K and at the unseen 210 K and 390 K (300 K -+ 30 %),
as in ``benchmarks/thermo_exact_model.py``:

- ``free_energy.png``: A(x, T) learned against exact at 210, 300 and 390 K
  (x-independent offsets removed: the data cannot fix them);
- ``thermo.png``: the learned <u | x> = d(beta A)/d beta against the exact
  one (energy matching fits it at 300 K; its change with T is extrapolated),
  and the error of A over temperature (150-450 K);
- ``cg_md.png``: x histograms of CG Langevin MD on each learned A at 210 and
  390 K against the exact marginals.

Usage::

    python examples/tutorial_thermo.py [--small] [--out DIR]

Without ``--small``: 4000 samples and 2000 optimiser steps per model, 1000
CG-MD walkers for 5000 + 5000 steps (the settings of the benchmark's part
(a); a few minutes on 2 cores). ``--small`` (what the tests run, under a
minute): 1000 samples, 800 steps per model, 200 walkers for 1500 + 1500
steps; CG MD starts from the 300 K samples, so at 210 K the short run is
still relaxing towards the new well populations. Figures go to ``DIR``
(default ``runs/tutorial_thermo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

T0 = 300.0
TEMPS = (0.7 * T0, T0, 1.3 * T0)
#: histogram bins of x (outer bins catch the tails), angstrom
EDGES = np.concatenate([[-4.0], np.linspace(-2.5, 2.5, 51), [4.0]])
GRID = np.linspace(-4.0, 4.0, 2001)
LOSSES = {"force matching": {"force_matching": 1.0},
          "force + energy": {"force_matching": 1.0, "energy_matching": 1.0}}
STYLE = {"force matching": ("--", "C1"), "force + energy": (":", "C2")}


def pyplot_agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def on_line(x: np.ndarray) -> torch.Tensor:
    """CG positions (n, 1, 3) angstrom with the CG coordinate x on the x axis."""
    pos = np.zeros((len(x), 1, 3))
    pos[:, 0, 0] = x
    return torch.as_tensor(pos)


def learned(model: torch.nn.Module, x: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    """A and <u | x> of a model along x at one temperature, eV."""
    from mtcv_thermo import thermo_derivatives

    out = thermo_derivatives(model, on_line(x), torch.full((len(x),), temperature,
                                                           dtype=torch.float64))
    return {"A": out["free_energy"].numpy(), "u": out["energy"].numpy()}


def a_error(system: Any, model: torch.nn.Module, temperature: float) -> float:
    """p(x, T)-weighted RMS of A_theta - A after removing its weighted mean, eV."""
    w = system.marginal(GRID, temperature)
    w = w / w.sum()
    d = learned(model, GRID, temperature)["A"] - system.free_energy(GRID, temperature)
    d = d - np.sum(w * d)
    return float(np.sqrt(np.sum(w * d * d)))


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats) of two discrete distributions."""
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def free_energy_figure(system: Any, models: dict[str, torch.nn.Module], path: Path) -> None:
    plt = pyplot_agg()
    x = np.linspace(-2.0, 1.8, 300)
    fig, axes = plt.subplots(1, len(TEMPS), figsize=(4.6 * len(TEMPS), 4.0), sharey=True)
    for ax, temp in zip(axes, TEMPS, strict=True):
        w = system.marginal(x, temp)
        w = w / w.sum()
        ref = system.free_energy(x, temp)
        ax.plot(x, ref - ref.min(), "k-", lw=2, label="exact")
        for name, model in models.items():
            a = learned(model, x, temp)["A"]
            a = a - np.sum(w * (a - ref)) - ref.min()
            style, colour = STYLE[name]
            ax.plot(x, a, style, color=colour, lw=2,
                    label=f"{name} (RMSE {a_error(system, model, temp):.2g} eV)")
        seen = "training temperature" if temp == T0 else "unseen"
        ax.set(xlabel="x (angstrom)", title=f"{temp:.0f} K ({seen})")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("A(x, T) - const (eV)")
    fig.suptitle("CG free energy learned from 300 K samples only")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def thermo_figure(system: Any, models: dict[str, torch.nn.Module], path: Path) -> None:
    plt = pyplot_agg()
    x = np.linspace(-2.0, 1.8, 300)
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0))
    for temp, colour in zip(TEMPS, ("C0", "0.3", "C3"), strict=True):
        axes[0].plot(x, system.mean_energy(x, temp), "-", color=colour, lw=2,
                     label=f"exact, {temp:.0f} K")
        axes[0].plot(x, learned(models["force + energy"], x, temp)["u"], ":", color=colour,
                     lw=2, label=f"force + energy, {temp:.0f} K")
    # force matching never sees u: its d(beta A)/d beta is not fixed by the data
    axes[0].plot(x, learned(models["force matching"], x, T0)["u"], "--", color="C1", lw=1,
                 label=f"force matching, {T0:.0f} K")
    axes[0].set(xlabel="x (angstrom)", ylabel="<u | x> (eV)",
                title="mean energy <u | x> = d(beta A)/d beta")
    axes[0].legend(fontsize=7, ncol=2)
    temps = np.linspace(150.0, 450.0, 13)
    for name, model in models.items():
        style, colour = STYLE[name]
        axes[1].semilogy(temps, [a_error(system, model, t) for t in temps], style + "o",
                         color=colour, label=name)
    axes[1].axvline(T0, color="0.6", lw=0.8)
    axes[1].set(xlabel="T (K)", ylabel="RMSE of A (eV)", title="error of A(x, T) over T")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cg_md_figure(system: Any, hists: dict[str, dict[float, np.ndarray]], path: Path) -> None:
    plt = pyplot_agg()
    centres = 0.5 * (EDGES[1:-2] + EDGES[2:-1])
    width = np.diff(EDGES[1:-1])
    temps = sorted({t for h in hists.values() for t in h})
    fig, axes = plt.subplots(1, len(temps), figsize=(5.2 * len(temps), 4.0), sharey=True)
    for ax, temp in zip(np.atleast_1d(axes), temps, strict=True):
        exact = system.bin_probabilities(EDGES, temp)
        ax.plot(centres, exact[1:-1] / width, "k-", lw=2, label="exact marginal")
        for name, by_t in hists.items():
            style, colour = STYLE[name]
            js = js_divergence(by_t[temp], exact)
            ax.plot(centres, by_t[temp][1:-1] / width, style, color=colour, lw=2,
                    label=f"CG MD, {name} (JS {js:.1e})")
        ax.set(xlabel="x (angstrom)", title=f"{temp:.0f} K (unseen)")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("p(x) (1/angstrom)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="fewer samples, steps and walkers (tests, seconds)")
    parser.add_argument("--out", type=Path, default=Path("runs/tutorial_thermo"),
                        help="folder for the figures")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    from mtcv_thermo import NeuralFreeEnergy, ThermoExactModel, run_cg_md, train_free_energy

    n_samples, steps, batch = (1000, 800, 256) if args.small else (4000, 2000, 256)
    md = ({"walkers": 200, "burn_in": 1500, "steps": 1500, "stride": 10} if args.small else
          {"walkers": 1000, "burn_in": 5000, "steps": 5000, "stride": 10})

    # 1. exact samples of the fine-grained model at 300 K, mapped to the CG site
    system = ThermoExactModel(temperature_K=T0)
    rng = np.random.default_rng(args.seed)
    data = system.sample_cg_dataset(n_samples, T0, rng)
    print(f"{n_samples} exact samples at {T0:.0f} K: coordinates {data['coordinates'].shape}, "
          f"mapped forces, energies u")

    # 2. A_theta(x, T): force matching alone, and force + energy matching
    models = {}
    t0 = time.perf_counter()
    for name, heads in LOSSES.items():
        model = NeuralFreeEnergy(system.cg_map().site_mask, hidden=(32, 32), seed=0)
        epochs = max(1, int(np.ceil(steps * batch / n_samples)))
        history = train_free_energy(model, data, heads, epochs=epochs, batch_size=batch,
                                    lr=3e-3, seed=0)
        models[name] = model
        rmse = ", ".join(f"{t:.0f} K {a_error(system, model, t):.2e}" for t in TEMPS)
        print(f"{name}: final loss {float(history['loss'].values[-1]):.4g}; "
              f"RMSE of A (eV): {rmse} ({time.perf_counter() - t0:.0f} s)")

    # 3. CG MD on each learned A at the unseen temperatures
    start = data["coordinates"].values[:md["walkers"]]
    hists: dict[str, dict[float, np.ndarray]] = {}
    for name, model in models.items():
        hists[name] = {}
        for i, temp in enumerate((TEMPS[0], TEMPS[2])):
            traj = run_cg_md(model, temp, start, md["steps"], burn_in=md["burn_in"],
                             stride=md["stride"], rng=np.random.default_rng(args.seed + i))
            x = np.clip(traj[..., 0, 0].ravel(), EDGES[0] + 1e-9, EDGES[-1] - 1e-9)
            hists[name][temp] = np.histogram(x, EDGES)[0] / len(x)
            js = js_divergence(hists[name][temp], system.bin_probabilities(EDGES, temp))
            print(f"CG MD on {name} A at {temp:.0f} K: JS divergence {js:.2e} "
                  f"({time.perf_counter() - t0:.0f} s)")

    paths = [args.out / f"{n}.png" for n in ("free_energy", "thermo", "cg_md")]
    free_energy_figure(system, models, paths[0])
    thermo_figure(system, models, paths[1])
    cg_md_figure(system, hists, paths[2])
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
