"""Geometric collective variables declared in the config, as one torch module.

``[system_options.cvs]`` names CVs of five kinds (units in brackets)::

    x  = { kind = "position", atom = 12, axis = 0 }                 # [angstrom]
    d  = { kind = "distance", atoms = [12, 8] }                      # [angstrom]
    t  = { kind = "angle", atoms = [0, 1, 2] }                       # [radian], at atom 1
    p  = { kind = "dihedral", atoms = [4, 6, 8, 14] }                # [radian], periodic 2 pi
    n  = { kind = "coordination", group_a = [12], group_b = [8, 9], r0 = 3.0, n = 6, m = 12 }

Every vector between two atoms is taken by the minimum image of the cell on
its periodic axes (fractional components wrapped to [-1/2, 1/2): exact for
orthorhombic cells and for separations shorter than half the narrowest
width), so a CV does not jump when an atom crosses the cell boundary.
``position`` is the raw Cartesian coordinate (ASE's MD does not wrap atoms
back into the cell). ``coordination`` is ``sum_{a in A, b in B, a != b} (1 -
(r/r0)^n) / (1 - (r/r0)^m)`` (PLUMED's rational switching function; its
limit ``n/m`` at ``r = r0``). Dihedrals follow the IUPAC sign, in (-pi, pi],
computed with ``atan2`` so gradients are finite except for collinear atoms;
angles with ``atan2(|a x b|, a . b)`` likewise.

:class:`GeometricCVs` maps positions (n, n_atoms, 3) angstrom -> (n, k) and
is TorchScript-compatible; :func:`parse_cvs` validates the config table
(every error names the key).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtcv_ase.pbc import minimum_image
from mtcv_core.config import ConfigError

#: kind -> (required keys, optional keys with defaults, units, period)
KINDS: dict[str, tuple[tuple[str, ...], dict[str, Any], str, float]] = {
    "position": (("atom", "axis"), {}, "angstrom", 0.0),
    "distance": (("atoms",), {}, "angstrom", 0.0),
    "angle": (("atoms",), {}, "radian", 0.0),
    "dihedral": (("atoms",), {}, "radian", 2.0 * math.pi),
    "coordination": (("group_a", "group_b", "r0"), {"n": 6, "m": 12}, "1", 0.0),
}
#: atoms a kind's ``atoms`` list holds
N_ATOMS = {"distance": 2, "angle": 3, "dihedral": 4}
#: a coordination CV needs periodic cell widths of at least this many r0
#: (the switching function is still 0.015 at 2 r0 for n, m = 6, 12)
COORDINATION_WIDTH_R0 = 4.0


@dataclass(frozen=True)
class CVSpec:
    """One validated CV: ``kind``, its ``name``, ``units``, ``period`` (0:
    not periodic) and its parameters (atom indices, r0, ...)."""

    name: str
    kind: str
    params: dict[str, Any]
    units: str
    period: float


def _atom(value: Any, where: str, n_atoms: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{where}: expected an atom index (integer), got {value!r}")
    if not -n_atoms <= int(value) < n_atoms:
        raise ConfigError(f"{where}: atom index {value} out of range for a structure of "
                          f"{n_atoms} atoms (0 .. {n_atoms - 1})")
    return int(value) % n_atoms


def _atoms(value: Any, where: str, n_atoms: int, count: int | None = None) -> list[int]:
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{where}: expected a list of atom indices, got {value!r}")
    if count is not None and len(value) != count:
        raise ConfigError(f"{where}: expected {count} atom indices, got {len(value)}")
    out = [_atom(v, f"{where}[{i}]", n_atoms) for i, v in enumerate(value)]
    if count is not None and len(set(out)) != len(out):
        raise ConfigError(f"{where}: the atoms must differ, got {list(value)!r}")
    return out


def parse_cvs(table: Mapping[str, Any], *, n_atoms: int, cell: np.ndarray, pbc: np.ndarray,
              where: str = "cvs") -> list[CVSpec]:
    """Validate ``[system_options.cvs]`` against a structure of ``n_atoms``
    with ``cell`` (3, 3) angstrom (rows: cell vectors) and ``pbc`` (3,) bool.
    Raises :class:`ConfigError` naming the key."""
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(f"{where}: expected a table of named CVs, e.g. "
                          "{ d = { kind = \"distance\", atoms = [0, 1] } }")
    specs = []
    widths = _perpendicular_widths(cell)
    for name, spec in table.items():
        at = f"{where}.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{at}: expected a table with a 'kind', got {spec!r}")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{at}.kind: unknown CV kind {kind!r}; kinds are {sorted(KINDS)}")
        required, optional, units, period = KINDS[kind]
        allowed = {"kind", *required, *optional}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ConfigError(f"{at}.{unknown[0]}: unknown key of a {kind} CV; "
                              f"keys are {sorted(allowed)}")
        missing = [k for k in required if k not in spec]
        if missing:
            raise ConfigError(f"{at}.{missing[0]}: missing (a {kind} CV needs "
                              f"{list(required)})")
        params: dict[str, Any] = {**optional, **{k: spec[k] for k in spec if k != "kind"}}
        if kind == "position":
            params["atom"] = _atom(params["atom"], f"{at}.atom", n_atoms)
            axis = params["axis"]
            if isinstance(axis, bool) or axis not in (0, 1, 2):
                raise ConfigError(f"{at}.axis: expected 0, 1 or 2 (x, y, z), got {axis!r}")
        elif kind in N_ATOMS:
            params["atoms"] = _atoms(params["atoms"], f"{at}.atoms", n_atoms, N_ATOMS[kind])
        else:
            params["group_a"] = _atoms(params["group_a"], f"{at}.group_a", n_atoms)
            params["group_b"] = _atoms(params["group_b"], f"{at}.group_b", n_atoms)
            r0 = params["r0"]
            if isinstance(r0, bool) or not isinstance(r0, int | float) or not r0 > 0:
                raise ConfigError(f"{at}.r0: expected a distance > 0 (angstrom), got {r0!r}")
            params["r0"] = float(r0)
            for key in ("n", "m"):
                v = params[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"{at}.{key}: expected an integer >= 1, got {v!r}")
            if params["m"] <= params["n"]:
                raise ConfigError(f"{at}.m: expected m > n (the function must decay), got "
                                  f"n = {params['n']}, m = {params['m']}")
            need = COORDINATION_WIDTH_R0 * params["r0"]
            for axis in np.flatnonzero(pbc):
                if widths[axis] < need:
                    raise ConfigError(
                        f"{at}.r0: the cell is periodic along axis {int(axis)} but only "
                        f"{widths[axis]:.3g} angstrom wide; a coordination CV with r0 = "
                        f"{params['r0']:g} needs at least {need:g} ({COORDINATION_WIDTH_R0:g} "
                        "r0) for the minimum image to hold: use a larger cell or a smaller r0")
        specs.append(CVSpec(str(name), kind, params, units, period))
    return specs


def _perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """(3,) widths of the cell perpendicular to each pair of cell vectors
    (inf for a degenerate cell)."""
    cell = np.asarray(cell, float)
    vol = abs(float(np.linalg.det(cell)))
    if vol <= 0:
        return np.full(3, np.inf)
    out = np.empty(3)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        out[i] = vol / np.linalg.norm(np.cross(cell[j], cell[k]))
    return out


class GeometricCVs(torch.nn.Module):
    """The CVs of ``specs`` for one cell: positions (n, n_atoms, 3)
    angstrom -> (n, k) in each CV's units, differentiable, minimum image on
    the periodic axes of ``cell`` (3, 3) angstrom (rows: cell vectors).
    TorchScript-compatible."""

    def __init__(self, specs: Sequence[CVSpec], cell: np.ndarray, pbc: np.ndarray) -> None:
        super().__init__()
        cell = np.asarray(cell, float)
        periodic = np.asarray(pbc, bool) & (np.abs(np.linalg.det(cell)) > 0)
        self.register_buffer("cell", torch.as_tensor(cell, dtype=torch.float64))
        inv = np.linalg.inv(cell) if periodic.any() else np.eye(3)
        self.register_buffer("inv_cell", torch.as_tensor(inv, dtype=torch.float64))
        self.register_buffer("periodic", torch.as_tensor(periodic.astype(np.float64)))
        self.any_periodic = bool(periodic.any())
        kinds = {"position": 0, "distance": 1, "angle": 2, "dihedral": 3, "coordination": 4}
        self.kinds = [kinds[s.kind] for s in specs]
        # per CV: its atoms (padded to 4), and for coordination its pair list
        atoms = np.zeros((len(specs), 4), np.int64)
        axis = np.zeros(len(specs), np.int64)
        r0 = np.ones(len(specs))
        nm = np.ones((len(specs), 2))
        pairs: list[torch.Tensor] = []
        for i, s in enumerate(specs):
            if s.kind == "position":
                atoms[i, 0], axis[i] = s.params["atom"], s.params["axis"]
            elif s.kind in N_ATOMS:
                atoms[i, : N_ATOMS[s.kind]] = s.params["atoms"]
            if s.kind == "coordination":
                r0[i] = s.params["r0"]
                nm[i] = s.params["n"], s.params["m"]
                pa = [(a, b) for a in s.params["group_a"] for b in s.params["group_b"] if a != b]
                pairs.append(torch.as_tensor(np.array(pa, np.int64).reshape(-1, 2)))
            else:
                pairs.append(torch.zeros((0, 2), dtype=torch.int64))
        self.register_buffer("atoms", torch.as_tensor(atoms))
        self.register_buffer("axis", torch.as_tensor(axis))
        self.register_buffer("r0", torch.as_tensor(r0))
        self.register_buffer("nm", torch.as_tensor(nm))
        self.pairs = pairs

    def minimum_image(self, d: torch.Tensor) -> torch.Tensor:
        """Vectors (..., 3) angstrom to their minimum image."""
        if not self.any_periodic:
            return d
        return minimum_image(d, self.cell, self.inv_cell, self.periodic)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for i, kind in enumerate(self.kinds):
            a = self.atoms[i]
            if kind == 0:
                out.append(positions[:, a[0], self.axis[i]])
            elif kind == 1:
                d = self.minimum_image(positions[:, a[1]] - positions[:, a[0]])
                out.append(torch.linalg.vector_norm(d, dim=-1))
            elif kind == 2:
                u = self.minimum_image(positions[:, a[0]] - positions[:, a[1]])
                v = self.minimum_image(positions[:, a[2]] - positions[:, a[1]])
                cross = torch.linalg.vector_norm(torch.linalg.cross(u, v, dim=-1), dim=-1)
                out.append(torch.atan2(cross, (u * v).sum(-1)))
            elif kind == 3:
                b1 = self.minimum_image(positions[:, a[1]] - positions[:, a[0]])
                b2 = self.minimum_image(positions[:, a[2]] - positions[:, a[1]])
                b3 = self.minimum_image(positions[:, a[3]] - positions[:, a[2]])
                n1 = torch.linalg.cross(b1, b2, dim=-1)
                n2 = torch.linalg.cross(b2, b3, dim=-1)
                y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
                out.append(torch.atan2(y, (n1 * n2).sum(-1)))
            else:
                p = self.pairs[i]
                d = self.minimum_image(positions[:, p[:, 1]] - positions[:, p[:, 0]])
                x = torch.linalg.vector_norm(d, dim=-1) / self.r0[i].to(d.dtype)
                n, m = self.nm[i, 0].to(d.dtype), self.nm[i, 1].to(d.dtype)
                near = torch.abs(x - 1.0) < 1e-6
                xs = torch.where(near, torch.full_like(x, 0.5), x)  # keeps gradients finite
                s = (1.0 - xs ** n) / (1.0 - xs ** m)
                # at r = r0 the limit n / m; slope -(n (m - n)) / (2 m) there
                lim = n / m - 0.5 * n * (m - n) / m * (x - 1.0)
                out.append(torch.where(near, lim, s).sum(-1))
        return torch.stack(out, dim=-1)


def wrap(values: np.ndarray, period: float) -> np.ndarray:
    """Values of a periodic CV wrapped to [-period/2, period/2)."""
    return (np.asarray(values, float) + 0.5 * period) % period - 0.5 * period
