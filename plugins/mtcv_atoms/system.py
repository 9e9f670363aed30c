"""Any ``ase.Atoms`` with any ASE calculator as an mtcv ``System``, declared
in the config (system ``"ase"``)::

    system = "ase"
    [system_options]
    structure = "slab.traj"                  # anything ase.io.read opens
    index = ":"                              # which frames (ase.io.read's index)
    calculator = "ase.calculators.emt:EMT"   # "module:attribute", called with calculator_options
    calculator_options = {}
    true_cvs = ["x_ad"]                      # optional: the reference umbrella and plots
    temperature_K = 300.0

    [system_options.cvs]                     # mtcv_atoms.cvs: named geometric CVs
    x_ad = { kind = "position", atom = 12, axis = 0 }

    [system_options.basins]                  # every listed range must hold
    A = { x_ad = [-0.6, 0.6] }
    B = { x_ad = [2.3, 3.4] }

Start structures: each frame of ``structure`` (or of the file a
``basin_structures`` table names per basin) is relaxed (``ase.optimize.BFGS``,
``relax_fmax`` eV/angstrom, at most ``relax_steps`` steps; constraints
honoured) and must then lie in a basin; every basin needs one. Paths are
relative to the working directory. Masses, the cell, periodic boundaries and
constraints (``FixAtoms``, ``FixCartesian``) come from the structure file;
fixed coordinates are the system's ``dof_mask``. The calculator is built
anew for every ``Atoms`` (on the Dask worker that uses it: the system
pickles without it). A calculator whose class defines
``batch_energy_and_forces`` (:mod:`mtcv_ase.batched`) makes the system
batched (``supports_batch``): the MD engines advance all walkers of a task
together; otherwise they run ASE's own ``Langevin`` on it, walker by walker.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mtcv_atoms.cvs import CVSpec, GeometricCVs, parse_cvs, wrap
from mtcv_core.config import ConfigError
from mtcv_core.interfaces import System


def load_calculator(path: str, options: Mapping[str, Any], where: str = "calculator") -> Any:
    """The factory ``module:attribute`` (imported) -- ConfigError naming
    ``where`` when it cannot be imported or is not callable."""
    if not isinstance(path, str) or ":" not in path:
        raise ConfigError(f"{where}: expected \"module:attribute\" (e.g. "
                          f"\"ase.calculators.emt:EMT\"), got {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module's own failure
        raise ConfigError(f"{where}: cannot import {module_name!r} ({type(exc).__name__}: "
                          f"{exc})") from None
    factory: Any = module
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ConfigError(f"{where}: module {module_name!r} has no {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ConfigError(f"{where}: {path!r} is not callable")
    if not isinstance(options, Mapping):
        raise ConfigError(f"calculator_options: expected a table, got {options!r}")
    return factory


def read_structures(path: str, index: str | int, where: str) -> list[Any]:
    """The frames of ``path`` (ase.io.read with ``index``), each a list
    element; ConfigError naming ``where`` when ASE cannot read it."""
    from ase.io import read

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{where}: {path}: no such file")
    try:
        frames = read(p, index=index)
    except Exception as exc:
        raise ConfigError(f"{where}: {path}: ase.io.read cannot read it "
                          f"({type(exc).__name__}: {exc})") from None
    frames = frames if isinstance(frames, list) else [frames]
    frames = [f for f in frames if len(f)]  # ASE reads a PDB's trailing END as an empty frame
    if not frames:
        raise ConfigError(f"{where}: {path}: no frames (index {index!r})")
    return frames


class AseSystem(System):
    """A system declared in the config: structure file, ASE calculator,
    geometric CVs and basins as ranges of them (module docstring).

    Parameters
    ----------
    structure : str
        File ``ase.io.read`` opens; its frames are the start structures.
    calculator : str
        ``"module:attribute"`` of a calculator class or factory.
    cvs : table
        Named CVs, :mod:`mtcv_atoms.cvs`.
    basins : table
        basin -> {cv name -> [lo, hi]}; every range must hold; ranges of a
        periodic CV wrap (lo > hi crosses the period's edge).
    calculator_options : table
        Keyword arguments of the calculator.
    true_cvs : list of str
        CVs (names in ``cvs``) the reference umbrella runs along; the basins
        along them are their ranges of these CVs.
    basin_structures : table
        basin -> file, instead of assigning the frames of ``structure``.
    index : str or int
        ``ase.io.read`` index into ``structure`` (default: every frame).
    temperature_K : float
        Default temperature of the experiments, K.
    relax_steps, relax_fmax :
        Relaxation of the start structures (0 steps: none).
    """

    name: ClassVar[str] = "ase"

    def __init__(self, *, structure: str, calculator: str, cvs: Mapping[str, Any],
                 basins: Mapping[str, Any], calculator_options: Mapping[str, Any] | None = None,
                 true_cvs: Sequence[str] = (), basin_structures: Mapping[str, str] | None = None,
                 index: str | int = ":", temperature_K: float = 300.0, relax_steps: int = 200,
                 relax_fmax: float = 0.05) -> None:
        self.calculator_path = calculator
        self.calculator_options = dict(calculator_options or {})
        load_calculator(calculator, self.calculator_options)
        if isinstance(temperature_K, bool) or not isinstance(temperature_K, int | float) \
                or not temperature_K > 0:
            raise ConfigError(f"temperature_K: expected a temperature > 0 (K), got "
                              f"{temperature_K!r}")
        self.temperature_K = float(temperature_K)
        if isinstance(relax_steps, bool) or not isinstance(relax_steps, int) or relax_steps < 0:
            raise ConfigError(f"relax_steps: expected an integer >= 0, got {relax_steps!r}")
        if not isinstance(relax_fmax, int | float) or not relax_fmax > 0:
            raise ConfigError(f"relax_fmax: expected a force > 0 (eV/angstrom), got "
                              f"{relax_fmax!r}")
        frames = [self._prepare(a) for a in read_structures(structure, index, "structure")]
        template = frames[0]
        self.structure = str(structure)
        self.n_atoms = len(template)
        self._cell = np.array(template.cell.array, float)
        self._pbc = np.array(template.pbc, bool)
        self.specs: list[CVSpec] = parse_cvs(cvs, n_atoms=self.n_atoms, cell=self._cell,
                                            pbc=self._pbc)
        self.cv_names = tuple(s.name for s in self.specs)
        self.ranges = self._parse_basins(basins)
        self.basins = tuple(self.ranges)
        self._parse_true_cvs(true_cvs)
        self.template = template.copy()
        self.template.calc = None
        self.relax_steps, self.relax_fmax = int(relax_steps), float(relax_fmax)
        self._module: GeometricCVs | None = None
        self._batch_calculator: Any = None
        self.minima = self._start_structures(frames, basin_structures, index)

    def _prepare(self, atoms: Any) -> Any:
        """A frame as read from a structure file, before anything uses it
        (subclasses set what the file does not say, e.g. masses)."""
        return atoms

    # ------------------------------------------------------------ config
    def _parse_basins(self, table: Mapping[str, Any]) -> dict[str, dict[int, tuple[float, float]]]:
        if not isinstance(table, Mapping) or len(table) < 2:
            raise ConfigError("basins: expected a table of at least two basins, e.g. "
                              "{ A = { d = [1.0, 1.5] }, B = { d = [2.5, 3.0] } }")
        ranges: dict[str, dict[int, tuple[float, float]]] = {}
        for basin, spec in table.items():
            at = f"basins.{basin}"
            if not isinstance(spec, Mapping) or not spec:
                raise ConfigError(f"{at}: expected a table of CV ranges, e.g. "
                                  f"{{ {self.cv_names[0]} = [lo, hi] }}")
            ranges[str(basin)] = {}
            for cv, rng in spec.items():
                if cv not in self.cv_names:
                    raise ConfigError(f"{at}.{cv}: no such CV; CVs are {list(self.cv_names)}")
                if (not isinstance(rng, list | tuple) or len(rng) != 2
                        or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                   and math.isfinite(v) for v in rng)):
                    raise ConfigError(f"{at}.{cv}: expected [lo, hi] (two numbers), got {rng!r}")
                i = self.cv_names.index(cv)
                lo, hi = float(rng[0]), float(rng[1])
                if lo >= hi and self.specs[i].period == 0:
                    raise ConfigError(f"{at}.{cv}: expected lo < hi, got {list(rng)!r}")
                ranges[str(basin)][i] = (lo, hi)
        names = list(ranges)
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                if not self._disjoint(ranges[names[a]], ranges[names[b]]):
                    raise ConfigError(
                        f"basins.{names[b]}: overlaps basins.{names[a]}: two basins need "
                        "disjoint ranges of at least one CV they both restrict")
        return ranges

    def _disjoint(self, ra: Mapping[int, tuple[float, float]],
                  rb: Mapping[int, tuple[float, float]], only: Sequence[int] | None = None
                  ) -> bool:
        for i in set(ra) & set(rb):
            if only is not None and i not in only:
                continue
            period = self.specs[i].period
            if period == 0:
                (a0, a1), (b0, b1) = ra[i], rb[i]
                if a1 < b0 or b1 < a0:
                    return True
            else:
                grid = np.linspace(-period / 2, period / 2, 3601)
                both = self._inside(grid, ra[i], period) & self._inside(grid, rb[i], period)
                if not both.any():
                    return True
        return False

    def _parse_true_cvs(self, true_cvs: Sequence[str]) -> None:
        if isinstance(true_cvs, str) or not isinstance(true_cvs, list | tuple):
            raise ConfigError(f"true_cvs: expected a list of CV names, got {true_cvs!r}")
        for k, name in enumerate(true_cvs):
            if name not in self.cv_names:
                raise ConfigError(f"true_cvs[{k}]: no CV {name!r}; CVs are {list(self.cv_names)}")
        self.true_index = [self.cv_names.index(n) for n in true_cvs]
        self.true_cv_names = tuple(true_cvs)
        units = {self.specs[i].units for i in self.true_index}
        self.true_cv_units = units.pop() if len(units) == 1 else "1"
        self.true_cv_periods = tuple(self.specs[i].period for i in self.true_index)
        names = list(self.ranges)
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                if true_cvs and not self._disjoint(self.ranges[names[a]], self.ranges[names[b]],
                                                   only=self.true_index):
                    raise ConfigError(
                        f"true_cvs: basins {names[a]} and {names[b]} are not told apart by "
                        f"the true CVs {list(true_cvs)} alone; the reference umbrella needs "
                        "basins along them (give disjoint ranges of a true CV)")

    # ------------------------------------------------------------ start structures
    def _start_structures(self, frames: list[Any], basin_structures: Mapping[str, str] | None,
                          index: str | int) -> dict[str, np.ndarray]:
        if basin_structures is not None:
            if not isinstance(basin_structures, Mapping):
                raise ConfigError(f"basin_structures: expected a table basin -> file, got "
                                  f"{basin_structures!r}")
            minima = {}
            for basin, path in basin_structures.items():
                if basin not in self.basins:
                    raise ConfigError(f"basin_structures.{basin}: no such basin; basins are "
                                      f"{list(self.basins)}")
                atoms = self._prepare(read_structures(path, -1, f"basin_structures.{basin}")[0])
                self._same_system(atoms, f"basin_structures.{basin}: {path}")
                x = self._relax(atoms)
                got = int(self.basin_index(x[None])[0])
                if got != self.basins.index(basin):
                    raise ConfigError(
                        f"basin_structures.{basin}: {path} relaxes to {self._where(x)}, "
                        f"which is {'in basin ' + self.basins[got] if got >= 0 else 'in no basin'}"
                        f"; expected basin {basin} {self._ranges_text(basin)}")
                minima[basin] = x
            frames = frames if len(minima) < len(self.basins) else []
        else:
            minima = {}
        for k, atoms in enumerate(frames):
            self._same_system(atoms, f"structure: {self.structure} frame {k}")
            x = self._relax(atoms)
            got = int(self.basin_index(x[None])[0])
            if got < 0:
                raise ConfigError(
                    f"structure: {self.structure} frame {k} (index {index!r}) relaxes to "
                    f"{self._where(x)}, in no basin; basins are "
                    + "; ".join(f"{b} {self._ranges_text(b)}" for b in self.basins))
            minima.setdefault(self.basins[got], x)
        missing = [b for b in self.basins if b not in minima]
        if missing:
            raise ConfigError(
                f"basins.{missing[0]}: no start structure relaxes into it (structure "
                f"{self.structure}, {len(frames)} frame(s)); add a frame in basin {missing[0]} "
                f"{self._ranges_text(missing[0])} or name a file in basin_structures")
        return {b: minima[b] for b in self.basins}

    def _same_system(self, atoms: Any, where: str) -> None:
        if len(atoms) != self.n_atoms:
            raise ConfigError(f"{where}: {len(atoms)} atoms, the structure has {self.n_atoms}")

    def _relax(self, atoms: Any) -> np.ndarray:
        """Positions (n_atoms, 3) after a short BFGS relaxation."""
        if self.relax_steps == 0:
            return np.array(atoms.get_positions(), float)
        from ase.optimize import BFGS

        a = atoms.copy()
        a.calc = self.new_calculator()
        BFGS(a, logfile=None).run(fmax=self.relax_fmax, steps=self.relax_steps)
        return np.array(a.get_positions(), float)

    def _where(self, x: np.ndarray) -> str:
        values = self.cv_values(x[None])[0]
        return "(" + ", ".join(f"{n} = {v:.4g}" for n, v in zip(self.cv_names, values,
                                                               strict=True)) + ")"

    def _ranges_text(self, basin: str) -> str:
        return "(" + ", ".join(f"{self.cv_names[i]} in [{lo:g}, {hi:g}]"
                               for i, (lo, hi) in self.ranges[basin].items()) + ")"

    # ------------------------------------------------------------ System
    @property
    def supports_batch(self) -> bool:
        """Whether the calculator evaluates many configurations at once
        (its class defines ``batch_energy_and_forces``,
        :mod:`mtcv_ase.batched`) or a subclass overrides
        :meth:`energy_and_forces`: then the batched engines run it."""
        from mtcv_ase.batched import can_batch

        if type(self).energy_and_forces is not AseSystem.energy_and_forces:
            return True  # a subclass evaluates batches its own way
        return can_batch(load_calculator(self.calculator_path, self.calculator_options))

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The calculator's ``batch_energy_and_forces``: (n, n_atoms, 3)
        angstrom -> energy (n,) eV, forces (n, n_atoms, 3) eV/angstrom (one
        calculator per process, built on first use)."""
        if self._batch_calculator is None:  # checked once, not on every MD step
            if not self.supports_batch:
                raise NotImplementedError(f"calculator {self.calculator_path} evaluates one "
                                          "configuration at a time (no batch_energy_and_forces)")
            self._batch_calculator = self.new_calculator()
        x = np.asarray(positions, float).reshape(-1, self.n_atoms, 3)
        return self._batch_calculator.batch_energy_and_forces(x)

    def new_calculator(self) -> Any:
        """A new calculator from ``calculator`` and ``calculator_options``."""
        factory = load_calculator(self.calculator_path, self.calculator_options)
        try:
            return factory(**self.calculator_options)
        except Exception as exc:
            raise ConfigError(f"calculator: {self.calculator_path}(**{self.calculator_options!r})"
                              f" failed ({type(exc).__name__}: {exc}); check "
                              "calculator_options") from None

    def make_atoms(self, basin: str | None = None) -> Any:
        atoms = self.template.copy()
        atoms.set_positions(self.minima[self.basin_name(basin)])
        atoms.calc = self.new_calculator()
        return atoms

    @property
    def dof_mask(self) -> np.ndarray | None:
        """(n_atoms, 3) bool: False where a FixAtoms / FixCartesian
        constraint of the structure holds the coordinate; None without any."""
        from ase.constraints import FixAtoms, FixCartesian

        mask = np.ones((self.n_atoms, 3), bool)
        for c in self.template.constraints:
            if isinstance(c, FixAtoms):
                mask[c.index] = False
            elif isinstance(c, FixCartesian):
                mask[c.index] &= ~np.asarray(c.mask, bool).reshape(-1, 3)
            else:
                raise ConfigError(f"structure: {self.structure}: constraint "
                                  f"{type(c).__name__} is not supported (FixAtoms and "
                                  "FixCartesian are)")
        return None if mask.all() else mask

    @property
    def cell(self) -> np.ndarray | None:
        """(3, 3) angstrom of the structure when it is periodic, else None."""
        return self._cell.copy() if self._pbc.any() else None

    @property
    def pbc(self) -> np.ndarray | None:
        return self._pbc.copy() if self._pbc.any() else None

    def cv_module(self) -> GeometricCVs:
        """Every CV of ``cvs`` as one module, positions (n, n_atoms, 3) -> (n, k)."""
        if self._module is None:
            self._module = GeometricCVs(self.specs, self._cell, self._pbc)
        return self._module

    def cv_values(self, positions: np.ndarray) -> np.ndarray:
        """(n, n_atoms, 3) angstrom -> (n, k) values of every CV."""
        x = torch.as_tensor(np.asarray(positions, float).reshape(-1, self.n_atoms, 3))
        with torch.no_grad():
            return self.cv_module()(x).numpy()

    @staticmethod
    def _inside(v: np.ndarray, rng: tuple[float, float], period: float) -> np.ndarray:
        lo, hi = rng
        if period == 0:
            return (v >= lo) & (v <= hi)
        return wrap(v - lo, period) % period <= (hi - lo) % period

    def _label(self, values: np.ndarray, columns: Mapping[int, int]) -> np.ndarray:
        """Basin of each row of ``values`` whose column ``columns[i]`` holds
        CV ``i``; ranges on CVs not in ``columns`` are ignored."""
        out = np.full(len(values), -1, dtype=np.int64)
        for b, basin in enumerate(self.basins):
            inside = np.ones(len(values), bool)
            for i, rng in self.ranges[basin].items():
                if i in columns:
                    inside &= self._inside(values[:, columns[i]], rng, self.specs[i].period)
            out[inside & (out < 0)] = b
        return out

    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        values = self.cv_values(positions)
        return self._label(values, {i: i for i in range(len(self.specs))})

    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        if not self.true_index:
            raise NotImplementedError("system 'ase' has no true CVs (system_options.true_cvs)")
        return self.cv_values(positions)[:, self.true_index]

    def true_cv_module(self) -> Any:
        if not self.true_index:
            raise NotImplementedError("system 'ase' has no true CVs (system_options.true_cvs)")
        return GeometricCVs([self.specs[i] for i in self.true_index], self._cell, self._pbc)

    def basin_index_cv(self, cv: np.ndarray) -> np.ndarray:
        if not self.true_index:
            raise NotImplementedError("system 'ase' has no true CVs (system_options.true_cvs)")
        cv = np.asarray(cv, float).reshape(-1, len(self.true_index))
        return self._label(cv, {i: c for c, i in enumerate(self.true_index)})

    def landmarks(self) -> dict[str, tuple[np.ndarray, int]]:
        return {b: (x, k) for k, (b, x) in enumerate(self.minima.items())}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "structure": self.structure,
                "calculator": self.calculator_path,
                "calculator_options": self.calculator_options, "n_atoms": self.n_atoms,
                "pbc": self._pbc.tolist(),
                "cvs": {s.name: {"kind": s.kind, **s.params} for s in self.specs},
                "basins": {b: {self.cv_names[i]: list(r) for i, r in rs.items()}
                           for b, rs in self.ranges.items()}}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_module"] = None  # rebuilt on use
        state["_batch_calculator"] = None
        return state
