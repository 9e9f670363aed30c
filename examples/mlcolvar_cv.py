"""A CV trained by mlcolvar, sampled and estimated by mtcv.

mlcolvar (Bonati et al.) trains data-driven CVs -- Deep-LDA, Deep-TDA,
Deep-TICA -- and exports them as TorchScript; it has no umbrella sampling or
MBAR of its own. This script:

1. takes the frames of an mtcv run (``--data OUT/data.nc``; by default it
   runs the sample stage of ``--config`` first, the built-in quick demo);
2. trains mlcolvar's Deep-LDA (``--model deep_lda``) or Deep-TDA
   (``--model deep_tda``) on the basin-MD training frames (the states' own
   sampling, as these CVs are meant to be trained), on the features
   mtcv's ``cartesian`` featurizer gives (the coordinates the system lets
   move), and exports it with ``to_torchscript``;
3. runs mtcv's train (``train.cv_file``: import only), umbrella and
   estimate stages along it on the same frames (``[sample.sources.run_frames]``)
   and prints the barrier and dF against the exact values along the same CV.

Usage::

    pip install -e ".[mlcolvar]"
    python examples/mlcolvar_cv.py                      # the quick demo's data
    python examples/mlcolvar_cv.py --data runs/quick/data.nc --out runs/mlcolvar
    python examples/mlcolvar_cv.py --small              # seconds: the tests' size

The last line is JSON: the run directory, the CV's test accuracy and its
transitions table. ``benchmarks/cv_comparison.py`` compares it with mtcv's
multitask CV on 5D Muller-Brown.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tutorial_muller_brown import merge, toml_text  # examples/ is on sys.path

ROOT = Path(__file__).resolve().parents[1]

#: tiny settings for the tests (--small): sampling, umbrella and estimate
SMALL = {
    "sample": {"test_fraction": 0.25, "sources": {
        "basin_md": {"trajectories_per_basin": 4, "n_steps": 200, "stride": 10,
                     "equilibration_steps": 50, "walkers_per_task": 2},
        "tps": {"chains": 2, "shots_per_chain": 2, "burn_in_shots": 1, "stride": 20,
                "walkers_per_task": 1, "shooting_energy_width_eV": 0.05,
                "max_segment_steps": 5000}}},
    "umbrella": {"sampler_options": {"n_windows": 6, "max_refinements": 1,
                                     "walkers_per_window": 2, "n_steps": 400,
                                     "equilibration_steps": 50, "stride": 10,
                                     "windows_per_task": 1}},
    "estimate": {"options": {"n_bins": 12, "n_bootstraps": 0}},
}


def base_config(path: Path | None, small: bool) -> dict[str, Any]:
    """The config to start from (the quick demo by default), with --small's
    settings on top (its data sources replace the config's)."""
    from mtcv_core.config import load_toml

    config = load_toml(path)[0]
    if small:
        config = merge(merge(config, {"sample": {"sources": None}}), SMALL)
        config = merge(config, {"execution": {"workers": 1}, "umbrella": {"reference": None}})
    return config


def features_of(system: Any) -> Any:
    """mtcv's ``cartesian`` featurizer for ``system`` (its moving coordinates)."""
    from mtcv_core.plugins import build_component, load_plugins

    options = {"dof_mask": system.dof_mask.tolist()} if system.dof_mask is not None else {}
    return build_component(load_plugins(), "featurizer", "cartesian", options,
                           "featurizer_options"), options


def train_mlcolvar(data: Any, featurizer: Any, *, model: str, epochs: int, seed: int,
                   out: Path) -> Path:
    """Train Deep-LDA / Deep-TDA on the labelled training frames' features;
    export TorchScript (features (n, n_features) -> (n, 1)) to ``out``."""
    import lightning
    from mlcolvar.cvs import DeepLDA, DeepTDA
    from mlcolvar.data import DictDataset, DictModule

    from mtcv_core.schema import category_names
    from mtcv_core.stages.common import split

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    lightning.seed_everything(seed, workers=True, verbose=False)
    train = split(data, "train")
    # the states' own sampling, as Deep-LDA / Deep-TDA are meant to be trained
    # (the TPS frames' labels are where their paths commit, not their state)
    labelled = (train["label"].values >= 0) & (
        train["source"].values == category_names(train, "source").index("basin_md"))
    with torch.no_grad():
        x = featurizer(torch.as_tensor(train["coordinates"].values[labelled],
                                       dtype=torch.float64)).float()
    y = torch.as_tensor(train["label"].values[labelled], dtype=torch.float32)
    n_states = int(y.max().item()) + 1
    n_features = x.shape[1]
    layers = [n_features, 24, 24, 4] if model == "deep_lda" else [n_features, 24, 24, 1]
    if model == "deep_lda":
        cv = DeepLDA(layers=layers, n_states=n_states,
                     options={"nn": {"activation": "shifted_softplus"}})
    elif model == "deep_tda":
        if n_states != 2:
            raise SystemExit(f"--model deep_tda: this script sets targets for 2 states, the "
                             f"data has {n_states}")
        cv = DeepTDA(n_states=2, n_cvs=1, target_centers=[-7.0, 7.0],
                     target_sigmas=[0.2, 0.2], layers=layers)
    else:
        raise SystemExit(f"--model: expected deep_lda or deep_tda, got {model!r}")
    dataset = DictDataset({"data": x, "labels": y})
    module = DictModule(dataset, lengths=[0.8, 0.2], batch_size=min(len(x), 2048),
                        generator=torch.Generator().manual_seed(seed))
    trainer = lightning.Trainer(max_epochs=epochs, accelerator="cpu", devices=1,
                                logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lightning's advice on workers and logging
        trainer.fit(cv, module)
    cv.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lightning's deprecation of to_torchscript, tracing
        cv.to_torchscript(file_path=str(out), method="trace")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data.nc of an mtcv run (default: run the sample "
                                       "stage of --config into OUT/sample_run)")
    parser.add_argument("--config", help="config to start from (default: the quick demo)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "mlcolvar"))
    parser.add_argument("--model", default="deep_lda", choices=["deep_lda", "deep_tda"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default 200; 20 with --small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="tiny settings (tests)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        import mlcolvar  # noqa: F401
    except ImportError:
        raise SystemExit("mlcolvar is not installed: pip install -e '.[mlcolvar]'") from None
    from mtcv_core.io import read_frames
    from mtcv_core.pipeline import run_pipeline
    from mtcv_core.plugins import build_component, load_plugins

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = base_config(Path(args.config) if args.config else None, args.small)
    if args.data:
        data_path = Path(args.data)
    else:
        (out / "sample.toml").write_text(toml_text(config))
        run_pipeline(out / "sample.toml", out=out / "sample_run", until="sample", resume=True,
                     progress=not args.quiet)
        data_path = out / "sample_run" / "data.nc"
    data = read_frames(data_path)
    system = build_component(load_plugins(), "system", config["system"],
                             config.get("system_options", {}), "system_options")
    featurizer, feat_options = features_of(system)
    epochs = args.epochs or (20 if args.small else 200)
    cv_file = train_mlcolvar(data, featurizer, model=args.model, epochs=epochs,
                             seed=args.seed, out=out / f"{args.model}.ts")
    run_cfg = {k: v for k, v in config.items() if k not in ("train", "ensemble")}
    run_cfg["name"] = f"{config.get('name', 'run')}_{args.model}"
    run_cfg["sample"] = {k: v for k, v in config.get("sample", {}).items()
                         if k not in ("sources",)}
    run_cfg["sample"]["sources"] = {"run_frames": {"path": str(data_path.resolve())}}
    run_cfg["train"] = {"cv_file": str(cv_file.resolve()), "cv_input": "features",
                        "featurizer": "cartesian", "featurizer_options": feat_options}
    (out / f"{args.model}.toml").write_text(toml_text(run_cfg))
    summary = run_pipeline(out / f"{args.model}.toml", out=out / f"{args.model}_run",
                           resume=True, progress=not args.quiet)
    result = {"run": str(out / f"{args.model}_run"), "model": args.model,
              "test_accuracy": summary.get("test_accuracy"),
              "transitions": summary.get("transitions", [])}
    for r in result["transitions"]:
        print(f"{r['from']}->{r['to']}: barrier along the {args.model} CV "
              f"{r['barrier_eV']} ± {r['barrier_err_eV']} eV (exact along it "
              f"{r.get('exact_barrier_eV')}); dF {r['delta_F_eV']} ± {r['delta_F_err_eV']} "
              f"(exact {r.get('exact_delta_F_eV')})")
    print(json.dumps(result, default=lambda v: None if isinstance(v, float) and
                     not np.isfinite(v) else str(v)))
    return result


if __name__ == "__main__":
    main()
