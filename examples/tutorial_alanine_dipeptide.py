"""Tutorial: alanine dipeptide (amber99sb, vacuum), CV and free energies at 50 K.

Runs ``examples/alanine_dipeptide.toml`` through
:func:`mtcv_core.pipeline.run_pipeline` (basin MD in C7eq, C7ax and beta and
one-way-shooting TPS seeded by 700 K transitions; a 1D multitask CV on the
paper's aligned Cartesian frame; umbrella sampling along xi and, as the
reference, along phi; MBAR) and draws the paper-style figures (Sun et al.,
JCTC 2022, Figs. 6-7, Table II) from the run's files (``data.nc``, ``model.pt``,
``training.nc``, ``fes.nc``, ``fes_reference.nc``, ``summary.json``):

- ``xi_phi_psi.png``: xi of the test frames over the (phi, psi) plane, with
  the basin regions outlined (as Fig. 7(a)), and phi and psi against xi
  (Fig. 6(a));
- ``fes.png``: F along xi beside F along phi (C7eq -> C7ax), with barriers
  and free-energy differences (Fig. 7(b), Table II; only when the run went
  past training);
- ``along_xi.png``: true and predicted energy and the classifier's basin
  probabilities along xi (Fig. 6(b));
- ``training.png``: the training curves.

Needs OpenMM (``pip install -e ".[openmm]"``).

Usage::

    python examples/tutorial_alanine_dipeptide.py [--small] [--until STAGE] [--out DIR]

Without ``--small`` it runs the example as it is (about 34 minutes on 2
cores: sample 625 s, train 115 s, umbrella 1266 s, estimate 26 s, see
docs/results.md) into ``DIR/run``; an interrupted run continues when started
again with the same ``--out``, and ``--until train`` stops after the CV.
``--small`` (what the tests run, about a minute) writes ``DIR/small.toml``:
short basin MD, no TPS (its 700 K seed run alone takes minutes), a few
epochs and a handful of short windows. Its CV separates the basins but has
seen no transition, so its free energies are a smoke test, not the paper's.
Figures go to ``DIR`` (default ``runs/tutorial_alanine_dipeptide``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tutorial_muller_brown import pyplot_agg, test_predictions, tutorial_main

EXAMPLE = Path(__file__).resolve().parent / "alanine_dipeptide.toml"

#: what --small changes in the example (merged into its tables; None drops a key)
SMALL: dict[str, Any] = {
    "name": "alanine_dipeptide_small",
    "execution": {"workers": 1},
    "sample": {"sources": {
        "basin_md": {"trajectories_per_basin": 16, "equilibration_steps": 200,
                     "n_steps": 600, "stride": 10, "walkers_per_task": 48},
        "tps": None,
    }},
    "train": {"epochs": 20, "warmup_epochs": 5, "batch_size": 128},
    "umbrella": {"sampler_options": {"n_windows": 8, "max_refinements": 0,
                                     "walkers_per_window": 2, "n_steps": 400,
                                     "equilibration_steps": 100, "stride": 5,
                                     "windows_per_task": 16},
                 "reference_sampler_options": {"n_windows": 8}},
    "estimate": {"options": {"n_bins": 16, "n_bootstraps": 0}},
}


def _ellipse(phi_c: float, psi_c: float, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """A basin region's boundary, degrees, wrapped to [-180, 180) (NaN at the wrap)."""
    t = np.linspace(0.0, 2.0 * np.pi, 200)
    phi = (phi_c + a * np.cos(t) + 180.0) % 360.0 - 180.0
    psi = (psi_c + b * np.sin(t) + 180.0) % 360.0 - 180.0
    jump = np.flatnonzero((np.abs(np.diff(phi)) > 180.0) | (np.abs(np.diff(psi)) > 180.0))
    return np.insert(phi, jump + 1, np.nan), np.insert(psi, jump + 1, np.nan)


def xi_phi_psi_figure(system: Any, test: Any, xi: np.ndarray, path: Path) -> None:
    """xi over (phi, psi) in degrees with the basin ellipses (Fig. 7(a)), and
    phi and psi against xi (Fig. 6(a))."""
    plt = pyplot_agg()
    ang = np.degrees(system.true_cv(test["coordinates"].values))
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.8))
    ax = axes[0]
    sc = ax.scatter(ang[:, 0], ang[:, 1], c=xi[:, 0], s=3, cmap="viridis", rasterized=True)
    fig.colorbar(sc, ax=ax, label="xi")
    for name, (phi_c, psi_c, a, b) in system.regions_deg.items():
        ax.plot(*_ellipse(phi_c, psi_c, a, b), "k-", lw=0.8)
        ax.annotate(name, (phi_c, psi_c - b - 14), ha="center", fontsize=10)
    ax.set(xlim=(-180, 180), ylim=(-180, 180), xlabel="phi (degrees)", ylabel="psi (degrees)",
           title="learned CV on the test frames", xticks=range(-180, 181, 60),
           yticks=range(-180, 181, 60))
    ax = axes[1]
    ax.scatter(xi[:, 0], ang[:, 0], s=2, c="C0", label="phi", rasterized=True)
    ax.scatter(xi[:, 0], ang[:, 1], s=2, c="C1", label="psi", rasterized=True)
    ax.set(xlabel="xi", ylabel="angle (degrees)", ylim=(-180, 180),
           yticks=range(-180, 181, 60), title="torsion angles along xi")
    ax.legend(markerscale=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fes_figure(fes: Any, fes_ref: Any | None, rows: list[dict[str, Any]],
               temperature_K: float, path: Path) -> None:
    """F along xi beside F along phi (degrees)."""
    plt = pyplot_agg()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    row = rows[0] if rows else {}

    def panel(ax: Any, ds: Any, scale: float, xlabel: str, key: str) -> None:
        s, f, e = (ds[k].values for k in ("bin_center", "pmf", "pmf_err"))
        ax.plot(s * scale, f, color="C0")
        ax.fill_between(s * scale, f - e, f + e, color="C0", alpha=0.3)
        if "basin_minimum" in ds:
            for name, m in zip(ds["basin"].values, ds["basin_minimum"].values[:, 0],
                               strict=True):
                if np.isfinite(m):
                    ax.axvline(m * scale, color="0.6", lw=0.8, ls=":")
                    ax.annotate(str(name), (m * scale, 0.0), xytext=(2, 2),
                                textcoords="offset points", fontsize=9)
        bar, df = row.get(f"{key}barrier_eV"), row.get(f"{key}delta_F_eV")
        text = (f"{row.get('from')} -> {row.get('to')}: barrier "
                f"{'n/a' if bar is None else f'{bar:.3f}'} eV, dF "
                f"{'n/a' if df is None else f'{df:.3f}'} eV")
        ax.set(xlabel=xlabel, ylabel="F (eV)", title=text)

    panel(axes[0], fes, 1.0, "xi", "")
    if fes_ref is not None:
        panel(axes[1], fes_ref, 180.0 / np.pi, "phi (degrees)", "true_cv_")
    else:
        axes[1].set_axis_off()
    fig.suptitle(f"PMF at {temperature_K:g} K: along the learned CV and along phi")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figures(run: Any, out: Path) -> list[Path]:
    """The tutorial's figures from the files the :class:`mtcv.Run` has."""
    from mtcv_core.plots import plot_along_cv, plot_history

    system = run.system
    test, pred = test_predictions(run)
    paths = [out / "xi_phi_psi.png", out / "along_xi.png", out / "training.png"]
    xi_phi_psi_figure(system, test, pred["xi"], paths[0])
    plot_along_cv(pred["xi"], test["energy"].values, energy_pred=pred.get("energy"),
                  label=test["label"].values, probability=pred.get("probability"),
                  basins=list(system.basins), path=paths[1])
    plot_history(run.training, path=paths[2])
    if (run.path / "fes.nc").exists():
        ref = run.fes_reference if (run.path / "fes_reference.nc").exists() else None
        paths.append(out / "fes.png")
        fes_figure(run.fes, ref, run.transitions, float(run.summary["temperature_K"]),
                   paths[-1])
    return paths


def main(argv: list[str] | None = None) -> int:
    return tutorial_main(__doc__, example=EXAMPLE, small=SMALL,
                         default_out="runs/tutorial_alanine_dipeptide", figures=figures,
                         argv=argv, with_until=True)


if __name__ == "__main__":
    raise SystemExit(main())
