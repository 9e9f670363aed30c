"""Do the reported error bars cover the truth? Umbrella + estimate repeated
with independent seeds on one trained CV, against the exact values along
that same CV; then the CV itself retrained with other seeds.

For each case (the quick 5D Müller-Brown demo, the 5D three-well example)
the example config (2D true-CV reference off) is trained once, by
``benchmarks/cv_quality.py``'s "after" run when it exists (else here). Then:

* **umbrella seeds**: the umbrella and estimate stages run ``--seeds`` times
  on that CV, each with its own seed (walker starts and every random number
  of the windows); per transition z = (MBAR - exact along the CV) / reported
  sigma for the barrier and for F_to - F_from. Reported: coverage at 1 and 2
  sigma, median |z|, the standard deviation of the values over seeds against
  the median reported sigma;
* **CV seeds**: the train stage again with ``--cv-seeds`` other training
  seeds (same frames), each followed by one umbrella + estimate: the spread
  of the barrier over CVs, which no single run's error bar contains.

Case ``ala`` (alanine dipeptide at 50 K, ``examples/alanine_dipeptide.toml``)
has no exact PMF along xi: it runs the example with ``[ensemble] members =
--ala-members`` and ``resample = true`` (TPS, training and umbrella seeded
anew for every member) and reports the barrier and dF along xi as mean ±
total (statistical and CV-to-CV parts), the standard deviation over members
against the total, and the difference from the phi reference with its error
(about 30 min per member on 2 cores).

Usage: python benchmarks/uncertainty_calibration.py [--cases mb_quick,tw,ala] [--seeds 20]
       [--cv-seeds 4 | --cv-seeds mb_quick=3,tw=0] [--ala-members 4] [--out DIR]
       [--estimate-options JSON]
Each run goes to DIR/<case>/seed_<s> (default runs/bench_uncertainty); a run
already there is reused, so an interrupted benchmark resumes. With
``--estimate-options '{"bootstrap_blocks": 8}'`` the estimate stage runs again
with those options on top of the example's, on the windows already sampled
(``transitions_<options>.json`` beside them): estimators compared on the same
samples.
Last line: JSON with ``mb_barrier_coverage_2sigma``, ``mb_dF_coverage_2sigma``,
``mb_barrier_median_abs_z``, ``mb_spread_over_sigma``, ``tw_coverage_2sigma``,
``cv_seed_spread_barrier_eV``, ``ala_barrier_mean_eV``, ``ala_barrier_total_sigma_eV``,
``ala_seed_std_eV`` and the figures per case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, fmt, machine, table, write_section  # noqa: E402
from cv_quality import variant_config  # noqa: E402

from mtcv_core.pipeline import load_config, run_pipeline  # noqa: E402
from mtcv_core.plugins import build_component, load_plugins  # noqa: E402
from mtcv_core.stages import RunContext, run_estimate, run_train, run_umbrella, validate  # noqa: E402

CASES = {"mb_quick": "5D Müller-Brown, quick demo", "tw": "5D three-well"}
#: cases run as a CV ensemble (no exact PMF along xi)
ENSEMBLE_CASES = {"ala": "alanine dipeptide, 50 K"}
ALANINE = ROOT / "examples" / "alanine_dipeptide.toml"
FIGURES = ROOT / "docs" / "figures"
#: what a trained CV consists of (linked into every resampled run)
CV_FILES = ("data.nc", "model.pt", "cv.ts")


def base_run(case: str, out: Path) -> tuple[Path, Path]:
    """(config without the reference, directory of a finished train stage)."""
    cfg = variant_config(case, "after", out)
    shared = ROOT / "runs" / "bench_cv_quality" / f"{case}_after"
    if all((shared / f).exists() for f in CV_FILES):
        return cfg, shared
    run = out / "base"
    if _trained_with(run, cfg):
        return cfg, run  # the umbrella or estimate tables changed since: the CV stands
    run_pipeline(cfg, out=run, until="train", resume=True, progress=False)
    return cfg, run


def _trained_with(run: Path, cfg: Path) -> bool:
    """Whether ``run`` finished sample and train with the config ``cfg``
    has for them (its later tables may differ)."""
    try:
        summary = json.loads((run / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    if not {"sample", "train"} <= set(summary.get("stages_done", [])):
        return False
    now = json.loads(json.dumps(dataclasses.asdict(load_config(cfg)[0]), sort_keys=True))
    keep = ("system", "seed", "temperature_K", "system_options", "sample", "train")
    return all(summary["config"].get(k) == now.get(k) for k in keep)


def _link(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in CV_FILES:
        target = dst / name
        if not target.exists():
            try:
                os.link(src / name, target)
            except OSError:
                target.write_bytes((src / name).read_bytes())


def _context(cfg_path: Path, run: Path, *, seed: int, train_seed: int | None = None,
             estimate_options: dict[str, Any] | None = None) -> RunContext:
    config, _ = load_config(cfg_path)
    train = dict(config.train)
    if train_seed is not None:
        train["seed"] = train_seed
    estimate = dict(config.estimate)
    if estimate_options:
        estimate["options"] = {**estimate.get("options", {}), **estimate_options}
    config = dataclasses.replace(config, seed=seed, train=train, estimate=estimate)
    registry = load_plugins()
    system = build_component(registry, "system", config.system, config.system_options,
                             "system_options", name_where="system")
    from mtcv_core.execution import dask_client

    ctx = RunContext(config=config, out=run, registry=registry, system=system,
                     client_factory=lambda: dask_client(None, config.execution.workers),
                     progress=False, summary={"config": {}})
    validate(ctx)
    return ctx


def resampled(cfg_path: Path, cv_dir: Path, run: Path, seed: int, *,
              train_seed: int | None = None,
              estimate_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The transitions table of umbrella + estimate with ``seed`` on the CV
    in ``cv_dir`` (with ``train_seed``: retrain the CV first, in ``run``;
    with ``estimate_options``: estimate again on the windows already there)."""
    tag = _tag(estimate_options)
    done = run / f"transitions{tag}.json"
    if done.exists():
        return json.loads(done.read_text())
    if (run / "umbrella.nc").exists():  # windows from an earlier call: estimate again
        ctx = _context(cfg_path, run, seed=seed, train_seed=train_seed,
                       estimate_options=estimate_options)
        run_estimate(ctx)
        rows = ctx.summary["transitions"]
        done.write_text(json.dumps(rows))
        return rows
    if train_seed is None:
        _link(cv_dir, run)
    else:
        run.mkdir(parents=True, exist_ok=True)
        if not (run / "data.nc").exists():
            os.link(cv_dir / "data.nc", run / "data.nc")
    ctx = _context(cfg_path, run, seed=seed, train_seed=train_seed,
                   estimate_options=estimate_options)
    try:
        if train_seed is not None:
            run_train(ctx)
        run_umbrella(ctx)
        run_estimate(ctx)
    finally:
        ctx.close_client()
    rows = ctx.summary["transitions"]
    done.write_text(json.dumps(rows))
    return rows


def alanine_ensemble(out: Path, members: int) -> dict[str, Any]:
    """The alanine example as a CV ensemble of ``members`` (data, CV and
    windows seeded anew each); C7eq -> C7ax along xi as mean ± total, the
    phi reference and the difference."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "alanine_ensemble.toml"
    text = ALANINE.read_text()
    if "[ensemble]" in text:
        raise SystemExit(f"{ALANINE} already has an [ensemble] table")
    cfg.write_text(text + f"\n[ensemble]\nmembers = {members}\nresample = true\n")
    summary = run_pipeline(cfg, out=out / "run", resume=True, progress=False)
    row = next(r for r in summary["transitions"] if (r["from"], r["to"]) == ("C7eq", "C7ax"))
    ens = next(t for t in summary["ensemble"]["transitions"]
               if (t["from"], t["to"]) == ("C7eq", "C7ax"))
    verdicts = []
    for k in range(members):
        path = out / "run" / ("summary.json" if k == 0 else f"ensemble/member_{k}/summary.json")
        rows = json.loads(path.read_text()).get("transitions", [])
        r = next((r for r in rows if (r["from"], r["to"]) == ("C7eq", "C7ax")), {})
        failed = [n for n, c in r.get("convergence", {}).items() if c.get("ok") is False]
        verdicts.append("converged" if r.get("converged") else
                        f"not converged ({', '.join(failed) or '?'})")
    result: dict[str, Any] = {"members": members, "verdicts": verdicts,
                              "test_accuracy": [s.get("test_accuracy", summary.get(
                                  "test_accuracy")) for s in summary["ensemble"]["member_seeds"]]}
    for key, ref_key in (("barrier", "true_cv_barrier"), ("delta_F", "true_cv_delta_F")):
        q = ens[key]
        ref, ref_err = row[f"{ref_key}_eV"], row[f"{ref_key}_err_eV"]
        diff = None if q["mean"] is None or ref is None else q["mean"] - ref
        diff_err = (None if q["error_of_mean"] is None or ref_err is None
                    else float(np.hypot(q["error_of_mean"], ref_err)))
        result[key] = {**q, "phi": ref, "phi_err": ref_err, "mean_minus_phi": diff,
                       "mean_minus_phi_err": diff_err}
    return result


def _tag(options: dict[str, Any] | None) -> str:
    """File-name tag of estimator options ("" for none)."""
    if not options:
        return ""
    return "_" + "_".join(f"{k}-{v}" for k, v in sorted(options.items()))


def z_stats(values: np.ndarray, errors: np.ndarray, exact: np.ndarray) -> dict[str, Any]:
    """Coverage, median |z| and spread over seeds for one quantity."""
    z = (values - exact) / errors
    return {"n": int(len(z)), "coverage_1sigma": float(np.mean(np.abs(z) <= 1)),
            "coverage_2sigma": float(np.mean(np.abs(z) <= 2)),
            "median_abs_z": float(np.median(np.abs(z))),
            "std_over_seeds_eV": float(np.std(values, ddof=1)) if len(z) > 1 else None,
            "median_sigma_eV": float(np.median(errors)),
            "spread_over_sigma": (float(np.std(values, ddof=1) / np.median(errors))
                                  if len(z) > 1 else None),
            "mean_minus_exact_eV": float(np.mean(values - exact)), "z": z.tolist()}


def collect(rows_per_seed: list[list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per transition and quantity: the z statistics over seeds."""
    out: dict[str, dict[str, Any]] = {}
    pairs = [(r["from"], r["to"]) for r in rows_per_seed[0]]
    for a, b in pairs:
        rows = [next(r for r in rs if (r["from"], r["to"]) == (a, b)) for rs in rows_per_seed]
        for what, key in (("barrier", "barrier"), ("dF", "delta_F")):
            v = np.array([r[f"{key}_eV"] for r in rows], float)
            e = np.array([r[f"{key}_err_eV"] for r in rows], float)
            x = np.array([r[f"exact_{key}_eV"] for r in rows], float)
            ok = np.isfinite(v) & np.isfinite(e) & np.isfinite(x) & (e > 0)
            out[f"{a}->{b} {what}"] = z_stats(v[ok], e[ok], x[ok])
    return out


def figure(stats: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Histogram of z over all seeds per case, over the standard normal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stats), figsize=(5 * len(stats), 3.6), squeeze=False)
    grid = np.linspace(-5, 5, 201)
    for ax, (case, per) in zip(axes[0], stats.items(), strict=True):
        z = np.concatenate([np.asarray(s["z"]) for s in per.values()])
        ax.hist(np.clip(z, -6, 6), bins=np.linspace(-6, 6, 25), density=True, alpha=0.6,
                label=f"z = (MBAR - exact) / sigma ({len(z)})")
        ax.plot(grid, np.exp(-grid**2 / 2) / np.sqrt(2 * np.pi), "k--", label="N(0, 1)")
        ax.set_xlabel("z")
        ax.set_title(CASES[case], fontsize=9)
        ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cv_seed_counts(spec: str, cases: list[str]) -> dict[str, int]:
    """``--cv-seeds``: "N" (every case) or "case=N,..." (cases not named: 0)."""
    try:
        if "=" not in spec:
            return dict.fromkeys(cases, int(spec))
        counts = {k.strip(): int(v) for k, v in (p.split("=") for p in spec.split(",") if p)}
    except ValueError:
        raise SystemExit(f"--cv-seeds: expected N or case=N,..., got {spec!r}") from None
    unknown = set(counts) - set(cases)
    if unknown or any(n < 0 for n in counts.values()):
        raise SystemExit(f"--cv-seeds: {spec!r} names cases not run ({sorted(unknown)}) or a "
                         "negative count")
    return {c: counts.get(c, 0) for c in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_uncertainty"))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cv-seeds", default="4",
                        help="CV-training seeds per case: N for every case, or e.g. "
                             "'mb_quick=3,tw=0'")
    parser.add_argument("--ala-members", type=int, default=4,
                        help="CV-ensemble members of the alanine case")
    parser.add_argument("--estimate-options", default="",
                        help="JSON options on top of the example's [estimate] options")
    args = parser.parse_args()
    est_opts = json.loads(args.estimate_options) if args.estimate_options else None
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES and c not in ENSEMBLE_CASES:
            raise SystemExit(f"--cases: unknown {c!r}; choose from "
                             f"{list(CASES) + list(ENSEMBLE_CASES)}")
    if "ala" in cases and args.ala_members < 2:
        raise SystemExit(f"--ala-members: expected >= 2, got {args.ala_members}")
    cv_seeds = cv_seed_counts(args.cv_seeds, cases)
    out = Path(args.out)
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    cv_spread: dict[str, dict[str, Any]] = {}
    wall: dict[str, float] = {}
    ala: dict[str, Any] | None = None
    for case in cases:
        t0 = time.perf_counter()
        case_dir = out / case
        if case == "ala":
            ala = alanine_ensemble(case_dir, args.ala_members)
            wall[case] = round(time.perf_counter() - t0, 1)
            continue
        case_dir.mkdir(parents=True, exist_ok=True)
        cfg, cv_dir = base_run(case, case_dir)
        base_seed = load_config(cfg)[0].seed
        seeds = [base_seed + 1000 + i for i in range(args.seeds)]
        rows = [resampled(cfg, cv_dir, case_dir / f"seed_{s}", s, estimate_options=est_opts)
                for s in seeds]
        stats[case] = collect(rows)
        cv_rows = [resampled(cfg, cv_dir, case_dir / f"cv_seed_{k}", base_seed, train_seed=k,
                             estimate_options=est_opts)
                   for k in range(1, cv_seeds[case] + 1)]
        cv_spread[case] = {}
        for r0 in cv_rows[0] if cv_rows else []:
            pair = (r0["from"], r0["to"])
            vals = [next(r for r in rs if (r["from"], r["to"]) == pair) for rs in cv_rows]
            cv_spread[case][f"{pair[0]}->{pair[1]}"] = {
                "barrier_mbar_eV": [v["barrier_eV"] for v in vals],
                "barrier_exact_eV": [v["exact_barrier_eV"] for v in vals],
                "std_barrier_eV": float(np.std([v["barrier_eV"] for v in vals], ddof=1))
                if len(vals) > 1 else None,
                "std_exact_barrier_eV": float(np.std([v["exact_barrier_eV"] for v in vals],
                                                     ddof=1)) if len(vals) > 1 else None}
        wall[case] = round(time.perf_counter() - t0, 1)

    rows_md = []
    for case, per in stats.items():
        for q, s in per.items():
            rows_md.append({
                "case": CASES[case], "quantity": q, "seeds": str(s["n"]),
                "within 1 sigma": f"{s['coverage_1sigma']:.0%}",
                "within 2 sigma": f"{s['coverage_2sigma']:.0%}",
                "median abs z": fmt(s["median_abs_z"], digits=2),
                "mean - exact": fmt(s["mean_minus_exact_eV"]),
                "std over seeds": fmt(s["std_over_seeds_eV"]),
                "median sigma": fmt(s["median_sigma_eV"]),
                "std / sigma": fmt(s["spread_over_sigma"], digits=2)})
    cv_md = [{"case": CASES[c], "transition": p, "CV seeds": str(len(v["barrier_mbar_eV"])),
              "barrier MBAR": ", ".join(fmt(x) for x in v["barrier_mbar_eV"]),
              "barrier exact along each CV": ", ".join(fmt(x) for x in v["barrier_exact_eV"]),
              "std MBAR": fmt(v["std_barrier_eV"]), "std exact": fmt(v["std_exact_barrier_eV"])}
             for c, per in cv_spread.items() for p, v in per.items()]
    tag = _tag(est_opts)
    fig_path = FIGURES / f"uncertainty_z{tag}.png"
    if stats:
        figure(stats, fig_path)

    def first(case: str, what: str) -> dict[str, Any]:
        per = stats.get(case, {})
        return next((s for q, s in per.items() if q.endswith(what)), {})

    mb_b, mb_f = first("mb_quick", "barrier"), first("mb_quick", "dF")
    tw_all = [s for s in stats.get("tw", {}).values()]
    checks = []
    for case, per in stats.items():
        for q, s in per.items():
            checks.append((f"{case} {q}: within 2 sigma in >= 90 % ({s['coverage_2sigma']:.0%})",
                           s["coverage_2sigma"] >= 0.9))
            checks.append((f"{case} {q}: median |z| in [0.4, 1.0] ({s['median_abs_z']:.2f})",
                           0.4 <= s["median_abs_z"] <= 1.0))
            r = s["spread_over_sigma"]
            checks.append((f"{case} {q}: std over seeds within 1.5x of the median sigma "
                           f"({fmt(r, digits=2)})", r is not None and 1 / 1.5 <= r <= 1.5))
    ala_md = "(alanine not run: `--cases ala`)"
    if ala is not None:
        ala_rows = []
        for key, label in (("barrier", "barrier C7eq->C7ax"), ("delta_F", "F(C7ax) - F(C7eq)")):
            q = ala[key]
            ala_rows.append({
                "quantity": label,
                "members": ", ".join("n/a" if v is None else f"{v:.3f}" for v in q["values"]),
                "mean ± total": f"{fmt(q['mean'])} ± {fmt(q['total'])}",
                "statistical": fmt(q["statistical"]), "CV-to-CV": fmt(q["cv"]),
                "std over members": fmt(q.get("std_over_members")),
                "phi reference": f"{fmt(q['phi'])} ± {fmt(q['phi_err'])}",
                "mean - phi": f"{fmt(q['mean_minus_phi'])} ± {fmt(q['mean_minus_phi_err'])}"})
            s, t = q.get("std_over_members"), q["total"]
            checks.append((f"ala {key}: std over members within 1.5x of the quoted total "
                           f"({fmt(s)} vs {fmt(t)})",
                           s is not None and t is not None and t / 1.5 <= s <= 1.5 * t))
        ala_md = (f"Alanine dipeptide at 50 K (`examples/alanine_dipeptide.toml` with "
                  f"`[ensemble] members = {ala['members']}`, `resample = true`: TPS, training "
                  "and umbrella seeded anew per member; eV). mean - phi carries the error "
                  "of the mean, total / sqrt(members), and phi's own. Test accuracy per "
                  f"member: {', '.join(fmt(a, digits=3) for a in ala['test_accuracy'])}; "
                  "the run's convergence verdict per member: "
                  f"{'; '.join(ala.get('verdicts', []))}. The total's CV-to-CV part is the "
                  "standard deviation over members itself, so the check below holds by "
                  "construction: it says the members' own error bars are small beside "
                  "their spread, not that the total is calibrated.\n\n"
                  + table(ala_rows, list(ala_rows[0])))
    opts_text = f"--estimate-options '{args.estimate_options}' " if est_opts else ""
    title = f" (estimate options {args.estimate_options})" if est_opts else ""
    if est_opts and est_opts.get("bootstrap_blocks"):
        sigma_text = "barrier and dF: the bootstrap over walker blocks"
    elif est_opts and est_opts.get("walker_excess_p", 0) > 0:
        sigma_text = ("barrier: bootstrap over samples, windows whose walkers disagree "
                      "drawn as many times fewer as their walkers' scatter says "
                      "(`walker_inflation`); dF: MBAR's analytical error, or the "
                      "bootstrap's where larger when a window is inflated")
    else:
        sigma_text = "barrier: bootstrap over samples; dF: MBAR's analytical error"
    # a call with the alanine ensemble alone has its own section (the sweeps'
    # sections stay as their calls wrote them)
    section = ("uncertainty_calibration_alanine" if cases == ["ala"]
               else f"uncertainty_calibration{tag}")
    if cases == ["ala"]:
        write_section(section, f"""## Alanine dipeptide: the CV's own spread

`python benchmarks/uncertainty_calibration.py --cases ala --ala-members {args.ala_members}`
on {machine()}.

{ala_md}

{chr(10).join(f"- {text}: **{'met' if ok else 'not met'}**" for text, ok in checks)}
""")
        emit({"ala_barrier_mean_eV": ala["barrier"]["mean"] if ala else None,
              "ala_barrier_total_sigma_eV": ala["barrier"]["total"] if ala else None,
              "ala_seed_std_eV": ala["barrier"].get("std_over_members") if ala else None,
              "ala": ala, "checks": len(checks), "checks_met": sum(ok for _, ok in checks),
              "wall_s": wall})
        return
    write_section(section, f"""## Uncertainty calibration{title}

`python benchmarks/uncertainty_calibration.py --seeds {args.seeds} --cv-seeds {args.cv_seeds}`
{opts_text}on {machine()}. One trained CV per case (the example as shipped, `cv_quality.py`'s
"after" run); the umbrella and estimate stages repeated with independent seeds; z =
(MBAR - exact along the same CV) / reported sigma ({sigma_text}). A calibrated
error bar puts about 68 % of the runs within 1 sigma and 95 % within 2, with median |z| near
0.67 and the spread over seeds equal to sigma.

{table(rows_md, list(rows_md[0])) if rows_md else "(no case run)"}

The CV's own spread: the same frames, the CV retrained with other seeds, one umbrella +
estimate each (eV).

{table(cv_md, list(cv_md[0])) if cv_md else "(no CV seeds run)"}

{ala_md}

{chr(10).join(f"- {text}: **{'met' if ok else 'not met'}**" for text, ok in checks)}

Wall time of this call (s; a run reused from an earlier call counts 0, windows it
left re-estimated count their estimate): {", ".join(
    f"{k} {v}" for k, v in wall.items())}.
{f"![z](figures/uncertainty_z{tag}.png)" if stats else ""}
""")
    mb_cv = cv_spread.get("mb_quick", {})
    emit({"mb_barrier_coverage_2sigma": mb_b.get("coverage_2sigma"),
          "mb_dF_coverage_2sigma": mb_f.get("coverage_2sigma"),
          "mb_barrier_median_abs_z": mb_b.get("median_abs_z"),
          "mb_spread_over_sigma": mb_b.get("spread_over_sigma"),
          "tw_coverage_2sigma": (min(s["coverage_2sigma"] for s in tw_all) if tw_all
                                 else None),
          "cv_seed_spread_barrier_eV": next((v["std_barrier_eV"] for v in mb_cv.values()),
                                            None),
          "ala_barrier_mean_eV": ala["barrier"]["mean"] if ala else None,
          "ala_barrier_total_sigma_eV": ala["barrier"]["total"] if ala else None,
          "ala_seed_std_eV": ala["barrier"].get("std_over_members") if ala else None,
          "ala": ala,
          "checks": len(checks), "checks_met": sum(ok for _, ok in checks),
          "stats": {c: {q: {k: v for k, v in s.items() if k != "z"} for q, s in per.items()}
                    for c, per in stats.items()},
          "cv_seeds": cv_spread, "wall_s": wall})


if __name__ == "__main__":
    main()
