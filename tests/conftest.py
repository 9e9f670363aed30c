"""Test-wide settings."""

import os

# One BLAS thread: on a small shared machine OpenBLAS threads spin and make
# scipy's small optimisations 10-30x slower (set before numpy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
