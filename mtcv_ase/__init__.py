"""The ASE face of mtcv: Atoms <-> frames, torch-backed calculators, MD engines."""

from mtcv_core import __version__

__all__ = ["__version__"]
