"""Langevin dynamics: ASE's own integrator (the reference path) and a fast
path that advances many walkers at once with the same physics.

Both use the second-order Langevin scheme of Vanden-Eijnden and Ciccotti as
implemented in :class:`ase.md.langevin.Langevin`, with the same constants and
the same order of random draws: a :class:`BatchLangevin` with one walker and
the same ``numpy`` generator reproduces ASE's trajectory to round-off.

Units: positions angstrom, energies eV, forces eV/angstrom, masses amu,
time fs, temperature K. Velocities are in ASE's internal unit
(angstrom / (ASE time unit)); :data:`FS` converts fs to that unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin

FS = units.fs
KB = units.kB

EnergyForces = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class BlowUpError(FloatingPointError):
    """A trajectory produced non-finite or absurd energies/positions."""

    def __init__(self, message: str, *, walker: int | None = None, step: int | None = None):
        super().__init__(message)
        self.walker = walker
        self.step = step


@dataclass(frozen=True)
class LangevinParams:
    """Thermostat parameters: temperature (K), time step (fs), friction (1/fs)."""

    temperature_K: float
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01


def maxwell_boltzmann(masses: np.ndarray, temperature_K: float, rng: np.random.Generator,
                      n: int | None = None, dof_mask: np.ndarray | None = None) -> np.ndarray:
    """Velocities (ASE units) drawn from Maxwell-Boltzmann at ``temperature_K``.

    masses: (n_atoms,) amu -> (n, n_atoms, 3), or (n_atoms, 3) when n is None.
    Uses the same draw as ``ase.md.velocitydistribution.MaxwellBoltzmannDistribution``.
    """
    shape = (len(masses), 3) if n is None else (n, len(masses), 3)
    sigma = np.sqrt(KB * temperature_K / np.asarray(masses, float))[:, None]
    v = rng.standard_normal(shape) * sigma
    if dof_mask is not None:
        v = v * dof_mask
    return v


class GroupedNormals:
    """Standard normal deviates for a batch of walkers in groups, each group
    drawn from its own generator: ``standard_normal((n, ...))`` returns rows
    ``[0, sizes[0])`` from ``rngs[0]``, the next ``sizes[1]`` rows from
    ``rngs[1]``, and so on. A group's stream therefore does not depend on
    which other groups share the batch (umbrella windows give the same
    trajectories however they are grouped into tasks). Deviates are drawn
    ``block`` calls ahead per generator, to keep the per-step overhead of
    many small generators low.

    Drop-in for the ``rng`` of :class:`BatchLangevin` (which only calls
    ``standard_normal``).
    """

    def __init__(self, rngs: list[np.random.Generator], sizes: list[int],
                 block_bytes: int = 32 * 2**20):
        if len(rngs) != len(sizes):
            raise ValueError("GroupedNormals: one generator per group")
        self.rngs, self.sizes = list(rngs), [int(s) for s in sizes]
        self.block_bytes = block_bytes
        self._buf: np.ndarray | None = None
        self._next = 0

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        shape = tuple(shape)
        if shape[0] != sum(self.sizes):
            raise ValueError(f"GroupedNormals: {shape[0]} rows requested for groups of "
                             f"{self.sizes}")
        if self._buf is None or self._buf.shape[1:] != shape or self._next == len(self._buf):
            per_call = int(np.prod(shape)) * 8
            block = max(1, min(512, self.block_bytes // max(per_call, 1)))
            self._buf = np.concatenate(
                [g.standard_normal((block, n, *shape[1:])) for g, n in
                 zip(self.rngs, self.sizes, strict=True)], axis=1)
            self._next = 0
        out = self._buf[self._next]
        self._next += 1
        return out


class BatchLangevin:
    """ASE's Langevin integrator vectorised over walkers.

    Parameters
    ----------
    energy_and_forces : callable
        (n, n_atoms, 3) angstrom -> energy (n,) eV, forces (n, n_atoms, 3) eV/angstrom.
    masses : (n_atoms,) amu
    params : LangevinParams
    dof_mask : (n_atoms, 3) bool, optional
        Active degrees of freedom; inactive ones never move (as ASE's
        ``FixCartesian``).
    rng : numpy Generator
    energy_bound : float
        |energy| beyond this (eV) counts as a blow-up.
    """

    def __init__(self, energy_and_forces: EnergyForces, masses: np.ndarray,
                 params: LangevinParams, rng: np.random.Generator,
                 dof_mask: np.ndarray | None = None, energy_bound: float = 1e6):
        self.energy_and_forces = energy_and_forces
        self.masses = np.asarray(masses, dtype=float)[:, None]  # (n_atoms, 1)
        self.params = params
        self.rng = rng
        self.mask = None if dof_mask is None else np.asarray(dof_mask, bool)
        self.energy_bound = energy_bound
        dt = params.timestep_fs * FS
        fr = params.friction_per_fs / FS
        kT = KB * params.temperature_K
        sigma = np.sqrt(2 * kT * fr / self.masses)
        self.dt = dt
        self.c1 = dt / 2.0 - dt * dt * fr / 8.0
        self.c2 = dt * fr / 2 - dt * dt * fr * fr / 8.0
        self.c3 = np.sqrt(dt) * sigma / 2.0 - dt**1.5 * fr * sigma / 8.0
        self.c5 = dt**1.5 * sigma / (2 * np.sqrt(3))
        self.c4 = fr / 2.0 * self.c5

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, f = self.energy_and_forces(x)
        if self.mask is not None:
            f = f * self.mask
        return e, f

    def step(self, x: np.ndarray, v: np.ndarray, f: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One step for all walkers: (x, v, f) -> (x, v, f, energy), shapes
        (n, n_atoms, 3) and (n,)."""
        shape = x.shape
        xi = self.rng.standard_normal(shape)
        eta = self.rng.standard_normal(shape)
        rnd_pos = self.c5 * eta
        rnd_vel = self.c3 * xi - self.c4 * eta
        v = v + self.c1 * f / self.masses - self.c2 * v + rnd_vel
        x_new = x + self.dt * v + rnd_pos
        if self.mask is not None:
            x_new = np.where(self.mask, x_new, x)
            v = (x_new - x - rnd_pos) / self.dt  # as ASE after its constraint
        e, f = self.evaluate(x_new)
        v = v + self.c1 * f / self.masses - self.c2 * v + rnd_vel
        if self.mask is not None:
            v = v * self.mask
        return x_new, v, f, e

    def check(self, x: np.ndarray, e: np.ndarray, step: int,
              walker_ids: np.ndarray | None = None) -> None:
        """Raise :class:`BlowUpError` naming the first bad walker and step."""
        bad = ~np.isfinite(e) | (np.abs(e) > self.energy_bound)
        bad |= ~np.isfinite(x).all(axis=(1, 2))
        if bad.any():
            i = int(np.argmax(bad))
            wid = i if walker_ids is None else int(walker_ids[i])
            raise BlowUpError(f"walker {wid} blew up at step {step}: energy {e[i]!r}",
                              walker=wid, step=step)

    def run(self, x: np.ndarray, v: np.ndarray, n_steps: int, stride: int = 1
            ) -> dict[str, np.ndarray]:
        """Advance all walkers ``n_steps``; record every ``stride``-th step
        (the starting point is not recorded).

        Returns ``positions`` (n_rec, n, n_atoms, 3), ``energy`` (n_rec, n),
        ``forces`` (n_rec, n, n_atoms, 3), ``step`` (n_rec,), and the final
        ``x``, ``v``.
        """
        x = np.array(x, dtype=float)
        v = np.array(v, dtype=float)
        e, f = self.evaluate(x)
        pos, ene, frc, steps = [], [], [], []
        for s in range(1, n_steps + 1):
            x, v, f, e = self.step(x, v, f)
            if s % stride == 0:
                self.check(x, e, s)
                pos.append(x)
                ene.append(e)
                frc.append(f)
                steps.append(s)
        return {"positions": np.array(pos), "energy": np.array(ene), "forces": np.array(frc),
                "step": np.array(steps, dtype=int), "x": x, "v": v}


def run_ase_langevin(atoms: Atoms, n_steps: int, params: LangevinParams,
                     rng: np.random.Generator, stride: int = 1,
                     energy_bound: float = 1e6) -> dict[str, np.ndarray]:
    """The reference path: ASE's own ``Langevin`` (``fixcm=False``) on ``atoms``
    (with its calculator and constraints), recording every ``stride``-th step.

    Returns ``positions`` (n_rec, n_atoms, 3), ``energy`` (n_rec,),
    ``forces`` (n_rec, n_atoms, 3), ``step`` (n_rec,).
    """
    dyn = Langevin(atoms, timestep=params.timestep_fs * FS,
                   temperature_K=params.temperature_K,
                   friction=params.friction_per_fs / FS, fixcm=False, rng=rng)
    pos, ene, frc, steps = [], [], [], []

    def record() -> None:
        e = atoms.get_potential_energy()
        if not np.isfinite(e) or abs(e) > energy_bound:
            raise BlowUpError(f"ASE trajectory blew up at step {dyn.nsteps}: energy {e!r}",
                              step=dyn.nsteps)
        pos.append(atoms.get_positions())
        ene.append(e)
        frc.append(atoms.get_forces())
        steps.append(dyn.nsteps)

    dyn.attach(record, interval=stride)
    dyn.run(n_steps)
    # ASE calls observers at step 0 too; the fast path does not record it.
    if steps and steps[0] == 0:
        pos, ene, frc, steps = pos[1:], ene[1:], frc[1:], steps[1:]
    return {"positions": np.array(pos), "energy": np.array(ene), "forces": np.array(frc),
            "step": np.array(steps, dtype=int)}


class BatchPropagator:
    """Walker slots advanced together by :class:`BatchLangevin` (the fast path).

    Slots are set with :meth:`reset` and advanced with :meth:`step`; only the
    slots named are touched.
    """

    def __init__(self, system, params: LangevinParams, rng: np.random.Generator, n_slots: int):
        self.masses = system.make_atoms().get_masses()
        self.mask = system.dof_mask
        self.integ = BatchLangevin(system.energy_and_forces, self.masses, params, rng,
                                   dof_mask=self.mask)
        n_atoms = len(self.masses)
        self.x = np.zeros((n_slots, n_atoms, 3))
        self.v = np.zeros_like(self.x)
        self.f = np.zeros_like(self.x)
        self.e = np.zeros(n_slots)
        self.steps = 0  # calls to step(), for blow-up messages

    def reset(self, slots: np.ndarray, x: np.ndarray, v: np.ndarray) -> None:
        self.x[slots] = x
        self.v[slots] = v
        self.e[slots], self.f[slots] = self.integ.evaluate(self.x[slots])

    def step(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance ``slots`` one step; returns their x, energy, forces."""
        x, v, f, e = self.integ.step(self.x[slots], self.v[slots], self.f[slots])
        self.steps += 1
        self.integ.check(x, e, step=self.steps, walker_ids=slots)
        self.x[slots], self.v[slots], self.f[slots], self.e[slots] = x, v, f, e
        return x, e, f


class AsePropagator:
    """Walker slots each advanced by ASE's own ``Langevin`` (the reference path)."""

    def __init__(self, system, params: LangevinParams, rng: np.random.Generator, n_slots: int):
        self.atoms = [system.make_atoms() for _ in range(n_slots)]
        self.masses = self.atoms[0].get_masses()
        self.mask = system.dof_mask
        self.dyn = [Langevin(a, timestep=params.timestep_fs * FS,
                             temperature_K=params.temperature_K,
                             friction=params.friction_per_fs / FS, fixcm=False, rng=rng)
                    for a in self.atoms]

    def reset(self, slots: np.ndarray, x: np.ndarray, v: np.ndarray) -> None:
        for i, s in enumerate(np.atleast_1d(slots)):
            self.atoms[s].set_positions(x[i])
            self.atoms[s].set_velocities(v[i])

    def step(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, es, fs = [], [], []
        for s in np.atleast_1d(slots):
            self.dyn[s].run(1)
            atoms = self.atoms[s]
            xs.append(atoms.get_positions())
            es.append(atoms.get_potential_energy())
            fs.append(atoms.get_forces())
        e = np.array(es)
        if not np.isfinite(e).all():
            i = int(np.argmax(~np.isfinite(e)))
            raise BlowUpError(f"walker {int(np.atleast_1d(slots)[i])} blew up: energy {e[i]!r}",
                              walker=int(np.atleast_1d(slots)[i]))
        return np.array(xs), e, np.array(fs)


def make_propagator(system, params: LangevinParams, rng: np.random.Generator, n_slots: int,
                    fast: bool) -> BatchPropagator | AsePropagator:
    """The fast batched propagator where the system supports it and ``fast``."""
    if fast and system.supports_batch:
        return BatchPropagator(system, params, rng, n_slots)
    return AsePropagator(system, params, rng, n_slots)
