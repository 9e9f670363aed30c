"""Execution of independent tasks through Dask (``dask.distributed``).

A local cluster by default, an existing scheduler by address. Results never
depend on the number of workers: work is split into tasks by the config, not
by the cluster, and every task derives its random stream from the run seed
and its own index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def task_seed(seed: int, *keys: str | int) -> np.random.SeedSequence:
    """A seed sequence unique to (seed, keys), stable across Python runs."""
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        if isinstance(key, str):
            words.append(int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little"))
        else:
            words.append(int(key) & 0xFFFFFFFF)
    return np.random.SeedSequence(words)


def task_rng(seed: int, *keys: str | int) -> np.random.Generator:
    return np.random.default_rng(task_seed(seed, *keys))


def dask_client(scheduler: str | None = None, workers: int = 2) -> Any:
    """A ``dask.distributed.Client``: to ``scheduler`` if given, otherwise to
    a new local cluster of ``workers`` single-threaded processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    return Client(cluster)


def map_tasks(fn: Callable[..., Any], args: Sequence[Any], *, client: Any = None,
              progress: bool = False, desc: str = "tasks") -> list[Any]:
    """``[fn(a) for a in args]``, on ``client`` when given; results in order."""
    from tqdm.auto import tqdm

    if client is None:
        return [fn(a) for a in tqdm(args, desc=desc, disable=not progress, leave=False)]
    from dask.distributed import as_completed

    futures = client.map(fn, args, pure=False)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with tqdm(total=len(futures), desc=desc, disable=not progress, leave=False) as bar:
        for fut in as_completed(futures):
            results[index[fut.key]] = fut.result()
            bar.update()
    return results
