"""Evaluating a trained multitask CV: xi and the heads' predictions for
frames, test metrics, and a linear basin classifier on xi for CVs trained
without a head predicting basin probabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_core.interfaces import BASIN_PROBABILITY, ENERGY
from mtcv_core.model import MultitaskCV


def _positions(frames: xr.Dataset | np.ndarray) -> np.ndarray:
    pos = frames["coordinates"].values if isinstance(frames, xr.Dataset) else frames
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions: expected shape (n_frames, n_atoms, 3), got {pos.shape}")
    return pos


def predict(model: MultitaskCV, frames: xr.Dataset | np.ndarray, *,
            batch_size: int = 65536) -> dict[str, np.ndarray]:
    """xi and the heads' predictions for frames (or positions (n, n_atoms, 3)).

    Returns ``xi`` (n, latent_dim); with a head predicting basin
    probabilities ``probability`` (n, n_classes) and ``label`` (n,) (argmax);
    with a head predicting energies ``energy`` (n,) eV; other heads'
    predictions under their names.
    """
    positions = _positions(frames)
    was_training = model.training
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    try:
        with torch.no_grad():
            for start in range(0, len(positions), batch_size):
                pos = torch.as_tensor(positions[start:start + batch_size], device=model.device)
                for key, value in model.predict(pos).items():
                    parts.setdefault(key, []).append(value.detach().cpu().double().numpy())
    finally:
        model.train(was_training)
    renamed = {}
    for kind, key in ((BASIN_PROBABILITY, "probability"), (ENERGY, "energy")):
        found = model.head_predicting(kind)
        if found is not None:
            renamed[found[0]] = key
    out: dict[str, np.ndarray] = {}
    for key, chunks in parts.items():
        out[renamed.get(key, key)] = np.concatenate(chunks)
    if "probability" in out:
        out["label"] = out["probability"].argmax(axis=1)
    return out


def cv_values(model: MultitaskCV, frames: xr.Dataset | np.ndarray, *,
              batch_size: int = 65536) -> np.ndarray:
    """xi (n, latent_dim) for frames or positions (n, n_atoms, 3) angstrom."""
    positions = _positions(frames)
    out = []
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            pos = torch.as_tensor(positions[start:start + batch_size], device=model.device)
            out.append(model.cv(pos).cpu().double().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.latent_dim))


def evaluate(model: MultitaskCV, frames: xr.Dataset, *,
             batch_size: int = 65536) -> dict[str, Any]:
    """Test metrics of ``model`` on ``frames``.

    Returns
    -------
    dict with ``accuracy`` (argmax of the classifier on the labelled frames;
    None without a classifier or labelled frames), ``energy_mae_eV`` (mean
    absolute error of the energy head over all frames, eV; None without an
    energy head), ``energy_mae_balanced_eV`` (the same with the energy head's
    own frame weights, e.g. energy-bin-balanced: every energy interval
    counts equally, as in the authors' code; present with an energy head
    whose ``prepare`` returns a ``weight``), ``n`` (frames) and ``n_labelled``.
    """
    pred = predict(model, frames, batch_size=batch_size)
    label = np.asarray(frames["label"].values, dtype=np.int64)
    labelled = label >= 0
    out: dict[str, Any] = {"accuracy": None, "energy_mae_eV": None, "n": int(len(label)),
                           "n_labelled": int(labelled.sum())}
    if "label" in pred and labelled.any():
        out["accuracy"] = float(np.mean(pred["label"][labelled] == label[labelled]))
    if "energy" in pred:
        energy = np.asarray(frames["energy"].values, dtype=np.float64)
        abs_err = np.abs(pred["energy"] - energy)
        out["energy_mae_eV"] = float(np.mean(abs_err))
        found = model.head_predicting(ENERGY)
        if found is not None:
            weight = found[1].prepare({"energy": torch.as_tensor(energy),
                                       "label": torch.as_tensor(label)}, fit=False).get("weight")
            if weight is not None:
                w = weight.detach().cpu().double().numpy()
                out["energy_mae_balanced_eV"] = float(np.sum(w * abs_err) / np.sum(w))
    return out


def fit_latent_classifier(xi: np.ndarray, labels: np.ndarray, n_classes: int
                          ) -> Callable[[np.ndarray], np.ndarray]:
    """A linear (multinomial logistic) classifier fitted on CV values, for
    CVs trained without a classifier head (single-task baselines): their
    basins in xi still need a definition, and a linear one keeps the
    comparison with the multitask CV's own linear head fair.

    xi: (n, d) CV values of labelled frames; labels: (n,) basin indices
    (-1 = unlabelled, ignored). Returns ``basin_of``: (m, d) -> (m,) int.
    Fitted by L-BFGS on standardised xi, in float64, deterministically.
    """
    xi = np.asarray(xi, float).reshape(len(xi), -1)
    keep = np.asarray(labels) >= 0
    if not keep.any():
        raise ValueError("fit_latent_classifier: no labelled frames")
    x = torch.as_tensor(xi[keep], dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels)[keep], dtype=torch.long)
    mean, std = x.mean(0), x.std(0).clamp_min(1e-12)
    layer = torch.nn.Linear(x.shape[1], n_classes).double()
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    xs = (x - mean) / std

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xs), y)
        loss.backward()
        return loss

    opt.step(closure)

    def basin_of(values: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            v = torch.as_tensor(np.asarray(values, float).reshape(-1, x.shape[1]),
                                dtype=torch.float64)
            return layer((v - mean) / std).argmax(1).numpy()

    return basin_of


__all__ = ["predict", "cv_values", "evaluate", "fit_latent_classifier"]
