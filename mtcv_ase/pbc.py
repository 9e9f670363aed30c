"""Minimum images in a periodic cell, for torch modules (TorchScript-compatible)."""

from __future__ import annotations

import torch


def minimum_image(d: torch.Tensor, cell: torch.Tensor, inv_cell: torch.Tensor,
                  periodic: torch.Tensor) -> torch.Tensor:
    """Vectors d (..., 3) angstrom to their minimum image: fractional
    components ``d @ inv_cell`` wrapped to [-1/2, 1/2) where ``periodic``
    (3,) is 1, back through ``cell`` (3, 3; rows the cell vectors). Exact for
    orthorhombic cells and separations below half the narrowest width."""
    s = d @ inv_cell.to(d.dtype)
    s = s - periodic.to(d.dtype) * torch.round(s)
    return s @ cell.to(d.dtype)
