"""The pipeline's stages, one module per stage.

Each stage takes the :class:`~mtcv_core.stages.context.RunContext`, writes
its outputs under ``ctx.out`` atomically and updates ``ctx.summary``.
:data:`STAGES` is the table the pipeline runs, in order:

========  =========================================  ==========================
stage     module                                     writes
========  =========================================  ==========================
sample    :mod:`mtcv_core.stages.sample`             ``data.nc``
train     :mod:`mtcv_core.stages.train`              ``model.pt``, ``cv.ts``,
                                                     ``training.nc``
umbrella  :mod:`mtcv_core.stages.umbrella`           ``umbrella.nc``,
                                                     ``umbrella_reference.nc``
estimate  :mod:`mtcv_core.stages.estimate`           ``fes.nc``,
                                                     ``fes_reference.nc``,
                                                     ``fes_exact.nc``
rate      :mod:`mtcv_core.stages.rate`               ``rates.nc`` (with
                                                     ``[rate] enabled``)
ensemble  :mod:`mtcv_core.stages.ensemble`           ``ensemble/member_k/``,
                                                     ``ensemble/members.json``
report    :mod:`mtcv_core.stages.report`             ``report.md``, figures
========  =========================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable

from mtcv_core.stages.context import RunContext, write_json
from mtcv_core.stages.ensemble import EnsembleConfig, run_ensemble
from mtcv_core.stages.estimate import EstimateStageConfig, run_estimate
from mtcv_core.stages.rate import RateStageConfig, run_rate
from mtcv_core.stages.report import run_report
from mtcv_core.stages.sample import run_sample, split_temperature, stored_part
from mtcv_core.stages.train import run_train
from mtcv_core.stages.umbrella import UmbrellaStageConfig, reference_cv, run_umbrella
from mtcv_core.stages.validate import validate

#: the stages in the order they run: name -> runner(ctx)
STAGES: dict[str, Callable[[RunContext], None]] = {
    "sample": run_sample,
    "train": run_train,
    "umbrella": run_umbrella,
    "estimate": run_estimate,
    "rate": run_rate,
    "ensemble": run_ensemble,
    "report": run_report,
}

#: the stages that run tasks on the Dask workers (``ctx.client()``); before
#: any other stage the pipeline closes a local cluster it started, so that
#: idle workers do not hold memory through training, MBAR and the report
STAGES_ON_WORKERS = frozenset({"sample", "umbrella", "rate", "ensemble"})

__all__ = ["STAGES", "STAGES_ON_WORKERS", "RunContext", "validate", "write_json",
           "EstimateStageConfig", "EnsembleConfig", "RateStageConfig", "UmbrellaStageConfig",
           "reference_cv",
           "split_temperature", "stored_part", "run_sample", "run_train", "run_umbrella",
           "run_estimate", "run_rate", "run_ensemble", "run_report"]
