"""Free-energy models A_theta(R, T) with explicit temperature input.

Every model is a ``torch.nn.Module`` (float64) with
``forward(positions, temperature) -> A``: positions (n, n_sites, 3)
angstrom, temperature (n,) K, A (n,) eV. The thermodynamic observables
follow by automatic differentiation (:func:`thermo_derivatives`), with
beta = 1 / (k_B T) in 1/eV::

    forces    F = -grad_R A                       (n, n_sites, 3) eV/angstrom
    energy    E = d(beta A)/d beta  (= <u | R>)   (n,) eV
    variance  W = -d^2(beta A)/d beta^2 (= Var(u | R))   (n,) eV^2

Inputs of the models: features of R -- the active CG coordinates
(``site_mask``) or, for the neural model, the output of a ``featurizer``
(an :class:`mtcv_core.interfaces.Featurizer`: distances, aligned frames,
...) -- centred and scaled by their training mean and std, and the reduced
temperature ``t = T / T_ref`` (``T_ref``: mean training temperature).

:class:`NeuralFreeEnergy` is an MLP on (features of R, T). Two forms:

``"mlp"``
    ``A = a0 + s * MLP([z, t - 1])``: temperature is one more input.
``"thermo"`` (default)
    ``A = a0 + s * sum_k phi_k(t) MLP_k(z)`` with ``phi = (1, -(t - 1),
    t - 1 - t ln t)``: the three outputs of one MLP on R are an energy
    U(R), an entropy S(R) and a heat capacity C(R) in the exact expansion
    of a free energy with T-independent heat capacity,
    ``A = U - (T - T_ref) S / T_ref + C (T - T_ref - T ln(T/T_ref)) / T_ref``
    (units absorbed in s). Then ``E = a0 + s (U + S + (t - 1) C)`` and
    ``W = k_B T t s C``: forces and energies at one temperature determine
    U and S, the second-cumulant term C.

Both carry T explicitly. "thermo" fixes the form of the temperature
dependence to that expansion (exact for harmonic degrees of freedom);
"mlp" leaves it to the network, which is more general but extrapolates in
T less reliably from one training temperature unless the second-cumulant
term constrains its curvature (benchmarks/thermo_exact_model.py).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import nn

from mtcv_thermo.cgmap import validate_cg_dataset
from mtcv_thermo.constants import KB

DTYPE = torch.float64


def check_inputs(positions: torch.Tensor, temperature: torch.Tensor, n_sites: int
                 ) -> torch.Tensor:
    """Validate model inputs; return temperature as (n,) (a scalar broadcasts)."""
    if positions.ndim != 3 or positions.shape[1:] != (n_sites, 3):
        raise ValueError(f"positions: expected shape (n, {n_sites}, 3) angstrom, "
                         f"got {tuple(positions.shape)}")
    temperature = torch.as_tensor(temperature, dtype=positions.dtype, device=positions.device)
    if temperature.ndim == 0:
        temperature = temperature.expand(positions.shape[0])
    if temperature.shape != (positions.shape[0],):
        raise ValueError(f"temperature: expected shape ({positions.shape[0]},) K or a scalar, "
                         f"got {tuple(temperature.shape)}")
    if not bool(torch.isfinite(temperature).all()) or bool((temperature <= 0).any()):
        raise ValueError("temperature: must be finite and > 0 K")
    return temperature


class FreeEnergyModel(nn.Module):
    """Base class: A_theta(R, T) on the active CG coordinates.

    Parameters
    ----------
    site_mask : (n_sites, 3) bool
        Active CG coordinates (the model's inputs).
    temperature_ref : float
        T_ref, K (reset by :meth:`fit_scaling`).
    featurizer : torch module, optional
        positions (n, n_sites, 3) angstrom -> (n, n_features), with a method
        ``n_features(n_sites)``; default: the active coordinates.
    """

    def __init__(self, site_mask: np.ndarray, temperature_ref: float = 300.0,
                 featurizer: nn.Module | None = None) -> None:
        super().__init__()
        mask = np.asarray(site_mask, dtype=bool)
        if mask.ndim != 2 or mask.shape[1] != 3 or not mask.any():
            raise ValueError(f"site_mask: expected (n_sites, 3) bool with an active "
                             f"coordinate, got shape {mask.shape}")
        self.n_sites = int(mask.shape[0])
        self.n_inputs = int(mask.sum())
        self.register_buffer("site_mask", torch.as_tensor(mask))
        self.register_buffer("active_index", torch.as_tensor(np.flatnonzero(mask.ravel())))
        self.featurizer = featurizer
        self.n_features = (self.n_inputs if featurizer is None
                           else int(featurizer.n_features(self.n_sites)))
        self.register_buffer("x_mean", torch.zeros(self.n_features, dtype=DTYPE))
        self.register_buffer("x_std", torch.ones(self.n_features, dtype=DTYPE))
        self.register_buffer("temperature_ref", torch.tensor(float(temperature_ref), dtype=DTYPE))
        #: offset a0 (eV) and scale s (eV) of the output
        self.register_buffer("energy_offset", torch.zeros((), dtype=DTYPE))
        self.register_buffer("energy_scale", torch.ones((), dtype=DTYPE))

    def active(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_sites, 3) -> (n, n_inputs) active coordinates, angstrom."""
        return positions.reshape(positions.shape[0], -1)[:, self.active_index]

    def raw_features(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_sites, 3) angstrom -> (n, n_features): the featurizer's output
        or the active coordinates."""
        if self.featurizer is None:
            return self.active(positions)
        return self.featurizer(positions)

    def features(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_sites, 3) angstrom -> (n, n_features), standardised."""
        return (self.raw_features(positions) - self.x_mean) / self.x_std

    @torch.no_grad()
    def fit_scaling(self, dataset: xr.Dataset) -> None:
        """Input mean/std, T_ref (mean temperature) and output offset/scale
        (mean energy; the larger of std(u) and rms(force) * std(R)) from a
        training CG dataset."""
        validate_cg_dataset(dataset, where="training dataset")
        mask = dataset["site_mask"].values.astype(bool)
        if mask.shape != tuple(self.site_mask.shape) or (mask != self.site_mask.numpy()).any():
            raise ValueError(f"site_mask: the dataset's {mask.astype(int).tolist()} differs "
                             f"from the model's {self.site_mask.int().tolist()}")
        x = dataset["coordinates"].values.reshape(dataset.sizes["frame"], -1)[:, mask.ravel()]
        std = x.std(axis=0)
        feats = self.raw_features(torch.as_tensor(np.array(dataset["coordinates"].values),
                                                  dtype=DTYPE)).detach().cpu().numpy()
        fstd = feats.std(axis=0)
        self.x_mean.copy_(torch.as_tensor(feats.mean(axis=0)))
        self.x_std.copy_(torch.as_tensor(np.where(fstd > 1e-12, fstd, 1.0)))
        self.temperature_ref.fill_(float(dataset["temperature"].values.mean()))
        u = dataset["energy"].values
        f = dataset["forces"].values.reshape(dataset.sizes["frame"], -1)[:, mask.ravel()]
        scale = max(float(u.std()), float(np.sqrt((f**2).mean()) * std.mean()), 1e-6)
        self.energy_offset.fill_(float(u.mean()))
        self.energy_scale.fill_(scale)

    def forward(self, positions: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """A(R, T): positions (n, n_sites, 3) angstrom, temperature (n,) K -> (n,) eV."""
        raise NotImplementedError


def thermo_derivatives(model: nn.Module, positions: torch.Tensor, temperature: torch.Tensor,
                       *, variance: bool = False, create_graph: bool = False
                       ) -> dict[str, torch.Tensor]:
    """A and its thermodynamic derivatives by autograd.

    Parameters
    ----------
    model : callable (positions (n, n_sites, 3) A, temperature (n,) K) -> (n,) eV
    positions : (n, n_sites, 3) angstrom
    temperature : (n,) K
    variance : also compute ``variance`` = -d^2(beta A)/d beta^2
    create_graph : keep the graph (for training on the derivatives)

    Returns
    -------
    dict with ``free_energy`` (n,) eV, ``forces`` (n, n_sites, 3) eV/angstrom,
    ``energy`` (n,) eV = d(beta A)/d beta and, if asked, ``variance`` (n,) eV^2.
    """
    pos = positions.detach().to(DTYPE).requires_grad_(True)
    beta = (1.0 / (KB * torch.as_tensor(temperature, dtype=DTYPE))).detach()
    beta = beta.expand(pos.shape[0]).clone().requires_grad_(True)
    with torch.enable_grad():
        a = model(pos, 1.0 / (KB * beta))
        out = _derivatives(a, pos, beta, variance=variance, create_graph=create_graph)
    if not create_graph:
        out = {k: v.detach() for k, v in out.items()}
    return out


def _derivatives(a: torch.Tensor, positions: torch.Tensor, beta: torch.Tensor, *,
                 variance: bool, create_graph: bool) -> dict[str, torch.Tensor]:
    keep = create_graph or variance
    g_pos, g_beta = torch.autograd.grad((beta * a).sum(), (positions, beta),
                                        create_graph=keep, allow_unused=True)
    # d(beta A)/dR = beta dA/dR per frame
    forces = (torch.zeros_like(positions) if g_pos is None
              else -g_pos / beta.detach()[:, None, None])
    energy = torch.zeros_like(beta) if g_beta is None else g_beta
    out = {"free_energy": a, "forces": forces, "energy": energy}
    if variance:
        if energy.requires_grad:
            (d2,) = torch.autograd.grad(energy.sum(), beta, create_graph=create_graph,
                                        allow_unused=True)
        else:
            d2 = None
        out["variance"] = torch.zeros_like(beta) if d2 is None else -d2
    return out


def batch_derivatives(a: torch.Tensor, batch: Mapping[str, Any], *,
                      variance: bool = False) -> dict[str, torch.Tensor]:
    """Derivatives of model outputs ``a`` (n,) eV w.r.t. the leaf tensors
    ``batch["positions"]`` and ``batch["beta"]`` (made by
    :func:`make_batch`), with the graph kept for training. Cached in
    ``batch["_derivatives"]`` (when ``batch`` is mutable) so that several
    loss heads share one pass."""
    cache = batch.get("_derivatives")
    if cache is not None and cache["a"] is a and ("variance" in cache or not variance):
        return cache
    pos, beta = batch["positions"], batch["beta"]
    if not (pos.requires_grad and beta.requires_grad):
        raise ValueError("batch: 'positions' and 'beta' must be leaf tensors that require "
                         "grad, and the model must be evaluated on them (use make_batch)")
    out = _derivatives(a, pos, beta, variance=variance, create_graph=True)
    out["a"] = a
    if isinstance(batch, MutableMapping):
        batch["_derivatives"] = out
    return out


def make_batch(tensors: dict[str, torch.Tensor], index: torch.Tensor | slice | None = None
               ) -> dict[str, Any]:
    """A training batch: rows ``index`` of the dataset tensors, with fresh
    leaf tensors ``positions`` and ``beta`` (1/eV) that require grad, and
    ``temperature`` = 1/(k_B beta) K computed from ``beta``."""
    sel = slice(None) if index is None else index
    batch: dict[str, Any] = {k: v[sel] for k, v in tensors.items()
                             if k not in ("site_mask",) and v.ndim > 0}
    batch["positions"] = tensors["coordinates"][sel].detach().clone().requires_grad_(True)
    batch["beta"] = (1.0 / (KB * tensors["temperature"][sel])).detach().clone() \
        .requires_grad_(True)
    batch["temperature"] = 1.0 / (KB * batch["beta"])
    batch["site_mask"] = tensors["site_mask"]
    return batch


def dataset_tensors(dataset: xr.Dataset) -> dict[str, torch.Tensor]:
    """The CG dataset's variables as float64 tensors (``site_mask`` bool)."""
    validate_cg_dataset(dataset)
    out = {name: torch.tensor(np.array(dataset[name].values, dtype=np.float64), dtype=DTYPE)
           for name in ("coordinates", "forces", "energy", "temperature")}
    out["site_mask"] = torch.as_tensor(dataset["site_mask"].values.astype(bool))
    return out


class NeuralFreeEnergy(FreeEnergyModel):
    """MLP free energy A_theta(R, T) (see the module docstring for the forms).

    Parameters
    ----------
    site_mask : (n_sites, 3) bool, active CG coordinates
    hidden : hidden layer sizes
    form : "thermo" (MLP on R, outputs U, S, C combined with phi_k(t)) or
        "mlp" (MLP on (R, t))
    activation : "silu", "tanh" or "softplus" (smooth: forces and
        beta-derivatives are differentiated again in training)
    temperature_ref : T_ref, K (reset by :meth:`fit_scaling`)
    featurizer : optional torch module R -> features (see :class:`FreeEnergyModel`)
    seed : torch seed of the initial weights
    """

    def __init__(self, site_mask: np.ndarray, *, hidden: Sequence[int] = (64, 64),
                 form: Literal["thermo", "mlp"] = "thermo",
                 activation: Literal["silu", "tanh", "softplus"] = "silu",
                 temperature_ref: float = 300.0, featurizer: nn.Module | None = None,
                 seed: int = 0) -> None:
        super().__init__(site_mask, temperature_ref, featurizer)
        if form not in ("thermo", "mlp"):
            raise ValueError(f"form: expected 'thermo' or 'mlp', got {form!r}")
        acts = {"silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
        if activation not in acts:
            raise ValueError(f"activation: expected one of {sorted(acts)}, got {activation!r}")
        self.form = form
        n_in = self.n_features + (1 if form == "mlp" else 0)
        n_out = 3 if form == "thermo" else 1
        gen = torch.Generator().manual_seed(int(seed))
        layers: list[nn.Module] = []
        sizes = [n_in, *[int(h) for h in hidden], n_out]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            lin = nn.Linear(a, b, dtype=DTYPE)
            with torch.no_grad():
                bound = 1.0 / np.sqrt(a)
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.uniform_(-bound, bound, generator=gen)
            layers.append(lin)
            if i < len(sizes) - 2:
                layers.append(acts[activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, positions: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        temperature = check_inputs(positions, temperature, self.n_sites)
        z = self.features(positions)
        t = temperature / self.temperature_ref
        if self.form == "mlp":
            out = self.net(torch.cat([z, (t - 1.0)[:, None]], dim=1))[:, 0]
        else:
            coef = self.net(z)
            phi = torch.stack([torch.ones_like(t), -(t - 1.0), t - 1.0 - t * torch.log(t)], 1)
            out = (coef * phi).sum(1)
        return self.energy_offset + self.energy_scale * out


__all__ = ["DTYPE", "FreeEnergyModel", "NeuralFreeEnergy", "thermo_derivatives",
           "batch_derivatives", "make_batch", "dataset_tensors", "check_inputs"]
