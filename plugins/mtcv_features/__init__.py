"""mtcv's built-in featurizers, registered through the ``mtcv`` entry-point
group exactly as a third-party plugin would be.

``cartesian``
    The Cartesian coordinates themselves, optionally restricted to the
    active degrees of freedom (``dof_mask``). The 5D model systems store a
    5D point as two pseudo-atoms whose sixth coordinate is inactive: with
    ``dof_mask=[[1, 1, 1], [1, 1, 0]]`` the features are
    ``positions.reshape(n, -1)[:, :5]``. In a periodic cell each atom is
    taken at its image nearest a reference structure (continuous across
    the cell boundary).

For molecules (:mod:`mtcv_features.molecular`; all invariant under rigid
translations and proper rotations):

``aligned_cartesian``
    Cartesian coordinates in a body frame fixed to three atoms (options
    ``center``, ``axis``, ``plane``, ``drop_constant``), as in Sun et al.,
    JCTC 2022: atom ``center`` at the origin, ``axis`` on +x, ``plane`` in
    the xy plane with y > 0. ``3 n_atoms - 3`` features (the paper's 63 for
    alanine dipeptide's 22 atoms: the centre's zeros dropped), or
    ``3 n_atoms - 6`` with ``drop_constant = true`` (no constant feature).
``dihedral_sincos``
    ``sin phi, cos phi`` of each dihedral in ``dihedrals`` (lists of 4 atom
    indices), interleaved; IUPAC sign, as ``ase.Atoms.get_dihedral``.
``distances``
    Pairwise distances among ``atoms`` (default: all), or their inverses
    with ``inverse = true``; invariant under reflections too.

Featurizers are TorchScript-able ``torch.nn.Module`` objects so that the
exported CV (``cv.ts``) carries them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from mtcv_ase.pbc import minimum_image
from mtcv_core import __version__, hookimpl
from mtcv_core.interfaces import Featurizer
from mtcv_features.molecular import (
    AlignedCartesianFeaturizer,
    DihedralSinCosFeaturizer,
    DistanceFeaturizer,
    set_cell,
)


class CartesianFeaturizer(nn.Module, Featurizer):
    """Flattened Cartesian coordinates, angstrom.

    Parameters
    ----------
    dof_mask : (n_atoms, 3) bool, optional
        Active coordinates; ``None`` keeps all ``3 n_atoms`` of them. The
        features are the active coordinates in row-major (atom, x/y/z) order.
    cell, pbc, reference : optional
        (3, 3) angstrom (rows the cell vectors), (3,) bool and (n_atoms, 3)
        angstrom, all three together: in a periodic cell each atom is taken
        at its image nearest its ``reference`` position (``reference +
        minimum_image(x - reference)``), so the features neither jump when
        an atom crosses the cell boundary nor tell periodic images apart, as
        long as no atom strays half a cell width from its reference. The
        pipeline passes a periodic system's cell and the start structure of
        its first basin (``uses_cell``, ``uses_reference``).
    """

    name = "cartesian"
    uses_dof_mask = True
    uses_cell = True
    uses_reference = True

    def __init__(self, dof_mask: Sequence[Sequence[bool]] | np.ndarray | None = None,
                 cell: Sequence[Sequence[float]] | None = None,
                 pbc: Sequence[bool] | None = None,
                 reference: Sequence[Sequence[float]] | None = None) -> None:
        super().__init__()
        if dof_mask is None:
            self.use_mask = False
            self.mask_atoms = 0
            index = torch.zeros(0, dtype=torch.long)
        else:
            mask = np.asarray(dof_mask, dtype=bool)
            if mask.ndim != 2 or mask.shape[1] != 3:
                raise ValueError(f"cartesian featurizer: dof_mask must have shape (n_atoms, 3), "
                                 f"got {mask.shape}")
            if not mask.any():
                raise ValueError("cartesian featurizer: dof_mask selects no coordinate")
            self.use_mask = True
            self.mask_atoms = int(mask.shape[0])
            index = torch.as_tensor(np.flatnonzero(mask.ravel()), dtype=torch.long)
        self.register_buffer("index", index)
        given = [v is not None for v in (cell, pbc, reference)]
        if any(given) and not all(given):
            missing = [n for n, g in zip(("cell", "pbc", "reference"), given, strict=True)
                       if not g]
            raise ValueError("cartesian featurizer: give cell, pbc and reference together "
                             f"(missing {', '.join(missing)})")
        set_cell(self, "cartesian", cell, pbc)  # all three given, or none
        ref = np.zeros((0, 3)) if reference is None else np.asarray(reference, float)
        if ref.ndim != 2 or ref.shape[1] != 3 or not np.all(np.isfinite(ref)):
            raise ValueError(f"cartesian featurizer: reference must be finite positions "
                             f"(n_atoms, 3), got shape {ref.shape}")
        self.reference = None if reference is None else ref.tolist()
        self.reference_atoms = int(len(ref))
        self.register_buffer("reference_positions", torch.as_tensor(ref, dtype=torch.float64),
                             persistent=False)

    def n_features(self, n_atoms: int) -> int:
        """Number of features for ``n_atoms`` atoms (checks the mask's and
        the reference's shape)."""
        if self.periodic_cell and n_atoms != self.reference_atoms:
            raise ValueError(f"cartesian featurizer: reference has {self.reference_atoms} "
                             f"atoms, the system has {n_atoms}")
        if not self.use_mask:
            return 3 * int(n_atoms)
        if n_atoms != self.mask_atoms:
            raise ValueError(f"cartesian featurizer: dof_mask is for {self.mask_atoms} "
                             f"atoms, the system has {n_atoms}")
        return int(self.index.numel())

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, n_features) angstrom."""
        if self.periodic_cell:
            ref = self.reference_positions.to(positions.dtype)
            positions = ref + minimum_image(positions - ref, self.cell_matrix, self.inv_cell,
                                            self.periodic)
        x = positions.reshape(positions.shape[0], -1)
        if self.use_mask:
            x = x.index_select(1, self.index)
        return x

    def extra_repr(self) -> str:
        text = f"n_active={self.index.numel()}" if self.use_mask else "all coordinates"
        return text + (f", pbc={self.pbc}" if self.periodic_cell else "")


@hookimpl
def mtcv_register_featurizers(register):
    register("cartesian", CartesianFeaturizer)
    register("aligned_cartesian", AlignedCartesianFeaturizer)
    register("dihedral_sincos", DihedralSinCosFeaturizer)
    register("distances", DistanceFeaturizer)


__all__ = ["__version__", "CartesianFeaturizer", "AlignedCartesianFeaturizer",
           "DihedralSinCosFeaturizer", "DistanceFeaturizer", "mtcv_register_featurizers"]
