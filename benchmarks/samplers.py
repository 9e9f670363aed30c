"""A second sampler on the learned CV: OPES-metaD and well-tempered
metadynamics (``mtcv_opes``) against umbrella sampling, side by side on the
same CV of the 5D Muller-Brown quick demo (issue #21).

1. The quick demo's sample and train stages (``examples/quick.toml --until
   train``) once, in ``DIR/base`` (or ``--base RUN``: a finished run whose
   ``data.nc``, ``model.pt`` and ``cv.ts`` are reused).
2. On that CV, each sampler through the pipeline, as a user would: the
   quick config with ``[umbrella] sampler = ...`` and ``[estimate]
   estimator = ...`` (``reweight`` for the history-dependent biases,
   ``mbar`` for umbrella), no true-CV reference. The estimate stage gives
   the exact barrier and dF along the same CV by quadrature.
3. Time to accuracy: the wall time after which |barrier - exact| and
   |dF - exact| stay under 0.05 eV. For OPES and metaD from the estimator's
   record of both against simulated time (the sampler's wall time scaled by
   the fraction of the run, plus the estimate's); for umbrella, runs with
   ``n_steps`` of 2500, 5000 and 10000 per walker (the demo's): the shortest
   from which on every longer run is within 0.05 eV too (its umbrella +
   estimate wall time).

Usage: python benchmarks/samplers.py [--out DIR] [--base RUN]
       [--only metad,opes,opes_metad,umbrella]
       [--alanine-base RUN]
With ``--alanine-base`` (a finished ``examples/alanine_dipeptide.toml`` run at 50 K),
metaD and OPES also run along its xi, against its phi reference.
Writes the "samplers" section of docs/results.md and docs/figures/samplers_convergence.png.
Last line: JSON with ``mb_opes_barrier_err_eV``, ``mb_opes_dF_err_eV``,
``mb_metad_barrier_err_eV``, ``mb_metad_dF_err_eV``, ``opes_time_to_accuracy_s``,
``metad_time_to_accuracy_s``, ``umbrella_time_to_accuracy_s`` (None: not reached),
``ala_opes_barrier_err_eV`` and ``ala_metad_barrier_err_eV`` (None: alanine not run) and
the wall times.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import (  # noqa: E402
    ROOT,
    emit,
    fmt,
    machine,
    reuse_sample_stage,
    table,
    write_section,
)

from mtcv_core.pipeline import run_pipeline  # noqa: E402

QUICK = ROOT / "mtcv_core" / "examples" / "quick.toml"
TOLERANCE = 0.05
#: the history-dependent samplers' options (16 walkers, 200 ps each); case name ->
#: (sampler, options). "opes" is OPES-explore; "opes_metad" the plain OPES-metaD,
#: shown for what it does on this CV
HISTORY = {
    "metad": ("metad", {"n_walkers": 16, "n_steps": 200000, "pace": 200, "stride": 50,
                        "biasfactor": 20.0, "sigma": 0.05, "starts": "basins"}),
    "opes": ("opes", {"n_walkers": 16, "n_steps": 200000, "pace": 200, "stride": 50,
                      "barrier_eV": 1.0, "biasfactor": 20.0, "explore": True, "sigma": 0.05,
                      "starts": "basins"}),
    "opes_metad": ("opes", {"n_walkers": 16, "n_steps": 200000, "pace": 200, "stride": 50,
                            "barrier_eV": 1.0, "sigma": 0.05, "starts": "basins"}),
}
#: directory of each case (the plain OPES-metaD ran as "opes" first)
CASE_DIRS = {"metad": "metad", "opes": "opes_explore", "opes_metad": "opes"}
UMBRELLA_STEPS = (2500, 5000, 10000)
ALANINE = ROOT / "examples" / "alanine_dipeptide.toml"
#: alanine at 50 K along xi (0.5 fs steps: 100 ps per walker)
ALANINE_HISTORY = {
    "metad": ("metad", {"n_walkers": 16, "n_steps": 200000, "pace": 200, "stride": 50,
                        "biasfactor": 30.0, "starts": "basins"}),
    "opes": ("opes", {"n_walkers": 16, "n_steps": 200000, "pace": 200, "stride": 50,
                      "barrier_eV": 0.45, "biasfactor": 30.0, "explore": True,
                      "starts": "basins"}),
    "opes_metad": ("opes", {"n_walkers": 16, "n_steps": 200000, "pace": 200, "stride": 50,
                            "barrier_eV": 0.45, "starts": "basins"}),
}
ALANINE_DIRS = {"metad": "alanine_metad", "opes": "alanine_opes_explore",
                "opes_metad": "alanine_opes"}


def base_text() -> str:
    """The quick config up to its [umbrella] table."""
    return QUICK.read_text().split("\n[umbrella]")[0]


def config_text(sampler: str, options: dict[str, Any]) -> str:
    """The quick config with ``sampler`` along xi and its estimator."""
    text = base_text() + '\n[umbrella]\ntransitions = [["A", "B"]]\nreference = false\n'
    text += f'sampler = "{sampler}"\n\n[umbrella.sampler_options]\n'
    for k, v in options.items():
        text += f"{k} = {json.dumps(v)}\n"
    if sampler == "umbrella":
        text += '\n[estimate]\nestimator = "mbar"\noptions = { n_bins = 50, n_bootstraps = 20 }\n'
    else:
        text += '\n[estimate]\nestimator = "reweight"\noptions = { n_bins = 50 }\n'
    return text


def alanine_text(sampler: str, options: dict[str, Any]) -> str:
    """The alanine example with ``sampler`` along xi, no reference, no rates."""
    text = ALANINE.read_text().split("\n[umbrella]")[0]
    text += '\n[umbrella]\ntransitions = [["C7eq", "C7ax"]]\nreference = false\n'
    text += f'sampler = "{sampler}"\n\n[umbrella.sampler_options]\n'
    for k, v in options.items():
        text += f"{k} = {json.dumps(v)}\n"
    return text + '\n[estimate]\nestimator = "reweight"\noptions = { n_bins = 50 }\n'


def alanine_cases(base: Path, out: Path, only: list[str]) -> dict[str, dict[str, Any]]:
    """metaD / OPES along the 50 K xi of the finished alanine run ``base``,
    against its umbrella along xi and its phi reference."""
    ref = next(r for r in json.loads((base / "summary.json").read_text())["transitions"]
               if (r["from"], r["to"]) == ("C7eq", "C7ax"))
    cases = {}
    for name, (sampler, options) in ALANINE_HISTORY.items():
        if name not in only:
            continue
        dst = out / ALANINE_DIRS[name]
        reuse_sample_stage(base, dst, with_train=True)
        cfg = dst.with_suffix(".toml")
        cfg.write_text(alanine_text(sampler, options))
        summary = run_pipeline(cfg, out=dst, until="estimate", resume=True, progress=False)
        row = summary["transitions"][0]
        cases[name] = {"row": row, "wall": summary["timings_s"]["umbrella"]
                       + summary["timings_s"]["estimate"],
                       "barrier_err": row["barrier_eV"] - ref["true_cv_barrier_eV"]
                       if row["barrier_eV"] is not None else None,
                       "dF_err": row["delta_F_eV"] - ref["true_cv_delta_F_eV"]
                       if row["delta_F_eV"] is not None else None}
    cases["umbrella"] = {"row": ref, "wall": None,
                         "barrier_err": ref["barrier_eV"] - ref["true_cv_barrier_eV"],
                         "dF_err": ref["delta_F_eV"] - ref["true_cv_delta_F_eV"]}
    return cases


def alanine_table(cases: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, c in cases.items():
        r = c["row"]
        rows.append({"sampler along xi": name,
                     "barrier (eV)": fmt(r["barrier_eV"], r["barrier_err_eV"]),
                     "minus phi": fmt(c["barrier_err"]),
                     "dF (eV)": fmt(r["delta_F_eV"], r["delta_F_err_eV"]),
                     "dF minus phi": fmt(c["dF_err"]),
                     "wall (s)": "-" if c["wall"] is None else f"{c['wall']:.0f}"})
    ref = cases["umbrella"]["row"]
    return (f"Alanine dipeptide at 50 K along the example's xi (`--alanine-base`: a finished "
            f"`examples/alanine_dipeptide.toml` run whose data and CV are reused), against "
            f"its umbrella windows along phi: barrier "
            f"{fmt(ref['true_cv_barrier_eV'], ref['true_cv_barrier_err_eV'])}, dF "
            f"{fmt(ref['true_cv_delta_F_eV'], ref['true_cv_delta_F_err_eV'])} eV. "
            f"metaD and OPES: {ALANINE_HISTORY['metad'][1]['n_walkers']} walkers x "
            f"{ALANINE_HISTORY['metad'][1]['n_steps'] // 2000} ps; umbrella: the run's own "
            f"windows along xi.\n\n" + table(rows, list(rows[0])))


def umbrella_options(n_steps: int) -> dict[str, Any]:
    """The quick demo's umbrella options with ``n_steps`` per walker."""
    import tomllib

    opts = dict(tomllib.loads(QUICK.read_text())["umbrella"]["sampler_options"])
    opts["n_steps"] = n_steps
    opts["equilibration_steps"] = min(int(opts.get("equilibration_steps", 1000)), n_steps // 5)
    return opts


def run_case(base: Path, out: Path, sampler: str, options: dict[str, Any]) -> dict[str, Any]:
    reuse_sample_stage(base, out, with_train=True)
    cfg = out.with_suffix(".toml")
    cfg.write_text(config_text(sampler, options))
    summary = run_pipeline(cfg, out=out, until="estimate", resume=True, progress=False)
    row = summary["transitions"][0]
    return {"summary": summary, "row": row, "out": out,
            "wall": summary["timings_s"]["umbrella"] + summary["timings_s"]["estimate"],
            "barrier_err": row["barrier_eV"] - row["exact_barrier_eV"]
            if row["barrier_eV"] is not None else None,
            "dF_err": row["delta_F_eV"] - row["exact_delta_F_eV"]
            if row["delta_F_eV"] is not None else None}


def time_to_accuracy(case: dict[str, Any]) -> float | None:
    """Wall time after which both errors stay under the tolerance, from the
    estimator's record against simulated time."""
    import xarray as xr

    row = case["row"]
    with xr.open_dataset(case["out"] / "fes.nc") as fes:
        if "convergence_time" not in fes.coords:
            return None
        sel = {"basin_from": row["from"], "basin_to": row["to"]}
        t = fes["convergence_time"].values
        b = fes["convergence_barrier"].sel(sel).values - row["exact_barrier_eV"]
        d = fes["convergence_delta_F"].sel(sel).values - row["exact_delta_F_eV"]
    with xr.open_dataset(case["out"] / "umbrella.nc") as samples:
        t_end = float(samples["time"].values[-1])
    ok = np.isfinite(b) & np.isfinite(d) & (np.abs(b) < TOLERANCE) & (np.abs(d) < TOLERANCE)
    if not ok[-1]:
        return None
    first = len(ok) - int(np.argmin(ok[::-1])) if not ok.all() else 0
    timings = case["summary"]["timings_s"]
    return float(timings["umbrella"] * t[first] / t_end + timings["estimate"])


def figure(cases: dict[str, dict[str, Any]], path: Path) -> None:
    """Barrier and dF against simulated time for the history-dependent samplers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for name, case in cases.items():
        path_fes = case["out"] / "fes.nc"
        if not path_fes.exists():
            continue
        row = case["row"]
        with xr.open_dataset(path_fes) as fes:
            if "convergence_time" not in fes.coords:
                continue
            sel = {"basin_from": row["from"], "basin_to": row["to"]}
            t = fes["convergence_time"].values / 1000.0
            axes[0].plot(t, fes["convergence_barrier"].sel(sel).values, "o-", label=name)
            axes[1].plot(t, fes["convergence_delta_F"].sel(sel).values, "o-", label=name)
    any_row = next(iter(cases.values()))["row"]
    for ax, key, title in ((axes[0], "exact_barrier_eV", "barrier A->B"),
                           (axes[1], "exact_delta_F_eV", "F_B - F_A")):
        exact = any_row[key]
        ax.axhline(exact, color="k", lw=1, label="exact along xi")
        ax.axhspan(exact - TOLERANCE, exact + TOLERANCE, color="0.9")
        ax.set_xlabel("simulated time per walker (ps)")
        ax.set_ylabel("eV")
        ax.set_title(title)
    axes[0].legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_samplers"))
    parser.add_argument("--base", default=None,
                        help="a finished quick run to take data and CV from (default: "
                             "DIR/base, run here)")
    parser.add_argument("--only", default="metad,opes,opes_metad,umbrella")
    parser.add_argument("--alanine-base", default=None,
                        help="a finished alanine example run (50 K): also run metaD and "
                             "OPES along its xi (about 5 min each)")
    args = parser.parse_args()
    out = Path(args.out)
    only = args.only.split(",")
    if args.base:
        base = Path(args.base)
    else:
        base = out / "base"
        run_pipeline(QUICK, out=base, until="train", resume=True, progress=False)
    cases: dict[str, dict[str, Any]] = {}
    for name, (sampler, options) in HISTORY.items():
        if name in only:
            cases[name] = run_case(base, out / CASE_DIRS[name], sampler, options)
            cases[name]["time_to_accuracy"] = time_to_accuracy(cases[name])
    umbrella_runs = []
    if "umbrella" in only:
        for n in UMBRELLA_STEPS:
            c = run_case(base, out / f"umbrella_{n}", "umbrella", umbrella_options(n))
            c["n_steps"] = n
            umbrella_runs.append(c)
        ok = [c["barrier_err"] is not None and abs(c["barrier_err"]) < TOLERANCE
              and abs(c["dF_err"]) < TOLERANCE for c in umbrella_runs]
        # as for OPES and metaD: the shortest run from which on every longer one is
        # within the tolerance too
        first = next((i for i in range(len(ok)) if all(ok[i:])), None)
        cases["umbrella"] = umbrella_runs[-1]
        cases["umbrella"]["time_to_accuracy"] = (umbrella_runs[first]["wall"]
                                                 if first is not None else None)
    ala = (alanine_cases(Path(args.alanine_base), out, only) if args.alanine_base else {})
    rows = []
    for name, c in cases.items():
        r = c["row"]
        label = name if name != "umbrella" else f"umbrella ({UMBRELLA_STEPS[-1]} steps)"
        rows.append({"sampler": label,
                     "barrier (eV)": fmt(r["barrier_eV"], r["barrier_err_eV"]),
                     "exact barrier": fmt(r["exact_barrier_eV"]),
                     "dF (eV)": fmt(r["delta_F_eV"], r["delta_F_err_eV"]),
                     "exact dF": fmt(r["exact_delta_F_eV"]),
                     "wall (s)": f"{c['wall']:.0f}",
                     "time to 0.05 eV (s)": ("not reached" if c["time_to_accuracy"] is None
                                             else f"{c['time_to_accuracy']:.0f}")})
    for c in umbrella_runs[:-1]:
        r = c["row"]
        rows.append({"sampler": f"umbrella ({c['n_steps']} steps)",
                     "barrier (eV)": fmt(r["barrier_eV"], r["barrier_err_eV"]),
                     "exact barrier": fmt(r["exact_barrier_eV"]),
                     "dF (eV)": fmt(r["delta_F_eV"], r["delta_F_err_eV"]),
                     "exact dF": fmt(r["exact_delta_F_eV"]), "wall (s)": f"{c['wall']:.0f}",
                     "time to 0.05 eV (s)": "-"})
    fig_path = ROOT / "docs" / "figures" / "samplers_convergence.png"
    figure({k: v for k, v in cases.items() if k != "umbrella"}, fig_path)
    t_umb = cases.get("umbrella", {}).get("time_to_accuracy")
    ratios = []
    for name in HISTORY:
        t = cases.get(name, {}).get("time_to_accuracy")
        if t is not None and t_umb:
            ratios.append(f"{name} / umbrella {t / t_umb:.2f}")
    ratio_text = "; ".join(ratios) or "no ratio: a sampler did not reach it"
    text = f"""`python benchmarks/samplers.py` ({machine()}): the quick demo's CV (5D
Muller-Brown, 300 K), sampled along xi by each sampler through the pipeline
(`[umbrella] sampler = ...`), against the exact barrier and dF along the same CV
by quadrature. metaD and OPES: {HISTORY['metad'][1]['n_walkers']} walkers sharing one
bias, {HISTORY['metad'][1]['n_steps'] // 1000} ps each, estimator `reweight` ("opes" is
OPES-explore, "opes_metad" the plain OPES-metaD); umbrella:
the demo's windows with {', '.join(str(n) for n in UMBRELLA_STEPS)} steps per walker,
MBAR. Wall times are the umbrella and estimate stages on 2 cores. Time to accuracy:
both errors under {TOLERANCE} eV from then on ({ratio_text}).

{table(rows, list(rows[0]))}

![barrier and dF against simulated time](figures/samplers_convergence.png)

{alanine_table(ala) if ala else "(alanine not run: `--alanine-base RUN`)"}"""
    write_section("samplers", "## Samplers on the learned CV: OPES, metaD, umbrella\n\n" + text)

    def err(name: str, key: str) -> float | None:
        v = cases.get(name, {}).get(key)
        return None if v is None else round(float(v), 4)

    emit({"mb_opes_barrier_err_eV": err("opes", "barrier_err"),
          "mb_opes_dF_err_eV": err("opes", "dF_err"),
          "mb_metad_barrier_err_eV": err("metad", "barrier_err"),
          "mb_metad_dF_err_eV": err("metad", "dF_err"),
          "opes_time_to_accuracy_s": err("opes", "time_to_accuracy"),
          "mb_opes_metad_barrier_err_eV": err("opes_metad", "barrier_err"),
          "mb_opes_metad_dF_err_eV": err("opes_metad", "dF_err"),
          "metad_time_to_accuracy_s": err("metad", "time_to_accuracy"),
          "umbrella_time_to_accuracy_s": err("umbrella", "time_to_accuracy"),
          "ala_opes_barrier_err_eV": (round(ala["opes"]["barrier_err"], 4)
                                      if ala.get("opes", {}).get("barrier_err") is not None
                                      else None),
          "ala_metad_barrier_err_eV": (round(ala["metad"]["barrier_err"], 4)
                                       if ala.get("metad", {}).get("barrier_err") is not None
                                       else None),
          "wall_s": {k: round(v["wall"], 1) for k, v in cases.items()}})


if __name__ == "__main__":
    main()
