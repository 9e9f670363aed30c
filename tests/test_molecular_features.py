"""Molecular featurizers: aligned Cartesian frame, dihedral sin/cos, distances.

Invariance under rigid motions, the frame's construction, gradients,
TorchScript, feature counts, the dihedral sign convention (IUPAC, as
``ase.Atoms.get_dihedral``) and option validation.
"""

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms

from mtcv_core.export import to_torchscript
from mtcv_core.model import build_model, model_config
from mtcv_core.plugins import load_plugins
from mtcv_features.molecular import (
    AlignedCartesianFeaturizer,
    DihedralSinCosFeaturizer,
    DistanceFeaturizer,
)

N_ATOMS = 22
# alanine dipeptide (ACE-ALA-NME) numbering: CA 8, CB 10, C 14; phi, psi
CENTER, AXIS, PLANE = 8, 14, 10
PHI, PSI = [4, 6, 8, 14], [6, 8, 14, 16]

OPTIONS = {
    "aligned_cartesian": {"center": CENTER, "axis": AXIS, "plane": PLANE},
    "aligned_cartesian_drop": {"center": CENTER, "axis": AXIS, "plane": PLANE,
                               "drop_constant": True},
    "dihedral_sincos": {"dihedrals": [PHI, PSI, [0, 1, 4, 5]]},
    "distances": {},
    "distances_subset": {"atoms": [1, 4, 8, 10, 14, 18], "inverse": True},
}
N_FEATURES = {"aligned_cartesian": 63, "aligned_cartesian_drop": 60, "dihedral_sincos": 6,
              "distances": 231, "distances_subset": 15}


def make(key):
    name = key.removesuffix("_drop").removesuffix("_subset")
    return load_plugins().create("featurizer", name, **OPTIONS[key])


def molecules(n, seed=0):
    """(n, 22, 3) float64 random non-degenerate configurations, angstrom:
    atoms on a jittered 1.5 angstrom grid, so no two are closer than ~0.7."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) * 1.5
    out = []
    for _ in range(n):
        sites = grid[rng.permutation(len(grid))[:N_ATOMS]]
        out.append(sites + rng.uniform(-0.4, 0.4, sites.shape))
    return torch.as_tensor(np.array(out))


def random_rotation(rng):
    """A random proper rotation matrix (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return torch.as_tensor(q)


@pytest.mark.parametrize("key", list(OPTIONS))
def test_registered_n_features_and_rigid_invariance(key):
    feat = make(key)
    assert feat.n_features(N_ATOMS) == N_FEATURES[key]
    pos = molecules(4)
    out = feat(pos)
    assert out.shape == (4, N_FEATURES[key]) and out.dtype == torch.float64
    rng = np.random.default_rng(1)
    for _ in range(3):
        rot = random_rotation(rng)
        assert abs(float(torch.linalg.det(rot)) - 1) < 1e-12
        moved = pos @ rot.T + torch.as_tensor(rng.normal(scale=5.0, size=3))
        torch.testing.assert_close(feat(moved), out, rtol=0, atol=1e-10)


def test_aligned_frame_geometry():
    pos = molecules(5, seed=2)
    feat = AlignedCartesianFeaturizer(CENTER, AXIS, PLANE)
    out = feat(pos)
    # reinsert the centre atom's three zeros to get all 66 coordinates
    full = torch.cat([out[:, :3 * CENTER], torch.zeros(5, 3, dtype=out.dtype),
                      out[:, 3 * CENTER:]], dim=1).reshape(5, N_ATOMS, 3)
    torch.testing.assert_close(full, feat.aligned(pos))
    assert (full[:, CENTER] == 0).all()
    assert (full[:, AXIS, 0] > 0).all()
    torch.testing.assert_close(full[:, AXIS, 1:], torch.zeros(5, 2, dtype=out.dtype),
                               rtol=0, atol=1e-12)
    assert (full[:, PLANE, 1] > 0).all()
    assert full[:, PLANE, 2].abs().max() < 1e-12
    # a rigid, proper motion: distances and handedness are kept
    torch.testing.assert_close(torch.cdist(full, full), torch.cdist(pos, pos))
    frames = feat.frame(pos)
    torch.testing.assert_close(torch.linalg.det(frames), torch.ones(5, dtype=out.dtype))
    # drop_constant removes exactly axis y, z and plane z on top
    dropped = AlignedCartesianFeaturizer(CENTER, AXIS, PLANE, drop_constant=True)(pos)
    keep = torch.ones(3 * N_ATOMS, dtype=torch.bool)
    keep[3 * CENTER:3 * CENTER + 3] = False
    keep[[3 * AXIS + 1, 3 * AXIS + 2, 3 * PLANE + 2]] = False
    torch.testing.assert_close(dropped, full.reshape(5, -1)[:, keep])
    assert dropped.std(0).min() > 0.1  # no constant feature left
    # a mirror image flips z, which the frame does not hide
    mirrored = feat.aligned(pos * torch.tensor([1.0, 1.0, -1.0], dtype=pos.dtype))
    torch.testing.assert_close(mirrored[..., 2], -full[..., 2])


@pytest.mark.parametrize("key", list(OPTIONS))
def test_gradcheck(key):
    feat = make(key)
    pos = molecules(2, seed=3).requires_grad_(True)
    assert torch.autograd.gradcheck(feat, (pos,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("key", list(OPTIONS))
def test_torchscript_matches_eager(key, tmp_path):
    feat = make(key)
    scripted = torch.jit.script(feat)
    torch.jit.save(scripted, str(tmp_path / "f.ts"))
    loaded = torch.jit.load(str(tmp_path / "f.ts"))
    pos = molecules(3, seed=4)
    torch.testing.assert_close(scripted(pos), feat(pos), rtol=0, atol=0)
    torch.testing.assert_close(loaded(pos), feat(pos), rtol=0, atol=0)
    torch.testing.assert_close(loaded(pos.float()), feat(pos).float(), rtol=1e-5, atol=1e-5)
    # gradients w.r.t. positions through the scripted module too
    pos.requires_grad_(True)
    (g_s,) = torch.autograd.grad(loaded(pos).sum(), pos)
    (g_e,) = torch.autograd.grad(feat(pos).sum(), pos)
    torch.testing.assert_close(g_s, g_e)


@pytest.mark.parametrize("key", ["aligned_cartesian_drop", "dihedral_sincos", "distances_subset"])
def test_model_build_and_export_scripts(key):
    """The model rebuilds from its JSON config and exports with torch.jit.script
    (no fallback to tracing)."""
    name = key.removesuffix("_drop").removesuffix("_subset")
    conf = model_config(featurizer=name, featurizer_options=OPTIONS[key], n_atoms=N_ATOMS,
                        n_features=N_FEATURES[key], latent_dim=1, hidden=[4], n_classes=2,
                        basins=["A", "B"], heads={}, dtype="float64")
    model = build_model(conf, load_plugins())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        module = to_torchscript(model)
    pos = molecules(2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(module(pos), model.cv(pos))


def _dihedral_reference(p):
    """Dihedral in degrees, numpy, from the atan2 formula (Wikipedia)."""
    b1, b2, b3 = p[1] - p[0], p[2] - p[1], p[3] - p[2]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    return np.degrees(np.arctan2(np.linalg.norm(b2) * np.dot(b1, n2), np.dot(n1, n2)))


def test_dihedral_matches_references_and_iupac_sign():
    dihedrals = [PHI, PSI, [0, 1, 4, 5], [21, 18, 16, 14], [3, 9, 2, 20]]
    feat = DihedralSinCosFeaturizer(dihedrals)
    pos = molecules(6, seed=6)
    out = feat(pos).numpy().reshape(6, len(dihedrals), 2)
    np.testing.assert_allclose((out ** 2).sum(-1), 1.0, atol=1e-12)
    for f, p in enumerate(pos.numpy()):
        atoms = Atoms("H" * N_ATOMS, positions=p)
        for k, quad in enumerate(dihedrals):
            ref = _dihedral_reference(p[quad])
            ase_deg = atoms.get_dihedral(*quad)
            assert 0 <= ase_deg < 360
            assert abs((ase_deg - ref + 180) % 360 - 180) < 1e-8
            np.testing.assert_allclose(out[f, k], [np.sin(np.radians(ase_deg)),
                                                   np.cos(np.radians(ase_deg))], atol=1e-12)
    # Newman projection along +z (front atom 1 at the origin): the rear bond
    # at +phi (counter-clockwise seen from +z, so clockwise seen along the
    # bond) is a positive IUPAC dihedral
    for phi in (30.0, 90.0, 150.0, -60.0, -120.0):
        c, s = np.cos(np.radians(phi)), np.sin(np.radians(phi))
        newman = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.5],
                                [c, s, 1.5]]], dtype=torch.float64)
        got = DihedralSinCosFeaturizer([[0, 1, 2, 3]])(newman)[0]
        np.testing.assert_allclose(got.numpy(), [s, c], atol=1e-12)


def test_distances_values():
    pos = molecules(2, seed=7)
    full = DistanceFeaturizer()(pos)
    iu = torch.triu_indices(N_ATOMS, N_ATOMS, 1)
    torch.testing.assert_close(full, torch.cdist(pos, pos)[:, iu[0], iu[1]])
    atoms = [14, 1, 8]  # order of the list, not sorted: pairs (14,1), (14,8), (1,8)
    sub = DistanceFeaturizer(atoms, inverse=True)(pos)
    d = torch.cdist(pos, pos)
    torch.testing.assert_close(sub, 1 / torch.stack([d[:, 14, 1], d[:, 14, 8], d[:, 1, 8]], 1))


def test_degenerate_geometry_stays_finite():
    pos = torch.zeros(1, 4, 3, dtype=torch.float64)
    pos[0, :, 0] = torch.arange(4.0)  # all collinear; atoms 0 and 1 also coincide below
    for feat in (AlignedCartesianFeaturizer(0, 1, 2), DihedralSinCosFeaturizer([[0, 1, 2, 3]]),
                 DistanceFeaturizer(inverse=True)):
        for p in (pos, torch.zeros_like(pos)):
            p = p.clone().requires_grad_(True)
            out = feat(p)
            (grad,) = torch.autograd.grad(out.sum(), p)
            assert torch.isfinite(out).all() and torch.isfinite(grad).all(), feat


@pytest.mark.parametrize("factory, options, n_atoms, match", [
    (AlignedCartesianFeaturizer, {"center": 8, "axis": 8, "plane": 10}, None,
     r"center, axis and plane must be three different atoms.*'axis': 8"),
    (AlignedCartesianFeaturizer, {"center": 8, "axis": 14, "plane": 22}, 22,
     r"plane=22 .*out of range for 22 atoms"),
    (AlignedCartesianFeaturizer, {"center": 8, "axis": 14, "plane": -1}, None, r"plane.*-1"),
    (AlignedCartesianFeaturizer, {"center": 8.0, "axis": 14, "plane": 10}, None,
     r"center must be an integer atom index, got 8\.0"),
    (AlignedCartesianFeaturizer, {"center": 8, "axis": 14, "plane": 10, "drop_constant": 1},
     None, r"drop_constant must be true or false, got 1"),
    (DihedralSinCosFeaturizer, {"dihedrals": [[4, 6, 8]]}, None,
     r"dihedrals must have 4 atom indices, got \[4, 6, 8\]"),
    (DihedralSinCosFeaturizer, {"dihedrals": [4, 6, 8, 14]}, None, r"dihedrals.*got 4"),
    (DihedralSinCosFeaturizer, {"dihedrals": []}, None, r"dihedrals must be a non-empty list"),
    (DihedralSinCosFeaturizer, {"dihedrals": [[4, 6, 6, 14]]}, None,
     r"dihedrals entry \[4, 6, 6, 14\] repeats an atom"),
    (DihedralSinCosFeaturizer, {"dihedrals": [PHI, [6, 8, 14, 30]]}, 22,
     r"dihedrals=\[6, 8, 14, 30\] has atom index 30 out of range for 22 atoms"),
    (DistanceFeaturizer, {"atoms": [1, 2, 25]}, 22,
     r"atoms=\[1, 2, 25\] has atom index 25 out of range for 22 atoms"),
    (DistanceFeaturizer, {"atoms": [1, 2, 1]}, None, r"atoms=\[1, 2, 1\] repeats an atom"),
    (DistanceFeaturizer, {"atoms": [3]}, None, r"atoms must list at least two atoms"),
    (DistanceFeaturizer, {"atoms": "0 1"}, None, r"atoms must be a list of atom indices"),
    (DistanceFeaturizer, {"inverse": "yes"}, None, r"inverse must be true or false"),
])
def test_bad_options_raise(factory, options, n_atoms, match):
    with pytest.raises(ValueError, match=match):
        feat = factory(**options)
        if n_atoms is not None:
            feat.n_features(n_atoms)
    if n_atoms is not None:  # out-of-range indices are fine until n_features is asked
        factory(**options)
