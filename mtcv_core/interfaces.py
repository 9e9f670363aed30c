"""The nouns of mtcv as small abstract interfaces.

Units throughout: energies in eV, lengths in angstrom, time in fs,
temperatures in K, masses in amu, forces in eV/angstrom. Arrays of
positions have shape ``(n_frames, n_atoms, 3)``.

``mtcv_core`` never imports ASE: the ``Atoms`` annotations below are
strings, resolved only by type checkers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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
    #: period of each spectator (0: not periodic), same order as the names
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


class DataSource(ABC):
    """Produces labelled frames (an xarray Dataset in the frame schema of
    :mod:`mtcv_core.schema`)."""

    name: ClassVar[str]

    @abstractmethod
    def run(self, system: System, *, seed: int, client: Any = None) -> xr.Dataset:
        """Generate frames for ``system``. ``client`` is an optional
        ``dask.distributed.Client`` for independent tasks; the result for a
        given ``seed`` must not depend on it."""


class Labeler(ABC):
    """Assigns basin labels to frames."""

    name: ClassVar[str]

    @abstractmethod
    def label(self, frames: xr.Dataset, system: System) -> np.ndarray:
        """(n_frames,) int basin labels (-1 for unlabelled)."""


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


class Sampler(ABC):
    """Enhanced sampling driven by a CV (umbrella windows, ...)."""

    name: ClassVar[str]

    @abstractmethod
    def run(self, system: System, cv: Any, *, seed: int, client: Any = None) -> xr.Dataset:
        """Biased samples with everything an estimator needs to reweight."""


class Estimator(ABC):
    """Free energies from biased samples."""

    name: ClassVar[str]

    @abstractmethod
    def estimate(self, samples: xr.Dataset, *, temperature_K: float) -> xr.Dataset:
        """Free-energy profile and differences with uncertainties (eV)."""


class FreeEnergyModel(ABC):
    """A temperature-dependent coarse-grained free energy A(R, T).

    Implementations are ``torch.nn.Module`` subclasses, so that forces
    ``-grad_R A`` and ``d(beta A)/d beta`` follow by autograd.
    """

    @abstractmethod
    def forward(self, positions: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """A in eV: positions (n, n_sites, 3) angstrom, temperature (n,) K -> (n,)."""


__all__: Sequence[str] = ["System", "DataSource", "Labeler", "Featurizer", "LossHead",
                          "Sampler", "Estimator", "FreeEnergyModel", "BASIN_PROBABILITY",
                          "ENERGY", "PREDICTIONS"]
