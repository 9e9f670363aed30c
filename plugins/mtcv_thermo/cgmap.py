"""Coarse-graining maps (linear, and nonlinear with the instantaneous
collective force) and the mapped (CG) dataset.

A linear CG map sends fine-grained (atomistic) positions ``r`` (n_atoms, 3)
to CG site positions ``R = M(r)`` (n_sites, 3). On flattened Cartesian
coordinates it is a matrix ``C`` of shape (3 n_sites, 3 n_atoms). Its force
map ``D`` (same shape) sends atomic forces to CG forces; it is *consistent*
when, on the active CG coordinates,

    D C^T = I,

which makes the conditional mean of the mapped force the mean force,
``<D f | R> = -grad_R A(R, T)`` (Ciccotti, Kapral and Vanden-Eijnden; for a
constant ``D`` the divergence term of the general formula vanishes).
Examples: a slice map (``D = C``), a centre-of-mass map (``C`` = mass
fractions, ``D`` = 1 on the site's atoms: the total force on the group).

Some CG coordinates may be *inactive* (``site_mask`` False): their rows of
``C`` and ``D`` are zero, their mapped value is 0 and they carry no force,
as a 1D CG coordinate stored in the ``x`` component of a site (the exact
model of :mod:`mtcv_thermo.exact_model`).

A NONLINEAR map ``R = xi(r)`` (:class:`NonlinearCGMap`, e.g. radii or
angles) has no constant force map. Its mapped force is the instantaneous
collective force (den Otter; Ciccotti, Kapral and Vanden-Eijnden), for CG
coordinate I

    f_I(r) = b_I . F(r) + kT div b_I(r),    F = -grad u,

with any vector fields b_I satisfying ``b_I . grad xi_J = delta_IJ``; the
map uses ``b = G^{-1} J`` (``J = d xi / d r``, ``G = J J^T``), which is
``grad xi_I / |grad xi_I|^2`` when the gradients are orthogonal. Its
conditional mean is the mean force, ``<f | R> = -grad_R A(R, T)`` for
``A = -kT ln Int delta(xi(r) - R) exp(-u/kT) dr`` (Lebesgue measures in r
and R, so ``exp(-A/kT)`` is the density of R in flat R coordinates, what
unbiased MD samples and CG MD in R reproduces). No masses enter: A is a
configurational free energy (for constant Cartesian masses the momentum
integral factorises). For a linear map b is the default consistent force
map above and div b = 0. Example: a radius r = |x| in the plane has
b = r_hat, div b = 1/r, so A = <-du/dr + kT/r> integrated, the -kT ln r of
the polar Jacobian included.

The mapped dataset (:func:`make_cg_dataset`, :func:`validate_cg_dataset`) is
an ``xarray.Dataset`` with one frame per row:

=================  =====================  ===============  ==============================
variable           dims                   units            meaning
=================  =====================  ===============  ==============================
``coordinates``    frame, site, spatial   angstrom         CG positions R = M(r)
``forces``         frame, site, spatial   eV/angstrom      mapped forces D f(r) (or f_I)
``energy``         frame                  eV               fine-grained potential u(r)
``temperature``    frame                  K                temperature of the sample
``site_mask``      site, spatial          1                1 = active CG coordinate
=================  =====================  ===============  ==============================
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_core.schema import SCHEMA_ATTR, SchemaError, provenance, schema_problems
from mtcv_thermo.constants import KB

CG_SCHEMA = "mtcv.cg_frames/1"

#: name -> (dims, units, long_name) of the variables of a CG dataset
CG_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "coordinates": (("frame", "site", "spatial"), "angstrom", "CG site positions R = M(r)"),
    "forces": (("frame", "site", "spatial"), "eV/angstrom", "mapped forces D f(r)"),
    "energy": (("frame",), "eV", "fine-grained potential energy u(r)"),
    "temperature": (("frame",), "K", "temperature of the sample"),
    "site_mask": (("site", "spatial"), "1", "active CG coordinate (1) or inactive (0)"),
}


class CGMap:
    """A linear coarse-graining map of positions and forces.

    Parameters
    ----------
    coord_matrix : (3 n_sites, 3 n_atoms) array
        ``C``: flattened site coordinates ``R.ravel() = C @ r.ravel()``.
    force_matrix : (3 n_sites, 3 n_atoms) array, optional
        ``D``: mapped forces ``F.ravel() = D @ f.ravel()``. Default: the
        minimum-norm consistent choice ``(C_a C_a^T)^{-1} C_a`` on the
        active rows (equal to ``C`` for a slice map).
    site_mask : (n_sites, 3) bool, optional
        Active CG coordinates (default: the rows of ``C`` that are not zero).
    name : str
        A short description, stored in the dataset attributes.

    Raises
    ------
    ValueError
        If shapes disagree, an inactive row is not zero, an active row of
        ``C`` is zero, or ``D C^T != I`` on the active coordinates.
    """

    def __init__(self, coord_matrix: np.ndarray, force_matrix: np.ndarray | None = None, *,
                 site_mask: np.ndarray | None = None, name: str = "linear") -> None:
        c = np.asarray(coord_matrix, dtype=np.float64)
        if c.ndim != 2 or c.shape[0] % 3 or c.shape[1] % 3 or c.size == 0:
            raise ValueError(f"coord_matrix: expected shape (3 n_sites, 3 n_atoms), got {c.shape}")
        self.n_sites, self.n_atoms = c.shape[0] // 3, c.shape[1] // 3
        if site_mask is None:
            mask = np.abs(c).sum(axis=1).reshape(self.n_sites, 3) > 0
        else:
            mask = np.asarray(site_mask, dtype=bool)
            if mask.shape != (self.n_sites, 3):
                raise ValueError(f"site_mask: expected shape ({self.n_sites}, 3), "
                                 f"got {mask.shape}")
        active = mask.ravel()
        if not active.any():
            raise ValueError("site_mask: no active CG coordinate")
        if np.abs(c[~active]).max(initial=0.0) > 0:
            raise ValueError("coord_matrix: rows of inactive CG coordinates must be zero")
        if (np.abs(c[active]).sum(axis=1) == 0).any():
            raise ValueError("coord_matrix: an active CG coordinate has an all-zero row")
        if force_matrix is None:
            d = np.zeros_like(c)
            ca = c[active]
            d[active] = np.linalg.solve(ca @ ca.T, ca)
        else:
            d = np.asarray(force_matrix, dtype=np.float64)
            if d.shape != c.shape:
                raise ValueError(f"force_matrix: expected shape {c.shape} (as coord_matrix), "
                                 f"got {d.shape}")
            if np.abs(d[~active]).max(initial=0.0) > 0:
                raise ValueError("force_matrix: rows of inactive CG coordinates must be zero")
        gram = d[active] @ c[active].T
        if not np.allclose(gram, np.eye(int(active.sum())), atol=1e-8):
            raise ValueError("force_matrix: not consistent with coord_matrix (D C^T != I on the "
                             "active CG coordinates), so <D f | R> would not be the mean force")
        self.coord_matrix, self.force_matrix = c, d
        self.site_mask = mask
        self.name = str(name)

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_atom_weights(cls, weights: np.ndarray, force_weights: np.ndarray | None = None,
                          *, name: str = "atom_weights") -> CGMap:
        """A map acting on whole atoms: ``R_I = sum_i w_Ii r_i`` (same weights
        for x, y, z), ``F_I = sum_i d_Ii f_i``. weights: (n_sites, n_atoms)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2:
            raise ValueError(f"weights: expected shape (n_sites, n_atoms), got {w.shape}")
        d = None if force_weights is None else np.kron(np.asarray(force_weights, float),
                                                      np.eye(3))
        return cls(np.kron(w, np.eye(3)), d, name=name)

    @classmethod
    def slice(cls, atom_indices: Sequence[int], n_atoms: int) -> CGMap:
        """Keep the atoms ``atom_indices`` as sites (their forces unchanged)."""
        idx = [int(i) for i in atom_indices]
        if not idx or min(idx) < 0 or max(idx) >= n_atoms:
            raise ValueError(f"atom_indices: expected indices in [0, {n_atoms}), got {idx}")
        w = np.zeros((len(idx), n_atoms))
        w[np.arange(len(idx)), idx] = 1.0
        return cls.from_atom_weights(w, w, name=f"slice{idx}")

    @classmethod
    def center_of_mass(cls, groups: Sequence[Sequence[int]], masses: Sequence[float]) -> CGMap:
        """One site per group at its centre of mass; the mapped force is the
        total force on the group (consistent: sum_i 1 * m_i / M = 1).

        groups: disjoint lists of atom indices; masses: (n_atoms,) amu.
        """
        m = np.asarray(masses, dtype=np.float64)
        if m.ndim != 1 or (m <= 0).any():
            raise ValueError("masses: expected a 1D array of positive masses (amu)")
        w = np.zeros((len(groups), len(m)))
        d = np.zeros_like(w)
        seen: set[int] = set()
        for s, group in enumerate(groups):
            g = [int(i) for i in group]
            if not g or min(g) < 0 or max(g) >= len(m):
                raise ValueError(f"groups[{s}]: expected atom indices in [0, {len(m)}), got {g}")
            if seen & set(g):
                raise ValueError(f"groups[{s}]: groups must be disjoint")
            seen |= set(g)
            w[s, g] = m[g] / m[g].sum()
            d[s, g] = 1.0
        return cls.from_atom_weights(w, d, name="center_of_mass")

    @classmethod
    def select_coordinates(cls, coordinates: Sequence[tuple[int, int]], n_atoms: int) -> CGMap:
        """Site ``s`` holds the single Cartesian coordinate ``coordinates[s] =
        (atom, axis)`` in its x component; its y and z are inactive."""
        coords = [(int(a), int(k)) for a, k in coordinates]
        c = np.zeros((3 * len(coords), 3 * n_atoms))
        for s, (a, k) in enumerate(coords):
            if not (0 <= a < n_atoms and 0 <= k < 3):
                raise ValueError(f"coordinates[{s}]: expected (atom < {n_atoms}, axis < 3), "
                                 f"got {(a, k)}")
            c[3 * s, 3 * a + k] = 1.0
        mask = np.zeros((len(coords), 3), bool)
        mask[:, 0] = True
        return cls(c, c, site_mask=mask, name=f"coordinates{coords}")

    # ----------------------------------------------------------------- maps
    def _apply(self, matrix: np.ndarray, values: np.ndarray, what: str) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if v.shape[-2:] != (self.n_atoms, 3):
            raise ValueError(f"{what}: expected shape (..., {self.n_atoms}, 3), got {v.shape}")
        flat = v.reshape(*v.shape[:-2], 3 * self.n_atoms)
        return (flat @ matrix.T).reshape(*v.shape[:-2], self.n_sites, 3)

    def map_positions(self, positions: np.ndarray) -> np.ndarray:
        """(..., n_atoms, 3) angstrom -> (..., n_sites, 3) angstrom."""
        return self._apply(self.coord_matrix, positions, "positions")

    def map_forces(self, forces: np.ndarray) -> np.ndarray:
        """(..., n_atoms, 3) eV/angstrom -> (..., n_sites, 3) eV/angstrom."""
        return self._apply(self.force_matrix, forces, "forces")

    def mapped_forces(self, positions: np.ndarray, forces: np.ndarray,
                      temperature: np.ndarray | float) -> np.ndarray:
        """The mapped force of each frame, ``D f`` (the common interface with
        :class:`NonlinearCGMap`; positions and temperature are not needed)."""
        return self.map_forces(forces)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description (matrices included when small)."""
        out: dict[str, Any] = {"name": self.name, "n_atoms": self.n_atoms,
                               "n_sites": self.n_sites,
                               "site_mask": self.site_mask.astype(int).tolist()}
        if self.coord_matrix.size <= 4096:
            out["coord_matrix"] = self.coord_matrix.tolist()
            out["force_matrix"] = self.force_matrix.tolist()
        return out

    def __repr__(self) -> str:
        return (f"CGMap({self.name!r}, n_atoms={self.n_atoms}, n_sites={self.n_sites}, "
                f"active={int(self.site_mask.sum())})")


class NonlinearCGMap:
    """A differentiable (nonlinear) CG map ``R = xi(r)`` and its instantaneous
    collective force (module docstring), by torch autograd.

    Parameters
    ----------
    function : callable
        torch, float64: positions (n, n_atoms, 3) angstrom -> (n, n_cv) CG
        coordinates. Row-wise (frame i's output depends on frame i only) and
        twice differentiable where it is evaluated; a TorchScript module
        works (e.g. :meth:`mtcv_systems.embedded5d.Embedded5DSystem.true_cv_module`).
    n_atoms : int
        Atoms of the fine-grained configuration.
    n_cv : int
        Number of CG coordinates. They fill the flattened CG site positions
        in order: ``R.ravel()[:n_cv] = xi`` with ``ceil(n_cv / 3)`` sites;
        the remaining components are inactive (``site_mask`` False, zero).
    dof_mask : (n_atoms, 3) bool, optional
        The Cartesian coordinates that move (default all). Fixed ones (ASE
        ``FixCartesian``) are not part of configuration space: gradients,
        ``G`` and the divergence are taken over the moving ones only.
    require_orthogonal : bool
        Raise unless the gradients of the CG coordinates are mutually
        orthogonal (then ``b_I = grad xi_I / |grad xi_I|^2``, den Otter's
        form). Not needed for correctness: ``b = G^{-1} J`` is valid for any
        map whose gradients are linearly independent.
    orthogonality_tol : float
        Largest allowed |cos| between two gradients when ``require_orthogonal``.
    rank_tol : float
        Smallest allowed ratio of the extreme eigenvalues of ``G`` (linearly
        independent gradients).
    name : str
        A short description, stored in the dataset attributes.
    chunk : int
        Frames per autograd pass.

    Raises
    ------
    ValueError
        On construction for bad sizes or masks; when mapping, naming the
        first offending frame: a wrong output shape, non-finite values or
        gradients, a CG coordinate that does not depend on the moving
        coordinates, linearly dependent gradients, or (optionally)
        non-orthogonal ones.
    """

    def __init__(self, function: Any, n_atoms: int, n_cv: int, *,
                 dof_mask: np.ndarray | None = None, require_orthogonal: bool = False,
                 orthogonality_tol: float = 1e-8, rank_tol: float = 1e-10,
                 name: str = "nonlinear", chunk: int = 4096) -> None:
        if not callable(function):
            raise ValueError(f"function: expected a callable positions -> CG coordinates, "
                             f"got {function!r}")
        n_atoms, n_cv = int(n_atoms), int(n_cv)
        if n_atoms < 1 or n_cv < 1:
            raise ValueError(f"n_atoms and n_cv must be >= 1, got {n_atoms}, {n_cv}")
        mask = (np.ones((n_atoms, 3), bool) if dof_mask is None
                else np.asarray(dof_mask, dtype=bool))
        if mask.shape != (n_atoms, 3):
            raise ValueError(f"dof_mask: expected shape ({n_atoms}, 3), got {mask.shape}")
        n_dof = int(mask.sum())
        if n_cv > n_dof:
            raise ValueError(f"n_cv: {n_cv} CG coordinates of {n_dof} moving coordinates "
                             f"cannot have linearly independent gradients")
        if chunk < 1:
            raise ValueError(f"chunk: must be >= 1, got {chunk}")
        self.function = function
        self.n_atoms, self.n_cv = n_atoms, n_cv
        self.n_sites = -(-n_cv // 3)
        site = np.zeros(3 * self.n_sites, bool)
        site[:n_cv] = True
        self.site_mask = site.reshape(self.n_sites, 3)
        self.dof_mask = mask
        self.active_dofs = np.flatnonzero(mask.ravel())
        self.require_orthogonal = bool(require_orthogonal)
        self.orthogonality_tol = float(orthogonality_tol)
        self.rank_tol = float(rank_tol)
        self.name = str(name)
        self.chunk = int(chunk)

    # ----------------------------------------------------------------- helpers
    def _frames(self, values: np.ndarray, what: str) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 3 or v.shape[1:] != (self.n_atoms, 3):
            raise ValueError(f"{what}: expected shape (n, {self.n_atoms}, 3), got {v.shape}")
        return v

    def _to_sites(self, xi: np.ndarray) -> np.ndarray:
        out = np.zeros((len(xi), 3 * self.n_sites))
        out[:, :self.n_cv] = xi
        return out.reshape(len(xi), self.n_sites, 3)

    def _evaluate(self, r: torch.Tensor, first: int) -> torch.Tensor:
        xi = self.function(r)
        if not isinstance(xi, torch.Tensor) or tuple(xi.shape) != (r.shape[0], self.n_cv):
            shape = tuple(xi.shape) if isinstance(xi, torch.Tensor) else type(xi).__name__
            raise ValueError(f"NonlinearCGMap {self.name!r}: function must return a tensor of "
                             f"shape (n, {self.n_cv}) for positions (n, {self.n_atoms}, 3), "
                             f"got {shape}")
        bad = ~torch.isfinite(xi).all(dim=1)
        if bool(bad.any()):
            raise ValueError(f"NonlinearCGMap {self.name!r}: non-finite CG coordinates at "
                             f"frame {first + int(torch.nonzero(bad)[0])}")
        return xi

    def _jacobian(self, r: torch.Tensor, xi: torch.Tensor, first: int) -> torch.Tensor:
        """(n, n_cv, n_moving) d xi / d r on the moving coordinates, graph kept."""
        if not xi.requires_grad:
            raise ValueError(f"NonlinearCGMap {self.name!r}: the CG coordinates do not depend "
                             f"on the positions (no autograd graph); use torch operations")
        rows = []
        for i in range(self.n_cv):
            (g,) = torch.autograd.grad(xi[:, i].sum(), r, create_graph=True, allow_unused=True)
            if g is None:
                raise ValueError(f"NonlinearCGMap {self.name!r}: CG coordinate {i} does not "
                                 f"depend on the positions")
            rows.append(g.reshape(r.shape[0], -1)[:, self.active_dofs])
        jac = torch.stack(rows, 1)
        bad = ~torch.isfinite(jac).all(dim=(1, 2))
        if bool(bad.any()):
            raise ValueError(f"NonlinearCGMap {self.name!r}: non-finite gradient of the CG "
                             f"coordinates at frame {first + int(torch.nonzero(bad)[0])}")
        return jac

    def _check_gram(self, gram: torch.Tensor, first: int) -> None:
        g = gram.detach()
        diag = torch.diagonal(g, dim1=1, dim2=2)
        zero = (diag <= 0).any(dim=1)
        if bool(zero.any()):
            k = int(torch.nonzero(zero)[0])
            i = int(torch.nonzero(diag[k] <= 0)[0])
            raise ValueError(f"NonlinearCGMap {self.name!r}: the gradient of CG coordinate {i} "
                             f"vanishes on the moving coordinates at frame {first + k}")
        norm = torch.sqrt(diag)
        cos = g / (norm[:, :, None] * norm[:, None, :])
        eig = torch.linalg.eigvalsh(cos)
        dependent = eig[:, 0] < self.rank_tol * eig[:, -1]
        if bool(dependent.any()):
            k = int(torch.nonzero(dependent)[0])
            raise ValueError(f"NonlinearCGMap {self.name!r}: the gradients of the CG "
                             f"coordinates are linearly dependent at frame {first + k} "
                             f"(eigenvalues of their normalised Gram matrix "
                             f"{eig[k].tolist()}); no force map exists there")
        if self.require_orthogonal and self.n_cv > 1:
            off = (cos - torch.eye(self.n_cv, dtype=cos.dtype)).abs().amax(dim=(1, 2))
            bad = off > self.orthogonality_tol
            if bool(bad.any()):
                k = int(torch.nonzero(bad)[0])
                raise ValueError(f"NonlinearCGMap {self.name!r}: require_orthogonal, but the "
                                 f"gradients of the CG coordinates are not orthogonal at frame "
                                 f"{first + k} (largest |cos| {float(off[k]):.3g} > "
                                 f"{self.orthogonality_tol:g})")

    # ----------------------------------------------------------------- maps
    def map_positions(self, positions: np.ndarray) -> np.ndarray:
        """(n, n_atoms, 3) angstrom -> (n, n_sites, 3): R = xi(r) (inactive components 0)."""
        pos = self._frames(positions, "positions")
        out = np.zeros((len(pos), self.n_cv))
        with torch.no_grad():
            for start in range(0, len(pos), self.chunk):
                r = torch.as_tensor(pos[start:start + self.chunk])
                out[start:start + len(r)] = self._evaluate(r, start).numpy()
        return self._to_sites(out)

    def collective_force(self, positions: np.ndarray, forces: np.ndarray,
                         temperature: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """The two parts of the instantaneous collective force.

        positions (n, n_atoms, 3) angstrom, forces (n, n_atoms, 3)
        eV/angstrom (F = -grad u) -> ``b . F`` and ``div b`` (1/angstrom), each
        (n, n_cv); the mapped force is ``b . F + k_B T div b``.
        """
        pos = self._frames(positions, "positions")
        frc = self._frames(forces, "forces")
        n = len(pos)
        b_dot_f = np.zeros((n, self.n_cv))
        div = np.zeros((n, self.n_cv))
        for start in range(0, n, self.chunk):
            stop = min(start + self.chunk, n)
            r = torch.as_tensor(pos[start:stop]).clone().requires_grad_(True)
            with torch.enable_grad():
                xi = self._evaluate(r, start)
                jac = self._jacobian(r, xi, start)
                gram = jac @ jac.transpose(1, 2)
                self._check_gram(gram, start)
                b = torch.linalg.solve(gram, jac)           # (m, n_cv, n_moving)
                f = torch.as_tensor(frc[start:stop].reshape(stop - start, -1)[
                    :, self.active_dofs])
                b_dot_f[start:stop] = (b.detach() * f[:, None, :]).sum(-1).numpy()
                if b.requires_grad:
                    d = torch.zeros(stop - start, self.n_cv, dtype=b.dtype)
                    for i in range(self.n_cv):
                        for k, dof in enumerate(self.active_dofs):
                            (g,) = torch.autograd.grad(b[:, i, k].sum(), r, retain_graph=True,
                                                       allow_unused=True)
                            if g is not None:
                                d[:, i] += g.reshape(stop - start, -1)[:, dof]
                    div[start:stop] = d.numpy()
        if not np.isfinite(div).all():
            k = int(np.flatnonzero(~np.isfinite(div).all(axis=1))[0])
            raise ValueError(f"NonlinearCGMap {self.name!r}: non-finite divergence at frame {k} "
                             f"(is the map twice differentiable there?)")
        return b_dot_f, div

    def mapped_forces(self, positions: np.ndarray, forces: np.ndarray,
                      temperature: np.ndarray | float) -> np.ndarray:
        """Instantaneous collective forces ``b . F + k_B T div b``.

        positions (n, n_atoms, 3) angstrom, forces (n, n_atoms, 3)
        eV/angstrom, temperature (n,) K or one value -> (n, n_sites, 3)
        eV/angstrom (inactive components 0).
        """
        pos = self._frames(positions, "positions")
        temp = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(pos),))
        if not np.isfinite(temp).all() or (temp <= 0).any():
            raise ValueError("temperature: must be finite and > 0 K")
        b_dot_f, div = self.collective_force(pos, forces, temp)
        return self._to_sites(b_dot_f + KB * temp[:, None] * div)

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description."""
        return {"name": self.name, "kind": "nonlinear, instantaneous collective force",
                "n_atoms": self.n_atoms, "n_sites": self.n_sites, "n_cv": self.n_cv,
                "site_mask": self.site_mask.astype(int).tolist(),
                "dof_mask": self.dof_mask.astype(int).tolist()}

    def __repr__(self) -> str:
        return (f"NonlinearCGMap({self.name!r}, n_atoms={self.n_atoms}, n_cv={self.n_cv}, "
                f"moving={len(self.active_dofs)})")


def make_cg_dataset(coordinates: np.ndarray, forces: np.ndarray, energy: np.ndarray,
                    temperature: np.ndarray | float, *, site_mask: np.ndarray | None = None,
                    attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Build a validated CG dataset.

    Parameters
    ----------
    coordinates : (n_frames, n_sites, 3) angstrom, CG positions
    forces : (n_frames, n_sites, 3) eV/angstrom, mapped forces
    energy : (n_frames,) eV, instantaneous fine-grained potential energy u
    temperature : (n_frames,) K or one value, > 0
    site_mask : (n_sites, 3) bool, active CG coordinates (default all)
    attrs : extra global attributes (JSON-encoded when not str/number)
    """
    coords = np.asarray(coordinates, dtype=np.float64)
    if coords.ndim != 3 or coords.shape[-1] != 3:
        raise SchemaError(f"coordinates: expected shape (n_frames, n_sites, 3), "
                          f"got {coords.shape}")
    n, n_sites, _ = coords.shape
    frc = np.asarray(forces, dtype=np.float64)
    if frc.shape != coords.shape:
        raise SchemaError(f"forces: expected shape {coords.shape} (as coordinates), "
                          f"got {frc.shape}")
    ene = np.asarray(energy, dtype=np.float64)
    if ene.shape != (n,):
        raise SchemaError(f"energy: expected shape ({n},), got {ene.shape}")
    temp = (np.full(n, float(temperature)) if np.ndim(temperature) == 0
            else np.array(temperature, dtype=np.float64))
    if temp.shape != (n,):
        raise SchemaError(f"temperature: expected shape ({n},) or a scalar, got {temp.shape}")
    mask = (np.ones((n_sites, 3), bool) if site_mask is None
            else np.asarray(site_mask, dtype=bool))
    if mask.shape != (n_sites, 3):
        raise SchemaError(f"site_mask: expected shape ({n_sites}, 3), got {mask.shape}")
    values = {"coordinates": coords, "forces": frc, "energy": ene, "temperature": temp,
              "site_mask": mask.astype(np.int8)}
    data_vars = {name: (dims, values[name], {"units": units, "long_name": long})
                 for name, (dims, units, long) in CG_VARIABLES.items()}
    all_attrs = provenance()
    all_attrs[SCHEMA_ATTR] = CG_SCHEMA
    for key, value in (attrs or {}).items():
        all_attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    ds = xr.Dataset(data_vars, attrs=all_attrs)
    return validate_cg_dataset(ds)


def map_dataset(cg_map: CGMap | NonlinearCGMap, positions: np.ndarray, forces: np.ndarray,
                energy: np.ndarray, temperature: np.ndarray | float,
                attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Map fine-grained frames through ``cg_map`` into a CG dataset.

    positions (n, n_atoms, 3) angstrom, forces (n, n_atoms, 3) eV/angstrom,
    energy (n,) eV, temperature (n,) K or one value. The mapped forces are
    ``D f`` (linear map) or the instantaneous collective forces at each
    frame's temperature (:class:`NonlinearCGMap`).
    """
    extra = {"cg_map": cg_map.describe(), **dict(attrs or {})}
    return make_cg_dataset(cg_map.map_positions(positions),
                           cg_map.mapped_forces(positions, forces, temperature), energy,
                           temperature, site_mask=cg_map.site_mask, attrs=extra)


def validate_cg_dataset(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check ``ds`` against the CG schema.

    Raises
    ------
    mtcv_core.schema.SchemaError (a ValueError)
        Naming ``where``, each offending variable and what was expected:
        missing variables, wrong dims or units, non-finite values,
        non-positive temperatures, an empty dataset or no active coordinate.
    """
    problems = schema_problems(ds, CG_SCHEMA, {
        name: (dims, units, "iufb", "a number")
        for name, (dims, units, _long) in CG_VARIABLES.items()})
    if not problems:
        if ds.sizes["frame"] == 0:
            problems.append("dimension 'frame' is empty: the dataset holds no frames")
        for name in ("coordinates", "forces", "energy", "temperature"):
            bad = ~np.isfinite(ds[name].values)
            if bad.any():
                problems.append(f"variable {name!r} has {int(bad.sum())} non-finite value(s)")
        temp = ds["temperature"].values
        if np.isfinite(temp).all() and (temp <= 0).any():
            problems.append(f"variable 'temperature' must be > 0 K, got min {temp.min()!r} K "
                            f"({int((temp <= 0).sum())} frame(s))")
        if not ds["site_mask"].values.astype(bool).any():
            problems.append("variable 'site_mask' marks no active CG coordinate")
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv CG dataset:\n  - " + "\n  - ".join(problems))
    return ds


__all__ = ["CGMap", "NonlinearCGMap", "CG_SCHEMA", "CG_VARIABLES", "make_cg_dataset", "map_dataset",
           "validate_cg_dataset"]
