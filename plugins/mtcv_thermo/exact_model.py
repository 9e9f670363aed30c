"""The exact test model of thermodynamic free-energy learning (SCIENCE.md §4).

Fine-grained coordinates ``r = (x, y, theta)`` with ``y`` in R^n and
``theta`` in [0, 2 pi)^m, potential energy (eV)::

    V = f(x) + k(x) |y|^2 / 2 - J(x) sum_j cos(theta_j)
    f(x) = a (x^2 - 1)^2,   k(x) = k0 exp(c x),   J(x) = J0 + J1 tanh(x)

CG map ``M(r) = x``. Everything is closed form at every temperature, with
kT = k_B T (eV), kappa = J(x)/kT and I_nu the modified Bessel functions::

    A(x, T)   = f + (n kT/2) ln(k / (2 pi kT)) - m kT ln(2 pi I0(kappa))
    -dA/dx    = -f' - (n kT/2) c + m J' I1/I0
    <V|x>     = f + n kT/2 - m J I1/I0                 = d(beta A)/d beta
    Var(V|x)  = n (kT)^2/2 + m J^2 (1 - (I1/I0)/kappa - (I1/I0)^2)
                                                       = -d^2(beta A)/d beta^2

``A`` is the free energy of the Lebesgue measure on (y, theta); any other
normalisation changes it by an x-independent c(T) (SCIENCE.md's form drops
the 2 pi terms). Exact samples need no MD: x by inverse CDF of the
marginal ``exp(-A/kT)`` on a fine grid, y Gaussian, theta von Mises.

Units and defaults (chosen so that the ln k entropy tilts the double well
strongly with T and both wells stay populated at 210-390 K): x, y in
angstrom, theta in radians, a = 0.05 eV, k0 = 1 eV/angstrom^2,
c = 1 /angstrom, J0 = 0.05 eV, J1 = 0.03 eV, n = 6, m = 4, T = 300 K.

ASE representation
------------------
The ``1 + n + m`` coordinates are the flattened positions of
``ceil((1 + n + m) / 3)`` pseudo-atoms of mass 1 amu: ``positions.ravel()
= (x, y_1..y_n, theta_1..theta_m, padding)``; padding coordinates are
inactive (fixed with ``FixCartesian``, zero force; :attr:`dof_mask`).
The CG site is one pseudo-atom whose x component is ``x``
(:meth:`ThermoExactModel.cg_map`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCartesian
from scipy.special import ive

from mtcv_core.interfaces import System
from mtcv_thermo.cgmap import CGMap, map_dataset
from mtcv_thermo.constants import KB
from mtcv_thermo.models import FreeEnergyModel, check_inputs

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr


def log_i0(z: np.ndarray) -> np.ndarray:
    """ln I0(z), stable for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    return np.log(ive(0, z)) + np.abs(z)


def bessel_ratio(z: np.ndarray) -> np.ndarray:
    """I1(z)/I0(z), stable for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    return ive(1, z) / ive(0, z)


def _check_temperature(temperature_K: Any) -> np.ndarray:
    t = np.asarray(temperature_K, dtype=np.float64)
    if not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"temperature_K: must be finite and > 0 K, got {temperature_K!r}")
    return t


class ThermoExactCalculator(Calculator):
    """ASE calculator of the exact model's fine-grained potential V (eV)."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def __init__(self, model: ThermoExactModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f = self.model.energy_and_forces(self.atoms.get_positions()[None])
        self.results = {"energy": float(e[0]), "forces": f[0]}


class ExactFreeEnergy(FreeEnergyModel):
    """The exact A(x, T) of a :class:`ThermoExactModel` as a torch free-energy
    model (for reference runs: CG MD on the exact free energy, checks of
    the derivative machinery). Same inputs and units as every model."""

    def __init__(self, system: ThermoExactModel) -> None:
        super().__init__(system.cg_map().site_mask, system.temperature_K)
        self.system = system

    def forward(self, positions: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        temperature = check_inputs(positions, temperature, self.n_sites)
        s = self.system
        x = positions[:, 0, 0]
        kT = KB * temperature
        k = s.k0 * torch.exp(s.c * x)
        j = s.J0 + s.J1 * torch.tanh(x)
        kappa = j / kT
        log_i0_t = torch.log(torch.special.i0e(kappa)) + kappa.abs()
        return (s.a * (x**2 - 1) ** 2 + 0.5 * s.n * kT * torch.log(k / (2 * math.pi * kT))
                - s.m * kT * (math.log(2 * math.pi) + log_i0_t))


class ThermoExactModel(System):
    """The exact model as a System plugin (``thermo_exact``); see the module
    docstring for the potential, its closed forms and the ASE layout.

    Parameters (keyword-only)
    -------------------------
    a : float, eV          double-well height of f(x) = a (x^2 - 1)^2
    k0 : float, eV/A^2     stiffness k(x) = k0 exp(c x) of the n harmonic y
    c : float, 1/A         entropic tilt rate of k(x)
    J0, J1 : float, eV     rotor coupling J(x) = J0 + J1 tanh(x), J0 > |J1|
    n, m : int             number of harmonic and rotor coordinates
    temperature_K : float  default temperature, K
    """

    name: ClassVar[str] = "thermo_exact"
    basins: tuple[str, ...] = ("left", "right")
    true_cv_names: tuple[str, ...] = ("x",)
    true_cv_units: str = "angstrom"
    mass_amu: float = 1.0
    #: x grid of the inverse-CDF sampler and marginals, angstrom
    grid_range: tuple[float, float] = (-4.0, 4.0)
    grid_points: int = 16001

    def __init__(self, *, a: float = 0.05, k0: float = 1.0, c: float = 1.0, J0: float = 0.05,
                 J1: float = 0.03, n: int = 6, m: int = 4,
                 temperature_K: float = 300.0) -> None:
        if not (a > 0 and k0 > 0):
            raise ValueError(f"a and k0 must be > 0, got a={a!r}, k0={k0!r}")
        if not J0 > abs(J1):
            raise ValueError(f"J0 must exceed |J1| (J(x) > 0 for von Mises sampling), "
                             f"got J0={J0!r}, J1={J1!r}")
        if int(n) < 0 or int(m) < 0:
            raise ValueError(f"n and m must be >= 0, got n={n!r}, m={m!r}")
        self.a, self.k0, self.c, self.J0, self.J1 = float(a), float(k0), float(c), float(J0), \
            float(J1)
        self.n, self.m = int(n), int(m)
        self.temperature_K = float(_check_temperature(temperature_K))
        self.n_dof = 1 + self.n + self.m
        self.n_atoms = math.ceil(self.n_dof / 3)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(a_eV=self.a, k0_eV_per_A2=self.k0, c_per_A=self.c, J0_eV=self.J0,
                   J1_eV=self.J1, n=self.n, m=self.m)
        return out

    # ------------------------------------------------------------ layout
    @property
    def dof_mask(self) -> np.ndarray:
        """(n_atoms, 3) bool: the 1 + n + m active coordinates."""
        mask = np.zeros(3 * self.n_atoms, bool)
        mask[:self.n_dof] = True
        return mask.reshape(self.n_atoms, 3)

    def split(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(..., n_atoms, 3) -> x (...,), y (..., n), theta (..., m)."""
        p = np.asarray(positions, dtype=np.float64)
        if p.shape[-2:] != (self.n_atoms, 3):
            raise ValueError(f"positions: expected shape (..., {self.n_atoms}, 3), got {p.shape}")
        flat = p.reshape(*p.shape[:-2], 3 * self.n_atoms)
        return flat[..., 0], flat[..., 1:1 + self.n], flat[..., 1 + self.n:self.n_dof]

    def join(self, x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """x (N,), y (N, n), theta (N, m) -> positions (N, n_atoms, 3)."""
        x = np.asarray(x, dtype=np.float64)
        flat = np.zeros((len(x), 3 * self.n_atoms))
        flat[:, 0] = x
        flat[:, 1:1 + self.n] = y
        flat[:, 1 + self.n:self.n_dof] = theta
        return flat.reshape(len(x), self.n_atoms, 3)

    def cg_map(self) -> CGMap:
        """The CG map M(r) = x: one site, x in its x component (y, z inactive)."""
        return CGMap.select_coordinates([(0, 0)], self.n_atoms)

    # ------------------------------------------------------------ System API
    def make_atoms(self, basin: str | None = None) -> Atoms:
        """Pseudo-atoms at x = -1 ("left", default) or +1 ("right"), y = 0,
        theta = 0, with :class:`ThermoExactCalculator` and the padding fixed."""
        if basin not in (None, *self.basins):
            raise ValueError(f"basin: expected one of {self.basins}, got {basin!r}")
        x0 = 1.0 if basin == "right" else -1.0
        pos = self.join(np.array([x0]), np.zeros((1, self.n)), np.zeros((1, self.m)))[0]
        atoms = Atoms(f"H{self.n_atoms}", positions=pos,
                      masses=np.full(self.n_atoms, self.mass_amu))
        pad = ~self.dof_mask
        constraints = [FixCartesian(i, mask=tuple(pad[i])) for i in range(self.n_atoms)
                       if pad[i].any()]
        if constraints:
            atoms.set_constraint(constraints)
        atoms.calc = ThermoExactCalculator(self)
        return atoms

    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        """0 ("left") for x < 0, 1 ("right") otherwise. (n, n_atoms, 3) -> (n,)."""
        x, _, _ = self.split(positions)
        return (x >= 0).astype(int)

    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        """(n, n_atoms, 3) -> (n, 1): x, angstrom."""
        x, _, _ = self.split(positions)
        return x[..., None]

    # ------------------------------------------------------------ potential
    def terms(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """f, f', k, k', J, J' at x (angstrom); eV, eV/A, eV/A^2, ..."""
        x = np.asarray(x, dtype=np.float64)
        k = self.k0 * np.exp(self.c * x)
        th = np.tanh(x)
        return {"f": self.a * (x**2 - 1) ** 2, "df": 4 * self.a * x * (x**2 - 1),
                "k": k, "dk": self.c * k, "J": self.J0 + self.J1 * th,
                "dJ": self.J1 * (1 - th**2)}

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V and -grad V: (N, n_atoms, 3) angstrom -> (N,) eV, (N, n_atoms, 3)
        eV/angstrom (theta forces in eV/radian; padding forces zero)."""
        p = np.asarray(positions, dtype=np.float64)
        x, y, theta = self.split(p)
        t = self.terms(x)
        y2 = (y**2).sum(-1)
        cos_sum = np.cos(theta).sum(-1)
        energy = t["f"] + 0.5 * t["k"] * y2 - t["J"] * cos_sum
        flat = np.zeros((*p.shape[:-2], 3 * self.n_atoms))
        flat[..., 0] = -t["df"] - 0.5 * t["dk"] * y2 + t["dJ"] * cos_sum
        flat[..., 1:1 + self.n] = -t["k"][..., None] * y
        flat[..., 1 + self.n:self.n_dof] = -t["J"][..., None] * np.sin(theta)
        return energy, flat.reshape(p.shape)

    # ------------------------------------------------------------ closed forms
    def free_energy(self, x: np.ndarray, temperature_K: Any) -> np.ndarray:
        """A(x, T), eV (Lebesgue measure on y, theta; broadcasts x and T)."""
        t = self.terms(x)
        kT = KB * _check_temperature(temperature_K)
        return (t["f"] + 0.5 * self.n * kT * np.log(t["k"] / (2 * np.pi * kT))
                - self.m * kT * (np.log(2 * np.pi) + log_i0(t["J"] / kT)))

    def mean_force(self, x: np.ndarray, temperature_K: Any) -> np.ndarray:
        """-dA/dx = <mapped force | x>, eV/angstrom."""
        t = self.terms(x)
        kT = KB * _check_temperature(temperature_K)
        return (-t["df"] - 0.5 * self.n * kT * t["dk"] / t["k"]
                + self.m * t["dJ"] * bessel_ratio(t["J"] / kT))

    def mean_energy(self, x: np.ndarray, temperature_K: Any) -> np.ndarray:
        """<V | x> = d(beta A)/d beta, eV."""
        t = self.terms(x)
        kT = KB * _check_temperature(temperature_K)
        return t["f"] + 0.5 * self.n * kT - self.m * t["J"] * bessel_ratio(t["J"] / kT)

    def energy_variance(self, x: np.ndarray, temperature_K: Any) -> np.ndarray:
        """Var(V | x) = -d^2(beta A)/d beta^2, eV^2."""
        t = self.terms(x)
        kT = KB * _check_temperature(temperature_K)
        kappa = t["J"] / kT
        r = bessel_ratio(kappa)
        return 0.5 * self.n * kT**2 + self.m * t["J"] ** 2 * (1 - r / kappa - r**2)

    def grid(self) -> np.ndarray:
        """The x grid (angstrom) of :meth:`marginal` and the sampler."""
        return np.linspace(*self.grid_range, self.grid_points)

    def marginal(self, x: np.ndarray, temperature_K: float) -> np.ndarray:
        """Normalised marginal density p(x, T) = exp(-A/kT) / Z, 1/angstrom."""
        g = self.grid()
        kT = KB * float(_check_temperature(temperature_K))
        ag = self.free_energy(g, temperature_K)
        log_z = -ag.min() / kT + np.log(np.trapezoid(np.exp(-(ag - ag.min()) / kT), g))
        return np.exp(-self.free_energy(x, temperature_K) / kT - log_z)

    def bin_probabilities(self, edges: np.ndarray, temperature_K: float) -> np.ndarray:
        """Exact probability of each x bin (edges (B+1,) angstrom) -> (B,)."""
        g = self.grid()
        cdf = self._cdf(temperature_K)
        return np.diff(np.interp(edges, g, cdf))

    def _cdf(self, temperature_K: float) -> np.ndarray:
        g = self.grid()
        p = self.marginal(g, temperature_K)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(g))])
        return cdf / cdf[-1]

    # ------------------------------------------------------------ samplers
    def sample_x(self, n: int, temperature_K: float, rng: np.random.Generator) -> np.ndarray:
        """(n,) exact samples of the marginal of x at T (inverse CDF), angstrom."""
        cdf = self._cdf(temperature_K)
        return np.interp(rng.uniform(0.0, 1.0, int(n)), cdf, self.grid())

    def sample(self, n: int, temperature_K: float, rng: np.random.Generator) -> np.ndarray:
        """(n, n_atoms, 3) exact Boltzmann samples of r at T: x from its
        marginal, y ~ N(0, kT/k(x)), theta ~ von Mises(0, J(x)/kT) in [0, 2 pi)."""
        kT = KB * float(_check_temperature(temperature_K))
        x = self.sample_x(n, temperature_K, rng)
        t = self.terms(x)
        y = rng.standard_normal((len(x), self.n)) * np.sqrt(kT / t["k"])[:, None]
        kappa = np.repeat((t["J"] / kT)[:, None], self.m, axis=1)
        theta = np.mod(rng.vonmises(0.0, kappa), 2 * np.pi)
        return self.join(x, y, theta)

    def exact_free_energy(self) -> ExactFreeEnergy:
        """The closed-form A(x, T) as a torch free-energy model."""
        return ExactFreeEnergy(self)

    def sample_cg_dataset(self, n: int, temperature_K: float | np.ndarray,
                          rng: np.random.Generator) -> xr.Dataset:
        """A mapped CG dataset of ``n`` exact samples (see :func:`map_dataset`).

        ``temperature_K`` is one value or (n,) per-frame temperatures (frames
        are drawn at each distinct temperature).
        """
        temps = np.broadcast_to(np.asarray(temperature_K, dtype=np.float64), (int(n),))
        _check_temperature(temps)
        pos = np.zeros((int(n), self.n_atoms, 3))
        for t in np.unique(temps):
            sel = temps == t
            pos[sel] = self.sample(int(sel.sum()), float(t), rng)
        energy, forces = self.energy_and_forces(pos)
        return map_dataset(self.cg_map(), pos, forces, energy, temps,
                           attrs={"system": self.describe()})


__all__ = ["ThermoExactModel", "ThermoExactCalculator", "ExactFreeEnergy", "log_i0", "bessel_ratio"]
