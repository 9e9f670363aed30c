"""A run from Python: ``from mtcv import Run, run``.

::

    import mtcv

    r = mtcv.run("my.toml", out="runs/my")       # the pipeline (resumable)
    r = mtcv.Run("runs/quick")                   # a finished or partial run
    r.summary["transitions"]                     # what summary.json says
    r.fes["pmf"]                                 # xarray datasets, opened on first use
    xi = r.xi(r.data["coordinates"].values)      # the CV, (n, d)
    atoms = r.system.make_atoms("A")
    atoms.calc = r.bias(window=3, calculator=atoms.calc)   # window 3's bias on top

Everything is read from the run directory (the files of the CLI contract);
nothing is written. Errors name the file and the stage that makes it.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.io import DatasetError, MissingFileError

#: dataset attribute -> (file, the stage that writes it)
DATASETS = {
    "data": ("data.nc", "sample"),
    "training": ("training.nc", "train"),
    "umbrella": ("umbrella.nc", "umbrella"),
    "umbrella_reference": ("umbrella_reference.nc", "umbrella (with reference = true)"),
    "fes": ("fes.nc", "estimate"),
    "fes_reference": ("fes_reference.nc", "estimate (with reference = true)"),
    "fes_exact": ("fes_exact.nc", "estimate (systems with quadrature)"),
    "rates": ("rates.nc", "rate (with [rate] enabled = true)"),
}


class Run:
    """The run in directory ``path`` (an ``mtcv run --out`` directory).

    Attributes are read lazily: ``summary`` and ``config`` at once, the
    plugins, the system, the CV and each dataset on first use.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from mtcv_core.pipeline import read_summary

        self.path = Path(path)
        summary = self.path / "summary.json"
        if not summary.is_file():
            raise MissingFileError(f"{summary}: no such file; {self.path} is not an mtcv run "
                                   "directory (mtcv run --out DIR makes one)")
        self.summary: dict[str, Any] = read_summary(summary)

    def __repr__(self) -> str:
        done = ", ".join(self.stages_done) or "no stage"
        return f"Run({str(self.path)!r}: {done} done)"

    # ------------------------------------------------------------ config
    @property
    def stages_done(self) -> list[str]:
        return list(self.summary.get("stages_done", []))

    @cached_property
    def config(self) -> Any:
        """The run's :class:`mtcv_core.pipeline.RunConfig` (from summary.json)."""
        from mtcv_core.config import from_mapping
        from mtcv_core.pipeline import RunConfig

        if "config" not in self.summary:
            raise DatasetError(f"{self.path / 'summary.json'}: holds no config")
        return from_mapping(RunConfig, self.summary["config"])

    @cached_property
    def registry(self) -> Any:
        """The installed plugins (:func:`mtcv_core.plugins.load_plugins`)."""
        from mtcv_core.plugins import load_plugins

        return load_plugins()

    @cached_property
    def system(self) -> Any:
        """The run's :class:`mtcv_core.interfaces.System`, built from its config."""
        from mtcv_core.plugins import build_component

        return build_component(self.registry, "system", self.config.system,
                               self.config.system_options, "system_options",
                               name_where="system")

    @property
    def transitions(self) -> list[dict[str, Any]]:
        """The transitions table of summary.json (empty before estimate)."""
        return list(self.summary.get("transitions", []))

    @property
    def rate_table(self) -> list[dict[str, Any]]:
        """The rates table of summary.json: k, k_TST, kappa, MFPT, committor per
        transition, 1/s and s (empty without the rate stage)."""
        return list(self.summary.get("rates", []))

    # ---------------------------------------------------------------- CV
    def file(self, name: str, stage: str) -> Path:
        """``path / name``; MissingFileError naming ``stage`` when absent."""
        p = self.path / name
        if not p.is_file():
            raise MissingFileError(f"{p}: no such file (written by the {stage} stage; this "
                                   f"run has done: {', '.join(self.stages_done) or 'none'})")
        return p

    @cached_property
    def cv(self) -> Any:
        """The CV as a torch module: positions (n, n_atoms, 3) angstrom ->
        xi (n, d), float64 (``cv.ts``; trained or imported)."""
        import torch

        from mtcv_core.export import load_cv

        return load_cv(self.file("cv.ts", "train")).to(torch.float64)

    @cached_property
    def model(self) -> Any:
        """The trained :class:`mtcv_core.model.MultitaskCV` (``model.pt``), or
        None for a CV imported with ``train.cv_file``."""
        from mtcv_core.export import load_model

        if self.config.train.get("cv_file"):
            return None
        return load_model(self.file("model.pt", "train"), self.registry)

    def xi(self, positions: np.ndarray) -> np.ndarray:
        """The CV on positions (n, n_atoms, 3) angstrom -> (n, d) float64."""
        from mtcv_core.stages.common import evaluate_cv

        return evaluate_cv(self.cv, np.asarray(positions, float))

    # ---------------------------------------------------------- datasets
    def _dataset(self, attr: str) -> xr.Dataset:
        from mtcv_core.io import read_dataset, read_frames

        name, stage = DATASETS[attr]
        path = self.file(name, stage)
        return read_frames(path) if attr == "data" else read_dataset(path)

    @cached_property
    def data(self) -> xr.Dataset:
        """``data.nc``: the frames (coordinates, energy, forces, labels, split)."""
        return self._dataset("data")

    @cached_property
    def training(self) -> xr.Dataset:
        """``training.nc``: the training history."""
        return self._dataset("training")

    @cached_property
    def umbrella(self) -> xr.Dataset:
        """``umbrella.nc``: the biased samples along xi (umbrella schema)."""
        return self._dataset("umbrella")

    @cached_property
    def umbrella_reference(self) -> xr.Dataset:
        """``umbrella_reference.nc``: the biased samples along the true CVs."""
        return self._dataset("umbrella_reference")

    @cached_property
    def fes(self) -> xr.Dataset:
        """``fes.nc``: the free energy along xi."""
        return self._dataset("fes")

    @cached_property
    def fes_reference(self) -> xr.Dataset:
        """``fes_reference.nc``: the free energy along the true CVs."""
        return self._dataset("fes_reference")

    @cached_property
    def fes_exact(self) -> xr.Dataset:
        """``fes_exact.nc``: the exact PMF along xi by quadrature."""
        return self._dataset("fes_exact")

    @cached_property
    def rates(self) -> xr.Dataset:
        """``rates.nc``: rate constants along xi, kappa(t), the committor
        histogram (``mtcv.rates/1``)."""
        return self._dataset("rates")

    @property
    def figures(self) -> dict[str, Path]:
        """The run's figures: name (file stem) -> path."""
        figs = self.path / "figures"
        return {p.stem: p for p in sorted(figs.glob("*.png"))} if figs.is_dir() else {}

    # -------------------------------------------------------------- bias
    def bias(self, window: int | None = None, *, center: Any = None,
             spring_constant: Any = None, calculator: Any = None,
             reference: bool = False) -> Any:
        """An ASE calculator with the bias of umbrella window ``window``
        (its centre and spring constant from ``umbrella.nc``;
        ``umbrella_reference.nc`` with ``reference``, along the true CVs) --
        or of ``center`` (d,) / ``spring_constant`` (d,) eV per CV unit^2 --
        on top of ``calculator`` (None: the bias alone). Built by the run's
        sampler (:meth:`mtcv_core.interfaces.Sampler.bias_calculator`)."""
        from mtcv_core.plugins import build_component
        from mtcv_core.schema_umbrella import cv_periods
        from mtcv_core.stages.umbrella import umbrella_config

        samples = self.umbrella_reference if reference else self.umbrella
        period = cv_periods(samples)
        if window is not None and "window" not in samples.sizes:
            raise ValueError(f"bias: {self.path} sampled with {samples.attrs.get('method')!r}: "
                             f"walkers under one history-dependent bias "
                             f"({samples.attrs.get('mtcv_schema')}), no windows; give center "
                             "and spring_constant for a harmonic restraint of your own")
        if window is not None:
            n = samples.sizes["window"]
            if not 0 <= int(window) < n:
                raise IndexError(f"window {window}: {self.path} has windows 0..{n - 1}")
            center = samples["center"].values[int(window)]
            spring_constant = samples["spring_constant"].values[int(window)]
        if center is None or spring_constant is None:
            raise ValueError("bias: give a window, or center and spring_constant")
        ctx = self._context()
        cfg = umbrella_config(ctx)
        if reference:
            from mtcv_core.stages.umbrella import reference_cv

            cv = reference_cv(ctx, cfg.reference_cvs)[0]
        else:
            cv = self.cv
        sampler = build_component(self.registry, "sampler", cfg.sampler, cfg.sampler_options,
                                  "umbrella.sampler_options", name_where="umbrella.sampler")
        return sampler.bias_calculator(calculator, cv,
                                       center=np.atleast_1d(np.asarray(center, float)),
                                       spring_constant=np.atleast_1d(
                                           np.asarray(spring_constant, float)),
                                       period=period)

    def _context(self) -> Any:
        from mtcv_core.stages.context import RunContext

        return RunContext(config=self.config, out=self.path, registry=self.registry,
                          system=self.system, client_factory=None, progress=False,
                          summary=self.summary)


def run(config: str | os.PathLike[str] | None = None, *, out: str | os.PathLike[str] | None
        = None, **options: Any) -> Run:
    """Run the pipeline (:func:`mtcv_core.pipeline.run_pipeline`: ``until``,
    ``resume``, ``workers``, ``scheduler``, ``cluster``, ``progress``,
    ``strict``, ``allow_large``) on ``config`` (None: the built-in quick
    demo) into ``out`` (default ``runs/<name>``) and return it as a
    :class:`Run`."""
    from mtcv_core.pipeline import load_config, run_pipeline

    if out is None:
        out = Path("runs") / load_config(config)[0].name
    run_pipeline(config, out=out, **options)
    return Run(out)


__all__ = ["Run", "run", "DATASETS"]
