"""Tutorial: the 5D three-well model with a 2D learned CV, end to end.

Runs ``examples/three_well_5d.toml`` through :func:`mtcv_core.pipeline.run_pipeline`
(basin MD in the three basins A, B, C and TPS for A-C, B-C and A-B; a 2D
multitask CV with classifier and energy heads; umbrella windows on a 2D
grid in xi and along the true CVs ``(x~, y~)``; MBAR with minimax barriers)
and draws the paper-style figures (Sun et al., JCTC 2022, Fig. 4) from the
run's files (``data.nc``, ``model.pt``, ``training.nc``, ``fes.nc``,
``fes_reference.nc``, ``summary.json``):

- ``xi_plane.png``: contours of the two components of xi over the ``(x~, y~)``
  plane (averaged over five random 5D embeddings of each point), the test
  frames as dots and contour lines of the potential V2d(x~, y~);
- ``fes.png``: the free-energy surface in ``(xi[0], xi[1])`` with the basin
  minima and the minimax paths between them, beside ``F(x~, y~)`` (MBAR along
  the true CVs, or the exact surface when the run has no true-CV windows)
  with the quadrature contours;
- ``latent.png``: the latent plane as in Fig. 4(c-d): the energy head's
  prediction over it with the test frames coloured by their true energy, the
  classifier's regions with the test frames coloured by their true basin, and
  predicted against true energies;
- ``training.png``: the training curves.

Usage::

    python examples/tutorial_three_well.py [--small] [--out DIR]

Without ``--small`` it runs the example as it is (about 5 minutes on 2
cores, see docs/results.md) into ``DIR/run``; an interrupted run continues
when started again with the same ``--out``. ``--small`` (what the tests run,
about a minute) writes ``DIR/small.toml``, the example with far fewer frames,
epochs and windows and no true-CV windows, and runs that: its numbers are a
smoke test, not the paper's. Figures go to ``DIR`` (default
``runs/tutorial_three_well``). The helpers shared with the Müller-Brown
tutorial come from ``examples/tutorial_muller_brown.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tutorial_muller_brown import (
    pyplot_agg,
    test_predictions,
    transition_text,
    true_cv_panel,
    tutorial_main,
    xi_plane_figure,
)

EXAMPLE = Path(__file__).resolve().parent / "three_well_5d.toml"

#: what --small changes in the example (merged into its tables)
SMALL: dict[str, Any] = {
    "name": "three_well_5d_small",
    "execution": {"workers": 1},
    "sample": {"sources": {
        "basin_md": {"trajectories_per_basin": 48, "equilibration_steps": 200,
                     "n_steps": 400, "walkers_per_task": 48},
        # a few short shooting rounds: segments longer than 3000 steps are dropped
        "tps": {"chains": 6, "shots_per_chain": 3, "burn_in_shots": 1, "stride": 5,
                "walkers_per_task": 6, "seed_min_paths": 1, "max_segment_steps": 3000},
    }},
    "train": {"epochs": 30, "warmup_epochs": 10, "batch_size": 128},
    # a coarse grid in xi; no true-CV windows (fes.png shows the exact F(x~, y~))
    "umbrella": {"reference": False,
                 "sampler_options": {"grid_points": 8, "walkers_per_window": 2, "n_steps": 2000,
                                     "equilibration_steps": 200, "stride": 10,
                                     "windows_per_task": 64}},
    "estimate": {"options": {"n_bins": 20, "n_bootstraps": 0,
                             "max_samples_per_window": 200}},
}


def basin_cells(fes: Any) -> dict[str, tuple[int, int]]:
    """Grid index of each basin's lowest PMF bin in a 2D ``fes.nc``."""
    cx, cy = fes["bin_center_x"].values, fes["bin_center_y"].values
    out = {}
    for name, (mx, my) in zip(fes["basin"].values, fes["basin_minimum"].values, strict=True):
        if np.all(np.isfinite([mx, my])):
            out[str(name)] = (int(np.argmin(np.abs(cx - mx))), int(np.argmin(np.abs(cy - my))))
    return out


def fes_figure(system: Any, fes: Any, fes_ref: Any | None, rows: list[dict[str, Any]],
               temperature_K: float, path: Path, fmax: float = 1.6) -> None:
    """F(xi[0], xi[1]) with minima and minimax paths, beside F(x~, y~)."""
    from mtcv_core.fes_paths import minimax_path

    plt = pyplot_agg()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.8))
    ax = axes[0]
    cx, cy, pmf = (fes[k].values for k in ("bin_center_x", "bin_center_y", "pmf"))
    mesh = ax.pcolormesh(cx, cy, pmf.T, shading="auto", cmap="viridis", vmin=0.0, vmax=fmax)
    fig.colorbar(mesh, ax=ax, label="F (eV), MBAR")
    cells = basin_cells(fes)
    diagonal = fes.attrs.get("minimax_moves") == "diagonal"
    for k, r in enumerate(rows):
        a, b = cells.get(r["from"]), cells.get(r["to"])
        if a is None or b is None:
            continue
        _, cells_on_path = minimax_path(pmf, a, b, diagonal=diagonal)
        if cells_on_path:
            i, j = np.array(cells_on_path).T
            ax.plot(cx[i], cy[j], "-", color=f"C{k + 1}", lw=1.5,
                    label=f"minimax {r['from']}-{r['to']}")
    for name, (i, j) in cells.items():
        ax.annotate(name, (cx[i], cy[j]), color="w", fontsize=12, weight="bold",
                    ha="center", va="center")
    ax.set(xlabel="xi[0]", ylabel="xi[1]",
           title=f"F along the 2D learned CV, {temperature_K:g} K")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right", fontsize=7)
    true_cv_panel(axes[1], fig, system, fes_ref, temperature_K, fmax=fmax)
    fig.tight_layout()
    fig.text(0.02, 0.0, transition_text(rows), fontsize=8, family="monospace", va="top")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def latent_figure(model: Any, system: Any, test: Any, pred: dict[str, np.ndarray],
                  path: Path, max_points: int = 30000) -> None:
    """The latent plane as in the paper's Fig. 4(c-d): predicted energy over a
    grid in xi with the test frames coloured by their true energy; the
    classifier's regions with the test frames coloured by their true basin;
    and predicted against true energy."""
    import torch
    from matplotlib.colors import Normalize

    plt = pyplot_agg()
    xi, label, energy = pred["xi"], test["label"].values, test["energy"].values
    keep = np.random.default_rng(0).permutation(len(xi))[:max_points]
    lo, hi = xi.min(axis=0), xi.max(axis=0)
    pad = 0.05 * (hi - lo)
    gx = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 200)
    gy = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 200)
    grid = torch.as_tensor(np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2), dtype=model.dtype)
    fig, axes = plt.subplots(1, 3, figsize=(16.5, 4.6))
    ax = axes[0]
    if "energy" in model.heads:
        with torch.no_grad():
            v_grid = model.heads["energy"].predict(grid).cpu().double().numpy()
        norm = Normalize(vmin=float(np.percentile(energy, 0.5)),
                         vmax=float(np.percentile(energy, 99.5)))
        filled = ax.contourf(gx, gy, v_grid.reshape(len(gy), len(gx)), levels=20,
                             cmap="viridis", norm=norm, extend="both")
        ax.scatter(xi[keep, 0], xi[keep, 1], c=energy[keep], s=4, cmap="viridis", norm=norm,
                   edgecolors="none", rasterized=True)
        fig.colorbar(filled, ax=ax, label="V (eV): predicted (background), true (points)")
    ax.set(xlabel="xi[0]", ylabel="xi[1]", title="potential energy in the latent plane")
    ax = axes[1]
    if "classifier" in model.heads:
        with torch.no_grad():
            region = model.heads["classifier"].predict(grid).argmax(dim=1).cpu().numpy()
        n = len(system.basins)
        ax.contourf(gx, gy, region.reshape(len(gy), len(gx)), levels=np.arange(-0.5, n),
                    colors=[f"C{k}" for k in range(n)], alpha=0.2)
    for k, name in [(-1, "unlabelled"), *enumerate(system.basins)]:
        sel = keep[label[keep] == k]
        if sel.size:
            ax.scatter(xi[sel, 0], xi[sel, 1], s=2, color="0.5" if k < 0 else f"C{k}",
                       label=f"{name} ({sel.size})", rasterized=True)
    ax.set(xlabel="xi[0]", ylabel="xi[1]",
           title="basins: classifier regions (background), true labels (points)")
    ax.legend(markerscale=6, fontsize=8)
    ax = axes[2]
    if "energy" in pred:
        e_pred = pred["energy"]
        ax.scatter(energy[keep], e_pred[keep], s=2, c="C3", rasterized=True)
        span = [min(energy.min(), e_pred.min()), max(energy.max(), e_pred.max())]
        ax.plot(span, span, "k-", lw=0.8)
        mae = float(np.mean(np.abs(e_pred - energy)))
        ax.set(xlabel="true V (eV)", ylabel="predicted V (eV)",
               title=f"energy head on the test frames, MAE {mae:.3f} eV")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figures(run: Any, out: Path) -> list[Path]:
    """The tutorial's figures from a finished :class:`mtcv.Run`."""
    from mtcv_core.plots import plot_history

    system, model = run.system, run.model
    test, pred = test_predictions(run)
    paths = [out / f"{name}.png" for name in ("xi_plane", "fes", "latent", "training")]
    xi_plane_figure(system, model, system.true_cv(test["coordinates"].values), paths[0])
    fes_ref = run.fes_reference if (run.path / "fes_reference.nc").exists() else None
    fes_figure(system, run.fes, fes_ref, run.transitions, float(run.summary["temperature_K"]),
               paths[1])
    latent_figure(model, system, test, pred, paths[2])
    plot_history(run.training, path=paths[3])
    return paths


def main(argv: list[str] | None = None) -> int:
    return tutorial_main(__doc__, example=EXAMPLE, small=SMALL,
                         default_out="runs/tutorial_three_well", figures=figures, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
