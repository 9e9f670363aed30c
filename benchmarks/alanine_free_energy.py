"""Alanine dipeptide in vacuum (amber99sb): the CV's accuracy and the
C7eq -> C7ax free energies along xi against umbrella sampling along phi.

1. ``examples/alanine_dipeptide_120K.toml --until train``: the paper's
   accuracy experiment, a 1D CV trained on 120 K data (basin MD, TPS seeded by
   700 K transitions) and tested on 100 K data.
2. ``examples/alanine_dipeptide.toml``: the CV trained on 50 K data, umbrella
   sampling along xi at 50 K for C7eq -> C7ax, windows along phi as the
   reference, MBAR for both.

Usage: python benchmarks/alanine_free_energy.py [--out DIR]
  --out DIR: where the runs go (default: runs/bench_alanine); an interrupted
  benchmark resumes from what is there.
Writes the section of docs/results.md and, with the alanine tutorial's
plotting code, docs/figures/alanine_fes.png (F along xi beside F along phi)
and docs/figures/alanine_xi_phi_psi.png (xi of the 50 K test frames over the
Ramachandran plane).
Last line: JSON with ``test_accuracy``, ``energy_mae_eV`` (120 K CV on the
100 K test set), ``barrier_err_eV`` and ``delta_F_err_eV`` (along xi minus
along phi, 50 K), the values themselves and wall times.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, fmt, machine, table, write_section  # noqa: E402

from mtcv_core.pipeline import run_pipeline

ACCURACY = ROOT / "examples" / "alanine_dipeptide_120K.toml"
FREE_ENERGY = ROOT / "examples" / "alanine_dipeptide.toml"
PAPER = {"accuracy": 0.86, "mae": 0.1, "barrier_phi": 0.32, "dF_phi": 0.03,
         "barrier_xi": 0.41, "dF_xi": -0.001}


def row_of(summary: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in summary["transitions"] if (r["from"], r["to"]) == ("C7eq", "C7ax"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_alanine"))
    args = parser.parse_args()
    out = Path(args.out)
    wall: dict[str, float] = {}
    t0 = time.perf_counter()
    acc = run_pipeline(ACCURACY, out=out / "120K", until="train", resume=True, progress=False)
    wall["120 K accuracy run"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fe = run_pipeline(FREE_ENERGY, out=out / "50K", resume=True, progress=False)
    wall["50 K free-energy run"] = time.perf_counter() - t0
    r = row_of(fe)
    err_b = None if r["barrier_eV"] is None or r["true_cv_barrier_eV"] is None else \
        r["barrier_eV"] - r["true_cv_barrier_eV"]
    err_df = None if r["delta_F_eV"] is None or r["true_cv_delta_F_eV"] is None else \
        r["delta_F_eV"] - r["true_cv_delta_F_eV"]
    cv_rows = [
        {"CV": "120 K train / 100 K test (paper's protocol)",
         "frames (train / test)": f"{acc['n_train']:,} / {acc['n_test']:,}",
         "test accuracy": f"{acc['test_accuracy']:.1%}",
         "energy MAE (eV)": fmt(acc["test_energy_mae_eV"]),
         "paper": f"{PAPER['accuracy']:.0%} / {PAPER['mae']} eV"},
        {"CV": "50 K train / 50 K test (the umbrella CV)",
         "frames (train / test)": f"{fe['n_train']:,} / {fe['n_test']:,}",
         "test accuracy": f"{fe['test_accuracy']:.1%}",
         "energy MAE (eV)": fmt(fe["test_energy_mae_eV"]), "paper": "-"},
    ]
    fe_rows = [
        {"CV": "phi (reference)", "windows": str(fe.get("umbrella_reference_windows", "-")),
         "barrier C7eq->C7ax (eV)": fmt(r["true_cv_barrier_eV"], r["true_cv_barrier_err_eV"]),
         "F(C7ax) - F(C7eq) (eV)": fmt(r["true_cv_delta_F_eV"], r["true_cv_delta_F_err_eV"]),
         "paper": f"{PAPER['barrier_phi']} / {PAPER['dF_phi']}"},
        {"CV": "multitask xi", "windows": str(fe["umbrella_windows"]),
         "barrier C7eq->C7ax (eV)": fmt(r["barrier_eV"], r["barrier_err_eV"]),
         "F(C7ax) - F(C7eq) (eV)": fmt(r["delta_F_eV"], r["delta_F_err_eV"]),
         "paper": f"{PAPER['barrier_xi']} / {PAPER['dF_xi']}"},
    ]
    ok = (err_b is not None and abs(err_b) <= 0.05 and err_df is not None
          and abs(err_df) <= 0.05)
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in fe["timings_s"].items())
    figures = _figures(out / "50K", fe)
    rate_text, rate_figures = _rates(out / "50K", fe)
    write_section("alanine_free_energy", f"""## Alanine dipeptide (amber99sb, vacuum)

`python benchmarks/alanine_free_energy.py` on {machine()}. The CV: 1D latent on the
aligned Cartesian frame (63 features), classifier + energy heads.

{table(cv_rows, list(cv_rows[0]))}

Free energies at 50 K (umbrella sampling + MBAR; barriers by bootstrap, dF with MBAR's
analytical uncertainty; basins along phi by a linear fit on the labelled frames, along
xi by the CV's classifier). "paper" is barrier / dF of Sun et al.

{table(fe_rows, list(fe_rows[0]))}

Along xi minus along phi: barrier {fmt(err_b)} eV, dF {fmt(err_df)} eV; acceptance (both
within 0.05 eV): {"met" if ok else "not met"}. 50 K run stages: {timings}.

{figures}

{rate_text}
""")
    emit({"test_accuracy": acc["test_accuracy"], "energy_mae_eV": acc["test_energy_mae_eV"],
          "barrier_eV": r["barrier_eV"], "barrier_phi_eV": r["true_cv_barrier_eV"],
          "delta_F_eV": r["delta_F_eV"], "delta_F_phi_eV": r["true_cv_delta_F_eV"],
          "barrier_err_eV": None if err_b is None else round(err_b, 4),
          "delta_F_err_eV": None if err_df is None else round(err_df, 4),
          "umbrella_cv_test_accuracy": fe["test_accuracy"], **rate_figures,
          "wall_s": {k: round(v, 1) for k, v in wall.items()}})


def _rates(run: Path, summary: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The rate stage's rows (issue #20) as a table, its figure copied to
    docs/figures/alanine_rates.png, and the JSON figures."""
    import shutil

    rows = summary.get("rates") or []
    if not rows:
        return "No rates: the run's `[rate]` stage did not run.", {}
    shutil.copyfile(run / "figures" / "rates.png", ROOT / "docs" / "figures" /
                    "alanine_rates.png")

    def _factor(v: Any, ln_err: Any) -> str:
        import math

        return "-" if v is None else (f"{v:.3g}" if ln_err is None
                                      else f"{v:.2g} ×/÷ {math.exp(ln_err):.2g}")

    def g(v: Any, e: Any = None) -> str:
        return "-" if v is None else (f"{v:.3g}" if e is None else f"{v:.3g} ± {e:.2g}")

    table_rows = [{"transition": f"{r['from']}->{r['to']}", "xi*": fmt(r["xi_star"]),
                   "k_TST (1/s)": _factor(r["rate_tst_per_s"], (r["rate_tst_err_per_s"] or 0)
                                          / r["rate_tst_per_s"]),
                   "kappa": fmt(r["kappa"], r["kappa_err"], 2),
                   "k (1/s)": _factor(r["rate_per_s"], r.get("rate_ln_err")),
                   "MFPT (s)": _factor(r["mfpt_s"], r.get("rate_ln_err")),
                   "committor at xi* (mean ± sd)": fmt(r["committor_mean"],
                                                      r["committor_std"], 2)}
                  for r in rows]
    fwd = next(r for r in rows if (r["from"], r["to"]) == ("C7eq", "C7ax"))
    import math

    from mtcv_core.units import kT_eV

    kt = kT_eV(float(summary["temperature_K"]))
    b_err = float(row_of(summary)["barrier_err_eV"])
    text = f"""Rates along xi at 50 K (the rate stage, `reactive_flux`: k_TST on the PMF along xi
with <|grad xi|_M> measured on the dividing surface, kappa from 10 antithetic shots of
2 ps from each of 64 surface configurations; errors: kappa's bootstrap and the PMF's
barrier error in quadrature, as a factor on k: at 50 K the barrier's {b_err:.4f} eV
bootstrap error is {b_err / kt:.1f} kT, so k is known to a factor of
{math.exp(b_err / kt):.1f} from the PMF alone, whatever kappa's precision). No brute-force
reference is possible here: the barrier is {float(row_of(summary)["barrier_eV"]) / kt:.0f} kT
at 50 K, so no unbiased trajectory crosses; the committor test is the check of the CV (an
ideal reaction coordinate gives p_B peaked at 1/2).

{table(table_rows, list(table_rows[0]))}

![alanine rates](figures/alanine_rates.png)"""
    return text, {"alanine_kappa": fwd["kappa"], "alanine_kappa_err": fwd["kappa_err"],
                  "alanine_rate_ln_err": fwd.get("rate_ln_err"),
                  "alanine_rate_per_s": fwd["rate_per_s"],
                  "alanine_rate_err_per_s": fwd["rate_err_per_s"],
                  "alanine_committor_mean": fwd["committor_mean"],
                  "alanine_committor_std": fwd["committor_std"]}


def _figures(run: Path, summary: dict[str, Any]) -> str:
    """The tutorial's F(xi) / F(phi) and xi-over-(phi, psi) figures of the 50 K
    run, copied to docs/figures; returns the Markdown that shows them."""
    import shutil
    import tempfile

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from tutorial_alanine_dipeptide import figures
    finally:
        sys.path.pop(0)
    shown = []
    with tempfile.TemporaryDirectory() as tmp:
        from mtcv_core.run import Run

        made = {p.name: p for p in figures(Run(run), Path(tmp))}
        for name in ("fes.png", "xi_phi_psi.png"):
            if name in made:
                target = ROOT / "docs" / "figures" / f"alanine_{name}"
                shutil.copyfile(made[name], target)
                shown.append(f"![alanine {name[:-4]}](figures/{target.name})")
    return "\n\n".join(shown)


if __name__ == "__main__":
    main()
