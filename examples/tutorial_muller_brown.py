"""Tutorial: the 5D Müller-Brown model end to end, with the paper's figures.

Runs ``examples/muller_brown_5d.toml`` through :func:`mtcv_core.pipeline.run_pipeline`
(basin MD + TPS data, a 1D multitask CV with classifier and energy heads,
umbrella sampling along xi and along the true CVs ``(x~, y~)``, MBAR) and
draws the figures of Sun et al. (JCTC 2022, Fig. 3 and Table I) from the run's files
(``data.nc``, ``model.pt``, ``training.nc``, ``fes.nc``, ``fes_reference.nc``,
``summary.json``):

- ``xi_plane.png``: contours of xi over the ``(x~, y~)`` plane (averaged over
  five random 5D embeddings of each point), the test frames as dots and
  contour lines of the potential V2d(x~, y~) (Fig. 3(c));
- ``pmf.png``: the PMF along xi (MBAR, with its error band, and the exact
  PMF along the same xi, embedding-averaged, by quadrature) beside the free-energy surface along
  the true CVs (MBAR, or the exact surface when the run has no true-CV
  windows, with the quadrature contours), barriers and free-energy
  differences as in Table I;
- ``along_xi.png``: true and predicted energy and the classifier's basin
  probabilities along xi (Fig. 3(d));
- ``training.png``: the training curves.

Usage::

    python examples/tutorial_muller_brown.py [--small] [--out DIR]

Without ``--small`` it runs the paper-scale example (~300,000 frames; about
8 minutes on 2 cores, see docs/results.md) into ``DIR/run``; an interrupted
run continues where it stopped when started again with the same ``--out``.
``--small`` (what the tests run, under a minute) writes ``DIR/small.toml``,
the same example with far fewer frames, epochs and windows, and runs that: its
numbers are a smoke test, not the paper's. Figures go to ``DIR`` (default
``runs/tutorial_muller_brown``).
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE = Path(__file__).resolve().parent / "muller_brown_5d.toml"

#: what --small changes in the example (merged into its tables)
SMALL: dict[str, Any] = {
    "name": "muller_brown_5d_small",
    "execution": {"workers": 1},
    "sample": {"sources": {
        # many short trajectories: the CV must see many embedding angles
        "basin_md": {"trajectories_per_basin": 64, "equilibration_steps": 200,
                     "n_steps": 400, "walkers_per_task": 64},
        # a few short shooting rounds: segments longer than 3000 steps are dropped
        "tps": {"chains": 4, "shots_per_chain": 2, "burn_in_shots": 1, "stride": 10,
                "walkers_per_task": 4, "seed_min_paths": 1, "max_segment_steps": 3000},
    }},
    "train": {"epochs": 30, "warmup_epochs": 10, "batch_size": 128},
    # no true-CV windows: pmf.png shows the exact F(x~, y~) instead
    "umbrella": {"reference": False,
                 "sampler_options": {"n_windows": 12, "max_refinements": 1,
                                     "walkers_per_window": 4, "n_steps": 1500,
                                     "equilibration_steps": 200, "stride": 10,
                                     "windows_per_task": 16}},
    "estimate": {"options": {"n_bins": 30, "n_bootstraps": 0}},
}


# ------------------------------------------------------------------ config
def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` merged in, table by table (a new dict); a
    change to None removes the key."""
    out = dict(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(table: dict[str, Any], prefix: str = "") -> str:
    """A (nested) dict as TOML: plain keys first, then one [table] per dict."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            lines += ["", f"[{name}]", toml_text(value, name + ".").rstrip("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def small_config(example: Path, changes: dict[str, Any], out: Path) -> Path:
    """``OUT/small.toml``: the example config with ``changes`` merged in."""
    path = out / "small.toml"
    path.write_text(f"# {example.name} with fewer frames, epochs and windows (--small)\n"
                    + toml_text(merge(tomllib.loads(example.read_text()), changes)))
    return path


# ----------------------------------------------------------------- figures
def pyplot_agg():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def potential_grid(system: Any, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x~, y~ (n,) and V2d on their grid (n, n), eV (x~ along axis 1)."""
    (x0, x1), (y0, y1) = system.potential.bounds
    x, y = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    return x, y, system.potential.energy(x[None, :], y[:, None])


def xi_on_plane(system: Any, model: Any, x: np.ndarray, y: np.ndarray, n_sets: int = 5,
                seed: int = 0) -> np.ndarray:
    """xi on the (x~, y~) grid (ny, nx, latent_dim), averaged over ``n_sets``
    random embeddings (angles phi12, phi34; x5 = 0) of each point, as in the
    paper's Fig. 3(c)."""
    from mtcv_core.training import cv_values

    xx, yy = (g.ravel() for g in np.meshgrid(x, y))
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(n_sets):
        pos = system.embed(xx, yy, phi12=rng.uniform(0, 2 * np.pi, xx.size),
                           phi34=rng.uniform(0, 2 * np.pi, xx.size))
        total = total + cv_values(model, pos)
    return (total / n_sets).reshape(len(y), len(x), -1)


def xi_plane_figure(system: Any, model: Any, true: np.ndarray, path: Path,
                    max_points: int = 3000) -> None:
    """Contours of xi over (x~, y~) around the data (one panel per latent
    component), the test frames as black dots, V2d contours every 0.25 eV."""
    plt = pyplot_agg()
    lo, hi = true.min(axis=0) - 3.0, true.max(axis=0) + 3.0
    lo = np.maximum(lo, 0.05)  # radii: x~, y~ > 0
    x, y = np.linspace(lo[0], hi[0], 120), np.linspace(lo[1], hi[1], 120)
    xi = xi_on_plane(system, model, x, y)
    v = system.potential.energy(x[None, :], y[:, None])
    keep = np.random.default_rng(0).permutation(len(true))[:max_points]
    d = xi.shape[2]
    fig, axes = plt.subplots(1, d, figsize=(5.6 * d, 4.6), squeeze=False)
    for k, ax in enumerate(axes[0]):
        filled = ax.contourf(x, y, xi[..., k], levels=20, cmap="viridis")
        fig.colorbar(filled, ax=ax, label="xi" if d == 1 else f"xi[{k}]")
        ax.contour(x, y, v - v.min(), levels=np.arange(0.0, 2.01, 0.25), colors="0.85",
                   linewidths=0.7)
        ax.scatter(true[keep, 0], true[keep, 1], s=1, c="k", rasterized=True)
        for name in system.basins:
            xm, ym, _ = system.minimum(name)
            ax.annotate(name, (xm, ym), color="w", fontsize=12, weight="bold",
                        ha="center", va="center")
        ax.set(xlabel="x~ (angstrom)", ylabel="y~ (angstrom)")
    axes[0, 0].set_title("xi (mean of 5 embeddings); test frames; V2d every 0.25 eV",
                         fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def exact_pmf_along_xi(system: Any, model: Any, temperature_K: float,
                       edges: np.ndarray, n_sets: int = 5) -> Any:
    """The exact PMF along xi by quadrature in (x~, y~), with xi of each point
    averaged over ``n_sets`` random embeddings (exact for a CV that does not
    depend on the embedding angles; a well-trained one nearly does not)."""
    from mtcv_core.training import cv_values
    from mtcv_systems.reference import pmf_along

    rng = np.random.default_rng(1)

    def cv_fn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        total = np.zeros(x.size)
        for _ in range(n_sets):
            pos = system.embed(x, y, phi12=rng.uniform(0, 2 * np.pi, x.size),
                               phi34=rng.uniform(0, 2 * np.pi, x.size))
            total += cv_values(model, pos)[:, 0]
        return total / n_sets

    return pmf_along(system, temperature_K, cv_fn, bins=edges, n=400)


def transition_text(rows: list[dict[str, Any]]) -> str:
    """One line per transition of summary.json: barrier and dF, eV."""
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = ["eV: along xi / true CVs / quadrature"]
    for r in rows:
        lines.append(f"{r['from']}->{r['to']} barrier {f(r['barrier_eV'])} / "
                     f"{f(r['true_cv_barrier_eV'])} / {f(r['reference_barrier_eV'])}")
        lines.append(f"{r['from']}->{r['to']} dF {f(r['delta_F_eV'])} / "
                     f"{f(r['true_cv_delta_F_eV'])} / {f(r['reference_delta_F_eV'])}")
    return "\n".join(lines)


def true_cv_panel(ax: Any, fig: Any, system: Any, fes_ref: Any | None,
                  temperature_K: float, fmax: float = 1.5) -> None:
    """F(x~, y~): MBAR along the true CVs (``fes_reference.nc``) when the run
    has it, else the exact surface; quadrature contours every 0.25 eV."""
    from mtcv_systems.reference import fes_2d

    if fes_ref is not None:
        x, y = fes_ref["bin_center_x"].values, fes_ref["bin_center_y"].values
        shown, what = fes_ref["pmf"].values, "MBAR along the true CVs"
    else:
        x, y, _ = potential_grid(system, 150)
        shown, what = None, "exact (quadrature)"
    exact = fes_2d(system, temperature_K, grid=(x, y)).values
    if shown is None:
        shown = exact
    else:  # the exact surface shifted to the MBAR minimum
        exact = exact - np.nanmin(np.where(np.isfinite(shown), exact, np.nan))
    mesh = ax.pcolormesh(x, y, shown.T, shading="auto", cmap="viridis", vmin=0.0, vmax=fmax)
    fig.colorbar(mesh, ax=ax, label="F (eV)")
    ax.contour(x, y, exact.T, levels=np.arange(0.0, fmax + 0.01, 0.25), colors="w",
               linewidths=0.7)
    for name in system.basins:
        xm, ym, _ = system.minimum(name)
        ax.annotate(name, (xm, ym), color="w", fontsize=12, weight="bold", ha="center",
                    va="center")
    ax.set(xlabel="x~ (angstrom)", ylabel="y~ (angstrom)",
           title=f"F(x~, y~), {what}; quadrature contours")


def pmf_figure(system: Any, fes: Any, fes_ref: Any | None, exact_xi: Any | None,
               rows: list[dict[str, Any]], temperature_K: float, path: Path) -> None:
    """F(xi) (MBAR and quadrature) beside F(x~, y~) (MBAR or quadrature)."""
    plt = pyplot_agg()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    s, f, e = (fes[k].values for k in ("bin_center", "pmf", "pmf_err"))
    ax.plot(s, f, color="C0", label="MBAR along xi")
    ax.fill_between(s, f - e, f + e, color="C0", alpha=0.3)
    if exact_xi is not None:
        g = exact_xi["pmf"].values
        ok = np.isfinite(g) & np.isfinite(f)
        shift = np.nanmin(f[ok]) - np.nanmin(g[ok]) if ok.any() else 0.0
        ax.plot(exact_xi["bin_center"].values, g + shift, "k--", lw=1,
                label="quadrature along the same xi")
    top = np.nanmax(np.concatenate([f + e, [0.5]]))
    ax.set(xlabel="xi", ylabel="F (eV)", ylim=(-0.05, 1.3 * top),
           title=f"PMF along the learned CV, {temperature_K:g} K")
    ax.legend(loc="upper left", fontsize=8)
    true_cv_panel(axes[1], fig, system, fes_ref, temperature_K)
    fig.tight_layout()
    fig.text(0.02, 0.0, transition_text(rows), fontsize=8, family="monospace", va="top")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# -------------------------------------------------------------------- main
def print_summary(run: Any) -> None:
    """What a finished (or partial) :class:`mtcv.Run` says, in a few lines."""
    summary = run.summary
    print(f"run: {run.path} (stages {', '.join(run.stages_done)}; times "
          + ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items()) + ")")
    if "train" in run.stages_done:
        acc, mae = summary.get("test_accuracy"), summary.get("test_energy_mae_eV")
        print(f"test accuracy {'n/a' if acc is None else f'{acc:.4f}'}, energy MAE "
              f"{'n/a' if mae is None else f'{mae:.4f}'} eV ({summary['n_train']} train / "
              f"{summary['n_test']} test frames)")
    for line in transition_text(run.transitions).splitlines():
        print(line)


def test_predictions(run: Any) -> tuple[Any, dict[str, Any]]:
    """(test frames, the trained model's predictions on them) of a
    :class:`mtcv.Run` whose train stage is done."""
    from mtcv_core.stages.common import split
    from mtcv_core.training import predict

    test = split(run.data, "test")
    return test, predict(run.model, test)


def figures(run: Any, out: Path) -> list[Path]:
    """The tutorial's figures from a finished :class:`mtcv.Run`."""
    from mtcv_core.plots import plot_along_cv, plot_history

    system, model = run.system, run.model
    test, pred = test_predictions(run)  # the CV on the test frames
    temperature = float(run.summary["temperature_K"])
    paths = [out / f"{name}.png" for name in ("xi_plane", "pmf", "along_xi", "training")]
    xi_plane_figure(system, model, system.true_cv(test["coordinates"].values), paths[0])
    # free energies: along xi and along the true CVs, against quadrature
    fes_ref = run.fes_reference if (run.path / "fes_reference.nc").exists() else None
    exact = exact_pmf_along_xi(system, model, temperature, run.fes["bin_edges"].values)
    pmf_figure(system, run.fes, fes_ref, exact, run.transitions, temperature, paths[1])
    plot_along_cv(pred["xi"], test["energy"].values, energy_pred=pred.get("energy"),
                  label=test["label"].values, probability=pred.get("probability"),
                  basins=list(system.basins), path=paths[2])
    plot_history(run.training, path=paths[3])
    return paths


def tutorial_main(doc: str, *, example: Path, small: dict[str, Any] | Any, default_out: str,
                  figures: Any, argv: list[str] | None = None, with_until: bool = False) -> int:
    """The command line shared by the pipeline tutorials: ``--small``, ``--out DIR``
    (and ``--until STAGE`` with ``with_until``); runs the example (or its small
    version) into ``DIR/run`` with ``resume=True`` (:func:`mtcv.run`) and draws
    ``figures(run, out) -> [paths]`` of the :class:`mtcv.Run` once a CV exists."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="a small version of the example (tests, about a minute)")
    if with_until:
        parser.add_argument("--until", default=None,
                            help="stop after this stage (e.g. train: the CV only)")
    parser.add_argument("--out", type=Path, default=Path(default_out),
                        help="folder for the run (DIR/run) and the figures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import mtcv

    # the whole pipeline: sample -> train -> umbrella -> estimate -> report
    config = small_config(example, small, args.out) if args.small else example
    run = mtcv.run(config, out=args.out / "run", until=getattr(args, "until", None),
                   resume=True, progress=not args.small)
    print_summary(run)
    if "train" not in run.stages_done:
        print("no CV yet (the run stopped before training): no figures")
        return 0
    for path in figures(run, args.out):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return tutorial_main(__doc__, example=EXAMPLE, small=SMALL,
                         default_out="runs/tutorial_muller_brown", figures=figures, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
