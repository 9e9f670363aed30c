"""A base class for ASE calculators backed by a torch energy function.

Subclasses implement one override point, :meth:`TorchCalculator.energy_fn`:
positions (n_atoms, 3) angstrom as a float64 tensor -> potential energy
(scalar tensor, eV), optionally with extra per-call results. Forces are
``-dE/dR`` by autograd. Results are copied out with
``.detach().cpu().numpy()`` as float64, in ASE's units (eV, eV/angstrom).
The umbrella bias and other torch-backed calculators reuse this class.

Example
-------
>>> class Harmonic(TorchCalculator):
...     def energy_fn(self, positions):
...         return 0.5 * (positions ** 2).sum()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

EnergyResult = torch.Tensor | tuple[torch.Tensor, Mapping[str, torch.Tensor]]


class TorchCalculator(Calculator):
    """ASE calculator: energy from :meth:`energy_fn`, forces by autograd.

    Parameters
    ----------
    device : str or torch.device
        Where :meth:`energy_fn` runs (default CPU).
    dtype : torch.dtype
        Precision of the positions tensor handed to :meth:`energy_fn`
        (default float64; ASE's finite-difference and MD checks need it).
    **kwargs
        Passed to :class:`ase.calculators.calculator.Calculator`.
    """

    #: subclasses whose :meth:`energy_fn` returns extra results list them too
    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]

    def __init__(self, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.device = torch.device(device)
        self.dtype = dtype

    # ------------------------------------------------------ override points
    def energy_fn(self, positions: torch.Tensor) -> EnergyResult:
        """Potential energy of one configuration.

        Parameters
        ----------
        positions : torch.Tensor
            (n_atoms, 3) angstrom, ``self.dtype`` (float64), requires grad.

        Returns
        -------
        energy : scalar tensor, eV
            Or ``(energy, extra)`` with ``extra`` a mapping of name -> tensor
            that is stored in :attr:`results` (as float64 numpy arrays, or a
            float for a scalar), e.g. the CV value of a bias.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement energy_fn()")

    def positions_tensor(self, atoms: Atoms) -> torch.Tensor:
        """The positions of ``atoms`` as a (n_atoms, 3) tensor that requires grad."""
        return torch.tensor(np.asarray(atoms.positions), dtype=self.dtype,
                            device=self.device, requires_grad=True)

    # ---------------------------------------------------------- ASE contract
    def calculate(self, atoms: Atoms | None = None,
                  properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        """Fill :attr:`results` with ``energy`` (eV; ``free_energy`` the
        same), ``forces`` (n_atoms, 3) eV/angstrom and any extra results, in
        one pass."""
        super().calculate(atoms, properties, system_changes)
        positions = self.positions_tensor(self.atoms)
        with torch.enable_grad():
            out = self.energy_fn(positions)
            energy, extra = out if isinstance(out, tuple) else (out, {})
            if energy.numel() != 1:
                raise ValueError(f"{type(self).__name__}.energy_fn must return a scalar "
                                 f"energy, got shape {tuple(energy.shape)}")
            energy = energy.reshape(())
            if energy.requires_grad:
                (grad,) = torch.autograd.grad(energy, positions, allow_unused=True)
            else:
                grad = None
        forces = (np.zeros(positions.shape) if grad is None
                  else -grad.detach().cpu().numpy().astype(np.float64))
        e = float(energy.detach().cpu())
        self.results = {"energy": e, "free_energy": e, "forces": forces}
        for key, value in extra.items():
            arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor)
                             else value, dtype=np.float64)
            self.results[key] = float(arr) if arr.ndim == 0 else arr


def in_dtype(module: Any, dtype: torch.dtype) -> Any:
    """``module`` (e.g. a CV) with its floating parameters and buffers in
    ``dtype``: itself when they already are (or it has none), else a
    converted copy -- the caller's module is never changed."""
    import copy

    if not hasattr(module, "to"):
        return module
    tensors = ([*module.parameters(), *module.buffers()] if hasattr(module, "parameters")
               else [])
    if all(t.dtype == dtype for t in tensors if t.is_floating_point()):
        return module
    return copy.deepcopy(module).to(dtype)


__all__ = ["in_dtype", "TorchCalculator"]
