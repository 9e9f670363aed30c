"""Train/test split diagnostics.

The paper's train and test sets start from different x1/x~ and x3/y~
ratios: they should not overlap in the full coordinate space but should
overlap in the space of the true CVs. :func:`overlap` measures that.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def overlap(train: np.ndarray, test: np.ndarray, *, max_points: int = 20000,
            seed: int = 0) -> float:
    """Fraction of test points that lie inside the training set's cloud.

    A test point counts as inside when its nearest training point is closer
    than the 95th percentile of the nearest-neighbour distances *within* the
    training set (the set's own sampling resolution). 0: disjoint sets; about
    0.95: the test set is drawn from the same distribution.

    train: (n, d), test: (m, d) points in any coordinates; at most
    ``max_points`` of each are used (a random subset).
    """
    rng = np.random.default_rng(seed)
    train = np.asarray(train, float).reshape(len(train), -1)
    test = np.asarray(test, float).reshape(len(test), -1)
    if len(train) < 2 or len(test) == 0:
        raise ValueError("overlap needs at least 2 training and 1 test point")
    if len(train) > max_points:
        train = train[rng.choice(len(train), max_points, replace=False)]
    if len(test) > max_points:
        test = test[rng.choice(len(test), max_points, replace=False)]
    tree = cKDTree(train)
    d_self = tree.query(train, k=2)[0][:, 1]
    resolution = np.percentile(d_self, 95)
    d_test = tree.query(test, k=1)[0]
    return float(np.mean(d_test <= resolution))
