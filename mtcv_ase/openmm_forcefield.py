"""OpenMM force fields behind ASE: an OpenMM-backed calculator and a
vectorised numpy evaluator of the same energy, for molecules in vacuum
(used by the alanine plugin and by system ``openmm``).

Force field
-----------
:func:`create_openmm_system` applies force-field XML files in vacuum:
``nonbondedMethod=NoCutoff``, no constraints (``constraints=None``,
``rigidWater=False``: every bond is flexible, so the MD time step must
resolve X-H vibrations, 0.5 fs is safe) and no ``CMMotionRemover``. The
default, :data:`FORCE_FIELD`, is ``amber99sb.xml`` as shipped with OpenMM,
pinned because free energies of alanine dipeptide depend on the force field
noticeably: the project's reference numbers (``SCIENCE.md``: 300 K, 36
umbrella windows along phi, MBAR) were measured with amber99sb, dF(C7ax -
C7eq) = 0.092 eV and barrier 0.376 eV, against 0.167 / 0.469 eV with ff14SB.
:class:`VectorizedForceField` covers harmonic bonds and angles, periodic
torsions and NoCutoff nonbonded forces (Lennard-Jones + Coulomb with
exceptions); any other force is refused (:class:`UnsupportedForceError`).

Units
-----
OpenMM works in kJ/mol and nm; everything here returns eV and angstrom:
``1 kJ/mol = ase.units.kJ / ase.units.mol eV`` and ``1 nm = 10 angstrom``.
Positions are (n, n_atoms, 3) angstrom, energies (n,) eV, forces
(n, n_atoms, 3) eV/angstrom.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes

#: the pinned OpenMM force-field file
FORCE_FIELD = "amber99sb.xml"
#: kJ/mol -> eV
KJMOL_TO_EV = units.kJ / units.mol
#: nm -> angstrom
NM_TO_ANGSTROM = 10.0
#: kJ/mol/nm -> eV/angstrom
FORCE_TO_EV_A = KJMOL_TO_EV / NM_TO_ANGSTROM
#: Coulomb constant 1/(4 pi eps0) in kJ/mol nm / e^2 from the 2018 CODATA
#: values, = 138.93545764438198: OpenMM 8.6's Reference platform gives
#: exactly this for two unit charges 1 nm apart (older OpenMM versions used
#: the rounded 138.935456, a 1e-8 relative difference)
ONE_4PI_EPS0 = 1.602176634e-19 ** 2 * 6.02214076e23 * 1.0e6 / (4.0 * np.pi * 8.8541878128e-12)


def create_openmm_system(topology: Any, forcefield: Sequence[str] = (FORCE_FIELD,)) -> Any:
    """The OpenMM ``System`` of ``topology`` in vacuum with the force-field
    XML files ``forcefield`` (default: the pinned ``amber99sb.xml``, see the
    module docstring): NoCutoff, no constraints, flexible water, no
    centre-of-mass motion remover."""
    from openmm import app

    ff = app.ForceField(*forcefield)
    return ff.createSystem(topology, nonbondedMethod=app.NoCutoff, constraints=None,
                           rigidWater=False, removeCMMotion=False)


def _as_system(system: Any) -> Any:
    """An ``openmm.System`` from a System or its XML serialisation."""
    import openmm as mm

    if isinstance(system, str):
        return mm.XmlSerializer.deserialize(system)
    return system


class OpenMMCalculator(Calculator):
    """ASE calculator backed by an OpenMM ``Context``.

    Energy in eV, forces (n_atoms, 3) in eV/angstrom; ``free_energy`` equals
    ``energy``. The Context is created lazily and is not pickled (the
    calculator pickles as the system XML and the platform name).

    Parameters
    ----------
    system : openmm.System or str
        The OpenMM system (or its XML serialisation); its particle order is
        the order of the ``Atoms``.
    platform : str
        OpenMM platform, ``"Reference"`` (default, double precision) or
        ``"CPU"`` (single precision: energies agree to about 1e-6 relative,
        and it is slower than Reference for 22 atoms: 114 vs 22 us per call).
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]  # type: ignore[misc]

    def __init__(self, system: Any, platform: str = "Reference", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import openmm as mm

        if platform not in ("Reference", "CPU"):
            raise ValueError(f"platform must be 'Reference' or 'CPU', got {platform!r}")
        self.system_xml = system if isinstance(system, str) else mm.XmlSerializer.serialize(
            system)
        self.platform = platform
        self._context: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_context"] = None
        return state

    @property
    def context(self) -> Any:
        """The OpenMM Context (created on first use)."""
        if self._context is None:
            import openmm as mm

            system = mm.XmlSerializer.deserialize(self.system_xml)
            self._context = mm.Context(system, mm.VerletIntegrator(0.001),
                                       mm.Platform.getPlatformByName(self.platform))
        return self._context

    def evaluate(self, positions: np.ndarray) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (n_atoms, 3) eV/angstrom of one
        configuration (n_atoms, 3) angstrom."""
        ctx = self.context
        ctx.setPositions(np.asarray(positions, float) / NM_TO_ANGSTROM)
        state = ctx.getState(getEnergy=True, getForces=True)
        e = state.getPotentialEnergy().value_in_unit_system(_md_unit_system())
        f = np.asarray(state.getForces(asNumpy=True)._value, float)
        return float(e) * KJMOL_TO_EV, f * FORCE_TO_EV_A

    def calculate(self, atoms: Any = None, properties: Sequence[str] = ("energy", "forces"),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        e, f = self.evaluate(self.atoms.positions)
        self.results = {"energy": e, "free_energy": e, "forces": f}


def _md_unit_system() -> Any:
    from openmm import unit

    return unit.md_unit_system


class UnsupportedForceError(TypeError):
    """The OpenMM System holds something the vectorised evaluator does not
    reproduce."""


class VectorizedForceField:
    """Energy and forces of a flexible, vacuum, non-periodic OpenMM system
    of harmonic bonds and angles, periodic torsions and NoCutoff
    Lennard-Jones + Coulomb, for many configurations at once (numpy,
    float64; matches OpenMM's Reference platform to round-off).

    How it is fast
    --------------
    Every geometric vector the terms need (bond, pair, angle-arm and
    torsion-arm vectors) is a difference of two atom positions, so all of
    them come from one gather ``X[to] - X[from]`` into an array of layout
    (n_vectors, 3, n_frames) (frames innermost, so each component of each
    term type is a block of contiguous rows), and all forces go back with
    one sparse product by the (n_atoms, n_vectors) incidence matrix of
    +-1. In between, every term is elementwise numpy on (n_terms, n_frames)
    arrays written into preallocated, per-thread scratch buffers: fresh
    multi-megabyte temporaries on every call would cost more in page faults
    than the arithmetic (measured: 2x). Frames are processed in chunks of
    :attr:`chunk_size` to bound the scratch memory (about 50 kB per frame
    for alanine dipeptide).

    Build with :meth:`from_openmm`; call with positions (n, n_atoms, 3)
    angstrom (any leading shape) -> energy (n,) eV, forces (n, n_atoms, 3)
    eV/angstrom. Internally kJ/mol and nm, as OpenMM. Thread-safe;
    picklable (scratch buffers are not pickled).
    """

    #: frames per chunk of work (bounds the scratch memory)
    chunk_size: int = 512
    _N_SCALAR = 12
    _N_VECTOR = 3

    def __init__(self, n_atoms: int, bonds: tuple[np.ndarray, ...],
                 angles: tuple[np.ndarray, ...], torsions: tuple[Any, ...],
                 pairs: tuple[np.ndarray, ...]) -> None:
        import scipy.sparse

        self.n_atoms = int(n_atoms)
        # bonds: i, j (B,), r0 nm, k kJ/mol/nm^2
        bi, bj, b_r0, b_k = bonds
        # angles: i, j (vertex), k (A,), theta0 rad, k kJ/mol/rad^2
        ai, aj, ak, a_t0, a_k = angles
        # torsions: unique quads (T, 4), Fourier coefficients c[t, m] and
        # s[t, m] of cos / sin((m + 1) phi), constant e0 kJ/mol
        quads, t_c, t_s, self.t_e0 = torsions
        # pairs: i, j (P,), A = 4 eps sigma^12, B = 4 eps sigma^6, C = k_e qq
        pi, pj, p_a, p_b, p_c = pairs
        self.n_bonds, self.n_angles = len(bi), len(ai)
        self.n_torsions, self.n_pairs = len(quads), len(pi)
        # parameters as (n_terms, 1) columns against (n_terms, n_frames) blocks
        col = lambda a: np.ascontiguousarray(np.asarray(a, float).reshape(-1, 1))  # noqa: E731
        self.b_r0, self.b_k = col(b_r0), col(b_k)
        self.a_t0, self.a_k = col(a_t0), col(a_k)
        self.p_a, self.p_b, self.p_c = col(p_a), col(p_b), col(p_c)
        self.p_b6 = 6.0 * self.p_b
        # per periodicity m + 1 with a non-zero coefficient: (m, c, s, (m+1) c, (m+1) s)
        t_c, t_s = np.asarray(t_c, float), np.asarray(t_s, float)
        self.max_periodicity = t_c.shape[1]
        self.t_terms = [(m, col(t_c[:, m]), col(t_s[:, m]), col((m + 1) * t_c[:, m]),
                         col((m + 1) * t_s[:, m]))
                        for m in range(t_c.shape[1])
                        if np.any(t_c[:, m] != 0) or np.any(t_s[:, m] != 0)]
        q = np.asarray(quads, int).reshape(-1, 4)
        groups = [(bj, bi),            # bond r_j - r_i
                  (pj, pi),            # pair r_j - r_i
                  (ai, aj),            # angle u = r_i - r_j
                  (ak, aj),            # angle v = r_k - r_j
                  (q[:, 0], q[:, 1]),  # torsion F = r_i - r_j
                  (q[:, 1], q[:, 2]),  # torsion G = r_j - r_k
                  (q[:, 3], q[:, 2])]  # torsion H = r_l - r_k
        #: vector k is r[vec_to[k]] - r[vec_from[k]]
        self.vec_to = np.concatenate([np.asarray(g[0], int) for g in groups])
        self.vec_from = np.concatenate([np.asarray(g[1], int) for g in groups])
        n_vec = len(self.vec_to)
        rows = np.concatenate([self.vec_to, self.vec_from])
        vals = np.concatenate([np.ones(n_vec), -np.ones(n_vec)])
        #: (n_atoms, n_vectors) sparse incidence matrix: dE/dx = D @ dE/dvectors
        self.D = scipy.sparse.csr_array(
            (vals, (rows, np.tile(np.arange(n_vec), 2))), shape=(self.n_atoms, n_vec))
        edges = np.cumsum([0] + [len(g[0]) for g in groups])
        self._slices = [slice(int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:],
                                                                   strict=True)]
        self._rows = max(self.n_bonds, self.n_pairs, self.n_angles, self.n_torsions, 1)
        self._vrows = max(self.n_angles, self.n_torsions, 1)
        self.bond_index = np.stack([bi, bj], 1).astype(int)
        self.angle_index = np.stack([ai, aj, ak], 1).astype(int)
        self.torsion_index = q
        self.pair_index = np.stack([pi, pj], 1).astype(int)
        self._local = threading.local()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    # ------------------------------------------------------------ building
    @classmethod
    def from_openmm(cls, system: Any) -> VectorizedForceField:
        """Extract the parameters of an ``openmm.System`` (or its XML).

        Handled: ``HarmonicBondForce``, ``HarmonicAngleForce``,
        ``PeriodicTorsionForce`` and a ``NonbondedForce`` with
        ``NoCutoff``, its exceptions (scaled 1-4 pairs with their own
        chargeProd / sigma / epsilon; excluded pairs are exceptions with
        chargeProd = epsilon = 0 and are dropped). Raises
        :class:`UnsupportedForceError` for any other force (including a
        ``CMMotionRemover``, which changes OpenMM's dynamics), constraints,
        virtual sites, periodic boundaries, parameter offsets or global
        parameters.
        """
        import openmm as mm

        system = _as_system(system)
        n = system.getNumParticles()
        if system.getNumConstraints():
            raise UnsupportedForceError("the system has constraints")
        if any(system.isVirtualSite(i) for i in range(n)):
            raise UnsupportedForceError("the system has virtual sites")
        if system.usesPeriodicBoundaryConditions():
            raise UnsupportedForceError("the system is periodic")
        bonds = angles = torsions = pairs = None
        for force in system.getForces():
            if isinstance(force, mm.HarmonicBondForce) and bonds is None:
                bonds = _bonds(force)
            elif isinstance(force, mm.HarmonicAngleForce) and angles is None:
                angles = _angles(force)
            elif isinstance(force, mm.PeriodicTorsionForce) and torsions is None:
                torsions = _torsions(force)
            elif isinstance(force, mm.NonbondedForce) and pairs is None:
                pairs = _pairs(force, n)
            else:
                raise UnsupportedForceError(
                    f"VectorizedForceField does not handle {type(force).__name__} "
                    "(or a second force of that type)")
        empty_i = np.zeros(0, int)
        empty_f = np.zeros(0)
        return cls(
            n,
            bonds or (empty_i, empty_i, empty_f, empty_f),
            angles or (empty_i, empty_i, empty_i, empty_f, empty_f),
            torsions or (np.zeros((0, 4), int), np.zeros((0, 1)), np.zeros((0, 1)), 0.0),
            pairs or (empty_i, empty_i, empty_f, empty_f, empty_f),
        )

    # ---------------------------------------------------------- evaluation
    def __call__(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """positions (..., n_atoms, 3) angstrom -> energy (...,) eV, forces
        (..., n_atoms, 3) eV/angstrom."""
        x = np.asarray(positions, dtype=np.float64)
        if x.shape[-2:] != (self.n_atoms, 3):
            raise ValueError(f"positions must have shape (..., {self.n_atoms}, 3), "
                             f"got {x.shape}")
        lead = x.shape[:-2]
        x = x.reshape(-1, self.n_atoms, 3)
        nf = x.shape[0]
        energy = np.empty(nf)
        forces = np.empty((nf, self.n_atoms, 3))
        for lo in range(0, nf, self.chunk_size):
            hi = min(nf, lo + self.chunk_size)
            energy[lo:hi] = self._evaluate(x[lo:hi], forces[lo:hi])
        return energy.reshape(lead), forces.reshape(*lead, self.n_atoms, 3)

    def _workspace(self, nf: int) -> _Workspace:
        """This thread's scratch buffers shaped for ``nf`` frames (one flat
        allocation per thread, grown when needed and carved into
        contiguous views, so that chunks of different sizes reuse it)."""
        local = self._local
        mem = getattr(local, "mem", None)
        sizes = (self.n_atoms * 3, len(self.vec_to) * 3, len(self.vec_to) * 3,
                 self._N_SCALAR * self._rows, self._N_VECTOR * self._vrows * 3)
        need = sum(sizes) * nf
        if mem is None or len(mem) < need:
            mem = local.mem = np.empty(max(need, sum(sizes) * min(self.chunk_size, 64)))
            local.views = {}
        ws = local.views.get(nf)
        if ws is None:
            ws = local.views[nf] = _Workspace(mem, nf, self.n_atoms, len(self.vec_to),
                                              self._rows, self._vrows, self._N_SCALAR,
                                              self._N_VECTOR)
        return ws

    def _evaluate(self, x: np.ndarray, forces_out: np.ndarray) -> np.ndarray:
        """Energy (nf,) eV of positions (nf, n_atoms, 3) angstrom; writes the
        forces (eV/angstrom) into ``forces_out``."""
        nf = x.shape[0]
        ws = self._workspace(nf)
        np.multiply(x.transpose(1, 2, 0), 1.0 / NM_TO_ANGSTROM, out=ws.xa)  # nm
        np.take(ws.xa, self.vec_to, axis=0, out=ws.vec)
        np.take(ws.xa, self.vec_from, axis=0, out=ws.grad)
        ws.vec -= ws.grad
        vec, grad = ws.vec, ws.grad
        sb, sp, su, sv, sf, sg, sh = self._slices
        energy = self._bonds(vec[sb], grad[sb], ws)
        energy += self._pairs(vec[sp], grad[sp], ws)
        energy += self._angles(vec[su], vec[sv], grad[su], grad[sv], ws)
        energy += self._torsions(vec[sf], vec[sg], vec[sh], grad[sf], grad[sg], grad[sh], ws)
        dedx = self.D @ grad.reshape(len(self.vec_to), 3 * nf)   # (n_atoms, 3 nf)
        np.multiply(dedx.reshape(self.n_atoms, 3, nf).transpose(2, 0, 1), -FORCE_TO_EV_A,
                    out=forces_out)
        return energy * KJMOL_TO_EV

    # Each term method takes (n_terms, 3, nf) vectors (nm), writes
    # dE/d(vector) (kJ/mol/nm) into the matching block of ``grad`` and
    # returns the energy (nf,) kJ/mol. ``s[k]`` are (n, nf) scalar and
    # ``v[k]`` (n, 3, nf) vector scratch arrays.
    def _bonds(self, d: np.ndarray, g: np.ndarray, ws: _Workspace) -> np.ndarray:
        n = self.n_bonds
        if not n:
            return np.zeros(ws.nf)
        r, dr, kdr = ws.s(n, 3)
        _dot3(d, d, r, dr)
        np.sqrt(r, out=r)
        np.subtract(r, self.b_r0, out=dr)
        np.multiply(dr, self.b_k, out=kdr)
        np.multiply(kdr, dr, out=dr)
        e = 0.5 * dr.sum(axis=0)
        kdr /= r                                      # dE/dd = k (r - r0) d / r
        np.multiply(d, kdr[:, None], out=g)
        return e

    def _pairs(self, d: np.ndarray, g: np.ndarray, ws: _Workspace) -> np.ndarray:
        n = self.n_pairs
        if not n:
            return np.zeros(ws.nf)
        ir2, ir, ir6, a6, lj = ws.s(n, 5)
        _dot3(d, d, ir2, ir)
        np.reciprocal(ir2, out=ir2)                   # 1/r^2
        np.sqrt(ir2, out=ir)                          # 1/r
        np.multiply(ir2, ir2, out=ir6)
        ir6 *= ir2                                    # 1/r^6
        ir *= self.p_c                                # C/r
        np.multiply(ir6, self.p_a, out=a6)            # A/r^6
        np.subtract(a6, self.p_b, out=lj)
        lj *= ir6
        lj += ir                                      # A/r^12 - B/r^6 + C/r
        e = lj.sum(axis=0)
        # (1/r) dE/dr = -(12 A/r^12 - 6 B/r^6 + C/r) / r^2
        a6 *= -12.0
        a6 += self.p_b6
        a6 *= ir6
        a6 -= ir
        a6 *= ir2
        np.multiply(d, a6[:, None], out=g)
        return e

    def _angles(self, u: np.ndarray, v: np.ndarray, gu: np.ndarray, gv: np.ndarray,
                ws: _Workspace) -> np.ndarray:
        n = self.n_angles
        if not n:
            return np.zeros(ws.nf)
        uu, vv, cos, inv, th, kd = ws.s(n, 6)
        (tmp,) = ws.v(n, 1)
        _dot3(u, u, uu, th)
        _dot3(v, v, vv, th)
        _dot3(u, v, cos, th)
        np.multiply(uu, vv, out=inv)
        np.sqrt(inv, out=inv)
        np.reciprocal(inv, out=inv)                   # 1/(|u||v|)
        cos *= inv
        np.clip(cos, -1.0, 1.0, out=cos)
        np.arccos(cos, out=th)
        th -= self.a_t0
        np.multiply(th, self.a_k, out=kd)             # dE/dtheta
        th *= kd
        e = 0.5 * th.sum(axis=0)
        # dtheta/du = (cos u/|u|^2 - v/(|u||v|)) / sin, likewise for v
        np.multiply(cos, cos, out=th)
        np.subtract(1.0, th, out=th)
        np.sqrt(th, out=th)
        np.maximum(th, 1e-12, out=th)                 # sin(theta)
        kd /= th                                      # w = (dE/dtheta) / sin
        inv *= kd                                     # w / (|u||v|)
        np.divide(cos, uu, out=uu)
        uu *= kd                                      # w cos / |u|^2
        np.divide(cos, vv, out=vv)
        vv *= kd                                      # w cos / |v|^2
        np.multiply(u, uu[:, None], out=gu)
        np.multiply(v, inv[:, None], out=tmp)
        gu -= tmp
        np.multiply(v, vv[:, None], out=gv)
        np.multiply(u, inv[:, None], out=tmp)
        gv -= tmp
        return e

    def _torsions(self, f: np.ndarray, gg: np.ndarray, h: np.ndarray, g_f: np.ndarray,
                  g_g: np.ndarray, g_h: np.ndarray, ws: _Workspace) -> np.ndarray:
        """Periodic torsions ``e0 + sum_m c_m cos(m phi) + s_m sin(m phi)``
        with the IUPAC dihedral phi and the gradients of Blondel & Karplus
        (J. Comput. Chem. 17, 1132 (1996))."""
        n = self.n_torsions
        if not n:
            return np.zeros(ws.nf)
        aa, bb, gn, cos1, sin1, t0, e, de, cm, sm, t1, t2 = ws.s(n, 12)
        a, b, tmp = ws.v(n, 3)
        _cross(f, gg, a, t0)                          # A = F x G
        _cross(h, gg, b, t0)                          # B = H x G
        _dot3(a, a, aa, t0)
        _dot3(b, b, bb, t0)
        _dot3(gg, gg, gn, t0)
        np.sqrt(gn, out=gn)                           # |G|
        _dot3(a, b, cos1, t0)
        _dot3(b, f, sin1, t0)
        np.multiply(aa, bb, out=t0)
        np.sqrt(t0, out=t0)
        np.reciprocal(t0, out=t0)                     # 1/(|A||B|)
        cos1 *= t0                                    # cos(phi)
        sin1 *= t0
        sin1 *= gn
        np.negative(sin1, out=sin1)                   # sin(phi) = -|G| B.F / (|A||B|)
        e.fill(0.0)
        de.fill(0.0)
        # cos(m phi), sin(m phi) by the angle-addition recursion
        cm[...] = cos1
        sm[...] = sin1
        done = 0
        for m, c, s, mc, ms in self.t_terms:
            while done < m:
                np.multiply(cm, cos1, out=t1)
                np.multiply(sm, sin1, out=t2)
                t1 -= t2                              # cos((k+1) phi)
                np.multiply(sm, cos1, out=t2)
                np.multiply(cm, sin1, out=sm)
                sm += t2                              # sin((k+1) phi)
                cm[...] = t1
                done += 1
            np.multiply(cm, c, out=t1)
            e += t1
            np.multiply(sm, s, out=t1)
            e += t1
            np.multiply(cm, ms, out=t1)               # dE/dphi += m (s cos - c sin)
            de += t1
            np.multiply(sm, mc, out=t1)
            de -= t1
        energy = e.sum(axis=0) + self.t_e0
        # dphi/dF = -|G| A / A^2, dphi/dH = |G| B / B^2,
        # dphi/dG = (F.G) A / (A^2 |G|) - (H.G) B / (B^2 |G|)
        np.divide(de, aa, out=aa)                     # wa = dE/dphi / A^2
        np.divide(de, bb, out=bb)                     # wb = dE/dphi / B^2
        _dot3(f, gg, cos1, t0)                        # F.G
        _dot3(h, gg, sin1, t0)                        # H.G
        np.multiply(gn, aa, out=t0)
        np.negative(t0, out=t0)
        np.multiply(a, t0[:, None], out=g_f)
        np.multiply(gn, bb, out=t0)
        np.multiply(b, t0[:, None], out=g_h)
        cos1 *= aa
        cos1 /= gn
        np.multiply(a, cos1[:, None], out=g_g)
        sin1 *= bb
        sin1 /= gn
        np.multiply(b, sin1[:, None], out=tmp)
        g_g -= tmp
        return energy

    def describe(self) -> dict[str, int]:
        """Term counts."""
        return {"n_atoms": self.n_atoms, "bonds": self.n_bonds, "angles": self.n_angles,
                "torsion_quads": self.n_torsions, "pairs": self.n_pairs,
                "max_periodicity": self.max_periodicity}


class _Workspace:
    """Scratch arrays for a chunk of ``nf`` frames: contiguous views of the
    flat buffer ``mem``."""

    def __init__(self, mem: np.ndarray, nf: int, n_atoms: int, n_vec: int, rows: int,
                 vrows: int, n_scalar: int, n_vector: int) -> None:
        self.nf = nf
        shapes = [(n_atoms, 3, nf), (n_vec, 3, nf), (n_vec, 3, nf), (n_scalar, rows, nf),
                  (n_vector, vrows, 3, nf)]
        views, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            views.append(mem[start:start + size].reshape(shape))
            start += size
        self.xa, self.vec, self.grad, self._s, self._v = views

    def s(self, n: int, k: int) -> list[np.ndarray]:
        """``k`` scalar scratch arrays (n, nf)."""
        return [self._s[i, :n] for i in range(k)]

    def v(self, n: int, k: int) -> list[np.ndarray]:
        """``k`` vector scratch arrays (n, 3, nf)."""
        return [self._v[i, :n] for i in range(k)]


def _dot3(a: np.ndarray, b: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """out = a . b over axis 1 of (n, 3, nf) arrays; ``tmp`` is (n, nf) scratch."""
    np.multiply(a[:, 0], b[:, 0], out=out)
    np.multiply(a[:, 1], b[:, 1], out=tmp)
    out += tmp
    np.multiply(a[:, 2], b[:, 2], out=tmp)
    out += tmp
    return out


def _cross(a: np.ndarray, b: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """out = a x b over axis 1 of (n, 3, nf) arrays; ``tmp`` is (n, nf) scratch."""
    for k, (i, j) in enumerate(((1, 2), (2, 0), (0, 1))):
        np.multiply(a[:, i], b[:, j], out=out[:, k])
        np.multiply(a[:, j], b[:, i], out=tmp)
        out[:, k] -= tmp
    return out


def _check_not_periodic(force: Any, kind: str) -> None:
    if force.usesPeriodicBoundaryConditions():
        raise UnsupportedForceError(f"periodic {kind}")


def _bonds(force: Any) -> tuple[np.ndarray, ...]:
    _check_not_periodic(force, "HarmonicBondForce")
    rows = [force.getBondParameters(k) for k in range(force.getNumBonds())]
    i = np.array([r[0] for r in rows], int)
    j = np.array([r[1] for r in rows], int)
    r0 = np.array([r[2]._value for r in rows], float)
    k = np.array([r[3]._value for r in rows], float)
    return i, j, r0, k


def _angles(force: Any) -> tuple[np.ndarray, ...]:
    _check_not_periodic(force, "HarmonicAngleForce")
    rows = [force.getAngleParameters(k) for k in range(force.getNumAngles())]
    cols = [np.array([r[c] for r in rows], int) for c in range(3)]
    t0 = np.array([r[3]._value for r in rows], float)
    k = np.array([r[4]._value for r in rows], float)
    return (*cols, t0, k)


def _torsions(force: Any) -> tuple[Any, ...]:
    """Group the torsion terms by atom quadruple: ``k (1 + cos(n phi -
    phi0)) = k + k cos(phi0) cos(n phi) + k sin(phi0) sin(n phi)``."""
    _check_not_periodic(force, "PeriodicTorsionForce")
    rows = [force.getTorsionParameters(k) for k in range(force.getNumTorsions())]
    quads: dict[tuple[int, int, int, int], int] = {}
    for r in rows:
        quads.setdefault(tuple(int(v) for v in r[:4]), len(quads))
    max_n = max((int(r[4]) for r in rows), default=1)
    if any(int(r[4]) < 1 for r in rows):
        raise UnsupportedForceError("torsion periodicity < 1")
    c = np.zeros((len(quads), max_n))
    s = np.zeros((len(quads), max_n))
    e0 = 0.0
    for r in rows:
        t, m = quads[tuple(int(v) for v in r[:4])], int(r[4]) - 1
        phase, k = r[5]._value, r[6]._value
        c[t, m] += k * np.cos(phase)
        s[t, m] += k * np.sin(phase)
        e0 += k
    return np.array(list(quads), int).reshape(-1, 4), c, s, e0


def _pairs(force: Any, n: int) -> tuple[np.ndarray, ...]:
    """All interacting pairs i < j with A = 4 eps sigma^12, B = 4 eps
    sigma^6 (kJ/mol nm^12, nm^6) and C = ONE_4PI_EPS0 qq (kJ/mol nm);
    exceptions replace the Lorentz-Berthelot pair parameters."""
    import openmm as mm

    if force.getNonbondedMethod() != mm.NonbondedForce.NoCutoff:
        raise UnsupportedForceError("NonbondedForce must use NoCutoff")
    if force.getNumParticleParameterOffsets() or force.getNumExceptionParameterOffsets():
        raise UnsupportedForceError("NonbondedForce parameter offsets")
    if force.getNumGlobalParameters():
        raise UnsupportedForceError("NonbondedForce global parameters")
    if force.getNumParticles() != n:
        raise UnsupportedForceError("NonbondedForce particle count differs from the system's")
    par = [force.getParticleParameters(k) for k in range(n)]
    q = np.array([p[0]._value for p in par], float)
    sig = np.array([p[1]._value for p in par], float)
    eps = np.array([p[2]._value for p in par], float)
    iu, ju = np.triu_indices(n, 1)
    qq = q[iu] * q[ju]
    sij = 0.5 * (sig[iu] + sig[ju])
    eij = np.sqrt(eps[iu] * eps[ju])
    pos = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(iu, ju, strict=True))}
    for k in range(force.getNumExceptions()):
        a, b, cp, s, e = force.getExceptionParameters(k)
        key = (min(a, b), max(a, b))
        m = pos[key]
        qq[m], sij[m], eij[m] = cp._value, s._value, e._value
    keep = (qq != 0.0) | (eij != 0.0)
    s6 = sij[keep] ** 6
    e4 = 4.0 * eij[keep]
    return (iu[keep], ju[keep], e4 * s6 * s6, e4 * s6, ONE_4PI_EPS0 * qq[keep])


__all__ = ["FORCE_FIELD", "KJMOL_TO_EV", "NM_TO_ANGSTROM", "FORCE_TO_EV_A", "ONE_4PI_EPS0",
           "create_openmm_system", "OpenMMCalculator", "VectorizedForceField",
           "UnsupportedForceError"]
