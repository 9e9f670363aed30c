"""Reusable checks for plugin authors who write loss heads.

A loss head (:class:`mtcv_core.interfaces.LossHead`) is a ``torch.nn.Module``
whose ``loss(latent, batch)`` turns the latent CV xi, shape
``(n, latent_dim)``, and a batch of frame tensors into a scalar. The trainer
(:mod:`mtcv_core.training`) builds it with
``registry.create("loss_head", name, latent_dim=..., n_features=...,
n_classes=..., **options)``, calls ``prepare(data, fit=...)`` once per split
and slices what it returns into each minibatch, and reads ``predict(latent)``
of the heads whose ``prediction`` it needs. :func:`check_loss_head`
exercises exactly that::

    from mtcv_core.testing import check_loss_head, example_batch

    def test_my_head():
        head = MyHead(latent_dim=2, n_features=5, n_classes=2)
        check_loss_head(head, 2, example_batch(64, n_features=5, n_classes=2))

Each check raises ``AssertionError`` naming the head and what is wrong. The
ASE-side checks (calculators, systems) are in :mod:`mtcv_ase.testing`.
This module imports torch but not ASE, like the rest of ``mtcv_core``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def example_batch(n: int = 64, *, n_features: int = 5, n_classes: int = 2,
                  seed: int = 0, unlabelled_fraction: float = 0.1,
                  dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """A synthetic batch with the tensors the trainer hands to every head.

    Parameters
    ----------
    n : int
        Number of frames.
    n_features : int
        Length of the (standardised, dimensionless) feature vector.
    n_classes : int
        Number of basins; labels are drawn from ``0 .. n_classes - 1``.
    seed : int
        Seed of the random draws.
    unlabelled_fraction : float
        Share of the frames given label ``-1`` (outside every basin).
    dtype : torch.dtype
        Floating-point dtype of ``features`` and ``energy``.

    Returns
    -------
    dict of str to torch.Tensor
        ``features`` (n, n_features) standardised features, ``energy`` (n,)
        eV (a smooth function of the features plus noise, so that energy
        heads have something to fit), ``label`` (n,) int64 basin labels in
        ``[-1, n_classes)``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    features = torch.randn(n, n_features, generator=gen, dtype=dtype)
    energy = 0.1 * (features ** 2).sum(dim=1) + 0.01 * torch.randn(n, generator=gen,
                                                                    dtype=dtype)
    label = torch.randint(0, max(1, n_classes), (n,), generator=gen)
    unlabelled = torch.rand(n, generator=gen) < unlabelled_fraction
    label = torch.where(unlabelled, torch.full_like(label, -1), label)
    return {"features": features, "energy": energy, "label": label}


def _as_float64(batch: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.detach().to(torch.float64)
        out[key] = value
    return out


def check_loss_head(head: torch.nn.Module, latent_dim: int, batch: Mapping[str, torch.Tensor],
                    *, n_entries: int = 4, eps: float = 1e-6, rtol: float = 1e-4,
                    atol: float = 1e-8, seed: int = 0) -> dict[str, Any]:
    """Assert that ``head`` is a usable loss head.

    The head is copied and cast to float64 (the original is left as it is)
    and put in eval mode, so that the loss is a deterministic function of
    ``latent``. Checked:

    1. ``head`` is a ``torch.nn.Module`` and a
       :class:`~mtcv_core.interfaces.LossHead`;
    2. ``prepare(batch, fit=True)`` returns a mapping of
       tensors with one row per frame, ``(n, ...)``, which are merged into
       the batch as the trainer does;
    3. ``loss(latent, batch)`` for a random ``latent`` of shape
       ``(n, latent_dim)`` is a finite, real, 0-dimensional tensor, and the
       same value when asked twice;
    4. ``prediction`` is None or one of
       :data:`~mtcv_core.interfaces.PREDICTIONS`, and ``predict(latent)``
       returns what it declares: basin probabilities ``(n, n_classes)``
       (rows summing to one), energies ``(n,)``; None or a tensor with ``n``
       rows for a head declaring nothing;
    5. gradients flow: ``d loss / d latent`` is finite and not identically
       zero, and every parameter of the head that requires a gradient gets
       a finite one (a parameter the loss never uses fails here);
    6. ``d loss / d latent`` from autograd equals central finite differences
       ``(L(xi + eps e_ij) - L(xi - eps e_ij)) / (2 eps)`` on ``n_entries``
       entries ``(i, j)`` of the latent, in float64 (those with the largest
       gradients, plus random ones).

    Parameters
    ----------
    head : torch.nn.Module
        The loss head under test (not modified).
    latent_dim : int
        Dimension of the latent CV xi the head was built for.
    batch : mapping of str to torch.Tensor
        Frame tensors with ``n`` rows, e.g. from :func:`example_batch`:
        ``features`` (n, n_features) standardised, ``energy`` (n,) eV,
        ``label`` (n,) int (-1: unlabelled), plus anything the head needs.
        Floating-point tensors are cast to float64.
    n_entries : int
        Latent entries compared with finite differences.
    eps : float
        Finite-difference step, in latent units.
    rtol, atol : float
        Tolerances of the finite-difference comparison (atol in loss units
        per latent unit).
    seed : int
        Seed of the random latent and of the random entries.

    Returns
    -------
    dict
        ``loss`` (float), ``grad_latent`` ((n, latent_dim) float64 tensor),
        ``entries`` (list of the compared (i, j)), ``numeric`` and
        ``analytic`` (the compared derivatives, lists of float),
        ``n_parameters`` (parameters that received a gradient).

    Raises
    ------
    AssertionError
        Naming the head and the failed check.
    """
    name = f"loss head {getattr(head, 'name', type(head).__name__)!r}"
    from mtcv_core.interfaces import BASIN_PROBABILITY, ENERGY, PREDICTIONS, LossHead

    assert isinstance(head, torch.nn.Module), f"{name} must be a torch.nn.Module"
    assert isinstance(head, LossHead), (
        f"{name} must subclass mtcv_core.interfaces.LossHead (it declares prepare, predict "
        "and prediction, which the trainer calls)")
    kind = getattr(head, "prediction", None)
    assert kind is None or kind in PREDICTIONS, (
        f"{name}: prediction must be None or one of {PREDICTIONS}, got {kind!r}")
    head = copy.deepcopy(head).to(torch.float64).eval()
    data = _as_float64(batch)
    lengths = {k: v.shape[0] for k, v in data.items() if isinstance(v, torch.Tensor) and v.ndim}
    assert lengths, f"{name}: the batch holds no per-frame tensors"
    n = next(iter(lengths.values()))
    assert all(v == n for v in lengths.values()), (
        f"{name}: batch tensors have different numbers of rows: {lengths}")

    extras = head.prepare(data, fit=True)
    assert isinstance(extras, Mapping), (
        f"{name}: prepare() must return a mapping, got {type(extras).__name__}")
    for key, value in extras.items():
        assert isinstance(value, torch.Tensor) and value.shape[:1] == (n,), (
            f"{name}: prepare() must return (n_frames, ...) tensors; {key!r} is "
            f"{getattr(value, 'shape', type(value).__name__)}")
    data = {**data, **_as_float64(extras)}

    gen = torch.Generator().manual_seed(int(seed))
    xi0 = torch.randn(n, int(latent_dim), generator=gen, dtype=torch.float64)

    def loss_at(xi: torch.Tensor) -> torch.Tensor:
        return head.loss(xi, data)

    latent = xi0.clone().requires_grad_(True)
    loss = loss_at(latent)
    assert isinstance(loss, torch.Tensor), (
        f"{name}: loss() must return a tensor, got {type(loss).__name__}")
    assert loss.ndim == 0, f"{name}: loss() must be a scalar (0-d) tensor, got {tuple(loss.shape)}"
    assert loss.is_floating_point(), f"{name}: loss() must be real, got dtype {loss.dtype}"
    value = float(loss.detach())
    assert bool(torch.isfinite(loss.detach())), f"{name}: the loss is not finite: {value}"
    with torch.no_grad():
        again = float(loss_at(xi0))
    assert again == value, (
        f"{name}: loss() is not deterministic in eval mode ({value!r} then {again!r})")

    with torch.no_grad():
        pred = head.predict(xi0)
    shape = getattr(pred, "shape", type(pred).__name__)
    if kind == BASIN_PROBABILITY:
        assert isinstance(pred, torch.Tensor) and pred.ndim == 2 and pred.shape[0] == n, (
            f"{name}: predicts {kind}, so predict() must return (n, n_classes); got {shape}")
        assert torch.allclose(pred.sum(1), torch.ones(n, dtype=pred.dtype), atol=1e-6), (
            f"{name}: predicts {kind}, but the rows of predict() do not sum to one")
    elif kind == ENERGY:
        assert isinstance(pred, torch.Tensor) and tuple(pred.shape) == (n,), (
            f"{name}: predicts {kind}, so predict() must return (n,) eV; got {shape}")
    else:
        assert pred is None or (isinstance(pred, torch.Tensor) and pred.shape[:1] == (n,)), (
            f"{name}: predict() must return None or a tensor with {n} rows, got {shape}")

    params = [(k, p) for k, p in head.named_parameters() if p.requires_grad]
    head.zero_grad(set_to_none=True)
    assert loss.requires_grad, f"{name}: the loss does not depend on the latent (no graph)"
    loss.backward()
    grad = latent.grad
    assert grad is not None and grad.shape == latent.shape, (
        f"{name}: no gradient reaches the latent input")
    assert bool(torch.all(torch.isfinite(grad))), f"{name}: d loss / d latent is not finite"
    assert bool(torch.any(grad != 0)), f"{name}: d loss / d latent is identically zero"
    for key, p in params:
        assert p.grad is not None, (
            f"{name}: parameter {key!r} gets no gradient (is it used by loss()?)")
        assert bool(torch.all(torch.isfinite(p.grad))), (
            f"{name}: the gradient of parameter {key!r} is not finite")
    if params:
        assert any(bool(torch.any(p.grad != 0)) for _, p in params), (
            f"{name}: the gradients of all its parameters are zero")

    flat = grad.abs().flatten()
    k = min(int(n_entries), flat.numel())
    top = torch.topk(flat, max(1, k // 2)).indices.tolist()
    rng = np.random.default_rng(seed)
    rest = [int(i) for i in rng.permutation(flat.numel()) if int(i) not in top]
    picked = (top + rest)[:k]
    entries = [(i // int(latent_dim), i % int(latent_dim)) for i in picked]
    numeric, analytic = [], []
    with torch.no_grad():
        for i, j in entries:
            plus, minus = xi0.clone(), xi0.clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            numeric.append(float((loss_at(plus) - loss_at(minus)) / (2.0 * eps)))
            analytic.append(float(grad[i, j]))
    np.testing.assert_allclose(
        analytic, numeric, rtol=rtol, atol=atol,
        err_msg=f"{name}: d loss / d latent from autograd differs from central finite "
                f"differences (eps={eps}) at latent entries {entries}")
    return {"loss": value, "grad_latent": grad.detach(), "entries": entries,
            "numeric": numeric, "analytic": analytic, "n_parameters": len(params)}


def check_registered_heads(registry: Any, names: Sequence[str], *, latent_dim: int = 2,
                           n_features: int = 5, n_classes: int = 2, n: int = 64,
                           seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`check_loss_head` on the heads ``names`` as the trainer builds
    them, ``registry.create("loss_head", name, latent_dim=..., n_features=...,
    n_classes=...)`` with default options, on :func:`example_batch`.

    Returns the result of :func:`check_loss_head` per head name.
    """
    batch = example_batch(n, n_features=n_features, n_classes=n_classes, seed=seed)
    out = {}
    for head_name in names:
        head = registry.create("loss_head", head_name, latent_dim=latent_dim,
                               n_features=n_features, n_classes=n_classes)
        out[head_name] = check_loss_head(head, latent_dim, batch, seed=seed)
    return out


__all__ = ["example_batch", "check_loss_head", "check_registered_heads"]
