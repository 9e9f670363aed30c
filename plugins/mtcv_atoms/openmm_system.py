"""Any molecule in vacuum from a PDB file and OpenMM force-field XML files
(system ``"openmm"``), with the same geometric CVs and basins as system
``"ase"``::

    system = "openmm"
    [system_options]
    pdb = "valine_dipeptide.pdb"          # one MODEL per basin (or basin_structures)
    forcefield = ["amber99sb.xml"]        # OpenMM's own files or paths
    true_cvs = ["phi"]

    [system_options.cvs]
    phi = { kind = "dihedral", atoms = [4, 6, 8, 24] }
    psi = { kind = "dihedral", atoms = [6, 8, 24, 26] }

    [system_options.basins]
    C7eq = { phi = [-2.2, -0.6] }
    C7ax = { phi = [0.6, 1.8] }

The force field is applied as for alanine dipeptide
(:func:`mtcv_ase.openmm_forcefield.create_openmm_system`: NoCutoff, no
constraints, no centre-of-mass motion remover). The ASE calculator is an
:class:`~mtcv_ase.openmm_forcefield.OpenMMCalculator` of that system and the
batched engines run the same energy through
:class:`~mtcv_ase.openmm_forcefield.VectorizedForceField` (``supports_batch``):
harmonic bonds and angles, periodic torsions and NoCutoff Lennard-Jones +
Coulomb with exceptions. Masses come from the force field. Units: angstrom,
eV, eV/angstrom, amu.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtcv_atoms.system import AseSystem
from mtcv_core.config import ConfigError


def build_openmm_system(pdb: str, forcefield: Sequence[str]) -> Any:
    """The vacuum ``openmm.System`` of the PDB file's topology with the
    force-field files; ConfigError naming the key that is wrong."""
    from openmm import app

    if not Path(pdb).is_file():
        raise ConfigError(f"pdb: {pdb}: no such file")
    if isinstance(forcefield, str) or not isinstance(forcefield, list | tuple) or not forcefield:
        raise ConfigError(f"forcefield: expected a list of OpenMM force-field XML files, e.g. "
                          f"[\"amber99sb.xml\"], got {forcefield!r}")
    try:
        topology = app.PDBFile(str(pdb)).topology
    except Exception as exc:
        raise ConfigError(f"pdb: {pdb}: OpenMM cannot read it ({type(exc).__name__}: "
                          f"{exc})") from None
    for k, f in enumerate(forcefield):
        try:
            app.ForceField(f)
        except Exception as exc:
            raise ConfigError(f"forcefield[{k}]: {f!r} is neither a file nor one of OpenMM's "
                              f"force fields ({type(exc).__name__}: {exc})") from None
    from mtcv_ase.openmm_forcefield import create_openmm_system

    try:
        return create_openmm_system(topology, tuple(forcefield))
    except Exception as exc:  # template matching: a residue the files do not describe
        raise ConfigError(f"forcefield: {list(forcefield)} cannot parametrise {pdb} "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None


class OpenMMSystem(AseSystem):
    """A molecule in vacuum: PDB + OpenMM force field, geometric CVs and
    basins as ranges of them (module docstring; the CV, basin and start
    structure options are those of :class:`~mtcv_atoms.system.AseSystem`).

    Parameters
    ----------
    pdb : str
        PDB file: the topology (residues, atom names, bonds by OpenMM's
        templates) and, one per MODEL, the start structures.
    forcefield : list of str
        OpenMM force-field XML files (OpenMM's own, e.g. ``amber99sb.xml``,
        or paths).
    platform : str
        OpenMM platform of the ASE calculator (``"Reference"`` or ``"CPU"``).
    """

    name: ClassVar[str] = "openmm"

    def __init__(self, *, pdb: str, cvs: Mapping[str, Any], basins: Mapping[str, Any],
                 forcefield: Sequence[str] = ("amber99sb.xml",), platform: str = "Reference",
                 true_cvs: Sequence[str] = (), basin_structures: Mapping[str, str] | None = None,
                 index: str | int = ":", temperature_K: float = 300.0, relax_steps: int = 200,
                 relax_fmax: float = 0.05) -> None:
        import openmm as mm

        from mtcv_ase.openmm_forcefield import UnsupportedForceError, VectorizedForceField

        if platform not in ("Reference", "CPU"):
            raise ConfigError(f"platform: expected \"Reference\" or \"CPU\", got {platform!r}")
        system = build_openmm_system(pdb, forcefield)
        self.pdb = str(pdb)
        self.forcefield = [str(f) for f in forcefield]
        self.platform = platform
        self.force_field_masses = np.array(
            [system.getParticleMass(i)._value for i in range(system.getNumParticles())])
        try:
            self.evaluator = VectorizedForceField.from_openmm(system)
        except UnsupportedForceError as exc:
            raise ConfigError(f"forcefield: {exc}") from None
        self.system_xml = mm.XmlSerializer.serialize(system)
        super().__init__(structure=pdb, calculator="mtcv_ase.openmm_forcefield:OpenMMCalculator",
                         calculator_options={"system": self.system_xml, "platform": platform},
                         cvs=cvs, basins=basins, true_cvs=true_cvs,
                         basin_structures=basin_structures, index=index,
                         temperature_K=temperature_K, relax_steps=relax_steps,
                         relax_fmax=relax_fmax)

    def _prepare(self, atoms: Any) -> Any:
        """Vacuum (a CRYST1 record is ignored) and the force field's masses."""
        if len(atoms) != len(self.force_field_masses):
            raise ConfigError(f"pdb: {self.pdb}: a frame has {len(atoms)} atoms, the "
                              f"topology {len(self.force_field_masses)}")
        atoms.set_pbc(False)
        atoms.set_cell(np.zeros((3, 3)))
        atoms.set_masses(self.force_field_masses)
        return atoms

    @property
    def supports_batch(self) -> bool:
        """Always: the vectorised force field."""
        return True

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The force field for many configurations at once: (n, n_atoms, 3)
        angstrom -> energy (n,) eV, forces (n, n_atoms, 3) eV/angstrom; equal
        to OpenMM's Reference platform to round-off."""
        return self.evaluator(positions)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["calculator_options"] = {"platform": self.platform}  # not the whole system XML
        d.update(pdb=self.pdb, forcefield=self.forcefield,
                 force_field_settings="OpenMM, vacuum, NoCutoff, no constraints, flexible "
                                      "water, no CMMotionRemover",
                 terms=self.evaluator.describe())
        return d
