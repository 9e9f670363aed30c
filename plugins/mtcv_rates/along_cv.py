"""Rate constants of one transition along a 1D CV, put together: the
dividing surface at the top of the PMF, configurations on it, the TST rates
both ways, the transmission coefficient from shots and the committor test.

``k(A -> B) = kappa k_TST(A -> B)`` and the same kappa for B -> A (with
equilibrium shots from the surface the Bennett-Chandler kappa is the same
both ways; both are computed and reported).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtcv_core.interfaces import System
from mtcv_core.rates import tst_rates
from mtcv_core.units import kT_eV
from mtcv_rates.analysis import committor_test, kappa_from_shots
from mtcv_rates.surface import SurfaceSampler
from mtcv_rates.surface_shots import SurfaceShots


@dataclass(frozen=True)
class RatesAlongCV:
    """The settings of :meth:`run`: ``surface`` (a :class:`SurfaceSampler`
    without temperature and spring; the spring is set from the PMF bin width
    so that the restrained walkers stay within a bin), ``shots``
    (:class:`SurfaceShots` options), ``max_configs`` configurations shot."""

    temperature_K: float
    surface: dict[str, Any] = field(default_factory=dict)
    shots: dict[str, Any] = field(default_factory=dict)
    max_configs: int = 64
    seed: int = 0
    committor_bins: int | None = None

    def run(self, system: System, cv: torch.nn.Module, pmf_eV: np.ndarray,
            centers: np.ndarray, xi_a: float, xi_b: float, starts: np.ndarray, *,
            product: int, reactant: int, client: Any = None,
            progress: bool = False) -> dict[str, Any]:
        """Rates of ``reactant -> product`` and back along ``cv`` (basin
        indices of ``system.basins``); ``xi_a``/``xi_b`` the reactant's and
        the product's minima along the CV, ``pmf_eV``/``centers`` its PMF,
        ``starts`` configurations near the top (e.g. transition-path frames).
        Returns a dict of numbers (rates in 1/s; ``k_*_err_per_s`` is
        kappa's error times k_TST: the PMF's error is the caller's to add)
        and, under ``"curves"``, kappa(t) both ways (``"forward"``,
        ``"backward"``: :func:`kappa_from_shots` datasets) and the
        committor test (``"committor"``: :func:`committor_test`'s dict)."""
        kt = kT_eV(self.temperature_K)
        centers = np.asarray(centers, float)
        width = float(np.mean(np.diff(centers)))
        spring = kt / (0.25 * width) ** 2  # thermal width a quarter bin
        xi_star, _, _ = tst_rates(pmf_eV, centers, xi_a, xi_b, 1.0, kt)
        sampler = SurfaceSampler(temperature_K=self.temperature_K, spring=spring,
                                 **self.surface)
        surf = sampler.run(system, cv, xi_star, starts, seed=self.seed)
        grad_norm = float(surf.attrs["mean_grad_norm"])
        _, k_ab, k_ba = tst_rates(pmf_eV, centers, xi_a, xi_b, grad_norm, kt)
        n = min(self.max_configs, surf.sizes["config"])
        pick = np.linspace(0, surf.sizes["config"] - 1, n).astype(int)
        weights = surf["weight"].values[pick]
        shot_options = {"states": (system.basins[reactant], system.basins[product]),
                        **self.shots}
        shots = SurfaceShots(temperature_K=self.temperature_K, **shot_options).run(
            system, cv, surf["positions"].values[pick], seed=self.seed, client=client,
            progress=progress)
        towards = 1 if xi_b > xi_star else -1
        kap_ab = kappa_from_shots(shots, xi_star, towards=towards, weights=weights,
                                  seed=self.seed)
        kap_ba = kappa_from_shots(shots, xi_star, towards=-towards, weights=weights,
                                  seed=self.seed)
        committor = committor_test(shots, product=product, reactant=reactant,
                                   bins=self.committor_bins)
        out = {"xi_star": xi_star, "spring": spring, "mean_grad_norm": grad_norm,
               "n_surface_configs": int(surf.sizes["config"]), "n_shot_configs": int(n),
               "k_tst_forward_per_s": k_ab, "k_tst_backward_per_s": k_ba}
        for tag, kap, k_tst in (("forward", kap_ab, k_ab), ("backward", kap_ba, k_ba)):
            value = float(kap.attrs["kappa_plateau"])
            err = float(kap.attrs["kappa_plateau_err"])
            out[f"kappa_{tag}"] = value
            out[f"kappa_{tag}_err"] = err
            out[f"kappa_{tag}_plateau_fs"] = float(kap.attrs["plateau_start_fs"])
            out[f"k_{tag}_per_s"] = value * k_tst
            out[f"k_{tag}_err_per_s"] = err * k_tst
        out.update(committor_mean=committor["mean"], committor_std=committor["std"],
                   committor_histogram=[int(h) for h in committor["histogram"]],
                   committor_uncommitted_shots=committor["uncommitted_shots"],
                   shots_engine=str(shots.attrs["engine"]),
                   shots_per_config=int(shots.sizes["shot"]))
        out["curves"] = {"forward": kap_ab, "backward": kap_ba, "committor": committor}
        return out


__all__ = ["RatesAlongCV"]
