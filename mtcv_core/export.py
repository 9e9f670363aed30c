"""Model persistence and TorchScript export of the CV.

``cv.ts`` is a TorchScript module ``positions (n, n_atoms, 3) angstrom ->
xi (n, latent_dim)`` holding featurizer, standardisation and encoder. It
loads with ``torch.jit.load`` alone -- no mtcv import -- so MD codes (PLUMED's
PYTORCH module, LAMMPS, a bare Python script) can bias along xi; gradients
w.r.t. the positions come from autograd as for the live model. The model's
config is attached as the extra file ``mtcv.json``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtcv_core.io import atomic_path
from mtcv_core.model import Encoder, ModelFileError, MultitaskCV, Standardizer

#: name of the extra file holding the model config in ``cv.ts``
EXTRA_FILE = "mtcv.json"


class ExportedCV(nn.Module):
    """positions (n, n_atoms, 3) angstrom -> xi (n, latent_dim).

    The input is cast to the dtype of the weights (float32 or float64); xi
    has that dtype.
    """

    def __init__(self, featurizer: nn.Module, standardizer: Standardizer,
                 encoder: Encoder) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.standardizer = standardizer
        self.encoder = encoder

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = self.featurizer(positions.to(self.standardizer.mean.dtype))
        return self.encoder(self.standardizer(x))


class SelectCV(nn.Module):
    """Columns ``index`` of a CV module's output: positions (n, n_atoms, 3)
    -> (n, len(index)); e.g. phi alone out of (phi, psi)."""

    def __init__(self, cv: nn.Module, index: list[int]) -> None:
        super().__init__()
        self.cv = cv
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.cv(positions).index_select(1, self.index)


def to_torchscript(model: MultitaskCV, *, dtype: torch.dtype | None = None
                   ) -> torch.jit.ScriptModule:
    """The CV of ``model`` as a TorchScript module on the CPU.

    Scripted with ``torch.jit.script``; a featurizer that cannot be
    scripted falls back to ``torch.jit.trace`` (with a warning), valid only
    if the featurizer has no data-dependent control flow. ``dtype`` (default:
    the model's) sets the exported weights' precision.
    """
    dtype = dtype or model.dtype
    cv = ExportedCV(copy.deepcopy(model.featurizer), copy.deepcopy(model.standardizer),
                    copy.deepcopy(model.encoder)).to(device="cpu", dtype=dtype).eval()
    for p in cv.parameters():
        p.requires_grad_(False)
    try:
        return torch.jit.script(cv)
    except Exception as exc:  # a third-party featurizer that is not scriptable
        warnings.warn(f"featurizer {model.config['featurizer']!r} could not be scripted "
                      f"({type(exc).__name__}); exporting the CV with torch.jit.trace",
                      stacklevel=2)
        example = torch.randn(2, int(model.config["n_atoms"]), 3, dtype=dtype)
        return torch.jit.trace(cv, example)


def export_torchscript(model: MultitaskCV, path: str | os.PathLike[str], *,
                       dtype: torch.dtype | None = None,
                       example_positions: Any = None) -> Path:
    """Write the CV of ``model`` as TorchScript to ``path`` (``cv.ts``),
    atomically, and check that the file reproduces the live model's xi.

    Parameters
    ----------
    model : MultitaskCV
    path : destination file
    dtype : precision of the exported weights (default: the model's)
    example_positions : (m, n_atoms, 3) angstrom, optional
        Configurations like the model's data (e.g. a few training frames);
        the check evaluates both CVs on up to four of them, perturbed by
        0.01 angstrom. Default: random positions, which a featurizer may find
        far from anything it was built for.

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    module = to_torchscript(model, dtype=dtype)
    extra = {EXTRA_FILE: json.dumps(model.config, sort_keys=True)}
    with atomic_path(path) as tmp:
        torch.jit.save(module, str(tmp), _extra_files=extra)
        reloaded = torch.jit.load(str(tmp), map_location="cpu")
        _check_same(model, reloaded, path, example_positions)
    return path


def _check_same(model: MultitaskCV, module: torch.jit.ScriptModule, path: Path,
                example_positions: Any = None) -> None:
    gen = torch.Generator().manual_seed(0)
    n_atoms = int(model.config["n_atoms"])
    if example_positions is not None and len(example_positions):
        base = torch.as_tensor(np.asarray(example_positions[:4]), dtype=torch.float64)
        pos = base + 0.01 * torch.randn(base.shape, generator=gen, dtype=torch.float64)
    else:
        pos = torch.randn(4, n_atoms, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        live = model.cv(pos.to(model.device)).double().cpu()
        exported = module(pos).double()
    tol = 1e-4 if torch.float32 in (model.dtype, exported.dtype) else 1e-10
    scale = 1.0 + float(live.nan_to_num().abs().max()) if live.numel() else 1.0
    if exported.shape != live.shape or not torch.allclose(exported, live, rtol=tol,
                                                           atol=tol * scale, equal_nan=True):
        raise RuntimeError(f"{path}: the exported CV does not reproduce the live model")


def load_cv(path: str | os.PathLike[str]) -> torch.jit.ScriptModule:
    """Load ``cv.ts`` (``torch.jit.load`` on the CPU); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such TorchScript file")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ModelFileError(f"{path}: not a loadable TorchScript CV "
                             f"({type(exc).__name__}: {exc})") from exc


def load_model(path: str | os.PathLike[str], registry: Any = None, *,
               map_location: str | torch.device = "cpu") -> MultitaskCV:
    """Load ``model.pt`` (see :meth:`MultitaskCV.load`); ``registry``
    defaults to the installed plugins."""
    if registry is None:
        from mtcv_core.plugins import load_plugins

        registry = load_plugins()
    return MultitaskCV.load(path, registry, map_location=map_location)


__all__ = ["EXTRA_FILE", "ExportedCV", "to_torchscript", "export_torchscript", "load_cv",
           "load_model"]
