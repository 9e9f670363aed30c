"""A history-dependent bias as an ASE calculator, updated by a step callback.

``HistoryBiasCalculator(calc, cv, bias)`` is the wrapped calculator's energy
plus the bias V(xi(x)) of a :class:`~mtcv_opes.bias.HistoryBias` (OPES or
well-tempered metadynamics) on a CV ``xi`` (a torch module positions
(n, n_atoms, 3) angstrom -> (n, d), e.g. ``torch.jit.load("cv.ts")``), forces
by autograd through the CV. Between updates the bias is a pure function of
the positions: asking for energy or forces twice changes nothing. The bias
changes only when the callback from :func:`deposit_callback` runs (attach it
to the dynamics with ``interval=pace``), never inside ``calculate()``; the
calculator notices the new bias (its ``version``) and recomputes.

Results, all in ``implemented_properties``: ``energy`` and ``free_energy``
(the wrapped calculator's plus the bias), ``forces`` (biased), ``cv`` (d,),
``bias_energy`` and ``unbiased_energy`` (eV).

Example::

    bias = OpesBias(dim=1, kT=kT, barrier_eV=0.5, sigma=0.05)
    atoms.calc = HistoryBiasCalculator(atoms.calc, cv, bias)
    dyn = Langevin(atoms, 1 * units.fs, temperature_K=300, friction=0.01)
    dyn.attach(deposit_callback(bias, atoms), interval=500)
    dyn.run(100_000)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mtcv_ase.torch_calculator import TorchCalculator, in_dtype
from mtcv_opes.bias import HistoryBias


class HistoryBiasCalculator(TorchCalculator):
    """``calc`` plus a history-dependent bias on ``cv`` (module docstring).

    calc: the physical potential (None: the bias alone); cv: torch module
    positions (n, n_atoms, 3) angstrom -> (n, d); bias: the shared
    :class:`HistoryBias` (several walkers' calculators may share one)."""

    implemented_properties: ClassVar[list[str]] = [  # type: ignore[misc]
        "energy", "free_energy", "forces", "cv", "bias_energy", "unbiased_energy"]

    def __init__(self, calc: Calculator | None, cv: torch.nn.Module, bias: HistoryBias,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calc = calc
        self.cv = in_dtype(cv, self.dtype)
        self.bias = bias
        self._version = -1

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes, plus ``"bias"`` when the bias was updated since the
        last calculation (so a cached result of the old bias is never
        returned)."""
        changes = list(super().check_state(atoms, tol))
        if self._version != self.bias.version:
            changes.append("bias")
        return changes

    def energy_fn(self, positions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        xi = self.cv(positions[None])[0]
        v, dv = self.bias.evaluate(xi.detach().cpu().numpy()[None].astype(float))
        # value V, gradient dV/dxi: a linear term in xi with V's value
        linear = (xi * torch.as_tensor(dv[0], dtype=xi.dtype, device=xi.device)).sum()
        energy = linear - linear.detach() + float(v[0])
        return energy, {"cv": xi, "bias_energy": energy}

    def calculate(self, atoms: Atoms | None = None,
                  properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        self._version = self.bias.version
        super().calculate(atoms, properties, system_changes)
        unbiased = unbiased_free = 0.0
        if self.calc is not None:
            unbiased = float(self.calc.get_potential_energy(self.atoms))
            unbiased_free = (float(self.calc.get_property("free_energy", self.atoms))
                             if "free_energy" in getattr(self.calc, "implemented_properties", ())
                             else unbiased)
            self.results["forces"] = self.results["forces"] + self.calc.get_forces(self.atoms)
        self.results["unbiased_energy"] = unbiased
        self.results["energy"] = unbiased + self.results["bias_energy"]
        self.results["free_energy"] = unbiased_free + self.results["bias_energy"]


def deposit_callback(bias: HistoryBias, *walkers: Atoms) -> Callable[[], None]:
    """A callable that deposits on ``bias`` at the current CV of every walker
    (``Atoms`` whose calculator is a :class:`HistoryBiasCalculator` of this
    bias), all at once: the explicit update step. Attach it to each walker's
    dynamics, or call it yourself after stepping all walkers."""
    if not walkers:
        raise ValueError("deposit_callback: give at least one Atoms")
    for a in walkers:
        if not isinstance(a.calc, HistoryBiasCalculator) or a.calc.bias is not bias:
            raise ValueError("deposit_callback: every walker's calculator must be a "
                             "HistoryBiasCalculator of this bias")

    def deposit() -> None:
        s = np.stack([np.atleast_1d(a.calc.get_property("cv", a)) for a in walkers])
        bias.update(s)

    return deposit


__all__ = ["HistoryBiasCalculator", "deposit_callback"]
