"""Project exceptions: one readable message naming the file or setting and the problem.

The CLI prints a `NiscaError` without a traceback and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class NiscaError(Exception):
    """Base class for every problem caused by user input (data, config, study spec)."""


class DataError(NiscaError):
    """A data file or array is missing, corrupt, or has the wrong shape or values."""


class ConfigError(NiscaError):
    """A configuration or study specification is invalid (unknown key, bad value)."""


class TrainingDivergedError(NiscaError):
    """Training produced a NaN or Inf loss; the message names the epoch."""
