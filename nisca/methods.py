"""The registry of unmixing methods: name -> where its config and runner live.

Every method module exposes `CONFIG` (a dataclass derived from `nisca.config.BaseConfig`) and
`run(scene, config, context) -> MethodOutput`. Modules are imported only when a method is used, so
`nisca --help` and the classic baselines do not pay for torch or Lightning.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from nisca.errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    name: str
    module: str  # exposes CONFIG and run()
    trained: bool  # True: reports once per validation epoch; False: reports once at the end
    summary: str

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("nisca", "nisca.models.nisca", True, "variational post-nonlinear simplex component analysis"),
        MethodSpec("vasca", "nisca.models.vasca", True, "NISCA with a linear decoder (f = identity)"),
        MethodSpec("cnae", "nisca.models.cnae", True, "per-channel autoencoder with a sum-to-one constraint, then MVES"),
        MethodSpec("mves", "nisca.baselines.mves", False, "minimum-volume enclosing simplex (alternating LPs)"),
        MethodSpec("vca", "nisca.baselines.vca", False, "vertex component analysis + fully constrained least squares"),
        MethodSpec("nmf", "nisca.baselines.nmf", False, "non-negative matrix factorisation with sum-to-one abundances"),
        MethodSpec("ica", "nisca.baselines.ica", False, "FastICA, sources mapped to the simplex"),
        MethodSpec("pca", "nisca.baselines.pca", False, "PCA to K-1 dimensions, mapped to the simplex (a floor)"),
    )
}


def get_method(name: str) -> MethodSpec:
    """The spec of a method, or a ConfigError listing the known ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None


def overrides_by_method(methods: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Split command-line config overrides (e.g. `--set noise=learn`) among `methods`: each method gets
    the keys its config has. A key that none of them has is a ConfigError, never silently dropped."""
    fields = {name: {f.name for f in dataclasses.fields(get_method(name).load().CONFIG)} for name in methods}
    unknown = sorted(key for key in overrides if not any(key in names for names in fields.values()))
    if unknown:
        known = sorted(set().union(*fields.values()))
        raise ConfigError(f"config key(s) {', '.join(map(repr, unknown))} belong to none of the methods "
                          f"{', '.join(methods)}; their keys are: {', '.join(known)}")
    return {name: {key: value for key, value in overrides.items() if key in fields[name]} for name in methods}
