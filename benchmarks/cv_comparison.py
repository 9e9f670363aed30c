"""mtcv's multitask CV against mlcolvar's CVs on 5D Muller-Brown, on the same frames.

1. The quick demo (``mtcv run``, seed 2026) into ``OUT/mtcv``: data, the
   multitask CV, umbrella sampling and MBAR along it (resumed if done).
2. ``examples/mlcolvar_cv.py`` on that run's ``data.nc`` for each of
   ``--models`` (Deep-LDA, Deep-TDA): mlcolvar trains the CV on the basin-MD
   training frames, mtcv imports it (``train.cv_file``) and runs the same
   umbrella and estimate stages along it, with the same settings.
3. A table per CV: accuracy of a linear classifier on the CV (the multitask
   CV's own linear head; for mlcolvar's CVs one fitted on xi of the labelled
   training frames), on the test split; barrier and dF along the CV by MBAR
   with their error bars; the exact values along the same CV (quadrature
   through it); and the quadrature reference of the 5D system. ``*_err_eV`` =
   MBAR value - quadrature reference (the CV's price plus the sampling's).
   Section ``cv_comparison`` of docs/results.md.

Usage: python benchmarks/cv_comparison.py [--out DIR] [--models deep_lda,deep_tda]

Last line JSON: ``mtcv_barrier_err_eV``, ``mlcolvar_barrier_err_eV``,
``mtcv_dF_err_eV``, ``mlcolvar_dF_err_eV`` (mlcolvar = the first of
``--models``), and per CV its row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, fmt, machine, table, write_section  # noqa: E402

sys.path.insert(0, str(ROOT / "examples"))
import mlcolvar_cv  # noqa: E402

NAMES = {"deep_lda": "mlcolvar Deep-LDA", "deep_tda": "mlcolvar Deep-TDA"}


def spectator_share(summary: dict[str, Any], name: str = "x5") -> float | None:
    """The largest spread of xi over the landmarks when spectator ``name``
    alone is moved (``spectator_sensitivity``, 5x its training range), as a
    share of the distance in xi between the basins A and B."""
    marks = (summary.get("spectator_sensitivity") or {}).get("landmarks", {})
    if "A" not in marks or "B" not in marks:
        return None
    span = abs(marks["A"]["xi"][0] - marks["B"]["xi"][0])
    spreads = [m.get(f"spread_{name}") for m in marks.values()]
    spreads = [v for v in spreads if v is not None]
    return round(max(spreads) / span, 4) if spreads and span > 0 else None


def row(name: str, summary: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The A->B figures of a run's summary."""
    t = next(r for r in summary["transitions"] if (r["from"], r["to"]) == ("A", "B"))
    ref_b, ref_f = t["reference_barrier_eV"], t["reference_delta_F_eV"]
    return {
        "cv": name, "test_accuracy": summary.get("test_accuracy"),
        "barrier_eV": t["barrier_eV"], "barrier_sigma_eV": t["barrier_err_eV"],
        "exact_barrier_eV": t.get("exact_barrier_eV"), "reference_barrier_eV": ref_b,
        "barrier_err_eV": (None if t["barrier_eV"] is None else
                           round(t["barrier_eV"] - ref_b, 4)),
        "delta_F_eV": t["delta_F_eV"], "delta_F_sigma_eV": t["delta_F_err_eV"],
        "exact_delta_F_eV": t.get("exact_delta_F_eV"), "reference_delta_F_eV": ref_f,
        "dF_err_eV": (None if t["delta_F_eV"] is None else round(t["delta_F_eV"] - ref_f, 4)),
        "converged": t.get("converged"), "seconds": round(seconds, 1),
        "x5_share": spectator_share(summary),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_cv_comparison"))
    parser.add_argument("--models", default="deep_lda,deep_tda")
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    from mtcv_core.pipeline import run_pipeline

    out = Path(args.out)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in NAMES:
            raise SystemExit(f"--models: unknown {m!r}; choose from {list(NAMES)}")
    t0 = time.perf_counter()
    summary = run_pipeline(None, out=out / "mtcv", resume=True, progress=False)
    rows = [row("mtcv multitask (quick demo)", summary, time.perf_counter() - t0)]
    for m in models:
        t0 = time.perf_counter()
        res = mlcolvar_cv.main(["--data", str(out / "mtcv" / "data.nc"), "--out",
                                str(out / "mlcolvar"), "--model", m, "--epochs",
                                str(args.epochs), "--quiet"])
        s = json.loads(Path(res["run"], "summary.json").read_text())
        rows.append(row(NAMES[m], s, time.perf_counter() - t0))

    cols = ["cv", "test accuracy", "x5 moves xi by", "barrier (MBAR)", "exact along CV",
            "MBAR - exact", "barrier - quadrature", "dF (MBAR)", "exact along CV ", "MBAR - exact ",
            "dF - quadrature", "converged"]

    def diff(a: Any, b: Any) -> str:
        return "-" if a is None or b is None else fmt(a - b)

    md_rows = [{
        "cv": r["cv"], "test accuracy": fmt(r["test_accuracy"], digits=4),
        "x5 moves xi by": ("-" if r["x5_share"] is None else f"{100 * r['x5_share']:.1f} %"),
        "barrier (MBAR)": fmt(r["barrier_eV"], r["barrier_sigma_eV"]),
        "exact along CV": fmt(r["exact_barrier_eV"]),
        "MBAR - exact": diff(r["barrier_eV"], r["exact_barrier_eV"]),
        "barrier - quadrature": fmt(r["barrier_err_eV"]),
        "dF (MBAR)": fmt(r["delta_F_eV"], r["delta_F_sigma_eV"]),
        "exact along CV ": fmt(r["exact_delta_F_eV"]),
        "MBAR - exact ": diff(r["delta_F_eV"], r["exact_delta_F_eV"]),
        "dF - quadrature": fmt(r["dF_err_eV"]),
        "converged": r["converged"]} for r in rows]
    ref = rows[0]
    write_section("cv_comparison", f"""## mtcv's multitask CV against mlcolvar's (5D Muller-Brown)

`python benchmarks/cv_comparison.py` ({machine()}). The same frames (the quick
demo's `data.nc`, seed 2026) for every CV; mlcolvar's CVs are trained by mlcolvar
on the basin-MD training frames (features: mtcv's `cartesian` featurizer, x1-x5)
with {args.epochs} epochs, exported with `to_torchscript` and imported by mtcv
(`train.cv_file`); umbrella sampling and MBAR along every CV with the quick demo's
settings. Test accuracy: a linear classifier on the CV, on the test split (the
multitask CV's own head; a fitted one for mlcolvar's). Quadrature reference of the
5D system: barrier {fmt(ref['reference_barrier_eV'])}, dF
{fmt(ref['reference_delta_F_eV'])} eV; *exact along CV* is the same observable by
quadrature through that CV (what a perfect sampler would give along it): *exact
along CV - quadrature* is the CV's own price, *MBAR - exact* the sampling's (large
where the windows do not equilibrate the coordinates the CV reads but does not
bias, e.g. the spectator x5; *converged* is the run's own verdict). *x5 moves xi
by*: the largest change of xi at a basin minimum or saddle when the spectator x5
alone is moved over 5x its range in the data, as a share of the A-B distance in xi
(`spectator_sensitivity` in each run's summary.json): a CV that reads x5 cannot be
sampled by windows that do not equilibrate it.

{table(md_rows, cols)}
""")
    mlc = rows[1] if len(rows) > 1 else {}
    emit({"mtcv_barrier_err_eV": ref["barrier_err_eV"],
          "mlcolvar_barrier_err_eV": mlc.get("barrier_err_eV"),
          "mtcv_dF_err_eV": ref["dF_err_eV"], "mlcolvar_dF_err_eV": mlc.get("dF_err_eV"),
          "rows": rows})


if __name__ == "__main__":
    main()
