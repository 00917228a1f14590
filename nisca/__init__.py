"""NISCA: post-nonlinear simplex component analysis, its baselines, and studies on Ray Tune."""

from __future__ import annotations

__version__ = "0.1.0"

# `nisca.fit` is the function (the module nisca/fit.py imports neither torch nor Ray at import time).
from nisca.fit import FitResult, fit  # noqa: E402

__all__ = ["FitResult", "fit", "__version__"]
