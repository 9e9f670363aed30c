"""The nouns of mtcv as small abstract interfaces.

Units throughout: energies in eV, lengths in angstrom, time in fs,
temperatures in K, masses in amu, forces in eV/angstrom. Arrays of
positions have shape ``(n_frames, n_atoms, 3)``.

``mtcv_core`` never imports ASE: the ``Atoms`` annotations below are
strings, resolved only by type checkers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import xarray as xr
    from ase import Atoms


class System(ABC):
    """A physical system: an ``ase.Atoms`` with its calculator, plus what is
    known about it (basins, true CVs, reference values).

    Subclasses set :attr:`name`, :attr:`basins` and implement
    :meth:`make_atoms` and :meth:`basin_index`. Systems whose potential can
    be evaluated for many configurations at once also implement
    :meth:`energy_and_forces`, which the fast MD paths use.
    """

    name: ClassVar[str]
    #: basin names, in label order: label ``i`` means ``basins[i]``
    basins: tuple[str, ...] = ()
    #: names of the true collective variables, if any
    true_cv_names: tuple[str, ...] = ()
    #: units of the true CVs ("angstrom", "radian", ...)
    true_cv_units: str = "1"
    #: period of each true CV (0: not periodic); empty: none is periodic
    true_cv_periods: tuple[float, ...] = ()
    #: default temperature of the system's experiments, K
    temperature_K: float = 300.0

    @abstractmethod
    def make_atoms(self, basin: str | None = None) -> Atoms:
        """A new ``Atoms`` with this system's calculator attached, placed at
        the minimum of ``basin`` (the first basin when ``None``)."""

    @abstractmethod
    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        """Basin label of each frame.

        positions: (n_frames, n_atoms, 3) angstrom -> (n_frames,) int, the
        index into :attr:`basins`, or -1 for frames outside every basin.
        """

    def basin_name(self, basin: str | int | None) -> str:
        """The basin's name from a name, a label index, or None (the first
        basin); KeyError naming the basins for an unknown one."""
        if basin is None:
            return self.basins[0]
        if isinstance(basin, int | np.integer):
            return self.basins[int(basin)]
        if basin not in self.basins:
            raise KeyError(f"{self.name} has no basin {basin!r}; basins are {self.basins}")
        return basin

    def start_positions(self, basin: str, n: int, *, rng: np.random.Generator,
                        split: str = "train") -> np.ndarray:
        """(n, n_atoms, 3) starting configurations in ``basin``.

        Systems that can should start the ``"train"`` and ``"test"`` splits
        from disjoint regions of configuration space. The default places
        every walker at the basin's minimum.
        """
        positions = self.make_atoms(basin).get_positions()
        return np.repeat(positions[None], n, axis=0)

    @property
    def dof_mask(self) -> np.ndarray | None:
        """(n_atoms, 3) bool of the active degrees of freedom, or None (all)."""
        return None

    @property
    def cell(self) -> np.ndarray | None:
        """(3, 3) angstrom, rows the cell vectors, when the system is periodic
        along some axis (:attr:`pbc`); None (default): not periodic. Passed
        to featurizers that declare :attr:`Featurizer.uses_cell`."""
        return None

    @property
    def pbc(self) -> np.ndarray | None:
        """(3,) bool: the periodic axes of :attr:`cell`; None when it is None."""
        return None

    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        """True CVs: (n_frames, n_atoms, 3) angstrom -> (n_frames, n_cv)."""
        raise NotImplementedError(f"system {self.name!r} has no true CVs")

    def true_cv_module(self) -> Any:
        """The true CVs as a torch module positions (n, n_atoms, 3) -> (n, n_cv),
        for umbrella sampling along them."""
        raise NotImplementedError(f"system {self.name!r} has no true CVs")

    def basin_index_cv(self, cv: np.ndarray) -> np.ndarray:
        """Basin label from true-CV values: (n, n_cv) -> (n,) int, -1 outside."""
        raise NotImplementedError(f"system {self.name!r} has no true CVs")

    def reference_transitions(self, temperature_K: float) -> list[dict[str, Any]]:
        """Independent reference free energies between basins (eV): a list of
        ``{"from", "to", "barrier_eV", "delta_F_eV", "method"}``; empty when
        the system has none."""
        return []

    @property
    def supports_batch(self) -> bool:
        """Whether :meth:`energy_and_forces` is implemented."""
        return type(self).energy_and_forces is not System.energy_and_forces

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Potential energy and forces for many configurations at once.

        positions: (n, n_atoms, 3) angstrom -> energy (n,) eV,
        forces (n, n_atoms, 3) eV/angstrom.
        """
        raise NotImplementedError(f"system {self.name!r} has no batched evaluation")

    # ------------------------------------------------- spectator coordinates
    #: names of the spectator coordinates: coordinates that change neither the
    #: potential energy nor the basin, so a good CV must ignore them (the 5D
    #: models: ``x5`` and the two embedding angles). Empty: none declared.
    spectator_names: tuple[str, ...] = ()
    #: period of each spectator (0: not periodic), same order as the names. A
    #: periodic spectator is an angle whose equilibrium distribution is uniform
    #: given the other coordinates (:meth:`with_spectators` moves it by a
    #: volume-preserving map, e.g. a rotation): the umbrella sampler's
    #: ``spectator_moves`` redraw it uniformly as an exact Monte Carlo move.
    spectator_periods: tuple[float, ...] = ()
    #: units of each spectator ("angstrom", "radian", ...)
    spectator_units: tuple[str, ...] = ()

    def spectators(self, positions: np.ndarray) -> np.ndarray:
        """Spectator values: (n, n_atoms, 3) angstrom -> (n, n_spectators).

        Systems that declare :attr:`spectator_names` implement this and
        :meth:`with_spectators`; training then augments along them
        (``train.spectator_augmentation``) and the pipeline reports the CV's
        sensitivity to them (:mod:`mtcv_core.spectators`)."""
        raise NotImplementedError(f"system {self.name!r} declares no spectator coordinates")

    def with_spectators(self, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The same configurations with their spectators set to ``values``.

        positions: (n, n_atoms, 3) angstrom, values: (n, n_spectators) ->
        (n, n_atoms, 3). The potential energy and the basin of every frame
        must not change (up to the system's own tolerance)."""
        raise NotImplementedError(f"system {self.name!r} declares no spectator coordinates")

    def landmarks(self) -> dict[str, tuple[np.ndarray, int]]:
        """Named reference configurations: name -> (positions (n_atoms, 3)
        angstrom, basin label or -1), e.g. each basin's minimum and the saddles
        between them. Used to report how a CV moves when only the spectators
        do. Empty when the system has none."""
        return {}

    def equilibrium_nodes(self, temperature_K: float, *,
                          spectator_spread: Sequence[float] | None = None,
                          spectator_draws: int = 16, seed: int = 0,
                          chunk: int = 65536) -> Any:
        """Quadrature of the exact Boltzmann distribution, for free energies
        along ANY CV by quadrature (:func:`mtcv_core.exact_pmf.exact_pmf`).

        Yields chunks ``(positions (m, n_atoms, 3) angstrom, weights (m,))``
        whose weights sum to one over all chunks: ``<A> = sum_i w_i A(x_i)``
        for any observable A. Non-periodic spectators are drawn from
        ``N(0, spread^2)`` (``spectator_spread`` per spectator, their units;
        None or 0: held at 0), periodic ones uniformly over their period,
        ``spectator_draws`` configurations per quadrature cell.
        Raises NotImplementedError for systems without exact quadrature."""
        raise NotImplementedError(f"system {self.name!r} has no exact quadrature")

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description (name, basins, parameters)."""
        return {"name": self.name, "basins": list(self.basins),
                "true_cv_names": list(self.true_cv_names),
                "temperature_K": self.temperature_K}


@dataclass(frozen=True)
class MDSettings:
    """The run's molecular-dynamics settings, passed explicitly to every data
    source and sampler (their own options may override them).

    temperature_K: thermostat temperature, K; timestep_fs: time step, fs;
    friction_per_fs: Langevin friction, 1/fs; engine: ``"fast"`` (batched
    walkers through :meth:`System.energy_and_forces` where the system has
    it) or ``"ase"`` (ASE's ``Langevin`` on the system's calculator).
    """

    temperature_K: float
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    engine: str = "fast"


@dataclass(frozen=True)
class Footprint:
    """What a component will hold in memory at once and write to disk,
    bytes, estimated from its options before anything runs (validation
    refuses what cannot fit the machine); ``what`` says what was counted,
    e.g. ``"2.0e+09 frames of 5 atoms"``."""

    memory_bytes: float
    disk_bytes: float
    what: str


class DataSource(ABC):
    """Produces labelled frames (an xarray Dataset in the frame schema of
    :mod:`mtcv_core.schema`).

    The sample stage builds a source from its ``[sample.sources.NAME]``
    table (``cls(**options)``), calls :meth:`check` before any stage runs,
    then :meth:`run` once per split. The frames name their source and how
    their labels were assigned with words of the source's own choosing
    (``make_frames(source=..., label_source=...)``).
    """

    name: ClassVar[str]
    #: whether :meth:`run` takes ``store``: a directory of its own (one per
    #: split) where it keeps the results of finished tasks and from which
    #: it resumes after an interruption (e.g. with
    #: :class:`mtcv_core.execution.TaskStore`); the sample stage passes it
    #: only to sources that declare it, and removes it once the split is
    #: written
    stores_partial_results: ClassVar[bool] = False

    def check(self, system: System) -> None:
        """Raise :class:`mtcv_core.config.ConfigError` (naming the option)
        for options that do not fit ``system`` (basin names, files, ...);
        called before any stage runs. Default: nothing to check."""
        return None

    def footprint(self, system: System, *, n_atoms: int, scale: float = 1.0
                  ) -> Footprint | None:
        """What :meth:`run` with ``scale`` would hold in memory and write
        (a :class:`Footprint`, an estimate: a lower bound where the amount
        depends on the dynamics), so that validation can refuse an absurd
        config at once; None: unknown (the default)."""
        return None

    @abstractmethod
    def run(self, system: System, *, seed: int, split: str = "train", scale: float = 1.0,
            md: MDSettings | None = None, client: Any = None,
            progress: bool = False) -> xr.Dataset:
        """Generate the frames of one split for ``system``.

        split: ``"train"`` or ``"test"`` (systems may start the two from
        different regions, :meth:`System.start_positions`); scale: the
        split's share relative to the train split (test: f / (1 - f)), by
        which a source multiplies its amount of sampling; md: the run's MD
        settings for this split (None: the source's own options or
        defaults); client: an optional ``dask.distributed.Client`` for
        independent tasks -- the result for a given ``seed`` must not depend
        on it; progress: show progress bars. Returns a frame dataset whose
        ``split`` is ``split`` (it may hold no frames). A ``blow_ups``
        attribute (JSON list of records) is reported in summary.json."""


class Featurizer(ABC):
    """A differentiable map from positions to model input.

    Implementations are ``torch.nn.Module`` subclasses too, so that they can
    be exported with the CV as TorchScript.
    """

    name: ClassVar[str]
    #: whether the featurizer takes a ``dof_mask`` option, (n_atoms, 3) bool of
    #: the coordinates to use; if so the pipeline passes the system's
    #: :attr:`System.dof_mask` unless the config gives one
    uses_dof_mask: ClassVar[bool] = False
    #: whether the featurizer takes ``cell`` ((3, 3) angstrom, rows the cell
    #: vectors) and ``pbc`` ((3,) bool) options for minimum images; if so the
    #: pipeline passes :attr:`System.cell` and :attr:`System.pbc` of a
    #: periodic system unless the config gives them
    uses_cell: ClassVar[bool] = False
    #: whether the featurizer takes a ``reference`` option, (n_atoms, 3)
    #: angstrom: a structure of the system that periodic images are taken
    #: nearest to; if so the pipeline passes, for a periodic system, the
    #: positions of ``make_atoms(basins[0])`` unless the config gives one
    uses_reference: ClassVar[bool] = False

    @abstractmethod
    def n_features(self, n_atoms: int) -> int:
        """Length of the feature vector for ``n_atoms`` atoms."""

    @abstractmethod
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """(n, n_atoms, 3) angstrom -> (n, n_features)."""


#: :attr:`LossHead.prediction` of a head whose :meth:`LossHead.predict`
#: returns basin probabilities, (n, n_classes), rows summing to one
BASIN_PROBABILITY = "basin_probability"
#: :attr:`LossHead.prediction` of a head whose :meth:`LossHead.predict`
#: returns the potential energy, (n,) eV
ENERGY = "energy"
PREDICTIONS = (BASIN_PROBABILITY, ENERGY)


class LossHead(ABC):
    """A downstream network on the latent CV, with its loss term.

    Implementations are ``torch.nn.Module`` subclasses; ``loss`` returns a
    scalar tensor that must reach the encoder's parameters through
    ``latent``. The trainer builds a head as ``cls(latent_dim=...,
    n_features=..., n_classes=..., **options)`` and calls, per run,
    :meth:`prepare` once on the training frames (``fit=True``) and once on
    the validation frames (``fit=False``), then :meth:`loss` per batch.

    A head that predicts something the pipeline reads declares it in
    :attr:`prediction` and returns it from :meth:`predict`: the pipeline asks
    the model for "the head predicting basin probabilities" (basins along
    xi, test accuracy) or "predicting energies" (energy MAE), never for a
    head by its name.
    """

    name: ClassVar[str]
    #: what :meth:`predict` returns: :data:`BASIN_PROBABILITY`, :data:`ENERGY`,
    #: or None (nothing the pipeline reads, e.g. a reconstruction)
    prediction: ClassVar[str | None] = None

    @abstractmethod
    def loss(self, latent: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Scalar loss. latent: (n, latent_dim); batch holds the frame
        tensors (``features``, ``energy`` eV, ``label``, ``weight`` ...) and
        whatever :meth:`prepare` returned, sliced to the batch."""

    def prepare(self, data: Mapping[str, torch.Tensor], *, fit: bool
                ) -> dict[str, torch.Tensor]:
        """Per-frame tensors this head's loss needs beyond the frame tensors.

        data: the frame tensors of a whole split (``energy`` (n,) eV,
        ``label`` (n,) int, ``source`` (n,) int, ``features`` ...). With
        ``fit=True`` (training split) a head may also set its own statistics
        (e.g. the energy scale). Returns name -> (n, ...) tensors (default:
        none)."""
        return {}

    def predict(self, latent: torch.Tensor) -> torch.Tensor | None:
        """The head's prediction for xi (n, latent_dim), of the kind
        :attr:`prediction` declares; None (the default) for a head that
        predicts nothing."""
        return None


@dataclass(frozen=True)
class CollectiveVariable:
    """A CV to sample along, as the sampler receives it.

    module: torch module, positions (n, n_atoms, 3) angstrom -> (n, d), in
    float64, scriptable (TorchScript) so that it can be shipped to workers;
    names: d names (``("xi",)``, ``("phi", "psi")``); units: their units
    (``"1"``, ``"radian"``, ``"angstrom"``); periods: (d,) period of each
    dimension, 0 for a non-periodic one (None: none is periodic).
    """

    module: Any
    names: tuple[str, ...]
    units: str = "1"
    periods: tuple[float, ...] | None = None

    @property
    def dim(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class StartFrames:
    """Candidate starting configurations for a sampler: the labelled
    training frames with their CV values.

    positions: (n, n_atoms, 3) angstrom; cv_values: (n, d) the CV at each;
    labels: (n,) basin index into :attr:`System.basins` (-1: none);
    masses: (n_atoms,) amu.
    """

    positions: np.ndarray
    cv_values: np.ndarray
    labels: np.ndarray
    masses: np.ndarray


class Sampler(ABC):
    """Enhanced sampling driven by a CV (umbrella windows, ...).

    The umbrella stage builds a sampler from ``[umbrella] sampler_options``
    (``cls(**options)``), calls :meth:`check`, then :meth:`run` once along
    the learned CV and, with ``[umbrella] reference``, once along the
    system's true CVs (with ``reference_sampler_options`` on top). The
    sampler owns its whole algorithm: where to put windows or walkers,
    where they start, whether to refine.

    The samples' schema is declared in :attr:`samples_schema`; validation
    refuses a run whose estimator does not list it in
    :attr:`Estimator.accepts`, before anything runs.
    """

    name: ClassVar[str]
    #: the schema of the dataset :meth:`run` returns: ``"mtcv.umbrella/1"``
    #: (:mod:`mtcv_core.schema_umbrella`, fixed windows) or ``"mtcv.biased/1"``
    #: (:mod:`mtcv_core.schema_biased`, walkers under a time-dependent bias
    #: with their reweighting factors), or a schema of the plugin's own
    samples_schema: ClassVar[str] = "mtcv.umbrella/1"

    def check(self, system: System) -> None:
        """Raise :class:`mtcv_core.config.ConfigError` for options that do not
        fit ``system``; called before any stage runs. Default: nothing."""
        return None

    def footprint(self, system: System, *, n_atoms: int, cv_dim: int) -> Footprint | None:
        """What one :meth:`run` along a ``cv_dim``-dimensional CV would hold
        in memory and write (a :class:`Footprint`, an estimate); None:
        unknown (the default)."""
        return None

    @abstractmethod
    def run(self, system: System, cv: CollectiveVariable, *, frames: StartFrames,
            transitions: Sequence[tuple[int, int]], md: MDSettings, seed: int,
            client: Any = None, store: Path | None = None,
            progress: bool = False) -> xr.Dataset:
        """Biased samples along ``cv`` with everything an estimator needs to
        reweight them: a dataset in the umbrella schema of
        :mod:`mtcv_core.schema_umbrella` (``mtcv.umbrella/1``).

        frames: candidate starts with their CV values and labels;
        transitions: (basin index, basin index) pairs the sampling must
        connect; md: the run's MD settings (temperature, time step,
        friction, engine); seed: the run's seed (results must not depend on
        ``client``); store: a directory of the sampler's own for partial
        results, so that an interrupted run resumes (None: keep nothing).
        Optional attributes of the result that the pipeline reports:
        ``windows_added`` (int), ``blow_ups`` (JSON list),
        ``windows_reseeded`` (JSON list of objects with at least ``window``:
        windows run again because their walkers disagreed) and
        ``windows_disagreeing`` (JSON list of objects with at least
        ``window``: still disagreeing when the sampler gave up)."""

    def companion_files(self, samples: xr.Dataset, cv_module: Any) -> Mapping[str, bytes]:
        """Optional: extra files for the user, name -> content, that the
        umbrella stage writes (atomically) beside ``umbrella.nc`` after
        :meth:`run` along the learned CV, e.g. an input for another MD
        engine. ``samples``: what :meth:`run` returned; ``cv_module``: the
        learned CV (positions (n, n_atoms, 3) angstrom -> (n, d)). Names are
        plain file names. Default: none."""
        return {}

    def bias_calculator(self, calc: Any, cv: Any, *, center: np.ndarray,
                        spring_constant: np.ndarray, period: np.ndarray | None = None) -> Any:
        """Optional: an ASE calculator adding this sampler's bias of one
        window to ``calc`` (None: the bias alone), for users who run the
        window themselves (:meth:`mtcv_core.run.Run.bias`). ``cv`` maps
        positions (n, n_atoms, 3) angstrom -> (n, d); ``center`` (d,) in CV
        units, ``spring_constant`` (d,) eV per CV unit squared, ``period``
        (d,) (0: not periodic) -- the window's entries of the umbrella
        schema. Default: NotImplementedError (the sampler has no such
        calculator)."""
        raise NotImplementedError(f"sampler {type(self).__name__} has no bias calculator")


#: ``basin_of``: CV values (n, d) -> basin index (n,) int, -1 for none
BasinOf = Callable[[np.ndarray], np.ndarray]


class Estimator(ABC):
    """Free energies from biased samples.

    The estimate stage builds an estimator from ``[estimate] options``
    (``cls(**options)``) and calls :meth:`estimate` on the samples along the
    learned CV (and, with ``reference_options`` on top, along the true
    CVs)."""

    name: ClassVar[str]
    #: the sample schemas :meth:`estimate` reads (:attr:`Sampler.samples_schema`)
    accepts: ClassVar[tuple[str, ...]] = ("mtcv.umbrella/1",)

    @abstractmethod
    def estimate(self, samples: xr.Dataset, *, basin_of: BasinOf | None = None,
                 basin_names: Sequence[str] | None = None) -> xr.Dataset:
        """The free-energy dataset (``mtcv.fes/1``, checked by
        :func:`mtcv_core.schema_umbrella.validate_fes`) of ``samples`` (in
        one of the schemas of :attr:`accepts`, at its ``temperature_K``).

        basin_of: maps CV values to basins (the learned CV's classifier, or
        the system's regions for true CVs); basin_names: the names of the
        basin indices. With both, the result has ``basin_from``/``basin_to``
        coordinates and ``barrier``, ``barrier_err``, ``delta_F``,
        ``delta_F_err`` (eV) per ordered basin pair -- what the report's
        transitions table reads."""


class RateEstimator(ABC):
    """Rate constants of transitions along a learned 1D CV, from its PMF.

    The rate stage (``[rate] enabled = true``) builds a rate estimator from
    ``[rate] options`` (``cls(**options)``), calls :meth:`check`, then
    :meth:`rates` once, after the estimate stage, with the PMF along xi
    (``fes.nc``). The estimator owns its method (reactive flux, ...) and
    runs its own MD (``md``: the run's engine, time step and friction)."""

    name: ClassVar[str]

    def check(self, system: System) -> None:
        """Raise :class:`mtcv_core.config.ConfigError` for options that do not
        fit ``system``; called before any stage runs. Default: nothing."""
        return None

    @abstractmethod
    def rates(self, system: System, cv: CollectiveVariable, fes: xr.Dataset, *,
              frames: StartFrames, transitions: Sequence[tuple[int, int]], md: MDSettings,
              seed: int, client: Any = None, store: Path | None = None,
              progress: bool = False) -> xr.Dataset:
        """The rates dataset (``mtcv.rates/1``, checked by
        :func:`mtcv_core.schema_rates.validate_rates`) of every transition
        in ``transitions`` and its reverse.

        cv: the learned CV (1D); fes: its free-energy dataset (``mtcv.fes/1``
        with basins: ``pmf``, ``pmf_err``, ``basin_minimum``, ``barrier_err``);
        frames: the labelled training frames with their CV values (e.g.
        transition-path frames near the top as starts); transitions: (basin
        index, basin index) pairs; md: the run's MD settings; seed: the
        run's seed (results must not depend on ``client``); store: a
        directory of the estimator's own for partial results, so that an
        interrupted run resumes (None: keep nothing)."""


class ThermoLossHead(ABC):
    """A loss term for a temperature-dependent coarse-grained free energy
    A(R, T) (Duschatko et al.): force matching, the energy relation
    d(beta A)/d beta = <u|R>, higher cumulants.

    ``mtcv_thermo`` builds a head from its options (``cls(**options)``),
    calls :meth:`prepare` once on the training tensors (``fit=True``), then
    :meth:`loss` per minibatch."""

    name: ClassVar[str]

    def prepare(self, data: Mapping[str, torch.Tensor], *, fit: bool
                ) -> dict[str, torch.Tensor]:
        """Statistics of the training tensors (``positions`` (n, n_sites, 3)
        angstrom, ``temperature`` (n,) K, ``energy`` (n,) eV, ``forces`` (n,
        n_sites, 3) eV/angstrom, ...); returns per-frame extras (default:
        none)."""
        return {}

    @abstractmethod
    def loss(self, free_energy: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        """Scalar loss. free_energy: (n,) eV, A_theta at the batch's positions
        and temperatures, with the autograd graph to both (forces and
        d(beta A)/d beta follow from it); batch: the minibatch tensors."""


__all__: Sequence[str] = ["System", "DataSource", "Featurizer", "LossHead",
                          "Sampler", "Estimator", "RateEstimator", "ThermoLossHead",
                          "BASIN_PROBABILITY",
                          "ENERGY", "PREDICTIONS", "MDSettings", "CollectiveVariable",
                          "StartFrames", "BasinOf", "Footprint"]
