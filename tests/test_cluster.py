"""Batch clusters through dask-jobqueue: ``[execution] cluster`` and a
cluster object handed to :func:`mtcv_core.pipeline.run_pipeline`."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_pipeline import TINY

from mtcv_core.config import ConfigError
from mtcv_core.pipeline import load_config

dask_jobqueue = pytest.importorskip("dask_jobqueue")


def _config(tmp_path, execution: str):
    text = TINY.replace("[execution]\nworkers = 1\n", "[execution]\nworkers = 1\n" + execution)
    (tmp_path / "c.toml").write_text(text)
    return load_config(tmp_path / "c.toml")[0]


def test_a_slurm_config_builds_the_job_script_it_says(tmp_path):
    """``cluster = "slurm"`` with the jobqueue options: the job script has
    the partition, account, walltime, memory, extra directives and one
    single-threaded worker per process, in this Python."""
    from mtcv_core.execution import make_jobqueue_cluster

    config = _config(tmp_path, """cluster = "slurm"
jobqueue = { cores = 4, processes = 4, memory = "8GB", walltime = "02:00:00", \
queue = "short", account = "chem", job_extra_directives = ["--constraint=cpu"] }
""")
    assert config.execution.cluster == "slurm"
    cluster = make_jobqueue_cluster(config.execution.cluster, config.execution.jobqueue)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p short", "#SBATCH -A chem", "#SBATCH -t 02:00:00",
                 "#SBATCH --constraint=cpu", "#SBATCH -n 1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=8G"):
        assert line in script, (line, script)
    assert sys.executable in script
    assert "export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1" in script
    assert "--nworkers 4" in script and "--nthreads 1" in script


def test_bad_cluster_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"execution.jobqueue.partition: not an option of "
                                          r"dask_jobqueue.SLURMCluster; expected one of .*"
                                          r"'queue'"):
        _config(tmp_path, 'cluster = "slurm"\njobqueue = { partition = "short" }\n')
    with pytest.raises(ConfigError, match=r"execution.jobqueue: options for a batch cluster, "
                                          r"but execution.cluster is 'local'"):
        _config(tmp_path, 'jobqueue = { queue = "short" }\n')
    with pytest.raises(ConfigError, match=r"scheduler .* and cluster = 'pbs' both say"):
        _config(tmp_path, 'cluster = "pbs"\nscheduler = "tcp://10.0.0.1:8786"\n')
    with pytest.raises(ConfigError, match=r"execution.cluster"):
        _config(tmp_path, 'cluster = "kubernetes"\n')


def test_an_injected_jobqueue_cluster_gives_the_local_result(tmp_path):
    """A ``dask_jobqueue`` cluster object handed to run_pipeline (its
    LocalCluster: the jobqueue machinery, jobs as local processes) runs the
    sample stage to exactly the data of the default local cluster, and is
    left running for its owner."""
    import xarray as xr
    from dask_jobqueue.local import LocalCluster as JobqueueLocalCluster

    from mtcv_core.pipeline import run_pipeline

    (tmp_path / "tiny.toml").write_text(TINY)
    run_pipeline(tmp_path / "tiny.toml", out=tmp_path / "local", until="sample",
                 progress=False)
    cluster = JobqueueLocalCluster(cores=1, processes=1, memory="2GB")
    try:
        cluster.scale(n=1)
        run_pipeline(tmp_path / "tiny.toml", out=tmp_path / "jq", until="sample",
                     progress=False, cluster=cluster)
        assert cluster.status.name == "running"  # mtcv did not close the caller's cluster
        assert cluster.scheduler_info["workers"]  # its job did the work
    finally:
        cluster.close()
    with xr.open_dataset(tmp_path / "local" / "data.nc") as a, \
            xr.open_dataset(tmp_path / "jq" / "data.nc") as b:
        assert a.sizes["frame"] > 50
        for name in ("coordinates", "energy", "forces", "label", "source", "split"):
            np.testing.assert_array_equal(a[name].values, b[name].values)
