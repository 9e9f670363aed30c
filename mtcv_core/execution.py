"""Execution of independent tasks through Dask (``dask.distributed``).

A local cluster by default, an existing scheduler by address. Results never
depend on the number of workers: work is split into tasks by the config, not
by the cluster, and every task derives its random stream from the run seed
and its own index.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
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


#: ``[execution] cluster`` -> dask-jobqueue's cluster class
JOBQUEUE_CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster",
                     "lsf": "LSFCluster", "htcondor": "HTCondorCluster", "oar": "OARCluster",
                     "moab": "MoabCluster"}
#: mtcv's defaults for a batch cluster: one single-threaded worker per job slot
JOBQUEUE_DEFAULTS = {"cores": 1, "processes": 1, "memory": "4GB"}
#: the first line of every job script's prologue
SINGLE_THREAD_EXPORT = ("export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "
                        "NUMEXPR_NUM_THREADS=1")
#: options mtcv sets itself
_JOBQUEUE_RESERVED = ("scheduler", "loop", "asynchronous", "n_workers", "job_cls", "security")


def _jobqueue_class(kind: str, where: str) -> Any:
    from mtcv_core.config import ConfigError

    if kind not in JOBQUEUE_CLUSTERS:
        raise ConfigError(f"{where}: unknown batch cluster {kind!r}; expected one of "
                          f"{list(JOBQUEUE_CLUSTERS)}")
    try:
        import dask_jobqueue
    except ImportError:
        raise ConfigError(f"{where}: cluster = {kind!r} needs dask-jobqueue "
                          "(pip install -e '.[cluster]')") from None
    return getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind])


def check_jobqueue_options(kind: str, options: dict[str, Any], where: str) -> None:
    """ConfigError for an option the ``kind`` cluster class and its job class
    do not take (named, with the ones they do), before any job is submitted."""
    import inspect

    from mtcv_core.config import ConfigError

    cls = _jobqueue_class(kind, where)
    known: set[str] = set()
    for klass in (*cls.job_cls.__mro__, cls):
        init = klass.__dict__.get("__init__")
        if init is not None:
            known |= {p.name for p in inspect.signature(init).parameters.values()
                      if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    known -= {"self", *_JOBQUEUE_RESERVED}
    for key in options:
        if key not in known:
            raise ConfigError(f"{where}.{key}: not an option of dask_jobqueue."
                              f"{cls.__name__}; expected one of {sorted(known)}")


def make_jobqueue_cluster(kind: str, options: dict[str, Any]) -> Any:
    """A dask-jobqueue cluster of class ``kind`` (``slurm``, ``pbs``, ...)
    with mtcv's defaults (:data:`JOBQUEUE_DEFAULTS`) under ``options``; no
    job submitted yet (``cluster.job_script()`` shows what would be)."""
    from mtcv_core.config import ConfigError

    where = "execution.jobqueue"
    check_jobqueue_options(kind, options, where)
    cls = _jobqueue_class(kind, where)
    merged = {**JOBQUEUE_DEFAULTS, **options}
    # one thread per worker: mtcv parallelises over workers, and threaded BLAS
    # in every worker of a job oversubscribes its cores
    merged["job_script_prologue"] = [SINGLE_THREAD_EXPORT,
                                     *list(options.get("job_script_prologue") or [])]
    try:
        return cls(**merged)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: dask_jobqueue.{cls.__name__} refused the options "
                          f"({type(exc).__name__}: {exc})") from exc


def jobqueue_cluster(kind: str, options: dict[str, Any], workers: int) -> Any:
    """:func:`make_jobqueue_cluster` scaled to ``workers`` workers (jobs of
    ``processes`` workers each are submitted as needed)."""
    cluster = make_jobqueue_cluster(kind, options)
    cluster.scale(n=workers)
    return cluster


def dask_client(scheduler: str | None = None, workers: int = 2, *, cluster: Any = None,
                jobqueue: dict[str, Any] | None = None) -> Any:
    """A ``dask.distributed.Client``: to ``scheduler`` if given, otherwise to
    a new local cluster of ``workers`` single-threaded processes. It is not
    made dask's default scheduler: mtcv submits its tasks to it explicitly
    (:func:`map_tasks`), and as the default it would make every xarray
    netCDF write in this process take a lock through the scheduler -- a
    round trip per file, and a write that waits forever once the cluster is
    going down (Ctrl-C reaches the workers too).

    ``cluster``: a Dask cluster object made by the caller (e.g. a
    ``dask_jobqueue.SLURMCluster``), used by its scheduler address, so that
    closing the client leaves it to its owner; or a name of
    :data:`JOBQUEUE_CLUSTERS` -- then mtcv makes it (:func:`jobqueue_cluster`,
    ``jobqueue`` options) and owns it."""
    import dask
    from dask.distributed import Client, LocalCluster

    from mtcv_core.config import ConfigError

    if isinstance(cluster, str) and cluster != "local":
        return Client(jobqueue_cluster(cluster, dict(jobqueue or {}), workers),
                      set_as_default=False)
    if cluster is not None and not isinstance(cluster, str):
        address = getattr(cluster, "scheduler_address", None)
        if not isinstance(address, str):
            raise ConfigError(f"cluster: {type(cluster).__name__} is not a Dask cluster "
                              "(no scheduler_address)")
        return Client(address, timeout="20s", set_as_default=False)
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


class TaskStore:
    """Results of finished tasks, kept in ``directory`` so that an
    interrupted :func:`map_tasks` resumes with the tasks it had not finished.

    A task's result is a dict: its ``xarray.Dataset`` values go to
    ``task_NNNNN_<key>.nc``, the rest (JSON-able) to ``task_NNNNN.json``,
    written last and atomically: a task without its JSON record is not
    finished. A record that cannot be read is run again (with a warning).
    Results are handed out as read back from disk, finished now or before,
    so a resumed run concatenates the same objects as an uninterrupted one.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _record(self, i: int) -> Path:
        return self.directory / f"task_{i:05d}.json"

    def save(self, i: int, result: dict[str, Any]) -> None:
        """Write task ``i``'s ``result``."""
        import json

        import xarray as xr

        from mtcv_core.io import atomic_path, write_dataset

        self.directory.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"values": {}, "datasets": []}
        for key, value in result.items():
            if isinstance(value, xr.Dataset):
                write_dataset(value, self.directory / f"task_{i:05d}_{key}.nc")
                record["datasets"].append(key)
            else:
                record["values"][key] = value
        with atomic_path(self._record(i)) as tmp:
            tmp.write_text(json.dumps(record, default=_json_default))

    def load(self, i: int) -> dict[str, Any] | None:
        """Task ``i``'s result, or None when it has not finished (or its files
        cannot be read)."""
        import json
        import warnings

        from mtcv_core.errors import MtcvError
        from mtcv_core.io import read_netcdf

        path = self._record(i)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
            out = dict(record["values"])
            for key in record["datasets"]:
                # as written (a task may find no frames: the source checks what
                # it concatenates, the sample stage what the source returns)
                out[key] = read_netcdf(self.directory / f"task_{i:05d}_{key}.nc")
        except (OSError, ValueError, KeyError, MtcvError) as exc:
            warnings.warn(f"{path}: a finished task's result cannot be read "
                          f"({type(exc).__name__}: {exc}); running the task again",
                          RuntimeWarning, stacklevel=2)
            return None
        return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def map_tasks(fn: Callable[..., Any], args: Sequence[Any], *, client: Any = None,
              progress: bool = False, desc: str = "tasks", store: TaskStore | None = None,
              on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[fn(a) for a in args]``, on ``client`` when given; results in order.

    ``store``: finished tasks' results (dicts) are kept there as they finish
    and taken from there instead of running them again (:class:`TaskStore`).
    ``on_result(i, result)`` is called as each task finishes (in the order
    they finish), e.g. to write its output at once."""
    from tqdm.auto import tqdm

    results: list[Any] = [None] * len(args)
    todo = []
    for i in range(len(args)):
        found = store.load(i) if store is not None else None
        if found is None:
            todo.append(i)
        else:
            results[i] = found

    def finished(i: int, result: Any) -> None:
        if store is not None:
            store.save(i, result)
            result = store.load(i)
            if result is None:
                from mtcv_core.errors import MtcvError

                raise MtcvError(f"{store.directory}: task {i}'s result cannot be read back "
                                "right after it was written")
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    with tqdm(total=len(args), initial=len(args) - len(todo), desc=desc,
              disable=not progress, leave=False) as bar:
        if client is None:
            for i in todo:
                finished(i, fn(args[i]))
                bar.update()
            return results
        from dask.distributed import as_completed

        futures = client.map(fn, [args[i] for i in todo], pure=False)
        index = {f.key: i for f, i in zip(futures, todo, strict=True)}
        for fut in as_completed(futures, loop=client.loop):
            finished(index[fut.key], fut.result())
            bar.update()
    return results
