"""Kernel free-energy regression with derivative observations.

A Gaussian-process / kernel-ridge model of A(R, T) trained on instantaneous
forces and energies, which observe LINEAR functionals of A:

    mapped force   f  ~  F_a = -dA/dR_a             (each active coordinate a)
    energy         u  ~  E   = d(beta A)/d beta = (1 - t d/dt) A

with t = T / T_ref. The prior covariance is a product kernel,

    k((R, t), (R', t')) = sigma^2 exp(-|R - R'|^2 / (2 l^2)) k_t(t, t'),
    k_t = sum_k s_k^2 phi_k(t) phi_k(t') + s_r^2 exp(-(t - t')^2 / (2 l_t^2)),
    phi = (1, t - 1, t - 1 - t ln t),

i.e. A = U(R) + (t - 1) S(R) + (t - 1 - t ln t) C(R) (+ an optional smooth
remainder) with independent Gaussian processes U, S, C: the free energy of
a T-independent heat capacity. Under (1 - t d/dt), phi becomes
psi = (1, -1, t - 1). Every covariance between observations (and with the
value A) is closed form; the posterior mean is

    A(R, t) = m(R) + sum_j alpha_j L_j' k((R, t), (R_j, t_j)),
    (K + diag(noise^2)) alpha = y - L m,

with the prior mean m(R) = a0 + sum_a kT_ref (R_a - mu_a)^2 / (2 var_a): the
mean training energy a0 plus the free energy of a Gaussian with the data's
mean mu and variance var per active coordinate (so E = m, F = -grad m). It
keeps A confining far from the data, where the Gaussian-kernel part decays
to zero: with a constant prior mean CG MD would leak into flat tails.
Minimising w_F sum |F - f|^2 + w_U sum (E - u)^2 + |A|_H^2 is the same
solve with noise^2 = 1 / w. Data at a single temperature determine U and
S but not C, so a force-only fit predicts A(R, T_ref) at every T (the
usual temperature-independent CG potential) and a force + energy fit
extrapolates linearly in T.

Sizes: N frames with d active coordinates give N (d + 1) observations; the
solve is O((N (d + 1))^3) (a few seconds for N (d + 1) = 4000).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_thermo.cgmap import validate_cg_dataset
from mtcv_thermo.constants import KB
from mtcv_thermo.models import DTYPE, FreeEnergyModel, check_inputs, dataset_tensors


def _phi(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Basis phi_k(t) and psi_k(t) = (1 - t d/dt) phi_k: each (n, 3)."""
    one = torch.ones_like(t)
    phi = torch.stack([one, t - 1.0, t - 1.0 - t * torch.log(t)], 1)
    psi = torch.stack([one, -one, t - 1.0], 1)
    return phi, psi


class KernelFreeEnergy(FreeEnergyModel):
    """Kernel ridge regression of A(R, T) on forces and energies (module docstring).

    Parameters
    ----------
    site_mask : (n_sites, 3) bool, active CG coordinates
    length_scale : float or sequence of floats, angstrom
        l of the Gaussian kernel in R; a sequence is a grid from which
        :meth:`fit` picks the value with the smallest validation error.
    amplitude : float, eV, optional
        sigma; default max(std(u), rms(f) * l) of the training data.
    temperature_amplitudes : (s_0, s_1, s_2)
        Prior scales of U, S and C relative to sigma.
    rbf_amplitude, rbf_length : float
        s_r and l_t of the optional smooth remainder in t (default off).
    force_noise, energy_noise : float, optional
        Label noise, eV/angstrom and eV; default: estimated on a held-out
        fraction of the data (root-mean-square validation residual).
    jitter : float
        Added to the diagonal (relative to sigma^2) for the Cholesky solve.
    """

    def __init__(self, site_mask: np.ndarray, *, length_scale: float | Sequence[float] = 0.3,
                 amplitude: float | None = None,
                 temperature_amplitudes: Sequence[float] = (1.0, 1.0, 1.0),
                 rbf_amplitude: float = 0.0, rbf_length: float = 0.5,
                 force_noise: float | None = None, energy_noise: float | None = None,
                 jitter: float = 1e-8, temperature_ref: float = 300.0) -> None:
        super().__init__(site_mask, temperature_ref)
        scales = np.atleast_1d(np.asarray(length_scale, dtype=np.float64))
        if scales.ndim != 1 or scales.size == 0 or (scales <= 0).any():
            raise ValueError(f"length_scale: expected positive value(s) in angstrom, "
                             f"got {length_scale!r}")
        s = np.asarray(temperature_amplitudes, dtype=np.float64)
        if s.shape != (3,) or (s < 0).any():
            raise ValueError(f"temperature_amplitudes: expected 3 values >= 0, got "
                             f"{temperature_amplitudes!r}")
        for name, value in (("amplitude", amplitude), ("force_noise", force_noise),
                            ("energy_noise", energy_noise)):
            if value is not None and not value > 0:
                raise ValueError(f"{name}: must be > 0, got {value!r}")
        if rbf_amplitude < 0 or rbf_length <= 0:
            raise ValueError("rbf_amplitude must be >= 0 and rbf_length > 0")
        self.length_scales = scales
        self.length_scale = float(scales[0])
        self.amplitude_option = amplitude
        self.amplitude = float(amplitude or 1.0)
        self.register_buffer("t_scales", torch.as_tensor(s**2))
        self.rbf_amplitude, self.rbf_length = float(rbf_amplitude), float(rbf_length)
        self.noise_option = {"force": force_noise, "energy": energy_noise}
        self.noise = {"force": force_noise or 1.0, "energy": energy_noise or 1.0}
        self.jitter = float(jitter)
        self.use = {"force": True, "energy": True}
        self.register_buffer("train_z", torch.zeros((0, self.n_inputs), dtype=DTYPE))
        self.register_buffer("train_t", torch.zeros(0, dtype=DTYPE))
        self.register_buffer("alpha_force", torch.zeros((0, self.n_inputs), dtype=DTYPE))
        self.register_buffer("alpha_energy", torch.zeros(0, dtype=DTYPE))
        #: prior mean: centre mu (angstrom) and curvature kT_ref / var (eV/angstrom^2)
        self.register_buffer("prior_center", torch.zeros(self.n_inputs, dtype=DTYPE))
        self.register_buffer("prior_curvature", torch.zeros(self.n_inputs, dtype=DTYPE))
        self.fitted = False
        #: points per block of predictions
        self.chunk = 1024
        self.selection: dict[str, Any] = {}

    # ------------------------------------------------------------ kernels
    def _kx(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """r = (z1 - z2) / l (n1, n2, d) and k_x (n1, n2)."""
        r = (z1[:, None, :] - z2[None, :, :]) / self.length_scale
        return r, torch.exp(-0.5 * (r**2).sum(-1))

    def _kt(self, t1: torch.Tensor, t2: torch.Tensor, op1: str, op2: str) -> torch.Tensor:
        """t-part of the covariance, (n1, n2); op = "v" (value) or "u" (1 - t d/dt)."""
        phi1, psi1 = _phi(t1)
        phi2, psi2 = _phi(t2)
        a = psi1 if op1 == "u" else phi1
        b = psi2 if op2 == "u" else phi2
        out = (a * self.t_scales) @ b.T
        if self.rbf_amplitude > 0:
            lt2 = self.rbf_length**2
            d = t1[:, None] - t2[None, :]
            g = torch.exp(-0.5 * d**2 / lt2)
            dt1 = -d / lt2 * g        # d/dt1
            dt2 = d / lt2 * g         # d/dt2
            dt12 = (1.0 / lt2 - d**2 / lt2**2) * g
            term = g.clone()
            if op1 == "u":
                term = term - t1[:, None] * dt1
            if op2 == "u":
                term = term - t2[None, :] * dt2
            if op1 == "u" and op2 == "u":
                term = term + t1[:, None] * t2[None, :] * dt12
            out = out + self.rbf_amplitude**2 * term
        return out

    def _cov(self, z1: torch.Tensor, t1: torch.Tensor, z2: torch.Tensor, t2: torch.Tensor,
             op1: str, op2: str) -> torch.Tensor:
        """Covariance between observations ``op1`` at (z1, t1) and ``op2`` at
        (z2, t2); ops "v" (A), "f" (forces, d rows per point, point-major),
        "u" (energy). Returns (n1 * d1, n2 * d2)."""
        return self._cov_from(*self._kx(z1, z2), t1, t2, op1, op2)

    def _cov_from(self, r: torch.Tensor, kx: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor,
                  op1: str, op2: str) -> torch.Tensor:
        """:meth:`_cov` from precomputed ``r, kx = self._kx(z1, z2)``."""
        kt = self._kt(t1, t2, "u" if op1 == "u" else "v", "u" if op2 == "u" else "v")
        base = self.amplitude**2 * kx * kt
        ell = self.length_scale
        n1, n2, d = r.shape
        if op1 != "f" and op2 != "f":
            return base
        if op1 == "f" and op2 != "f":      # -d/dz1 k = (r / l) k / l
            return (r / ell * base[..., None]).permute(0, 2, 1).reshape(n1 * d, n2)
        if op1 != "f" and op2 == "f":      # -d/dz2 k = -(r / l) k / l
            return (-r / ell * base[..., None]).reshape(n1, n2 * d)
        eye = torch.eye(d, dtype=r.dtype, device=r.device)
        hess = (eye[None, None] - r[..., :, None] * r[..., None, :]) / ell**2
        return (hess * base[..., None, None]).permute(0, 2, 1, 3).reshape(n1 * d, n2 * d)

    # ------------------------------------------------------------ prior mean
    def _mean_value(self, z: torch.Tensor) -> torch.Tensor:
        """m(R) (n,) eV, also the prior mean of E (m does not depend on T)."""
        return self.energy_offset + 0.5 * (self.prior_curvature
                                           * (z - self.prior_center) ** 2).sum(1)

    def _mean_forces(self, z: torch.Tensor) -> torch.Tensor:
        """-grad m (n, d) eV/angstrom."""
        return -self.prior_curvature * (z - self.prior_center)

    # ------------------------------------------------------------ fitting
    def _inputs(self, positions: torch.Tensor, temperature: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        temperature = check_inputs(positions, temperature, self.n_sites)
        return self.active(positions.to(DTYPE)), temperature.to(DTYPE) / self.temperature_ref

    def _ops(self) -> list[str]:
        return [op for op, key in (("f", "force"), ("u", "energy")) if self.use[key]]

    def _solve(self, z: torch.Tensor, t: torch.Tensor, forces: torch.Tensor,
               energy: torch.Tensor) -> None:
        ops = self._ops()
        blocks = [[self._cov(z, t, z, t, a, b) for b in ops] for a in ops]
        k = torch.cat([torch.cat(row, 1) for row in blocks], 0)
        noise = []
        targets = []
        if self.use["force"]:
            noise.append(torch.full((forces.numel(),), self.noise["force"] ** 2, dtype=DTYPE))
            targets.append((forces - self._mean_forces(z)).reshape(-1))
        if self.use["energy"]:
            noise.append(torch.full((energy.numel(),), self.noise["energy"] ** 2, dtype=DTYPE))
            targets.append(energy - self._mean_value(z))
        k = k + torch.diag(torch.cat(noise) + self.jitter * self.amplitude**2)
        chol = torch.linalg.cholesky(k)
        alpha = torch.cholesky_solve(torch.cat(targets)[:, None], chol)[:, 0]
        n, d = z.shape
        self.train_z, self.train_t = z.clone(), t.clone()
        if self.use["force"]:
            self.alpha_force = alpha[:n * d].reshape(n, d).clone()
            alpha = alpha[n * d:]
        else:
            self.alpha_force = torch.zeros((n, d), dtype=DTYPE)
        self.alpha_energy = alpha.clone() if self.use["energy"] else torch.zeros(n, dtype=DTYPE)
        self.fitted = True

    @torch.no_grad()
    def fit(self, dataset: xr.Dataset, *, force_weight: float = 1.0, energy_weight: float = 1.0,
            validation_fraction: float = 0.2, seed: int = 0) -> KernelFreeEnergy:
        """Solve for the posterior mean on ``dataset`` (a CG dataset).

        Parameters
        ----------
        force_weight, energy_weight : float >= 0
            w_F, w_U; 0 leaves that observation out (force matching only:
            ``energy_weight=0``); otherwise the noise variance is divided by w.
        validation_fraction : float in [0, 0.5]
            Held-out frames for estimating the label noise (when not given)
            and choosing the length scale (when several are given); the
            final solve uses every frame.
        seed : seed of the held-out split

        Returns
        -------
        self, with :attr:`selection` recording the choices and validation errors.
        """
        validate_cg_dataset(dataset, where="training dataset")
        if force_weight < 0 or energy_weight < 0 or force_weight + energy_weight == 0:
            raise ValueError(f"force_weight and energy_weight must be >= 0 and not both 0, "
                             f"got {force_weight!r}, {energy_weight!r}")
        if not 0 <= validation_fraction <= 0.5:
            raise ValueError(f"validation_fraction: expected [0, 0.5], got {validation_fraction}")
        self.fit_scaling(dataset)
        self.use = {"force": force_weight > 0, "energy": energy_weight > 0}
        weights = {"force": force_weight, "energy": energy_weight}
        data = dataset_tensors(dataset)
        z, t = self._inputs(data["coordinates"], data["temperature"])
        forces = self.active(data["forces"])
        energy = data["energy"]
        var = z.var(dim=0) if len(z) > 1 else torch.ones(z.shape[1], dtype=DTYPE)
        self.prior_center = z.mean(dim=0)
        self.prior_curvature = torch.where(var > 1e-12, KB * self.temperature_ref / var,
                                           torch.zeros_like(var))
        f_rms = float(forces.pow(2).mean().sqrt())
        u_std = float(energy.std()) if energy.numel() > 1 else 1.0
        n = len(energy)
        need_noise = any(self.noise_option[k] is None for k in self.noise)
        candidates = list(self.length_scales)
        n_val = int(round(validation_fraction * n))
        scores: dict[float, float] = {}
        noise_est: dict[float, dict[str, float]] = {}
        if n_val >= 2 and (need_noise or len(candidates) > 1):
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
            val, tr = perm[:n_val], perm[n_val:]
            for ell in candidates:
                self._set_hyper(ell, f_rms, u_std, weights, {"force": 0.5 * f_rms,
                                                             "energy": 0.5 * u_std})
                self._solve(z[tr], t[tr], forces[tr], energy[tr])
                pf, pu = self._predict_zt(z[val], t[val], ("f", "u"))
                ef = float((pf - forces[val]).pow(2).mean())
                eu = float((pu - energy[val]).pow(2).mean())
                noise_est[ell] = {"force": ef**0.5, "energy": eu**0.5}
                score = 0.0
                if self.use["force"]:
                    score += ef / f_rms**2
                if self.use["energy"]:
                    score += eu / u_std**2
                scores[ell] = score
            best = min(scores, key=scores.get)
        else:
            best = candidates[0]
            noise_est[best] = {"force": 0.5 * f_rms, "energy": 0.5 * u_std}
        self._set_hyper(best, f_rms, u_std, weights, noise_est[best])
        self._solve(z, t, forces, energy)
        self.selection = {"length_scale": best, "validation_scores": scores,
                          "force_noise": self.noise["force"],
                          "energy_noise": self.noise["energy"], "amplitude": self.amplitude,
                          "n_observations": int(n * (self.n_inputs * self.use["force"]
                                                     + self.use["energy"]))}
        return self

    def _set_hyper(self, ell: float, f_rms: float, u_std: float, weights: dict[str, float],
                   noise_guess: dict[str, float]) -> None:
        self.length_scale = float(ell)
        self.amplitude = float(self.amplitude_option or max(u_std, f_rms * ell, 1e-6))
        for key in ("force", "energy"):
            base = self.noise_option[key] or max(noise_guess[key], 1e-8)
            w = weights[key]
            self.noise[key] = base / np.sqrt(w) if w > 0 else base

    # ------------------------------------------------------------ prediction
    def _predict_zt(self, z: torch.Tensor, t: torch.Tensor, ops: Sequence[str]
                    ) -> list[torch.Tensor]:
        """Predictions of the observation types ``ops`` at (z, t), in chunks
        of :attr:`chunk` points (memory ~ chunk x n_train)."""
        if not self.fitted:
            raise RuntimeError("KernelFreeEnergy: call fit() first")
        parts: list[list[torch.Tensor]] = [[] for _ in ops]
        for start in range(0, max(len(z), 1), self.chunk):
            zc, tc = z[start:start + self.chunk], t[start:start + self.chunk]
            n, d = zc.shape
            r, kx = self._kx(zc, self.train_z)
            for i, op in enumerate(ops):
                val = torch.zeros(n * (d if op == "f" else 1), dtype=DTYPE)
                if self.use["force"]:
                    val = val + self._cov_from(r, kx, tc, self.train_t, op, "f") \
                        @ self.alpha_force.reshape(-1)
                if self.use["energy"]:
                    val = val + self._cov_from(r, kx, tc, self.train_t, op, "u") \
                        @ self.alpha_energy
                parts[i].append(val.reshape(n, d) + self._mean_forces(zc) if op == "f"
                                else val + self._mean_value(zc))
        return [torch.cat(p, 0) for p in parts]

    def forward(self, positions: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        """A(R, T), (n,) eV; differentiable in positions and temperature."""
        z, t = self._inputs(positions, temperature)
        return self._predict_zt(z, t, ("v",))[0]

    @torch.no_grad()
    def predict(self, positions: torch.Tensor | np.ndarray, temperature: Any
                ) -> dict[str, np.ndarray]:
        """Closed-form predictions (derivative kernels, no autograd).

        positions (n, n_sites, 3) angstrom, temperature (n,) K or scalar ->
        ``free_energy`` (n,) eV, ``forces`` (n, n_sites, 3) eV/angstrom
        (zero on inactive coordinates), ``energy`` (n,) eV = d(beta A)/d beta.
        """
        pos = torch.as_tensor(positions, dtype=DTYPE)
        z, t = self._inputs(pos, torch.as_tensor(temperature, dtype=DTYPE))
        a, f, u = self._predict_zt(z, t, ("v", "f", "u"))
        forces = torch.zeros(pos.shape[0], self.n_sites * 3, dtype=DTYPE)
        forces[:, self.active_index] = f
        return {"free_energy": a.numpy(), "forces": forces.reshape(pos.shape).numpy(),
                "energy": u.numpy()}

    def energy_and_forces(self, positions: np.ndarray, temperature_K: float
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Batched A and -grad_R A at one temperature (the CG-MD fast path):
        positions (n, n_sites, 3) angstrom -> (n,) eV, (n, n_sites, 3) eV/angstrom."""
        with torch.no_grad():
            pos = torch.as_tensor(np.asarray(positions, dtype=np.float64))
            z, t = self._inputs(pos, torch.as_tensor(float(temperature_K), dtype=DTYPE))
            a, f = self._predict_zt(z, t, ("v", "f"))
        forces = torch.zeros(pos.shape[0], self.n_sites * 3, dtype=DTYPE)
        forces[:, self.active_index] = f
        return a.numpy(), forces.reshape(pos.shape).numpy()


__all__ = ["KernelFreeEnergy"]
