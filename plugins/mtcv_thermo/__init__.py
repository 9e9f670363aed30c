"""Thermodynamic free-energy learning for coarse graining (Duschatko et al.,
arXiv:2405.19386; SCIENCE.md §4), registered through the ``mtcv``
entry-point group exactly as a third-party plugin would be.

=======================  ==========================================================
``thermo_exact``         system: the exact test model (closed-form A(x, T), samplers)
``force_matching``       thermo head: |F_theta - mapped force|^2
``energy_matching``      thermo head: (d_beta[beta A_theta] - u)^2
``second_cumulant``      thermo head: unbiased second-cumulant term
=======================  ==========================================================

Beside the components: linear CG maps, nonlinear ones with the
instantaneous collective force (:class:`NonlinearCGMap`) and the mapped
dataset (:mod:`mtcv_thermo.cgmap`; the radii of the 5D model systems in
:mod:`mtcv_thermo.embedded`), free-energy models with explicit temperature
(:class:`NeuralFreeEnergy`, :class:`KernelFreeEnergy`; :data:`MODELS`),
training (:func:`train_free_energy`) and the learned A as an ASE
calculator for CG MD (:class:`FreeEnergyCalculator`, :func:`run_cg_md`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_core import __version__, hookimpl
from mtcv_thermo.calculator import FreeEnergyCalculator, make_cg_atoms, run_cg_md
from mtcv_thermo.cgmap import (
    CGMap,
    NonlinearCGMap,
    make_cg_dataset,
    map_dataset,
    validate_cg_dataset,
)
from mtcv_thermo.constants import KB
from mtcv_thermo.exact_model import ThermoExactCalculator, ThermoExactModel
from mtcv_thermo.heads import (
    EnergyMatchingHead,
    ForceMatchingHead,
    SecondCumulantHead,
    ThermoHead,
)
from mtcv_thermo.kernel import KernelFreeEnergy
from mtcv_thermo.models import FreeEnergyModel, NeuralFreeEnergy, thermo_derivatives
from mtcv_thermo.training import train_free_energy

#: the free-energy model families by name (mtcv_core has no hook for this
#: kind of component yet)
MODELS: dict[str, type[FreeEnergyModel]] = {"neural": NeuralFreeEnergy,
                                            "kernel": KernelFreeEnergy}

Register = Callable[[str, Callable[..., Any]], None]


@hookimpl
def mtcv_register_systems(register: Register) -> None:
    """Register the exact thermodynamic test model."""
    register("thermo_exact", ThermoExactModel)


@hookimpl
def mtcv_register_thermo_heads(register: Register) -> None:
    """Register the thermodynamic loss heads."""
    register("force_matching", ForceMatchingHead)
    register("energy_matching", EnergyMatchingHead)
    register("second_cumulant", SecondCumulantHead)


__all__ = ["__version__", "KB", "CGMap", "NonlinearCGMap", "make_cg_dataset", "map_dataset",
           "validate_cg_dataset", "ThermoExactModel", "ThermoExactCalculator",
           "FreeEnergyModel", "NeuralFreeEnergy", "KernelFreeEnergy", "MODELS",
           "thermo_derivatives", "ThermoHead", "ForceMatchingHead", "EnergyMatchingHead",
           "SecondCumulantHead", "train_free_energy", "FreeEnergyCalculator", "make_cg_atoms",
           "run_cg_md", "mtcv_register_systems", "mtcv_register_thermo_heads"]
