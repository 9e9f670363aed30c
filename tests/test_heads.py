"""The loss heads: hand-computed losses, weight normalisation, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mtcv_core import load_plugins
from mtcv_core.config import ConfigError
from mtcv_core.model import Encoder
from mtcv_heads import (
    ClassifierHead,
    EnergyHead,
    PairwiseHead,
    ReconstructionHead,
    basin_weights,
    energy_bin_weights,
    pair_weights,
)


def test_registered_through_entry_points():
    registry = load_plugins()
    assert set(registry.names("loss_head")) >= {"classifier", "energy", "pairwise",
                                                "reconstruction"}
    assert "cartesian" in registry.names("featurizer")
    head = registry.create("loss_head", "energy", latent_dim=2, n_features=5, n_classes=2,
                           n_bins=4)
    assert isinstance(head, EnergyHead) and head.options.n_bins == 4


def test_unknown_option_is_named():
    with pytest.raises(ConfigError, match="heads.energy.*n_binz"):
        EnergyHead(latent_dim=1, n_features=3, n_classes=2, n_binz=3)
    with pytest.raises(ConfigError, match="heads.pairwise.delta_v_eV"):
        PairwiseHead(delta_v_eV=0.0)


# ------------------------------------------------------------------ classifier
def test_basin_weights_sum_to_one_per_basin():
    label = torch.tensor([0, 0, 0, 1, -1, 2, 2, 1, -1, 0])
    w = basin_weights(label, 4)
    for b in range(3):
        assert w[label == b].sum().item() == pytest.approx(1.0)
    assert (w[label == -1] == 0).all()
    torch.testing.assert_close(w[:3], torch.full((3,), 1 / 4))  # basin 0 has 4 frames
    unbalanced = basin_weights(label, 4, balance=False)
    assert unbalanced.tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 0, 1]


def test_basin_weights_balance_sources_within_each_basin():
    # basin 0: 3 frames of source 1, 1 frame of source 2; basin 1: only source 1
    label = torch.tensor([0, 0, 0, 0, 1, 1, -1])
    source = torch.tensor([1, 1, 1, 2, 1, 1, 2])
    w = basin_weights(label, 2, source=source)
    torch.testing.assert_close(w, torch.tensor([1 / 6, 1 / 6, 1 / 6, 1 / 2, 1 / 2, 1 / 2, 0.0]))
    for b in range(2):
        assert w[label == b].sum().item() == pytest.approx(1.0)


def test_binary_cross_entropy_by_hand():
    head = ClassifierHead(latent_dim=1, n_classes=2)
    with torch.no_grad():
        head.linear.weight.fill_(2.0)
        head.linear.bias.fill_(-1.0)
    xi = torch.tensor([[0.0], [1.0], [2.0], [5.0]])
    label = torch.tensor([0, 1, 1, -1])
    batch = {"label": label, **head.prepare({"label": label}, fit=True)}
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    # weights: basin 0 -> 1 (one frame), basin 1 -> 1/2 each, unlabelled 0
    expected = (1.0 * -math.log(1 - sig(-1.0)) + 0.5 * -math.log(sig(1.0))
                + 0.5 * -math.log(sig(3.0))) / 2.0
    assert head.loss(xi, batch).item() == pytest.approx(expected, rel=1e-6)
    prob = head.predict(xi)
    assert prob.shape == (4, 2)
    assert prob[1, 1].item() == pytest.approx(sig(1.0), rel=1e-6)


def test_multiclass_cross_entropy_by_hand():
    head = ClassifierHead(latent_dim=2, n_classes=3)
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        head.linear.bias.zero_()
    xi = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.5, 0.5], [3.0, 3.0]])
    label = torch.tensor([0, 1, 1, -1])
    batch = {"label": label, **head.prepare({"label": label}, fit=False)}

    def ce(z, k):
        return -z[k] + math.log(sum(math.exp(v) for v in z))

    expected = (1.0 * ce([1, 0, -1], 0) + 0.5 * ce([0, 2, -2], 1)
                + 0.5 * ce([0.5, 0.5, -1], 1)) / 2.0
    assert head.loss(xi, batch).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(head.predict(xi).sum(1), torch.ones(4))


def test_classifier_without_labelled_frames_gives_zero():
    head = ClassifierHead(latent_dim=1, n_classes=2)
    label = torch.tensor([-1, -1])
    loss = head.loss(torch.zeros(2, 1), {"label": label, "weight": basin_weights(label, 2)})
    assert loss.item() == 0.0


# ---------------------------------------------------------------------- energy
def test_energy_bin_weights_make_bins_equal():
    energy = torch.tensor([0.0, 0.1, 0.2, 0.3, 1.0, 2.9, 3.0], dtype=torch.float64)
    u = energy_bin_weights(energy, 0.0, 3.0, 3)  # bins [0,1) [1,2) [2,3]
    assert u.sum().item() == pytest.approx(1.0)
    assert u[:4].sum().item() == pytest.approx(1 / 3)
    assert u[4].item() == pytest.approx(1 / 3)
    assert u[5:].sum().item() == pytest.approx(1 / 3)
    # an empty middle bin: the two occupied bins share the weight
    u2 = energy_bin_weights(torch.tensor([0.0, 0.5, 3.0], dtype=torch.float64), 0.0, 3.0, 3)
    assert u2.tolist() == pytest.approx([0.25, 0.25, 0.5])
    # out-of-range energies count in the edge bins
    u3 = energy_bin_weights(torch.tensor([-5.0, 9.0], dtype=torch.float64), 0.0, 3.0, 3)
    assert u3.tolist() == pytest.approx([0.5, 0.5])


def test_energy_weights_balanced_over_sources():
    from mtcv_heads.energy import source_balanced

    energy = torch.tensor([0.0, 0.1, 0.2, 2.9, 3.0], dtype=torch.float64)
    source = torch.tensor([1, 1, 1, 2, 2])
    w = source_balanced(lambda e: energy_bin_weights(e, 0.0, 3.0, 1), energy, source)
    assert w.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 4, 1 / 4])
    plain = source_balanced(lambda e: energy_bin_weights(e, 0.0, 3.0, 1), energy, None)
    assert plain.tolist() == pytest.approx([0.2] * 5)


def test_energy_loss_by_hand():
    head = EnergyHead(latent_dim=1, n_classes=2, n_bins=2, hidden=[3])
    energy = torch.tensor([0.0, 0.2, 1.0, 2.0], dtype=torch.float64)
    data = {"energy": energy, "label": torch.tensor([0, -1, 1, 1])}
    extra = head.prepare(data, fit=True)
    mean, std = energy.mean().item(), energy.std().item()
    assert head.energy_mean.item() == pytest.approx(mean)
    assert head.energy_std.item() == pytest.approx(std, rel=1e-6)
    # bins [0, 1) and [1, 2]: 2 frames each -> u = 1/4 each
    torch.testing.assert_close(extra["weight"], torch.full((4,), 0.25, dtype=torch.float64))
    xi = torch.tensor([[0.3], [-0.2], [0.1], [0.7]])
    pred = head.net(xi)[:, 0].detach().double()
    target = (energy - mean) / std
    expected = (0.25 * (pred - target) ** 2).sum().item()
    loss = head.loss(xi, {**data, **extra})
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # predictions are in eV; unlabelled frames count like the others
    torch.testing.assert_close(head.predict(xi).double(), mean + std * pred,
                               rtol=1e-5, atol=1e-6)


# -------------------------------------------------------------------- pairwise
def test_pairwise_loss_by_hand():
    head = PairwiseHead(v0_eV=0.5, delta_v_eV=0.1)
    xi = torch.tensor([[0.0], [1.0], [0.5], [2.0]])
    energy = torch.tensor([0.0, 0.3, 0.1, 0.9])
    label = torch.tensor([0, 0, 1, 0])
    loss = head.loss(xi, {"energy": energy, "label": label})
    # same-basin pairs: (0,1), (0,3), (1,3); frame 2 alone in basin 1
    num = den = 0.0
    for i, j in [(0, 1), (0, 3), (1, 3)]:
        dv = abs(energy[i].item() - energy[j].item())
        u = 1 - 1 / (1 + math.exp(-(dv - 0.5) / 0.1))
        r = (xi[i, 0].item() - xi[j, 0].item()) ** 2 - dv ** 2
        num += u * r * r
        den += u
    assert loss.item() == pytest.approx(num / den, rel=1e-5)
    u = pair_weights(energy, 0.5, 0.1)
    assert u[0, 0].item() == pytest.approx(1 - 1 / (1 + math.exp(5.0)))
    # all pairs when labels are ignored, unlabelled frames too
    free = PairwiseHead(same_basin_only=False)
    assert free.loss(xi, {"energy": energy, "label": torch.full((4,), -1)}).item() > 0
    assert head.loss(xi, {"energy": energy, "label": torch.full((4,), -1)}).item() == 0


# -------------------------------------------------------------- reconstruction
def test_reconstruction_loss_by_hand():
    head = ReconstructionHead(latent_dim=1, n_features=2, hidden=[])
    with torch.no_grad():
        lin = head.decoder[0]
        lin.weight.copy_(torch.tensor([[1.0], [2.0]]))
        lin.bias.copy_(torch.tensor([0.0, 1.0]))
    xi = torch.tensor([[1.0], [0.0]])
    x = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # recon: [1, 3], [0, 1] -> squared errors 0, 4, 1, 1 -> mean 1.5
    assert head.loss(xi, {"features": x}).item() == pytest.approx(1.5)


# --------------------------------------------------------------- every head
@pytest.mark.parametrize("name", ["classifier", "energy", "pairwise", "reconstruction"])
def test_each_head_reaches_the_encoder(name):
    torch.manual_seed(0)
    registry = load_plugins()
    encoder = Encoder(4, [8, 4], 2)
    head = registry.create("loss_head", name, latent_dim=2, n_features=4, n_classes=3)
    n = 32
    data = {"features": torch.randn(n, 4),
            "energy": torch.rand(n, dtype=torch.float64),
            "label": torch.randint(-1, 3, (n,))}
    prep = getattr(head, "prepare", None)
    batch = {**data, **(prep(data, fit=True) if prep else {})}
    loss = head.loss(encoder(data["features"]), batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_energy_range_quantile_ignores_outliers():
    energy = torch.cat([torch.linspace(0.0, 1.0, 101, dtype=torch.float64),
                        torch.tensor([50.0], dtype=torch.float64)])
    plain = EnergyHead(n_bins=4)
    plain.prepare({"energy": energy}, fit=True)
    assert plain.energy_max.item() == pytest.approx(50.0)
    robust = EnergyHead(n_bins=4, range_quantile=0.01)
    weight = robust.prepare({"energy": energy}, fit=True)["weight"]
    assert robust.energy_max.item() < 1.01
    assert weight.sum().item() == pytest.approx(1.0)
    assert weight[-1].item() < 0.05  # the outlier shares the top interval
