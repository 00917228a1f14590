"""A study specification: scenes, methods, search spaces, metric, searcher, scheduler, resources.

A spec is plain data (a Python `StudySpec`, or a YAML/JSON mapping with the same keys) so a study is
reproducible from its folder. Search spaces are per method: a mapping of hyperparameter name to a Ray
`tune.*` domain (or a constant), or an Optuna define-by-run function `space(trial) -> dict | None`
whose suggestion names are the method's config fields. In YAML a domain is written as a one-key
mapping: `{loguniform: [1e-4, 1e-2]}`, `{uniform: [a, b]}`, `{randint: [lo, hi]}`,
`{lograndint: [lo, hi]}`, `{quniform: [a, b, q]}`, `{choice: [...]}`.

Scenes are named; each is one of
    {synthetic: {channels, latent_dim, samples, snr_db, nonlinearity, seed, ...}}  (nisca.data.synthetic)
    {file: PATH, truth_version: V, mask: PATH}                                     (nisca.data.io)
    {catalog: NAME, truth_version: V}                                              (nisca.data.catalog cache)
    {semireal_urban: {...}}                                                        (nisca.data.semireal)
    {dce_phantom: {mixing, snr_db, seed, ..., domain: signal|concentration}}      (nisca.data.dce_phantom)
plus an optional `max_pixels: P` (a seeded random subset of pixels, used by smoke runs).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nisca.errors import ConfigError, DataError

SEARCHERS = ("optuna", "random", "grid")
SCHEDULERS = ("asha", "none")
SCENE_KINDS = ("synthetic", "file", "catalog", "semireal_urban", "dce_phantom")
YAML_DOMAINS = ("uniform", "loguniform", "quniform", "randint", "lograndint", "choice")

# What trials report (nisca/tune/trainable.py). Trained methods report every epoch; classic ones once.
EPOCH_METRICS = ("val_loss", "train_loss")
BLIND_FINAL_METRICS = ("reconstruction_rmse",)  # computed from Y alone: comparable across every method
TRUTH_METRICS = ("abundance_mse", "abundance_rmse", "sad_deg", "sad_purest_deg", "subspace_distance",
                 "r2_nonlinearity", "amari_distance")
PHASED_FIELDS = ("linear_first", "refine_epochs", "restarts")  # switched on: one trial trains several times


def trains_in_phases(params: Mapping[str, Any]) -> bool:
    """Whether a method config trains more than once in one fit: `linear_first` (a linear phase, then f
    freed), `refine_epochs` > 0 (an exact-likelihood refinement after the bound) or `restarts` > 1.
    Its epochs are not one run, so such a trial reports once, at the end (like a classic method):
    ASHA has no epoch curve to judge, and a checkpoint of one phase cannot resume the others."""
    return (bool(params.get("linear_first")) or int(params.get("refine_epochs") or 0) > 0
            or int(params.get("restarts") or 1) > 1)


@dataclass
class StudySpec:
    """Everything a study needs except where it runs (address) and where results go (storage)."""

    name: str
    scenes: Mapping[str, Mapping[str, Any]]
    methods: Mapping[str, Mapping[str, Any] | Callable[..., Any]]
    metric: str = "val_loss"
    mode: str = "min"
    num_samples: int = 8  # optuna: trials in all; random/grid: samples per grid point
    searcher: str = "optuna"
    scheduler: str = "asha"
    max_epochs: int = 30  # epoch budget of trained methods (ASHA's max_t)
    grace_period: int = 2
    reduction_factor: int = 3
    seeds: Sequence[int] = (0,)
    latent_dims: Sequence[int] | None = None  # None: K from each scene's truth (or the method space)
    max_concurrent_trials: int = 2
    resources: Mapping[str, float] = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    storage_path: str | None = None
    max_failures: int = 2
    keep_checkpoints: int = 2
    optimize_truth: bool = False  # allow a ground-truth metric as the objective (explicitly)
    searcher_seed: int = 0
    wandb: bool = False
    wandb_project: str = "nisca"
    smoke: Mapping[str, Any] = field(default_factory=dict)  # overrides applied by --smoke
    description: str = ""

    def replace(self, **changes: Any) -> StudySpec:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------------- loading
def spec_from_mapping(data: Mapping[str, Any], *, source: str = "study spec") -> StudySpec:
    """A StudySpec from a YAML/JSON mapping; domains written as `{loguniform: [a, b]}` become tune domains."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a study spec must be a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(StudySpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(known))}")
    missing = [key for key in ("name", "scenes", "methods") if key not in data]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
    values = dict(data)
    methods = values["methods"]
    if isinstance(methods, (list, tuple)):
        methods = {name: {} for name in methods}
    if not isinstance(methods, Mapping):
        raise ConfigError(f"{source}: 'methods' must map method names to search spaces")
    values["methods"] = {m: _domains_from_yaml(space or {}, f"{source}: methods.{m}") for m, space in methods.items()}
    return StudySpec(**values)


def load_spec_file(path: str | Path) -> StudySpec:
    """Read a YAML or JSON study spec."""
    from nisca.config import load_config_file

    return spec_from_mapping(load_config_file(path), source=str(path))


def _domains_from_yaml(space: Any, where: str) -> dict[str, Any]:
    from ray import tune

    if callable(space):
        return space
    if not isinstance(space, Mapping):
        raise ConfigError(f"{where}: a search space must be a mapping of hyperparameter -> domain")
    out: dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in YAML_DOMAINS:
            kind, args = next(iter(value.items()))
            try:
                out[name] = getattr(tune, kind)(args) if kind == "choice" else getattr(tune, kind)(*args)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"{where}.{name}: bad {kind} domain {args!r} ({error})") from None
        else:
            out[name] = value
    return out


# ----------------------------------------------------------------------------------------- describing
def describe_domain(value: Any) -> Any:
    """A JSON-ready description of a domain or constant (the inverse of the YAML form, where it exists)."""
    from ray.tune.search.sample import Categorical, Domain, Float, Integer

    if isinstance(value, Float) or isinstance(value, Integer):
        sampler = type(value.get_sampler()).__name__.lower()
        kind = ("log" if "log" in sampler else "") + ("uniform" if isinstance(value, Float) else "randint")
        q = getattr(value.get_sampler(), "q", None)
        return {("q" + kind) if q else kind: [value.lower, value.upper] + ([q] if q else [])}
    if isinstance(value, Categorical):
        return {"choice": [describe_domain(v) for v in value.categories]}
    if isinstance(value, Domain):
        return {"domain": repr(value)}
    if callable(value):
        return {"define_by_run": f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"}
    if isinstance(value, dict) and "grid_search" in value:
        return value
    return json.loads(json.dumps(value, default=repr))


def describe_spec(spec: StudySpec) -> dict[str, Any]:
    """The spec as JSON-ready data (written to the study folder; compared on resume)."""
    data = dataclasses.asdict(dataclasses.replace(spec, methods={}))
    data["methods"] = {
        name: describe_domain(space) if callable(space) else {k: describe_domain(v) for k, v in space.items()}
        for name, space in spec.methods.items()
    }
    source = {name: _source_of(space) for name, space in spec.methods.items() if callable(space)}
    if source:
        data["define_by_run_source"] = source
    return json.loads(json.dumps(data, default=repr))


def spec_fingerprint(spec: StudySpec) -> str:
    """A hash of what decides the trials (not where they run): a changed spec must not resume silently."""
    data = describe_spec(spec)
    for key in ("storage_path", "max_concurrent_trials", "wandb", "wandb_project", "smoke", "description",
                "max_failures", "resources"):
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _source_of(function: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return repr(function)


# ----------------------------------------------------------------------------------------- smoke
def smoke_spec(spec: StudySpec) -> StudySpec:
    """A tiny version of the study for tests: few samples, few epochs, small scenes, one seed."""
    overrides: dict[str, Any] = {
        "num_samples": min(spec.num_samples, 2),
        "max_epochs": min(spec.max_epochs, 2),
        "grace_period": 1,
        "seeds": tuple(spec.seeds)[:1],
    }
    scenes = {}
    for name, scene in spec.scenes.items():
        scene = dict(scene)
        if "synthetic" in scene:
            scene["synthetic"] = {**scene["synthetic"], "samples": min(int(scene["synthetic"].get("samples", 300)), 300)}
        else:
            scene.setdefault("max_pixels", 400)
        scenes[name] = scene
    overrides["scenes"] = scenes
    overrides.update(spec.smoke)
    return spec.replace(**overrides, name=f"{spec.name}-smoke")


# ----------------------------------------------------------------------------------------- scenes
def build_scene(name: str, description: Mapping[str, Any]):
    """The Scene a scene description names (missing or bad data: one DataError naming it)."""
    if not isinstance(description, Mapping):
        raise ConfigError(f"scene {name!r}: must be a mapping with one of {', '.join(SCENE_KINDS)}")
    kinds = [k for k in SCENE_KINDS if k in description]
    extra = sorted(set(description) - set(SCENE_KINDS) - {"truth_version", "mask", "max_pixels", "label"})
    if len(kinds) != 1 or extra:
        raise ConfigError(
            f"scene {name!r}: give exactly one of {', '.join(SCENE_KINDS)} "
            f"(optional: truth_version, mask, max_pixels, label); got {', '.join(sorted(description))}"
        )
    kind = kinds[0]
    value = description[kind]
    if kind == "synthetic":
        from nisca.data.synthetic import simulate_pnl

        if not isinstance(value, Mapping):
            raise ConfigError(f"scene {name!r}: 'synthetic' takes the arguments of simulate_pnl as a mapping")
        try:
            scene = simulate_pnl(**value)
        except TypeError as error:
            raise ConfigError(f"scene {name!r}: bad synthetic generator arguments ({error})") from None
    elif kind == "file":
        from nisca.data.io import load_scene

        path = Path(str(value)).expanduser()
        if not path.exists():
            raise DataError(f"scene {name!r}: data file {path} does not exist")
        scene = load_scene(path, mask=description.get("mask"), truth_version=description.get("truth_version"))
    elif kind == "catalog":
        from nisca.data.catalog import load_catalog_scene

        scene = load_catalog_scene(str(value), truth_version=description.get("truth_version"))
    elif kind == "dce_phantom":
        scene = _dce_phantom(name, value)
    else:
        scene = _semireal_urban(name, value)
    if description.get("max_pixels"):
        scene = subsample_pixels(scene, int(description["max_pixels"]))
    from dataclasses import replace

    return replace(scene, name=name)


def _dce_phantom(name: str, arguments: Any):
    """The DCE-MRI phantom's scene; `domain: concentration` converts it with its known sequence and T10 map."""
    from nisca.data.dce_convert import signal_scene_to_concentration
    from nisca.data.dce_phantom import simulate_dce_phantom

    if not isinstance(arguments, Mapping):
        raise ConfigError(f"scene {name!r}: 'dce_phantom' takes the arguments of simulate_dce_phantom as a mapping")
    arguments = dict(arguments)
    domain = arguments.pop("domain", "signal")
    if domain not in ("signal", "concentration"):
        raise ConfigError(f"scene {name!r}: dce_phantom domain must be 'signal' or 'concentration', got {domain!r}")
    try:
        phantom = simulate_dce_phantom(**arguments)
    except TypeError as error:
        raise ConfigError(f"scene {name!r}: bad dce_phantom arguments ({error})") from None
    if domain == "signal":
        return phantom.scene
    sequence = phantom.parameters["sequence"]
    return signal_scene_to_concentration(
        phantom.scene, t10_s=phantom.t10_map, flip_angle_deg=sequence["FlipAngle_deg"],
        tr_s=sequence["RepetitionTimeExcitation_s"], r1=sequence["r1_per_s_per_mM"],
        n_baseline=phantom.parameters["acquisition"]["baseline_frames"], clip=True)


def _semireal_urban(name: str, arguments: Any):
    try:
        from nisca.data import semireal
    except ImportError:
        raise DataError(f"scene {name!r}: the semi-real Urban builder (nisca.data.semireal) is not available") from None
    builder = getattr(semireal, "semireal_urban", None) or getattr(semireal, "build_semireal_urban", None)
    if builder is None:
        raise DataError(f"scene {name!r}: nisca.data.semireal has no semireal_urban builder")
    return builder(**dict(arguments or {}))


def subsample_pixels(scene, max_pixels: int, seed: int = 0):
    """A seeded random subset of at most `max_pixels` pixels (geometry dropped; truth kept aligned)."""
    from dataclasses import replace

    if scene.n_pixels <= max_pixels:
        return scene
    keep = np.sort(np.random.default_rng(seed).choice(scene.n_pixels, size=max_pixels, replace=False))
    truth = scene.truth
    if truth is not None:
        truth = replace(
            truth,
            abundances=None if truth.abundances is None else truth.abundances[keep],
            linear_mixture=None if truth.linear_mixture is None else truth.linear_mixture[keep],
        )
    provenance = {**scene.provenance, "pixel_subset": {"max_pixels": max_pixels, "seed": seed}}
    return replace(scene, Y=scene.Y[keep], truth=truth, geometry=None, provenance=provenance)


def scene_checksum(scene) -> str:
    """SHA-256 of Y and the truth arrays: the data a study ran on, independent of its file."""
    digest = hashlib.sha256(np.ascontiguousarray(scene.Y).tobytes())
    if scene.truth is not None:
        for array in (scene.truth.abundances, scene.truth.endmembers):
            if array is not None:
                digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


def scene_record(scene, description: Mapping[str, Any]) -> dict[str, Any]:
    """What the study folder keeps about one scene: its description, shape, truth and checksum."""
    truth = scene.truth
    return {
        "description": json.loads(json.dumps(dict(description), default=str)),
        "pixels": scene.n_pixels,
        "channels": scene.n_channels,
        "truth_k": None if truth is None else truth.n_components,
        "truth_label": None if truth is None else truth.label,
        "sha256": scene_checksum(scene),
        "provenance": json.loads(json.dumps(scene.provenance, default=str)),
    }
