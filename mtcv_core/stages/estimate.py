"""The estimate stage: free energies along xi (``fes.nc``) and along the
true CVs (``fes_reference.nc``); barriers and free-energy differences beside
the exact values along the same xi and the system's quadrature reference in
``summary.json``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.config import doc, from_mapping
from mtcv_core.errors import MtcvError
from mtcv_core.interfaces import Estimator
from mtcv_core.io import read_dataset, write_dataset
from mtcv_core.plugins import blame, build_component
from mtcv_core.schema_umbrella import transitions_table, validate_fes
from mtcv_core.stages.common import (
    component,
    require_interface,
    train_frames,
    trained_cv,
)
from mtcv_core.stages.context import RunContext
from mtcv_core.stages.umbrella import reference_cv, umbrella_config


@dataclass
class EstimateStageConfig:
    """The ``[estimate]`` table."""

    estimator: str = doc("mbar", "estimator plugin")
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the estimator (n_bins, n_bootstraps, ...)"})
    reference_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options that differ for the true-CV reference (e.g. fewer bootstraps for "
               "its many 2D windows)"})
    convergence: bool = doc(True, "a convergence verdict for every transition along xi "
                                  "(summary.json, report; `mtcv run --strict` fails on it): "
                                  "window drift between the halves of each walker, the "
                                  "estimate repeated on the first and on the second halves, "
                                  "overlap and dropped windows (mtcv_core.convergence)")


def estimate_config(ctx: RunContext) -> EstimateStageConfig:
    return from_mapping(EstimateStageConfig, ctx.config.estimate, "estimate")


def build_estimator(ctx: RunContext, cfg: EstimateStageConfig, *,
                    reference: bool = False) -> Estimator:
    """The ``[estimate]`` estimator, with ``reference_options`` on top of
    ``options`` for the true-CV reference."""
    if reference:
        built = build_component(ctx.registry, "estimator", cfg.estimator,
                                {**cfg.options, **cfg.reference_options},
                                "estimate.reference_options", name_where="estimate.estimator")
    else:
        built = build_component(ctx.registry, "estimator", cfg.estimator, cfg.options,
                                "estimate.options", name_where="estimate.estimator")
    return require_interface(built, Estimator, "estimator", cfg.estimator)


def reference_basins(ctx: RunContext) -> Callable[[np.ndarray], np.ndarray]:
    """Basins along the reference CVs: the system's own regions when the
    reference restrains all true CVs; for a subset (``reference_cvs``, e.g.
    phi alone) a linear classifier fitted on those CVs of the labelled
    training frames, as for a learned CV without a classifier head."""
    from mtcv_core.training import fit_latent_classifier

    cfg = ctx.umbrella or umbrella_config(ctx)
    if not cfg.reference_cvs or list(cfg.reference_cvs) == list(ctx.system.true_cv_names):
        return ctx.system.basin_index_cv
    _, index = reference_cv(ctx, cfg.reference_cvs)
    train = train_frames(ctx)
    values = ctx.system.true_cv(train["coordinates"].values)[:, index]
    return fit_latent_classifier(values, train["label"].values, len(ctx.system.basins))


def _estimate(ctx: RunContext, estimator: Estimator, name: str, samples: xr.Dataset,
              basin_of: Callable[[np.ndarray], np.ndarray], action: str) -> xr.Dataset:
    with blame(component(ctx, "estimator", name), action=action):
        fes = estimator.estimate(samples, basin_of=basin_of,
                                 basin_names=list(ctx.system.basins))
    return validate_fes(fes, where=f"estimator {name!r} ({action})")


def _num(d: dict[str, Any], key: str) -> float | None:
    v = d.get(key)
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def run_estimate(ctx: RunContext) -> None:
    """Free energies along xi and the true CVs; the transitions table."""
    from mtcv_core import sanity
    from mtcv_core.exact_pmf import transition_values

    sanity.clear(ctx.summary, "estimate")
    cfg = ctx.estimate or estimate_config(ctx)
    ucfg = ctx.umbrella or umbrella_config(ctx)
    cv, basin_of = trained_cv(ctx)
    samples = read_dataset(ctx.out / "umbrella.nc")
    estimator = build_estimator(ctx, cfg)
    fes = _estimate(ctx, estimator, cfg.estimator, samples, basin_of, "estimating along xi")
    write_dataset(fes, ctx.out / "fes.nc")
    along_xi = {(r["from"], r["to"]): r for r in transitions_table(fes)}
    convergence = (convergence_along_xi(ctx, estimator, cfg.estimator, samples, fes, basin_of)
                   if cfg.convergence else {})
    true_cv: dict[tuple[str, str], dict[str, Any]] = {}
    if (ctx.out / "umbrella_reference.nc").exists():
        ref = _estimate(ctx, build_estimator(ctx, cfg, reference=True), cfg.estimator,
                        read_dataset(ctx.out / "umbrella_reference.nc"), reference_basins(ctx),
                        "estimating along the true CVs")
        write_dataset(ref, ctx.out / "fes_reference.nc")
        true_cv = {(r["from"], r["to"]): r for r in transitions_table(ref)}
    exact = exact_along_xi(ctx, fes, cv, basin_of)
    quadrature = {(r["from"], r["to"]): r
                  for r in ctx.system.reference_transitions(ctx.config.temperature_K)}
    rows = []
    for a, b in (tuple(p) for p in ucfg.transitions):
        x = along_xi.get((a, b), {})
        t = true_cv.get((a, b), {})
        q = quadrature.get((a, b), {})
        row = {
            "from": a, "to": b,
            "barrier_eV": _num(x, "barrier_eV"), "barrier_err_eV": _num(x, "barrier_err_eV"),
            "delta_F_eV": _num(x, "delta_F_eV"), "delta_F_err_eV": _num(x, "delta_F_err_eV"),
            "reference_barrier_eV": _num(q, "barrier_eV"),
            "reference_delta_F_eV": _num(q, "delta_F_eV"),
            "reference_method": q.get("method"),
            "true_cv_barrier_eV": _num(t, "barrier_eV"),
            "true_cv_barrier_err_eV": _num(t, "barrier_err_eV"),
            "true_cv_delta_F_eV": _num(t, "delta_F_eV"),
            "true_cv_delta_F_err_eV": _num(t, "delta_F_err_eV"),
        }
        for label, ds in exact.items():
            ev = transition_values(ds, a, b)
            row[f"{label}_barrier_eV"] = _num(ev, "barrier_eV")
            row[f"{label}_delta_F_eV"] = _num(ev, "delta_F_eV")
        if (a, b) in convergence:
            row["converged"] = convergence[(a, b)]["converged"]
            row["convergence"] = convergence[(a, b)]["checks"]
        rows.append(row)
    ctx.summary["transitions"] = rows
    sanity.check_estimate(ctx.summary, rows)
    ctx.summary["min_neighbour_overlap"] = fes.attrs.get("min_neighbour_overlap")


def convergence_along_xi(ctx: RunContext, estimator: Estimator, name: str,
                         samples: xr.Dataset, fes: xr.Dataset,
                         basin_of: Callable[[np.ndarray], np.ndarray]
                         ) -> dict[tuple[str, str], dict[str, Any]]:
    """The convergence verdict (:func:`mtcv_core.convergence.verdict`) of
    every transition along xi: drift per window, the same estimator on the
    first and on the second halves of every walker, and the estimator's own
    diagnostics. Umbrella datasets only (``mtcv.umbrella/1``); empty for
    other samples. The halves' warnings (they have half the samples) are not
    repeated."""
    import warnings

    from mtcv_core.convergence import halves_agree, split_halves, verdict, window_drift
    from mtcv_core.schema import SCHEMA_ATTR
    from mtcv_core.schema_umbrella import UMBRELLA_SCHEMA

    if samples.attrs.get(SCHEMA_ATTR) != UMBRELLA_SCHEMA:
        return {}
    drift = window_drift(samples)
    halves = []
    failure = None
    for part, label in zip(split_halves(samples), ("first", "second"), strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                est = _estimate(ctx, estimator, name, part, basin_of,
                                f"estimating along xi on the {label} halves")
            except MtcvError as exc:  # a half the estimator refuses has not converged
                failure = f"the estimator failed on the {label} halves: {exc}"
                halves.append({})
                continue
        halves.append({(r["from"], r["to"]): r for r in transitions_table(est)})
    out = {}
    for r in transitions_table(fes):
        pair = (r["from"], r["to"])
        agree = halves_agree(r, halves[0].get(pair, {}), halves[1].get(pair, {}))
        if failure is not None:
            agree = {"error": failure, "ok": False}
        out[pair] = verdict(fes=fes, drift=drift, halves=agree, samples=samples)
    bad = drift["window"].values[drift["drifting"].values].tolist()
    ctx.summary["drifting_windows"] = [int(w) for w in bad]
    return out


def exact_along_xi(ctx: RunContext, fes: xr.Dataset,
                   cv: Callable[[np.ndarray], np.ndarray],
                   basin_of: Callable[[np.ndarray], np.ndarray]) -> dict[str, xr.Dataset]:
    """The exact PMF along the learned CV ``cv`` (positions (n, n_atoms, 3)
    -> xi (n, d) numpy) on ``fes.nc``'s bins, basins by
    ``basin_of`` (the same as the estimate's), for systems
    with quadrature (``System.equilibrium_nodes``): ``exact`` with the
    non-periodic spectators spread as in the training data (Gaussian, their
    std), written to ``fes_exact.nc``; ``exact_spectators_at_zero`` with them
    held at zero. Empty for other systems."""
    from mtcv_core.exact_pmf import exact_pmf, fes_edges
    from mtcv_core.spectators import declares_spectators, training_ranges

    spread = None
    if declares_spectators(ctx.system):
        ranges = training_ranges(ctx.system, train_frames(ctx)["coordinates"].values)
        spread = [0.0 if r["period"] > 0 else r["std"] for r in ranges.values()]
    options = json.loads(fes.attrs.get("estimator_options", "{}"))
    kw = dict(basin_of=basin_of, basin_names=list(ctx.system.basins),
              diagonal=bool(options.get("diagonal_moves", False)), seed=ctx.config.seed)
    try:
        edges = fes_edges(fes)
        main = exact_pmf(ctx.system, cv, ctx.config.temperature_K, edges,
                         spectator_spread=spread, progress=ctx.progress, **kw)
    except NotImplementedError:
        return {}
    main.attrs["spectator_names"] = " ".join(getattr(ctx.system, "spectator_names", ()))
    write_dataset(main, ctx.out / "fes_exact.nc")
    out = {"exact": main}
    if spread is not None and np.any(np.asarray(spread) > 0):
        out["exact_spectators_at_zero"] = exact_pmf(
            ctx.system, cv, ctx.config.temperature_K, edges, spectator_spread=None, **kw)
    return out


__all__ = ["EstimateStageConfig", "estimate_config", "build_estimator", "reference_basins",
           "run_estimate", "convergence_along_xi", "exact_along_xi"]
