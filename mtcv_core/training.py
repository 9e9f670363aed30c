"""Training the multitask CV (Sun et al., JCTC 2022, Sec. II B).

Joint loss ``L = sum_p c_p L_p + c_reg L_reg`` over the configured heads p
(any subset of ``classifier``, ``energy``, ``pairwise``, ``reconstruction``
or third-party heads) and the L2 penalty ``L_reg`` (sum of the squared
encoder weights).

Coefficients
    Before training, the heads' losses L_p^0 are measured on the training
    split; ``M_p = coefficients.get(p, 1) / L_p^0`` so that every head
    contributes equally to the initial loss. During the first
    ``warmup_epochs`` epochs ``c_p ~ Unif(0, M_p)``, drawn anew each epoch;
    afterwards ``c_p = M_p``. ``c_reg`` is fixed such that the penalty is the
    share ``l2`` (< 5 %) of the initial joint loss.
Optimiser
    Adam (0.9, 0.999, 1e-8); learning rate x ``lr_decay`` every
    ``lr_decay_every`` epochs.
Validation and early stopping
    A random ``validation_fraction`` of the frames is held out; after every
    epoch the validation loss ``sum_p M_p L_p + c_reg L_reg`` (fixed
    coefficients) is measured, the best weights are kept, and training stops
    once ``patience`` epochs after the warm-up brought no improvement.

Heads are :class:`mtcv_core.interfaces.LossHead`: ``prepare(data, fit=...)``
returns per-frame tensors of a split (weights) that are sliced into each
minibatch of that head; the test metrics read the heads whose
``prediction`` is basin probabilities (accuracy) or energies (MAE).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from mtcv_core.config import ConfigError, doc, from_mapping, nonneg, positive
from mtcv_core.errors import SimulationError

# evaluation lives in mtcv_core.evaluation; re-exported for callers of the training API
from mtcv_core.evaluation import cv_values, evaluate, fit_latent_classifier, predict
from mtcv_core.interfaces import BASIN_PROBABILITY, ENERGY
from mtcv_core.model import MultitaskCV, build_model, model_config
from mtcv_core.schema import SchemaError, basin_names, provenance

TRAINING_SCHEMA = "mtcv.training/1"


@dataclass
class TrainConfig:
    """Options of :func:`train` (the ``[train]`` table of a run config)."""

    latent_dim: int = positive(1, "dimension of the latent CV xi")
    hidden: list[int] = field(default_factory=lambda: [32, 16], metadata={
        "doc": "encoder hidden layer sizes, narrowing toward the latent layer"})
    heads: dict[str, Any] = field(
        default_factory=lambda: {"classifier": {}, "energy": {"n_bins": 10}},
        metadata={"doc": "loss heads to train: head name -> its options"})
    coefficients: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "head name -> multiplier of its coefficient scale M_p (default 1)"})
    epochs: int = positive(300, "maximum number of epochs")
    batch_size: int = positive(512, "minibatch size, frames")
    lr: float = positive(1e-3, "initial learning rate of Adam")
    lr_decay: float = field(default=0.95, metadata={
        "gt": 0, "max": 1, "doc": "learning-rate factor applied every lr_decay_every epochs"})
    lr_decay_every: int = positive(20, "epochs between learning-rate decays")
    warmup_epochs: int = nonneg(100, "epochs with random coefficients c_p ~ Unif(0, M_p)")
    l2: float = field(default=0.01, metadata={
        "min": 0, "max": 0.049, "doc": "share of the initial joint loss carried by the L2 "
                                       "penalty on the encoder weights (0 disables)"})
    validation_fraction: float = field(default=0.1, metadata={
        "min": 0, "max": 0.5, "doc": "share of the frames held out for early stopping"})
    patience: int = positive(40, "epochs after the warm-up without a better validation "
                                 "loss before training stops")
    seed: int = doc(0, "random seed (weights, split, minibatches, coefficients)")
    device: str = doc("cpu", "torch device; 'cuda' falls back to the CPU if unavailable")
    dtype: Literal["float32", "float64"] = doc("float32", "precision of weights and data")
    threads: int = nonneg(1, "torch CPU threads (the networks are small: more threads "
                             "gain little and spin under contention); 0: all available cores")
    eval_batch_size: int = positive(65536, "frames per chunk when evaluating")
    spectator_augmentation: float = nonneg(
        0.0, "for systems that declare spectator coordinates (energy and basin do not depend "
              "on them): redraw them for every training frame each epoch, non-periodic ones "
              "uniformly over this many times their range in the training data, periodic "
              "ones from the training frames' own values, so the CV learns to ignore them "
              "(0: off)")
    featurizer: str = doc("cartesian", "featurizer plugin")
    featurizer_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the featurizer, e.g. dof_mask"})
    cv_file: str = doc("", "a CV trained elsewhere: a TorchScript file (path relative to the "
                           "working directory) used instead of training one "
                           "(mtcv_core.imported_cv); empty: train the multitask CV")
    cv_input: Literal["positions", "features"] = doc(
        "positions", "what the cv_file module takes: positions (n, n_atoms, 3) angstrom, or "
                     "the features (n, n_features) of this table's featurizer")

    def __post_init__(self) -> None:
        if not self.heads:
            raise ConfigError("train.heads: at least one loss head is needed")
        if any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"train.hidden: layer sizes must be >= 1, got {self.hidden}")
        unknown = sorted(set(self.coefficients) - set(self.heads))
        if unknown:
            raise ConfigError(f"train.coefficients: {unknown[0]!r} is not one of the heads "
                              f"{sorted(self.heads)}")
        for name, value in self.coefficients.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"train.coefficients.{name}: expected a number >= 0, "
                                  f"got {value!r}")
        for name, options in self.heads.items():
            if not isinstance(options, Mapping):
                raise ConfigError(f"train.heads.{name}: expected a table of options, "
                                  f"got {options!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, where: str = "train") -> TrainConfig:
        """Validated config from a plain mapping (a TOML table)."""
        return from_mapping(cls, dict(data or {}), where)


# --------------------------------------------------------------------- helpers
def _as_config(config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    return TrainConfig.from_mapping(config)


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device {name!r} requested but CUDA is not available; "
                      "training on the CPU", stacklevel=3)
        return torch.device("cpu")
    return device


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def _num_threads(n: int) -> Iterator[int]:
    """Set torch's intra-op threads for the block (0: the available cores)."""
    previous = torch.get_num_threads()
    n = n or available_cores()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def _positions(frames: xr.Dataset | np.ndarray) -> np.ndarray:
    pos = frames["coordinates"].values if isinstance(frames, xr.Dataset) else frames
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions: expected shape (n_frames, n_atoms, 3), got {pos.shape}")
    return pos


def _raw_features(model: MultitaskCV, positions: np.ndarray, chunk: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, len(positions), chunk):
            pos = torch.as_tensor(positions[start:start + chunk], device=model.device)
            out.append(model.raw_features(pos))
    return torch.cat(out)


Split = dict[str, torch.Tensor]


def _slice(data: Split, idx: torch.Tensor | slice) -> Split:
    return {k: v[idx] for k, v in data.items()}


class _Objective:
    """Per-head losses of a minibatch, with each head's prepared tensors."""

    def __init__(self, model: MultitaskCV) -> None:
        self.model = model
        self.names = list(model.heads)

    def prepare(self, data: Split, *, fit: bool) -> dict[str, Split]:
        extras = {}
        for name, head in self.model.heads.items():
            out = dict(head.prepare(data, fit=fit))
            n = len(data["label"])
            for key, value in out.items():
                if not isinstance(value, torch.Tensor) or value.shape[:1] != (n,):
                    raise ValueError(f"head {name!r}: prepare() must return (n_frames, ...) "
                                     f"tensors; {key!r} is not one")
            extras[name] = out
        return extras

    def losses(self, batch: Split, extras: dict[str, Split]) -> list[torch.Tensor]:
        """[L_p for each head] + [L_reg] for one minibatch (slices already taken)."""
        latent = self.model.encoder(batch["features"])
        out = [head.loss(latent, {**batch, **extras[name]})
               for name, head in self.model.heads.items()]
        out.append(self.model.encoder.l2())
        return out

    @torch.no_grad()
    def evaluate(self, data: Split, extras: dict[str, Split], chunk: int) -> np.ndarray:
        """Frame-weighted mean of the per-chunk losses over a whole split."""
        n = len(data["label"])
        total = None
        for start in range(0, n, chunk):
            sl = slice(start, min(n, start + chunk))
            parts = torch.stack(self.losses(_slice(data, sl),
                                            {k: _slice(v, sl) for k, v in extras.items()}))
            total = parts * (sl.stop - sl.start) if total is None else total + parts * (
                sl.stop - sl.start)
        return (total / n).double().cpu().numpy()


def _metrics(model: MultitaskCV, data: Split, chunk: int) -> dict[str, float]:
    """Accuracy of the head predicting basin probabilities on labelled
    frames, MAE (eV) of the head predicting energies."""
    heads = {kind: found[1] for kind in (BASIN_PROBABILITY, ENERGY)
             if (found := model.head_predicting(kind)) is not None}
    with torch.no_grad():
        preds: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(data["label"]), chunk):
            xi = model.encoder(data["features"][start:start + chunk])
            for kind, head in heads.items():
                preds.setdefault(kind, []).append(head.predict(xi))
    out = {}
    if BASIN_PROBABILITY in preds:
        label = data["label"]
        pred = torch.cat(preds[BASIN_PROBABILITY]).argmax(dim=1)
        labelled = label >= 0
        n_lab = int(labelled.sum())
        out["accuracy"] = (float((pred[labelled] == label[labelled]).double().mean())
                           if n_lab else math.nan)
    if ENERGY in preds:
        err = torch.cat(preds[ENERGY]).double() - data["energy"].double()
        out["energy_mae_eV"] = float(err.abs().mean())
    return out


def _scale(multiplier: float, initial: float, name: str) -> float:
    """M_p = multiplier / L_p^0; a head whose initial loss is ~0 (nothing to
    learn from, e.g. no same-basin pairs) keeps the bare multiplier."""
    if initial > 1e-8 and math.isfinite(initial):
        return multiplier / initial
    warnings.warn(f"train: the initial {name} loss is {initial:.3g}; its coefficient is not "
                  "normalised", stacklevel=3)
    return multiplier


# ------------------------------------------------------------------- training
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _source_codes(frames: xr.Dataset) -> np.ndarray:
    """(n,) int64: the frames' ``source`` codes (0 where the variable is absent)."""
    if "source" in frames:
        return np.asarray(frames["source"].values, dtype=np.int64)
    return np.zeros(frames.sizes["frame"], dtype=np.int64)


def train(frames: xr.Dataset, config: TrainConfig | Mapping[str, Any] | None = None,
          registry: Any = None, *, progress: bool = True,
          augment: Augment | None = None) -> tuple[MultitaskCV, xr.Dataset]:
    """Train a multitask CV on ``frames`` (the TRAINING split only).

    Parameters
    ----------
    frames : xarray.Dataset
        Frame dataset (:mod:`mtcv_core.schema`): ``coordinates`` (frame,
        atom, spatial) angstrom, ``energy`` (frame) eV, ``label`` (frame) int
        with -1 = unlabelled, ``basins`` attribute.
    config : TrainConfig or mapping
        Options (a mapping is validated into a :class:`TrainConfig`).
    registry : Registry, optional
        Plugin registry for the featurizer and heads (default: installed).
    progress : bool
        Show a tqdm progress bar.
    augment : callable, optional
        ``augment(positions (n, n_atoms, 3), rng) -> positions``: a map that
        keeps every frame's energy and label (e.g.
        :class:`mtcv_core.spectators.SpectatorAugmenter`). The training frames
        are augmented anew every epoch, the validation frames once; the
        standardiser is fitted on augmented features.

    Returns
    -------
    model : MultitaskCV
        The best weights (lowest validation loss), in eval mode on the
        training device.
    history : xarray.Dataset
        Per-epoch losses (``loss_train_<term>``, ``loss_validation_<term>``
        for every head, ``reg`` and ``total``), ``coefficient_<term>``,
        ``lr``, ``accuracy_validation``, ``energy_mae_validation`` (eV),
        ``time`` (s); dims ``epoch``. Write it as ``training.nc``.
    """
    cfg = _as_config(config)
    if registry is None:
        from mtcv_core.plugins import load_plugins

        registry = load_plugins()
    t_start = time.perf_counter()
    device = _device(cfg.device)
    with _num_threads(cfg.threads) as n_threads:
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))

        positions = _positions(frames)
        energy = np.asarray(frames["energy"].values, dtype=np.float64)
        label = np.asarray(frames["label"].values, dtype=np.int64)
        basins = basin_names(frames) or [str(i) for i in range(int(label.max(initial=-1)) + 1)]
        n, n_atoms, _ = positions.shape

        featurizer = registry.create("featurizer", cfg.featurizer, **cfg.featurizer_options)
        mconf = model_config(
            featurizer=cfg.featurizer, featurizer_options=cfg.featurizer_options,
            n_atoms=n_atoms, n_features=featurizer.n_features(n_atoms),
            latent_dim=cfg.latent_dim, hidden=cfg.hidden, n_classes=len(basins),
            basins=basins, heads=cfg.heads, dtype=cfg.dtype)
        model = build_model(mconf, registry).to(device)

        # split, standardise, prepare the heads' per-frame tensors
        order = rng.permutation(n)
        n_val = int(round(cfg.validation_fraction * n))
        if n - n_val < 1 or (cfg.validation_fraction > 0 and n_val < 1):
            raise SchemaError(f"train: {n} frames are too few for validation_fraction "
                              f"{cfg.validation_fraction}")
        aug_rng = np.random.default_rng([cfg.seed, 0x5EC7])
        if augment is not None:
            positions_aug = np.asarray(augment(positions, aug_rng), dtype=np.float64)
            if positions_aug.shape != positions.shape:
                raise ValueError(f"train: augment returned shape {positions_aug.shape}, "
                                 f"expected {positions.shape}")
            features = _raw_features(model, positions_aug, cfg.eval_batch_size)
        else:
            features = _raw_features(model, positions, cfg.eval_batch_size)
        all_data: Split = {
            "features": features,
            "energy": torch.as_tensor(energy, device=device),
            "label": torch.as_tensor(label, device=device),
            "source": torch.as_tensor(_source_codes(frames), device=device),
        }
        val_idx = torch.as_tensor(order[:n_val], device=device)
        tr_idx = torch.as_tensor(order[n_val:], device=device)
        model.standardizer.fit(features[tr_idx])
        with torch.no_grad():
            all_data["features"] = model.standardizer(features)
        data_tr, data_val = _slice(all_data, tr_idx), _slice(all_data, val_idx)
        objective = _Objective(model)
        extras_tr = objective.prepare(data_tr, fit=True)
        extras_val = objective.prepare(data_val, fit=False) if n_val else {}

        names = objective.names
        initial, scales, c_reg = _coefficient_scales(objective, data_tr, extras_tr, cfg)
        fixed = np.append(scales, c_reg)

        # foreach: one fused update over all parameter tensors instead of a
        # Python loop over them (the small encoder's step cost as much as
        # its backward pass)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8,
                               foreach=True)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every,
                                                gamma=cfg.lr_decay)
        terms = [*names, "reg"]
        rec: dict[str, list[float]] = {}

        def record(key: str, value: float) -> None:
            rec.setdefault(key, []).append(float(value))

        best, best_epoch, best_state = math.inf, -1, None
        n_tr = len(tr_idx)
        bar = tqdm(range(cfg.epochs), disable=not progress, desc="train", unit="epoch",
                   leave=False)
        stopped_early = False
        for epoch in bar:
            coeffs = (rng.uniform(0.0, scales) if epoch < cfg.warmup_epochs else scales)
            coeff_t = torch.as_tensor(np.append(coeffs, c_reg), dtype=model.dtype,
                                      device=device)
            record("lr", opt.param_groups[0]["lr"])
            if augment is not None and epoch > 0:
                tr_pos = np.asarray(augment(positions[order[n_val:]], aug_rng), np.float64)
                with torch.no_grad():
                    data_tr["features"] = model.standardizer(
                        _raw_features(model, tr_pos, cfg.eval_batch_size))
            train_losses = _epoch(model, objective, opt, data_tr, extras_tr, coeff_t,
                                  torch.randperm(n_tr, generator=gen).to(device), cfg.batch_size)
            sched.step()
            model.eval()
            for i, term in enumerate(terms):
                record(f"loss_train_{term}", train_losses[i])
                record(f"coefficient_{term}", float(coeffs[i]) if i < len(names) else c_reg)
            record("loss_train_total", float(np.dot(fixed, train_losses)))
            if n_val:
                val_losses = objective.evaluate(data_val, extras_val, cfg.eval_batch_size)
                for i, term in enumerate(terms):
                    record(f"loss_validation_{term}", val_losses[i])
                monitor = float(np.dot(fixed, val_losses))
                record("loss_validation_total", monitor)
                for key, value in _metrics(model, data_val, cfg.eval_batch_size).items():
                    record(f"{key.removesuffix('_eV')}_validation", value)
            else:
                monitor = float(np.dot(fixed, train_losses))
            record("time", time.perf_counter() - t_start)
            if not math.isfinite(monitor):
                raise SimulationError(f"train: the loss became {monitor} at epoch {epoch}; "
                                      "lower lr or check the data")
            if monitor < best:
                best, best_epoch = monitor, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if progress:
                bar.set_postfix(loss=f"{monitor:.4g}", best=best_epoch)
            if epoch - max(best_epoch, cfg.warmup_epochs - 1) >= cfg.patience:
                stopped_early = True
                break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        elapsed = time.perf_counter() - t_start

    history = _history(rec, terms, cfg, attrs={
        "best_epoch": best_epoch, "stopped_early": int(stopped_early),
        "n_epochs_run": len(rec["lr"]), "n_train": n_tr, "n_validation": n_val,
        "train_time_s": elapsed, "threads": n_threads, "device": str(device),
        "initial_losses": json.dumps(dict(zip(terms, map(float, initial), strict=True))),
        "coefficient_scales": json.dumps(dict(zip(terms, map(float, fixed), strict=True))),
        "basins": " ".join(basins),
        "augmentation": json.dumps(augment.describe() if hasattr(augment, "describe") else
                                   ("custom" if augment is not None else None))})
    return model, history


def _coefficient_scales(objective: _Objective, data: Split, extras: dict[str, Split],
                        cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """The initial losses L_p^0 (heads, then the regulariser), the scales
    M_p = multiplier_p / L_p^0 and the regulariser's coefficient, which makes
    it the share ``l2`` of the initial total."""
    initial = objective.evaluate(data, extras, cfg.eval_batch_size)
    scales = np.array([_scale(float(cfg.coefficients.get(p, 1.0)), float(initial[i]), p)
                       for i, p in enumerate(objective.names)])
    head0 = float(np.dot(scales, initial[:-1]))
    reg0 = float(initial[-1])
    c_reg = cfg.l2 / (1.0 - cfg.l2) * head0 / reg0 if cfg.l2 > 0 and reg0 > 0 else 0.0
    return initial, scales, c_reg


def _epoch(model: MultitaskCV, objective: _Objective, opt: torch.optim.Optimizer, data: Split,
           extras: dict[str, Split], coeff: torch.Tensor, perm: torch.Tensor,
           batch_size: int) -> np.ndarray:
    """One pass over the training frames in the order ``perm``, minibatches
    of ``batch_size``, minimising ``sum(coeff * losses)``; returns the mean
    per-term losses (heads, then the regulariser)."""
    model.train()
    sums = torch.zeros(len(coeff), dtype=torch.float64, device=coeff.device)
    # one gather per epoch; the minibatches are then views
    data = _slice(data, perm)
    extras = {k: _slice(v, perm) for k, v in extras.items()}
    for start in range(0, len(perm), batch_size):
        idx = slice(start, min(len(perm), start + batch_size))
        parts = torch.stack(objective.losses(_slice(data, idx),
                                             {k: _slice(v, idx) for k, v in extras.items()}))
        loss = (coeff * parts).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums += parts.detach().double() * (idx.stop - idx.start)
    return (sums / len(perm)).cpu().numpy()


_UNITS = {"lr": "1", "time": "s", "accuracy_validation": "1", "energy_mae_validation": "eV"}
_LONG = {"lr": "learning rate at the start of the epoch",
         "time": "wall time since the start of training",
         "accuracy_validation": "classification accuracy, validation split",
         "energy_mae_validation": "energy mean absolute error, validation split"}


def _history(rec: dict[str, list[float]], terms: list[str], cfg: TrainConfig,
             attrs: dict[str, Any]) -> xr.Dataset:
    n_epochs = len(rec["lr"])
    ds = xr.Dataset(coords={"epoch": ("epoch", np.arange(n_epochs))})
    ds["epoch"].attrs.update(units="1", long_name="training epoch (0-based)")
    for key, values in rec.items():
        ds[key] = ("epoch", np.asarray(values, dtype=np.float64))
        if key.startswith(("loss_train_", "loss_validation_")):
            split = "training" if key.startswith("loss_train_") else "validation"
            term = key.split("_", 2)[2]
            long_name = (f"{term} loss, {split} split"
                         + (" (fixed coefficients M_p)" if term == "total" else ""))
            units = "1"
        elif key.startswith("coefficient_"):
            long_name, units = f"coefficient c_p of the {key[12:]} loss", "1"
        else:
            long_name, units = _LONG.get(key, key), _UNITS.get(key, "1")
        ds[key].attrs.update(units=units, long_name=long_name)
    ds.attrs.update(provenance(dataclasses.asdict(cfg), seed=cfg.seed))
    ds.attrs.update({"mtcv_schema": TRAINING_SCHEMA, "warmup_epochs": cfg.warmup_epochs,
                     "terms": " ".join(terms)})
    ds.attrs.update(attrs)
    return ds


__all__ = ["TRAINING_SCHEMA", "TrainConfig", "train", "predict", "cv_values", "evaluate",
           "fit_latent_classifier", "available_cores"]
