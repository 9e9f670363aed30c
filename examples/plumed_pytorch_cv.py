"""Export a multitask CV for PLUMED's PYTORCH module and check the export.

``mtcv run`` writes ``cv.ts``: a TorchScript module ``positions (n, n_atoms,
3) angstrom -> xi (n, latent_dim)`` holding the featurizer, the
standardisation and the encoder (:mod:`mtcv_core.export`). It loads with
``torch.jit.load`` alone, without mtcv.

PLUMED's PYTORCH module (PLUMED >= 2.9 configured with ``--enable-libtorch
--enable-modules=pytorch``) calls a TorchScript model on a FLAT input: the
values of its ``ARG`` list as a float32 tensor of shape ``(1, n_args)``,
and exposes the outputs as components ``node-0``, ``node-1``, ...; it
differentiates them with respect to the inputs by autograd. So this script
writes, next to ``cv.ts``,

* ``cv_plumed.ts``: ``cv.ts`` behind a reshape, ``(n, 3 n_atoms) -> (n,
  n_atoms, 3) -> xi``; the input is every atom's x, y, z in angstrom;
* ``plumed.dat``: ``UNITS LENGTH=A ENERGY=eV`` (so positions arrive in
  angstrom and the restraint is in eV), one ``POSITION`` action per atom
  feeding its ``.x, .y, .z`` components to ``PYTORCH_MODEL``, a harmonic
  ``RESTRAINT`` on ``xi`` (``node-0``) and a ``PRINT`` to ``COLVAR``.

PLUMED is NOT installed here and ``plumed.dat`` is not executed; the script
checks in Python what PLUMED relies on: ``torch.jit.load("cv.ts")`` gives the
same xi as the eager (live) model on a few configurations, and
``cv_plumed.ts`` on float32 flat inputs one configuration at a time (as
PLUMED calls it) gives the same xi and the same gradient d xi / d R.

Usage::

    python examples/plumed_pytorch_cv.py [--small] [--out DIR] [--model runs/quick/model.pt]

Without ``--model`` an untrained CV of the 5D Muller-Brown system (two
pseudo-atoms; standardisation fitted on start configurations) is exported;
with it, the trained model of an ``mtcv run``. ``--small`` (4
configurations) is what the tests run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


class FlatInputCV(torch.nn.Module):
    """A CV module behind a reshape, for PLUMED: (n, 3 n_atoms) -> (n, latent_dim).

    The input is ``x0, y0, z0, x1, y1, z1, ...`` in angstrom, in atom order.
    """

    def __init__(self, cv: torch.nn.Module, n_atoms: int) -> None:
        super().__init__()
        self.cv = cv
        self.n_atoms = int(n_atoms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv(x.reshape(x.shape[0], self.n_atoms, 3))


def untrained_model(system_name: str = "muller_brown_5d", seed: int = 0):
    """An untrained MultitaskCV of ``system_name`` built through the plugin
    registry, its standardisation fitted on start configurations of every basin."""
    from mtcv_core.model import build_model, model_config
    from mtcv_core.plugins import load_plugins

    torch.manual_seed(seed)
    registry = load_plugins()
    system = registry.create("system", system_name)
    n_atoms = len(system.make_atoms())
    mask = system.dof_mask
    options = {} if mask is None else {"dof_mask": np.asarray(mask).tolist()}
    featurizer = registry.create("featurizer", "cartesian", **options)
    config = model_config(featurizer="cartesian", featurizer_options=options, n_atoms=n_atoms,
                          n_features=featurizer.n_features(n_atoms), latent_dim=1,
                          hidden=[16, 8], n_classes=len(system.basins), basins=system.basins,
                          heads={"classifier": {}})
    model = build_model(config, registry)
    rng = np.random.default_rng(seed)
    start = np.concatenate([system.start_positions(b, 32, rng=rng) for b in system.basins])
    with torch.no_grad():
        model.standardizer.fit(model.raw_features(torch.as_tensor(start)))
    return model.eval(), system, start


def plumed_input(n_atoms: int, model_file: str, center: float, kappa: float) -> str:
    """The text of ``plumed.dat`` for a CV with ``n_atoms`` atoms."""
    args = ",".join(f"p{i}.{c}" for i in range(n_atoms) for c in "xyz")
    lines = [
        "# PLUMED input for an mtcv CV through the PYTORCH module (PLUMED >= 2.9,",
        "# built with --enable-libtorch --enable-modules=pytorch). Written by",
        "# examples/plumed_pytorch_cv.py; not executed there (PLUMED is not installed).",
        "#",
        "# mtcv works in angstrom and eV: the model expects positions in angstrom.",
        "UNITS LENGTH=A ENERGY=eV",
        "#",
        "# The model's input is every atom's x, y, z in atom order (PLUMED's atom",
        "# numbers start at 1). For a molecule in a periodic box make it whole first,",
        "# e.g. WHOLEMOLECULES ENTITY0=1-N, and drop NOPBC.",
    ]
    lines += [f"p{i}: POSITION ATOM={i + 1} NOPBC" for i in range(n_atoms)]
    lines += [
        "#",
        f"# {model_file}: input (1, {3 * n_atoms}) float32 angstrom -> xi (1, latent_dim);",
        "# the components are xi.node-0, xi.node-1, ...",
        f"xi: PYTORCH_MODEL FILE={model_file} ARG={args}",
        "#",
        "# one umbrella window on xi (KAPPA in eV per xi unit^2; bias 0.5 KAPPA (xi - AT)^2)",
        f"restraint: RESTRAINT ARG=xi.node-0 AT={center:.6g} KAPPA={kappa:.6g}",
        "PRINT STRIDE=10 ARG=xi.node-0,restraint.bias FILE=COLVAR",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="4 test configurations (tests)")
    parser.add_argument("--out", type=Path, default=Path("plumed_pytorch_cv_out"),
                        help="folder for cv.ts, cv_plumed.ts and plumed.dat")
    parser.add_argument("--model", type=Path, default=None,
                        help="model.pt of an mtcv run (default: an untrained 5D MB CV)")
    parser.add_argument("--kappa", type=float, default=10.0, help="spring, eV / xi^2")
    args = parser.parse_args(argv)

    from mtcv_core.export import export_torchscript, load_model

    n_conf = 4 if args.small else 64
    rng = np.random.default_rng(1)
    if args.model is None:
        model, _, start = untrained_model()
        configs = start[rng.choice(len(start), n_conf, replace=False)]
    else:
        model = load_model(args.model).eval()
        data = args.model.parent / "data.nc"  # the run's frames, if they are there
        if data.is_file():
            from mtcv_core.io import read_frames

            xyz = read_frames(data)["coordinates"].values
            configs = xyz[rng.choice(len(xyz), min(n_conf, len(xyz)), replace=False)]
        else:
            configs = rng.normal(size=(n_conf, int(model.config["n_atoms"]), 3))
        n_conf = len(configs)
    n_atoms = int(model.config["n_atoms"])
    configs = configs + 0.05 * rng.standard_normal(configs.shape)

    args.out.mkdir(parents=True, exist_ok=True)
    cv_path = export_torchscript(model, args.out / "cv.ts")
    loaded = torch.jit.load(str(cv_path), map_location="cpu")

    # 1. cv.ts == eager model, batched, float64 positions
    pos = torch.as_tensor(configs, dtype=torch.float64)
    with torch.no_grad():
        eager = model.cv(pos.to(model.dtype)).double()
        exported = loaded(pos).double()
    d_ts = float((exported - eager).abs().max())
    assert exported.shape == eager.shape == (n_conf, model.latent_dim)
    assert d_ts < 1e-5 * (1.0 + float(eager.abs().max())), d_ts
    print(f"cv.ts: torch.jit.load gives the eager xi on {n_conf} configurations "
          f"(max |diff| {d_ts:.1e})")

    # 2. the PLUMED wrapper, as PLUMED calls it: one (1, 3 n_atoms) float32 row at a time
    plumed_path = args.out / "cv_plumed.ts"
    torch.jit.save(torch.jit.script(FlatInputCV(loaded, n_atoms)), str(plumed_path))
    flat_cv = torch.jit.load(str(plumed_path), map_location="cpu")
    d_xi = d_grad = 0.0
    for k in range(n_conf):
        x = pos[k].reshape(1, 3 * n_atoms).to(torch.float32).requires_grad_(True)
        xi = flat_cv(x)
        (grad,) = torch.autograd.grad(xi[0, 0], x)
        p = pos[k:k + 1].clone().to(model.dtype).requires_grad_(True)
        xi_ref = model.cv(p)
        (grad_ref,) = torch.autograd.grad(xi_ref[0, 0], p)
        d_xi = max(d_xi, float((xi.detach().double() - xi_ref.detach().double()).abs().max()))
        d_grad = max(d_grad, float((grad.double().reshape(n_atoms, 3)
                                    - grad_ref.double()[0]).abs().max()))
    scale = 1.0 + float(eager.abs().max())
    assert d_xi < 1e-4 * scale and d_grad < 1e-4 * scale, (d_xi, d_grad)
    print(f"cv_plumed.ts: flat float32 input gives the eager xi (max |diff| {d_xi:.1e}) "
          f"and d xi/d R (max |diff| {d_grad:.1e})")

    # 3. plumed.dat: a window at the mean xi of the configurations
    text = plumed_input(n_atoms, plumed_path.name, center=float(eager[:, 0].mean()),
                        kappa=args.kappa)
    (args.out / "plumed.dat").write_text(text)
    model_line = next(ln for ln in text.splitlines() if "PYTORCH_MODEL" in ln
                      and not ln.startswith("#"))
    n_args = model_line.split("ARG=")[1].split()[0].count(",") + 1
    assert n_args == 3 * n_atoms
    print(f"wrote {args.out / 'plumed.dat'} ({n_args} position arguments; not run: "
          "PLUMED is not installed here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
