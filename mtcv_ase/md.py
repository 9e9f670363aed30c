"""Langevin dynamics: ASE's own integrator (the reference path) and a fast
path that advances many walkers at once with the same physics.

Both use the second-order Langevin scheme of Vanden-Eijnden and Ciccotti as
implemented in :class:`ase.md.langevin.Langevin`, with the same constants and
the same order of random draws: a :class:`BatchLangevin` with one walker and
the same ``numpy`` generator reproduces ASE's trajectory to round-off.

Blow-ups -- non-finite positions or energies, or |energy| above a bound
(1e6 eV by default) -- are checked at every step, recorded or not: either
raised (:class:`BlowUpError`, a :class:`mtcv_core.errors.SimulationError`,
naming the walker and step) or, with ``on_blow_up="drop"``, the walker is
parked at its last good configuration and the others go on with unchanged
random streams (the batch keeps its shape).

Units: positions angstrom, energies eV, forces eV/angstrom, masses amu,
time fs, temperature K. Velocities are in ASE's internal unit
(angstrom / (ASE time unit)); :data:`FS` converts fs to that unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin

from mtcv_core.errors import SimulationError
from mtcv_core.units import KB_EV_PER_K

FS = units.fs
KB = KB_EV_PER_K

EnergyForces = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class BlowUpError(SimulationError):
    """A trajectory produced non-finite or absurd energies/positions.

    ``walker`` is the walker's index in its batch (or its id), ``step`` the
    step (1 = the first step after the start) at which it was detected.
    """

    def __init__(self, message: str, *, walker: int | None = None, step: int | None = None):
        super().__init__(message)
        self.walker = walker
        self.step = step


def blown_up(x: np.ndarray, e: np.ndarray, energy_bound: float) -> np.ndarray:
    """(n,) bool: walkers whose energy is not finite or beyond
    ``energy_bound`` (eV, in absolute value), or whose positions (n, ..., 3)
    angstrom are not all finite."""
    e = np.asarray(e, dtype=float)
    x = np.asarray(x, dtype=float)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(e) | (np.abs(e) > energy_bound)
    return bad | ~np.isfinite(x).reshape(len(x), -1).all(axis=1)


def blow_up_record(*, step: int, energy: float, **where: Any) -> dict[str, Any]:
    """A JSON-able record of a blow-up: where it happened (``where``: e.g.
    source, split, trajectory, window, walker, seed), the ``step`` and the
    ``energy`` (eV; a string for a non-finite value)."""
    energy = float(energy)
    rec: dict[str, Any] = {k: (v.item() if isinstance(v, np.generic) else v)
                           for k, v in where.items()}
    rec["step"] = int(step)
    rec["energy_eV"] = energy if np.isfinite(energy) else repr(energy)
    return rec


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

    def blown(self, x: np.ndarray, e: np.ndarray) -> np.ndarray:
        """(n,) bool: walkers with non-finite positions or energies, or
        |energy| above :attr:`energy_bound` (see :func:`blown_up`)."""
        return blown_up(x, e, self.energy_bound)

    def check(self, x: np.ndarray, e: np.ndarray, step: int,
              walker_ids: np.ndarray | None = None) -> None:
        """Raise :class:`BlowUpError` naming the first bad walker and step."""
        bad = self.blown(x, e)
        if bad.any():
            i = int(np.argmax(bad))
            wid = i if walker_ids is None else int(walker_ids[i])
            raise BlowUpError(f"walker {wid} blew up at step {step}: energy {e[i]!r}",
                              walker=wid, step=step)

    @staticmethod
    def hold(x: np.ndarray, v: np.ndarray, f: np.ndarray, dead: np.ndarray,
             held: np.ndarray) -> None:
        """Park the ``dead`` walkers (bool (n,)) in place: positions set to
        ``held`` (n, n_atoms, 3) angstrom (their last good configuration),
        velocities and forces to zero. Parked walkers keep their rows, so
        the batch's shape -- and so every other walker's random stream --
        is the same as without the blow-up; their records are meaningless
        and must be dropped by the caller."""
        x[dead] = held[dead]
        v[dead] = 0.0
        f[dead] = 0.0

    def run(self, x: np.ndarray, v: np.ndarray, n_steps: int, stride: int = 1, *,
            on_blow_up: str = "raise", alive: np.ndarray | None = None,
            first_step: int = 0) -> dict[str, np.ndarray]:
        """Advance all walkers ``n_steps``; record every ``stride``-th step
        (the starting point is not recorded).

        Every step is checked for blow-ups (:meth:`blown`). With
        ``on_blow_up="raise"`` the first one raises :class:`BlowUpError`
        (walker and step); with ``"drop"`` the walker is parked
        (:meth:`hold`), its step recorded, and the others go on unchanged.
        ``alive`` (n,) bool marks walkers already dropped (default: none);
        ``first_step`` offsets the reported steps (e.g. the equilibration
        steps before this call).

        Returns ``positions`` (n_rec, n, n_atoms, 3), ``energy`` (n_rec, n)
        (NaN for dropped walkers), ``forces`` (n_rec, n, n_atoms, 3), ``step``
        (n_rec,), the final ``x``, ``v``, and ``alive`` (n,) bool,
        ``blow_up_step`` (n,) int (-1: none; 0: the start itself),
        ``blow_up_energy`` (n,) eV.
        """
        if on_blow_up not in ("raise", "drop"):
            raise ValueError(f"on_blow_up: expected 'raise' or 'drop', got {on_blow_up!r}")
        drop = on_blow_up == "drop"
        x = np.array(x, dtype=float)
        v = np.array(v, dtype=float)
        n = len(x)
        alive = np.ones(n, dtype=bool) if alive is None else np.array(alive, dtype=bool)
        blow_step = np.full(n, -1, dtype=int)
        blow_energy = np.full(n, np.nan)
        held = x.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            e, f = self.evaluate(x)
        if drop:
            bad = self.blown(x, e) & alive
            if bad.any():  # an absurd start: park it where a good walker starts
                blow_step[bad], blow_energy[bad] = first_step, e[bad]
                alive &= ~bad
            if not alive.all():
                held[~alive] = x[alive][0] if alive.any() else 0.0
                self.hold(x, v, f, ~alive, held)
        pos, ene, frc, steps = [], [], [], []
        for s in range(1, n_steps + 1):
            x_prev = x
            x, v, f, e = self.step(x, v, f)
            if drop:
                bad = self.blown(x, e) & alive
                if bad.any():
                    blow_step[bad], blow_energy[bad] = first_step + s, e[bad]
                    held[bad] = x_prev[bad]
                    alive &= ~bad
                if not alive.all():
                    self.hold(x, v, f, ~alive, held)
                    e = np.where(alive, e, np.nan)
            else:
                self.check(x, e, first_step + s)
            if s % stride == 0:
                pos.append(x)
                ene.append(e)
                frc.append(f)
                steps.append(first_step + s)
        return {"positions": np.array(pos), "energy": np.array(ene), "forces": np.array(frc),
                "step": np.array(steps, dtype=int), "x": x, "v": v, "alive": alive,
                "blow_up_step": blow_step, "blow_up_energy": blow_energy}


def ase_langevin(atoms: Atoms, params: LangevinParams, rng: np.random.Generator) -> Langevin:
    """ASE's own ``Langevin`` on ``atoms`` with mtcv's thermostat settings
    (``fixcm=False``): the one place mtcv builds ASE dynamics."""
    return Langevin(atoms, timestep=params.timestep_fs * FS,
                    temperature_K=params.temperature_K,
                    friction=params.friction_per_fs / FS, fixcm=False, rng=rng)


def run_ase_langevin(atoms: Atoms, n_steps: int, params: LangevinParams,
                     rng: np.random.Generator, stride: int = 1,
                     energy_bound: float = 1e6) -> dict[str, np.ndarray]:
    """The reference path: ASE's own ``Langevin`` (``fixcm=False``) on ``atoms``
    (with its calculator and constraints), recording every ``stride``-th step.

    Returns ``positions`` (n_rec, n_atoms, 3), ``energy`` (n_rec,),
    ``forces`` (n_rec, n_atoms, 3), ``step`` (n_rec,). Raises
    :class:`BlowUpError` (with the step) at the first recorded blow-up.
    """
    dyn = ase_langevin(atoms, params, rng)
    pos, ene, frc, steps = [], [], [], []

    def record() -> None:
        e = atoms.get_potential_energy()
        if blown_up(atoms.get_positions()[None], np.array([e]), energy_bound)[0]:
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
    slots named are touched. Every step is checked for blow-ups: with
    ``on_blow_up="raise"`` the first raises :class:`BlowUpError` (slot and
    step); with ``"drop"`` :attr:`last_blown` marks the slots of the last
    step that blew up, which keep their previous state (and are returned
    with it) until the caller resets them or stops stepping them;
    :attr:`last_energy` holds the energies (eV) the step produced, the bad
    ones included.
    """

    def __init__(self, system, params: LangevinParams, rng: np.random.Generator, n_slots: int,
                 *, on_blow_up: str = "raise"):
        if on_blow_up not in ("raise", "drop"):
            raise ValueError(f"on_blow_up: expected 'raise' or 'drop', got {on_blow_up!r}")
        self.on_blow_up = on_blow_up
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
        self.last_blown = np.zeros(0, dtype=bool)
        self.last_energy = np.zeros(0)

    def reset(self, slots: np.ndarray, x: np.ndarray, v: np.ndarray) -> None:
        self.x[slots] = x
        self.v[slots] = v
        with np.errstate(over="ignore", invalid="ignore"):
            self.e[slots], self.f[slots] = self.integ.evaluate(self.x[slots])

    def step(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance ``slots`` one step; returns their x, energy, forces."""
        x, v, f, e = self.integ.step(self.x[slots], self.v[slots], self.f[slots])
        self.steps += 1
        self.last_energy = np.array(e, dtype=float)
        if self.on_blow_up == "raise":
            self.integ.check(x, e, step=self.steps, walker_ids=slots)
            bad = np.zeros(len(x), dtype=bool)
        else:
            bad = self.integ.blown(x, e)
            if bad.any():  # keep the slot's last good state
                x[bad], v[bad], f[bad] = self.x[slots][bad], 0.0, 0.0
                e[bad] = self.e[slots][bad]
        self.last_blown = bad
        self.x[slots], self.v[slots], self.f[slots], self.e[slots] = x, v, f, e
        return x, e, f


class AsePropagator:
    """Walker slots each advanced by ASE's own ``Langevin`` (the reference path).

    Blow-ups as in :class:`BatchPropagator` (``on_blow_up``, :attr:`last_blown`).
    """

    def __init__(self, system, params: LangevinParams, rng: np.random.Generator, n_slots: int,
                 *, on_blow_up: str = "raise", energy_bound: float = 1e6):
        if on_blow_up not in ("raise", "drop"):
            raise ValueError(f"on_blow_up: expected 'raise' or 'drop', got {on_blow_up!r}")
        self.on_blow_up = on_blow_up
        self.energy_bound = energy_bound
        self.atoms = [system.make_atoms() for _ in range(n_slots)]
        self.masses = self.atoms[0].get_masses()
        self.mask = system.dof_mask
        self.dyn = [ase_langevin(a, params, rng) for a in self.atoms]
        self.steps = 0
        self.last_blown = np.zeros(0, dtype=bool)
        self.last_energy = np.zeros(0)

    def reset(self, slots: np.ndarray, x: np.ndarray, v: np.ndarray) -> None:
        for i, s in enumerate(np.atleast_1d(slots)):
            self.atoms[s].set_positions(x[i])
            self.atoms[s].set_velocities(v[i])

    def step(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xs, es, fs = [], [], []
        slots = np.atleast_1d(slots)
        self.steps += 1
        for s in slots:
            with np.errstate(over="ignore", invalid="ignore"):
                self.dyn[s].run(1)
            atoms = self.atoms[s]
            xs.append(atoms.get_positions())
            es.append(atoms.get_potential_energy())
            fs.append(atoms.get_forces())
        x, e, f = np.array(xs), np.array(es, dtype=float), np.array(fs)
        bad = blown_up(x, e, self.energy_bound)
        if bad.any() and self.on_blow_up == "raise":
            i = int(np.argmax(bad))
            raise BlowUpError(f"walker {int(slots[i])} blew up at step {self.steps}: "
                              f"energy {e[i]!r}", walker=int(slots[i]), step=self.steps)
        self.last_blown = bad
        self.last_energy = e
        return x, e, f


class AseWalkers:
    """Walkers advanced one after another by ASE's own ``Langevin`` on the
    system's calculator (the reference path), with the same :meth:`run` as
    :class:`BatchLangevin` (the fast path): the data sources call either
    through :func:`make_walkers`.

    Parameters
    ----------
    make_atoms : callable
        () -> a new ``Atoms`` with the system's calculator and constraints.
    params : LangevinParams
    rng : numpy Generator; walker ``w`` draws from its own stream, spawned
        from it at the first :meth:`run` and continued by later calls, so a
        walker's trajectory does not depend on the others (a blow-up
        included), as on the fast path
    energy_bound : float
        |energy| beyond this (eV) counts as a blow-up.
    """

    def __init__(self, make_atoms: Callable[[], Atoms], params: LangevinParams,
                 rng: np.random.Generator, energy_bound: float = 1e6):
        self.make_atoms = make_atoms
        self.params = params
        self.rng = rng
        self.energy_bound = energy_bound
        self.streams: list[np.random.Generator] = []

    def run(self, x: np.ndarray, v: np.ndarray, n_steps: int, stride: int = 1, *,
            on_blow_up: str = "raise", alive: np.ndarray | None = None,
            first_step: int = 0) -> dict[str, np.ndarray]:
        """As :meth:`BatchLangevin.run`, one walker after the other. A
        dropped walker's records are NaN; its final ``x``/``v`` are its
        start."""
        if on_blow_up not in ("raise", "drop"):
            raise ValueError(f"on_blow_up: expected 'raise' or 'drop', got {on_blow_up!r}")
        x = np.array(x, dtype=float)
        v = np.array(v, dtype=float)
        n, n_rec = len(x), n_steps // stride
        alive = np.ones(n, dtype=bool) if alive is None else np.array(alive, dtype=bool)
        pos = np.full((n_rec, *x.shape), np.nan)
        ene = np.full((n_rec, n), np.nan)
        frc = np.full((n_rec, *x.shape), np.nan)
        blow_step = np.full(n, -1, dtype=int)
        blow_energy = np.full(n, np.nan)
        if len(self.streams) < n:
            self.streams += self.rng.spawn(n - len(self.streams))
        for w in np.flatnonzero(alive):
            atoms = self.make_atoms()
            atoms.set_positions(x[w])
            atoms.set_velocities(v[w])
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    rec = run_ase_langevin(atoms, n_steps, self.params, self.streams[w],
                                           stride=stride, energy_bound=self.energy_bound)
            except BlowUpError as exc:
                if on_blow_up == "raise":
                    raise BlowUpError(f"walker {w} blew up at step {first_step + (exc.step or 0)}",
                                      walker=int(w), step=first_step + (exc.step or 0)) from exc
                blow_step[w] = first_step + (exc.step if exc.step is not None else 0)
                blow_energy[w] = atoms.get_potential_energy()
                alive[w] = False
                continue
            pos[:, w], ene[:, w], frc[:, w] = rec["positions"], rec["energy"], rec["forces"]
            x[w], v[w] = atoms.get_positions(), atoms.get_velocities()
        steps = first_step + stride * np.arange(1, n_rec + 1)
        return {"positions": pos, "energy": ene, "forces": frc, "step": steps, "x": x, "v": v,
                "alive": alive, "blow_up_step": blow_step, "blow_up_energy": blow_energy}


def make_walkers(system: Any, params: LangevinParams, rng: np.random.Generator, fast: bool, *,
                 basin: str | None = None) -> BatchLangevin | AseWalkers:
    """Walkers of ``system``: :class:`BatchLangevin` on its batched
    ``energy_and_forces`` where ``fast`` and the system supports it, else
    :class:`AseWalkers` on ``system.make_atoms(basin)``. Both have the same
    ``run(x, v, n_steps, stride, on_blow_up=, alive=, first_step=)``."""
    if fast and system.supports_batch:
        return BatchLangevin(system.energy_and_forces, system.make_atoms(basin).get_masses(),
                             params, rng, dof_mask=system.dof_mask)
    return AseWalkers(lambda: system.make_atoms(basin), params, rng)


def make_propagator(system, params: LangevinParams, rng: np.random.Generator, n_slots: int,
                    fast: bool, *, on_blow_up: str = "raise") -> BatchPropagator | AsePropagator:
    """The fast batched propagator where the system supports it and ``fast``;
    ``on_blow_up`` as in :class:`BatchPropagator`."""
    if fast and system.supports_batch:
        return BatchPropagator(system, params, rng, n_slots, on_blow_up=on_blow_up)
    return AsePropagator(system, params, rng, n_slots, on_blow_up=on_blow_up)
