"""Umbrella sampling along a CV: the bias as an ASE calculator, window
planning, and the sampler (batched fast path or ASE's Langevin)."""

from __future__ import annotations

from mtcv_core import __version__, hookimpl
from mtcv_umbrella.bias import BatchedBias, UmbrellaBias
from mtcv_umbrella.sampler import UmbrellaSampler

__all__ = ["__version__", "BatchedBias", "UmbrellaBias", "UmbrellaSampler"]


@hookimpl
def mtcv_register_samplers(register):
    register("umbrella", UmbrellaSampler)
