"""The multitask CV model: featurizer, standardisation, training, metrics,
persistence (weights_only) and TorchScript export."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr

from mtcv_core import load_plugins
from mtcv_core.config import ConfigError
from mtcv_core.export import export_torchscript, load_cv, load_model
from mtcv_core.io import read_dataset, write_dataset
from mtcv_core.model import (
    ModelFileError,
    MultitaskCV,
    Standardizer,
    build_model,
    model_config,
)
from mtcv_core.schema import make_frames
from mtcv_core.training import TrainConfig, cv_values, evaluate, predict, train

MASK = [[1, 1, 1], [1, 1, 0]]


def double_well(n: int, seed: int, unlabelled: float = 0.1, kT: float = 0.1) -> xr.Dataset:
    """Boltzmann samples (kT in eV) of the 2D double well
    V = 0.5 (x^2 - 1)^2 + 0.2 y^2 (eV) embedded in 5D (three noise
    dimensions), stored as two pseudo-atoms whose 6th coordinate is inactive;
    labels by the sign of x, some frames unlabelled."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-2.0, 2.0, 4001)
    p = np.exp(-0.5 * (grid**2 - 1.0) ** 2 / kT)
    x = rng.choice(grid, n, p=p / p.sum()) + rng.uniform(-5e-4, 5e-4, n)
    y = rng.normal(0.0, np.sqrt(kT / 0.4), n)
    pts = np.column_stack([x, y, rng.normal(0.0, 1.0, (n, 3)), np.zeros(n)])
    energy = 0.5 * (x**2 - 1.0) ** 2 + 0.2 * y**2
    label = (x > 0).astype(int)
    label[rng.random(n) < unlabelled] = -1
    pos = pts.reshape(n, 2, 3)
    return make_frames(pos, energy, np.zeros_like(pos), numbers=[1, 1], masses=[1.0, 1.0],
                       basins=["A", "B"], label=label)


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


@pytest.fixture(scope="module")
def trained(registry):
    frames = double_well(3000, seed=0)
    cfg = TrainConfig(epochs=40, warmup_epochs=10, batch_size=256, patience=15,
                      featurizer_options={"dof_mask": MASK}, seed=1)
    t0 = time.perf_counter()
    model, history = train(frames, cfg, registry, progress=False)
    return model, history, time.perf_counter() - t0


# ------------------------------------------------------------------ building
def test_cartesian_featurizer_mask_and_torchscript(registry):
    feat = registry.create("featurizer", "cartesian", dof_mask=MASK)
    pos = torch.randn(4, 2, 3)
    assert feat.n_features(2) == 5
    torch.testing.assert_close(feat(pos), pos.reshape(4, -1)[:, :5])
    scripted = torch.jit.script(feat)
    torch.testing.assert_close(scripted(pos), feat(pos))
    full = registry.create("featurizer", "cartesian")
    assert full.n_features(2) == 6 and full(pos).shape == (4, 6)
    with pytest.raises(ValueError, match="dof_mask is for 2 atoms"):
        feat.n_features(3)


def test_standardizer_floors_constant_features():
    x = torch.tensor([[1.0, 5.0, 0.0], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    st = Standardizer(3).fit(x)
    torch.testing.assert_close(st.mean, torch.tensor([3.0, 5.0, 2.0]))
    std = float(np.std([1.0, 3.0, 5.0]))
    torch.testing.assert_close(st.std, torch.tensor([std, 1.0, std]))
    out = st(x)
    assert torch.isfinite(out).all() and (out[:, 1] == 0).all()
    assert "standardizer.mean" in MultitaskCV(torch.nn.Identity(), {}, model_config(
        featurizer="cartesian", featurizer_options={}, n_atoms=1, n_features=3, latent_dim=1,
        hidden=[4], n_classes=2, basins=["A", "B"], heads={})).state_dict()


def test_train_config_validation():
    assert TrainConfig.from_mapping({"latent_dim": 2}).latent_dim == 2
    with pytest.raises(ConfigError, match="train.epoch"):
        TrainConfig.from_mapping({"epoch": 3})
    with pytest.raises(ConfigError, match="l2"):
        TrainConfig.from_mapping({"l2": 0.2})
    with pytest.raises(ConfigError, match="at least one loss head"):
        TrainConfig.from_mapping({"heads": {}})
    with pytest.raises(ConfigError, match="coefficients"):
        TrainConfig.from_mapping({"coefficients": {"pairwise": 2.0}})


# ------------------------------------------------------------------ training
def test_training_reaches_high_accuracy_fast(trained):
    model, history, elapsed = trained
    test = double_well(2000, seed=7)
    metrics = evaluate(model, test)
    assert metrics["accuracy"] > 0.95
    assert metrics["n"] == 2000 and metrics["n_labelled"] < 2000
    assert metrics["energy_mae_eV"] > 0 and metrics["energy_mae_balanced_eV"] > 0
    assert elapsed < 30.0


def test_energy_head_learns_the_potential(registry):
    frames, test = double_well(3000, seed=0), double_well(1000, seed=7)
    for ds in (frames, test):  # an energy that a 1D xi can resolve: V(x)
        x = ds["coordinates"].values[:, 0, 0]
        ds["energy"].values[:] = 0.5 * (x**2 - 1.0) ** 2
    cfg = dict(epochs=150, warmup_epochs=0, batch_size=256, seed=1,
               heads={"energy": {"n_bins": 1}}, featurizer_options={"dof_mask": MASK})
    model, _ = train(frames, cfg, registry, progress=False)
    mae = evaluate(model, test)["energy_mae_eV"]
    baseline = np.abs(test["energy"].values - np.median(frames["energy"].values)).mean()
    assert mae < 0.2 * baseline


def test_history_dataset(trained, tmp_path):
    _model, history, _ = trained
    assert history.sizes["epoch"] >= 10
    for term in ("classifier", "energy", "reg", "total"):
        for split in ("train", "validation"):
            assert f"loss_{split}_{term}" in history
    for key in ("lr", "coefficient_classifier", "coefficient_energy", "coefficient_reg",
                "accuracy_validation", "energy_mae_validation"):
        assert key in history
        assert "units" in history[key].attrs and "long_name" in history[key].attrs
    assert history["energy_mae_validation"].attrs["units"] == "eV"
    # warm-up: random coefficients below their scale; afterwards fixed at it
    scales = json.loads(history.attrs["coefficient_scales"])
    warm = history["coefficient_energy"].values[:10]
    assert (warm <= scales["energy"]).all() and np.unique(warm).size > 1
    assert np.allclose(history["coefficient_energy"].values[10:], scales["energy"])
    # the heads contribute equally to the initial loss, the L2 term ~1 % (< 5 %)
    initial = json.loads(history.attrs["initial_losses"])
    assert scales["classifier"] * initial["classifier"] == pytest.approx(
        scales["energy"] * initial["energy"])
    reg_share = scales["reg"] * initial["reg"] / sum(scales[k] * initial[k] for k in scales)
    assert reg_share == pytest.approx(0.01, rel=1e-6)
    # learning rate x0.95 every 20 epochs
    lr = history["lr"].values
    assert lr[0] == pytest.approx(1e-3) and lr[20] == pytest.approx(0.95e-3)
    path = write_dataset(history, tmp_path / "training.nc")
    back = read_dataset(path)
    xr.testing.assert_allclose(back["loss_train_total"], history["loss_train_total"])


def test_best_weights_are_kept(trained):
    model, history, _ = trained
    best = int(history.attrs["best_epoch"])
    val = history["loss_validation_total"].values
    assert val[best] == pytest.approx(val.min())


def test_predict_and_cv_values(trained):
    model, _, _ = trained
    frames = double_well(500, seed=3)
    out = predict(model, frames)
    xi = cv_values(model, frames)
    np.testing.assert_allclose(out["xi"], xi, rtol=1e-6, atol=1e-6)
    assert xi.shape == (500, 1)
    assert out["probability"].shape == (500, 2) and out["energy"].shape == (500,)
    assert set(np.unique(out["label"])) <= {0, 1}
    # xi is (near-)monotonic in the classifier's probability: a linear head
    w = model.heads["classifier"].linear.weight.item()
    order = np.argsort(xi[:, 0] * np.sign(w))
    assert np.all(np.diff(out["probability"][order, 1]) >= -1e-6)


def test_training_is_reproducible_and_any_head_subset_trains(registry):
    frames = double_well(600, seed=2)
    base = dict(epochs=3, warmup_epochs=1, batch_size=128, featurizer_options={"dof_mask": MASK})
    m1, h1 = train(frames, dict(base, seed=5), registry, progress=False)
    m2, h2 = train(frames, dict(base, seed=5), registry, progress=False)
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    np.testing.assert_array_equal(h1["loss_train_total"].values, h2["loss_train_total"].values)
    for heads in ({"pairwise": {}}, {"reconstruction": {}}, {"classifier": {}},
                  {"energy": {}, "pairwise": {"pair_frames": 64}}):
        model, hist = train(frames, dict(base, heads=heads, validation_fraction=0.0),
                            registry, progress=False)
        assert np.isfinite(hist["loss_train_total"].values).all()
        assert "loss_validation_total" not in hist
        assert set(model.heads) == set(heads)


def test_early_stopping_and_device_fallback(registry):
    frames = double_well(400, seed=9)
    base = dict(batch_size=200, featurizer_options={"dof_mask": MASK})
    # a learning rate far below float32 resolution: the loss never improves
    _, hist = train(frames, dict(base, epochs=50, warmup_epochs=0, patience=3, lr=1e-12),
                    registry, progress=False)
    assert hist.attrs["stopped_early"] == 1 and hist.sizes["epoch"] == 4
    assert hist.attrs["best_epoch"] == 0
    if torch.cuda.is_available():
        model, _ = train(frames, dict(base, epochs=1, device="cuda"), registry, progress=False)
        assert model.device.type == "cuda"
    else:
        with pytest.warns(UserWarning, match="CUDA is not available"):
            model, _ = train(frames, dict(base, epochs=1, device="cuda"), registry,
                             progress=False)
        assert model.device.type == "cpu"


# --------------------------------------------------------------- persistence
def test_save_load_roundtrip(trained, registry, tmp_path):
    model, _, _ = trained
    path = model.save(tmp_path / "model.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "config", "state_dict", "standardization", "basins"}
    json.dumps(raw["config"])  # plain data only
    assert raw["basins"] == ["A", "B"]
    loaded = load_model(path, registry)
    pos = torch.as_tensor(double_well(50, seed=4)["coordinates"].values)
    with torch.no_grad():
        a, b = model.predict(pos), loaded.predict(pos)
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not list(tmp_path.glob(".model.pt.*"))  # no temporary file left


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_refuses_code_execution(registry, tmp_path):
    marker = tmp_path / "pwned"
    evil_zip = tmp_path / "evil.pt"
    torch.save({"format": "mtcv.model/1", "config": _Exploit(str(marker))}, evil_zip)
    evil_raw = tmp_path / "evil_raw.pt"
    evil_raw.write_bytes(pickle.dumps(_Exploit(str(marker))))
    for path in (evil_zip, evil_raw):
        with pytest.raises(ModelFileError, match=str(path.name)):
            load_model(path, registry)
        assert not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="garbage.pt"):
        load_model(garbage, registry)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.pt", registry)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelFileError, match="not an mtcv model file"):
        load_model(other, registry)


# -------------------------------------------------------------------- export
def test_torchscript_export_matches_value_and_gradient(trained, tmp_path):
    model, _, _ = trained
    path = export_torchscript(model, tmp_path / "cv.ts")
    cv = load_cv(path)
    pos = torch.as_tensor(double_well(20, seed=5)["coordinates"].values).requires_grad_(True)
    xi_live = model.cv(pos)
    (g_live,) = torch.autograd.grad(xi_live.sum(), pos)
    pos2 = pos.detach().clone().requires_grad_(True)
    xi_ts = cv(pos2)
    (g_ts,) = torch.autograd.grad(xi_ts.sum(), pos2)
    assert torch.equal(xi_ts, xi_live)
    torch.testing.assert_close(g_ts, g_live)
    assert (g_live[:, 1, 2] == 0).all()  # the inactive coordinate has no gradient
    # a float64 export agrees to float32 round-off
    cv64 = load_cv(export_torchscript(model, tmp_path / "cv64.ts", dtype=torch.float64))
    torch.testing.assert_close(cv64(pos.detach()).float(), xi_live.detach(),
                               rtol=1e-5, atol=1e-5)


def test_torchscript_loads_without_mtcv(trained, tmp_path):
    model, _, _ = trained
    path = export_torchscript(model, tmp_path / "cv.ts")
    pos = double_well(5, seed=6)["coordinates"].values
    with torch.no_grad():
        expected = model.cv(torch.as_tensor(pos)).double().numpy()
    script = (
        "import json, sys, torch\n"
        "extra = {'mtcv.json': ''}\n"
        f"cv = torch.jit.load({str(path)!r}, _extra_files=extra)\n"
        f"pos = torch.tensor({pos.tolist()!r}, dtype=torch.float64, requires_grad=True)\n"
        "xi = cv(pos)\n"
        "g, = torch.autograd.grad(xi.sum(), pos)\n"
        "assert not any(m.startswith('mtcv') for m in sys.modules), 'mtcv was imported'\n"
        "print(json.dumps({'xi': xi.tolist(), 'latent': json.loads(extra['mtcv.json'])"
        "['latent_dim']}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(result["xi"]), expected, rtol=1e-6, atol=1e-6)
    assert result["latent"] == 1


def test_build_model_checks_feature_count(registry):
    conf = model_config(featurizer="cartesian", featurizer_options={"dof_mask": MASK},
                        n_atoms=2, n_features=6, latent_dim=1, hidden=[4], n_classes=2,
                        basins=["A", "B"], heads={"classifier": {}})
    with pytest.raises(ValueError, match="gives 5 features"):
        build_model(conf, registry)


def test_plots(trained, tmp_path):
    from mtcv_core.plots import plot_along_cv, plot_cv_plane, plot_history

    model, history, _ = trained
    frames = double_well(400, seed=8)
    out = predict(model, frames)
    pos = frames["coordinates"].values
    plot_cv_plane(pos[:, 0, 0], pos[:, 0, 1], out["xi"], path=tmp_path / "plane.png",
                  names=("x (angstrom)", "y (angstrom)"))
    plot_along_cv(out["xi"], frames["energy"].values, energy_pred=out["energy"],
                  label=frames["label"].values, probability=out["probability"],
                  basins=["A", "B"], path=tmp_path / "along.png")
    plot_history(history, path=tmp_path / "history.png")
    for name in ("plane.png", "along.png", "history.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
