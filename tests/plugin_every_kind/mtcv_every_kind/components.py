"""The components (see the package docstring). Units: eV, angstrom, fs, K, amu."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from mtcv_core.interfaces import (
    BASIN_PROBABILITY,
    CollectiveVariable,
    DataSource,
    Estimator,
    Featurizer,
    LossHead,
    MDSettings,
    RateEstimator,
    Sampler,
    StartFrames,
    System,
)
from mtcv_core.rates import mass_weighted_gradient_norm, tst_rates
from mtcv_core.schema import make_frames
from mtcv_core.schema_umbrella import make_umbrella_dataset
from mtcv_core.units import kT_eV

A_EV = 0.04       # barrier of the double well along x, eV
K_EV = 1.0        # transverse spring, eV/angstrom^2


def _energy_forces(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, 3) angstrom -> energy (n,) eV, forces (n, 1, 3) eV/angstrom."""
    x, y, z = pos[:, 0, 0], pos[:, 0, 1], pos[:, 0, 2]
    energy = A_EV * (x**2 - 1) ** 2 + 0.5 * K_EV * (y**2 + z**2)
    forces = np.stack([-4 * A_EV * x * (x**2 - 1), -K_EV * y, -K_EV * z], axis=1)[:, None]
    return energy, forces


class WellCalculator(Calculator):
    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f = _energy_forces(self.atoms.positions[None])
        self.results = {"energy": float(e[0]), "forces": f[0]}


class DoubleWell(System):
    """One H atom; basins left (x < -0.5) and right (x > 0.5)."""

    name = "ek_double_well"
    basins = ("left", "right")

    def make_atoms(self, basin=None):
        x = -1.0 if self.basin_name(basin) == "left" else 1.0
        atoms = Atoms("H", positions=[[x, 0.0, 0.0]])
        atoms.calc = WellCalculator()
        return atoms

    def basin_index(self, positions):
        x = np.asarray(positions)[:, 0, 0]
        return np.where(x < -0.5, 0, np.where(x > 0.5, 1, -1))

    def energy_and_forces(self, positions):
        return _energy_forces(np.asarray(positions, float))


def langevin(system: System, x: np.ndarray, md: MDSettings, n_steps: int, stride: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """BAOAB Langevin for walkers x (n, n_atoms, 3) on the system's batched
    potential -> positions (n_rec, n, n_atoms, 3), energies (n_rec, n)."""
    masses = system.make_atoms().get_masses()[None, :, None]
    dt = md.timestep_fs * units.fs
    kT = kT_eV(md.temperature_K)
    c1 = np.exp(-md.friction_per_fs / units.fs * dt)
    c2 = np.sqrt((1 - c1**2) * kT / masses)
    v = rng.normal(size=x.shape) * np.sqrt(kT / masses)
    e, f = system.energy_and_forces(x)
    pos, ene = [], []
    for step in range(1, n_steps + 1):
        v = v + 0.5 * dt * f / masses
        x = x + 0.5 * dt * v
        v = c1 * v + c2 * rng.normal(size=x.shape)
        x = x + 0.5 * dt * v
        e, f = system.energy_and_forces(x)
        v = v + 0.5 * dt * f / masses
        if step % stride == 0:
            pos.append(x.copy())
            ene.append(e.copy())
    return np.array(pos), np.array(ene)


@dataclass
class RegionMD(DataSource):
    """MD from each basin's minimum; each frame labelled by the region it is in."""

    name = "ek_md"
    walkers_per_basin: int = 8
    n_steps: int = 2000
    stride: int = 10

    def run(self, system, *, seed, split="train", scale=1.0, md=None, client=None,
            progress=False):
        md = md or MDSettings(temperature_K=300.0)
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        n = max(1, round(self.walkers_per_basin * scale))
        starts = np.concatenate([np.repeat(system.make_atoms(b).positions[None], n, axis=0)
                                 for b in system.basins])
        pos, ene = langevin(system, starts, md, self.n_steps, self.stride, rng)
        pos = np.swapaxes(pos, 0, 1).reshape(-1, 1, 3)  # walker-major
        ene = ene.T.reshape(-1)
        _, forces = system.energy_and_forces(pos)
        atoms = system.make_atoms()
        n_rec = self.n_steps // self.stride
        return make_frames(pos, ene, forces, numbers=atoms.numbers, masses=atoms.get_masses(),
                           basins=system.basins, label=system.basin_index(pos),
                           label_source="ek_region", source="ek_md", split=split,
                           trajectory=np.repeat(np.arange(len(starts)), n_rec),
                           time=np.tile(np.arange(1, n_rec + 1) * self.stride * md.timestep_fs,
                                        len(starts)),
                           temperature=md.temperature_K)


class PositionFeatures(torch.nn.Module, Featurizer):
    """The first atom's Cartesian position: (n, n_atoms, 3) -> (n, 3)."""

    name = "ek_position"

    def n_features(self, n_atoms: int) -> int:
        return 3

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[:, 0, :]


class LogisticHead(torch.nn.Module, LossHead):
    """Logistic regression of the basin label on xi; unlabelled frames ignored."""

    name = "ek_logistic"
    prediction = BASIN_PROBABILITY

    def __init__(self, *, latent_dim: int = 1, n_features: int = 1, n_classes: int = 2):
        super().__init__()
        self.linear = torch.nn.Linear(latent_dim, n_classes)

    def loss(self, latent, batch):
        label = batch["label"]
        keep = label >= 0
        logits = self.linear(latent)
        per_frame = torch.nn.functional.cross_entropy(logits, label.clamp_min(0),
                                                      reduction="none")
        return (per_frame * keep).sum() / keep.sum().clamp_min(1)

    def predict(self, latent):
        return torch.softmax(self.linear(latent), dim=1)


@dataclass
class PlainMD(Sampler):
    """Unbiased MD along any CV: one "window" with a zero spring."""

    name = "ek_plain_md"
    walkers: int = 16
    n_steps: int = 20000
    stride: int = 10

    def run(self, system: System, cv: CollectiveVariable, *, frames: StartFrames,
            transitions: Sequence[tuple[int, int]], md: MDSettings, seed: int,
            client: Any = None, store: Any = None, progress: bool = False) -> xr.Dataset:
        rng = np.random.default_rng([seed, 7])
        starts = frames.positions[rng.choice(len(frames.positions), self.walkers)]
        pos, ene = langevin(system, starts, md, self.n_steps, self.stride, rng)
        with torch.no_grad():
            xi = cv.module(torch.as_tensor(pos.reshape(-1, *pos.shape[2:]))).numpy()
        xi = xi.reshape(pos.shape[0], pos.shape[1], cv.dim)
        series = np.swapaxes(xi, 0, 1).reshape(-1, cv.dim)  # walker-major
        return make_umbrella_dataset(np.zeros((1, cv.dim)), 0.0, [series],
                                     temperature_K=md.temperature_K, cv_names=cv.names,
                                     cv_units=cv.units, energy=[ene.T.reshape(-1)],
                                     walkers=self.walkers)


@dataclass
class HistogramPMF(Estimator):
    """F(s) = -kT ln p(s) from unbiased samples of a 1D CV; errors by
    bootstrapping whole walkers."""

    name = "ek_histogram"
    n_bins: int = 30
    n_bootstraps: int = 20

    def estimate(self, samples, *, basin_of=None, basin_names=None):
        kT = kT_eV(float(samples.attrs["temperature_K"]))
        n = int(samples["n_samples"].values[0])
        s = samples["cv_values"].values[0, :n, 0]
        walkers = int(samples.attrs.get("walkers", 1))
        edges = np.linspace(*np.quantile(s, [0.001, 0.999]), self.n_bins + 1)
        centers = 0.5 * (edges[1:] + edges[:-1])
        labels = basin_of(centers[:, None]) if basin_of is not None else None

        def profile(series: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            p = np.histogram(series, edges)[0] / len(series)
            with np.errstate(divide="ignore"):
                f = -kT * np.log(p)
            if labels is None:
                return f - np.nanmin(f[np.isfinite(f)]), np.array([]), np.array([])
            fb = np.array([-kT * np.log(p[labels == b].sum()) for b in range(len(basin_names))])
            bar = np.array([[self._barrier(f, labels, a, b) for b in range(len(fb))]
                            for a in range(len(fb))])
            return f - np.nanmin(f[np.isfinite(f)]), fb, bar

        pmf, fb, bar = profile(s)
        chunks = np.array_split(s, walkers)
        rng = np.random.default_rng(0)
        boots = [profile(np.concatenate([chunks[i] for i in rng.integers(0, walkers, walkers)]))
                 for _ in range(self.n_bootstraps)]
        err = lambda k: np.nanstd([b[k] for b in boots], axis=0)  # noqa: E731
        ds = xr.Dataset(
            {"pmf": (("bin",), pmf, {"units": "eV"}),
             "pmf_err": (("bin",), err(0), {"units": "eV"}),
             "bin_edges": (("bin_edge",), edges, {"units": samples.attrs["cv_units"]})},
            coords={"bin_center": ("bin", centers)},
            attrs={"mtcv_schema": "mtcv.fes/1", "temperature_K": samples.attrs["temperature_K"]})
        if labels is not None:
            names = list(basin_names)
            pair = ("basin_from", "basin_to")
            ds = ds.assign_coords(basin=("basin", names), basin_from=("basin_from", names),
                                  basin_to=("basin_to", names))
            ds["basin_free_energy"] = (("basin",), fb - fb.min(), {"units": "eV"})
            ds["delta_F"] = (pair, fb[None, :] - fb[:, None], {"units": "eV"})
            ds["delta_F_err"] = (pair, np.nanstd([b[1][None, :] - b[1][:, None]
                                                  for b in boots], axis=0), {"units": "eV"})
            ds["barrier"] = (pair, bar, {"units": "eV"})
            ds["barrier_err"] = (pair, err(2), {"units": "eV"})
        return ds

    @staticmethod
    def _barrier(f: np.ndarray, labels: np.ndarray, a: int, b: int) -> float:
        """Highest F between the minima of basins a and b, above a's minimum."""
        if a == b or not (labels == a).any() or not (labels == b).any():
            return np.nan
        fa = np.where(labels == a, f, np.inf)
        fbb = np.where(labels == b, f, np.inf)
        i, j = int(np.argmin(fa)), int(np.argmin(fbb))
        lo, hi = min(i, j), max(i, j)
        return float(np.max(f[lo:hi + 1]) - f[i])


@dataclass
class TSTRates(RateEstimator):
    """Transition-state theory along the learned CV, no dynamics (kappa = 1):
    the dividing surface at the top of the PMF between the basins' typical
    xi (median over their labelled frames), the flux factor <|grad xi|_M>
    over the ``n_near`` frames nearest to it."""

    name = "ek_tst"
    n_near: int = 200

    def rates(self, system, cv, fes, *, frames, transitions, md, seed, client=None,
              store=None, progress=False):
        kT = kT_eV(md.temperature_K)
        pmf, centers = fes["pmf"].values, fes["bin_center"].values
        xi = frames.cv_values[:, 0]
        rows = []
        for a, b in transitions:
            xa, xb = (float(np.median(xi[frames.labels == i])) for i in (a, b))
            xi_star = tst_rates(pmf, centers, xa, xb, 1.0, kT)[0]
            near = np.argsort(np.abs(xi - xi_star))[:self.n_near]
            pos = torch.tensor(frames.positions[near], dtype=torch.float64, requires_grad=True)
            (grad,) = torch.autograd.grad(cv.module(pos)[:, 0].sum(), pos)
            flux = float(np.mean(mass_weighted_gradient_norm(grad.numpy(), frames.masses)))
            _, k_ab, k_ba = tst_rates(pmf, centers, xa, xb, flux, kT)
            names = system.basins
            rows += [(names[a], names[b], k_ab, xi_star), (names[b], names[a], k_ba, xi_star)]
        k = np.array([r[2] for r in rows])
        per_s = {"units": "1/s"}
        return xr.Dataset(
            {"rate": ("transition", k, per_s), "rate_err": ("transition", 0 * k, per_s),
             "rate_tst": ("transition", k, per_s),
             "kappa": ("transition", np.ones_like(k), {"units": "1"}),
             "xi_star": ("transition", [r[3] for r in rows])},
            coords={"basin_from": ("transition", [r[0] for r in rows]),
                    "basin_to": ("transition", [r[1] for r in rows])},
            attrs={"mtcv_schema": "mtcv.rates/1", "temperature_K": md.temperature_K,
                   "method": "TST along xi (no recrossings)"})


__all__: Mapping[str, Any] | list[str] = ["DoubleWell", "RegionMD", "PositionFeatures",
                                           "LogisticHead", "PlainMD", "HistogramPMF",
                                           "TSTRates"]
