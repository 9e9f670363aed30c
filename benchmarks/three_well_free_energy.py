"""Free energies between all three basin pairs of the 5D three-well model.

``examples/three_well_5d.toml`` end to end (2D latent CV, 2D umbrella windows
on xi, 2D windows along the true CVs (x~, y~), MBAR); every barrier and
free-energy difference beside MBAR along the true CVs and the quadrature of
the 5D configurational integral.

Usage: python benchmarks/three_well_free_energy.py [--out DIR]
  --out DIR: where the run goes (default: runs/bench_three_well); an
  interrupted benchmark resumes from what is there.
Last line: JSON with ``tw_max_barrier_err_eV`` and ``tw_max_delta_F_err_eV``
(largest |xi - quadrature| over the pairs) and the rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, fmt, machine, table, write_section  # noqa: E402

from mtcv_core.pipeline import run_pipeline

EXAMPLE = ROOT / "examples" / "three_well_5d.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_three_well"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    s = run_pipeline(EXAMPLE, out=Path(args.out), resume=True, progress=False)
    wall = time.perf_counter() - t0
    rows, err_b, err_df = [], [], []
    for r in s["transitions"]:
        eb = r["barrier_eV"] - r["reference_barrier_eV"]
        edf = r["delta_F_eV"] - r["reference_delta_F_eV"]
        err_b.append(abs(eb))
        err_df.append(abs(edf))
        rows.append({
            "transition": f"{r['from']}->{r['to']}",
            "barrier along xi": fmt(r["barrier_eV"], r["barrier_err_eV"]),
            "along (x~, y~)": fmt(r["true_cv_barrier_eV"], r["true_cv_barrier_err_eV"]),
            "quadrature": fmt(r["reference_barrier_eV"]),
            "dF along xi": fmt(r["delta_F_eV"], r["delta_F_err_eV"]),
            "dF along (x~, y~)": fmt(r["true_cv_delta_F_eV"], r["true_cv_delta_F_err_eV"]),
            "dF quadrature": fmt(r["reference_delta_F_eV"]),
        })
    timings = ", ".join(f"{k} {v:.0f} s" for k, v in s["timings_s"].items())
    write_section("three_well_free_energy", f"""## Free energies on the 5D three-well model

`python benchmarks/three_well_free_energy.py` on {machine()}: `examples/three_well_5d.toml`
end to end ({s['n_train'] + s['n_test']:,} frames; 2D latent CV with test accuracy
{s['test_accuracy']:.2%} and energy MAE {s['test_energy_mae_eV']:.4f} eV;
{s['umbrella_windows']} 2D windows on xi, {s.get('umbrella_reference_windows', '-')} on
(x~, y~)). Barriers are minimax levels on the 2D free-energy surfaces (bootstrap
uncertainties), dF = F_to - F_from (MBAR's analytical uncertainties), all in eV.

{table(rows, list(rows[0]))}

Largest |along xi - quadrature| over the pairs: barrier {max(err_b):.3f} eV, dF
{max(err_df):.3f} eV. Stages: {timings}; this call {wall / 60:.1f} min.
""")
    emit({"tw_max_barrier_err_eV": round(max(err_b), 4),
          "tw_max_delta_F_err_eV": round(max(err_df), 4),
          "tw_test_accuracy": s["test_accuracy"], "tw_energy_mae_eV": s["test_energy_mae_eV"],
          "transitions": s["transitions"], "wall_s": round(wall, 1)})


if __name__ == "__main__":
    main()
