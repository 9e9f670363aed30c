"""Thermodynamic loss heads (Duschatko et al., arXiv:2405.19386; SCIENCE.md §4).

Each head is a :class:`mtcv_core.interfaces.ThermoLossHead` (plugin kind
``thermo_head``) and a ``torch.nn.Module``. Its ``loss(free_energy,
batch)`` takes the model's free energies A_theta(R, T), (n,) eV, evaluated on the leaf
tensors ``batch["positions"]`` (n, n_sites, 3) angstrom and
``batch["beta"]`` (n,) 1/eV of a batch made by
:func:`mtcv_thermo.models.make_batch`; the derivatives are taken by
autograd (:func:`mtcv_thermo.models.batch_derivatives`, shared between the
heads of one batch). Labels are instantaneous and unbiased:

==================  =====================================  ====================
head                loss term (mean over the batch)        minimiser
==================  =====================================  ====================
``force_matching``  |F_theta - D f|^2 / n_active           F = <D f | R>
``energy_matching`` (E_theta - u)^2                         E = <u | R>
``second_cumulant`` ((E_theta - c)^2 + W_theta - (u - c)^2)^2
                                                           (E-c)^2 + W = <(u-c)^2|R>
==================  =====================================  ====================

with F = -grad_R A, E = d(beta A)/d beta, W = -d^2(beta A)/d beta^2, D the
force map, and c a CONSTANT energy shift (the training mean of u; being
the same for every frame it keeps the label unbiased and reduces its
variance). The cumulant label is (u - c)^2, not (u - E)^2, which would be
biased. Each term is divided by the variance of its label over the
training split (set by ``prepare(fit=True)``), so the terms are
dimensionless and weights of order one balance them; this does not move
any minimiser. ``weight`` (option) multiplies the term.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from mtcv_core.config import from_mapping
from mtcv_core.interfaces import ThermoLossHead
from mtcv_thermo.models import DTYPE, batch_derivatives


@dataclasses.dataclass
class ThermoHeadOptions:
    """Options of the thermodynamic heads."""

    weight: float = dataclasses.field(default=1.0, metadata={
        "min": 0, "doc": "multiplies this loss term"})
    normalise: bool = dataclasses.field(default=True, metadata={
        "doc": "divide by the training variance of the label (dimensionless terms)"})


class ThermoHead(nn.Module, ThermoLossHead):
    """Base class of the thermodynamic heads.

    Parameters
    ----------
    weight : float
        Multiplies the term.
    normalise : bool
        Divide by the training variance of the label.
    """

    name: ClassVar[str] = "thermo"
    Options: ClassVar[type] = ThermoHeadOptions

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.options = from_mapping(self.Options, options, where=f"heads.{self.name}")
        self.weight = float(self.options.weight)
        #: variance of the label (training split), the term's unit
        self.register_buffer("scale", torch.ones((), dtype=DTYPE))

    def prepare(self, data: Mapping[str, torch.Tensor], *, fit: bool) -> dict[str, torch.Tensor]:
        """Set the label scale from the training tensors (``fit=True``)."""
        if fit and self.options.normalise:
            self.scale.fill_(max(float(self._label_variance(data)), 1e-30))
        return {}

    def _label_variance(self, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def term(self, latent: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """The unweighted, unnormalised mean squared error (its own units)."""
        raise NotImplementedError

    def loss(self, free_energy: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """weight * term / scale (dimensionless when normalised)."""
        if free_energy.ndim == 2 and free_energy.shape[1] == 1:
            free_energy = free_energy[:, 0]
        if free_energy.ndim != 1:
            raise ValueError(f"{self.name}: free_energy must be A, shape (n,) eV, "
                             f"got {tuple(free_energy.shape)}")
        return self.weight * self.term(free_energy, batch) / self.scale


def _active(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n, n_sites, 3) -> (n, n_active)."""
    return values.reshape(values.shape[0], -1)[:, mask.reshape(-1).bool()]


class ForceMatchingHead(ThermoHead):
    """Force matching: mean over frames and active CG coordinates of
    (F_theta - mapped force)^2, eV^2/angstrom^2."""

    name = "force_matching"

    def _label_variance(self, data):
        f = _active(data["forces"], data["site_mask"])
        return f.var(dim=0).mean()

    def term(self, latent, batch):
        pred = batch_derivatives(latent, batch)["forces"]
        mask = batch["site_mask"]
        return ((_active(pred, mask) - _active(batch["forces"], mask)) ** 2).mean()


class EnergyMatchingHead(ThermoHead):
    """Energy matching: mean (d_beta[beta A_theta] - u)^2, eV^2."""

    name = "energy_matching"

    def _label_variance(self, data):
        return data["energy"].var()

    def term(self, latent, batch):
        pred = batch_derivatives(latent, batch)["energy"]
        return ((pred - batch["energy"]) ** 2).mean()


class SecondCumulantHead(ThermoHead):
    """Unbiased second-cumulant term: mean ((E_theta - c)^2 + W_theta - (u - c)^2)^2, eV^4,
    with c the training mean of u (a constant, set by ``prepare(fit=True)``)."""

    name = "second_cumulant"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.register_buffer("energy_shift", torch.zeros((), dtype=DTYPE))

    def prepare(self, data, *, fit):
        if fit:
            self.energy_shift.fill_(float(data["energy"].mean()))
        return super().prepare(data, fit=fit)

    def _label_variance(self, data):
        return ((data["energy"] - self.energy_shift) ** 2).var()

    def term(self, latent, batch):
        d = batch_derivatives(latent, batch, variance=True)
        c = self.energy_shift
        pred = (d["energy"] - c) ** 2 + d["variance"]
        return ((pred - (batch["energy"] - c) ** 2) ** 2).mean()


HEADS: dict[str, type[ThermoHead]] = {h.name: h for h in (
    ForceMatchingHead, EnergyMatchingHead, SecondCumulantHead)}

__all__ = ["ThermoHead", "ThermoHeadOptions", "ForceMatchingHead", "EnergyMatchingHead",
           "SecondCumulantHead", "HEADS"]
