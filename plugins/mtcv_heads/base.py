"""What the built-in loss heads share: construction context, option checking,
and small helpers (``prepare``, ``predict`` and ``prediction`` are
declared on :class:`mtcv_core.interfaces.LossHead`).

The trainer (:mod:`mtcv_core.training`) builds a head with
``registry.create("loss_head", name, latent_dim=..., n_features=...,
n_classes=..., **options)``; the three context arguments describe the
model, ``options`` are the user's (validated against the head's
:attr:`Head.Options` dataclass, so a typo names the head and the key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from mtcv_core.config import from_mapping
from mtcv_core.interfaces import LossHead

#: floor of weight sums, so that a minibatch without any weighted frame
#: gives a zero loss instead of 0/0
WEIGHT_FLOOR = 1e-30


@dataclasses.dataclass
class NoOptions:
    """A head without options."""


class Head(nn.Module, LossHead):
    """Base class of the built-in heads.

    Parameters
    ----------
    latent_dim : int
        Dimension of the latent CV xi.
    n_features : int
        Length of the (standardised) feature vector.
    n_classes : int
        Number of basins (labels ``0 .. n_classes - 1``; ``-1`` = unlabelled).
    **options
        The head's own options, checked against :attr:`Options`.
    """

    name: ClassVar[str] = "head"
    Options: ClassVar[type] = NoOptions

    def __init__(self, *, latent_dim: int = 1, n_features: int = 1, n_classes: int = 2,
                 **options: Any) -> None:
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.n_features = int(n_features)
        self.n_classes = int(n_classes)
        self.options = from_mapping(self.Options, options, where=f"heads.{self.name}")


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum(w v) / sum(w); zero (with a gradient path) where every weight is zero."""
    return (weights * values).sum() / weights.sum().clamp_min(WEIGHT_FLOOR)


def mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation``
    between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(int(a), int(b)))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


__all__ = ["Head", "NoOptions", "WEIGHT_FLOOR", "weighted_mean", "mlp"]
