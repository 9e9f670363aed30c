"""Biased umbrella-sampling throughput on alanine dipeptide against plain OpenMM.

Alanine dipeptide in vacuum (amber99sb, the ``alanine_dipeptide`` system),
300 K, the same time step for every path. Measured in one run, on one
thread:

1. **OpenMM**: plain, unbiased MD with OpenMM's own
   ``LangevinMiddleIntegrator`` on the Reference platform (same molecule and
   force field), ``integrator.step`` in chunks of 1000 for ~5 s of wall time
   after a warm-up, in slices interleaved with the other measurements (so a
   shared machine's changing load weighs on it as on them); steps/s = steps /
   wall time. This is the yardstick.
2. **fast path**: :class:`mtcv_umbrella.UmbrellaSampler` with the batched
   engine, windows x walkers advanced together (vectorised amber99sb plus
   each walker's restraint on the learned CV, one CV evaluation per step for
   all of them); aggregate window-steps/s (one walker advanced one step
   under its restraint).
3. **ASE path**: ASE's ``Langevin`` on ``Atoms`` whose calculator is the
   :class:`mtcv_umbrella.UmbrellaBias` wrapping the system's OpenMM ASE
   calculator, one window at a time (what an ASE script would write).

The ratios divide 2 and 3 by 1 (target for the fast path: >= 0.5); the
same ratios in CPU time are printed beside them. A profile of one fast-path
configuration splits a step into force field, CV + restraint, random numbers
and the rest.

The CV is a :class:`mtcv_core.model.MultitaskCV` built as ``mtcv run``
builds one (``aligned_cartesian`` features centred on CA, C on the x axis,
CB in the xy plane, found by atom name; encoder [32, 16] -> 1D latent; the
training defaults' heads and float32 weights), its standardizer fitted on
short 300 K basin MD, exported with :func:`mtcv_core.export.export_torchscript`
and loaded as the umbrella stage loads ``cv.ts``. Its encoder weights are
untrained: a trained model costs the same. The 32 windows span C7eq ->
C7ax along that CV (:func:`mtcv_umbrella.windows.plan_windows`, springs from the
window spacing) and start from the nearest basin-MD frames. Fast and ASE
paths record the CV every 10 steps.

Usage: python benchmarks/alanine_throughput.py [--quick] [--timestep-fs 1.0]
Last line: JSON with ``ratio_vs_openmm``, ``ase_ratio_vs_openmm`` and the
rates they come from.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit, machine, table, write_section  # noqa: E402

from mtcv_alanine.structure import ATOMS, atom_index  # noqa: E402
from mtcv_ase.md import (  # noqa: E402
    FS,
    KB,
    BatchLangevin,
    GroupedNormals,
    LangevinParams,
    maxwell_boltzmann,
)
from mtcv_core import load_plugins  # noqa: E402
from mtcv_core.export import export_torchscript, load_cv  # noqa: E402
from mtcv_core.model import build_model, model_config  # noqa: E402
from mtcv_core.training import TrainConfig  # noqa: E402
from mtcv_umbrella import UmbrellaBias, UmbrellaSampler  # noqa: E402
from mtcv_umbrella.bias import BatchedBias  # noqa: E402
from mtcv_umbrella.windows import plan_windows, walker_starts  # noqa: E402

TEMPERATURE_K = 300.0
FRICTION_PER_FS = 0.01
STRIDE = 10
N_WINDOWS = 32
#: walkers per window of the fast-path scan (32 windows each: 64 ... 1024 walkers)
WALKERS = (2, 8, 16, 32)
#: the configuration the issue names; its ratio is reported beside the best one
NAMED = (32, 16)


def featurizer_options() -> dict[str, int]:
    """``aligned_cartesian`` frame: CA at the origin, C on +x, CB in the xy plane
    (indices looked up by name in :data:`mtcv_alanine.structure.ATOMS`)."""
    return {"center": atom_index("ALA", "CA"), "axis": atom_index("ALA", "C"),
            "plane": atom_index("ALA", "CB")}


def basin_frames(system: Any, timestep_fs: float, *, walkers: int = 16, n_steps: int = 400,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames of short unbiased 300 K MD from the C7eq and C7ax minima
    (``walkers`` each, every 10th of ``n_steps`` steps) and their basin
    labels (-1 outside every basin): positions (n, 22, 3), labels (n,)."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.repeat(system.minimum(b)[None], walkers, axis=0)
                        for b in ("C7eq", "C7ax")])
    v = maxwell_boltzmann(system.masses, TEMPERATURE_K, rng, n=len(x))
    integ = BatchLangevin(system.energy_and_forces, system.masses,
                          LangevinParams(TEMPERATURE_K, timestep_fs, FRICTION_PER_FS), rng)
    out = integ.run(x, v, n_steps, stride=10)
    pos = out["positions"].reshape(-1, *x.shape[1:])
    return pos, system.basin_index(pos)


def make_cv(system: Any, registry: Any, frames: np.ndarray, workdir: Path
            ) -> torch.jit.ScriptModule:
    """The CV as the umbrella stage gets it: a MultitaskCV configured as
    ``train`` configures one (untrained encoder, standardizer fitted on
    ``frames``), written by ``export_torchscript`` and read back by
    ``load_cv`` in float64."""
    torch.manual_seed(0)
    defaults = TrainConfig()
    opts = featurizer_options()
    featurizer = registry.create("featurizer", "aligned_cartesian", **opts)
    n_atoms = len(ATOMS)
    config = model_config(featurizer="aligned_cartesian", featurizer_options=opts,
                          n_atoms=n_atoms, n_features=featurizer.n_features(n_atoms),
                          latent_dim=1, hidden=[32, 16], n_classes=len(system.basins),
                          basins=list(system.basins), heads=defaults.heads,
                          dtype=defaults.dtype)
    model = build_model(config, registry)
    with torch.no_grad():
        model.standardizer.fit(model.raw_features(torch.as_tensor(frames)))
    path = export_torchscript(model, workdir / "cv.ts")
    return load_cv(path).to(torch.float64)


def evaluate_cv(cv: Any, positions: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return cv(torch.as_tensor(positions, dtype=torch.float64)).numpy()


def plan(system: Any, cv: Any, frames: np.ndarray, labels: np.ndarray, n_windows: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (n, 1), springs (n, 1) and start positions (n, 22, 3) of
    ``n_windows`` windows from C7eq to C7ax along the CV."""
    xi = evaluate_cv(cv, frames)[:, 0]
    a, b = system.basins.index("C7eq"), system.basins.index("C7ax")
    p = plan_windows(xi, labels, a, b, n_windows=n_windows, kT=KB * TEMPERATURE_K)
    starts = walker_starts(xi[:, None], p.centers, 1, seed=2)[:, 0]
    return p.centers, p.spring_constants, frames[starts]


@dataclass
class Rate:
    """``count`` steps (or window-steps) in ``wall`` seconds of wall time and
    ``cpu`` seconds of this process's CPU time."""

    count: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def per_s(self) -> float:
        return self.count / self.wall

    @property
    def per_cpu_s(self) -> float:
        return self.count / self.cpu

    def __iadd__(self, other: Rate) -> Rate:
        self.count += other.count
        self.wall += other.wall
        self.cpu += other.cpu
        return self


@contextmanager
def clock(rate: Rate) -> Iterator[None]:
    """Add the wall and CPU time of the block to ``rate``."""
    w0, c0 = time.perf_counter(), time.process_time()
    yield
    rate.wall += time.perf_counter() - w0
    rate.cpu += time.process_time() - c0


class OpenMMReference:
    """Plain MD with OpenMM's ``LangevinMiddleIntegrator`` on the Reference
    platform (the yardstick), measured in slices: :meth:`run` advances
    ``integrator.step(chunk)`` until ``seconds`` of wall time have passed;
    :attr:`total` sums every slice."""

    def __init__(self, system: Any, timestep_fs: float, chunk: int = 1000) -> None:
        import openmm as mm
        from openmm import unit

        self.chunk = chunk
        self.integrator = mm.LangevinMiddleIntegrator(
            TEMPERATURE_K * unit.kelvin, FRICTION_PER_FS * 1000.0 / unit.picosecond,
            timestep_fs * unit.femtosecond)
        self.integrator.setRandomNumberSeed(1)
        self.context = mm.Context(system.openmm_system, self.integrator,
                                  mm.Platform.getPlatformByName("Reference"))
        self.context.setPositions(system.minimum("C7eq") * 0.1)  # angstrom -> nm
        self.context.setVelocitiesToTemperature(TEMPERATURE_K * unit.kelvin, 1)
        self.integrator.step(chunk)  # warm-up
        self.total = Rate()
        self.slices: list[Rate] = []

    def run(self, seconds: float) -> Rate:
        from openmm import unit

        rate = Rate()
        with clock(rate):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                self.integrator.step(self.chunk)
                rate.count += self.chunk
        e = self.context.getState(getEnergy=True).getPotentialEnergy()
        if not np.isfinite(e.value_in_unit(unit.kilojoule_per_mole)):
            raise FloatingPointError("the OpenMM reference run blew up")
        self.total += rate
        self.slices.append(rate)
        return rate


def ase_rate(system: Any, cv: Any, center: np.ndarray, k: np.ndarray, start: np.ndarray,
             timestep_fs: float, n_steps: int) -> Rate:
    """Window-steps of ASE's Langevin + UmbrellaBias(OpenMM calculator), one walker."""
    from ase.md.langevin import Langevin

    atoms = system.make_atoms()
    atoms.set_positions(start)
    rng = np.random.default_rng(0)
    atoms.set_velocities(maxwell_boltzmann(atoms.get_masses(), TEMPERATURE_K, rng))
    atoms.calc = UmbrellaBias(atoms.calc, cv, center, k)
    dyn = Langevin(atoms, timestep=timestep_fs * FS, temperature_K=TEMPERATURE_K,
                   friction=FRICTION_PER_FS / FS, fixcm=False, rng=rng)
    record: list[Any] = []
    dyn.attach(lambda: record.append(atoms.calc.results["cv"]), interval=STRIDE)
    dyn.run(20)  # warm-up: OpenMM context, TorchScript profiling runs
    rate = Rate(n_steps)
    with clock(rate):
        dyn.run(n_steps)
    if not np.isfinite(atoms.get_potential_energy()):
        raise FloatingPointError("ASE path blew up")
    return rate


def fast_rate(system: Any, cv: Any, centers: np.ndarray, k: np.ndarray, start: np.ndarray,
              walkers: int, timestep_fs: float, n_steps: int) -> Rate:
    """Window-steps of the umbrella sampler's batched engine: all windows x
    ``walkers`` in one task, the whole ``run()`` timed (setup included)."""
    sampler = UmbrellaSampler(engine="fast", walkers_per_window=walkers, n_steps=n_steps,
                              equilibration_steps=0, stride=STRIDE,
                              windows_per_task=len(centers), temperature_K=TEMPERATURE_K,
                              timestep_fs=timestep_fs, friction_per_fs=FRICTION_PER_FS)
    rate = Rate(len(centers) * walkers * n_steps)
    with clock(rate):
        sampler.run_windows(system, cv, seed=0, centers=centers, spring_constants=k,
                    start_positions=start)
    return rate


def steps_for(rate: float, n_walkers: int, seconds: float) -> int:
    """Steps (a multiple of the stride, at least 5 records) to run ~``seconds``."""
    return max(5 * STRIDE, int(rate * seconds / n_walkers) // STRIDE * STRIDE)


class _Timer:
    """Accumulated wall time of the calls it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
        return timed


class _TimedNormals:
    """A :class:`~mtcv_ase.md.GroupedNormals` whose draws are timed."""

    def __init__(self, normals: GroupedNormals, timer: _Timer) -> None:
        self.standard_normal = timer.wrap(normals.standard_normal)


def profile(system: Any, cv: Any, centers: np.ndarray, k: np.ndarray, start: np.ndarray,
            walkers: int, timestep_fs: float, n_steps: int) -> dict[str, float]:
    """Microseconds per window-step of the fast path's parts, timed inside
    the stepping loop of the sampler's composition (vectorised force field +
    :meth:`BatchedBias.bias` in a :class:`BatchLangevin` drawing from
    per-window :class:`GroupedNormals`): force field, CV + restraint
    (TorchScript forward and autograd), random numbers, and the rest
    (Langevin arithmetic, adding the forces, Python)."""
    n_win = len(centers)
    c = np.repeat(centers, walkers, axis=0)
    kw = np.repeat(k, walkers, axis=0)
    x = np.repeat(start, walkers, axis=0)
    n = len(x)
    bias = BatchedBias(system, cv, c, kw)
    t_ff, t_cv, t_rng = _Timer(), _Timer(), _Timer()
    ff, cv_bias = t_ff.wrap(system.energy_and_forces), t_cv.wrap(bias.bias)

    def forces(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e0, f0 = ff(pos)
        eb, fb, _ = cv_bias(pos)
        return e0 + eb, f0 + fb

    rngs = [np.random.default_rng(10 + w) for w in range(n_win)]
    noise = _TimedNormals(GroupedNormals(rngs, [walkers] * n_win), t_rng)
    params = LangevinParams(TEMPERATURE_K, timestep_fs, FRICTION_PER_FS)
    integ = BatchLangevin(forces, system.masses, params, noise)  # type: ignore[arg-type]
    v = maxwell_boltzmann(system.masses, TEMPERATURE_K, np.random.default_rng(3), n=n)
    _, f = integ.evaluate(x)
    for _ in range(20):
        x, v, f, _ = integ.step(x, v, f)
    for timer in (t_ff, t_cv, t_rng):
        timer.seconds = 0.0
    t0 = time.perf_counter()
    for _ in range(n_steps):
        x, v, f, e = integ.step(x, v, f)
    total = time.perf_counter() - t0
    integ.check(x, e, n_steps)
    us = 1e6 / (n * n_steps)
    rest = total - t_ff.seconds - t_cv.seconds - t_rng.seconds
    return {"walkers": n, "total_us": total * us, "force_field_us": t_ff.seconds * us,
            "cv_bias_us": t_cv.seconds * us, "random_us": t_rng.seconds * us,
            "integrator_us": rest * us}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="short run (~1 s per measurement); does not touch docs/results.md")
    ap.add_argument("--timestep-fs", type=float, default=1.0,
                    help="time step of all three paths, fs (default 1.0)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/results.md")
    args = ap.parse_args(argv)
    seconds = 1.0 if args.quick else 5.0
    dt = args.timestep_fs
    torch.set_num_threads(1)
    import openmm

    registry = load_plugins()
    system = registry.create("system", "alanine_dipeptide", temperature_K=TEMPERATURE_K)
    frames, labels = basin_frames(system, dt)
    with tempfile.TemporaryDirectory() as tmp:
        cv = make_cv(system, registry, frames, Path(tmp))
    centers, k, start = plan(system, cv, frames, labels, N_WINDOWS)

    # OpenMM runs in slices between the other measurements (before each, and
    # once at the end), ``seconds`` in all: the load of a shared machine then
    # weighs on the yardstick as on what it measures
    omm = OpenMMReference(system, dt)
    slice_s = seconds / (len(WALKERS) + 2)
    omm.run(slice_s)

    mid = N_WINDOWS // 2
    probe = ase_rate(system, cv, centers[mid], k[mid], start[mid], dt, 100)
    ase = ase_rate(system, cv, centers[mid], k[mid], start[mid], dt,
                   steps_for(probe.per_s, 1, seconds))
    print(f"ASE Langevin + UmbrellaBias(OpenMM): {ase.per_s:,.0f} window-steps/s", flush=True)

    rates: dict[str, Rate] = {}
    for walkers in WALKERS:
        n = N_WINDOWS * walkers
        omm.run(slice_s)
        probe = fast_rate(system, cv, centers, k, start, walkers, dt, 5 * STRIDE)
        rate = fast_rate(system, cv, centers, k, start, walkers, dt,
                         steps_for(probe.per_s, n, seconds))
        rates[f"{N_WINDOWS}x{walkers}"] = rate
        print(f"fast path {N_WINDOWS} x {walkers:>2} windows x walkers: {rate.per_s:,.0f} "
              f"window-steps/s", flush=True)
    omm.run(slice_s)
    ref = omm.total
    print(f"OpenMM Reference LangevinMiddle: {ref.count:,} steps in {ref.wall:.2f} s "
          f"({len(omm.slices)} slices) = {ref.per_s:,.0f} steps/s; slices "
          + ", ".join(f"{r.per_s:,.0f}" for r in omm.slices), flush=True)
    best_key = max(rates, key=lambda key: rates[key].per_s)
    best = rates[best_key]
    named_key = f"{NAMED[0]}x{NAMED[1]}"
    prof = profile(system, cv, centers, k, start, NAMED[1], dt, 150 if args.quick else 400)

    def row(path: str, config: str, r: Rate, digits: int) -> dict[str, str]:
        return {"path": path, "windows x walkers": config, "steps/s": f"{r.per_s:,.0f}",
                "ratio vs OpenMM": f"{r.per_s / ref.per_s:.{digits}f}",
                "ratio (CPU time)": f"{r.per_cpu_s / ref.per_cpu_s:.{digits}f}"}

    rows = [row("OpenMM LangevinMiddle, Reference (plain, unbiased)", "1", ref, 0),
            row("ASE Langevin + UmbrellaBias(OpenMM calc)", "1", ase, 4)]
    rows += [row("umbrella sampler, batched fast path", key.replace("x", " x "), r, 2)
             for key, r in rates.items()]
    columns = ["path", "windows x walkers", "steps/s", "ratio vs OpenMM", "ratio (CPU time)"]
    prof_rows = [{"part": name, "us / window-step": f"{prof[key]:.2f}",
                  "share": f"{prof[key] / prof['total_us']:.0%}"}
                 for name, key in (("force field (vectorised amber99sb)", "force_field_us"),
                                   ("CV + restraint (TorchScript forward + autograd)",
                                    "cv_bias_us"),
                                   ("random numbers (GroupedNormals)", "random_us"),
                                   ("Langevin arithmetic, force sum, Python",
                                    "integrator_us"),
                                   ("one step, all parts", "total_us"))]
    print()
    print(table(rows, columns))
    print()
    print(f"fast path at {NAMED[0]} x {NAMED[1]} ({prof['walkers']} walkers), "
          "cost per window-step:")
    print(table(prof_rows, ["part", "us / window-step", "share"]))
    print(f"\n{dt:g} fs, {TEMPERATURE_K:.0f} K; CV untrained (a trained model costs the same).")

    where = (f"{machine()}, torch {torch.__version__}, OpenMM {openmm.__version__}, "
             "one thread")
    ratio = best.per_s / ref.per_s
    named_ratio = rates[named_key].per_s / ref.per_s
    if not (args.quick or args.no_write):
        write_section("alanine_throughput", f"""## Alanine dipeptide throughput (300 K, {dt:g} fs)

`OPENBLAS_NUM_THREADS=1 python benchmarks/alanine_throughput.py` on {where}.
Alanine dipeptide in vacuum, amber99sb, no constraints, {dt:g} fs and friction
{FRICTION_PER_FS:g}/fs for every path. A window-step is one walker advanced one step
under its umbrella restraint. The yardstick is plain, unbiased MD with OpenMM's own
`LangevinMiddleIntegrator` on the Reference platform (same molecule and force field),
measured in the same run in {len(omm.slices)} slices between the other measurements:
{ref.count:,} steps in {ref.wall:.1f} s. The CV is a `MultitaskCV` built as `mtcv run`
builds one (`aligned_cartesian` features on CA / C / CB, encoder [32, 16] -> 1D),
exported to TorchScript and loaded as the umbrella stage loads `cv.ts`; its weights are
untrained, which changes nothing in the cost. The {N_WINDOWS} windows span C7eq -> C7ax
along it; the CV is recorded every {STRIDE} steps. The fast path is the umbrella
sampler's batched engine (whole `run()` timed); the ASE path is ASE's `Langevin` with
`UmbrellaBias` around the OpenMM ASE calculator, one window at a time. Ratios use wall
time; the CPU-time column shows how much a shared machine's load moved them.

{table(rows, columns)}

**Fast path / OpenMM: {ratio:.2f}** at {best_key.replace("x", " x ")} (target >= 0.5;
{named_ratio:.2f} at {NAMED[0]} x {NAMED[1]}); ASE path / OpenMM: {ase.per_s / ref.per_s:.4f}.

Where a fast-path step goes ({NAMED[0]} x {NAMED[1]} = {prof['walkers']} walkers, per
window-step, timed inside the stepping loop):

{table(prof_rows, ["part", "us / window-step", "share"])}
""")
    result = {
        "ratio_vs_openmm": round(ratio, 3),
        "ratio_vs_openmm_config": best_key,
        f"ratio_vs_openmm_{named_key}": round(named_ratio, 3),
        "ratio_vs_openmm_cpu_time": round(best.per_cpu_s / ref.per_cpu_s, 3),
        "ase_ratio_vs_openmm": round(ase.per_s / ref.per_s, 4),
        "openmm_steps_per_s": round(ref.per_s, 1),
        "openmm_steps": ref.count, "openmm_wall_s": round(ref.wall, 2),
        "openmm_slices_steps_per_s": [round(r.per_s, 1) for r in omm.slices],
        "fast_window_steps_per_s": round(best.per_s, 1),
        "fast_window_steps_per_s_by_config": {key: round(r.per_s, 1)
                                              for key, r in rates.items()},
        "ase_window_steps_per_s": round(ase.per_s, 1),
        "fast_path_us_per_window_step": {key: round(val, 3) for key, val in prof.items()},
        "timestep_fs": dt, "temperature_K": TEMPERATURE_K, "quick": args.quick,
        "cv": "MultitaskCV aligned_cartesian [32, 16] -> 1, untrained (same cost as trained)",
        "machine": where,
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
