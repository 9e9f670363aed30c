"""The ``pairwise`` head: latent distances match energy differences within
a basin (Sun et al., Eq. 11-12). It has no network of its own.

For the frames of a minibatch (the first ``pair_frames`` of it; minibatches
are random, so this samples pairs), over the pairs i < j of the SAME basin
(unlabelled frames take no part)::

    L_pair = sum_ij u_ij [ |xi_i - xi_j|^2 - ((V_i - V_j) / s)^2 ]^2 / sum_ij u_ij
    u_ij   = 1 - sigmoid((|V_i - V_j| - V_0) / dV)

with s = ``energy_scale_eV`` (so xi distances are measured in units of s).
The weight drops to zero for pairs whose energies differ by much more than
V_0. Normalising by sum u_ij makes the value independent of the batch size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

from mtcv_heads.base import Head, weighted_mean


@dataclasses.dataclass
class PairwiseOptions:
    """Options of the ``pairwise`` head."""

    v0_eV: float = dataclasses.field(default=0.5, metadata={
        "min": 0, "doc": "V_0: energy difference where u_ij = 1/2, eV"})
    delta_v_eV: float = dataclasses.field(default=0.1, metadata={
        "gt": 0, "doc": "dV: width of the drop of u_ij around V_0, eV"})
    energy_scale_eV: float = dataclasses.field(default=1.0, metadata={
        "gt": 0, "doc": "s: energy difference matched by a unit latent distance, eV"})
    pair_frames: int = dataclasses.field(default=256, metadata={
        "min": 2, "doc": "frames of each minibatch whose pairs enter the loss"})
    same_basin_only: bool = dataclasses.field(default=True, metadata={
        "doc": "only same-basin pairs (the paper); false: all pairs, labels ignored"})


def pair_weights(energy: torch.Tensor, v0: float, delta_v: float) -> torch.Tensor:
    """u_ij = 1 - sigmoid((|V_i - V_j| - V_0) / dV): energy (n,) eV -> (n, n)."""
    dv = (energy[:, None] - energy[None, :]).abs()
    return 1.0 - torch.sigmoid((dv - v0) / delta_v)


class PairwiseHead(Head):
    """Pairwise latent-distance vs energy-difference loss within basins."""

    name = "pairwise"
    Options = PairwiseOptions

    def loss(self, latent: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """L_pair of the module docstring (units of s^4 ~ xi^4)."""
        opts = self.options
        m = min(int(latent.shape[0]), opts.pair_frames)
        xi = latent[:m]
        energy = batch["energy"][:m].to(latent.dtype)
        label = batch["label"][:m]
        d_xi2 = ((xi[:, None, :] - xi[None, :, :]) ** 2).sum(-1)
        d_v2 = ((energy[:, None] - energy[None, :]) / opts.energy_scale_eV) ** 2
        u = pair_weights(energy, opts.v0_eV, opts.delta_v_eV)
        mask = torch.ones(m, m, dtype=torch.bool, device=latent.device).triu(diagonal=1)
        if opts.same_basin_only:
            mask = mask & (label[:, None] == label[None, :]) & (label >= 0)[:, None]
        return weighted_mean((d_xi2 - d_v2) ** 2, u * mask.to(latent.dtype))


__all__ = ["PairwiseHead", "PairwiseOptions", "pair_weights"]
