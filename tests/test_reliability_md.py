"""MD blow-ups (issue #9): a walker whose positions or energy become NaN/inf,
or whose energy leaves the bound, is detected within the step it happens in,
in the batched engine (``BatchLangevin``, ``BatchPropagator``) and in the
umbrella sampler's batched engine; the trajectory, shot or window is
reported with its seed and step and dropped, and every other walker or
window finishes -- with exactly the samples it has without the blow-up
where each has its own random stream."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from mtcv_ase.md import BatchLangevin, BlowUpError, LangevinParams, maxwell_boltzmann
from mtcv_core.errors import MtcvError, SimulationError
from mtcv_sampling import TPS, BasinMD
from mtcv_systems import MullerBrown5D
from mtcv_umbrella import UmbrellaSampler

PARAMS = LangevinParams(temperature_K=300.0, timestep_fs=1.0, friction_per_fs=0.01)


class NaNWalker(MullerBrown5D):
    """Müller-Brown whose energy is NaN (or ``value``) for batch row ``row``
    on calls ``start <= call < stop`` of :meth:`energy_and_forces` (a
    calculator that fails for one walker)."""

    def __init__(self, row: int = 1, start: int = 10, stop: int = 10**9,
                 value: float = np.nan) -> None:
        super().__init__()
        self.row, self.start, self.stop, self.value, self.calls = row, start, stop, value, 0

    def energy_and_forces(self, x):
        e, f = super().energy_and_forces(x)
        self.calls += 1
        if self.start <= self.calls < self.stop and len(x) > self.row:
            e = np.array(e, dtype=float)
            e[self.row] = self.value
        return e, f


class AbsurdStart(MullerBrown5D):
    """Müller-Brown whose walker ``row`` of each batch starts 10 km away."""

    def __init__(self, row: int = 1) -> None:
        super().__init__()
        self.row = row

    def start_positions(self, basin, n, *, rng, split="train"):
        x = super().start_positions(basin, n, rng=rng, split=split)
        if n > self.row:
            x[self.row] += 1e14
        return x


def _start(system, n, seed=0):
    rng = np.random.default_rng(seed)
    x0 = system.start_positions("A", n, rng=rng)
    v0 = maxwell_boltzmann(system.make_atoms().get_masses(), 300.0, rng, n=n,
                           dof_mask=system.dof_mask)
    return x0, v0


# ------------------------------------------------------------- BatchLangevin
@pytest.mark.parametrize("value", [np.nan, np.inf, 1e7])
def test_batch_langevin_detects_within_the_step(value, reliability_counts):
    """Recording every 10th step, a blow-up at step 7 is reported at step 7."""
    system = NaNWalker(row=2, start=8, value=value)  # call 1 evaluates the start
    x0, v0 = _start(system, 4)
    integ = BatchLangevin(system.energy_and_forces, system.make_atoms().get_masses(), PARAMS,
                          np.random.default_rng(1), dof_mask=system.dof_mask)
    reliability_counts["md_blow_ups_injected"] += 1
    with pytest.raises(BlowUpError, match="walker 2 blew up at step 7") as info:
        integ.run(x0, v0, 30, stride=10)
    assert isinstance(info.value, MtcvError) and info.value.step == 7


def test_batch_langevin_drops_the_walker_and_keeps_the_others(reliability_counts):
    clean_sys, bad_sys = MullerBrown5D(), NaNWalker(row=1, start=15)
    x0, v0 = _start(clean_sys, 4)
    masses = clean_sys.make_atoms().get_masses()

    def run(system):
        integ = BatchLangevin(system.energy_and_forces, masses, PARAMS,
                              np.random.default_rng(5), dof_mask=system.dof_mask)
        return integ.run(x0, v0, 40, stride=5, on_blow_up="drop")

    clean, bad = run(clean_sys), run(bad_sys)
    reliability_counts["md_blow_ups_injected"] += 1
    assert bad["alive"].tolist() == [True, False, True, True]
    assert bad["blow_up_step"].tolist() == [-1, 14, -1, -1]
    assert np.isnan(bad["blow_up_energy"][1])
    keep = [0, 2, 3]
    np.testing.assert_array_equal(bad["positions"][:, keep], clean["positions"][:, keep])
    np.testing.assert_array_equal(bad["energy"][:, keep], clean["energy"][:, keep])
    assert np.isnan(bad["energy"][2:, 1]).all()  # dropped: no energies after the blow-up
    assert np.isfinite(bad["positions"]).all()  # parked at its last good configuration
    np.testing.assert_array_equal(bad["positions"][-1, 1], bad["positions"][2, 1])
    assert clean["alive"].all() and (clean["blow_up_step"] == -1).all()


def test_batch_langevin_absurd_start_is_dropped_at_step_0(reliability_counts):
    system = AbsurdStart(row=0)
    x0, v0 = _start(system, 3)
    integ = BatchLangevin(system.energy_and_forces, system.make_atoms().get_masses(), PARAMS,
                          np.random.default_rng(2), dof_mask=system.dof_mask)
    reliability_counts["md_blow_ups_injected"] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings from the parked walker
        out = integ.run(x0, v0, 20, stride=10, on_blow_up="drop")
    assert out["alive"].tolist() == [False, True, True]
    assert out["blow_up_step"].tolist() == [0, -1, -1]
    assert np.isfinite(out["energy"][:, 1:]).all()


# ------------------------------------------------------------------ basin_md
SOURCE = dict(trajectories_per_basin=3, n_steps=40, stride=10, equilibration_steps=10,
              walkers_per_task=3, temperature_K=300.0)


@pytest.mark.parametrize("engine", ["fast", "ase"])
def test_basin_md_drops_the_trajectory_and_reports_it(engine, reliability_counts):
    source = BasinMD(engine=engine, **SOURCE)
    clean = source.run(MullerBrown5D(), seed=7)
    bad_system = NaNWalker(row=1, start=20, stop=21) if engine == "fast" else AbsurdStart(1)
    reliability_counts["md_blow_ups_injected"] += 1
    with pytest.warns(RuntimeWarning, match=r"basin_md: trajectory 1 \(train split, basin A, "
                                            r"seed 7\) blew up at step \d+"):
        with np.errstate(over="ignore", invalid="ignore"):
            bad = source.run(bad_system, seed=7)
    report = json.loads(bad.attrs["blow_ups"])
    first = report[0]
    assert (first["trajectory"], first["seed"], first["basin"]) == (1, 7, "A")
    assert first["step"] == (18 if engine == "fast" else 0)  # calls 1 + 10 + 1 + 8
    assert first["stream"] == ["basin_md", "train", "A", 0]
    assert bad.attrs["n_blown_trajectories"] == len(report)
    assert 1 not in bad.trajectory.values
    kept = set(np.unique(bad.trajectory.values))
    assert kept == set(np.unique(clean.trajectory.values)) - {r["trajectory"] for r in report}
    # the others: exactly the clean frames (each walker has its own random
    # stream on both paths)
    for t in kept:
        np.testing.assert_array_equal(bad.coordinates.values[bad.trajectory.values == t],
                                      clean.coordinates.values[clean.trajectory.values == t])


def test_basin_md_fails_only_when_every_trajectory_blows_up():
    source = BasinMD(**dict(SOURCE, trajectories_per_basin=1, walkers_per_task=1))
    with pytest.raises(SimulationError, match="all 2 trajectories of the train split blew up"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            source.run(NaNWalker(row=0, start=5), seed=1)


def test_sample_stage_records_blow_ups_in_the_summary(tmp_path, reliability_counts):
    """The sample stage lists every dropped trajectory, with its seed and
    step, in ``summary.json["blow_ups"]["sample"]``."""
    from mtcv_core import stages
    from mtcv_core.pipeline import RunContext, load_config
    from mtcv_core.plugins import load_plugins

    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text('system = "muller_brown_5d"\nseed = 7\n[sample]\ntest_fraction = 0.5\n'
                        '[sample.sources.basin_md]\ntrajectories_per_basin = 2\nn_steps = 20\n'
                        'stride = 10\nequilibration_steps = 0\nwalkers_per_task = 2\n')
    config, _ = load_config(cfg_path)
    ctx = RunContext(config=config, out=tmp_path / "o", registry=load_plugins(),
                     system=NaNWalker(row=1, start=5, stop=6), client_factory=lambda: None,
                     progress=False, summary={"config": {}})
    reliability_counts["md_blow_ups_injected"] += 1
    with pytest.warns(RuntimeWarning, match="blew up"):
        stages.run_sample(ctx)
    (entry,) = ctx.summary["blow_ups"]["sample"]
    assert (entry["source"], entry["split"], entry["seed"], entry["step"]) == (
        "basin_md", "train", 7, 4)
    # resumed: the stored part carries the same report
    ctx2 = RunContext(config=config, out=tmp_path / "o", registry=ctx.registry,
                      system=MullerBrown5D(), client_factory=lambda: None, progress=False,
                      summary={"config": {}})
    stages.run_sample(ctx2)
    assert ctx2.summary["blow_ups"] == ctx.summary["blow_ups"]


# ----------------------------------------------------------------------- TPS
@pytest.fixture(scope="module")
def straight_path(tmp_path_factory):
    """A (hand-made) A->B path along the straight line between the minima."""
    import ase.io

    mb = MullerBrown5D()
    a, b = mb.make_atoms("A").positions, mb.make_atoms("B").positions
    path = tmp_path_factory.mktemp("tps") / "path.xyz"
    images = []
    for lam in np.linspace(0.0, 1.0, 40):
        atoms = mb.make_atoms()
        atoms.positions = (1 - lam) * a + lam * b
        images.append(atoms)
    ase.io.write(path, images)
    return str(path)


def test_tps_shot_blow_up_is_dropped_and_the_chain_goes_on(straight_path, reliability_counts):
    source = TPS(chains=2, shots_per_chain=2, burn_in_shots=0, stride=50, walkers_per_task=2,
                 temperature_K=300.0, initial_path=straight_path, max_segment_steps=3000)
    reliability_counts["md_blow_ups_injected"] += 1
    with pytest.warns(RuntimeWarning, match=r"tps: shot 0 of chain 1 \(trajectory 2\) "
                                            r"\(train split, A->B, seed 4\) blew up at step 9"):
        bad = source.run(NaNWalker(row=1, start=12, stop=13), seed=4)
    (entry,) = json.loads(bad.attrs["blow_ups"])
    assert (entry["phase"], entry["chain"], entry["shot"], entry["seed"]) == ("shot", 1, 0, 4)
    assert bad.attrs["tps_blown_segments"] == 1 and bad.attrs["tps_shots"] == 4
    # every other shot is kept (or dropped for reaching no basin, as always)
    assert bad.attrs["tps_recorded_segments"] + bad.attrs["tps_dropped_segments"] == 3
    assert 2 not in bad.trajectory.values


# ------------------------------------------------------------------ umbrella
class TanhCV(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = positions.reshape(positions.shape[0], -1)[:, :5]
        return torch.tanh(0.05 * (x[:, 0] - x[:, 2]))[:, None]


def _windows(mb):
    centers = np.array([[-0.4], [-0.2], [0.0]])
    start = np.repeat(mb.make_atoms("A").positions[None], 3, axis=0)
    return dict(centers=centers, spring_constants=[[2.0]] * 3, start_positions=start)


@pytest.mark.parametrize("engine", ["fast", "ase"])
def test_umbrella_drops_the_window_and_keeps_the_others(engine, tmp_path, reliability_counts):
    """Window 1's walker 1 (batch row 3) blows up: window 1 is dropped and not
    stored; windows 0 and 2 are exactly those of a run without the blow-up."""
    sampler = UmbrellaSampler(engine=engine, temperature_K=300.0, walkers_per_window=2,
                              n_steps=60, equilibration_steps=10, stride=10, windows_per_task=3)
    mb = MullerBrown5D()
    clean = sampler.run_windows(mb, TanhCV(), seed=3, **_windows(mb))
    bad_system = NaNWalker(row=3, start=30) if engine == "fast" else AbsurdStart(0)
    kw = _windows(mb)
    if engine == "ase":  # walker 1 of window 1 starts 10 km away
        kw["start_positions"] = np.stack([kw["start_positions"]] * 2, axis=1)
        kw["start_positions"][1, 1] += 1e14
    reliability_counts["md_blow_ups_injected"] += 1
    with pytest.warns(RuntimeWarning, match=r"umbrella: window 1 \(walker 1, seed 3\) blew up "
                                            r"at step \d+"):
        bad = sampler.run_windows(bad_system, TanhCV(), seed=3, store=tmp_path, **kw)
    (entry,) = json.loads(bad.attrs["blow_ups"])
    assert (entry["window"], entry["walker"], entry["seed"]) == (1, 1, 3)
    assert entry["step"] == (29 if engine == "fast" else 0)  # call 1 is the start
    assert bad.window.values.tolist() == [0, 2]
    assert sorted(p.name for p in tmp_path.glob("*.nc")) == ["window_0000.nc", "window_0002.nc"]
    np.testing.assert_array_equal(bad.cv_values.values, clean.cv_values.values[[0, 2]])


def test_umbrella_fails_only_when_every_window_blows_up():
    sampler = UmbrellaSampler(temperature_K=300.0, walkers_per_window=1, n_steps=20,
                              equilibration_steps=0, stride=10, windows_per_task=3)
    mb = MullerBrown5D()
    kw = _windows(mb)
    kw["start_positions"] = kw["start_positions"] + 1e14
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SimulationError, match="umbrella: all 3 windows blew up"):
            sampler.run_windows(mb, TanhCV(), seed=0, **kw)
