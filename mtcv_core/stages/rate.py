"""The rate stage: rate constants along the learned CV (``rates.nc``).

With ``[rate] enabled = true`` the stage hands the rate estimator
(:class:`mtcv_core.interfaces.RateEstimator`) the learned CV, its PMF
(``fes.nc``), the labelled training frames with their CV values, the
transitions of ``[umbrella]`` and the run's MD settings; the estimator runs
its own simulations (the reactive-flux one: surface sampling at the top of
the PMF, shots, optionally brute-force MD as a reference) and returns the
rates dataset (:mod:`mtcv_core.schema_rates`). Off by default: the stage
then records nothing and costs nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from mtcv_core.config import ConfigError, doc, from_mapping
from mtcv_core.interfaces import CollectiveVariable, RateEstimator, StartFrames
from mtcv_core.io import read_dataset, write_dataset
from mtcv_core.plugins import blame
from mtcv_core.schema_rates import rates_table, validate_rates
from mtcv_core.stages.common import (
    build_checked,
    component,
    evaluate_cv,
    system_component,
    train_frames,
)
from mtcv_core.stages.context import RunContext
from mtcv_core.stages.umbrella import umbrella_config


@dataclass
class RateStageConfig:
    """The ``[rate]`` table."""

    enabled: bool = doc(False, "compute rate constants along xi after the estimate stage "
                               "(1D CV only)")
    estimator: str = doc("reactive_flux", "rate estimator plugin")
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the rate estimator (for reactive_flux: surface, shots, "
               "max_configs, brute_force, ...; see the configuration reference)"})


def rate_config(ctx: RunContext) -> RateStageConfig:
    return from_mapping(RateStageConfig, ctx.config.rate, "rate")


def build_rate_estimator(ctx: RunContext, cfg: RateStageConfig) -> RateEstimator:
    """The ``[rate]`` estimator, checked against the system."""
    return build_checked(ctx, "rate_estimator", cfg.estimator, cfg.options, "rate.options",
                         name_where="rate.estimator", interface=RateEstimator)


def run_rate(ctx: RunContext) -> None:
    """Rates of the ``[umbrella]`` transitions and their reverses along xi:
    ``rates.nc``, ``summary["rates"]``."""
    from mtcv_core.export import load_cv

    cfg = rate_config(ctx)
    ctx.summary.pop("rates", None)
    if not cfg.enabled:
        return
    fes = read_dataset(ctx.out / "fes.nc")
    if fes["pmf"].dims != ("bin",):
        raise ConfigError("rate: rates along xi need a 1D CV (fes.nc has a 2D PMF); set "
                          "[rate] enabled = false or train a 1D CV (train.latent_dim = 1)")
    ucfg = ctx.umbrella or umbrella_config(ctx)
    train = train_frames(ctx)
    positions = train["coordinates"].values
    cv = load_cv(ctx.out / "cv.ts").to(torch.float64)
    xi = evaluate_cv(cv, positions)
    transitions = [tuple(ctx.system.basins.index(b) for b in pair)
                   for pair in ucfg.transitions]
    estimator = build_rate_estimator(ctx, cfg)
    with blame(component(ctx, "rate_estimator", cfg.estimator), system_component(ctx),
               action="computing rates along xi"):
        rates = estimator.rates(
            ctx.system, CollectiveVariable(cv, ("xi",), "1"), fes,
            frames=StartFrames(positions, xi, train["label"].values, train["masses"].values),
            transitions=transitions, md=ctx.md(), seed=ctx.config.seed,
            client=ctx.client(), store=ctx.out / "rate_parts", progress=ctx.progress)
    validate_rates(rates, where=f"rate estimator {cfg.estimator!r}")
    write_dataset(rates, ctx.out / "rates.nc")
    ctx.summary["rates"] = rates_table(rates)


__all__ = ["RateStageConfig", "rate_config", "build_rate_estimator", "run_rate"]
