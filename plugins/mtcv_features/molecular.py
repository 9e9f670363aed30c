"""Featurizers for molecules: an aligned Cartesian frame and two internal-
coordinate alternatives.

``aligned_cartesian`` (:class:`AlignedCartesianFeaturizer`)
    The Cartesian coordinates of all atoms in a body frame fixed to three
    atoms (Sun et al., JCTC 2022, for alanine dipeptide): invariant under
    rigid translations and proper rotations, but not under reflections (the
    frame is right-handed, so a molecule and its mirror image differ in the
    sign of their z coordinates -- what a chiral molecule needs).
``dihedral_sincos`` (:class:`DihedralSinCosFeaturizer`)
    ``(sin phi, cos phi)`` of chosen dihedral angles: invariant under
    translations and proper rotations, continuous across the +-180 degree
    periodic boundary.
``distances`` (:class:`DistanceFeaturizer`)
    Pairwise distances (or inverse distances) among chosen atoms: invariant
    under translations, rotations *and* reflections.

All three are TorchScript-able ``torch.nn.Module`` objects whose options are
plain ints, lists of ints and bools (as they come from a TOML config), and
all are differentiable with finite gradients for non-degenerate geometries:
norms are clamped below by :data:`EPS` angstrom, so coincident or collinear
atoms give finite (if meaningless) features instead of NaN.

Bad options raise :class:`ValueError` naming the featurizer, the option and
the offending value; atom indices are checked against the system's size
when :meth:`n_features` is called (by the model builder).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtcv_ase.pbc import minimum_image
from mtcv_core.interfaces import Featurizer

#: floor on lengths (angstrom) before dividing by them; far below any bond
EPS = 1e-10
#: floor on |n1| |n2| (angstrom^4) in the dihedral; representable in float32
RHO_FLOOR = 1e-12


def _atom_index(featurizer: str, option: str, value: Any) -> int:
    """``value`` as a non-negative atom index, or ValueError naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{featurizer} featurizer: {option} must be an integer atom index, "
                         f"got {value!r}")
    if int(value) < 0:
        raise ValueError(f"{featurizer} featurizer: {option} must be a non-negative atom "
                         f"index, got {value!r}")
    return int(value)


def _index_list(featurizer: str, option: str, values: Any) -> list[int]:
    """``values`` as a list of atom indices (ValueError naming ``option``)."""
    if hasattr(values, "tolist"):  # numpy array or tensor
        values = values.tolist()
    if not isinstance(values, list | tuple):
        raise ValueError(f"{featurizer} featurizer: {option} must be a list of atom indices, "
                         f"got {values!r}")
    return [_atom_index(featurizer, option, v) for v in values]


def _check_range(featurizer: str, option: str, indices: Sequence[int], n_atoms: int,
                 value: Any = None) -> None:
    """ValueError naming ``option`` if an index is not below ``n_atoms``."""
    bad = [i for i in indices if i >= n_atoms]
    if bad:
        shown = indices if value is None else value
        raise ValueError(f"{featurizer} featurizer: {option}={shown!r} has atom index {bad[0]} "
                         f"out of range for {n_atoms} atoms")


def _as_bool(featurizer: str, option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{featurizer} featurizer: {option} must be true or false, "
                         f"got {value!r}")
    return value


def _norm(v: torch.Tensor, eps: float) -> torch.Tensor:
    """Euclidean norm over the last axis (keepdim), floored at ``eps``, with
    finite gradients everywhere (zero below the floor)."""
    return torch.sqrt(torch.clamp_min((v * v).sum(-1, keepdim=True), eps * eps))


class AlignedCartesianFeaturizer(nn.Module, Featurizer):
    """Cartesian coordinates in a body frame fixed to three atoms, angstrom.

    The frame (Gram--Schmidt, right-handed):

    * origin at atom ``center``;
    * ``e1 = unit(r[axis] - r[center])`` -- atom ``axis`` lies on the +x axis;
    * ``e2 = unit(d - (d . e1) e1)`` with ``d = r[plane] - r[center]`` -- atom
      ``plane`` lies in the xy plane with y > 0;
    * ``e3 = e1 x e2``.

    The features are the coordinates ``(x, y, z)`` of every atom in this
    frame, flattened in row-major (atom, x/y/z) order, without the
    coordinates that are zero by construction:

    * ``drop_constant=False`` (default, as in the paper): only the centre
      atom's three coordinates are dropped -- ``3 n_atoms - 3`` features (63
      for alanine dipeptide's 22 atoms). The ``axis`` atom's y, z and the
      ``plane`` atom's z stay in (they are zero up to rounding, and the
      standardizer floors their spread);
    * ``drop_constant=True``: those three are dropped as well --
      ``3 n_atoms - 6`` features (60 for 22 atoms), none of them constant.

    Invariant under rigid translations and proper rotations of the input;
    a reflection flips the sign of the z coordinates. The frame is undefined
    when ``axis`` coincides with ``center`` or the three atoms are collinear;
    lengths are floored at :data:`EPS` there so the output stays finite.

    Parameters
    ----------
    center : int
        Index of the central atom (for alanine dipeptide: CA).
    axis : int
        Index of an atom bonded to ``center``, placed on the +x axis.
    plane : int
        Index of another atom bonded to ``center``, placed in the xy plane
        with y > 0.
    drop_constant : bool
        Also drop the three other identically-zero coordinates (see above).
    """

    name = "aligned_cartesian"

    def __init__(self, center: int, axis: int, plane: int, drop_constant: bool = False) -> None:
        super().__init__()
        name = "aligned_cartesian"
        self.center = _atom_index(name, "center", center)
        self.axis = _atom_index(name, "axis", axis)
        self.plane = _atom_index(name, "plane", plane)
        self.drop_constant = _as_bool(name, "drop_constant", drop_constant)
        atoms = {"center": self.center, "axis": self.axis, "plane": self.plane}
        if len(set(atoms.values())) != 3:
            raise ValueError(f"aligned_cartesian featurizer: center, axis and plane must be "
                             f"three different atoms, got {atoms}")
        self.eps = EPS

    def n_features(self, n_atoms: int) -> int:
        """``3 n_atoms - 3`` (``- 6`` with ``drop_constant``); checks the indices."""
        n_atoms = int(n_atoms)
        for option in ("center", "axis", "plane"):
            _check_range(self.name, option, [getattr(self, option)], n_atoms,
                         getattr(self, option))
        return 3 * n_atoms - (6 if self.drop_constant else 3)

    def frame(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, 3, 3) rows ``e1, e2, e3`` (lab axes)."""
        origin = positions[:, self.center, :]
        d1 = positions[:, self.axis, :] - origin
        d2 = positions[:, self.plane, :] - origin
        e1 = d1 / _norm(d1, self.eps)
        u = d2 - (d2 * e1).sum(-1, keepdim=True) * e1
        e2 = u / _norm(u, self.eps)
        e3 = torch.linalg.cross(e1, e2, dim=-1)
        return torch.stack([e1, e2, e3], dim=1)

    def aligned(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, n_atoms, 3) angstrom in the body
        frame, all coordinates (none dropped)."""
        rel = positions - positions[:, self.center, :].unsqueeze(1)
        return torch.matmul(rel, self.frame(positions).transpose(1, 2))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, n_features) angstrom."""
        n_atoms = positions.shape[1]
        flat = self.aligned(positions).reshape(positions.shape[0], 3 * n_atoms)
        c = 3 * self.center
        if not self.drop_constant:  # slices: cheaper than a boolean mask per call
            return torch.cat([flat[:, :c], flat[:, c + 3:]], dim=1)
        keep = torch.ones(3 * n_atoms, dtype=torch.bool, device=positions.device)
        keep[3 * self.center:3 * self.center + 3] = False
        if self.drop_constant:
            keep[3 * self.axis + 1:3 * self.axis + 3] = False
            keep[3 * self.plane + 2] = False
        return flat[:, keep]

    def extra_repr(self) -> str:
        return (f"center={self.center}, axis={self.axis}, plane={self.plane}, "
                f"drop_constant={self.drop_constant}")


class DihedralSinCosFeaturizer(nn.Module, Featurizer):
    """Sine and cosine of dihedral angles (dimensionless).

    For the atoms ``(i, j, k, l)`` of a dihedral, with ``b1 = r_j - r_i``,
    ``b2 = r_k - r_j``, ``b3 = r_l - r_k``, ``n1 = b1 x b2``, ``n2 = b2 x b3``
    (Blondel & Karplus 1996)::

        x = n1 . n2,   y = unit(b2) . (n1 x n2),
        cos phi = x / rho,   sin phi = y / rho,   rho = sqrt(x^2 + y^2) = |n1| |n2|

    No ``atan2``, so there is no branch cut, and ``sin^2 + cos^2 = 1`` to
    rounding.
    The sign follows IUPAC (and ``ase.Atoms.get_dihedral``, which returns
    ``phi mod 360`` in degrees): phi > 0 when, looking along ``b2`` from
    ``j`` to ``k``, the front bond ``j-i`` turns clockwise by less than 180
    degrees to eclipse the back bond ``k-l``. Collinear ``i, j, k`` or
    ``j, k, l`` leave phi undefined; ``rho`` is floored at
    :data:`RHO_FLOOR` angstrom^4 (a sane dihedral has ``rho`` of order 1)
    so the features and their gradients stay finite there.

    Features are ordered ``[sin phi_0, cos phi_0, sin phi_1, cos phi_1, ...]``
    in the order of ``dihedrals``: ``2 len(dihedrals)`` of them.

    Parameters
    ----------
    dihedrals : list of lists of 4 int
        Atom indices ``[i, j, k, l]`` of each dihedral (e.g. alanine
        dipeptide's phi and psi), four different atoms each.
    """

    name = "dihedral_sincos"

    def __init__(self, dihedrals: Sequence[Sequence[int]]) -> None:
        super().__init__()
        name = "dihedral_sincos"
        if hasattr(dihedrals, "tolist"):  # numpy array or tensor
            dihedrals = dihedrals.tolist()
        if not isinstance(dihedrals, list | tuple) or len(dihedrals) == 0:
            raise ValueError(f"dihedral_sincos featurizer: dihedrals must be a non-empty list "
                             f"of 4-atom index lists, got {dihedrals!r}")
        rows: list[list[int]] = []
        for quad in dihedrals:
            option = f"dihedrals entry {quad!r}"
            idx = _index_list(name, option, quad)
            if len(idx) != 4:
                raise ValueError(f"dihedral_sincos featurizer: each entry of dihedrals must "
                                 f"have 4 atom indices, got {quad!r} ({len(idx)} atoms)")
            if len(set(idx)) != 4:
                raise ValueError(f"dihedral_sincos featurizer: dihedrals entry {quad!r} "
                                 f"repeats an atom")
            rows.append(idx)
        self.dihedrals = rows
        self.eps = EPS
        self.rho_floor = RHO_FLOOR
        self.register_buffer("index", torch.tensor(rows, dtype=torch.long).reshape(-1, 4))

    def n_features(self, n_atoms: int) -> int:
        """``2 len(dihedrals)``; checks the indices against ``n_atoms``."""
        for quad in self.dihedrals:
            _check_range(self.name, "dihedrals", quad, int(n_atoms), quad)
        return 2 * len(self.dihedrals)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, 2 n_dihedrals), sin/cos interleaved."""
        p = positions[:, self.index, :]  # (n, n_dihedrals, 4, 3)
        b1 = p[:, :, 1] - p[:, :, 0]
        b2 = p[:, :, 2] - p[:, :, 1]
        b3 = p[:, :, 3] - p[:, :, 2]
        n1 = torch.linalg.cross(b1, b2, dim=-1)
        n2 = torch.linalg.cross(b2, b3, dim=-1)
        x = (n1 * n2).sum(-1)
        y = (torch.linalg.cross(n1, n2, dim=-1) * (b2 / _norm(b2, self.eps))).sum(-1)
        rho = torch.sqrt(torch.clamp_min(x * x + y * y, self.rho_floor ** 2))
        return torch.stack([y / rho, x / rho], dim=-1).reshape(positions.shape[0], -1)

    def extra_repr(self) -> str:
        return f"dihedrals={self.dihedrals}"


def set_cell(module: nn.Module, featurizer: str, cell: Sequence[Sequence[float]] | None,
             pbc: Sequence[bool] | None) -> None:
    """Give a featurizer its periodic cell for :func:`mtcv_ase.pbc.minimum_image`:
    attributes ``periodic_cell`` (bool), ``cell``, ``pbc`` (the options as
    lists, None without a cell) and non-persistent float64 buffers
    ``cell_matrix`` (3, 3), ``inv_cell`` (3, 3) and ``periodic`` (3,) --
    rebuilt from the options, so model files written before they existed
    still load. ValueError naming ``featurizer`` for a bad cell."""
    periodic = np.zeros(3, bool)
    cell_arr = np.eye(3)
    if cell is not None and pbc is not None:
        cell_arr = np.asarray(cell, float)
        periodic = np.asarray([_as_bool(featurizer, "pbc", b) for b in pbc], bool)
        if cell_arr.shape != (3, 3) or periodic.shape != (3,):
            raise ValueError(f"{featurizer} featurizer: cell must be 3 x 3 and pbc 3 "
                             f"booleans, got {cell!r}, {pbc!r}")
        if periodic.any() and abs(np.linalg.det(cell_arr)) <= 0:
            raise ValueError(f"{featurizer} featurizer: periodic cell with zero volume")
    module.periodic_cell = bool(periodic.any())
    module.cell = cell_arr.tolist() if cell is not None else None
    module.pbc = periodic.tolist() if cell is not None else None
    module.register_buffer("cell_matrix", torch.as_tensor(cell_arr, dtype=torch.float64),
                           persistent=False)
    module.register_buffer("inv_cell", torch.as_tensor(
        np.linalg.inv(cell_arr) if periodic.any() else np.eye(3), dtype=torch.float64),
        persistent=False)
    module.register_buffer("periodic", torch.as_tensor(periodic.astype(np.float64)),
                           persistent=False)


class DistanceFeaturizer(nn.Module, Featurizer):
    """Pairwise distances among chosen atoms: angstrom, or 1/angstrom with
    ``inverse``.

    The features are ``|r_a - r_b|`` (or its inverse) for every pair of
    positions ``p < q`` in ``atoms`` (``a = atoms[p]``, ``b = atoms[q]``), in
    row-major upper-triangle order ``(0,1), (0,2), ..., (1,2), ...``:
    ``m (m - 1) / 2`` features for ``m`` atoms. Distances are floored at
    :data:`EPS` so the gradient (and ``1/r``) stays finite.

    Parameters
    ----------
    atoms : list of int, optional
        Atom indices, at least two and all different; ``None`` (default)
        uses every atom of the system.
    inverse : bool
        Give ``1 / r`` instead of ``r`` (emphasises short distances).
    cell, pbc : optional
        (3, 3) angstrom (rows the cell vectors) and (3,) bool: distances by
        the minimum image on the periodic axes (fractional components
        wrapped to [-1/2, 1/2)), so none jumps when an atom crosses the cell
        boundary. The pipeline passes a periodic system's own
        (``uses_cell``).
    """

    name = "distances"
    uses_cell = True

    def __init__(self, atoms: Sequence[int] | None = None, inverse: bool = False,
                 cell: Sequence[Sequence[float]] | None = None,
                 pbc: Sequence[bool] | None = None) -> None:
        super().__init__()
        name = "distances"
        self.inverse = _as_bool(name, "inverse", inverse)
        if (cell is None) != (pbc is None):
            raise ValueError("distances featurizer: give cell and pbc together")
        set_cell(self, name, cell, pbc)
        self.eps = EPS
        idx = []
        if atoms is not None:
            idx = _index_list(name, "atoms", atoms)
            if len(idx) < 2:
                raise ValueError(f"distances featurizer: atoms must list at least two atoms, "
                                 f"got {atoms!r}")
            if len(set(idx)) != len(idx):
                raise ValueError(f"distances featurizer: atoms={atoms!r} repeats an atom")
        self.atoms = idx
        self.all_atoms = atoms is None
        pairs = torch.triu_indices(len(idx), len(idx), 1)  # (2, 0) for no atoms
        sel = torch.tensor(idx, dtype=torch.long)
        self.register_buffer("first", sel[pairs[0]])
        self.register_buffer("second", sel[pairs[1]])

    def n_features(self, n_atoms: int) -> int:
        """``m (m - 1) / 2`` for ``m`` atoms; checks the indices against ``n_atoms``."""
        n_atoms = int(n_atoms)
        if self.all_atoms:
            if n_atoms < 2:
                raise ValueError(f"distances featurizer: needs at least two atoms, "
                                 f"the system has {n_atoms}")
            return n_atoms * (n_atoms - 1) // 2
        _check_range(self.name, "atoms", self.atoms, n_atoms)
        return int(self.first.numel())

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, n_pairs) angstrom (1/angstrom if inverse)."""
        if self.all_atoms:
            n_atoms = positions.shape[1]
            pairs = torch.triu_indices(n_atoms, n_atoms, 1, device=positions.device)
            first = pairs[0]
            second = pairs[1]
        else:
            first = self.first
            second = self.second
        d = positions[:, first, :] - positions[:, second, :]
        if self.periodic_cell:
            d = minimum_image(d, self.cell_matrix, self.inv_cell, self.periodic)
        r = _norm(d, self.eps).squeeze(-1)
        if self.inverse:
            return 1.0 / r
        return r

    def extra_repr(self) -> str:
        atoms = "all" if self.all_atoms else str(self.atoms)
        periodic = f", pbc={self.pbc}" if self.periodic_cell else ""
        return f"atoms={atoms}, inverse={self.inverse}{periodic}"


__all__ = ["EPS", "RHO_FLOOR", "AlignedCartesianFeaturizer", "DihedralSinCosFeaturizer",
           "DistanceFeaturizer"]
