"""The report stage: ``report.md`` and the free-energy figures."""

from __future__ import annotations

import math
from typing import Any

from mtcv_core.io import atomic_path, read_dataset
from mtcv_core.stages.context import RunContext


def run_report(ctx: RunContext) -> None:
    """``report.md`` and the free-energy figures."""
    from mtcv_core.plots import plot_fes

    figs = ctx.out / "figures"
    exact = read_dataset(ctx.out / "fes_exact.nc") if (ctx.out / "fes_exact.nc").exists() \
        else None
    s = ctx.summary
    for name in ("fes", "fes_reference"):
        path = ctx.out / f"{name}.nc"
        if not path.exists():
            continue
        fes = read_dataset(path)
        basin_of = None
        if name == "fes" and "bin" in fes["pmf"].dims and (ctx.out / "cv.ts").exists():
            from mtcv_core.stages.common import trained_cv

            basin_of = trained_cv(ctx)[1]
        plot_fes(fes, figs / f"{name}.png", exact=exact if name == "fes" else None,
                 basin_of=basin_of,
                 transitions=s.get("transitions", []) if name == "fes" else ())
        if name == "fes" and "convergence_time" in fes.coords and s.get("transitions"):
            from mtcv_core.plots import plot_fes_convergence

            plot_fes_convergence(fes, s["transitions"], figs / "fes_convergence.png")
    lines = [f"# mtcv run: {ctx.config.name}", "",
             f"System `{s['system']}` at {s['temperature_K']} K, seed {ctx.config.seed}.", "",
             *_warning_banner(s.get("warnings")),
             "## Data and CV", "",
             f"- frames: {s.get('n_train')} train, {s.get('n_test')} test",
             *([f"- CV: imported from {s['imported_cv']} (train.cv_file); basins along it "
                "by a linear classifier on the labelled training frames"]
               if s.get("imported_cv") else []),
             f"- test accuracy: {_fmt(s.get('test_accuracy'), 4)}",
             f"- test energy MAE: {_fmt(s.get('test_energy_mae_eV'), 4)} eV", "",
             "## Free energies (eV)", "",
             "Along xi: the estimator on the sampler's output; *exact along xi*: the same "
             "observable by quadrature through the same CV where the system has one "
             "(estimate - exact = sampling and estimator error); *quadrature*: the "
             "system's own reference (exact along xi - quadrature = the CV's price).", "",
             "| transition | barrier: along xi | exact along xi | along true CVs | "
             "quadrature | dF: along xi | exact along xi | along true CVs | quadrature |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s.get("transitions", []):
        lines.append(
            f"| {r['from']}->{r['to']} | {_pm(r['barrier_eV'], r['barrier_err_eV'])} | "
            f"{_fmt(r.get('exact_barrier_eV'), 3)} | "
            f"{_pm(r['true_cv_barrier_eV'], r['true_cv_barrier_err_eV'])} | "
            f"{_fmt(r['reference_barrier_eV'], 3)} | "
            f"{_pm(r['delta_F_eV'], r['delta_F_err_eV'])} | "
            f"{_fmt(r.get('exact_delta_F_eV'), 3)} | "
            f"{_pm(r['true_cv_delta_F_eV'], r['true_cv_delta_F_err_eV'])} | "
            f"{_fmt(r['reference_delta_F_eV'], 3)} |")
    lines += _convergence_lines(s.get("transitions", []), s.get("drifting_windows"))
    if (ctx.out / "rates.nc").exists() and s.get("rates"):
        from mtcv_core.plots import plot_rates

        plot_rates(read_dataset(ctx.out / "rates.nc"), figs / "rates.png")
        lines += _rate_lines(s["rates"])
    lines += _ensemble_lines(s.get("ensemble"))
    lines += _spectator_lines(s.get("spectator_sensitivity"))
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {v}" for k, v in s.get("timings_s", {}).items()]
    lines += ["", "## Figures", ""]
    for p in sorted(figs.glob("*.png")):
        lines += [f"![{p.stem}](figures/{p.name})", "",
                  f"*{CAPTIONS.get(p.stem, p.stem.replace('_', ' '))}*", ""]
    with atomic_path(ctx.out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


#: one-line caption of each figure the stages write (file stem -> caption)
CAPTIONS = {
    "fes": "Free energy along the learned CV xi (the run's estimator, band: 1 sigma), with "
           "the exact PMF "
           "along the same CV where the system has quadrature, the basins as the run "
           "assigns them, the first transition's barrier and dF, and the reference "
           "barrier levels (quadrature, along the true CVs).",
    "fes_convergence": "Barrier and dF along xi from the samples up to each time (the "
                       "estimator's record for walkers under a time-dependent bias), "
                       "dashed: exact along xi where the system has quadrature.",
    "rates": "Rates along xi: kappa(t) of every transition with its bootstrap band, the "
             "plateau (dotted) and where it starts (dashed); the committor at xi* over the "
             "shot configurations (an ideal reaction coordinate peaks at 1/2).",
    "fes_reference": "Free energy along the system's true CVs (the reference umbrella run).",
    "data": "The sampled frames in the true CVs, by source and label.",
    "training_history": "Training and validation losses per epoch.",
    "along_xi": "Test frames along xi: energy (and its prediction), labels and basin "
                "probabilities.",
    "xi_plane": "xi over the plane of the true CVs (test frames).",
}


def _warning_banner(entries: list[dict[str, Any]] | None) -> list[str]:
    """The failed sanity gates (:mod:`mtcv_core.sanity`), first thing in the
    report."""
    if not entries:
        return []
    return ["> **Warning: numbers below are not to be trusted.**", ">",
            *[f"> - {w['message']}" for w in entries], ""]


def _convergence_lines(rows: list[dict[str, Any]], drifting: Any) -> list[str]:
    """The convergence verdict of each transition along xi
    (:mod:`mtcv_core.convergence`)."""
    rows = [r for r in rows if "converged" in r]
    if not rows:
        return []
    lines = ["", "## Convergence along xi", "",
             "Checks a bootstrap over samples cannot make: windows whose walkers drift "
             "between the halves of their runs (in xi or the unbiased energy), the estimate "
             "repeated on the first and on the second halves, neighbour overlap, windows "
             "dropped for disagreeing walkers, the MBAR solution. `mtcv run --strict` fails "
             "on a transition that is not converged.", "",
             "| transition | converged | failed checks | barrier halves | dF halves |",
             "|---|---|---|---|---|"]
    for r in rows:
        checks = r.get("convergence", {})
        failed = [n for n, c in checks.items() if c.get("ok") is False]
        halves = checks.get("halves_agree", {})

        def pair(key: str, halves: dict[str, Any] = halves) -> str:
            h = halves.get(key, {})
            a, b = h.get("first_half"), h.get("second_half")
            text = " / ".join("n/a" if v is None else f"{v:.3f}" for v in (a, b))
            return text if h.get("z") is None else f"{text} (z {h['z']})"

        lines.append(f"| {r['from']}->{r['to']} | {'yes' if r['converged'] else 'NO'} | "
                     f"{', '.join(failed) or '-'} | {pair('barrier_eV')} | "
                     f"{pair('delta_F_eV')} |")
    if drifting:
        lines += ["", f"Drifting windows: {', '.join(str(w) for w in drifting)}."]
    return lines


def _rate_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The rate stage's table (:mod:`mtcv_core.stages.rate`)."""
    lines = ["", "## Rates along xi", "",
             "k = kappa k_TST: transition-state theory on the PMF along xi (flux from "
             "<|grad xi|_M> on the dividing surface xi*) times the transmission "
             "coefficient kappa from shots off the surface. Errors: kappa's bootstrap "
             "over configurations and the PMF's barrier error, in quadrature (as a factor "
             "×/÷ exp(sigma_ln k) when that is above 0.3). MFPT = 1/k. "
             "Reference: brute-force MD first passages with their 95 % interval, where "
             "the config asks for it.", "",
             "| transition | xi* | k_TST (1/s) | kappa | k (1/s) | MFPT | reference (1/s) | "
             "k / reference | committor at xi* |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = r.get("reference_rate_per_s")
        ref_text = "-" if ref is None else (
            f"{ref:.3g} [{_g(r.get('reference_rate_lo_per_s'))}, "
            f"{_g(r.get('reference_rate_hi_per_s'))}]")
        lines.append(
            f"| {r['from']}->{r['to']} | {_fmt(r.get('xi_star'), 3)} | "
            f"{_rate(r, 'rate_tst')} | "
            f"{_pm(r['kappa'], r.get('kappa_err'))} | "
            f"{_rate(r)} | "
            f"{_duration(r.get('mfpt_s'))} | {ref_text} | "
            f"{_fmt(r.get('ratio_to_reference'), 2)} | "
            f"{_pm(r.get('committor_mean'), r.get('committor_std'))} |")
    means = [r["committor_mean"] for r in rows if r.get("committor_mean") is not None]
    if not means:
        return lines
    worst = max(abs(m - 0.5) for m in means)
    spread = max((r["committor_std"] for r in rows if r.get("committor_std") is not None),
                 default=0.0)
    verdict = ("close to an ideal reaction coordinate" if worst <= 0.1 and spread <= 0.25
               else "not an ideal reaction coordinate")
    lines += ["", f"Committor test: at xi* the mean committor is off 1/2 by {worst:.2f} "
                  f"and its spread over configurations is {spread:.2f} (ideal: 0 and "
                  f"narrow; a coordinate that misses a slow mode gives a flat or "
                  f"bimodal histogram): {verdict}."]
    return lines


def _rate(row: dict[str, Any], name: str = "rate") -> str:
    """k ± err, or k ×/÷ factor when the relative error is large (above 0.3:
    the PMF's part of it is an error of ln k)."""
    k, err = row.get(f"{name}_per_s"), row.get(f"{name}_err_per_s")
    ln_err = row.get("rate_ln_err") if name == "rate" else (
        err / k if k and err is not None else None)
    if ln_err is not None and ln_err > 0.3 and k is not None:
        return f"{_g(k)} ×/÷ {math.exp(ln_err):.2g}"
    return f"{_g(k)} ± {_g(err)}"


def _g(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _duration(seconds: Any) -> str:
    """A time in the unit that reads best (fs to s)."""
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("ps", 1e-12)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-15:.3g} fs"


def _ensemble_lines(ens: dict[str, Any] | None) -> list[str]:
    """The CV ensemble's numbers (:mod:`mtcv_core.stages.ensemble`)."""
    if not ens:
        return []
    data = "its own data (TPS and basin MD resampled)" if ens.get("resample") else \
        "the run's data"
    lines = ["", "## CV ensemble", "",
             f"{ens['members']} CVs trained with different seeds on {data}, umbrella + "
             "estimate on each. mean ± total: total = sqrt(statistical^2 + CV^2) is the "
             "spread expected of one CV's value; statistical: the members' own error bars "
             "(root mean square); CV: the CV-to-CV part of the spread; the mean itself is "
             "known to total / sqrt(members). Exact: the exact PMF along each member's CV "
             "(no sampling noise), mean and standard deviation over the members.", "",
             "| transition | quantity | members | mean ± total | statistical | CV-to-CV | "
             "exact along each CV |",
             "|---|---|---|---|---|---|---|"]
    for t in ens.get("transitions", []):
        for key, label in (("barrier", "barrier"), ("delta_F", "dF")):
            q = t.get(key, {})
            ex = t.get(f"exact_{key}")
            exact = "n/a" if not ex else f"{ex['mean']:.3f} (std {_fmt(ex['std'], 3)})"
            values = ", ".join("n/a" if v is None else f"{v:.3f}" for v in q.get("values", []))
            lines.append(f"| {t['from']}->{t['to']} | {label} | {values} | "
                         f"{_pm(q.get('mean'), q.get('total'))} | "
                         f"{_fmt(q.get('statistical'), 3)} | {_fmt(q.get('cv'), 3)} | "
                         f"{exact} |")
    return lines


def _spectator_lines(sens: dict[str, Any] | None) -> list[str]:
    if not sens:
        return []
    lines = ["", "## Spectator sensitivity", "",
             f"xi at the landmarks while only the spectators move over {sens['k']:g}x "
             f"their training range (periodic ones over their period); separation of "
             f"the basin minima on xi: {_fmt(sens.get('separation'), 3)}; basin-minimum "
             f"draws classified into another basin: "
             f"{_fmt(sens.get('misclassified_fraction'), 3)}.", "",
             "| landmark | xi | spread (all) | " + " | ".join(
                 f"spread ({n})" for n in sens["training_ranges"]) + " |",
             "|---|---|---|" + "---|" * len(sens["training_ranges"])]
    for mark, row in sens["landmarks"].items():
        lines.append(f"| {mark} | {', '.join(f'{v:.3f}' for v in row['xi'])} | "
                     f"{row['spread']:.3f} | " + " | ".join(
                         f"{row['spread_' + n]:.3f}" for n in sens["training_ranges"]) + " |")
    return lines


def _fmt(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pm(value: Any, err: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if err is None else f" ± {err:.3f}")


__all__ = ["run_report"]
