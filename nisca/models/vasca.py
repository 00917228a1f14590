"""VASCA: NISCA with a linear decoder (f = identity); the same encoder, loss and training (MODEL.md 3)."""

from __future__ import annotations

import dataclasses

from nisca.data.scene import Scene
from nisca.fit import FitContext, MethodOutput
from nisca.models.nisca import run_variational
from nisca.models.training import VariationalConfig


@dataclasses.dataclass(frozen=True)
class VascaConfig(VariationalConfig):
    """The shared variational settings; VASCA has no nonlinearity to configure."""


CONFIG = VascaConfig


def run(scene: Scene, config: VascaConfig, context: FitContext) -> MethodOutput:
    """VASCA on `scene`: abundances, endmembers (the columns of A in data units) and the reconstruction."""
    return run_variational(scene, config, context)
