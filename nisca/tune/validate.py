"""Check a study spec before any trial starts: one ConfigError/DataError naming the problem.

Catches unknown methods, hyperparameters that are not fields of the method's config dataclass,
values its config refuses, empty search spaces, a metric the trainable never reports (or a
ground-truth metric used for selection without `optimize_truth`), scenes that cannot be built
(missing files, unknown catalog names), and K values a scene cannot support.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nisca.errors import ConfigError, NiscaError
from nisca.tune.spec import (
    BLIND_FINAL_METRICS,
    EPOCH_METRICS,
    PHASED_FIELDS,
    SCHEDULERS,
    SEARCHERS,
    TRUTH_METRICS,
    StudySpec,
    build_scene,
    trains_in_phases,
)

BUDGET_FIELDS = ("max_epochs", "epochs")
AXIS_FIELDS = ("seed",)  # set by the study's `seeds`, never searched per method


@dataclass
class CheckedStudy:
    """A validated spec with what the runner needs: built scenes and the metric Tune optimises."""

    spec: StudySpec
    scenes: dict[str, Any]
    tune_metric: str | None  # None when methods of both families share a grid study (no common metric)
    selection_metric: dict[str, str]  # method -> the metric its best trial is chosen by
    trained: dict[str, bool]
    budget_field: dict[str, str | None]


def check_study(spec: StudySpec) -> CheckedStudy:
    """Validate everything that can be checked on the driver, then build the scenes."""
    _check_settings(spec)
    from nisca.methods import get_method

    if not spec.methods:
        raise ConfigError(f"study {spec.name!r}: no methods given")
    modules = {name: get_method(name) for name in spec.methods}
    trained = {name: m.trained for name, m in modules.items()}
    configs = {name: m.load().CONFIG for name, m in modules.items()}
    budget_field = {name: _budget_field(configs[name]) for name in spec.methods}
    for name, space in spec.methods.items():
        _check_space(spec, name, space, configs[name])
    tune_metric, selection = _check_metric(spec, trained)
    if not spec.scenes:
        raise ConfigError(f"study {spec.name!r}: no scenes given")
    scenes = {name: build_scene(name, description) for name, description in spec.scenes.items()}
    _check_scenes(spec, scenes)
    return CheckedStudy(spec, scenes, tune_metric, selection, trained, budget_field)


def _check_settings(spec: StudySpec) -> None:
    where = f"study {spec.name!r}"
    if not isinstance(spec.name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", spec.name):
        raise ConfigError(f"study name {spec.name!r}: use letters, digits, '-', '_' and '.' only")
    if spec.searcher not in SEARCHERS:
        raise ConfigError(f"{where}: searcher {spec.searcher!r} is not one of {', '.join(SEARCHERS)}")
    if spec.scheduler not in SCHEDULERS:
        raise ConfigError(f"{where}: scheduler {spec.scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    if spec.mode not in ("min", "max"):
        raise ConfigError(f"{where}: mode must be 'min' or 'max', got {spec.mode!r}")
    for key in ("num_samples", "max_epochs", "grace_period", "max_concurrent_trials", "reduction_factor"):
        value = getattr(spec, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
    if not spec.seeds:
        raise ConfigError(f"{where}: seeds must list at least one seed")
    resources = dict(spec.resources)
    if float(resources.get("cpu", 1)) <= 0:
        raise ConfigError(f"{where}: resources.cpu must be > 0 (Ray refuses trials without a CPU)")
    if float(resources.get("gpu", 0)) < 0:
        raise ConfigError(f"{where}: resources.gpu must be >= 0")


def _budget_field(config_cls: type) -> str | None:
    names = {f.name for f in dataclasses.fields(config_cls)}
    return next((name for name in BUDGET_FIELDS if name in names), None)


def _space_names(spec: StudySpec, method: str, space: Any) -> tuple[dict[str, Any], set[str]]:
    """Sample one set of values from a method's space; also name the hyperparameters it searches."""
    from ray.tune.search.sample import Domain

    if callable(space):
        if spec.searcher != "optuna":
            raise ConfigError(
                f"study {spec.name!r}: method {method!r} has a define-by-run search space, which needs searcher 'optuna'"
            )
        import optuna

        from nisca.tune.search import method_params

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
        try:
            constants = method_params(trial, method, space)
        except NiscaError:
            raise
        except Exception as error:  # noqa: BLE001 - the user's function failed: say where
            raise ConfigError(f"study {spec.name!r}: the search space function of {method!r} failed: {error}") from None
        from nisca.tune.search import decode_value

        values = {key.split("/", 1)[1]: decode_value(value) for key, value in trial.params.items()}
        values.update(constants)
        return values, {key.split("/", 1)[1] for key in trial.params}
    if not isinstance(space, Mapping):
        raise ConfigError(f"study {spec.name!r}: the search space of {method!r} must be a mapping or a function")
    values = {name: (domain.sample() if isinstance(domain, Domain) else domain) for name, domain in space.items()}
    return values, {name for name, domain in space.items() if isinstance(domain, Domain)}


def _check_space(spec: StudySpec, method: str, space: Any, config_cls: type) -> None:
    from ray.tune.search.sample import Categorical

    from nisca.config import build_config

    where = f"study {spec.name!r}, method {method!r}"
    values, searches = _space_names(spec, method, space)
    fields = sorted(f.name for f in dataclasses.fields(config_cls))
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown hyperparameter(s) {', '.join(map(repr, unknown))}; "
            f"{config_cls.__name__} fields are: {', '.join(fields)}"
        )
    for name in AXIS_FIELDS:
        if name in values:
            raise ConfigError(f"{where}: {name!r} is set by the study's `seeds`, not searched per method")
    if "latent_dim" in values and spec.latent_dims is not None:
        raise ConfigError(f"{where}: latent_dim is both searched and set by the study's `latent_dims`")
    for name in PHASED_FIELDS:
        if spec.scheduler == "asha" and name in values and (name in searches or trains_in_phases({name: values[name]})):
            raise ConfigError(f"{where}: {name!r} trains more than once per fit, so such a trial reports once, at "
                              "the end, with no epoch curve for ASHA to judge; use scheduler 'none' (an interrupted "
                              "trial then restarts from its beginning)")
    if "refine_epochs" in searches and spec.metric.startswith("val_"):
        raise ConfigError(f"{where}: searching 'refine_epochs' with metric {spec.metric!r} compares the exact "
                          "held-out likelihood (refined) with a bound on it (not refined); fix it, or select on "
                          "another metric")
    objective = values.get("objective", getattr(config_cls, "objective", None))  # the config's default if unset
    bound_changes = "objective" in searches or ("mc_samples" in searches and objective == "iwae")
    if bound_changes and spec.metric.startswith("val_"):
        raise ConfigError(f"{where}: searching 'objective' (or 'mc_samples' under objective 'iwae') with metric "
                          f"{spec.metric!r} compares different bounds on the likelihood; fix them, or select on "
                          "another metric")
    grid_only = spec.searcher == "grid" or (spec.searcher == "random" and spec.num_samples == 1)
    if not searches and not grid_only:
        raise ConfigError(
            f"{where}: empty search space (no tune.* domain or Optuna suggestion) with searcher "
            f"{spec.searcher!r}; search at least one hyperparameter, or use searcher 'grid'"
        )
    candidates = [values]
    if not callable(space):
        for name, domain in space.items():
            if isinstance(domain, Categorical):
                candidates += [{**values, name: category} for category in domain.categories]
    for candidate in candidates:
        build_config(config_cls, {**candidate, "seed": 0}, method=method)


def _check_metric(spec: StudySpec, trained: Mapping[str, bool]) -> tuple[str | None, dict[str, str]]:
    where = f"study {spec.name!r}"
    every_report = {
        name: set(EPOCH_METRICS) if is_trained else set(BLIND_FINAL_METRICS) | set(TRUTH_METRICS)
        for name, is_trained in trained.items()
    }
    final = {name: reports | set(BLIND_FINAL_METRICS) | set(TRUTH_METRICS) for name, reports in every_report.items()}
    metric = spec.metric
    reportable = sorted(set().union(*final.values()))
    if metric not in reportable:
        raise ConfigError(f"{where}: metric {metric!r} is never reported by the trials; reported metrics: {', '.join(reportable)}")
    if metric in TRUTH_METRICS and not spec.optimize_truth:
        raise ConfigError(
            f"{where}: metric {metric!r} needs the ground truth; model selection never sees it unless the "
            f"study sets optimize_truth: true (truth metrics are reported either way)"
        )
    missing = sorted(name for name, reports in every_report.items() if metric not in reports)
    if metric in TRUTH_METRICS and any(trained.values()) and spec.scheduler == "asha":
        raise ConfigError(f"{where}: {metric!r} is reported only at the end of a trial; ASHA needs a per-epoch metric")
    needs_tune_metric = spec.searcher == "optuna" or spec.scheduler == "asha"
    if missing and needs_tune_metric:
        raise ConfigError(
            f"{where}: metric {metric!r} is never reported by {', '.join(missing)} (trained methods report "
            f"{', '.join(EPOCH_METRICS)} every epoch; classic methods report {', '.join(BLIND_FINAL_METRICS)} once), "
            f"but searcher {spec.searcher!r} / scheduler {spec.scheduler!r} need it from every trial: "
            f"put those methods in their own study or use searcher 'grid' with scheduler 'none'"
        )
    selection = {
        name: metric if name not in missing else BLIND_FINAL_METRICS[0]
        for name in trained
    }
    return (None if missing else metric), selection


def _check_scenes(spec: StudySpec, scenes: Mapping[str, Any]) -> None:
    from nisca.data.scene import check_latent_dim

    searched_k = any(not callable(space) and "latent_dim" in space for space in spec.methods.values())
    for name, scene in scenes.items():
        ks = list(spec.latent_dims or [])
        if not ks and not searched_k:
            if scene.truth is None or scene.truth.n_components is None:
                raise ConfigError(
                    f"study {spec.name!r}: scene {name!r} has no ground truth to take K from; set latent_dims"
                )
            ks = [scene.truth.n_components]
        for K in ks:
            check_latent_dim(int(K), scene.n_channels, name)
