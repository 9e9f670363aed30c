"""A CV trained elsewhere (mlcolvar, a PLUMED PYTORCH model, your own):
``train.cv_file`` instead of training.

The file is a TorchScript module of one of two forms, stated by
``train.cv_input``:

* ``"positions"``: positions (n, n_atoms, 3) angstrom -> (n, d);
* ``"features"``: features (n, n_features) -> (n, d), the features being
  those of the run's featurizer (``train.featurizer`` and its options, as for
  training; e.g. mlcolvar models trained on ``mtcv_core.featurize``'s output).

:func:`import_cv` checks it on configurations of the run (shape, finite values,
a gradient with respect to the positions: an umbrella bias needs one) and
writes ``cv.ts`` in mtcv's own form -- positions in, float64 -- so the later
stages use it exactly as a CV mtcv trained. Its basins along xi come from a
linear classifier fitted on xi of the labelled training frames
(:func:`mtcv_core.evaluation.fit_latent_classifier`), as for the single-task
baselines; its test accuracy is that classifier's on the test split.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtcv_core.config import ConfigError
from mtcv_core.io import atomic_path
from mtcv_core.model import ModelFileError

#: ``train.cv_input`` values
CV_INPUTS = ("positions", "features")


class ImportedCV(nn.Module):
    """positions (n, n_atoms, 3) angstrom -> xi (n, d), float64: an external
    CV module, after the run's featurizer when it takes features."""

    def __init__(self, cv: nn.Module, featurizer: nn.Module | None = None) -> None:
        super().__init__()
        self.featurizer = featurizer if featurizer is not None else nn.Identity()
        self.cv = cv

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = self.featurizer(positions.to(torch.float64))
        return self.cv(x).to(torch.float64)


def _script(module: ImportedCV, example: torch.Tensor) -> torch.jit.ScriptModule:
    try:
        return torch.jit.script(module)
    except Exception as exc:  # a featurizer that is not scriptable
        warnings.warn(f"the featurizer could not be scripted ({type(exc).__name__}); "
                      "writing the imported CV with torch.jit.trace", stacklevel=3)
        return torch.jit.trace(module, example)


def import_cv(source: str | os.PathLike[str], positions: np.ndarray, *,
              featurizer: nn.Module | None = None, dest: str | os.PathLike[str] | None = None,
              where: str = "train.cv_file") -> tuple[torch.jit.ScriptModule, int]:
    """Check the TorchScript CV in ``source`` on ``positions`` and, with
    ``dest``, write it in mtcv's form (atomically).

    Parameters
    ----------
    source : the external TorchScript file
    positions : (m, n_atoms, 3) angstrom, m >= 1
        Configurations of the run (a few training frames) to check it on.
    featurizer : the run's featurizer when the module takes features
        (``train.cv_input = "features"``), else None
    dest : where to write ``cv.ts`` (None: check only)
    where : config key named in errors

    Returns
    -------
    (module, d): the scripted mtcv-form module and the CV's dimension.

    Raises
    ------
    ConfigError naming ``where``, the file and what is wrong: not loadable,
    failing on the run's input, output not (n, d), not finite, or xi with no
    gradient with respect to the positions.
    """
    from mtcv_core.export import EXTRA_FILE, load_cv

    path = Path(source)
    try:
        external = load_cv(path)
    except ModelFileError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    external = external.to(torch.float64).eval()
    if featurizer is not None:
        featurizer = featurizer.to(torch.float64).eval()
    pos = torch.as_tensor(np.asarray(positions[:256], float), dtype=torch.float64)
    if pos.ndim != 3 or pos.shape[0] < 1:
        raise ValueError(f"import_cv: positions must be (m >= 1, n_atoms, 3), got "
                         f"{tuple(pos.shape)}")
    wanted = "features" if featurizer is not None else "positions"
    module = ImportedCV(external, featurizer).eval()
    if featurizer is not None:
        try:
            with torch.no_grad():
                shape_in = tuple(featurizer(pos[:1]).shape)
        except Exception as exc:  # a featurizer that does not fit the system's atoms
            raise ConfigError(f"train.featurizer_options: the featurizer fails on the "
                              f"system's {pos.shape[1]} atoms ({type(exc).__name__}: "
                              f"{exc})") from None
    else:
        shape_in = tuple(pos[:1].shape)
    pos = pos.clone().requires_grad_(True)
    try:
        xi = module(pos)
    except Exception as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(f"{where}: {path} fails on the run's {wanted} (shape "
                          f"{('n',) + shape_in[1:]}; train.cv_input = {wanted!r}): "
                          f"{type(exc).__name__}: {first[-1] if first else ''}") from None
    if xi.ndim != 2 or xi.shape[0] != pos.shape[0] or xi.shape[1] < 1:
        raise ConfigError(f"{where}: {path} returns shape {tuple(xi.shape)} for {pos.shape[0]} "
                          "configurations; expected (n, d) with d >= 1")
    if not torch.isfinite(xi).all():
        raise ConfigError(f"{where}: {path} returns non-finite values on the run's "
                          "configurations")
    grad = (torch.autograd.grad(xi.sum(), pos, allow_unused=True)[0] if xi.requires_grad
            else None)
    if grad is None or not torch.isfinite(grad).all() or not bool((grad != 0).any()):
        raise ConfigError(f"{where}: {path}: xi has no finite, non-zero gradient with respect "
                          "to the positions, so no bias can act along it (a module that "
                          "detaches its input or works in no_grad?)")
    scripted = _script(module, pos.detach()[:2])
    dim = int(xi.shape[1])
    if dest is not None:
        dest = Path(dest)
        meta = {"imported_from": str(path), "cv_input": wanted, "latent_dim": dim}
        with atomic_path(dest) as tmp:
            torch.jit.save(scripted, str(tmp), _extra_files={EXTRA_FILE: json.dumps(meta)})
            again = torch.jit.load(str(tmp), map_location="cpu")
            with torch.no_grad():
                same = torch.allclose(again(pos.detach()), xi.detach(), rtol=1e-10, atol=1e-12)
            if not same:
                raise RuntimeError(f"{dest}: the written CV does not reproduce {path}")
    return scripted, dim


__all__ = ["CV_INPUTS", "ImportedCV", "import_cv"]
