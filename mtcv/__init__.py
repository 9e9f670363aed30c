"""mtcv: multitask-learned collective variables and free energies.

One import for scripts and notebooks::

    from mtcv import Run, run

    r = run("my.toml", out="runs/my", resume=True)   # the pipeline
    r = Run("runs/quick")                            # a run's files, config, CV, bias

See :mod:`mtcv_core.run`; the components live in ``mtcv_core``, ``mtcv_ase``
and the plugins.
"""

from mtcv_core import __version__
from mtcv_core.run import Run, run

__all__ = ["Run", "run", "__version__"]
