"""The multitask CV model (Sun et al., JCTC 2022, Sec. II).

::

    positions (n, n_atoms, 3) angstrom
      -> featurizer            (plugin, kind "featurizer")  (n, n_features)
      -> Standardizer          (x - mean) / std of the training features
      -> Encoder               ELU MLP narrowing toward the latent layer
      -> xi (n, latent_dim)    the collective variable
      -> heads                 (plugins, kind "loss_head"): classifier, energy, ...

A :class:`MultitaskCV` is rebuilt from its :attr:`~MultitaskCV.config` (a
plain JSON-able dict) through the plugin registry, so ``model.pt`` holds
ONLY tensors and plain data and is read with ``torch.load(...,
weights_only=True)``: loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtcv_core.errors import MtcvError
from mtcv_core.io import atomic_path

MODEL_FORMAT = "mtcv.model/1"

#: features whose training std is below this (feature units) are constant:
#: they are only centred (std set to 1), never divided by ~0
MIN_STD = 1e-8


class ModelFileError(MtcvError, OSError):
    """A model file cannot be loaded; the message names the file and why."""


class Standardizer(nn.Module):
    """``(x - mean) / std`` with the training set's statistics as buffers.

    Parameters
    ----------
    n_features : int
        Length of the feature vector.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))

    @torch.no_grad()
    def fit(self, features: torch.Tensor, min_std: float = MIN_STD) -> Standardizer:
        """Set mean and std (population) from ``features`` (n, n_features).

        A feature with std below ``min_std`` is constant in the training set;
        its std is set to 1 so that it is centred but not amplified.
        """
        x = features.detach().to(torch.float64)
        mean = x.mean(dim=0)
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.zeros_like(mean)
        std = torch.where(std > min_std, std, torch.ones_like(std))
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))
        return self

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(n, n_features) feature units -> (n, n_features) dimensionless."""
        return (features - self.mean) / self.std


class Encoder(nn.Module):
    """MLP standardised features -> xi: ELU hidden layers, linear last layer.

    Parameters
    ----------
    n_features : int
        Input size.
    hidden : sequence of int
        Hidden layer sizes, e.g. ``[32, 16]`` (narrowing toward the latent
        layer); empty for a linear encoder.
    latent_dim : int
        Dimension of xi.
    """

    def __init__(self, n_features: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        sizes = [int(n_features), *(int(h) for h in hidden), int(latent_dim)]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ELU())
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(n, n_features) standardised -> (n, latent_dim)."""
        return self.layers(features)

    def l2(self) -> torch.Tensor:
        """Sum of the squared weights (not biases) of the encoder's layers."""
        return sum((m.weight ** 2).sum() for m in self.layers if isinstance(m, nn.Linear))


def _plain(value: Any) -> Any:
    """``value`` as plain JSON data (numpy arrays and tuples become lists)."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist()
                                 if hasattr(o, "tolist") else str(o)))


def model_config(*, featurizer: str, featurizer_options: Mapping[str, Any], n_atoms: int,
                 n_features: int, latent_dim: int, hidden: Sequence[int], n_classes: int,
                 basins: Sequence[str], heads: Mapping[str, Mapping[str, Any]],
                 dtype: str = "float32") -> dict[str, Any]:
    """The plain, JSON-able description from which :func:`build_model`
    rebuilds a model (see :class:`MultitaskCV`)."""
    return _plain({
        "format": MODEL_FORMAT, "featurizer": featurizer,
        "featurizer_options": dict(featurizer_options), "n_atoms": int(n_atoms),
        "n_features": int(n_features), "latent_dim": int(latent_dim),
        "hidden": [int(h) for h in hidden], "n_classes": int(n_classes),
        "basins": list(basins), "heads": {k: dict(v) for k, v in heads.items()},
        "dtype": dtype})


def build_model(config: Mapping[str, Any], registry: Any) -> MultitaskCV:
    """A new (untrained) :class:`MultitaskCV` from its config, with the
    featurizer and heads created through ``registry``."""
    config = _plain(dict(config))
    featurizer = registry.create("featurizer", config["featurizer"],
                                 **config.get("featurizer_options", {}))
    n_features = int(featurizer.n_features(int(config["n_atoms"])))
    if n_features != int(config["n_features"]):
        raise ValueError(f"featurizer {config['featurizer']!r} gives {n_features} features "
                         f"for {config['n_atoms']} atoms; the config says "
                         f"{config['n_features']}")
    heads = {}
    for name, options in config["heads"].items():
        heads[name] = registry.create("loss_head", name, latent_dim=config["latent_dim"],
                                      n_features=n_features, n_classes=config["n_classes"],
                                      **options)
    model = MultitaskCV(featurizer, heads, config)
    return model.to(getattr(torch, config.get("dtype", "float32")))


class MultitaskCV(nn.Module):
    """Featurizer -> standardizer -> encoder -> xi, plus the loss heads.

    Parameters
    ----------
    featurizer : nn.Module
        positions (n, n_atoms, 3) angstrom -> features (n, n_features).
    heads : mapping of str to nn.Module
        Loss heads by name (:class:`mtcv_core.interfaces.LossHead`).
    config : dict
        From :func:`model_config`; keys ``featurizer``,
        ``featurizer_options``, ``n_atoms``, ``n_features``, ``latent_dim``,
        ``hidden``, ``n_classes``, ``basins``, ``heads`` (name -> options),
        ``dtype``. Build models with :func:`build_model`.
    """

    def __init__(self, featurizer: nn.Module, heads: Mapping[str, nn.Module],
                 config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = _plain(dict(config))
        n_features = int(self.config["n_features"])
        self.featurizer = featurizer
        self.standardizer = Standardizer(n_features)
        self.encoder = Encoder(n_features, self.config["hidden"], int(self.config["latent_dim"]))
        self.heads = nn.ModuleDict(dict(heads))

    @property
    def latent_dim(self) -> int:
        return int(self.config["latent_dim"])

    @property
    def basins(self) -> list[str]:
        return list(self.config["basins"])

    @property
    def dtype(self) -> torch.dtype:
        return self.standardizer.mean.dtype

    @property
    def device(self) -> torch.device:
        return self.standardizer.mean.device

    def raw_features(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> unstandardised features (n, n_features)."""
        return self.featurizer(positions.to(self.dtype))

    def features(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> standardised features (n, n_features)."""
        return self.standardizer(self.raw_features(positions))

    def cv(self, positions: torch.Tensor) -> torch.Tensor:
        """The collective variable: (n, n_atoms, 3) angstrom -> xi (n, latent_dim)."""
        return self.encoder(self.features(positions))

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`cv`."""
        return self.cv(positions)

    def head_predicting(self, kind: str) -> tuple[str, nn.Module] | None:
        """``(name, head)`` of the first head (in config order) whose
        :attr:`~mtcv_core.interfaces.LossHead.prediction` is ``kind``
        (:data:`~mtcv_core.interfaces.BASIN_PROBABILITY` or
        :data:`~mtcv_core.interfaces.ENERGY`), or None."""
        for name, head in self.heads.items():
            if getattr(head, "prediction", None) == kind:
                return name, head
        return None

    def predict(self, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """xi and every head's prediction: ``{"xi": (n, latent_dim), name: ...}``
        by head name, each of the kind its ``prediction`` declares."""
        xi = self.cv(positions)
        out = {"xi": xi}
        for name, head in self.heads.items():
            value = head.predict(xi)
            if value is not None:
                out[name] = value
        return out

    # ---------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.pt`` atomically: only tensors and plain data.

        Keys: ``format``, ``config`` (plain dict), ``state_dict`` (all weights
        and buffers, on the CPU), ``standardization`` (``mean``, ``std``),
        ``basins``.
        """
        path = Path(path)
        state = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
        payload = {
            "format": MODEL_FORMAT,
            "config": copy.deepcopy(self.config),
            "state_dict": state,
            "standardization": {"mean": state["standardizer.mean"],
                                "std": state["standardizer.std"]},
            "basins": self.basins,
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], registry: Any, *,
             map_location: str | torch.device = "cpu") -> MultitaskCV:
        """Read a model written by :meth:`save` (``weights_only=True``: a file
        that would unpickle anything but tensors and plain data is refused
        with a :class:`ModelFileError` naming it). Returns it in eval mode."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such model file")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # UnpicklingError, RuntimeError (bad zip), EOFError...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelFileError(f"{path}: not a loadable mtcv model file; refused to load it "
                                 f"with weights_only=True ({type(exc).__name__}: {first})"
                                 ) from exc
        if not isinstance(payload, Mapping) or payload.get("format") != MODEL_FORMAT:
            found = payload.get("format") if isinstance(payload, Mapping) else type(payload)
            raise ModelFileError(f"{path}: not an mtcv model file (format {found!r}, "
                                 f"expected {MODEL_FORMAT!r})")
        config, state = payload.get("config"), payload.get("state_dict")
        if not isinstance(config, Mapping) or not isinstance(state, Mapping):
            raise ModelFileError(f"{path}: model file lacks 'config' or 'state_dict'")
        if config.get("dtype", "float32") not in ("float32", "float64"):
            raise ModelFileError(f"{path}: model config has dtype {config.get('dtype')!r}, "
                                 "expected 'float32' or 'float64'")
        try:
            model = build_model(config, registry)
            model.load_state_dict(dict(state), strict=True)
        except Exception as exc:
            raise ModelFileError(f"{path}: cannot rebuild the model from its config "
                                 f"({type(exc).__name__}: {exc})") from exc
        return model.to(map_location).eval()


__all__ = ["MODEL_FORMAT", "MIN_STD", "ModelFileError", "Standardizer", "Encoder",
           "MultitaskCV", "model_config", "build_model"]
