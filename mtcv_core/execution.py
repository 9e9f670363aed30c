"""Execution of independent tasks through Dask (``dask.distributed``).

A local cluster by default, an existing scheduler by address. Results never
depend on the number of workers: work is split into tasks by the config, not
by the cluster, and every task derives its random stream from the run seed
and its own index.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: Dask scheduler addresses: ``[protocol://]host[:port]``
_ADDRESS = re.compile(r"^((tcp|tls|inproc|ucx|ws|wss)://)?[^\s:/]+(:\d{1,5})?(/[^\s]*)?$")


def check_scheduler_address(address: str, where: str = "execution.scheduler") -> str:
    """``address`` if it looks like a Dask scheduler address
    (``tcp://host:8786``, ``host:8786``, ...); otherwise a ConfigError
    naming ``where``."""
    from mtcv_core.config import ConfigError

    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ConfigError(f"{where}: {address!r} is not a Dask scheduler address; expected "
                          "e.g. 'tcp://host:8786'")
    return address


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
    a new local cluster of ``workers`` single-threaded processes. It is not
    made dask's default scheduler: mtcv submits its tasks to it explicitly
    (:func:`map_tasks`), and as the default it would make every xarray
    netCDF write in this process take a lock through the scheduler -- a
    round trip per file, and a write that waits forever once the cluster is
    going down (Ctrl-C reaches the workers too)."""
    import dask
    from dask.distributed import Client, LocalCluster

    from mtcv_core.config import ConfigError

    if scheduler:
        check_scheduler_address(scheduler, "scheduler")
        try:
            return Client(scheduler, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"scheduler: cannot connect to the Dask scheduler at "
                              f"{scheduler!r} ({type(exc).__name__}: {exc})") from exc
    # the scheduler's HTTP server always starts: on a free port (":0"), not on
    # 8787, which a second run on the machine would find taken (a warning)
    # the workers' statistical profiler (a stack sample of the task thread
    # every 10 ms, for the dashboard) takes its interpreter lock: ~13 % of a
    # pure-Python calculator's MD on two workers (benchmarks/adatom_emt.py)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40,
                           config=dask.config.merge(dask.config.config, {"distributed": {
                               "worker": {"profile": {"enabled": False}}}}))
    return Client(cluster, set_as_default=False)


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
        for fut in as_completed(futures, loop=client.loop):
            results[index[fut.key]] = fut.result()
            bar.update()
    return results
