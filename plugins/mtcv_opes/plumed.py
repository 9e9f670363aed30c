"""PLUMED input for the same OPES / metadynamics run, for users who want to
run it in their own MD engine (GROMACS, LAMMPS, OpenMM-PLUMED, ...).

mtcv's CV maps positions (n, n_atoms, 3) in angstrom; PLUMED's
``PYTORCH_MODEL`` maps a flat vector of arguments. :func:`plumed_cv` wraps
the CV so that it takes the 3 n_atoms Cartesian coordinates in nm (PLUMED's
``POSITION`` components, in atom order) and returns (1, d); the input
defines those positions (``NOPBC``: unwrapped, as mtcv's CV sees them),
loads the wrapped model and biases its output(s) ``cv.node-i``. Energies in
kJ/mol, time in ps (PLUMED's defaults); PACE and STRIDE in MD steps, as here.
"""

from __future__ import annotations

import io
from typing import Any

import torch


class PlumedCV(torch.nn.Module):
    """A CV of positions (n, n_atoms, 3) angstrom as a function of the flat
    (n, 3 n_atoms) positions in nm (PLUMED's units)."""

    def __init__(self, cv: torch.nn.Module) -> None:
        super().__init__()
        self.cv = cv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self.cv((x * 10.0).reshape(n, -1, 3))


def plumed_cv(cv: Any) -> bytes:
    """The TorchScript bytes of :class:`PlumedCV` around ``cv`` (float64)."""
    module = torch.jit.script(PlumedCV(cv.to(torch.float64) if hasattr(cv, "to") else cv))
    buf = io.BytesIO()
    torch.jit.save(module, buf)
    return buf.getvalue()


def plumed_input(action: str, *, temperature_K: float, stride: int, timestep_fs: float,
                 n_walkers: int, n_atoms: int | None = None) -> str:
    """The text of ``plumed.dat`` around the bias line ``action`` (labelled
    ``opes`` or ``metad``); ``n_atoms`` None: a placeholder block the user
    fills for their atom count."""
    label = action.split(":", 1)[0]
    lines = [
        "# PLUMED input written by mtcv: the same bias on the learned CV.",
        f"# MD: {timestep_fs:g} fs time step at {temperature_K:g} K (set TEMP in your engine "
        "too);",
        f"# mtcv ran {n_walkers} walkers sharing one bias: with PLUMED use WALKERS_MPI (and",
        "# mpirun -np N with -multidir) for the same multiple-walker run.",
        "UNITS LENGTH=nm ENERGY=kj/mol TIME=ps",
    ]
    if n_atoms is None:
        lines += ["# one POSITION per atom, in the order of the CV's input:",
                  "# p1: POSITION ATOM=1 NOPBC",
                  "# p2: POSITION ATOM=2 NOPBC",
                  "# ...",
                  "# cv: PYTORCH_MODEL FILE=cv_plumed.pt ARG=p1.x,p1.y,p1.z,p2.x,..."]
    else:
        lines += [f"p{i}: POSITION ATOM={i} NOPBC" for i in range(1, n_atoms + 1)]
        args = ",".join(f"p{i}.{c}" for i in range(1, n_atoms + 1) for c in "xyz")
        lines.append(f"cv: PYTORCH_MODEL FILE=cv_plumed.pt ARG={args}")
    lines.append(f"{action} TEMP={temperature_K:g}")
    lines.append(f"PRINT ARG=cv.*,{label}.bias STRIDE={stride} FILE=COLVAR")
    return "\n".join(lines) + "\n"


__all__ = ["PlumedCV", "plumed_cv", "plumed_input"]
