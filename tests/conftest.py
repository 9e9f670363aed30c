"""Test-wide settings."""

import os

# One BLAS thread: on a small shared machine OpenBLAS threads spin and make
# scipy's small optimisations 10-30x slower (set before numpy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


# ------------------------------------------------------------ reliability counts
import collections  # noqa: E402
import json  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def reliability_counts():
    """A Counter the reliability tests add to (inputs tried, faults injected,
    data lost); written as JSON to ``$MTCV_RELIABILITY_COUNTS`` at the end of
    the session (merged with what is there), for ``benchmarks/reliability_faults.py``."""
    counts: collections.Counter = collections.Counter()
    yield counts
    path = os.environ.get("MTCV_RELIABILITY_COUNTS")
    if path:
        old = {}
        if os.path.exists(path):
            with open(path) as fh:
                old = json.load(fh)
        merged = collections.Counter(old)
        merged.update(counts)
        with open(path, "w") as fh:
            json.dump(dict(sorted(merged.items())), fh, indent=1)
