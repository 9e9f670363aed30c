"""Data generation speed on the 5D Muller-Brown model.

1. Per walker-step throughput of the fast batched Langevin path against
   ASE's own ``Langevin`` (the plain path), measured in the same run.
2. Wall time of the sample stage of ``examples/muller_brown_5d.toml``
   (~300,000 frames from basin MD + TPS) on a local Dask cluster.

Usage: python benchmarks/data_generation.py [--quick]
Last line: JSON with ``speedup``, ``seconds_300k`` and the details.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, machine, table, write_section  # noqa: E402

from mtcv_ase.md import BatchLangevin, LangevinParams, maxwell_boltzmann, run_ase_langevin
from mtcv_systems import MullerBrown5D

PARAMS = LangevinParams(300.0, 1.0, 0.01)


def ase_rate(system: MullerBrown5D, n_steps: int) -> float:
    """Walker-steps per second of ASE's Langevin (one walker)."""
    atoms = system.make_atoms("A")
    rng = np.random.default_rng(0)
    atoms.set_velocities(maxwell_boltzmann(atoms.get_masses(), 300.0, rng,
                                           dof_mask=system.dof_mask))
    t0 = time.perf_counter()
    run_ase_langevin(atoms, n_steps, PARAMS, rng, stride=10)
    return n_steps / (time.perf_counter() - t0)


def fast_rate(system: MullerBrown5D, n_walkers: int, n_steps: int) -> float:
    """Walker-steps per second of the batched path (frames recorded every 10)."""
    rng = np.random.default_rng(0)
    x0 = system.start_positions("A", n_walkers, rng=rng)
    masses = system.make_atoms().get_masses()
    v0 = maxwell_boltzmann(masses, 300.0, rng, n=n_walkers, dof_mask=system.dof_mask)
    integ = BatchLangevin(system.energy_and_forces, masses, PARAMS, rng,
                          dof_mask=system.dof_mask)
    t0 = time.perf_counter()
    integ.run(x0, v0, n_steps, stride=10)
    return n_walkers * n_steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 300k-frame run")
    args = parser.parse_args()
    system = MullerBrown5D()
    system.critical_points()
    ase = ase_rate(system, 3000)
    rows = [{"path": "ASE Langevin (plain)", "walkers": 1, "walker-steps/s": f"{ase:,.0f}",
             "speedup": "1"}]
    fast = {}
    for n in (1, 64, 1024):
        fast[n] = fast_rate(system, n, 2000 if n > 1 else 3000)
        rows.append({"path": "batched fast path", "walkers": n,
                     "walker-steps/s": f"{fast[n]:,.0f}", "speedup": f"{fast[n] / ase:,.0f}"})
    speedup = fast[1024] / ase

    figures: dict[str, object] = {"ase_steps_per_s": round(ase, 1),
                                  "fast_steps_per_s_1024": round(fast[1024], 1),
                                  "speedup": round(speedup, 1)}
    run_line = ""
    if not args.quick:
        from mtcv_core.pipeline import run_pipeline

        out = Path(tempfile.mkdtemp(prefix="mtcv-bench-"))
        try:
            t0 = time.perf_counter()
            summary = run_pipeline(ROOT / "examples" / "muller_brown_5d.toml", out=out,
                                   until="sample", progress=False)
            seconds = time.perf_counter() - t0
        finally:
            shutil.rmtree(out, ignore_errors=True)
        n_frames = summary["n_train"] + summary["n_test"]
        figures.update(seconds_300k=round(seconds, 1), frames=n_frames,
                       frames_per_s=round(n_frames / seconds, 1),
                       frame_counts=summary["frame_counts"])
        counts = summary["frame_counts"]
        count_rows = [{"split": sp, "source": src, **lab}
                      for sp, by_src in counts.items() for src, lab in by_src.items()]
        run_line = (f"\n\n`examples/muller_brown_5d.toml`, sample stage on 2 Dask workers: "
                    f"**{n_frames:,} frames in {seconds:.0f} s** (target: 300,000 frames "
                    f"in under 300 s).\n\n" + table(count_rows, ["split", "source", "A", "B"]))
    write_section("data_generation", f"""## Data generation (5D Muller-Brown, 300 K)

`python benchmarks/data_generation.py` on {machine()}. Per walker-step
throughput of the batched Langevin path against ASE's own `Langevin` in the same
run (target: >= 100x).

{table(rows, ["path", "walkers", "walker-steps/s", "speedup"])}{run_line}
""")
    emit(figures)


if __name__ == "__main__":
    main()
