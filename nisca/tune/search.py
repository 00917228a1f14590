"""Search spaces, searchers and schedulers built from a StudySpec, with Ray's and Optuna's own classes.

A trial's config has the same layout whatever the searcher:

    {"method": "nisca", "scene": "snr20", "seed": 0, "latent_dim": 5 or None,
     "nisca": {"learning_rate": 0.003, ...}}   # the method's hyperparameters, under its own name

so that hyperparameters of different methods never share a column (`config/nisca/learning_rate`).
Optuna searches through one define-by-run function (method first, then that method's space: a
conditional space); random and grid search use Ray's BasicVariantGenerator with `grid_search` over
methods, scenes, seeds and K, and each method's domains drawn only for trials of that method.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nisca.errors import ConfigError
from nisca.tune.spec import StudySpec

AXES = ("method", "scene", "seed", "latent_dim")
JSON_PREFIX = "json:"


def axis_values(spec: StudySpec) -> dict[str, list[Any]]:
    """The values of the study's top-level axes."""
    return {
        "method": list(spec.methods),
        "scene": list(spec.scenes),
        "seed": [int(s) for s in spec.seeds],
        "latent_dim": [None] if spec.latent_dims is None else [int(k) for k in spec.latent_dims],
    }


class _PrefixedTrial:
    """An Optuna trial seen through a method's namespace: suggest_x("lr") records "nisca/lr"."""

    def __init__(self, trial: Any, prefix: str) -> None:
        self._trial = trial
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._trial, name)
        if name.startswith("suggest_"):
            return lambda param, *args, **kwargs: attribute(f"{self._prefix}/{param}", *args, **kwargs)
        return attribute


def suggest_domain(trial: Any, name: str, domain: Any) -> Any:
    """Ask an Optuna trial for a value of a Ray domain (or return a constant as it is)."""
    import optuna.distributions as od
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.sample import Categorical, Domain

    if not isinstance(domain, Domain):
        return domain
    if isinstance(domain, Categorical):
        choices = list(domain.categories)
        if all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            return trial.suggest_categorical(name, choices)
        # Optuna's categories are scalars: lists (e.g. hidden sizes) travel as "json:[64, 64]" labels,
        # decoded by the trainable (decode_value).
        return trial.suggest_categorical(name, [JSON_PREFIX + json.dumps(c) for c in choices])
    distribution = OptunaSearch.convert_search_space({"x": domain})["x"]
    if isinstance(distribution, od.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    if isinstance(distribution, od.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log, step=distribution.step)
    raise ConfigError(f"{name}: cannot translate the domain {domain!r} into an Optuna distribution")


def decode_value(value: Any) -> Any:
    """The value a "json:..." category label stands for (other values unchanged)."""
    if isinstance(value, str) and value.startswith(JSON_PREFIX):
        return json.loads(value[len(JSON_PREFIX):])
    return value


def method_params(trial: Any, method: str, space: Mapping[str, Any] | Callable[..., Any]) -> dict[str, Any]:
    """One method's hyperparameters from an Optuna trial: a define-by-run function or a domain mapping."""
    view = _PrefixedTrial(trial, method)
    if callable(space):
        constants = space(view) or {}
        return dict(constants)
    constants = {}
    for name, domain in space.items():
        value = suggest_domain(view, name, domain)
        from ray.tune.search.sample import Domain

        if not isinstance(domain, Domain):
            constants[name] = value
    return constants


class StudyDefineByRun:
    """The study's Optuna define-by-run function (picklable, so the searcher state can be saved).

    Axes with one value are constants; axes with several are categorical suggestions. The
    method's suggestions are captured under "METHOD/NAME"; constants are returned.
    """

    def __init__(self, spec: StudySpec) -> None:
        self.axes = axis_values(spec)
        self.spaces = dict(spec.methods)

    def __call__(self, trial: Any) -> dict[str, Any]:
        constants: dict[str, Any] = {}
        chosen: dict[str, Any] = {}
        for axis, values in self.axes.items():
            if len(values) == 1:
                chosen[axis] = constants[axis] = values[0]
            else:
                chosen[axis] = trial.suggest_categorical(axis, values)
        method = chosen["method"]
        for name, value in method_params(trial, method, self.spaces[method]).items():
            constants[f"{method}/{name}"] = value
        return constants


class MethodSampler:
    """For random/grid search: draws a method's domains only when the trial runs that method."""

    def __init__(self, method: str, space: Mapping[str, Any], seed: int) -> None:
        self.method = method
        self.space = dict(space)
        self.rng = np.random.default_rng(seed)

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        from ray.tune.search.sample import Domain

        if config["method"] != self.method:
            return None
        return {
            name: domain.sample(random_state=self.rng) if isinstance(domain, Domain) else domain
            for name, domain in self.space.items()
        }


def param_space(spec: StudySpec) -> dict[str, Any]:
    """Ray's param_space for random/grid search (Optuna gets its space through the searcher)."""
    from ray import tune

    if spec.searcher == "optuna":
        return {}
    space: dict[str, Any] = {}
    for axis, values in axis_values(spec).items():
        space[axis] = values[0] if len(values) == 1 else tune.grid_search(values)
    for index, (method, method_space) in enumerate(spec.methods.items()):
        space[method] = tune.sample_from(MethodSampler(method, method_space, spec.searcher_seed + index))
    return space


def build_searcher(spec: StudySpec, metric: str | None, mode: str | None) -> Any:
    """OptunaSearch (seeded TPE) for 'optuna'; None for random/grid, so Ray builds its own
    BasicVariantGenerator, which honours max_concurrent_trials (a passed-in one would not).

    TPE starts from a few random trials (a fifth of the budget, 3 to 10) before it models the
    space; OptunaSearch gets metric and mode itself (a define-by-run searcher ignores TuneConfig's).
    """
    if spec.searcher != "optuna":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    startup = min(10, max(3, spec.num_samples // 5))
    return OptunaSearch(
        space=StudyDefineByRun(spec),
        metric=metric,
        mode=mode,
        sampler=optuna.samplers.TPESampler(seed=spec.searcher_seed, n_startup_trials=startup),
        study_name=f"{spec.name}-{metric}-{mode}",  # a reused study never flips direction silently
    )


def build_scheduler(spec: StudySpec, metric: str | None, mode: str | None) -> Any:
    """ASHA over training iterations (one per epoch; capped at the epoch budget), or none (FIFO)."""
    if spec.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=spec.max_epochs + 1,  # + the final report
        grace_period=spec.grace_period,
        reduction_factor=spec.reduction_factor,
    )
