"""Training a neural free-energy model on a CG dataset with the thermodynamic
loss heads (``force_matching``, ``energy_matching``, ``second_cumulant``).

    L = sum_h w_h L_h(A_theta; batch)

Adam on minibatches with a cosine learning-rate decay; float64 throughout.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_core.interfaces import ThermoLossHead
from mtcv_thermo.heads import HEADS, ThermoHead
from mtcv_thermo.models import FreeEnergyModel, dataset_tensors, make_batch

HeadSpec = Mapping[str, float | Mapping[str, Any]] | Sequence[ThermoHead]


def build_heads(heads: HeadSpec, *, registry: Any = None) -> list[ThermoHead]:
    """Loss heads from ``{name: weight}`` or ``{name: {option: value}}`` (built
    through the plugin registry, as a third-party head would be), or a list
    of head instances (returned as they are)."""
    if isinstance(heads, Mapping):
        if registry is None:
            from mtcv_core import load_plugins

            registry = load_plugins()
        out = []
        for name, spec in heads.items():
            options = dict(spec) if isinstance(spec, Mapping) else {"weight": float(spec)}
            out.append(registry.create("thermo_head", name, **options))
        built = out
    else:
        built = list(heads)
    if not built:
        raise ValueError("heads: at least one loss head is needed")
    for head in built:
        if not isinstance(head, ThermoLossHead):
            raise ValueError(f"heads: {head!r} is not a mtcv_core.interfaces.ThermoLossHead")
    return built


def train_free_energy(model: FreeEnergyModel, dataset: xr.Dataset, heads: HeadSpec, *,
                      epochs: int = 400, batch_size: int = 256, lr: float = 3e-3,
                      lr_final: float = 3e-5, weight_decay: float = 0.0, seed: int = 0,
                      fit_scaling: bool = True, registry: Any = None) -> xr.Dataset:
    """Fit ``model`` to ``dataset`` (a validated CG dataset) in place.

    Parameters
    ----------
    model : a :class:`~mtcv_thermo.models.FreeEnergyModel`
    dataset : CG dataset (coordinates, mapped forces, energy u, temperature)
    heads : ``{"force_matching": 1.0, "energy_matching": 1.0}`` or head instances
    epochs, batch_size : passes over the data and minibatch size
    lr, lr_final : Adam learning rate, decayed by a cosine to ``lr_final``
    weight_decay : AdamW weight decay
    seed : shuffling seed
    fit_scaling : first set the model's input/output scaling from the data

    Returns
    -------
    xarray.Dataset
        ``loss`` (epoch) and ``loss_<head>`` (epoch): mean training losses
        (dimensionless when the heads normalise).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    built = build_heads(heads, registry=registry)
    if fit_scaling:
        model.fit_scaling(dataset)
    tensors = dataset_tensors(dataset)
    for head in built:
        head.prepare(tensors, fit=True)
    n = tensors["energy"].shape[0]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (
        lr_final / lr + (1 - lr_final / lr) * 0.5 * (1 + math.cos(math.pi * min(s, total)
                                                                   / total))))
    gen = torch.Generator().manual_seed(int(seed))
    history = np.zeros((epochs, len(built) + 1))
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=gen)
        sums = np.zeros(len(built) + 1)
        for start in range(0, n, batch_size):
            index = perm[start:start + batch_size]
            batch = make_batch(tensors, index)
            a = model(batch["positions"], batch["temperature"])
            terms = [head.loss(a, batch) for head in built]
            loss = torch.stack(terms).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            w = len(index) / n
            sums += w * np.array([loss.item()] + [t.item() for t in terms])
        history[epoch] = sums
    model.eval()
    data_vars = {"loss": (("epoch",), history[:, 0], {"units": "1", "long_name": "total loss"})}
    for i, head in enumerate(built):
        data_vars[f"loss_{head.name}"] = (("epoch",), history[:, i + 1],
                                          {"units": "1", "long_name": f"{head.name} term"})
    return xr.Dataset(data_vars, coords={"epoch": np.arange(1, epochs + 1)},
                      attrs={"heads": ",".join(h.name for h in built), "epochs": epochs,
                             "batch_size": batch_size, "lr": lr, "seed": seed})


__all__ = ["train_free_energy", "build_heads", "HEADS"]
