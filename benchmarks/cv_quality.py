"""CV quality on the 5D models: MBAR along xi, the exact PMF along the same
xi, and the 2D quadrature level, with and without the CV-quality settings.

For each case (quick 5D Müller-Brown, paper-scale 5D Müller-Brown, 5D
three-well) the example config runs end to end twice on the same frames:

* **after**: the example as shipped: ``train.spectator_augmentation = 10``
  (x5 redrawn over 10x its training range, the embedding angles from the
  training frames, every epoch) and, on Müller-Brown, the classifier's
  ``balance_sources`` with ``coefficients = { energy = 0.1 }``;
* **before**: without those settings, the CV as trained until now.

Per transition it reports the MBAR barrier and F_to - F_from along xi, the
exact values along the same xi (quadrature through ``cv`` with the angles
uniform and x5 spread as in the training data; ``System.equilibrium_nodes``),
and the 2D quadrature level; and the spectator sensitivity (spread of xi at
the basin minima and saddles when only x5 / the angles move over 5x their
training range, and the share of basin-minimum draws classified into the
wrong basin). The 2D true-CV umbrella reference is switched off: quadrature
gives it exactly.

Usage: python benchmarks/cv_quality.py [--out DIR] [--cases mb_quick,mb_paper,tw]
       [--no-before]
An interrupted benchmark resumes from what is in DIR (default runs/bench_cv_quality).
Last line: JSON with ``mb_quick_barrier_xi_exact_eV``, ``mb_quick_barrier_mbar_eV``,
``mb_quick_quadrature_eV``, ``mb_x5_spread_at_A``, ``mb_x5_misclassified_fraction``
(the quick MB CV after the fix) and the same figures per case and variant.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, fmt, machine, table, write_section  # noqa: E402
from free_energy import reuse_sample_stage  # noqa: E402

from mtcv_core.pipeline import run_pipeline

CASES = {
    "mb_quick": ("5D Müller-Brown, quick demo", ROOT / "examples" / "quick.toml"),
    "mb_paper": ("5D Müller-Brown, paper scale", ROOT / "examples" / "muller_brown_5d.toml"),
    "tw": ("5D three-well", ROOT / "examples" / "three_well_5d.toml"),
}
FIGURES = ROOT / "docs" / "figures"


def variant_config(case: str, variant: str, out: Path) -> Path:
    """The example without the 2D true-CV reference; ``before`` also without
    the CV-quality settings (spectator augmentation, source-balanced
    classifier, energy coefficient), i.e. the CV as trained before them."""
    src = CASES[case][1]
    text = src.read_text()
    if "reference = true" not in text or "spectator_augmentation = 10.0" not in text:
        raise SystemExit(f"{src}: expected 'reference = true' and "
                         "'spectator_augmentation = 10.0'")
    text = text.replace("reference = true", "reference = false")
    if variant == "before":
        text = text.replace("spectator_augmentation = 10.0", "spectator_augmentation = 0.0")
        text = text.replace("classifier = { balance_sources = true }", "classifier = {}")
        text = "\n".join(ln for ln in text.splitlines()
                         if not ln.startswith("coefficients = { energy"))
    lines = [ln if not ln.startswith("name = ") else f'name = "cvq_{case}_{variant}"'
             for ln in text.splitlines()]
    path = out / f"{case}_{variant}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def case_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in summary["transitions"]:
        rows.append({
            "pair": f"{r['from']}->{r['to']}",
            "barrier_mbar": r["barrier_eV"], "barrier_mbar_err": r["barrier_err_eV"],
            "barrier_exact": r.get("exact_barrier_eV"),
            "barrier_exact_x5_0": r.get("exact_spectators_at_zero_barrier_eV"),
            "barrier_quad": r["reference_barrier_eV"],
            "dF_mbar": r["delta_F_eV"], "dF_mbar_err": r["delta_F_err_eV"],
            "dF_exact": r.get("exact_delta_F_eV"),
            "dF_exact_x5_0": r.get("exact_spectators_at_zero_delta_F_eV"),
            "dF_quad": r["reference_delta_F_eV"]})
    return rows


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def sensitivity(summary: dict[str, Any]) -> dict[str, Any]:
    s = summary.get("spectator_sensitivity") or {}
    marks = s.get("landmarks", {})
    sep = s.get("separation") or float("nan")
    a = marks.get("A", {})
    return {"x5_spread_at_A": a.get("spread_x5"), "angles_spread_at_A": max(
                a.get("spread_phi12", 0.0), a.get("spread_phi34", 0.0)) if a else None,
            "max_spread": s.get("max_spread"), "separation": s.get("separation"),
            "x5_spread_at_A_over_separation": (round(a["spread_x5"] / sep, 4)
                                               if a and sep == sep else None),
            "misclassified_fraction": s.get("misclassified_fraction"),
            "test_accuracy": summary.get("test_accuracy"),
            "energy_mae_eV": summary.get("test_energy_mae_eV")}


def figure(runs: dict[str, Path], path: Path, title: str) -> None:
    """MBAR PMF over the exact one along the same xi, before | after (1D CVs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtcv_core.io import read_dataset

    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.8), squeeze=False)
    for ax, (variant, run) in zip(axes[0], runs.items(), strict=True):
        fes = read_dataset(run / "fes.nc")
        exact = read_dataset(run / "fes_exact.nc")
        x, y, e = (fes[v].values for v in ("bin_center", "pmf", "pmf_err"))
        ax.plot(x, y, color="C0", label="MBAR along xi")
        ax.fill_between(x, y - e, y + e, color="C0", alpha=0.3)
        ax.plot(exact["bin_center"].values, exact["pmf"].values, "k--", lw=1.2,
                label="exact along the same xi")
        ax.set_xlabel("xi")
        ax.set_ylabel("F (eV)")
        ax.set_title(f"{title}: {variant}", fontsize=9)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_cv_quality"))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-before", action="store_true",
                        help="skip the runs without spectator augmentation")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            raise SystemExit(f"--cases: unknown {c!r}; choose from {list(CASES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = ["after"] if args.no_before else ["after", "before"]

    results: dict[str, dict[str, Any]] = {}
    wall: dict[str, float] = {}
    for case in cases:
        for variant in variants:
            run = out / f"{case}_{variant}"
            if variant == "before":
                reuse_sample_stage(out / f"{case}_after", run)
            t0 = time.perf_counter()
            summary = run_pipeline(variant_config(case, variant, out), out=run, resume=True,
                                   progress=False)
            wall[f"{case}_{variant}"] = round(time.perf_counter() - t0, 1)
            results.setdefault(case, {})[variant] = {"rows": case_rows(summary),
                                                     "sens": sensitivity(summary),
                                                     "summary": summary}
        if results[case]["after"]["summary"]["transitions"] and len(
                results[case]["after"]["rows"]) == 1:
            figure({v: out / f"{case}_{v}" for v in variants},
                   FIGURES / f"cv_quality_{case}.png", CASES[case][0])

    # ------------------------------------------------------------ tables
    fe_rows, sens_rows = [], []
    checks: list[tuple[str, bool]] = []
    figures_out: dict[str, Any] = {}
    for case in cases:
        for variant in variants:
            res = results[case][variant]
            for r in res["rows"]:
                fe_rows.append({
                    "case": CASES[case][0], "CV": variant, "transition": r["pair"],
                    "barrier MBAR": fmt(r["barrier_mbar"], r["barrier_mbar_err"]),
                    "barrier exact along xi": fmt(r["barrier_exact"]),
                    "(x5 = 0)": fmt(r["barrier_exact_x5_0"]),
                    "barrier quadrature": fmt(r["barrier_quad"]),
                    "dF MBAR": fmt(r["dF_mbar"], r["dF_mbar_err"]),
                    "dF exact along xi": fmt(r["dF_exact"]),
                    "dF quadrature": fmt(r["dF_quad"])})
                key = f"{case}_{variant}_{r['pair'].replace('->', '')}"
                figures_out[key] = {
                    "barrier_mbar_eV": r["barrier_mbar"], "barrier_mbar_err_eV":
                    r["barrier_mbar_err"], "barrier_exact_eV": r["barrier_exact"],
                    "barrier_quadrature_eV": r["barrier_quad"], "dF_mbar_eV": r["dF_mbar"],
                    "dF_exact_eV": r["dF_exact"], "dF_quadrature_eV": r["dF_quad"],
                    "mbar_minus_exact_barrier_eV": diff(r["barrier_mbar"], r["barrier_exact"]),
                    "mbar_minus_exact_dF_eV": diff(r["dF_mbar"], r["dF_exact"]),
                    "exact_minus_quadrature_barrier_eV": diff(r["barrier_exact"],
                                                              r["barrier_quad"])}
                if variant == "after":
                    for what in ("barrier", "dF"):
                        d = diff(r[f"{what}_mbar"], r[f"{what}_exact"])
                        checks.append((f"{case} {r['pair']}: |MBAR - exact| {what} <= 0.02 eV "
                                       f"({fmt(d)})", d is not None and abs(d) <= 0.02))
                    if case.startswith("mb"):
                        d = diff(r["barrier_exact"], r["barrier_quad"])
                        checks.append((f"{case}: |exact along xi - quadrature| barrier <= "
                                       f"0.03 eV ({fmt(d)})", d is not None and abs(d) <= 0.03))
            s = res["sens"]
            sens_rows.append({
                "case": CASES[case][0], "CV": variant,
                "test accuracy": f"{s['test_accuracy']:.2%}" if s["test_accuracy"] else "-",
                "xi spread at A, x5 over 5x": fmt(s["x5_spread_at_A"]),
                "angles": fmt(s["angles_spread_at_A"]),
                "largest spread, all landmarks": fmt(s["max_spread"]),
                "A-B separation on xi": fmt(s["separation"]),
                "minima misclassified": fmt(s["misclassified_fraction"])})
            figures_out[f"{case}_{variant}_sensitivity"] = s
            if variant == "after" and case.startswith("mb"):
                checks.append((f"{case}: basin minima keep their class for |x5| up to 5x the "
                               f"training range (misclassified {fmt(s['misclassified_fraction'])})",
                               s["misclassified_fraction"] == 0))

    names = ", ".join(CASES[c][0] for c in cases)
    figs = "\n".join(f"![{c}](figures/cv_quality_{c}.png)" for c in cases
                     if (FIGURES / f"cv_quality_{c}.png").exists())
    write_section("cv_quality", f"""## CV quality: exact PMF along the learned CV, spectators

`python benchmarks/cv_quality.py` on {machine()}: {names}, each example config end to end
twice on the same frames: **after** = the example as shipped (x5 and the embedding
angles redrawn every epoch, `train.spectator_augmentation = 10`; on Müller-Brown also
the classifier's `balance_sources` and `coefficients = {{ energy = 0.1 }}`), **before** =
without those settings. *Exact along xi* is the same observable as MBAR (same bins,
basins by the same classifier, minimax barrier on the binned PMF) by quadrature through the
trained CV, the angles uniform and x5 ~ N(0, its std in the training data); "(x5 = 0)" holds
x5 at zero. MBAR - exact is the sampling/estimator error; exact - quadrature is the CV's
price. Barrier errors by bootstrap, dF analytical (MBAR), eV.

{table(fe_rows, list(fe_rows[0]))}

Spectator sensitivity (`summary.json` `spectator_sensitivity`): xi at the basin minima
while only the spectators move, x5 uniformly over 5x its training range (largest |x5 -
median| of the training frames), the angles over a full turn.

{table(sens_rows, list(sens_rows[0]))}

{chr(10).join(f"- {text}: **{'met' if ok else 'not met'}**" for text, ok in checks)}

Wall time (s): {", ".join(f"{k} {v}" for k, v in wall.items())}.

{figs}
""")
    quick = results.get("mb_quick", {}).get("after")
    head: dict[str, Any] = {}
    if quick:
        r = quick["rows"][0]
        head = {"mb_quick_barrier_xi_exact_eV": r["barrier_exact"],
                "mb_quick_barrier_mbar_eV": r["barrier_mbar"],
                "mb_quick_barrier_mbar_err_eV": r["barrier_mbar_err"],
                "mb_quick_quadrature_eV": r["barrier_quad"],
                "mb_quick_dF_mbar_eV": r["dF_mbar"], "mb_quick_dF_exact_eV": r["dF_exact"],
                "mb_x5_spread_at_A": quick["sens"]["x5_spread_at_A"],
                "mb_x5_misclassified_fraction": quick["sens"]["misclassified_fraction"]}
    emit({**head, "checks_met": sum(ok for _, ok in checks), "checks": len(checks),
          "cases": figures_out, "wall_s": wall})


if __name__ == "__main__":
    main()
