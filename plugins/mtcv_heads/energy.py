"""The ``energy`` head: the potential-energy predictor (PEP) h: xi -> V~, a
small tanh MLP as in the authors' code (Sun et al., Eq. 3).

The network predicts the standardised energy (V - mean) / std, with mean and
std of the training split stored as buffers; :meth:`EnergyHead.predict`
returns eV. Loss over a minibatch B, in units of std^2::

    L_pe = sum_{i in B} u_i ((V~_i - V_i) / std)^2 / sum_{i in B} u_i

with energy-bin-balanced weights: the range [E_min, E_max] of the TRAINING
energies (or, with ``range_quantile`` q > 0, between their q and 1 - q
quantiles, which keeps a few outliers from claiming whole intervals) is cut
into ``n_bins`` intervals of width dE, and
u_i = 1 / (K N_k(i)) with N_k the split's frame count in interval k and K
the number of non-empty intervals, so that every interval contributes
equally and the weights sum to one. Energies outside the training range
(validation frames) count in the first or last interval. Every frame is
used, labelled or not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mtcv_core.config import ConfigError
from mtcv_core.interfaces import ENERGY
from mtcv_heads.base import Head, mlp, weighted_mean


@dataclasses.dataclass
class EnergyOptions:
    """Options of the ``energy`` head."""

    hidden: list[int] = dataclasses.field(default_factory=lambda: [16, 16], metadata={
        "doc": "hidden layer sizes of the tanh MLP xi -> V"})
    n_bins: int = dataclasses.field(default=10, metadata={
        "min": 1, "doc": "energy intervals that contribute equally; 1: plain MSE"})
    range_quantile: float = dataclasses.field(default=0.0, metadata={
        "min": 0, "max": 0.2, "doc": "E_min, E_max are the q and 1-q quantiles of the "
                                     "training energies (0: the extremes, as in the paper)"})
    balance_sources: bool = dataclasses.field(default=False, metadata={
        "doc": "every data source's frames weigh the same in total (the energy-interval "
               "balancing, if any, applied within each source)"})

    def __post_init__(self) -> None:
        if any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"heads.energy.hidden: sizes must be >= 1, got {self.hidden}")


def energy_bin_weights(energy: torch.Tensor, e_min: float, e_max: float,
                       n_bins: int) -> torch.Tensor:
    """Weights u_i (n,) that make each energy interval contribute equally.

    energy: (n,) eV; the intervals split [e_min, e_max] into ``n_bins``
    equal parts (values outside fall in the edge intervals). The weights
    sum to one; each non-empty interval's weights sum to 1/K.
    """
    width = (e_max - e_min) / n_bins
    if not width > 0:
        index = torch.zeros_like(energy, dtype=torch.long)
    else:
        index = torch.floor((energy - e_min) / width).long().clamp(0, n_bins - 1)
    counts = torch.bincount(index, minlength=n_bins).to(energy.dtype)
    n_occupied = (counts > 0).sum().clamp_min(1).to(energy.dtype)
    return 1.0 / (n_occupied * counts[index])


def source_balanced(weigh: Any, energy: torch.Tensor,
                    source: torch.Tensor | None) -> torch.Tensor:
    """``weigh(energy) -> weights summing to one``, applied within each
    source ((n,) int codes) and scaled so that every source present sums to
    1 / n_sources; ``source=None``: ``weigh(energy)``."""
    if source is None:
        return weigh(energy)
    weight = torch.zeros_like(energy)
    codes = torch.unique(source)
    for code in codes:
        mask = source == code
        weight[mask] = weigh(energy[mask]) / len(codes)
    return weight


class EnergyHead(Head):
    """Potential-energy predictor on xi with an energy-bin-balanced MSE."""

    name = "energy"
    prediction = ENERGY
    Options = EnergyOptions

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = mlp([self.latent_dim, *self.options.hidden, 1], nn.Tanh)
        # statistics of the training energies, eV (set by prepare(fit=True))
        self.register_buffer("energy_mean", torch.zeros(()))
        self.register_buffer("energy_std", torch.ones(()))
        self.register_buffer("energy_min", torch.zeros(()))
        self.register_buffer("energy_max", torch.zeros(()))

    def prepare(self, data: Mapping[str, torch.Tensor], *, fit: bool) -> dict[str, torch.Tensor]:
        """Fit the energy statistics (training split) and return the bin weights."""
        energy = data["energy"]
        if fit:
            e = energy.double()
            std = float(e.std()) if e.numel() > 1 else 0.0
            self.energy_mean.fill_(float(e.mean()))
            self.energy_std.fill_(std if std > 1e-12 else 1.0)
            lo, hi = np.quantile(e.cpu().numpy(), [self.options.range_quantile,
                                                   1.0 - self.options.range_quantile])
            self.energy_min.fill_(float(lo))
            self.energy_max.fill_(float(hi))
        source = data.get("source") if self.options.balance_sources else None
        weight = source_balanced(
            lambda e: energy_bin_weights(e, float(self.energy_min), float(self.energy_max),
                                         self.options.n_bins), energy.double(), source)
        return {"weight": weight.to(energy.dtype)}

    def standardised(self, latent: torch.Tensor) -> torch.Tensor:
        """Predicted (V - mean) / std, (n,)."""
        return self.net(latent)[:, 0]

    def loss(self, latent: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted squared error in units of the training energy std^2."""
        target = (batch["energy"] - self.energy_mean) / self.energy_std
        err2 = (self.standardised(latent) - target.to(latent.dtype)) ** 2
        weight = batch.get("weight")
        if weight is None:
            return err2.mean()
        return weighted_mean(err2, weight.to(latent.dtype))

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """Predicted potential energy (n,), eV."""
        return self.energy_mean + self.energy_std * self.standardised(latent)


__all__ = ["EnergyHead", "EnergyOptions", "energy_bin_weights", "source_balanced"]
