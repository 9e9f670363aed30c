"""Training the multitask CV on the 5D model systems (Sun et al., JCTC 2022).

1. 5D Muller-Brown, 1D latent: the multitask CV (classifier + energy) with a
   plain squared energy error (``n_bins = 1``) and with the paper's
   energy-bin weighting (``n_bins = 10``), and the four single-task
   baselines (classifier, energy, pairwise, autoencoder) on the same data.
2. 5D three-well, 2D latent: the multitask CV (classifier + energy).

Data come from the sample stage of ``examples/muller_brown_5d.toml`` and
``examples/three_well_5d.toml`` (temporary directories, deleted at the end).
Every model is trained on the train split and evaluated on the test split.
Baselines without a classifier are scored by a logistic regression (one
linear layer, fitted by L-BFGS) on xi of the labelled training frames.

Usage: python benchmarks/training.py [--quick]
  --quick: 40,000 training and 10,000 test frames (random, seeded), 60 epochs.
Last line: JSON with ``mb_test_accuracy``, ``mb_energy_mae_eV``,
``tw_test_accuracy``, ``tw_energy_mae_eV``, ``mb_train_seconds`` and the
baselines.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ROOT, emit, machine, table, write_section  # noqa: E402

from mtcv_core.io import read_frames
from mtcv_core.pipeline import run_pipeline
from mtcv_core.plugins import load_plugins
from mtcv_core.training import TrainConfig, cv_values, evaluate, fit_latent_classifier, train

DOF_MASK = [[1, 1, 1], [1, 1, 0]]  # both 5D systems: atom 2 moves in x, y only
QUICK_TRAIN, QUICK_TEST = 40_000, 10_000
PAPER = {"mb": (0.98, 0.04), "tw": (0.90, 0.07), "classifier_only": 0.95}

MB_MODELS: list[tuple[str, str, dict[str, Any]]] = [
    ("mb_multitask", "multitask (plain MSE)", {"classifier": {}, "energy": {"n_bins": 1}}),
    ("mb_multitask_bins10", "multitask (10 energy bins)",
     {"classifier": {}, "energy": {"n_bins": 10}}),
    ("mb_classifier_only", "classifier only", {"classifier": {}}),
    ("mb_energy_only", "energy only", {"energy": {"n_bins": 1}}),
    ("mb_pairwise_only", "pairwise only", {"pairwise": {}}),
    ("mb_autoencoder", "autoencoder", {"reconstruction": {}}),
]


def split(frames: Any, name: str, n_max: int | None, rng: np.random.Generator) -> Any:
    """The frames of split ``name``, randomly subsampled to ``n_max`` if given."""
    codes = frames["split"].attrs["flag_meanings"].split()
    idx = np.flatnonzero(frames["split"].values == codes.index(name))
    if n_max is not None and len(idx) > n_max:
        idx = np.sort(rng.choice(idx, n_max, replace=False))
    return frames.isel(frame=idx).load()


def generate(example: str, quick: bool, seed: int) -> tuple[Any, Any, float]:
    """Sample stage of ``examples/<example>.toml`` -> (train, test, seconds)."""
    out = Path(tempfile.mkdtemp(prefix="mtcv-bench-train-"))
    try:
        t0 = time.perf_counter()
        run_pipeline(ROOT / "examples" / f"{example}.toml", out=out, until="sample",
                     progress=False)
        seconds = time.perf_counter() - t0
        frames = read_frames(out / "data.nc")
        rng = np.random.default_rng(seed)
        tr = split(frames, "train", QUICK_TRAIN if quick else None, rng)
        te = split(frames, "test", QUICK_TEST if quick else None, rng)
        frames.close()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return tr, te, seconds


def logistic_accuracy(xi_tr: np.ndarray, y_tr: np.ndarray, xi_te: np.ndarray,
                      y_te: np.ndarray) -> float:
    """Test accuracy of a multinomial logistic regression fitted on xi (train)."""
    basin_of = fit_latent_classifier(xi_tr, y_tr, int(max(y_tr.max(), y_te.max())) + 1)
    lab_te = y_te >= 0
    return float(np.mean(basin_of(xi_te[lab_te]) == y_te[lab_te]))


def run_model(key: str, label: str, heads: dict[str, Any], latent: int, tr: Any, te: Any,
              epochs: int, warmup: int, registry: Any) -> dict[str, Any]:
    cfg = TrainConfig(latent_dim=latent, epochs=epochs, warmup_epochs=warmup, batch_size=2048,
                      featurizer_options={"dof_mask": DOF_MASK}, seed=0, heads=heads)
    t0 = time.perf_counter()
    model, history = train(tr, cfg, registry, progress=False)
    seconds = time.perf_counter() - t0
    metrics = evaluate(model, te)
    acc, acc_source = metrics["accuracy"], "classifier head"
    if acc is None:
        acc = logistic_accuracy(cv_values(model, tr), tr["label"].values,
                                cv_values(model, te), te["label"].values)
        acc_source = "logistic regression on xi"
    result = {"key": key, "model": label, "heads": ", ".join(
        f"{h}(n_bins={o['n_bins']})" if "n_bins" in o else h for h, o in heads.items()),
        "latent": latent, "accuracy": acc, "accuracy_source": acc_source,
        "energy_mae_eV": metrics["energy_mae_eV"],
        "energy_mae_balanced_eV": metrics.get("energy_mae_balanced_eV"),
        "seconds": seconds, "epochs_run": int(history.sizes["epoch"]),
        "n_train": int(tr.sizes["frame"]), "n_test": int(te.sizes["frame"])}
    print(f"{key}: acc={acc:.4f} ({acc_source}) mae={result['energy_mae_eV']} "
          f"bal={result['energy_mae_balanced_eV']} {seconds:.0f} s, "
          f"{result['epochs_run']} epochs", file=sys.stderr, flush=True)
    return result


def fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TRAIN:,} train / {QUICK_TEST:,} test frames, 60 epochs")
    args = parser.parse_args()
    epochs, warmup = (60, 20) if args.quick else (300, 100)
    registry = load_plugins()
    t_start = time.perf_counter()

    results: list[dict[str, Any]] = []
    tr, te, mb_gen = generate("muller_brown_5d", args.quick, seed=0)
    for key, label, heads in MB_MODELS:
        results.append(run_model(key, label, heads, 1, tr, te, epochs, warmup, registry))
    del tr, te
    tr, te, tw_gen = generate("three_well_5d", args.quick, seed=1)
    results.append(run_model("tw_multitask", "multitask (plain MSE)",
                             {"classifier": {}, "energy": {"n_bins": 1}}, 2, tr, te,
                             epochs, warmup, registry))
    del tr, te
    total = time.perf_counter() - t_start
    by = {r["key"]: r for r in results}

    paper = {"mb_multitask": f"{PAPER['mb'][0]:.0%}, {PAPER['mb'][1]} eV",
             "mb_multitask_bins10": f"{PAPER['mb'][0]:.0%}, {PAPER['mb'][1]} eV",
             "mb_classifier_only": f"{PAPER['classifier_only']:.0%}",
             "tw_multitask": f"{PAPER['tw'][0]:.0%}, {PAPER['tw'][1]} eV"}
    rows = [{"system": "three-well" if r["key"].startswith("tw") else "Muller-Brown",
             "model": r["model"], "heads": r["heads"], "latent": r["latent"],
             "test accuracy": f"{r['accuracy']:.2%}",
             "accuracy from": r["accuracy_source"],
             "energy MAE eV": fmt(r["energy_mae_eV"], 3),
             "balanced MAE eV": fmt(r["energy_mae_balanced_eV"], 3),
             "train s": f"{r['seconds']:.0f}", "epochs": r["epochs_run"],
             "frames (train/test)": f"{r['n_train']:,} / {r['n_test']:,}",
             "paper": paper.get(r["key"], "-")} for r in results]
    columns = ["system", "model", "heads", "latent", "test accuracy", "accuracy from",
               "energy MAE eV", "balanced MAE eV", "train s", "epochs", "frames (train/test)",
               "paper"]

    mb, mb10, tw = by["mb_multitask"], by["mb_multitask_bins10"], by["tw_multitask"]
    clf = by["mb_classifier_only"]
    def pct(r: dict[str, Any]) -> str:
        return f"{r['accuracy']:.2%}"

    def ev(r: dict[str, Any]) -> str:
        return f"{r['energy_mae_eV']:.3f} eV"

    checks = [
        (f"MB multitask (plain MSE): accuracy >= 98 % ({pct(mb)})",
         mb["accuracy"] >= PAPER["mb"][0]),
        (f"MB multitask (plain MSE): energy MAE <= 0.04 eV ({ev(mb)})",
         mb["energy_mae_eV"] <= PAPER["mb"][1]),
        (f"MB multitask (10 bins): accuracy >= 98 % ({pct(mb10)})",
         mb10["accuracy"] >= PAPER["mb"][0]),
        (f"MB multitask (10 bins): energy MAE <= 0.04 eV ({ev(mb10)})",
         mb10["energy_mae_eV"] <= PAPER["mb"][1]),
        (f"three-well multitask: accuracy >= 90 % ({pct(tw)})", tw["accuracy"] >= PAPER["tw"][0]),
        (f"three-well multitask: energy MAE <= 0.07 eV ({ev(tw)})",
         tw["energy_mae_eV"] <= PAPER["tw"][1]),
        (f"MB multitask (plain MSE) more accurate than classifier only by >= 1 point "
         f"({pct(mb)} vs {pct(clf)}; paper: 98 % vs 95 %)",
         mb["accuracy"] >= clf["accuracy"] + 0.01),
    ]
    check_lines = "\n".join(f"- {text}: {verdict(ok)}" for text, ok in checks)
    command = "python benchmarks/training.py" + (" --quick" if args.quick else "")
    variant = (f"**This is the `--quick` variant**: {QUICK_TRAIN:,} training and "
               f"{QUICK_TEST:,} test frames drawn at random (seeded) from the splits, "
               f"{epochs} epochs ({warmup} warm-up); the full run uses all frames and "
               "300 epochs (100 warm-up)." if args.quick else
               f"Full variant: all frames of the splits, {epochs} epochs ({warmup} warm-up).")
    write_section("training", f"""## Training the multitask CV (5D model systems)

`OPENBLAS_NUM_THREADS=1 {command}` on {machine()}; {total / 60:.1f} min in all
(sample stage: {mb_gen:.0f} s Muller-Brown, {tw_gen:.0f} s three-well).

{variant} Every model: encoder [32, 16], batch 2048, seed 0, cartesian features
with `dof_mask = {DOF_MASK}`, early stopping on a 10 % validation share of the
training split (patience 40 after the warm-up); metrics on the test split.
The test split starts from other x1/x~ and x3/y~ ratios, as in the paper: angles
in the eighth-turn sectors k pi/2 + [pi/4, pi/2) against k pi/2 + [0, pi/4) for
training, so the CV must have learnt the radial true CVs (x~, y~) rather than the
Cartesian region of the training frames.
Energy MAE over all test frames; balanced MAE weights the frames so that every
energy bin of the energy head counts equally (equal to the plain MAE for
`n_bins=1`). Baselines without a classifier head are scored by a logistic
regression (one linear layer, L-BFGS) fitted on xi of the labelled training
frames; the paper column gives Sun et al.'s accuracy / energy MAE.

{table(rows, columns)}

Targets (paper: MB 98 %, 0.04 eV; three-well 90 %, 0.07 eV; classifier only 95 %):

{check_lines}
""")
    figures: dict[str, Any] = {
        "quick": args.quick,
        "mb_test_accuracy": round(mb["accuracy"], 5),
        "mb_energy_mae_eV": round(mb["energy_mae_eV"], 5),
        "mb_train_seconds": round(mb["seconds"], 1),
        "tw_test_accuracy": round(tw["accuracy"], 5),
        "tw_energy_mae_eV": round(tw["energy_mae_eV"], 5),
        "tw_train_seconds": round(tw["seconds"], 1),
        "total_seconds": round(total, 1),
    }
    for r in results:
        if r["key"] in ("mb_multitask", "tw_multitask"):
            continue
        figures[f"{r['key']}_test_accuracy"] = round(r["accuracy"], 5)
        if r["energy_mae_eV"] is not None:
            figures[f"{r['key']}_energy_mae_eV"] = round(r["energy_mae_eV"], 5)
        if r["energy_mae_balanced_eV"] is not None:
            figures[f"{r['key']}_energy_mae_balanced_eV"] = round(
                r["energy_mae_balanced_eV"], 5)
        figures[f"{r['key']}_train_seconds"] = round(r["seconds"], 1)
    figures["mb_energy_mae_balanced_eV"] = mb["energy_mae_balanced_eV"]
    figures["tw_energy_mae_balanced_eV"] = tw["energy_mae_balanced_eV"]
    emit(figures)


if __name__ == "__main__":
    main()
