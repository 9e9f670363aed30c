"""The force field of alanine dipeptide: amber99sb in vacuum through OpenMM
(:mod:`mtcv_ase.openmm_forcefield`, which holds the calculator and the
vectorised evaluator; re-exported here)."""

from mtcv_ase.openmm_forcefield import (
    FORCE_FIELD,
    FORCE_TO_EV_A,
    KJMOL_TO_EV,
    NM_TO_ANGSTROM,
    ONE_4PI_EPS0,
    OpenMMCalculator,
    UnsupportedForceError,
    VectorizedForceField,
    create_openmm_system,
)

__all__ = ["FORCE_FIELD", "FORCE_TO_EV_A", "KJMOL_TO_EV", "NM_TO_ANGSTROM", "ONE_4PI_EPS0",
           "OpenMMCalculator", "UnsupportedForceError", "VectorizedForceField",
           "create_openmm_system"]
