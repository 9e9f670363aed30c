"""Figures of sampled data (the paper's Fig. 3a / 4a)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.io import atomic_path
from mtcv_core.schema import basin_names


def plot_frames(frames: xr.Dataset, system: Any, path: str | Path, max_points: int = 40000
                ) -> Path:
    """Frames in the plane of the system's first two true CVs, coloured by
    label; basin MD and TPS frames side by side. Raises NotImplementedError
    for systems without true CVs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cv = system.true_cv(frames["coordinates"].values)
    names = list(getattr(system, "true_cv_names", ())) or ["cv0", "cv1"]
    labels = frames["label"].values
    source = frames["source"].values
    meanings = frames["source"].attrs["flag_meanings"].split()
    basins = basin_names(frames)
    rng = np.random.default_rng(0)
    present = [c for c in np.unique(source)]
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 4.2),
                             squeeze=False, sharex=True, sharey=True)
    colors = plt.get_cmap("tab10")
    for ax, code in zip(axes[0], present, strict=True):
        sel = np.flatnonzero(source == code)
        if sel.size > max_points:
            sel = rng.choice(sel, max_points, replace=False)
        for k, name in [(-1, "unlabelled"), *enumerate(basins)]:
            s = sel[labels[sel] == k]
            if s.size:
                ax.scatter(cv[s, 0], cv[s, 1], s=1, alpha=0.4,
                           color="0.6" if k < 0 else colors(k), label=f"{name} ({s.size})",
                           rasterized=True)
        ax.set_title(f"{meanings[code]} frames")
        ax.set_xlabel(names[0])
        ax.legend(markerscale=8, fontsize=8)
    axes[0, 0].set_ylabel(names[1])
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_fes(fes: xr.Dataset, path: str | Path) -> Path:
    """The PMF of a free-energy dataset: 1D with its error band, 2D as a map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    names = str(fes.attrs.get("cv_names", "s")).split()
    if "bin" in fes["pmf"].dims:
        x = fes["bin_center"].values
        y = fes["pmf"].values
        e = fes["pmf_err"].values
        ax.plot(x, y, color="C0")
        ax.fill_between(x, y - e, y + e, color="C0", alpha=0.3)
        ax.set_xlabel(names[0])
        ax.set_ylabel("F (eV)")
    else:
        pmf = fes["pmf"].values.T
        mesh = ax.pcolormesh(fes["bin_center_x"].values, fes["bin_center_y"].values, pmf,
                             shading="auto", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="F (eV)")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1] if len(names) > 1 else "s2")
    ax.set_title(f"PMF at {fes.attrs.get('temperature_K', '?')} K")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
