"""The ensemble stage: the CV's own uncertainty.

A learned CV is one draw: retrained with another seed (or on data sampled
with another seed) it gives another xi, and the barrier along it moves by
more than the error bar of one umbrella run can see. With ``[ensemble]
members = K`` (K >= 2) this stage trains K - 1 more CVs, runs the umbrella
and estimate stages on each in ``OUT/ensemble/member_k/`` (member 0 is the
run itself), and reports every transition's barrier and dF as

* ``mean`` over the K members;
* ``statistical``: the root mean square of the members' own error bars (what
  one umbrella run's bootstrap sees);
* ``cv``: the CV-to-CV part, ``sqrt(max(0, var_k - statistical^2))`` with
  ``var_k`` the variance of the members' values (ddof 1);
* ``total = sqrt(statistical^2 + cv^2)``: the spread expected of one
  member's value, i.e. the error bar of a single run that accounts for the
  CV; the mean itself is known to ``total / sqrt(K)`` (``error_of_mean``).

Members run one after another, each on the run's Dask client (their windows
are the parallel tasks); each keeps its own ``summary.json``, so an
interrupted ensemble resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtcv_core.config import ConfigError, doc, from_mapping, positive
from mtcv_core.stages.context import RunContext, write_json

#: the quantities combined over members: summary row key -> its error key
QUANTITIES = {"barrier_eV": "barrier_err_eV", "delta_F_eV": "delta_F_err_eV"}

#: values along each member's own CV carried along (exact PMF, where the
#: system has one): their spread is the CV-to-CV part without sampling noise
EXACT_KEYS = ("exact_barrier_eV", "exact_delta_F_eV")


@dataclass
class EnsembleConfig:
    """The ``[ensemble]`` table."""

    members: int = positive(1, "CVs in the ensemble, the run's own included (1: no "
                               "ensemble; K >= 2 trains K - 1 more with other seeds and "
                               "runs umbrella + estimate on each)")
    resample: bool = doc(False, "members also rerun the sample stage with their own seed "
                                "(TPS, basin MD): the CV-to-CV spread then includes the "
                                "data's; otherwise members share the run's data.nc")


def ensemble_config(ctx: RunContext) -> EnsembleConfig:
    """The ``[ensemble]`` table; more than one member needs a CV mtcv trains
    (a ``train.cv_file`` has no seed to vary)."""
    cfg = from_mapping(EnsembleConfig, ctx.config.ensemble, "ensemble")
    if cfg.members > 1 and ctx.config.train.get("cv_file"):
        raise ConfigError(f"ensemble.members: {cfg.members} CVs need a CV trained by mtcv; "
                          f"train.cv_file ({ctx.config.train['cv_file']}) is one fixed CV "
                          "(set members = 1 or drop cv_file)")
    return cfg


def member_seed(seed: int, k: int) -> int:
    """Member ``k``'s seed from the run's ``seed`` (member 0 is the run)."""
    from mtcv_core.pipeline import MAX_SEED

    return (int(seed) + 7919 * k) % (MAX_SEED + 1)


def member_config(config: Any, k: int) -> Any:
    """The run config of member ``k``: master seed and train seed moved on,
    no umbrella windows along the true CVs (they do not depend on the CV:
    the run's own are the reference), no nested ensemble; everything else as
    the run's."""
    train = dict(config.train)
    train["seed"] = member_seed(int(train.get("seed", config.seed)), k)
    umbrella = {**config.umbrella, "reference": False} if config.umbrella else {}
    return dataclasses.replace(config, seed=member_seed(config.seed, k), train=train,
                               umbrella=umbrella, ensemble={},
                               name=f"{config.name}_member_{k}")


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def run_member(ctx: RunContext, k: int, *, resample: bool) -> dict[str, Any]:
    """Run member ``k`` in ``OUT/ensemble/member_k`` (resuming the stages it
    finished) and return its summary."""
    from mtcv_core.pipeline import read_summary
    from mtcv_core.stages import STAGES as RUNNERS
    from mtcv_core.stages.validate import validate

    out = ctx.out / "ensemble" / f"member_{k}"
    out.mkdir(parents=True, exist_ok=True)
    config = member_config(ctx.config, k)
    path = out / "summary.json"
    summary: dict[str, Any] = read_summary(path) if path.exists() else {}
    summary.setdefault("member", k)
    summary.setdefault("seed", config.seed)
    summary.setdefault("train_seed", config.train["seed"])
    summary.setdefault("system", config.system)
    summary.setdefault("temperature_K", config.temperature_K)
    summary.setdefault("stages_done", [])
    summary.setdefault("timings_s", {})
    # the member's own config, as a run's summary carries it (the sample
    # stage writes it into data.nc's provenance)
    summary["config"] = json.loads(json.dumps(dataclasses.asdict(config), sort_keys=True))
    child = RunContext(config=config, out=out, registry=ctx.registry, system=ctx.system,
                       client_factory=ctx.client, progress=ctx.progress, summary=summary)
    validate(child, allow_large=True)  # the run's own validation checked the sizes
    stages = ["sample", "train", "umbrella", "estimate"]
    if not resample:
        _link_or_copy(ctx.out / "data.nc", out / "data.nc")
        stages = stages[1:]
    for stage in stages:
        if stage in summary["stages_done"]:
            continue
        t0 = time.perf_counter()
        RUNNERS[stage](child)
        summary["timings_s"][stage] = round(time.perf_counter() - t0, 3)
        summary["stages_done"].append(stage)
        child.save_summary()
    # never child.close_client(): the client is the run's
    return summary


def combine(rows_per_member: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per transition, each quantity of :data:`QUANTITIES` over the members:
    ``values``, ``errors``, ``mean``, ``statistical``, ``cv``, ``total``,
    ``error_of_mean`` (eV; see the module docstring), and the exact values
    along each member's CV where there are some. ``rows_per_member``: each
    member's ``summary["transitions"]``, member 0 first."""
    out = []
    for r0 in rows_per_member[0]:
        pair = (r0["from"], r0["to"])
        rows = [next((r for r in rows if (r["from"], r["to"]) == pair), {})
                for rows in rows_per_member]
        entry: dict[str, Any] = {"from": pair[0], "to": pair[1]}
        for key, err_key in QUANTITIES.items():
            entry[key.removesuffix("_eV")] = _combine_one(
                [r.get(key) for r in rows], [r.get(err_key) for r in rows])
        for key in EXACT_KEYS:
            values = [r.get(key) for r in rows]
            if all(isinstance(v, (int, float)) for v in values):
                entry[key.removesuffix("_eV")] = {
                    "values": values, "mean": _round(sum(values) / len(values)),
                    "std": _round(_std(values))}
        out.append(entry)
    return out


def _std(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _round(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def _combine_one(values: Sequence[Any], errors: Sequence[Any]) -> dict[str, Any]:
    ok = [isinstance(v, (int, float)) and math.isfinite(v) for v in values]
    vals = [float(v) for v, good in zip(values, ok, strict=True) if good]
    errs = [float(e) for e, good in zip(errors, ok, strict=True)
            if good and isinstance(e, (int, float)) and math.isfinite(e)]
    record: dict[str, Any] = {"values": [_round(v) if good else None
                                         for v, good in zip(values, ok, strict=True)],
                              "errors": [e if isinstance(e, (int, float)) else None
                                         for e in errors], "members_used": len(vals)}
    if len(vals) < 2:
        return {**record, "mean": _round(vals[0]) if vals else None, "statistical": None,
                "cv": None, "total": None, "error_of_mean": None}
    mean = sum(vals) / len(vals)
    spread = _std(vals)
    stat = math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else math.nan
    cv = math.sqrt(max(0.0, spread**2 - stat**2)) if math.isfinite(stat) else spread
    total = math.sqrt(stat**2 + cv**2) if math.isfinite(stat) else spread
    return {**record, "mean": _round(mean), "std_over_members": _round(spread),
            "statistical": _round(stat), "cv": _round(cv), "total": _round(total),
            "error_of_mean": _round(total / math.sqrt(len(vals)))}


def run_ensemble(ctx: RunContext) -> None:
    """Members 1..K-1 of the CV ensemble, then the combined numbers in
    ``summary["ensemble"]`` and, per transition row, ``ensemble_*`` keys
    (``ensemble_barrier_mean_eV``, ``..._total_err_eV``,
    ``..._statistical_err_eV``, ``..._cv_err_eV``; the same for delta_F).
    Nothing with ``members = 1`` or without an estimate."""
    cfg = ensemble_config(ctx)
    if cfg.members < 2 or "transitions" not in ctx.summary:
        return
    from tqdm.auto import tqdm

    from mtcv_core import sanity

    sanity.clear(ctx.summary, "ensemble")

    rows = [ctx.summary["transitions"]]
    seeds = [{"member": 0, "seed": ctx.config.seed,
              "train_seed": int(ctx.config.train.get("seed", ctx.config.seed))}]
    for k in tqdm(range(1, cfg.members), desc="CV ensemble", unit="member",
                  disable=not ctx.progress):
        member = run_member(ctx, k, resample=cfg.resample)
        rows.append(member.get("transitions", []))
        for w in member.get("warnings", []):
            sanity.record(ctx.summary, "ensemble", f"member_{k} {w['code']}",
                          f"ensemble member {k}: {w['message']}")
        seeds.append({"member": k, "seed": member["seed"], "train_seed": member["train_seed"],
                      "test_accuracy": member.get("test_accuracy")})
    combined = combine(rows)
    ctx.summary["ensemble"] = {"members": cfg.members, "resample": cfg.resample,
                               "member_seeds": seeds, "transitions": combined}
    by_pair = {(c["from"], c["to"]): c for c in combined}
    for row in ctx.summary["transitions"]:
        c = by_pair.get((row["from"], row["to"]))
        if c is None:
            continue
        for key in QUANTITIES:
            q = c[key.removesuffix("_eV")]
            stem = f"ensemble_{key.removesuffix('_eV')}"
            row[f"{stem}_mean_eV"] = q["mean"]
            row[f"{stem}_total_err_eV"] = q["total"]
            row[f"{stem}_statistical_err_eV"] = q["statistical"]
            row[f"{stem}_cv_err_eV"] = q["cv"]
    (ctx.out / "ensemble").mkdir(exist_ok=True)
    write_json(ctx.out / "ensemble" / "members.json",
               {"member_seeds": seeds, "transitions_per_member": rows})


__all__ = ["EnsembleConfig", "ensemble_config", "member_config", "member_seed", "combine",
           "run_member", "run_ensemble"]
