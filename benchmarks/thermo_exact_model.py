"""Thermodynamic free-energy learning on the exact test model (SCIENCE.md §4).

Free-energy models A_theta(x, T) are trained on exact samples of the
``thermo_exact`` system at ONE temperature (T0 = 300 K) and evaluated at
the unseen temperatures T0 - 30 % (210 K) and T0 + 30 % (390 K):

(a) force matching only vs force + energy matching (neural regressor,
    "thermo" form): error of A(x, T) and Jensen-Shannon divergence between
    the CG-MD distribution of x on the learned A (Langevin, many walkers)
    and the exact marginal;
(b) learning curves in the number of samples (neural and kernel);
(c) with the unbiased second-cumulant term (both neural forms);
(d) neural ("thermo" and "mlp" forms) vs kernel regressor.

Error of A: A(x, T) is identifiable only up to an x-independent c(T), so at
each T the p(x, T)-weighted mean of A_theta - A is removed and the
p-weighted RMS of the rest reported (p = exact marginal at T).

Usage: python benchmarks/thermo_exact_model.py [--quick] [--no-write]
  --quick: fewer samples, shorter MD, no learning-curve seeds (development);
  --no-write: do not touch docs/results.md or docs/figures.
Last line: JSON with ``rmse_ratio`` and ``js_ratio`` (force-only error over
force + energy error, the smaller of the two per-temperature ratios) and
the other figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, machine, table, write_section  # noqa: E402

from mtcv_thermo import (  # noqa: E402
    KB,
    KernelFreeEnergy,
    NeuralFreeEnergy,
    ThermoExactModel,
    run_cg_md,
    thermo_derivatives,
    train_free_energy,
)

T0 = 300.0
TEMPS = (0.7 * T0, 1.3 * T0)
#: histogram bins of x for the JS divergences (outer bins catch the tails)
EDGES = np.concatenate([[-4.0], np.linspace(-2.5, 2.5, 51), [4.0]])
GRID = np.linspace(-4.0, 4.0, 4001)
F_ONLY = {"force_matching": 1.0}
F_E = {"force_matching": 1.0, "energy_matching": 1.0}
F_E_C = {"force_matching": 1.0, "energy_matching": 1.0, "second_cumulant": 1.0}
HIDDEN = (32, 32)
STEPS = 2000          # optimiser steps per neural fit
BATCH = 256


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence (nats) of two discrete distributions."""
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def predict_a(model: torch.nn.Module, x: np.ndarray, temperature: float) -> np.ndarray:
    pos = np.zeros((len(x), 1, 3))
    pos[:, 0, 0] = x
    with torch.no_grad():
        return model(torch.as_tensor(pos), torch.full((len(x),), temperature,
                                                      dtype=torch.float64)).numpy()


def a_error(system: ThermoExactModel, model: torch.nn.Module, temperature: float) -> float:
    """p(x, T)-weighted RMS of A_theta - A after removing its weighted mean, eV."""
    w = system.marginal(GRID, temperature)
    w = w / w.sum()
    d = predict_a(model, GRID, temperature) - system.free_energy(GRID, temperature)
    d = d - np.sum(w * d)
    return float(np.sqrt(np.sum(w * d * d)))


def model_bins(model: torch.nn.Module, temperature: float) -> np.ndarray:
    """Bin probabilities of exp(-A_theta / kT) by quadrature on GRID."""
    a = predict_a(model, GRID, temperature)
    p = np.exp(-(a - a.min()) / (KB * temperature))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(GRID))])
    return np.diff(np.interp(EDGES, GRID, cdf / cdf[-1]))


def js_quadrature(system: ThermoExactModel, model: torch.nn.Module, temperature: float) -> float:
    return js_divergence(model_bins(model, temperature),
                         system.bin_probabilities(EDGES, temperature))


def js_md(system: ThermoExactModel, model: torch.nn.Module, temperature: float,
          start: np.ndarray, md: dict[str, int], seed: int) -> tuple[float, np.ndarray]:
    """JS divergence of the CG-MD histogram of x on ``model`` at T vs exact."""
    traj = run_cg_md(model, temperature, start, md["steps"], burn_in=md["burn_in"],
                     stride=md["stride"], rng=np.random.default_rng(seed))
    x = np.clip(traj[..., 0, 0].ravel(), EDGES[0] + 1e-9, EDGES[-1] - 1e-9)
    hist = np.histogram(x, EDGES)[0] / len(x)
    return js_divergence(hist, system.bin_probabilities(EDGES, temperature)), hist


def train_neural(system: ThermoExactModel, data: Any, heads: dict[str, float], *,
                 form: str = "thermo", seed: int = 0) -> NeuralFreeEnergy:
    model = NeuralFreeEnergy(system.cg_map().site_mask, hidden=HIDDEN, form=form, seed=seed)
    n = data.sizes["frame"]
    epochs = max(1, int(np.ceil(STEPS * BATCH / n)))
    train_free_energy(model, data, heads, epochs=epochs, batch_size=BATCH, lr=3e-3,
                      seed=seed)
    return model


def fit_kernel(system: ThermoExactModel, data: Any, energy: bool) -> KernelFreeEnergy:
    model = KernelFreeEnergy(system.cg_map().site_mask, length_scale=[0.3, 0.5, 0.8, 1.2])
    return model.fit(data, energy_weight=1.0 if energy else 0.0)


def variance_error(system: ThermoExactModel, model: torch.nn.Module) -> float:
    """p-weighted RMS error of the learned Var(u|x) at T0 relative to the exact one."""
    pos = np.zeros((len(GRID), 1, 3))
    pos[:, 0, 0] = GRID
    out = thermo_derivatives(model, torch.as_tensor(pos),
                             torch.full((len(GRID),), T0, dtype=torch.float64), variance=True)
    w = system.marginal(GRID, T0)
    w = w / w.sum()
    exact = system.energy_variance(GRID, T0)
    return float(np.sqrt(np.sum(w * (out["variance"].numpy() - exact) ** 2))
                 / np.sqrt(np.sum(w * exact**2)))


def scores(system: ThermoExactModel, model: torch.nn.Module) -> dict[str, float]:
    out = {f"rmse_{T:.0f}": a_error(system, model, T) for T in (TEMPS[0], T0, TEMPS[1])}
    out.update({f"jsq_{T:.0f}": js_quadrature(system, model, T) for T in TEMPS})
    return out


def fmt(v: float) -> str:
    return f"{v:.2e}" if v < 1e-3 else f"{v:.4f}"


def figure(system: ThermoExactModel, models: dict[str, torch.nn.Module],
           hists: dict[str, dict[float, np.ndarray]], curve: list[dict[str, Any]],
           path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    x = np.linspace(-2.0, 1.8, 300)
    styles = {"exact": "-", "force matching": "--", "force + energy": ":"}
    for T, colour in zip(TEMPS, ("tab:blue", "tab:red"), strict=True):
        w = system.marginal(x, T)
        w = w / w.sum()
        ref = system.free_energy(x, T)
        for name, style in styles.items():
            a = ref if name == "exact" else predict_a(models[name], x, T)
            a = a - np.sum(w * (a - ref)) - ref.min()
            axes[0].plot(x, a, style, color=colour, label=f"{name}, {T:.0f} K")
    axes[0].set(xlabel="x (angstrom)", ylabel="A(x, T) - const (eV)",
                title="learned at 300 K only")
    axes[0].legend(fontsize=7)
    centres = 0.5 * (EDGES[1:-2] + EDGES[2:-1])
    width = np.diff(EDGES[1:-1])
    for T, colour in zip(TEMPS, ("tab:blue", "tab:red"), strict=True):
        exact = system.bin_probabilities(EDGES, T)[1:-1] / width
        axes[1].plot(centres, exact, "-", color=colour, label=f"exact {T:.0f} K")
        for name, style in (("force matching", "--"), ("force + energy", "o")):
            h = hists[name][T][1:-1] / width
            axes[1].plot(centres, h, style, color=colour, ms=3,
                         label=f"CG MD, {name}, {T:.0f} K")
    axes[1].set(xlabel="x (angstrom)", ylabel="p(x) (1/angstrom)",
                title="CG-MD distributions")
    axes[1].legend(fontsize=7)
    for key, style in (("neural F", "s--"), ("neural F+E", "s-"), ("kernel F", "o--"),
                       ("kernel F+E", "o-")):
        pts = [(r["N"], r[key]) for r in curve if r.get(key) is not None]
        if pts:
            n, v = zip(*pts, strict=True)
            axes[2].loglog(n, v, style, label=key)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    axes[2].xaxis.set_major_formatter(ScalarFormatter())
    axes[2].xaxis.set_minor_formatter(NullFormatter())
    axes[2].set_xticks(sorted({r["N"] for r in curve}))
    axes[2].set(xlabel="training samples N (300 K)",
                ylabel="RMSE of A, worse of 210/390 K (eV)", title="learning curves")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings for development")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    quick = args.quick
    n_main = 1000 if quick else 4000
    sizes = [250, 1000] if quick else [250, 500, 1000, 2000, 4000]
    kernel_max = 1000 if quick else 2000
    curve_seeds = [0] if quick else [0, 1]
    md = ({"walkers": 400, "burn_in": 3000, "steps": 2000, "stride": 10} if quick else
          {"walkers": 1000, "burn_in": 5000, "steps": 5000, "stride": 10})
    system = ThermoExactModel(temperature_K=T0)
    rng = np.random.default_rng(2024)
    pool = system.sample_cg_dataset(2 * max(sizes + [n_main]), T0, rng)

    # (a) one training temperature: force matching vs force + energy -----------------
    data = pool.isel(frame=slice(0, n_main))
    models = {"force matching": train_neural(system, data, F_ONLY),
              "force + energy": train_neural(system, data, F_E)}
    start = data["coordinates"].values[:md["walkers"]]
    rows_a, res_a, hists = [], {}, {}
    reference = {"exact A (MD noise floor)": system.exact_free_energy()}
    for name, model in {**models, **reference}.items():
        r = scores(system, model) if name in models else {}
        hists[name] = {}
        for i, T in enumerate(TEMPS):
            r[f"jsmd_{T:.0f}"], hists[name][T] = js_md(system, model, T, start, md, seed=i)
        res_a[name] = r
        rows_a.append({
            "training loss": name,
            **{f"RMSE A {T:.0f} K (eV)": fmt(r[f"rmse_{T:.0f}"]) if f"rmse_{T:.0f}" in r
               else "0" for T in (TEMPS[0], T0, TEMPS[1])},
            **{f"JS CG-MD {T:.0f} K": fmt(r[f"jsmd_{T:.0f}"]) for T in TEMPS},
            **{f"JS quadrature {T:.0f} K": fmt(r[f"jsq_{T:.0f}"]) if f"jsq_{T:.0f}" in r
               else "0" for T in TEMPS},
        })
    fo, fe = res_a["force matching"], res_a["force + energy"]
    rmse_ratios = {T: fo[f"rmse_{T:.0f}"] / fe[f"rmse_{T:.0f}"] for T in TEMPS}
    js_ratios = {T: fo[f"jsmd_{T:.0f}"] / fe[f"jsmd_{T:.0f}"] for T in TEMPS}
    t_a = time.perf_counter() - t_start

    # (b) learning curves ----------------------------------------------------------
    curve = []
    kernel_models = {}
    for n in sizes:
        row: dict[str, Any] = {"N": n}
        for label, heads in (("neural F", F_ONLY), ("neural F+E", F_E)):
            vals = []
            for seed in curve_seeds:
                part = pool.isel(frame=slice(seed * n, (seed + 1) * n))
                m = train_neural(system, part, heads, seed=seed)
                vals.append(max(a_error(system, m, T) for T in TEMPS))
            row[label] = float(np.mean(vals))
        if n <= kernel_max:
            for label, energy in (("kernel F", False), ("kernel F+E", True)):
                vals = []
                for seed in curve_seeds:
                    part = pool.isel(frame=slice(seed * n, (seed + 1) * n))
                    m = fit_kernel(system, part, energy)
                    if seed == 0:
                        kernel_models[(n, energy)] = m
                    vals.append(max(a_error(system, m, T) for T in TEMPS))
                row[label] = float(np.mean(vals))
        curve.append(row)
    t_b = time.perf_counter() - t_start - t_a

    # (c) the second-cumulant term, (d) neural vs kernel ---------------------------
    rows_cd, res_cd = [], {}
    n_cmp = kernel_max
    data_cmp = pool.isel(frame=slice(0, n_cmp))
    variants: list[tuple[str, int, Any]] = []
    for form in ("thermo", "mlp"):
        for label, heads in (("F", F_ONLY), ("F+E", F_E), ("F+E+C", F_E_C)):
            variants.append((f"neural ({form}), {label}", n_main,
                             lambda h=heads, f=form: train_neural(system, data, h, form=f)))
    for label, energy in (("F", False), ("F+E", True)):
        variants.append((f"kernel, {label}", n_cmp,
                         lambda e=energy: kernel_models.get((n_cmp, e))
                         or fit_kernel(system, data_cmp, e)))
    for form in ("thermo", "mlp"):
        variants.append((f"neural ({form}), F+E", n_cmp,
                         lambda f=form: train_neural(system, data_cmp, F_E, form=f)))
    for name, n, make in variants:
        if name == "neural (thermo), F" and n == n_main:
            model = models["force matching"]
        elif name == "neural (thermo), F+E" and n == n_main:
            model = models["force + energy"]
        else:
            model = make()
        r = scores(system, model)
        r["var_err"] = variance_error(system, model)
        res_cd[f"{name} N={n}"] = r
        rows_cd.append({
            "model, loss": name, "N": n,
            **{f"RMSE A {T:.0f} K (eV)": fmt(r[f"rmse_{T:.0f}"])
               for T in (TEMPS[0], T0, TEMPS[1])},
            **{f"JS quadrature {T:.0f} K": fmt(r[f"jsq_{T:.0f}"]) for T in TEMPS},
            "rel. error Var(u|x) 300 K": f"{r['var_err']:.2f}",
        })
    wall = time.perf_counter() - t_start

    rmse_ratio = min(rmse_ratios.values())
    js_ratio = min(js_ratios.values())
    figures: dict[str, Any] = {
        "rmse_ratio": round(rmse_ratio, 2), "js_ratio": round(js_ratio, 2),
        "rmse_ratio_210K": round(rmse_ratios[TEMPS[0]], 2),
        "rmse_ratio_390K": round(rmse_ratios[TEMPS[1]], 2),
        "js_ratio_210K": round(js_ratios[TEMPS[0]], 2),
        "js_ratio_390K": round(js_ratios[TEMPS[1]], 2),
        "n_train": n_main, "quick": quick, "wall_s": round(wall, 1),
        "results_a": {k: {kk: float(f"{vv:.4g}") for kk, vv in v.items()}
                      for k, v in res_a.items()},
        "learning_curve": [{k: (float(f"{v:.4g}") if isinstance(v, float) else v)
                            for k, v in r.items()} for r in curve],
    }
    if not args.no_write and not quick:
        fig_path = ROOT / "docs" / "figures" / "thermo_exact_model.png"
        figure(system, models, hists, curve, fig_path)
        curve_rows = [{"N": r["N"], **{k: fmt(r[k]) if k in r else "-" for k in
                                       ("neural F", "neural F+E", "kernel F", "kernel F+E")}}
                      for r in curve]
        title = "## Thermodynamic free-energy learning on the exact model"
        write_section("thermo_exact_model", f"""{title}

`python benchmarks/thermo_exact_model.py` on {machine()} ({wall / 60:.1f} min). System
`thermo_exact` (SCIENCE.md §4; a = 0.05 eV, k0 = 1 eV/A², c = 1 /A, J0 = 0.05 eV,
J1 = 0.03 eV, n = 6, m = 4), CG coordinate x. Training data: N exact samples at
**300 K only** (mapped force, potential energy u); evaluation at the unseen 210 K and
390 K (300 K ∓ 30 %). A(x, T) is identifiable only up to an x-independent c(T) (it
depends on the normalisation of the measure over the eliminated coordinates), so at each
T the p(x, T)-weighted mean of A_theta - A is removed and the p-weighted RMS of the rest
is reported (p = exact marginal). JS: Jensen-Shannon divergence (nats) of x histograms
({len(EDGES) - 1} bins) against the exact marginal, from CG Langevin MD on the learned A
({md['walkers']} walkers from training configurations, {md['burn_in']} burn-in +
{md['steps']} steps of 2 fs, every {md['stride']}th step) or by quadrature of
exp(-A_theta/kT). Neural: {HIDDEN} SiLU MLP, "thermo" form unless named, {STEPS} Adam
steps; kernel: Gaussian kernel in x with derivative observations (length scale and
label noise chosen on a 20 % hold-out).

**(a) One training temperature, N = {n_main}, neural regressor.** RMSE ratio
(force only / force + energy) {rmse_ratios[TEMPS[0]]:.1f} at 210 K and
{rmse_ratios[TEMPS[1]]:.1f} at 390 K; CG-MD JS ratio {js_ratios[TEMPS[0]]:.1f} and
{js_ratios[TEMPS[1]]:.1f} (target: both at least 5).

{table(rows_a, list(rows_a[0]))}

The last row runs the same CG MD on the exact A(x, T): its JS divergence is the
sampling floor of the CG-MD estimate. Energy matching also lowers the error at the
training temperature itself (the two labels constrain A(x, 300 K) independently).

**(b) Learning curves**: RMSE of A (eV), the worse of 210 and 390 K, mean over
{len(curve_seeds)} independent data sets (kernel up to N = {kernel_max}: its solve grows
as N³).

{table(curve_rows, list(curve_rows[0]))}

**(c, d) Second-cumulant term; neural vs kernel.** F: force matching, E: energy matching,
C: the unbiased second-cumulant term (label (u - c)², c a constant). Rel. error
Var(u|x): p-weighted RMS of -d²(βA)/dβ² - Var(u|x) over that of Var(u|x), at 300 K.

{table(rows_cd, list(rows_cd[0]))}

![A(x, T), CG-MD histograms and learning curves](figures/thermo_exact_model.png)
""")
    print(f"(a) {t_a:.0f} s, (b) {t_b:.0f} s, total {wall:.0f} s", file=sys.stderr)
    print(table(rows_a, list(rows_a[0])))
    print(table(rows_cd, list(rows_cd[0])))
    emit(figures)


if __name__ == "__main__":
    main()
