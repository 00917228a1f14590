"""Experiment folders written by Ray Tune -> tidy pandas tables (one row per trial, one per trial-epoch).

Reading goes through Ray's own `ExperimentAnalysis` (which needs neither the trainable nor a running
Ray) wrapped in a `ResultGrid`, so local folders and `gs://` URIs behave the same (pyarrow filesystems).
A study's metric and mode come from the study spec the runner saves beside the trials, else from Ray's
experiment state, else from the caller; the choice is recorded so every table says how it ranked.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nisca.errors import DataError

# Keys Ray adds to every report; they are bookkeeping, not metrics.
RAY_KEYS = frozenset(
    {
        "timestamp", "checkpoint_dir_name", "should_checkpoint", "done", "training_iteration", "trial_id",
        "date", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
        "iterations_since_restore", "config", "logdir", "experiment_tag", "experiment_id",
    }
)
# Keys a trainable may report that count epochs or label rows rather than measure anything.
COUNTER_KEYS = frozenset(
    {"epoch", "epochs", "step", "global_step", "epoch_budget", "restored_from_epoch", "truth_k"}
)
# A key the trainable adds to its final report only: its presence marks a trial that ran to the end.
COMPLETION_KEYS = ("completed", "fit_completed", "trial_completed")
# Per-epoch keys: a report that carries one of them is an epoch of training (a learning-curve point).
EPOCH_KEYS = ("train_loss",)
# Config entries that describe the trial rather than a searched setting.
NON_HYPERPARAMETERS = frozenset({"method", "seed"})
# Prefix of the columns describing a trial's scene (from nisca_study/data.json).
DATA_PREFIX = "data/"
# The folder the project's study runner (nisca/tune/runner.py) keeps beside Ray's files.
STUDY_FOLDER = "nisca_study"
DEFAULT_METRIC = "val_loss"
DEFAULT_MODE = "min"


@dataclass
class Study:
    """One Ray Tune experiment folder, read through Ray's own result objects."""

    name: str
    path: str  # the experiment folder: a local path or a URI such as gs://bucket/studies/name
    metric: str  # what "best" means (never a ground-truth metric unless the study said so)
    mode: str  # "min" or "max"
    result_grid: Any  # ray.tune.ResultGrid
    analysis: Any  # the ray.tune.ExperimentAnalysis under it (trial status lives there)
    spec: dict[str, Any] = field(default_factory=dict)  # the study spec saved by the runner, if any
    metric_source: str = "default"  # where metric/mode came from: "spec", "ray", "argument" or "default"
    selection: dict[str, str] = field(default_factory=dict)  # method -> metric its best trial is chosen by
    scenes: dict[str, Any] = field(default_factory=dict)  # scene name -> description, shape, truth, checksum
    environment: dict[str, Any] = field(default_factory=dict)  # package versions the study ran with
    states: dict[str, str] = field(default_factory=dict)  # trial id -> completed/stopped_early/error/interrupted


@dataclass
class StudyResults:
    """Several studies in two tidy tables, plus the studies themselves for outputs and checkpoints."""

    studies: list[Study]
    trials: pd.DataFrame  # one row per trial
    epochs: pd.DataFrame  # one row per trial and reported epoch
    hyperparameters: dict[str, list[str]]  # per study: config columns that take more than one value

    def study(self, name: str) -> Study:
        for study in self.studies:
            if study.name == name:
                return study
        raise DataError(f"no study named {name!r}; loaded: {', '.join(s.name for s in self.studies)}")


def load_study(path: str, *, metric: str | None = None, mode: str | None = None, name: str | None = None) -> Study:
    """Open one experiment folder (storage_path/name) written by `Tuner.fit()`."""
    import pyarrow.fs
    from ray.tune import ExperimentAnalysis, ResultGrid

    path = str(path).rstrip("/")
    try:
        fs, fs_path = pyarrow.fs.FileSystem.from_uri(path) if "://" in path else (pyarrow.fs.LocalFileSystem(), path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises several types for bad URIs
        raise DataError(f"{path}: cannot open this location ({error})") from None
    info = fs.get_file_info(fs_path)
    if info.type != pyarrow.fs.FileType.Directory:
        raise DataError(f"{path}: no such experiment folder (expected storage_path/name of a Ray Tune run)")
    state = _newest_experiment_state(fs, fs_path)
    if state is None:
        raise DataError(
            f"{path}: not a Ray Tune experiment folder (no experiment_state-*.json inside); "
            "pass the folder storage_path/name that the study printed"
        )
    record = _read_json(fs, posixpath.join(fs_path, STUDY_FOLDER, "spec.json"))
    spec = record.get("spec", {}) if isinstance(record.get("spec"), dict) else {}
    chosen_metric, chosen_mode, source = _metric_and_mode(spec, _ray_metric(fs, state), metric, mode)
    status = _read_json(fs, posixpath.join(fs_path, STUDY_FOLDER, "status.json"))
    states = {str(k): str(v.get("state")) for k, v in (status.get("trials") or {}).items() if isinstance(v, dict)}
    selection = record.get("selection_metric") if source == "spec" else None
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        analysis = ExperimentAnalysis(fs_path, storage_filesystem=fs, default_metric=chosen_metric, default_mode=chosen_mode)
    except Exception as error:  # noqa: BLE001 - a damaged state file is the user's data
        raise DataError(f"{path}: Ray could not read this experiment ({type(error).__name__}: {error})") from None
    return Study(
        name=name or posixpath.basename(fs_path),
        path=path,
        metric=chosen_metric,
        mode=chosen_mode,
        result_grid=ResultGrid(analysis),
        analysis=analysis,
        spec=spec,
        metric_source=source,
        selection={str(k): str(v) for k, v in (selection or {}).items()},
        scenes=_read_json(fs, posixpath.join(fs_path, STUDY_FOLDER, "data.json")),
        environment=_read_json(fs, posixpath.join(fs_path, STUDY_FOLDER, "environment.json")),
        states=states,
    )


def load_studies(
    paths: Sequence[str] | str, *, metric: str | None = None, mode: str | None = None
) -> StudyResults:
    """Load one or more experiment folders into tidy trial and epoch tables (columns described in README)."""
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise DataError("no experiment folder given")
    names = _unique_names([str(p) for p in paths])
    studies = [load_study(p, metric=metric, mode=mode, name=n) for p, n in zip(paths, names)]
    trial_frames = [trial_table(s) for s in studies]
    epoch_frames = [epoch_table(s) for s in studies]
    trials = pd.concat(trial_frames, ignore_index=True, sort=False) if trial_frames else pd.DataFrame()
    epochs = pd.concat([f for f in epoch_frames if not f.empty], ignore_index=True, sort=False) if any(
        not f.empty for f in epoch_frames
    ) else pd.DataFrame(columns=["study", "trial_id", "method", "epoch"])
    hyper = {s.name: searched_hyperparameters(trials[trials["study"] == s.name], s) for s in studies}
    return StudyResults(studies=studies, trials=trials, epochs=epochs, hyperparameters=hyper)


def config_columns(study: Study) -> list[str]:
    """Flattened config keys of a study's trials (nested dicts joined with '/'), method and seed excluded."""
    keys: dict[str, None] = {}
    for result in study.result_grid:
        for key in flatten(result.config or {}):
            if key not in NON_HYPERPARAMETERS:
                keys[key] = None
    return list(keys)


def scene_columns(study: Study, scene: Any) -> dict[str, Any]:
    """What the study runner recorded about a trial's scene, as data/<key> columns: the generator's or
    loader's arguments (snr_db, latent_dim, samples, truth_version, ...) and the scene's size. A study
    whose trials run on several scenes is a sweep over whichever of these differ."""
    record = study.scenes.get(str(scene)) if scene is not None else None
    if not isinstance(record, Mapping):
        return {}
    out: dict[str, Any] = {}
    for kind, value in (record.get("description") or {}).items():
        if isinstance(value, Mapping):
            out.update({f"{DATA_PREFIX}{k}": v for k, v in flatten(value).items()})
        else:
            out[f"{DATA_PREFIX}{kind}"] = value
    for key in ("pixels", "channels", "truth_k"):
        if record.get(key) is not None:
            out[f"{DATA_PREFIX}{key}"] = record[key]
    return out


def searched_hyperparameters(trials: pd.DataFrame, study: Study) -> list[str]:
    """Config and data columns that take more than one value among the trials that set them
    (seeds excluded)."""
    out = []
    data_columns = [c for c in trials.columns if c.startswith(DATA_PREFIX)]
    for key in config_columns(study) + data_columns:
        if key.rsplit("/", 1)[-1] == "seed" or key not in trials:
            continue
        if trials[key].dropna().astype("string").nunique() > 1:
            out.append(key)
    return out


def trial_table(study: Study) -> pd.DataFrame:
    """One row per trial: identity, config, status, completion, epochs, time, node, final and best metrics."""
    rows = []
    any_marker = any(_has_marker(r.metrics or {}) for r in study.result_grid)
    for result in study.result_grid:
        rows.append(_trial_row(study, result, any_marker))
    if not rows:
        raise DataError(f"{study.path}: no trial has started in this experiment yet; nothing to analyse")
    return pd.DataFrame(rows).sort_values("trial_id", ignore_index=True)


def epoch_table(study: Study) -> pd.DataFrame:
    """One row per trial-epoch (learning curves): every per-epoch report, without the final summary."""
    frames = []
    for result in study.result_grid:
        history = result.metrics_dataframe
        if history is None or history.empty:
            continue
        history = history.copy()
        config = result.config or {}
        is_epoch = _epoch_rows(history)
        history = history[is_epoch]
        if history.empty:
            continue
        keep = [c for c in history.columns if c not in RAY_KEYS and not c.startswith("config/")]
        keep = [c for c in keep if c not in COMPLETION_KEYS]
        out = history[keep].copy()
        out.insert(0, "study", study.name)
        out.insert(1, "trial_id", _trial_id(result))
        out.insert(2, "method", config.get("method"))
        out.insert(3, "seed", config.get("seed"))
        # the trainable's own epoch number when it reports one, else the count of epoch reports
        epoch = out.pop("epoch").to_numpy() if "epoch" in out else range(1, len(out) + 1)
        out.insert(4, "epoch", epoch)
        if "training_iteration" in history:
            out.insert(5, "training_iteration", history["training_iteration"].to_numpy())
        if "time_total_s" in history:
            out["time_total_s"] = history["time_total_s"].to_numpy()
        frames.append(out.reset_index(drop=True))
    if not frames:
        return pd.DataFrame(columns=["study", "trial_id", "method", "seed", "epoch"])
    return pd.concat(frames, ignore_index=True, sort=False).dropna(axis=1, how="all")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one level with '/'-joined keys; lists and tuples become strings (table cells)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if value is None:
            continue  # e.g. the other methods' (empty) namespaces, or K taken from the truth
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(list(value))
        else:
            out[name] = value
    return out


def error_reason(error: Any) -> str:
    """The one line a reader needs from a trial's exception: its last 'Type: message' line."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if ":" in line and not line.startswith(("File ", "^")):
            return line
    return lines[-1] if lines else type(error).__name__


def _trial_row(study: Study, result: Any, any_marker: bool) -> dict[str, Any]:
    config = result.config or {}
    last = dict(result.metrics or {})
    history = result.metrics_dataframe
    status = _status(study, result)
    epochs = int(_epoch_rows(history).sum()) if history is not None and not history.empty else 0
    completed = _completed(status, last, config, epochs, any_marker)
    outcome = _outcome(study, _trial_id(result), status, completed)
    row: dict[str, Any] = {
        "study": study.name,
        "trial_id": _trial_id(result),
        "method": config.get("method"),
        "seed": config.get("seed"),
    }
    row.update({k: v for k, v in flatten(config).items() if k not in NON_HYPERPARAMETERS})
    row.update(scene_columns(study, config.get("scene")))
    row.update(
        {
            "status": status,
            "outcome": outcome,
            "completed": completed,
            "stopped_early": outcome == "stopped early",
            "error": error_reason(result.error) if result.error is not None else "",
            "epochs": epochs,
            "epoch_budget": last.get("epoch_budget"),
            "reports": int(len(history)) if history is not None else 0,
            "time_total_s": last.get("time_total_s"),
            "node_ip": last.get("node_ip"),
            "hostname": last.get("hostname"),
        }
    )
    row.update(final_metrics(_last_values(history, last)))
    best_value, best_epoch = _best(history, study.metric, study.mode)
    row[f"best_{study.metric}"] = best_value
    row["best_epoch"] = best_epoch
    row["path"] = result.path
    row["checkpoint"] = result.checkpoint.path if result.checkpoint is not None else None
    return row


def final_metrics(last: Mapping[str, Any]) -> dict[str, float]:
    """Numeric entries of a trial's last report that are metrics (Ray's bookkeeping removed)."""
    out = {}
    for key, value in last.items():
        if key in RAY_KEYS or key in COMPLETION_KEYS or key in COUNTER_KEYS or key.startswith("config/"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out[key] = float(value)
    return out


def _last_values(history: pd.DataFrame | None, last: Mapping[str, Any]) -> dict[str, Any]:
    """Each key's latest reported value (a final summary need not repeat the per-epoch losses)."""
    out: dict[str, Any] = {}
    if history is not None and not history.empty:
        for column in history.columns:
            values = history[column].dropna()
            if not values.empty:
                out[column] = values.iloc[-1]
    out.update({k: v for k, v in last.items() if v is not None})
    return out


def _status(study: Study, result: Any) -> str:
    for trial in study.analysis.trials:  # Ray keeps the status on the Trial, not on the Result
        if trial.path == result.path:
            return str(trial.status)
    return "ERROR" if result.error is not None else "UNKNOWN"


def _trial_id(result: Any) -> str:
    trial_id = (result.metrics or {}).get("trial_id")
    if trial_id:
        return str(trial_id)
    name = posixpath.basename(str(result.path))
    parts = name.split("_")
    return f"{parts[-4]}_{parts[-3]}" if len(parts) >= 4 else name


def _has_marker(metrics: Mapping[str, Any]) -> bool:
    return any(bool(metrics.get(key)) for key in COMPLETION_KEYS)


def _outcome(study: Study, trial_id: str, status: str, completed: bool) -> str:
    """completed / stopped early / failed / interrupted / the Ray status of an unfinished trial.

    Ray marks both scheduler stops and Ctrl-C interruptions TERMINATED; the study runner's record
    (nisca_study/status.json) tells them apart. Without it a TERMINATED trial that did not complete
    counts as stopped early.
    """
    if status == "ERROR":
        return "failed"
    if status != "TERMINATED":
        return status.lower()
    if completed:
        return "completed"
    state = study.states.get(trial_id)
    if state == "interrupted":
        return "interrupted"
    return "stopped early"


def _completed(status: str, last: Mapping[str, Any], config: Mapping[str, Any], epochs: int, any_marker: bool) -> bool:
    """Ran to the end: the trainable's completion marker, or (for runs without markers) the epoch budget."""
    if status != "TERMINATED":
        return False
    if any_marker:
        return _has_marker(last)
    budget = config.get("max_epochs")
    if isinstance(budget, (int, float)) and epochs:
        return epochs >= budget
    return True


def _epoch_rows(history: pd.DataFrame | None) -> pd.Series:
    """Which reports are training epochs: they carry a per-epoch key, and are not the final summary."""
    if history is None or history.empty:
        return pd.Series([], dtype=bool)
    per_epoch = [k for k in EPOCH_KEYS if k in history]
    if per_epoch:
        mask = history[per_epoch].notna().any(axis=1)
    else:
        mask = pd.Series(True, index=history.index)
    for key in COMPLETION_KEYS:
        if key in history:
            mask &= ~history[key].fillna(False).astype(bool)
    return mask


def _best(history: pd.DataFrame | None, metric: str, mode: str) -> tuple[float | None, int | None]:
    if history is None or history.empty or metric not in history:
        return None, None
    rows = history[_epoch_rows(history)]
    values = pd.to_numeric(rows[metric], errors="coerce") if metric in rows else pd.Series(dtype=float)
    values = values[values.apply(lambda v: math.isfinite(v) if pd.notna(v) else False)]
    if values.empty:
        values = pd.to_numeric(history[metric], errors="coerce").dropna()
        if values.empty:
            return None, None
        return float(values.min() if mode == "min" else values.max()), None
    position = values.idxmin() if mode == "min" else values.idxmax()
    return float(values[position]), int(list(rows.index).index(position)) + 1


def _newest_experiment_state(fs: Any, fs_path: str) -> str | None:
    import pyarrow.fs

    selector = pyarrow.fs.FileSelector(fs_path, recursive=False)
    states = [
        info.path
        for info in fs.get_file_info(selector)
        if posixpath.basename(info.path).startswith("experiment_state-") and info.path.endswith(".json")
    ]
    return max(states) if states else None


def _ray_metric(fs: Any, state_path: str) -> str | None:
    """The metric given to TuneConfig, as Ray saved it in its experiment state."""
    try:
        with fs.open_input_stream(state_path) as stream:
            state = json.loads(stream.readall())
        metric = state.get("runner_data", {}).get("_metric")
    except (OSError, ValueError, AttributeError):
        return None
    return metric if isinstance(metric, str) else None


def _read_json(fs: Any, path: str) -> dict[str, Any]:
    """A JSON object the study runner saved (its spec, data, environment, status), or {}."""
    import pyarrow.fs

    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return {}
    try:
        with fs.open_input_stream(path) as stream:
            data = json.loads(stream.readall().decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _metric_and_mode(
    spec: Mapping[str, Any], ray_metric: str | None, metric: str | None, mode: str | None
) -> tuple[str, str, str]:
    if mode is not None and mode not in ("min", "max"):
        raise DataError(f"mode must be 'min' or 'max', got {mode!r}")
    if metric is not None:
        return metric, mode or DEFAULT_MODE, "argument"
    spec_metric = spec.get("metric")
    if isinstance(spec_metric, str):
        spec_mode = spec.get("mode") if spec.get("mode") in ("min", "max") else DEFAULT_MODE
        return spec_metric, mode or spec_mode, "spec"
    if ray_metric:
        return ray_metric, mode or DEFAULT_MODE, "ray"
    return DEFAULT_METRIC, mode or DEFAULT_MODE, "default"


def _unique_names(paths: Iterable[str]) -> list[str]:
    """Experiment folder names; a parent folder is prefixed where two names collide."""
    paths = [p.rstrip("/") for p in paths]
    names = [posixpath.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{posixpath.basename(posixpath.dirname(p))}/{posixpath.basename(p)}" for p in paths]
