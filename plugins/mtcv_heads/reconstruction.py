"""The ``reconstruction`` head: a decoder xi -> standardised features, the
autoencoder baseline (Sun et al., Sec. IV)::

    L_reconst = mean_{i in B} |x_i - x~_i|^2 / n_features

i.e. the mean squared error per standardised feature (dimensionless). The
decoder mirrors the encoder: ELU hidden layers widening toward the output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mtcv_core.config import ConfigError
from mtcv_heads.base import Head, mlp


@dataclasses.dataclass
class ReconstructionOptions:
    """Options of the ``reconstruction`` head."""

    hidden: list[int] = dataclasses.field(default_factory=lambda: [16, 32], metadata={
        "doc": "hidden layer sizes of the ELU decoder xi -> features"})

    def __post_init__(self) -> None:
        if any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"heads.reconstruction.hidden: sizes must be >= 1, "
                              f"got {self.hidden}")


class ReconstructionHead(Head):
    """Decoder back to the standardised features, with a squared error."""

    name = "reconstruction"
    Options = ReconstructionOptions

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.decoder = mlp([self.latent_dim, *self.options.hidden, self.n_features], nn.ELU)

    def loss(self, latent: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error per standardised feature."""
        return ((self.decoder(latent) - batch["features"]) ** 2).mean()

    def predict(self, latent: torch.Tensor) -> torch.Tensor:
        """Reconstructed standardised features (n, n_features)."""
        return self.decoder(latent)


__all__ = ["ReconstructionHead", "ReconstructionOptions"]
