"""mtcv's built-in loss heads (Sun et al., JCTC 2022), registered through the
``mtcv`` entry-point group exactly as a third-party plugin would be.

==================  =====================================================
``classifier``      linear xi -> basin logits, per-basin weighted CE
``energy``          tanh MLP xi -> V, energy-bin-balanced squared error
``pairwise``        |xi_i - xi_j|^2 vs (V_i - V_j)^2 within a basin
``reconstruction``  ELU decoder xi -> features (autoencoder baseline)
==================  =====================================================

Every head is a ``torch.nn.Module`` and a
:class:`mtcv_core.interfaces.LossHead`, built by the trainer as
``registry.create("loss_head", name, latent_dim=..., n_features=...,
n_classes=..., **options)``; see :class:`mtcv_heads.base.Head` for the
optional ``prepare`` (per-frame weights of a split) and ``predict`` steps.
"""

from __future__ import annotations

from mtcv_core import __version__, hookimpl
from mtcv_heads.base import Head
from mtcv_heads.classifier import ClassifierHead, basin_weights
from mtcv_heads.energy import EnergyHead, energy_bin_weights
from mtcv_heads.pairwise import PairwiseHead, pair_weights
from mtcv_heads.reconstruction import ReconstructionHead


@hookimpl
def mtcv_register_loss_heads(register):
    register("classifier", ClassifierHead)
    register("energy", EnergyHead)
    register("pairwise", PairwiseHead)
    register("reconstruction", ReconstructionHead)


__all__ = ["__version__", "Head", "ClassifierHead", "EnergyHead", "PairwiseHead",
           "ReconstructionHead", "basin_weights", "energy_bin_weights", "pair_weights",
           "mtcv_register_loss_heads"]
