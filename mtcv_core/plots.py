"""Figures of a trained CV, from plain arrays (no ASE, no pyplot state).

Every function draws on a new :class:`matplotlib.figure.Figure` rendered by
the Agg canvas (no display needed, no global backend switch), optionally
saves it as PNG, and returns the figure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mtcv_core.io import atomic_path


def _figure(ncols: int = 1, width: float = 5.0, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str] | None) -> None:
    if path is not None:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=120)


def plot_cv_plane(cv1: np.ndarray, cv2: np.ndarray, xi: np.ndarray, *,
                  names: Sequence[str] = ("x~ (angstrom)", "y~ (angstrom)"),
                  xi_name: str = "xi", path: str | os.PathLike[str] | None = None,
                  max_points: int = 50000, seed: int = 0) -> Figure:
    """xi over the plane of two true CVs: one panel per latent component.

    cv1, cv2 : (n,) true CVs; xi : (n,) or (n, latent_dim). At most
    ``max_points`` random points are drawn.
    """
    xi = np.asarray(xi, dtype=float).reshape(len(cv1), -1)
    cv1, cv2 = np.asarray(cv1, float), np.asarray(cv2, float)
    if len(cv1) > max_points:
        keep = np.random.default_rng(seed).choice(len(cv1), max_points, replace=False)
        cv1, cv2, xi = cv1[keep], cv2[keep], xi[keep]
    fig = _figure(ncols=xi.shape[1])
    for k in range(xi.shape[1]):
        ax = fig.add_subplot(1, xi.shape[1], k + 1)
        sc = ax.scatter(cv1, cv2, c=xi[:, k], s=2, cmap="viridis", rasterized=True)
        fig.colorbar(sc, ax=ax, label=xi_name if xi.shape[1] == 1 else f"{xi_name}[{k}]")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    _save(fig, path)
    return fig


def plot_along_cv(xi: np.ndarray, energy: np.ndarray, *,
                  energy_pred: np.ndarray | None = None, label: np.ndarray | None = None,
                  probability: np.ndarray | None = None, basins: Sequence[str] = (),
                  path: str | os.PathLike[str] | None = None, max_points: int = 50000,
                  seed: int = 0) -> Figure:
    """True and predicted energy (eV) and basin label along a 1D xi.

    xi : (n,) or (n, 1); energy, energy_pred : (n,) eV; label : (n,) int
    (-1 unlabelled); probability : (n, n_classes) classifier output.
    """
    xi = np.asarray(xi, dtype=float).reshape(len(energy), -1)[:, 0]
    energy = np.asarray(energy, float)
    idx = np.arange(len(xi))
    if len(xi) > max_points:
        idx = np.random.default_rng(seed).choice(len(xi), max_points, replace=False)
    panels = 1 + (label is not None or probability is not None)
    fig = _figure(ncols=panels)
    ax = fig.add_subplot(1, panels, 1)
    ax.scatter(xi[idx], energy[idx], s=2, c="0.6", label="true V", rasterized=True)
    if energy_pred is not None:
        order = idx[np.argsort(xi[idx])]
        ax.plot(xi[order], np.asarray(energy_pred, float)[order], ".", ms=1.5, c="C3",
                label="predicted V")
    ax.set_xlabel("xi")
    ax.set_ylabel("potential energy (eV)")
    ax.legend(loc="best", markerscale=4)
    if panels == 2:
        ax = fig.add_subplot(1, 2, 2)
        if label is not None:
            lab = np.asarray(label)
            ax.scatter(xi[idx], lab[idx], s=2, c="0.6", label="true label", rasterized=True)
        if probability is not None:
            prob = np.asarray(probability, float)
            order = idx[np.argsort(xi[idx])]
            for k in range(prob.shape[1]):
                name = basins[k] if k < len(basins) else str(k)
                ax.plot(xi[order], prob[order, k] * (prob.shape[1] - 1) if prob.shape[1] > 2
                        else prob[order, k], lw=1.5, label=f"p({name})")
        ax.set_xlabel("xi")
        ax.set_ylabel("basin label / probability")
        ax.legend(loc="best")
    _save(fig, path)
    return fig


def plot_history(history: xr.Dataset, *, path: str | os.PathLike[str] | None = None) -> Figure:
    """Training and validation losses per term (log scale) and the
    validation metrics, from the history returned by
    :func:`mtcv_core.training.train`."""
    fig = _figure(ncols=2)
    ax = fig.add_subplot(1, 2, 1)
    epoch = history["epoch"].values
    terms = str(history.attrs.get("terms", "")).split() + ["total"]
    for i, term in enumerate(terms):
        for split, style in (("train", "-"), ("validation", "--")):
            key = f"loss_{split}_{term}"
            if key in history:
                ax.plot(epoch, history[key].values, style, c=f"C{i}",
                        label=f"{term} ({split})")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 2, 2)
    for key, c in (("accuracy_validation", "C0"), ("energy_mae_validation", "C3")):
        if key in history:
            ax.plot(epoch, history[key].values, c=c,
                    label=f"{history[key].attrs.get('long_name', key)} "
                          f"({history[key].attrs.get('units', '')})")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=7)
    _save(fig, path)
    return fig


__all__ = ["plot_cv_plane", "plot_along_cv", "plot_history"]


def plot_frames(frames: xr.Dataset, true_cv: np.ndarray, path: str | os.PathLike[str] | None,
                *, names: Sequence[str] = ("cv0", "cv1"), max_points: int = 40000,
                seed: int = 0) -> Figure:
    """Sampled frames in the plane of two true CVs, coloured by basin label,
    one panel per data source (the paper's Fig. 3a / 4a); with one true CV,
    histograms of it per basin label.

    frames: a frame dataset; true_cv: (n_frames, >= 1) its true CVs."""
    labels = frames["label"].values
    source = frames["source"].values
    meanings = frames["source"].attrs["flag_meanings"].split()
    basins = str(frames.attrs.get("basins", "")).split()
    rng = np.random.default_rng(seed)
    true_cv = np.asarray(true_cv, float).reshape(len(labels), -1)
    one_dim = true_cv.shape[1] == 1
    present = list(np.unique(source))
    fig = _figure(ncols=len(present), width=5.0, height=4.2)
    axes = fig.subplots(1, len(present), squeeze=False, sharex=True, sharey=True)[0]
    for ax, code in zip(axes, present, strict=True):
        sel = np.flatnonzero(source == code)
        if sel.size > max_points:
            sel = rng.choice(sel, max_points, replace=False)
        for k, name in [(-1, "unlabelled"), *enumerate(basins)]:
            s = sel[labels[sel] == k]
            if s.size and one_dim:
                ax.hist(true_cv[s, 0], bins=60, histtype="step",
                        color="0.6" if k < 0 else f"C{k}", label=f"{name} ({s.size})")
            elif s.size:
                ax.scatter(true_cv[s, 0], true_cv[s, 1], s=1, alpha=0.4,
                           color="0.6" if k < 0 else f"C{k}", label=f"{name} ({s.size})",
                           rasterized=True)
        ax.set_title(f"{meanings[code]} frames")
        ax.set_xlabel(names[0])
        ax.legend(markerscale=1 if one_dim else 8, fontsize=8)
    axes[0].set_ylabel("frames" if one_dim else names[1])
    _save(fig, path)
    return fig


def plot_fes(fes: xr.Dataset, path: str | os.PathLike[str] | None,
             exact: xr.Dataset | None = None, *,
             basin_of: Any = None, transitions: Sequence[dict[str, Any]] = ()) -> Figure:
    """The PMF of a free-energy dataset (``mtcv.fes/1``).

    1D: the PMF with its error band; given ``exact``, the exact PMF along
    the same CV (:func:`mtcv_core.exact_pmf.exact_pmf`, dashed); given
    ``basin_of`` (xi (n, 1) -> basin index, -1 none), the basins shaded and
    named; given ``transitions`` (rows of ``summary.json``), the first
    transition's barrier and dF annotated from its basin's minimum and the
    reference barrier levels (``reference_barrier_eV``: quadrature;
    ``true_cv_barrier_eV``: along the true CVs) drawn on the same axes. 2D:
    a map (with the exact PMF's contours)."""
    fig = _figure(width=6.0, height=4.4)
    ax = fig.subplots()
    names = str(fes.attrs.get("cv_names", "s")).split()
    if "bin" in fes["pmf"].dims:
        x, y, e = (fes[v].values for v in ("bin_center", "pmf", "pmf_err"))
        if basin_of is not None:
            _shade_basins(ax, fes, basin_of)
        ax.plot(x, y, color="C0", label=f"{_estimator_label(fes)} ± 1σ")
        ax.fill_between(x, y - e, y + e, color="C0", alpha=0.3)
        if exact is not None and "bin" in exact["pmf"].dims:
            ax.plot(exact["bin_center"].values, exact["pmf"].values, color="k", ls="--",
                    lw=1.2, label="exact along the same CV")
        if transitions:
            _annotate_transition(ax, fes, transitions[0])
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.08), ncol=3,
                  frameon=False)
        ax.set_xlabel(names[0])
        ax.set_ylabel("F (eV)")
    elif exact is not None and "bin_x" in exact["pmf"].dims:
        mesh = ax.pcolormesh(fes["bin_center_x"].values, fes["bin_center_y"].values,
                             fes["pmf"].values.T, shading="auto", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label=f"F (eV): {_estimator_label(fes)}; white contours: "
                                        "exact")
        levels = np.arange(0.0, float(np.nanmax(exact["pmf"].values)), 0.1)
        ax.contour(exact["bin_center_x"].values, exact["bin_center_y"].values,
                   exact["pmf"].values.T, levels=levels, colors="w", linewidths=0.6)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1] if len(names) > 1 else "s2")
    else:
        mesh = ax.pcolormesh(fes["bin_center_x"].values, fes["bin_center_y"].values,
                             fes["pmf"].values.T, shading="auto", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="F (eV)")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1] if len(names) > 1 else "s2")
    ax.set_title(f"PMF at {fes.attrs.get('temperature_K', '?')} K")
    _save(fig, path)
    return fig


def plot_fes_convergence(fes: xr.Dataset, transitions: Sequence[Mapping[str, Any]],
                         path: str | os.PathLike[str] | None) -> Figure:
    """Barrier and dF of each transition against simulated time, from the
    optional ``convergence_time`` (fs), ``convergence_barrier`` and
    ``convergence_delta_F`` (eV; dims convergence_time, basin_from, basin_to)
    of a free-energy dataset (estimators of walkers under a time-dependent
    bias write them), with the exact values along xi of ``transitions`` (rows
    of ``summary.json``) where known."""
    fig = _figure(ncols=2, width=4.6, height=3.4)
    axes = fig.subplots(1, 2)
    t = fes["convergence_time"].values / 1000.0
    for i, row in enumerate(transitions):
        sel = {"basin_from": row["from"], "basin_to": row["to"]}
        try:
            series = [fes["convergence_barrier"].sel(sel).values,
                      fes["convergence_delta_F"].sel(sel).values]
        except KeyError:
            continue
        for ax, y, key in zip(axes, series, ("exact_barrier_eV", "exact_delta_F_eV"),
                              strict=True):
            ax.plot(t, y, "o-", color=f"C{i}", label=f"{row['from']}->{row['to']}")
            if row.get(key) is not None:
                ax.axhline(float(row[key]), color=f"C{i}", ls="--", lw=1)
    for ax, title in zip(axes, ("barrier", "dF"), strict=True):
        ax.set_xlabel("simulated time per walker (ps)")
        ax.set_ylabel("eV")
        ax.set_title(f"{title} from the samples up to t (dashed: exact along xi)", fontsize=8)
    axes[0].legend(fontsize=7, frameon=False)
    _save(fig, path)
    return fig


def plot_rates(rates: xr.Dataset, path: str | os.PathLike[str] | None) -> Figure:
    """The rate stage's checks (``mtcv.rates/1``): left, kappa(t) of every
    transition with its bootstrap band and its plateau value; right, the
    committor histogram at xi* of each forward transition (an ideal
    reaction coordinate peaks at 1/2)."""
    fig = _figure(ncols=2, width=4.6, height=3.6)
    left, right = fig.subplots(1, 2)
    n = rates.sizes["transition"]
    for i in range(n):
        label = f"{rates['basin_from'].values[i]}->{rates['basin_to'].values[i]}"
        if "kappa_t" in rates:
            t = rates["time"].values
            k = rates["kappa_t"].values[i]
            e = rates["kappa_t_err"].values[i] if "kappa_t_err" in rates else 0 * k
            left.plot(t, k, color=f"C{i}", label=f"{label}: kappa = "
                      f"{float(rates['kappa'].values[i]):.2f}")
            left.fill_between(t, k - e, k + e, color=f"C{i}", alpha=0.25)
            left.axhline(float(rates["kappa"].values[i]), color=f"C{i}", ls=":", lw=1)
            if "kappa_plateau_start" in rates:
                left.axvline(float(rates["kappa_plateau_start"].values[i]), color=f"C{i}",
                             ls="--", lw=0.8)
    left.set_xlabel("t (fs)")
    left.set_ylabel("kappa(t)")
    left.set_ylim(0.0, 1.05)
    left.legend(fontsize=7, frameon=False)
    left.set_title("transmission coefficient (dashed: plateau start)", fontsize=8)
    if "committor_counts" in rates:
        edges = rates["p_B_edges"].values
        shown = set()
        for i in range(n):
            pair = frozenset((str(rates["basin_from"].values[i]),
                              str(rates["basin_to"].values[i])))
            if pair in shown:
                continue
            shown.add(pair)
            counts = rates["committor_counts"].values[i]
            right.stairs(counts / max(1, counts.sum()), edges, fill=True, alpha=0.5,
                         color=f"C{i}", label=f"p({rates['basin_to'].values[i]}), mean "
                         f"{float(rates['committor_mean'].values[i]):.2f} ± sd "
                         f"{float(rates['committor_std'].values[i]):.2f}")
        right.axvline(0.5, color="k", ls="--", lw=0.8)
        right.legend(fontsize=7, frameon=False)
    right.set_xlabel("committor at xi*")
    right.set_ylabel("fraction of configurations")
    right.set_title("committor test (ideal: peaked at 1/2)", fontsize=8)
    _save(fig, path)
    return fig


def _shade_basins(ax: Any, fes: xr.Dataset, basin_of: Any) -> None:
    """Shade the runs of bins each basin claims, named once."""
    x = fes["bin_center"].values
    edges = fes["bin_edges"].values
    labels = np.asarray(basin_of(x[:, None])).reshape(-1)
    names = [str(b) for b in fes["basin"].values] if "basin" in fes.coords else []
    named: set[int] = set()
    start = 0
    for i in range(1, len(x) + 1):
        if i < len(x) and labels[i] == labels[start]:
            continue
        b = int(labels[start])
        if 0 <= b < len(names):
            ax.axvspan(edges[start], edges[i], color=f"C{2 + b}", alpha=0.12, lw=0,
                       label=None if b in named else f"basin {names[b]}")
            named.add(b)
        start = i


def _annotate_transition(ax: Any, fes: xr.Dataset, row: dict[str, Any]) -> None:
    """Barrier and dF of ``row`` (a transitions row) from its first basin's
    minimum; reference barrier levels as short horizontal marks."""
    if "basin_minimum" not in fes or "basin" not in fes.coords:
        return
    basins = [str(b) for b in fes["basin"].values]
    a = row.get("from")
    barrier = row.get("barrier_eV")
    if a not in basins or barrier is None or not np.isfinite(barrier):
        return
    x0 = float(fes["basin_minimum"].values[basins.index(a)][0])
    x, y = fes["bin_center"].values, fes["pmf"].values
    finite = np.isfinite(y)
    if not finite.any():
        return
    f0 = float(y[finite][np.argmin(np.abs(x[finite] - x0))])
    top = f0 + barrier
    span = (x[finite].min(), x[finite].max())
    ax.hlines([f0, top], *span, colors="0.4", lw=0.6, ls=":")
    ax.annotate("", xy=(x0, top), xytext=(x0, f0),
                arrowprops={"arrowstyle": "<->", "color": "0.2", "lw": 0.9})
    err = row.get("barrier_err_eV")
    text = f"barrier {barrier:.3f}" + (f" ± {err:.3f}" if err is not None else "") + " eV"
    dF, dF_err = row.get("delta_F_eV"), row.get("delta_F_err_eV")
    if dF is not None:
        text += f"\nF_{row.get('to')} - F_{a} = {dF:.3f}" + (
            f" ± {dF_err:.3f}" if dF_err is not None else "") + " eV"
    right = x0 > 0.5 * (span[0] + span[1])  # the text on the side with room
    pad = "  "
    ax.text(x0, f0 + 0.5 * barrier,
            (text.replace("\n", pad + "\n") + pad) if right else
            (pad + text.replace("\n", "\n" + pad)),
            fontsize=8, va="center", ha="right" if right else "left",
            bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 1.0})
    marks = [("reference_barrier_eV", "quadrature barrier", "C3"),
             ("true_cv_barrier_eV", "barrier along the true CVs", "C1")]
    width = 0.08 * (span[1] - span[0])
    for key, label, color in marks:
        v = row.get(key)
        if v is not None and np.isfinite(v):
            ax.hlines(f0 + v, x0 - width, x0 + width, colors=color, lw=2.0, label=label)


def _estimator_label(fes: Any) -> str:
    """The estimator that made ``fes`` as a legend label: its optional
    ``estimator_label`` attribute, else its ``estimator`` name."""
    return str(fes.attrs.get("estimator_label", fes.attrs.get("estimator", "estimate")))
