"""Reusable checks for plugin authors who write ASE calculators and systems.

Each check raises ``AssertionError`` with a message naming what is wrong,
so it can be called directly inside a pytest test::

    from mtcv_ase.testing import (check_calculator_contract,
                                  check_forces_finite_difference, check_system)

    def test_my_calculator():
        atoms = my_atoms()
        check_calculator_contract(MyCalculator(), atoms)
        check_forces_finite_difference(MyCalculator(), atoms)

    def test_my_system():
        check_system(MySystem())

Units are ASE's: positions in angstrom, energies in eV, forces in
eV/angstrom. The loss-head counterpart is :func:`mtcv_core.testing.check_loss_head`.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator


def numeric_forces(calc: Calculator, atoms: Atoms, delta: float = 1e-5,
                   mask: Sequence[Sequence[bool]] | np.ndarray | None = None) -> np.ndarray:
    """Central finite-difference forces -dE/dR, (n_atoms, 3) eV/angstrom.

    ``delta`` is the displacement in angstrom; coordinates where ``mask``
    (n_atoms, 3) is False are skipped (their force is left at zero).
    """
    probe = atoms.copy()
    probe.calc = calc
    base = probe.get_positions()
    active = np.ones(base.shape, bool) if mask is None else np.asarray(mask, bool)
    forces = np.zeros(base.shape)
    for a, k in zip(*np.nonzero(active), strict=True):
        energies = []
        for sign in (1.0, -1.0):
            pos = base.copy()
            pos[a, k] += sign * delta
            probe.set_positions(pos, apply_constraint=False)
            energies.append(probe.get_potential_energy())
        forces[a, k] = -(energies[0] - energies[1]) / (2.0 * delta)
    return forces


def check_forces_finite_difference(calc: Calculator, atoms: Atoms, delta: float = 1e-5,
                                   rtol: float = 1e-5, atol: float = 1e-6,
                                   mask: Sequence[Sequence[bool]] | np.ndarray | None = None
                                   ) -> tuple[np.ndarray, np.ndarray]:
    """Assert that ``calc``'s forces equal central finite differences of its energy.

    Parameters
    ----------
    calc : ASE calculator under test (attached to a copy of ``atoms``)
    atoms : configuration, angstrom
    delta : finite-difference step, angstrom
    rtol, atol : tolerances of ``np.testing.assert_allclose`` (atol in eV/angstrom)
    mask : (n_atoms, 3) bool, optional; only these coordinates are compared

    Returns
    -------
    (analytic, numeric) forces, each (n_atoms, 3) eV/angstrom.

    Raises
    ------
    AssertionError
        Naming the worst atom/coordinate when they differ.
    """
    probe = atoms.copy()
    probe.calc = calc
    analytic = np.asarray(probe.get_forces(apply_constraint=False), dtype=np.float64)
    numeric = numeric_forces(calc, atoms, delta=delta, mask=mask)
    active = np.ones(analytic.shape, bool) if mask is None else np.asarray(mask, bool)
    diff = np.where(active, np.abs(analytic - numeric), 0.0)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    np.testing.assert_allclose(
        np.where(active, analytic, 0.0), numeric, rtol=rtol, atol=atol,
        err_msg=(f"{type(calc).__name__}: forces differ from central finite differences "
                 f"(delta={delta} angstrom); worst at atom {worst[0]}, coordinate "
                 f"{'xyz'[worst[1]]}: analytic {analytic[worst]:.8g}, "
                 f"numeric {numeric[worst]:.8g} eV/angstrom"))
    return analytic, numeric


def check_calculator_contract(calc: Calculator, atoms: Atoms, *, displacement: float = 1e-2,
                              seed: int = 0) -> dict[str, Any]:
    """Assert that ``calc`` honours the ASE calculator contract mtcv relies on.

    Checked, on a copy of ``atoms`` with ``calc`` attached:

    1. ``calc.implemented_properties`` lists ``"energy"``, ``"forces"`` and
       every key the calculator puts in ``results``;
    2. ``get_potential_energy()`` is a finite scalar float (eV) and
       ``get_forces()`` a finite float array of shape ``(n_atoms, 3)``
       (eV/angstrom);
    3. asking twice gives the same results, and so does asking again after
       the calculator has evaluated another configuration (``atoms``
       displaced at random by up to ``displacement`` angstrom): the results
       are a pure function of the positions, with no hidden state.

    Parameters
    ----------
    calc : ase.calculators.calculator.Calculator
        Calculator under test; it is attached to copies of ``atoms``.
    atoms : ase.Atoms
        Configuration, positions in angstrom.
    displacement : float
        Size of the random displacement of the second configuration, angstrom.
    seed : int
        Seed of the displacement.

    Returns
    -------
    dict
        ``{"energy": float (eV), "forces": (n_atoms, 3) ndarray (eV/angstrom)}``
        of ``atoms``.

    Raises
    ------
    AssertionError
        Naming the calculator and the broken part of the contract.
    """
    name = type(calc).__name__
    props = list(getattr(calc, "implemented_properties", []))
    for prop in ("energy", "forces"):
        assert prop in props, (f"{name}.implemented_properties = {props} lacks {prop!r}")
    n_atoms = len(atoms)

    def evaluate(positions: np.ndarray) -> tuple[float, np.ndarray]:
        probe = atoms.copy()
        probe.calc = calc
        probe.set_positions(positions, apply_constraint=False)
        energy = probe.get_potential_energy()
        assert isinstance(energy, float | np.floating) and np.ndim(energy) == 0, (
            f"{name}: the energy must be a scalar float (eV), got {type(energy).__name__} "
            f"{energy!r}")
        assert np.isfinite(energy), f"{name}: the energy is not finite: {energy}"
        forces = probe.get_forces(apply_constraint=False)
        assert isinstance(forces, np.ndarray), (
            f"{name}: forces must be a numpy array, got {type(forces).__name__}")
        assert forces.shape == (n_atoms, 3), (
            f"{name}: forces must have shape ({n_atoms}, 3), got {forces.shape}")
        assert np.issubdtype(forces.dtype, np.floating), (
            f"{name}: forces must be floats, got dtype {forces.dtype}")
        assert np.all(np.isfinite(forces)), f"{name}: the forces are not finite"
        # a copy: a calculator may hand out (and later overwrite) its own buffer
        return float(energy), np.array(forces, dtype=np.float64)

    base = np.array(atoms.get_positions(), dtype=np.float64)
    e0, f0 = evaluate(base)
    unlisted = sorted(set(getattr(calc, "results", {})) - set(props))
    assert not unlisted, (f"{name}: results {unlisted} are not in implemented_properties "
                          f"{props} (calc.get_property would refuse them)")
    e1, f1 = evaluate(base)
    assert e1 == e0 and np.array_equal(f1, f0), (
        f"{name}: asking twice for the same configuration gave different results "
        f"(energy {e0!r} then {e1!r} eV)")
    rng = np.random.default_rng(seed)
    other = base + rng.uniform(-displacement, displacement, base.shape)
    evaluate(other)
    e2, f2 = evaluate(base)
    np.testing.assert_allclose(
        [e2], [e0], rtol=1e-12, atol=1e-12,
        err_msg=f"{name}: the energy of a configuration changed after another one was "
                "evaluated (hidden state?)")
    np.testing.assert_allclose(
        f2, f0, rtol=1e-12, atol=1e-12,
        err_msg=f"{name}: the forces of a configuration changed after another one was "
                "evaluated (hidden state?)")
    return {"energy": e0, "forces": f0}


def check_system(system: Any, *, n_walkers: int = 4, seed: int = 0,
                 finite_difference: bool = True, fd_delta: float = 1e-5,
                 fd_rtol: float = 1e-5, fd_atol: float = 1e-6) -> dict[str, Any]:
    """Assert that a :class:`mtcv_core.interfaces.System` works with mtcv.

    Checked:

    * ``name`` is a non-empty string and ``basins`` a non-empty tuple of
      distinct names;
    * for each basin, ``make_atoms(basin)`` returns an ``ase.Atoms`` whose
      calculator passes :func:`check_calculator_contract` (and, with
      ``finite_difference``, :func:`check_forces_finite_difference` on the
      active coordinates, ``dof_mask``), and whose configuration
      ``basin_index`` puts in that basin;
    * ``dof_mask`` is None or ``(n_atoms, 3)`` bool, and the calculator's
      force on every inactive coordinate is zero;
    * ``start_positions(basin, n, rng=..., split=s)`` gives ``(n, n_atoms, 3)``
      finite positions for ``s`` in ``"train"``, ``"test"``;
    * ``basin_index`` maps ``(n, n_atoms, 3)`` to ``(n,)`` integers in
      ``[-1, len(basins))``;
    * a system with ``supports_batch`` gives from ``energy_and_forces`` the
      same energies (eV, shape ``(n,)``) and forces (eV/angstrom,
      ``(n, n_atoms, 3)``) as its ASE calculator;
    * a system with true CVs (``true_cv_names``) returns ``(n, n_cv)`` from
      ``true_cv`` and, if it implements ``true_cv_module()`` (optional), the
      same values from that torch module on float64 positions;
    * a system that declares spectators (``spectator_names``) returns
      ``(n, n_spectators)`` from ``spectators``, and ``with_spectators`` with
      random values (periodic ones over their period, others over +-100 of
      their units) sets them, keeps every energy (to ``1e-6`` relative) and
      every basin label; its ``landmarks`` have the system's atom count;
    * the system pickles (Dask ships it to worker processes) and the copy
      computes the same energies.

    Parameters
    ----------
    system : mtcv_core.interfaces.System
        The system under test.
    n_walkers : int
        Configurations per basin drawn with ``start_positions``.
    seed : int
        Seed of the random generator handed to ``start_positions``.
    finite_difference : bool
        Also compare the calculator's forces with finite differences.
    fd_delta, fd_rtol, fd_atol : float
        Step (angstrom) and tolerances (atol in eV/angstrom) of the
        finite-difference check.

    Returns
    -------
    dict
        ``{"n_atoms": int, "positions": (n, n_atoms, 3) ndarray}``, the
        configurations that were checked (start positions of every basin).

    Raises
    ------
    AssertionError
        Naming the system and what is wrong.
    """
    name = getattr(system, "name", None)
    assert isinstance(name, str) and name, f"{type(system).__name__}.name must be a string"
    basins = tuple(system.basins)
    assert basins and len(set(basins)) == len(basins) and all(
        isinstance(b, str) and b for b in basins), (
        f"{name}: basins must be distinct non-empty names, got {basins!r}")
    rng = np.random.default_rng(seed)
    positions = []
    n_atoms = None
    for k, basin in enumerate(basins):
        atoms = system.make_atoms(basin)
        assert isinstance(atoms, Atoms), (
            f"{name}.make_atoms({basin!r}) must return ase.Atoms, got {type(atoms).__name__}")
        assert atoms.calc is not None, f"{name}.make_atoms({basin!r}) attached no calculator"
        n_atoms = len(atoms)
        mask = system.dof_mask
        if mask is not None:
            mask = np.asarray(mask)
            assert mask.shape == (n_atoms, 3) and mask.dtype == bool, (
                f"{name}.dof_mask must be a (n_atoms, 3) bool array, got {mask.dtype} "
                f"{mask.shape}")
        result = check_calculator_contract(atoms.calc, atoms)
        if mask is not None:
            assert np.all(result["forces"][~mask] == 0.0), (
                f"{name}: non-zero force on an inactive coordinate (dof_mask False)")
        if finite_difference:
            check_forces_finite_difference(atoms.calc, atoms, delta=fd_delta, rtol=fd_rtol,
                                           atol=fd_atol, mask=mask)
        label = np.asarray(system.basin_index(atoms.get_positions()[None]))
        assert label.shape == (1,) and int(label[0]) == k, (
            f"{name}: make_atoms({basin!r}) is not in basin {basin!r} by basin_index "
            f"(label {label.tolist()}, expected [{k}])")
        for split in ("train", "test"):
            start = np.asarray(system.start_positions(basin, n_walkers, rng=rng, split=split))
            assert start.shape == (n_walkers, n_atoms, 3), (
                f"{name}.start_positions({basin!r}, {n_walkers}, split={split!r}) has shape "
                f"{start.shape}, expected ({n_walkers}, {n_atoms}, 3)")
            assert np.all(np.isfinite(start)), f"{name}: start positions are not finite"
            positions.append(start)
    pos = np.concatenate(positions)
    labels = np.asarray(system.basin_index(pos))
    assert labels.shape == (len(pos),) and np.issubdtype(labels.dtype, np.integer), (
        f"{name}.basin_index must return (n,) integers, got {labels.dtype} {labels.shape}")
    assert labels.min() >= -1 and labels.max() < len(basins), (
        f"{name}.basin_index returned labels outside [-1, {len(basins)})")

    atoms = system.make_atoms(basins[0])
    calc = atoms.calc
    e_ref, f_ref = [], []
    for x in pos:
        probe = atoms.copy()
        probe.calc = calc
        probe.set_positions(x, apply_constraint=False)
        e_ref.append(probe.get_potential_energy())
        f_ref.append(np.array(probe.get_forces(apply_constraint=False)))
    e_ref, f_ref = np.array(e_ref), np.array(f_ref)
    if system.supports_batch:
        e, f = system.energy_and_forces(pos)
        e, f = np.asarray(e), np.asarray(f)
        assert e.shape == (len(pos),) and f.shape == pos.shape, (
            f"{name}.energy_and_forces: shapes {e.shape}, {f.shape}; expected "
            f"({len(pos)},), {pos.shape}")
        scale = 1.0 + float(np.abs(e_ref).max())
        np.testing.assert_allclose(e, e_ref, rtol=1e-7, atol=1e-9 * scale,
                                   err_msg=f"{name}: energy_and_forces energies differ from "
                                           "the ASE calculator's")
        fscale = 1.0 + float(np.abs(f_ref).max())
        np.testing.assert_allclose(f, f_ref, rtol=1e-6, atol=1e-8 * fscale,
                                   err_msg=f"{name}: energy_and_forces forces differ from "
                                           "the ASE calculator's")
    if tuple(system.true_cv_names):
        cv = np.asarray(system.true_cv(pos))
        n_cv = len(system.true_cv_names)
        assert cv.shape == (len(pos), n_cv), (
            f"{name}.true_cv: shape {cv.shape}, expected ({len(pos)}, {n_cv})")
        try:
            module = system.true_cv_module()
        except NotImplementedError:  # optional: only needed for umbrella runs along them
            module = None
        if module is not None:
            import torch

            with torch.no_grad():
                cv_t = module(torch.as_tensor(pos, dtype=torch.float64)).double().numpy()
            np.testing.assert_allclose(cv_t, cv, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{name}: true_cv_module() differs from "
                                               "true_cv()")
    if tuple(getattr(system, "spectator_names", ())):
        _check_spectators(system, name, pos, e_ref, labels, rng)
    clone = pickle.loads(pickle.dumps(system))
    atoms2 = clone.make_atoms(basins[0])
    atoms2.set_positions(pos[0], apply_constraint=False)
    np.testing.assert_allclose(atoms2.get_potential_energy(), e_ref[0], rtol=1e-10,
                               atol=1e-10, err_msg=f"{name}: a pickled copy computes another "
                                                   "energy")
    return {"n_atoms": n_atoms, "positions": pos}


def _check_spectators(system: Any, name: str, pos: np.ndarray, energy: np.ndarray,
                      labels: np.ndarray, rng: np.random.Generator) -> None:
    """The spectator contract (see :func:`check_system`)."""
    names = tuple(system.spectator_names)
    k = len(names)
    periods = np.asarray(tuple(getattr(system, "spectator_periods", ())) or (0.0,) * k, float)
    assert periods.shape == (k,), (
        f"{name}: {len(periods)} spectator_periods for {k} spectator_names")
    values = np.asarray(system.spectators(pos))
    assert values.shape == (len(pos), k), (
        f"{name}.spectators: shape {values.shape}, expected ({len(pos)}, {k})")
    new = np.where(periods > 0, rng.uniform(0.0, 1.0, (len(pos), k)) * periods,
                   rng.uniform(-100.0, 100.0, (len(pos), k)))
    moved = np.asarray(system.with_spectators(pos, new))
    assert moved.shape == pos.shape, (
        f"{name}.with_spectators: shape {moved.shape}, expected {pos.shape}")
    got = np.asarray(system.spectators(moved))
    delta = got - new
    delta = np.where(periods > 0, (delta + periods / 2) % np.where(periods > 0, periods, 1)
                     - periods / 2, delta)
    assert np.allclose(delta, 0.0, atol=1e-6), (
        f"{name}.with_spectators does not set the spectators it was given")
    atoms = system.make_atoms(system.basins[0])
    e_moved = []
    for x in moved:
        probe = atoms.copy()
        probe.calc = atoms.calc
        probe.set_positions(x, apply_constraint=False)
        e_moved.append(probe.get_potential_energy())
    np.testing.assert_allclose(e_moved, energy, rtol=1e-6, atol=1e-6 * (1 + np.abs(energy).max()),
                               err_msg=f"{name}: moving the spectators changed the energy")
    assert np.array_equal(np.asarray(system.basin_index(moved)), labels), (
        f"{name}: moving the spectators changed a basin label")
    n_atoms = pos.shape[1]
    for mark, (where, label) in system.landmarks().items():
        assert np.shape(where) == (n_atoms, 3), (
            f"{name}.landmarks()[{mark!r}] has shape {np.shape(where)}, expected "
            f"({n_atoms}, 3)")
        assert -1 <= int(label) < len(system.basins), (
            f"{name}.landmarks()[{mark!r}]: basin label {label} out of range")


__all__ = ["numeric_forces", "check_forces_finite_difference", "check_calculator_contract",
           "check_system"]
