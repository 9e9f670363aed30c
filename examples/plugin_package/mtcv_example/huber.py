"""The ``energy_huber`` loss head: a potential-energy predictor on the latent
CV xi with a Huber loss, robust to high-energy outliers.

A tanh MLP ``h: xi -> r~`` predicts the standardised energy ``r = (V -
mean) / std``, with mean and std (eV) of the TRAINING split stored as
buffers (set by ``prepare(fit=True)``); :meth:`EnergyHuberHead.predict`
returns eV. Over a minibatch B::

    L = sum_{i in B} w_i H_delta(r~_i - r_i) / sum_{i in B} w_i

    H_delta(e) = e^2 / 2                 for |e| <= delta
               = delta (|e| - delta / 2)  otherwise

(dimensionless; ``delta`` in units of the training energy std). For small
errors this is half the squared error of the built-in ``energy`` head; large
errors (rare hot frames, TPS frames far up the barrier) grow only linearly,
so a few of them cannot dominate the gradient. ``w_i`` is the batch's
``weight`` if present, else 1. Every frame is used, labelled or not.

The head depends on ``mtcv_core`` only (``interfaces.LossHead`` and the
option checking of ``mtcv_core.config``), as a third-party head should.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from mtcv_core.config import ConfigError, from_mapping
from mtcv_core.interfaces import ENERGY, LossHead
from torch import nn


@dataclasses.dataclass
class EnergyHuberOptions:
    """Options of the ``energy_huber`` head (the ``[train.heads.energy_huber]`` table)."""

    hidden: list[int] = dataclasses.field(default_factory=lambda: [16, 16], metadata={
        "doc": "hidden layer sizes of the tanh MLP xi -> standardised energy"})
    delta: float = dataclasses.field(default=1.0, metadata={
        "gt": 0, "doc": "Huber threshold, in units of the training energy std"})

    def __post_init__(self) -> None:
        if any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"heads.energy_huber.hidden: sizes must be >= 1, got {self.hidden}")


def huber(error: torch.Tensor, delta: float) -> torch.Tensor:
    """Elementwise Huber function H_delta(e) (see the module docstring)."""
    a = error.abs()
    return torch.where(a <= delta, 0.5 * error * error, delta * (a - 0.5 * delta))


class EnergyHuberHead(nn.Module, LossHead):
    """Energy predictor on xi with a Huber loss.

    Parameters
    ----------
    latent_dim : int
        Dimension of xi (given by the trainer).
    n_features : int
        Length of the feature vector (given by the trainer; unused).
    n_classes : int
        Number of basins (given by the trainer; unused).
    **options
        ``hidden`` (list of int) and ``delta`` (float), see
        :class:`EnergyHuberOptions`.
    """

    name: ClassVar[str] = "energy_huber"
    #: predict() returns the potential energy (n,) eV: the pipeline reports its MAE
    prediction: ClassVar[str | None] = ENERGY

    def __init__(self, *, latent_dim: int = 1, n_features: int = 1, n_classes: int = 2,
                 **options: Any) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.options = from_mapping(EnergyHuberOptions, options, where="heads.energy_huber")
        sizes = [self.latent_dim, *(int(h) for h in self.options.hidden), 1]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)
        # statistics of the training energies, eV (set by prepare(fit=True))
        self.register_buffer("energy_mean", torch.zeros(()))
        self.register_buffer("energy_std", torch.ones(()))

    def prepare(self, data: Mapping[str, torch.Tensor], *, fit: bool) -> dict[str, torch.Tensor]:
        """On the training split (``fit=True``) store the mean and std of
        ``data["energy"]`` (eV). No per-frame tensors are needed."""
        if fit:
            e = data["energy"].double()
            std = float(e.std()) if e.numel() > 1 else 0.0
            self.energy_mean.fill_(float(e.mean()))
            self.energy_std.fill_(std if std > 1e-12 else 1.0)
        return {}

    def standardised(self, latent: torch.Tensor) -> torch.Tensor:
        """Predicted (V - mean) / std: latent (n, latent_dim) -> (n,)."""
        return self.net(latent)[:, 0]

    def loss(self, latent: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted mean Huber error of the standardised energy (dimensionless)."""
        target = ((batch["energy"] - self.energy_mean) / self.energy_std).to(latent.dtype)
        h = huber(self.standardised(latent) - target, self.options.delta)
        weight = batch.get("weight")
        if weight is None:
            return h.mean()
        weight = weight.to(latent.dtype)
        return (weight * h).sum() / weight.sum().clamp_min(1e-30)

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """Predicted potential energy (n,), eV."""
        return self.energy_mean + self.energy_std * self.standardised(latent)


__all__ = ["EnergyHuberHead", "EnergyHuberOptions", "huber"]
