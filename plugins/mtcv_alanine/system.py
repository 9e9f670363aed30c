"""Alanine dipeptide (ACE-ALA-NME, 22 atoms) in vacuum as an mtcv ``System``.

Force field: ``amber99sb.xml`` through OpenMM (see
:mod:`mtcv_alanine.forcefield` for the settings and why it is pinned); the
ASE calculator is an :class:`~mtcv_alanine.forcefield.OpenMMCalculator`
and the batched fast path a
:class:`~mtcv_alanine.forcefield.VectorizedForceField` of the same energy.

True CVs: the backbone dihedrals ``phi = C(ACE)-N-CA-C`` and ``psi =
N-CA-C-N(NME)`` (IUPAC sign), in RADIANS in (-pi, pi], periodic.

Basins are ellipses in the periodic (phi, psi) plane, see
:data:`BASIN_REGIONS_DEG`. Units: angstrom, eV, eV/angstrom, amu, K,
radians (degrees only where a name says so).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms

from mtcv_alanine.forcefield import FORCE_FIELD, OpenMMCalculator, VectorizedForceField
from mtcv_alanine.structure import ATOMS, BASINS, N_ATOMS, phi_psi_indices, read_pdb
from mtcv_core.interfaces import System

#: Basin regions in the (phi, psi) plane, degrees: ``name -> (phi_c, psi_c,
#: a_phi, a_psi)``. A point is in the basin when ``(dphi / a_phi)^2 +
#: (dpsi / a_psi)^2 < 1``, with ``dphi = phi - phi_c`` and ``dpsi = psi -
#: psi_c`` wrapped to [-180, 180) (so beta's ellipse crosses phi = +-180).
#: The ellipses are centred near amber99sb's own minima, C7eq (-77.5, 54.1),
#: C7ax (60.2, -40.9), beta/C5 (-147.0, 159.1), rather than on the textbook
#: (-83, 73), (70, -70), (-155, 160): with the textbook centres 5 % of 100 K
#: C7ax basin MD fell outside a 40 x 50 degree ellipse. Semi-axes from basin
#: MD (0.5 fs, friction 0.01/fs, 32 walkers x 10 ps per basin): at 50 K and
#: 120 K more than 99.9 % of frames stay in their own basin (the 99.9 %
#: quantiles of |dphi|, |dpsi| at 120 K are C7eq 22, 42; C7ax 16, 38; beta
#: 51, 35 degrees); at 300 K C7eq and beta exchange (their barrier is only
#: ~2 kcal/mol) and 5-9 % of their frames are -1. The ellipses do not
#: overlap (18 % of the plane is labelled) and leave outside the flat
#: C7eq - beta saddle (about (-95, 125)), the alpha_R and alpha_L regions
#: and the C7eq <-> C7ax crossings at phi ~ 0 and phi ~ 120.
BASIN_REGIONS_DEG: dict[str, tuple[float, float, float, float]] = {
    "C7eq": (-80.0, 60.0, 40.0, 60.0),
    "C7ax": (62.0, -45.0, 35.0, 55.0),
    "beta": (-150.0, 160.0, 60.0, 50.0),
}


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped to [-pi, pi)."""
    return (np.asarray(a, float) + np.pi) % (2.0 * np.pi) - np.pi


def dihedrals(positions: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """IUPAC dihedrals, radians in (-pi, pi].

    positions: (n, n_atoms, 3) angstrom; quads: (k, 4) atom indices ->
    (n, k).
    """
    p = np.asarray(positions, float)
    q = np.asarray(quads, int)
    b1 = p[:, q[:, 1]] - p[:, q[:, 0]]
    b2 = p[:, q[:, 2]] - p[:, q[:, 1]]
    b3 = p[:, q[:, 3]] - p[:, q[:, 2]]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.einsum("nkc,nkc->nk", b1, n2)
    x = np.einsum("nkc,nkc->nk", n1, n2)
    return np.arctan2(y, x)


class DihedralCV(torch.nn.Module):
    """Dihedral angles as a differentiable torch module: positions (n,
    n_atoms, 3) angstrom -> (n, k) radians in (-pi, pi].

    ``atan2(|b2| b1 . (b2 x b3), (b1 x b2) . (b2 x b3))``: no arccos, so the
    gradient is finite everywhere except for collinear atoms. TorchScript-
    compatible (:meth:`AlanineDipeptide.true_cv_module` returns it
    scripted).
    """

    def __init__(self, quads: np.ndarray | list[list[int]]) -> None:
        super().__init__()
        self.register_buffer("quads", torch.as_tensor(np.asarray(quads, np.int64)))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        p = positions[:, self.quads]                 # (n, k, 4, 3)
        b1 = p[:, :, 1] - p[:, :, 0]
        b2 = p[:, :, 2] - p[:, :, 1]
        b3 = p[:, :, 3] - p[:, :, 2]
        n1 = torch.linalg.cross(b1, b2, dim=-1)
        n2 = torch.linalg.cross(b2, b3, dim=-1)
        y = torch.linalg.vector_norm(b2, dim=-1) * (b1 * n2).sum(-1)
        x = (n1 * n2).sum(-1)
        return torch.atan2(y, x)


class AlanineDipeptide(System):
    """Alanine dipeptide (ACE-ALA-NME) in vacuum, amber99sb.

    Parameters
    ----------
    temperature_K : float
        Default temperature of the experiments, K.
    platform : str
        OpenMM platform of the ASE calculator: ``"Reference"`` (default)
        or ``"CPU"``.

    Notes
    -----
    Basins ``("C7eq", "C7ax", "beta")`` are the regions of
    :data:`BASIN_REGIONS_DEG`; each basin's structure (:meth:`minimum`) is
    the amber99sb minimum stored as a MODEL of the packaged
    ``data/alanine_dipeptide.pdb`` (see :mod:`mtcv_alanine.structure`),
    polished at first use by an unrestrained OpenMM L-BFGS minimisation
    (Reference platform, deterministic, ~10 ms per basin).

    Pickles without any OpenMM object (Dask ships it to workers): the
    OpenMM System travels as its XML, contexts are created lazily by the
    calculators.
    """

    name: ClassVar[str] = "alanine_dipeptide"
    basins: tuple[str, ...] = BASINS
    true_cv_names: tuple[str, ...] = ("phi", "psi")
    true_cv_units: str = "radian"
    true_cv_periods: tuple[float, ...] = (2.0 * math.pi, 2.0 * math.pi)
    #: chemical symbols in atom order
    symbols: tuple[str, ...] = tuple(el for _, _, el in ATOMS)
    #: (residue, atom name) in atom order
    atom_names: tuple[tuple[str, str], ...] = tuple((r, n) for r, n, _ in ATOMS)
    force_field: str = FORCE_FIELD

    def __init__(self, *, temperature_K: float = 300.0, platform: str = "Reference") -> None:
        self.temperature_K = float(temperature_K)
        self.platform = platform
        self.regions_deg = dict(BASIN_REGIONS_DEG)
        phi, psi = phi_psi_indices()
        #: (2, 4) atom indices of phi and psi (found by name)
        self.cv_quads = np.array([phi, psi], int)
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------ pickling
    _PICKLED_CACHE = ("system_xml", "ff", "minima", "masses")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {k: v for k, v in self._cache.items() if k in self._PICKLED_CACHE}
        return state

    # ---------------------------------------------------------- force field
    def _build(self) -> None:
        """Topology, OpenMM System, evaluator, masses and polished minima."""
        if "minima" in self._cache:
            return
        import openmm as mm

        from mtcv_alanine.forcefield import create_openmm_system
        from mtcv_alanine.structure import minimise

        top, models = read_pdb()
        if len(models) != len(BASINS):
            raise ValueError(f"packaged PDB has {len(models)} models, expected {len(BASINS)}")
        system = create_openmm_system(top)
        self._cache["system_xml"] = mm.XmlSerializer.serialize(system)
        self._cache["ff"] = VectorizedForceField.from_openmm(system)
        self._cache["masses"] = np.array(
            [system.getParticleMass(i)._value for i in range(system.getNumParticles())])
        self._cache["minima"] = {b: minimise(system, models[k], tolerance=1e-5)
                                 for k, b in enumerate(BASINS)}

    @property
    def system_xml(self) -> str:
        """The OpenMM System (amber99sb, vacuum) as XML."""
        self._build()
        return self._cache["system_xml"]

    @property
    def openmm_system(self) -> Any:
        """A fresh ``openmm.System`` of the pinned force field."""
        import openmm as mm

        return mm.XmlSerializer.deserialize(self.system_xml)

    @property
    def force_field_evaluator(self) -> VectorizedForceField:
        """The vectorised evaluator behind :meth:`energy_and_forces`."""
        self._build()
        return self._cache["ff"]

    @property
    def masses(self) -> np.ndarray:
        """(22,) amu, the force field's particle masses."""
        self._build()
        return self._cache["masses"].copy()

    def minimum(self, basin: str | int | None = None) -> np.ndarray:
        """(22, 3) angstrom: the amber99sb minimum of ``basin``."""
        self._build()
        return self._cache["minima"][self.basin_name(basin)].copy()

    def calculator(self) -> OpenMMCalculator:
        """A new OpenMM-backed ASE calculator of this system."""
        return OpenMMCalculator(self.system_xml, platform=self.platform)

    # ---------------------------------------------------------------- ASE
    def make_atoms(self, basin: str | int | None = None) -> Atoms:
        """``Atoms`` at the minimum of ``basin`` (the first basin when
        ``None``), masses from the force field, with an
        :class:`OpenMMCalculator` attached."""
        atoms = Atoms(symbols=list(self.symbols), positions=self.minimum(basin),
                      masses=self.masses, pbc=False)
        atoms.calc = self.calculator()
        return atoms

    def start_positions(self, basin: str | int | None, n: int, *, rng: np.random.Generator,
                        split: str = "train") -> np.ndarray:
        """(n, 22, 3) angstrom: ``n`` copies of the basin's minimum, for
        either split (``rng`` is unused). Train and test trajectories differ
        by their MD random streams (and, in the paper's protocol, by
        temperature), not by their starting points."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return np.repeat(self.minimum(basin)[None], n, axis=0)

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised amber99sb: positions (n, 22, 3) angstrom (any leading
        shape) -> energy (n,) eV, forces (n, 22, 3) eV/angstrom; equal to
        OpenMM's Reference platform to ~1e-14 relative."""
        return self.force_field_evaluator(positions)

    # ------------------------------------------------------------ true CVs
    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        """(n, 22, 3) angstrom -> (n, 2): (phi, psi) radians in (-pi, pi]."""
        p = np.asarray(positions, float)
        return dihedrals(p.reshape(-1, N_ATOMS, 3), self.cv_quads)

    def true_cv_module(self) -> torch.nn.Module:
        """(phi, psi) as a TorchScript module: positions (n, 22, 3) angstrom
        -> (n, 2) radians in (-pi, pi], differentiable. The values are
        periodic: a restraint on them needs minimum-image differences."""
        return torch.jit.script(DihedralCV(self.cv_quads))

    def basin_index_cv(self, cv: np.ndarray) -> np.ndarray:
        """(n, 2) (phi, psi) radians -> (n,) int basin label, -1 outside
        every region of :data:`BASIN_REGIONS_DEG`."""
        cv = np.asarray(cv, float).reshape(-1, 2)
        label = np.full(len(cv), -1, int)
        for k, basin in enumerate(self.basins):
            phi_c, psi_c, a_phi, a_psi = (math.radians(v) for v in self.regions_deg[basin])
            dphi = wrap_angle(cv[:, 0] - phi_c) / a_phi
            dpsi = wrap_angle(cv[:, 1] - psi_c) / a_psi
            label[(dphi * dphi + dpsi * dpsi < 1.0) & (label < 0)] = k
        return label

    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        """(n, 22, 3) angstrom -> (n,) int basin label or -1 (see
        :meth:`basin_index_cv`)."""
        return self.basin_index_cv(self.true_cv(positions))

    def reference_transitions(self, temperature_K: float) -> list[dict[str, Any]]:
        """None here: the alanine reference is umbrella sampling along phi,
        computed by the pipeline (the reference umbrella stage)."""
        return []

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        minima = {}
        ff = self.force_field_evaluator
        for b in self.basins:
            x = self.minimum(b)
            phi, psi = np.degrees(self.true_cv(x[None])[0])
            minima[b] = {"phi_deg": float(phi), "psi_deg": float(psi),
                         "energy_eV": float(ff(x)[0])}
        d.update({
            "force_field": self.force_field,
            "force_field_settings": "OpenMM, vacuum, NoCutoff, no constraints, flexible "
                                    "water, no CMMotionRemover",
            "n_atoms": N_ATOMS,
            "formula": "C6H12N2O2",
            "atoms": [f"{r}:{n}" for r, n in self.atom_names],
            "true_cv_units": "radian",
            "true_cv_definition": {"phi": "C(ACE)-N-CA-C", "psi": "N-CA-C-N(NME)",
                                   "atom_indices": self.cv_quads.tolist()},
            "basin_regions_deg": {b: dict(zip(("phi_c", "psi_c", "a_phi", "a_psi"), v,
                                              strict=True))
                                  for b, v in self.regions_deg.items()},
            "basin_minima": minima,
            "platform": self.platform,
            "terms": ff.describe(),
        })
        return d


__all__ = ["AlanineDipeptide", "BASIN_REGIONS_DEG", "DihedralCV", "dihedrals", "wrap_angle"]
