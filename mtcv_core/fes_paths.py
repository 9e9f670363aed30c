"""Minimax (bottleneck) paths on a gridded free-energy surface.

The barrier between two basins of a free-energy surface ``F`` sampled on a
grid is the lowest level ``L`` such that a path of neighbouring grid cells,
all with ``F <= L``, joins the two basins' minima: the *minimax* path, whose
highest cell is the grid's estimate of the transition state. The barrier
from basin A to basin B is ``L - F[min_A]``.

The search is a Dijkstra-like bottleneck search: cells are settled in order
of the lowest level at which they can be reached from the source, where the
level of a path is the largest ``F`` on it (including both ends). It works
on arrays of any dimension (a 1D profile, where the minimax path is simply
the segment between the two points, a 2D surface, ...), with optional
periodic axes; cells holding NaN (e.g. histogram bins without samples) are
impassable.

This module depends on numpy only; plugins (the MBAR estimator, the exact
quadrature references of the model systems) share it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence

import numpy as np

Index = tuple[int, ...]


def _offsets(ndim: int, diagonal: bool) -> list[Index]:
    """Neighbour offsets: the ``2 ndim`` face neighbours, or all ``3^ndim - 1``
    neighbours (edges and corners too) when ``diagonal``."""
    if diagonal:
        return [o for o in itertools.product((-1, 0, 1), repeat=ndim) if any(o)]
    out: list[Index] = []
    for axis in range(ndim):
        for step in (-1, 1):
            o = [0] * ndim
            o[axis] = step
            out.append(tuple(o))
    return out


def _periodic_flags(periodic: bool | Sequence[bool], ndim: int) -> tuple[bool, ...]:
    if isinstance(periodic, bool | np.bool_):
        return (bool(periodic),) * ndim
    flags = tuple(bool(p) for p in periodic)
    if len(flags) != ndim:
        raise ValueError(f"periodic: expected {ndim} flags, got {len(flags)}")
    return flags


def _as_index(point: int | Sequence[int], shape: tuple[int, ...]) -> Index:
    idx = (int(point),) if np.ndim(point) == 0 else tuple(int(i) for i in point)
    if len(idx) != len(shape) or any(not 0 <= i < n for i, n in zip(idx, shape, strict=True)):
        raise IndexError(f"grid index {idx} outside a grid of shape {shape}")
    return idx


def _search(f: np.ndarray, source: Index, targets: Sequence[Index] | None, diagonal: bool,
            periodic: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Bottleneck Dijkstra from ``source``; stops early once every cell of
    ``targets`` is settled (None: settle the whole grid). Returns (levels,
    predecessor flat index); levels are final for the settled cells."""
    shape = f.shape
    flat = f.ravel()
    n = flat.size
    levels = np.full(n, np.inf)
    pred = np.full(n, -1, dtype=np.int64)
    if not np.isfinite(f[source]):
        return levels.reshape(shape), pred
    strides = [int(np.prod(shape[a + 1:])) for a in range(len(shape))]
    offsets = _offsets(len(shape), diagonal)
    src = int(np.ravel_multi_index(source, shape))
    pending = (None if targets is None
               else {int(np.ravel_multi_index(t, shape)) for t in targets})
    levels[src] = flat[src]
    settled = np.zeros(n, bool)
    heap: list[tuple[float, int]] = [(float(flat[src]), src)]
    values = flat.tolist()
    while heap:
        level, u = heapq.heappop(heap)
        if settled[u]:
            continue
        settled[u] = True
        if pending is not None:
            pending.discard(u)
            if not pending:
                break
        coords = []
        rem = u
        for s in strides:
            q, rem = divmod(rem, s)
            coords.append(q)
        for off in offsets:
            v = 0
            for axis, (c, o) in enumerate(zip(coords, off, strict=True)):
                c2 = c + o
                if c2 < 0 or c2 >= shape[axis]:
                    if not periodic[axis]:
                        v = -1
                        break
                    c2 %= shape[axis]
                v += c2 * strides[axis]
            if v < 0 or settled[v]:
                continue
            fv = values[v]
            if fv != fv:  # NaN: impassable
                continue
            new = level if level >= fv else fv
            if new < levels[v]:
                levels[v] = new
                pred[v] = u
                heapq.heappush(heap, (new, v))
    return levels.reshape(shape), pred


def minimax_levels(free_energy: np.ndarray, source: int | Sequence[int], *,
                   diagonal: bool = False,
                   periodic: bool | Sequence[bool] = False) -> np.ndarray:
    """The bottleneck level of every cell as seen from ``source``.

    Parameters
    ----------
    free_energy : ndarray, shape (n_1, ..., n_d)
        Free energy on a grid (any units); NaN cells are impassable.
    source : int or sequence of d ints
        Grid index of the start cell.
    diagonal : bool
        Also step to diagonal neighbours (8-neighbourhood in 2D); default
        the ``2 d`` face neighbours only (4-neighbourhood in 2D).
    periodic : bool or sequence of d bools
        Axes on which the grid wraps around.

    Returns
    -------
    ndarray, shape (n_1, ..., n_d)
        For each cell, the lowest possible maximum of ``free_energy`` along a
        path from ``source`` to it (same units); ``inf`` where no path
        exists.
    """
    f = np.asarray(free_energy, float)
    src = _as_index(source, f.shape)
    levels, _ = _search(f, src, None, diagonal, _periodic_flags(periodic, f.ndim))
    return levels


def minimax_path(free_energy: np.ndarray, source: int | Sequence[int],
                 target: int | Sequence[int], *, diagonal: bool = False,
                 periodic: bool | Sequence[bool] = False) -> tuple[float, list[Index]]:
    """The minimax path between two cells.

    Parameters are as in :func:`minimax_levels`; ``target`` is the grid
    index of the end cell.

    Returns
    -------
    level : float
        The highest ``free_energy`` on the best path (``inf`` if the target
        cannot be reached).
    path : list of index tuples
        The cells of one such path from ``source`` to ``target`` (empty when
        unreachable). Among paths with the same bottleneck the one returned
        is arbitrary.
    """
    f = np.asarray(free_energy, float)
    src = _as_index(source, f.shape)
    tgt = _as_index(target, f.shape)
    levels, pred = _search(f, src, [tgt], diagonal, _periodic_flags(periodic, f.ndim))
    level = float(levels[tgt])
    if not math.isfinite(level):
        return math.inf, []
    path = []
    u = int(np.ravel_multi_index(tgt, f.shape))
    while u >= 0:
        path.append(tuple(int(i) for i in np.unravel_index(u, f.shape)))
        u = int(pred[u])
    return level, path[::-1]


def minimax_barrier(free_energy: np.ndarray, source: int | Sequence[int],
                    target: int | Sequence[int], *, diagonal: bool = False,
                    periodic: bool | Sequence[bool] = False) -> float:
    """Barrier from ``source`` to ``target``: the minimax level minus
    ``free_energy[source]`` (same units; ``inf`` when unreachable)."""
    f = np.asarray(free_energy, float)
    level, _ = minimax_path(f, source, target, diagonal=diagonal, periodic=periodic)
    return level - float(f[_as_index(source, f.shape)])


def region_minimum(free_energy: np.ndarray, mask: np.ndarray) -> Index | None:
    """Grid index of the lowest finite cell of ``free_energy`` where ``mask``
    is true, or None when the region holds no finite cell."""
    f = np.asarray(free_energy, float)
    m = np.asarray(mask, bool) & np.isfinite(f)
    if not m.any():
        return None
    flat = np.where(m.ravel(), f.ravel(), np.inf)
    return tuple(int(i) for i in np.unravel_index(int(np.argmin(flat)), f.shape))


def basin_barriers(free_energy: np.ndarray, labels: np.ndarray, n_basins: int, *,
                   diagonal: bool = False,
                   periodic: bool | Sequence[bool] = False) -> tuple[np.ndarray, list]:
    """Barriers between all ordered pairs of basins on a grid.

    Parameters
    ----------
    free_energy : ndarray, shape (n_1, ..., n_d)
        Free energy on the grid; NaN cells are impassable.
    labels : ndarray of int, same shape
        Basin index of each cell (``0 .. n_basins-1``), -1 for none.
    n_basins : int
        Number of basins.
    diagonal, periodic :
        As in :func:`minimax_levels`.

    Returns
    -------
    barriers : ndarray, shape (n_basins, n_basins)
        ``barriers[i, j]`` = minimax level between the minima of basins i and
        j minus the minimum of basin i (units of ``free_energy``); NaN on the
        diagonal, where a basin has no finite cell, or where no path exists.
    minima : list
        Grid index of each basin's minimum (None where it has none).
    """
    f = np.asarray(free_energy, float)
    lab = np.asarray(labels)
    minima = [region_minimum(f, lab == b) for b in range(n_basins)]
    out = np.full((n_basins, n_basins), np.nan)
    flags = _periodic_flags(periodic, f.ndim)
    for i, mi in enumerate(minima):
        if mi is None or not any(m is not None for j, m in enumerate(minima) if j != i):
            continue
        others = [m for j, m in enumerate(minima) if j != i and m is not None]
        levels, _ = _search(f, mi, others, diagonal, flags)
        for j, mj in enumerate(minima):
            if j != i and mj is not None and np.isfinite(levels[mj]):
                out[i, j] = levels[mj] - f[mi]
    return out, minima


__all__ = ["minimax_levels", "minimax_path", "minimax_barrier", "region_minimum",
           "basin_barriers"]
