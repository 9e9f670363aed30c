"""The ``classifier`` head: a LINEAR map xi -> basin logits with a
cross-entropy loss (Sun et al., Eq. 2).

Being linear, the classifier forces the basins to be linearly separable in
the latent space and makes xi a monotonic transform of the commitment
probability. Two basins use one logit and the binary cross-entropy; more
basins a softmax over one logit per basin.

Loss over a minibatch B (unlabelled frames, label -1, have w_i = 0)::

    L_clf = sum_{i in B} w_i CE_i / sum_{i in B} w_i,   w_i = 1 / N_{basin(i)}

where N_b counts the labelled frames of basin b in the split, so the
weights sum to one within each basin. Over a whole split this is the mean
over the basins present of each basin's mean cross-entropy: a basin with
few frames counts as much as a large one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtcv_core.interfaces import BASIN_PROBABILITY
from mtcv_heads.base import Head, weighted_mean


@dataclasses.dataclass
class ClassifierOptions:
    """Options of the ``classifier`` head."""

    balance: bool = dataclasses.field(default=True, metadata={
        "doc": "per-basin normalised weights (sum to one within each basin); "
               "false: every labelled frame weighs the same"})
    balance_sources: bool = dataclasses.field(default=False, metadata={
        "doc": "with balance: within each basin, every data source's frames weigh the "
               "same in total (e.g. committed transition-path frames as much as basin MD "
               "frames, however many each produced)"})


def basin_weights(label: torch.Tensor, n_classes: int, *, balance: bool = True,
                  source: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame weights w_i, zero for unlabelled frames (label -1).

    label: (n,) int -> (n,) float. With ``balance`` the weights of each
    basin's frames sum to one; otherwise every labelled frame has weight 1.
    With ``balance`` and ``source`` ((n,) int codes), the weight of each
    basin is further shared equally among the sources that labelled frames
    of that basin.
    """
    labelled = label >= 0
    if not balance:
        return labelled.to(torch.get_default_dtype())
    if source is None:
        source = torch.zeros_like(label)
    n_src = int(source.max().item()) + 1 if source.numel() else 1
    group = label.clamp_min(0) * n_src + source
    counts = torch.bincount(group[labelled], minlength=n_classes * n_src)
    counts = counts.to(torch.get_default_dtype()).reshape(n_classes, n_src)
    present = (counts > 0).sum(1, keepdim=True).clamp_min(1)
    per_group = torch.where(counts > 0, 1.0 / (counts.clamp_min(1.0) * present),
                            torch.zeros_like(counts)).reshape(-1)
    return torch.where(labelled, per_group[group], torch.zeros_like(per_group[0]))


class ClassifierHead(Head):
    """Linear classifier on xi with a (per-basin weighted) cross-entropy."""

    name = "classifier"
    prediction = BASIN_PROBABILITY
    Options = ClassifierOptions

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.n_classes < 2:
            raise ValueError(f"heads.classifier: needs at least 2 basins, got {self.n_classes}")
        self.binary = self.n_classes == 2
        self.linear = nn.Linear(self.latent_dim, 1 if self.binary else self.n_classes)

    def prepare(self, data: Mapping[str, torch.Tensor], *, fit: bool) -> dict[str, torch.Tensor]:
        """Per-basin normalised weights of the split's labelled frames."""
        source = data.get("source") if self.options.balance_sources else None
        return {"weight": basin_weights(data["label"], self.n_classes,
                                        balance=self.options.balance, source=source)}

    def logits(self, latent: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, 1) for two basins, else (n, n_classes)."""
        return self.linear(latent)

    def cross_entropy(self, latent: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Per-frame cross-entropy (n,); the value for label -1 is meaningless
        (it is computed for label 0) and must get zero weight."""
        logits = self.logits(latent)
        target = label.clamp_min(0)
        if self.binary:
            return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype),
                                                      reduction="none")
        return F.cross_entropy(logits, target, reduction="none")

    def loss(self, latent: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Weighted cross-entropy (see the module docstring), dimensionless."""
        label = batch["label"]
        weight = batch.get("weight")
        if weight is None:
            weight = (label >= 0).to(latent.dtype)
        return weighted_mean(self.cross_entropy(latent, label), weight.to(latent.dtype))

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """Basin probabilities (n, n_classes)."""
        logits = self.logits(latent)
        if self.binary:
            p = torch.sigmoid(logits)
            return torch.cat([1.0 - p, p], dim=1)
        return torch.softmax(logits, dim=1)


__all__ = ["ClassifierHead", "ClassifierOptions", "basin_weights"]
