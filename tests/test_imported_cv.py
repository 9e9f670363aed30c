"""Bring your own CV: ``train.cv_file`` (mtcv_core.imported_cv)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_pipeline import TINY, mtcv
from torch import nn

from mtcv_core.config import ConfigError
from mtcv_core.imported_cv import import_cv
from mtcv_systems import MullerBrown5D


class LinearOnPositions(nn.Module):
    """A CV written by hand, as a user would: w . positions (flattened)."""

    def __init__(self, n_atoms: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.register_buffer("w", torch.randn(n_atoms * 3, 2, generator=gen))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return torch.tanh(positions.reshape(positions.shape[0], -1) @ self.w)


class TrueXTilde(nn.Module):
    """x~ of 5D Muller-Brown, through the system's own TorchScript true CV
    (a CV no mtcv training made)."""

    def __init__(self, true_cv: nn.Module) -> None:
        super().__init__()
        self.true_cv = true_cv

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.true_cv(positions)[:, :1]


class Detached(nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.detach().reshape(positions.shape[0], -1)[:, :1]


class Flat(nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions.reshape(positions.shape[0], -1).sum(1)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The sample stage of the tiny 5D Muller-Brown run: OUT with data.nc."""
    root = tmp_path_factory.mktemp("first")
    (root / "first.toml").write_text(TINY)
    res = mtcv("run", str(root / "first.toml"), "--out", str(root / "out"), "--until",
               "sample", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "out"


def _positions(n: int = 8) -> np.ndarray:
    system = MullerBrown5D()
    rng = np.random.default_rng(0)
    base = np.stack([system.make_atoms(b).get_positions() for b in system.basins])
    return base[rng.integers(0, len(base), n)] + 0.05 * rng.standard_normal((n,) + base.shape[1:])


def test_an_imported_positions_cv_is_written_in_mtcvs_form_and_keeps_its_gradient(tmp_path):
    """cv.ts reproduces the external module in float64 and its forces
    (-dxi/dx) match finite differences."""
    pos = _positions()
    ext = torch.jit.script(LinearOnPositions(pos.shape[1]))
    ext.save(str(tmp_path / "mine.ts"))
    _, dim = import_cv(tmp_path / "mine.ts", pos, dest=tmp_path / "cv.ts")
    assert dim == 2
    cv = torch.jit.load(str(tmp_path / "cv.ts"))
    x = torch.as_tensor(pos, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(cv(x).numpy(), LinearOnPositions(pos.shape[1]).double()(x)
                                   .numpy(), rtol=1e-12)
    xr = x[:1].clone().requires_grad_(True)
    grad = torch.autograd.grad(cv(xr)[0, 1], xr)[0].numpy()
    h = 1e-6
    for i, j in [(0, 0), (1, 2), (0, 1)]:
        up, down = x[:1].clone(), x[:1].clone()
        up[0, i, j] += h
        down[0, i, j] -= h
        with torch.no_grad():
            fd = (cv(up)[0, 1] - cv(down)[0, 1]).item() / (2 * h)
        assert grad[0, i, j] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    extra = {"mtcv.json": ""}
    torch.jit.load(str(tmp_path / "cv.ts"), _extra_files=extra)
    meta = json.loads(extra["mtcv.json"])
    assert meta["cv_input"] == "positions" and meta["latent_dim"] == 2
    assert meta["imported_from"].endswith("mine.ts")


def test_an_imported_features_cv_runs_after_the_runs_featurizer(tmp_path):
    """cv_input = "features": xi = module(featurizer(positions))."""
    from mtcv_features import CartesianFeaturizer

    pos = _positions()
    system = MullerBrown5D()
    featurizer = CartesianFeaturizer(dof_mask=system.dof_mask.tolist())
    n_features = featurizer.n_features(pos.shape[1])
    layer = nn.Linear(n_features, 1).double()
    torch.jit.script(layer).save(str(tmp_path / "on_features.ts"))
    import_cv(tmp_path / "on_features.ts", pos, featurizer=featurizer, dest=tmp_path / "cv.ts")
    cv = torch.jit.load(str(tmp_path / "cv.ts"))
    x = torch.as_tensor(pos, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(cv(x).numpy(), layer(featurizer.double()(x)).numpy(),
                                   rtol=1e-12)
    # the same module on positions: refused, naming what it was given
    with pytest.raises(ConfigError, match=r"train.cv_file: .*on_features.ts fails on the run's "
                                          r"positions .*cv_input = 'positions'"):
        import_cv(tmp_path / "on_features.ts", pos)


@pytest.mark.parametrize("module, match", [
    (Detached(), "no finite, non-zero gradient"),
    (Flat(), r"returns shape \(8,\) for 8 configurations; expected \(n, d\)"),
])
def test_a_cv_that_cannot_be_biased_along_is_refused(tmp_path, module, match):
    torch.jit.script(module).save(str(tmp_path / "bad.ts"))
    with pytest.raises(ConfigError, match=match):
        import_cv(tmp_path / "bad.ts", _positions(), dest=tmp_path / "cv.ts")
    assert not (tmp_path / "cv.ts").exists()


def test_a_missing_or_unreadable_cv_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train.cv_file: .*nothere.ts: no such TorchScript"):
        import_cv(tmp_path / "nothere.ts", _positions())
    (tmp_path / "junk.ts").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"train.cv_file: .*junk.ts: not a loadable "
                                          r"TorchScript CV"):
        import_cv(tmp_path / "junk.ts", _positions())


def test_a_run_with_a_cv_file_goes_to_report(tmp_path, first_run):
    """Acceptance (#23): a config whose ``train.cv_file`` is a TorchScript CV
    not made by mtcv (x~ of the 5D Muller-Brown true CV, scripted here) runs
    every stage on the frames of an earlier run (``run_frames``: the same
    frames, splits and labels); the basins along it come from the labelled
    frames (x~ separates A from B), the exact PMF along it is computed, and a
    validation error names a bad file before any sampling."""
    import xarray as xr

    from mtcv_core.evaluation import fit_latent_classifier
    from mtcv_core.io import read_frames
    from mtcv_core.schema import category_names
    from mtcv_core.stages.common import evaluate_cv, split

    system = MullerBrown5D()
    torch.jit.script(TrueXTilde(system.true_cv_module())).save(str(tmp_path / "xt.ts"))
    config = TINY.split("[sample.sources.basin_md]")[0] + f"""
[sample.sources.run_frames]
path = "{first_run / 'data.nc'}"
[train]
cv_file = "{tmp_path / 'xt.ts'}"
[umbrella]
sampler_options = {{ n_windows = 6, max_refinements = 1, walkers_per_window = 2, \
n_steps = 400, equilibration_steps = 50, stride = 10, windows_per_task = 6 }}
[estimate]
options = {{ n_bins = 12, n_bootstraps = 0 }}
"""
    (tmp_path / "own.toml").write_text(config)
    res = mtcv("run", str(tmp_path / "own.toml"), "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "o"
    data, first = read_frames(out / "data.nc"), read_frames(first_run / "data.nc")
    for name in ("train", "test"):  # the same frames, split by split (trajectory ids
        a, b = split(data, name), split(first, name)  # are renumbered on concatenation)
        xr.testing.assert_identical(a.drop_vars(["trajectory", "frame"]).drop_attrs(),
                                    b.drop_vars(["trajectory", "frame"]).drop_attrs())
        _, inv_a = np.unique(a["trajectory"].values, return_inverse=True)
        _, inv_b = np.unique(b["trajectory"].values, return_inverse=True)
        np.testing.assert_array_equal(inv_a, inv_b)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages_done"][-1] == "report"
    assert not (out / "model.pt").exists()
    assert summary["imported_cv"].endswith("xt.ts")
    # x~ is a function of the 2D plane alone: moving the spectators (x5, the
    # embedding angles) leaves it where it is at every landmark
    marks = summary["spectator_sensitivity"]["landmarks"]
    assert {"A", "B"} <= set(marks)
    assert all(m["spread"] < 1e-6 for m in marks.values())
    # the test accuracy is the linear classifier's on xi of the test split
    # (the TPS frames' labels are where their paths commit, so x~ alone
    # cannot reach 1 on them); on the basin-MD frames x~ separates A from B
    train, test = split(data, "train"), split(data, "test")
    cv = torch.jit.load(str(out / "cv.ts"))
    basin_of = fit_latent_classifier(evaluate_cv(cv, train["coordinates"].values),
                                     train["label"].values, 2)
    pred = basin_of(evaluate_cv(cv, test["coordinates"].values))
    label = test["label"].values
    assert summary["test_accuracy"] == pytest.approx(np.mean(pred == label))
    basin_md = test["source"].values == category_names(test, "source").index("basin_md")
    assert basin_md.sum() > 10 and np.all(pred[basin_md] == label[basin_md])
    row = summary["transitions"][0]
    assert np.isfinite(row["barrier_eV"]) and np.isfinite(row["exact_barrier_eV"])
    pos = torch.as_tensor(_positions(), dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(cv(pos).numpy(), system.true_cv(pos.numpy())[:, :1],
                                   rtol=1e-10)
    assert f"CV: imported from {tmp_path / 'xt.ts'}" in (out / "report.md").read_text()
    # a bad file fails at validation, before sampling
    (tmp_path / "bad.toml").write_text(config.replace("xt.ts", "missing.ts"))
    res = mtcv("run", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "bad"), "--quiet")
    assert res.returncode != 0 and "train.cv_file" in res.stderr and "missing.ts" in res.stderr
    assert not (tmp_path / "bad" / "data.nc").exists()


def test_run_frames_refuses_another_systems_data(tmp_path, first_run):
    """``run_frames`` names the file and both systems."""
    from mtcv_core.schema import SchemaError
    from mtcv_sampling import RunFrames
    from mtcv_systems import ThreeWell5D

    source = RunFrames(path=str(first_run / "data.nc"))
    source.check(MullerBrown5D())
    assert source.run(MullerBrown5D(), seed=0, split="test").sizes["frame"] > 0
    with pytest.raises(SchemaError, match=r"run_frames: .*data.nc: frames of system "
                                          r"'muller_brown_5d', this run's is 'three_well_5d'"):
        source.run(ThreeWell5D(), seed=0)
    with pytest.raises(ConfigError, match=r"path: .*nope.nc: no such file"):
        RunFrames(path=str(tmp_path / "nope.nc")).check(MullerBrown5D())


def test_an_ensemble_of_one_fixed_cv_is_refused_before_sampling(tmp_path):
    """``[ensemble] members > 1`` varies the CV's training seed; with
    ``train.cv_file`` there is none: refused at validation, naming both keys."""
    system = MullerBrown5D()
    torch.jit.script(TrueXTilde(system.true_cv_module())).save(str(tmp_path / "xt.ts"))
    (tmp_path / "e.toml").write_text(TINY + f"""
[train]
cv_file = "{tmp_path / 'xt.ts'}"
[ensemble]
members = 2
""")
    res = mtcv("run", str(tmp_path / "e.toml"), "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode != 0
    assert "ensemble.members" in res.stderr and "train.cv_file" in res.stderr
    assert not (tmp_path / "o" / "data.nc").exists()
