"""Attach mtcv's umbrella bias to any ASE calculator and run ASE's Langevin MD.

:class:`mtcv_umbrella.bias.UmbrellaBias` wraps an ASE calculator and adds
``0.5 k (xi(R) - center)^2`` on a CV ``xi``: any torch module mapping
positions (n, n_atoms, 3) angstrom to (n, d) -- a hand-written one as here,
a system's true CVs, or the ``cv.ts`` that ``mtcv run`` trains
(``torch.jit.load("runs/quick/cv.ts")``). Forces of the bias come from
autograd; the calculator reports ``cv``, ``bias_energy`` and
``unbiased_energy`` among its results. The core of it::

    atoms.calc = UmbrellaBias(EMT(), cv, center=[2.9], k=[5.0])
    Langevin(atoms, 1 * units.fs, temperature_K=300, friction=0.01 / units.fs).run(500)

Default: a Cu3 cluster on ASE's EMT potential, restrained along the Cu0-Cu1
distance (angstrom). With ``--system NAME`` the atoms and calculator come from
an mtcv system (e.g. ``muller_brown_5d``) and the CV from ``--cv cv.ts`` (or
the system's first true CV when no file is given).

Usage::

    python examples/attach_umbrella_bias.py [--small] [--steps N] [--center C] [--k K]
                                            [--system NAME] [--cv cv.ts] [--out DIR]

``--small`` (200 steps, a second or two) is what the tests run. Prints the
mean CV of the biased run next to the window's center.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


class Distance(torch.nn.Module):
    """xi = |R_i - R_j|: positions (n, n_atoms, 3) angstrom -> (n, 1) angstrom."""

    def __init__(self, i: int, j: int) -> None:
        super().__init__()
        self.i, self.j = int(i), int(j)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        d = positions[:, self.i] - positions[:, self.j]
        return torch.sqrt((d * d).sum(dim=1, keepdim=True))


class Column(torch.nn.Module):
    """Column ``k`` of another CV module's output, (n, 1)."""

    def __init__(self, cv: torch.nn.Module, k: int = 0) -> None:
        super().__init__()
        self.cv, self.k = cv, int(k)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.cv(positions)[:, self.k:self.k + 1]


def setup(args: argparse.Namespace):
    """(atoms with their physical calculator, CV module, default center)."""
    if args.system is None:
        from ase import Atoms
        from ase.calculators.emt import EMT

        atoms = Atoms("Cu3", positions=[[0.0, 0.0, 0.0], [2.5, 0.0, 0.0], [1.25, 2.17, 0.0]],
                      pbc=False)
        atoms.calc = EMT()
        return atoms, Distance(0, 1), 2.9
    from mtcv_core.plugins import load_plugins

    system = load_plugins().create("system", args.system)
    atoms = system.make_atoms()
    if args.cv:
        cv = torch.jit.load(args.cv, map_location="cpu")
    else:
        cv = Column(system.true_cv_module(), 0)
    with torch.no_grad():
        xi0 = float(cv(torch.as_tensor(atoms.get_positions()[None]))[0, 0])
    return atoms, cv, xi0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="200 steps (tests)")
    parser.add_argument("--steps", type=int, default=None, help="MD steps (default 5000)")
    parser.add_argument("--center", type=float, default=None, help="window center, CV units")
    parser.add_argument("--k", type=float, default=5.0, help="spring, eV / CV unit^2")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--system", default=None, help="an mtcv system instead of EMT Cu3")
    parser.add_argument("--cv", default=None, help="TorchScript CV file (cv.ts of mtcv run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("attach_umbrella_bias_out"),
                        help="folder for cv.txt (time in fs and xi every 5 steps)")
    args = parser.parse_args(argv)

    from ase import units
    from ase.md.langevin import Langevin

    from mtcv_ase.md import maxwell_boltzmann
    from mtcv_umbrella.bias import UmbrellaBias

    steps = args.steps or (200 if args.small else 5000)
    atoms, cv, center = setup(args)
    center = center if args.center is None else args.center
    physical = atoms.calc

    # --- the few lines that matter -------------------------------------
    atoms.calc = UmbrellaBias(physical, cv, center=[center], k=[args.k])
    rng = np.random.default_rng(args.seed)
    atoms.set_velocities(maxwell_boltzmann(atoms.get_masses(), args.temperature, rng))
    dyn = Langevin(atoms, timestep=1.0 * units.fs, temperature_K=args.temperature,
                   friction=0.01 / units.fs, fixcm=False, rng=rng)
    samples: list[float] = []

    def record() -> None:
        atoms.get_potential_energy()  # results are current after each step
        samples.append(float(atoms.calc.results["cv"][0]))

    dyn.attach(record, interval=5)
    dyn.run(steps)
    # --------------------------------------------------------------------

    args.out.mkdir(parents=True, exist_ok=True)
    time_fs = 5.0 * np.arange(len(samples))  # ASE calls observers at step 0 too
    np.savetxt(args.out / "cv.txt", np.column_stack([time_fs, samples]),
               header="time_fs xi", fmt="%.6f")
    xi = np.array(samples[len(samples) // 5:])  # drop the first fifth (equilibration)
    res = atoms.calc.results
    assert np.all(np.isfinite(xi)) and xi.size > 0
    print(f"{steps} steps of Langevin MD at {args.temperature:g} K with UmbrellaBias("
          f"{type(physical).__name__}, k={args.k:g}, center={center:.4g})")
    print(f"mean CV {xi.mean():.4f} (std {xi.std():.4f}), center {center:.4f}; "
          f"last bias {res['bias_energy']:.4f} eV, unbiased {res['unbiased_energy']:.4f} eV")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
