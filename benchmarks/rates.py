"""Rate constants along the learned CV against brute-force MD (issue #20).

On the reduced-barrier 5D Muller-Brown and three-well models
(``system_options.energy_scale``, barriers of 6-7 kT at 300 K: rare enough
for transition-state theory to matter, frequent enough for brute force to
count hundreds of transitions on 2 cores):

1. ``mtcv run`` with ``[rate] enabled = true`` (1D multitask CV, umbrella +
   MBAR along it, then the ``reactive_flux`` rate estimator: k_TST on the
   PMF, Bennett-Chandler kappa from antithetic shots off xi*, committor test)
   and its brute-force reference (first passages of many unbiased walkers
   between the same basins, 95 % Poisson interval);
2. k_TST and kappa along a true CV (x~) with its exact PMF by quadrature, and
   k_TST along xi with the exact PMF along xi (``fes_exact.nc``): what kappa
   corrects, and what sampling the PMF costs;
3. on Muller-Brown, the committor test at xi* for the classifier-only and
   the autoencoder baselines' CVs (trained on the same frames, umbrella +
   MBAR + rate stage along their own xi, no brute force).

Usage: python benchmarks/rates.py [--out DIR] [--only mb|tw]
  an interrupted benchmark resumes from what is in DIR (default
  runs/bench_rates).
Last line: JSON with ``mb_rate_ratio_AB``, ``mb_rate_ratio_BA``,
``tw_rate_ratio`` (A->B), ``tw_rate_ratio_BA`` (k along xi / brute force),
``mb_kappa``, ``mb_committor_mean``, ``mb_committor_std``, the baselines'
committors, the true-CV and exact-PMF k_TST, the brute-force counts and
intervals. Writes the ``rates`` section of docs/results.md and
docs/figures/rates_mb.png, rates_tw.png.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, machine, reuse_sample_stage, table, write_section  # noqa: E402

from mtcv_core.pipeline import run_pipeline

QUICK = ROOT / "examples" / "quick.toml"
THREE_WELL = ROOT / "examples" / "three_well_5d.toml"
ENERGY_SCALE = 0.15
TEMPERATURE_K = 300.0

RATE = """
[rate]
enabled = true
[rate.options]
max_configs = 128
n_starts = 32
surface = {{ walkers = 32, equilibration_steps = 2000, n_steps = 10000, stride = 50 }}
shots = {{ shots = 10, n_steps = 12000, record_every = 50, configs_per_task = 64 }}
{brute}
"""
BRUTE = ("brute_force = { walkers = 2048, n_steps = 120000, walkers_per_task = 1024, "
         "check_every = 20 }")
BASELINES = {"classifier": ("classifier only", "heads = { classifier = { balance_sources = "
                                               "true } }"),
             "autoencoder": ("autoencoder", "heads = { reconstruction = {} }")}


def mb_config(out: Path, name: str = "mb", heads: str | None = None,
              brute: bool = True) -> Path:
    """quick.toml at energy_scale 0.15 with the rate stage; no true-CV
    umbrella reference (the true-CV rates use the exact PMF)."""
    text = QUICK.read_text()
    text = text.replace('name = "quick"', f'name = "rates_{name}"')
    text = text.replace('system = "muller_brown_5d"', 'system = "muller_brown_5d"\n'
                        f'system_options = {{ energy_scale = {ENERGY_SCALE} }}')
    text = text.replace("reference = true ", "reference = false ")
    if heads is not None:
        text = re.sub(r"^heads = .*$", heads, text, flags=re.M)
        text = re.sub(r"^coefficients = .*\n", "", text, flags=re.M)
    text += RATE.format(brute=BRUTE if brute else "")
    path = out / f"{name}.toml"
    path.write_text(text)
    return path


def tw_config(out: Path) -> Path:
    """The three-well example with a 1D CV trained on A, B and the paths
    between them, the A <-> B transition along it (C, the shallow well
    between, is passed through), quick-sized sampling."""
    text = THREE_WELL.read_text()
    text = text.replace('name = "three_well_5d"', 'name = "rates_tw"')
    text = text.replace('system = "three_well_5d"', 'system = "three_well_5d"\n'
                        f'system_options = {{ energy_scale = {ENERGY_SCALE} }}')
    text = text.replace("trajectories_per_basin = 350", "trajectories_per_basin = 64")
    text = text.replace("walkers_per_task = 175", "walkers_per_task = 32")
    text = text.replace("latent_dim = 2", "latent_dim = 1")
    # a 1D CV between A and B: basin MD in A and B, transition paths A <-> B (through C
    # or not); with all three basins and all three transitions in the data, a 1D xi
    # folded A onto B (barrier along it 0.02 eV, committor at xi* 0.30 +- 0.45)
    text = text.replace("walkers_per_task = 32\n",
                        'walkers_per_task = 32\nbasins = ["A", "B"]\n', 1)
    text = text.replace('transitions = [["A", "C"], ["B", "C"], ["A", "B"]]\nchains',
                        'transitions = [["A", "B"]]\nchains')
    text = re.sub(r"(\[umbrella\]\n)transitions = .*\nreference = true",
                  '\\1transitions = [["A", "B"]]\nreference = false', text)
    text = re.sub(r"\[umbrella.sampler_options\].*?(?=\n\[umbrella.reference)",
                  "[umbrella.sampler_options]\nn_windows = 24\nrefine_overlap = 0.02\n"
                  "walkers_per_window = 16\nn_steps = 30000\nequilibration_steps = 2000\n"
                  "stride = 10\nwindows_per_task = 12\nspectator_moves = 100\n", text,
                  flags=re.S)
    text = re.sub(r"options = \{ n_bins = 40, n_bootstraps = 30, max_samples_per_window = "
                  r"200 \}", "options = { n_bins = 50, n_bootstraps = 20 }", text)
    text += RATE.format(brute=BRUTE)
    if "latent_dim = 1" not in text or 'transitions = [["A", "B"]]\nreference = false' \
            not in text or 'basins = ["A", "B"]' not in text or \
            'transitions = [["A", "B"]]\nchains' not in text:
        raise SystemExit(f"{THREE_WELL}: its layout changed; update tw_config")
    path = out / "tw.toml"
    path.write_text(text)
    return path


def rate_row(summary: dict[str, Any], a: str, b: str) -> dict[str, Any]:
    return next(r for r in summary["rates"] if (r["from"], r["to"]) == (a, b))


def true_cv_rates(system: Any, run: Path, seed: int) -> dict[str, Any]:
    """k_TST and kappa along x~ (a true CV) with its exact PMF by
    quadrature; starts from the run's frames nearest to the top."""
    from mtcv_core.exact_pmf import exact_pmf
    from mtcv_core.export import SelectCV
    from mtcv_core.io import read_frames
    from mtcv_core.rates import dividing_surface
    from mtcv_rates.along_cv import RatesAlongCV

    module = torch.jit.script(SelectCV(system.true_cv_module(), [0]))
    a, b = system.basins.index("A"), system.basins.index("B")
    xa = float(system.true_cv(system.make_atoms("A").get_positions()[None])[0, 0])
    xb = float(system.true_cv(system.make_atoms("B").get_positions()[None])[0, 0])
    lo, hi = min(xa, xb) - 6.0, max(xa, xb) + 6.0
    edges = np.linspace(lo, hi, 81)

    def cv(positions: np.ndarray) -> np.ndarray:
        return system.true_cv(positions)[:, :1]

    def basin_of(values: np.ndarray) -> np.ndarray:
        v = np.asarray(values)[:, 0]
        mid = 0.5 * (xa + xb)
        return np.where((v < mid) == (xa < mid), a, b)

    pmf = exact_pmf(system, cv, TEMPERATURE_K, [edges], basin_of=basin_of,
                    basin_names=list(system.basins), seed=seed)
    f, c = pmf["pmf"].values, pmf["bin_center"].values
    xs, _ = dividing_surface(f, c, xa, xb)
    frames = read_frames(run / "data.nc")
    pos = frames["coordinates"].values
    near = np.argsort(np.abs(system.true_cv(pos)[:, 0] - xs))[:32]
    res = RatesAlongCV(temperature_K=TEMPERATURE_K, max_configs=128, seed=seed,
                       surface={"walkers": 32, "equilibration_steps": 2000,
                                "n_steps": 10000, "stride": 50},
                       shots={"shots": 10, "n_steps": 12000, "record_every": 50,
                              "configs_per_task": 64}).run(
        system, module, f, c, xa, xb, pos[near], product=b, reactant=a)
    res.pop("curves")
    return res


def exact_tst(run: Path, summary: dict[str, Any], a: str, b: str) -> dict[str, float]:
    """k_TST along the run's xi with the exact PMF along xi (fes_exact.nc)
    and the flux factor the rate stage measured."""
    from mtcv_core.io import read_dataset
    from mtcv_core.rates import tst_rates
    from mtcv_core.units import kT_eV

    fes = read_dataset(run / "fes.nc")
    exact = read_dataset(run / "fes_exact.nc")
    rates = read_dataset(run / "rates.nc")
    names = [str(n) for n in fes["basin"].values]
    xa = float(fes["basin_minimum"].values[names.index(a), 0])
    xb = float(fes["basin_minimum"].values[names.index(b), 0])
    grad = float(rates["mean_grad_norm"].values[0])
    _, k_ab, k_ba = tst_rates(exact["pmf"].values, exact["bin_center"].values, xa, xb, grad,
                              kT_eV(TEMPERATURE_K))
    return {"k_tst_exact_AB": k_ab, "k_tst_exact_BA": k_ba}


def _kappa_text(kappa: float, err: float) -> str:
    """kappa ± err, marked when it is not resolved from zero."""
    text = g(kappa, err)
    return text + " (not resolved)" if not kappa > 2 * err else text


def _stage_seconds(summary: dict[str, Any], wall: float) -> float:
    """Seconds the run's stages took (their recorded timings: a resumed run
    reports what it took when it ran), or ``wall`` without them."""
    timings = summary.get("timings_s") or {}
    return float(sum(timings.values())) if timings else wall


def g(value: Any, err: Any = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if err is None else f"{value:.3g} ± {err:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_rates"))
    parser.add_argument("--only", choices=("mb", "tw"), default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from mtcv_systems import MullerBrown5D, ThreeWell5D

    figures: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    committors: list[dict[str, Any]] = []
    wall: dict[str, float] = {}
    systems = [("mb", MullerBrown5D), ("tw", ThreeWell5D)]
    for key, cls in systems:
        if args.only and key != args.only:
            continue
        t0 = time.perf_counter()
        config = mb_config(out) if key == "mb" else tw_config(out)
        run = out / key
        summary = run_pipeline(config, out=run, resume=True, progress=False)
        wall[key] = _stage_seconds(summary, time.perf_counter() - t0)
        shutil.copy2(run / "figures" / "rates.png", ROOT / "docs" / "figures" /
                     f"rates_{key}.png")
        system = cls(energy_scale=ENERGY_SCALE)
        t1 = time.perf_counter()
        true = true_cv_rates(system, run, seed=1)
        wall[f"{key}_true_cv"] = time.perf_counter() - t1
        tst_exact = exact_tst(run, summary, "A", "B")
        for a, b, tag in (("A", "B", "AB"), ("B", "A", "BA")):
            r = rate_row(summary, a, b)
            ratio = r["ratio_to_reference"]
            fwd = tag == "AB"
            k_tst_true = true["k_tst_forward_per_s" if fwd else "k_tst_backward_per_s"]
            k_true = true["k_forward_per_s" if fwd else "k_backward_per_s"]
            ref = r["reference_rate_per_s"]
            rows.append({
                "system": key, "transition": f"{a}->{b}",
                "brute force (1/s) [95 %]": f"{g(ref)} [{g(r['reference_rate_lo_per_s'])}, "
                                            f"{g(r['reference_rate_hi_per_s'])}]",
                "k_TST along xi": g(r["rate_tst_per_s"], r["rate_tst_err_per_s"]),
                "k_TST along xi, exact PMF": g(tst_exact[f"k_tst_exact_{tag}"]),
                "kappa along xi": g(r["kappa"], r["kappa_err"]),
                "k along xi": g(r["rate_per_s"], r["rate_err_per_s"]),
                "k / brute force": "-" if ratio is None else f"{ratio:.2f}",
                "k_TST along x~": g(k_tst_true),
                "kappa along x~": _kappa_text(true["kappa_forward" if fwd else "kappa_backward"],
                                              true["kappa_forward_err" if fwd
                                                   else "kappa_backward_err"]),
                "k along x~ / brute force": "-" if not ref else f"{k_true / ref:.2f}"})
            prefix = f"{key}_" if key == "mb" else "tw_"
            figures[f"{prefix}rate_ratio_{tag}"] = ratio
            figures[f"{prefix}k_per_s_{tag}"] = r["rate_per_s"]
            figures[f"{prefix}k_err_per_s_{tag}"] = r["rate_err_per_s"]
            figures[f"{prefix}brute_force_per_s_{tag}"] = ref
            figures[f"{prefix}brute_force_interval_{tag}"] = [r["reference_rate_lo_per_s"],
                                                              r["reference_rate_hi_per_s"]]
            figures[f"{prefix}k_tst_per_s_{tag}"] = r["rate_tst_per_s"]
            figures[f"{prefix}k_tst_exact_pmf_per_s_{tag}"] = tst_exact[f"k_tst_exact_{tag}"]
            figures[f"{prefix}k_tst_true_cv_per_s_{tag}"] = k_tst_true
            figures[f"{prefix}true_cv_rate_ratio_{tag}"] = k_true / ref if ref else None
        rates_nc = run / "rates.nc"
        from mtcv_core.io import read_dataset

        counts = read_dataset(rates_nc)["reference_count"].values
        figures[f"{key}_brute_force_transitions"] = [int(c) for c in counts]
        fwd = rate_row(summary, "A", "B")
        figures[f"{key}_kappa"] = fwd["kappa"]
        figures[f"{key}_kappa_err"] = fwd["kappa_err"]
        figures[f"{key}_committor_mean"] = fwd["committor_mean"]
        figures[f"{key}_committor_std"] = fwd["committor_std"]
        figures[f"{key}_test_accuracy"] = summary.get("test_accuracy")
        figures[f"{key}_true_cv_committor_mean"] = true["committor_mean"]
        figures[f"{key}_true_cv_kappa"] = true["kappa_forward"]
        figures[f"{key}_true_cv_kappa_err"] = true["kappa_forward_err"]
        figures[f"{key}_true_cv_committor_std"] = true["committor_std"]
        committors.append({"system": key, "CV": "multitask xi",
                           "test accuracy": f"{summary.get('test_accuracy', 0):.3f}",
                           "p_B mean": f"{fwd['committor_mean']:.2f}",
                           "p_B std": f"{fwd['committor_std']:.2f}",
                           "kappa": g(fwd["kappa"], fwd["kappa_err"])})
        committors.append({"system": key, "CV": "x~ (true CV), exact PMF", "test accuracy": "-",
                           "p_B mean": f"{true['committor_mean']:.2f}",
                           "p_B std": f"{true['committor_std']:.2f}",
                           "kappa": _kappa_text(true["kappa_forward"],
                                                true["kappa_forward_err"])})
        if key != "mb":
            continue
        for base, (label, heads) in BASELINES.items():
            t1 = time.perf_counter()
            brun = out / f"mb_{base}"
            reuse_sample_stage(run, brun)
            try:
                s = run_pipeline(mb_config(out, f"mb_{base}", heads=heads, brute=False),
                                 out=brun, resume=True, progress=False)
            except Exception as exc:  # a baseline whose CV has no usable dividing surface
                wall[f"mb_{base}"] = time.perf_counter() - t1
                figures[f"mb_{base}_error"] = str(exc)
                committors.append({"system": "mb", "CV": f"{label} xi", "test accuracy": "-",
                                   "p_B mean": "failed", "p_B std": "-",
                                   "kappa": str(exc).split(": ")[-1]})
                continue
            wall[f"mb_{base}"] = _stage_seconds(s, time.perf_counter() - t1)
            br = rate_row(s, "A", "B")
            figures[f"mb_{base}_committor_mean"] = br["committor_mean"]
            figures[f"mb_{base}_committor_std"] = br["committor_std"]
            figures[f"mb_{base}_kappa"] = br["kappa"]
            shutil.copy2(brun / "figures" / "rates.png", ROOT / "docs" / "figures" /
                         f"rates_mb_{base}.png")
            committors.append({"system": "mb", "CV": f"{label} xi",
                               "test accuracy": g(s.get("test_accuracy")),
                               "p_B mean": f"{br['committor_mean']:.2f}",
                               "p_B std": f"{br['committor_std']:.2f}",
                               "kappa": _kappa_text(br["kappa"], br["kappa_err"])})
    if "tw_rate_ratio_AB" in figures:
        figures["tw_rate_ratio"] = figures["tw_rate_ratio_AB"]
    figures["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    figures["energy_scale"] = ENERGY_SCALE
    if args.only is None:
        write_section("rates", report(rows, committors, figures))
    emit(figures)


def report(rows: list[dict[str, Any]], committors: list[dict[str, Any]],
           figures: dict[str, Any]) -> str:
    cols = ["system", "transition", "brute force (1/s) [95 %]", "k_TST along xi",
            "k_TST along xi, exact PMF", "kappa along xi", "k along xi", "k / brute force",
            "k_TST along x~", "kappa along x~", "k along x~ / brute force"]
    ccols = ["system", "CV", "test accuracy", "p_B mean", "p_B std", "kappa"]
    ratios = {k: figures.get(k) for k in ("mb_rate_ratio_AB", "mb_rate_ratio_BA",
                                          "tw_rate_ratio_AB", "tw_rate_ratio_BA")}
    inside = [k for k, v in ratios.items() if v is not None and 0.67 <= v <= 1.5]
    verdict = ", ".join(f"{k.replace('_rate_ratio_', ' ')} {v:.2f}" for k, v in ratios.items()
                        if v is not None)
    mb_c = figures.get("mb_committor_mean")
    n_mb = figures.get("mb_brute_force_transitions")
    n_tw = figures.get("tw_brute_force_transitions")
    return f"""## Rates along the learned CV (`benchmarks/rates.py`)

{machine()}; seconds per run (the stages' recorded timings; true-CV rates: wall):
{figures['wall_s']}.

Reduced-barrier models (`energy_scale = {ENERGY_SCALE}`, 300 K; A->B barriers 6.1 kT on
Muller-Brown, 5.9 kT on the three-well, by quadrature), the quick demo's sampling and
training with a 1D CV, umbrella + MBAR along xi, then the rate stage (`reactive_flux`):
k_TST along xi from the PMF with <|grad xi|_M> measured on the dividing surface, kappa from
10 antithetic shots of 12 ps from each of 128 surface configurations, the committor test
there; brute force: 2048 unbiased walkers x 120 ps, first passages between A and B
(transitions counted A->B, B->A: Muller-Brown {n_mb}, three-well {n_tw}; on the three-well
the shallow well C between them is passed through). Errors: kappa's bootstrap over
configurations and the PMF's barrier error in quadrature; brute force: 95 % Poisson
interval. *x~*: the same rate estimate along the true CV x~ with its exact PMF
(quadrature), the reference for what a CV costs.

{table(rows, cols)}

k along xi over brute force ({verdict}): {len(inside)} of {len(ratios)} within the
acceptance band [0.67, 1.5]. The committor at xi* of the multitask CV on Muller-Brown:
mean {mb_c:.2f} (acceptance: within 0.1 of 1/2). kappa corrects k_TST by a factor
{1 / figures['mb_kappa']:.1f} on Muller-Brown and {1 / figures['tw_kappa']:.1f} on the
three-well; k_TST with the exact PMF along the same xi shows what sampling the PMF costs
(an earlier run of the three-well with 10 ps windows instead of 30 ps had the PMF's top
~0.01 eV, 0.4 kT, high and gave ratios 0.85 / 0.54). Along x~ on Muller-Brown kappa
({figures['mb_true_cv_kappa']:.3f} ± {figures['mb_true_cv_kappa_err']:.3f}) is not
resolved from zero: the curved channel crosses x~* again and again, and its committor
({figures['mb_true_cv_committor_mean']:.2f} ± {figures['mb_true_cv_committor_std']:.2f} at
the top of the PMF along x~) says x~ is no reaction coordinate there; k along x~ is not a
rate estimate in that case.

Committor test at xi* (Muller-Brown A->B, p_B over 128 configurations x 10 shots; an ideal
reaction coordinate gives p_B peaked at 1/2). The baselines are trained on the same frames
and run through the same umbrella, MBAR and rate stages along their own xi.

{table(committors, ccols)}

![rates along xi, Muller-Brown](figures/rates_mb.png)

*Muller-Brown, multitask xi: kappa(t) both ways (band: bootstrap error; dotted: plateau),
and the committor histogram at xi*.*

![rates along xi, three-well](figures/rates_tw.png)

*Three-well, multitask xi (A <-> B, C passed through).*

![rates along the classifier-only xi](figures/rates_mb_classifier.png)

*Muller-Brown, classifier-only baseline: its xi* sits on A's side (mean committor below
1/2).*

![rates along the autoencoder xi](figures/rates_mb_autoencoder.png)

*Muller-Brown, autoencoder baseline: its xi does not separate A from B; kappa(t) decays to
zero and no configuration at its xi* commits to B.*
"""


if __name__ == "__main__":
    main()
