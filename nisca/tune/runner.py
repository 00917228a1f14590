"""Run a study: validate, connect, build Ray's own Tuner (or restore it), fit, record what completed.

`run_study(spec)` returns Ray's `ResultGrid`. The experiment folder is `<storage>/<name>` (a local
folder or `gs://bucket/...`); when it already holds a Tune experiment, the runner resumes it with
`Tuner.restore(resume_unfinished=True, resume_errored=True)` (search state, trial checkpoints and
results are kept). Beside Ray's files it keeps `nisca_study/`: spec.json, environment.json,
data.json (scene checksums), trials.json (how each trial ended, written as trials end) and
status.json (whether the study truly completed: Ray marks Ctrl-C-interrupted trials TERMINATED).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ray.tune import Callback  # nisca.tune's __init__ has set the quiet environment before this import

from nisca.errors import ConfigError
from nisca.tune.environment import Connection, connect, disconnect, environment_versions, quiet_environment
from nisca.tune.spec import StudySpec, describe_spec, scene_record, smoke_spec, spec_fingerprint
from nisca.tune.validate import CheckedStudy, check_study

STUDY_FOLDER = "nisca_study"
DEFAULT_STORAGE = "~/nisca-studies"


# ----------------------------------------------------------------------------------------- files
def is_remote(path: str) -> bool:
    return "://" in path


def storage_root(storage: str | None) -> str:
    """The storage path Ray gets: a URI as is, a local folder made absolute ($NISCA_STUDIES or ~/nisca-studies)."""
    storage = storage or os.environ.get("NISCA_STUDIES") or DEFAULT_STORAGE
    return storage if is_remote(storage) else str(Path(storage).expanduser().resolve())


def write_text(uri: str, text: str) -> None:
    """Write a small file to a local path or a pyarrow-supported URI (gs://, s3://)."""
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri if is_remote(uri) else str(Path(uri).resolve()))
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode())


def read_text(uri: str) -> str | None:
    """The text of a small file, or None when it does not exist."""
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri if is_remote(uri) else str(Path(uri).resolve()))
    if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str) + "\n"


# ----------------------------------------------------------------------------------------- completion
def _trial_state(trial: Any, error: str | None = None) -> dict[str, Any]:
    result = trial.last_result or {}
    config = trial.config or {}
    if error is not None:
        state = "error"
    elif result.get("completed") == 1:
        state = "completed"
    else:
        state = "stopped_early"  # ended by the scheduler (ASHA) before its budget
    return {
        "state": state,
        "method": config.get("method"),
        "scene": config.get("scene"),
        "seed": config.get("seed"),
        "epochs": result.get("epoch"),
        "epoch_budget": result.get("epoch_budget"),
        "error": error,
    }


class TrialEnded(Callback):
    """A Tune Callback recording how each trial ended, in <experiment>/nisca_study/trials.json."""

    def __init__(self, experiment: str) -> None:
        self.path = f"{experiment}/{STUDY_FOLDER}/trials.json"

    def _record(self, trial: Any, error: str | None = None) -> None:
        records = json.loads(read_text(self.path) or "{}")
        records[trial.trial_id] = _trial_state(trial, error)
        write_text(self.path, _json(records))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._record(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = str(getattr(trial, "error_message", None) or "")
        error_file = getattr(trial, "error_file", None)
        if not reason and error_file and os.path.isfile(error_file):
            reason = Path(error_file).read_text()
        self._record(trial, error_reason(reason) or "error")


def error_reason(text: str) -> str:
    """The last line of a traceback that names an exception: the reason a user reads."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line
    return lines[-1] if lines else ""


def _params(trial_path: str) -> dict[str, Any]:
    """A trial's config from its params.json (Ray leaves Result.config empty before the first report)."""
    return json.loads(read_text(f"{trial_path}/params.json") or "{}")


def completion(results: Any, experiment: str) -> dict[str, Any]:
    """Each trial's state: completed / stopped_early / error / interrupted (cut short by Ctrl-C or a kill)."""
    records = json.loads(read_text(f"{experiment}/{STUDY_FOLDER}/trials.json") or "{}")
    trials = {}
    for result in results:
        metrics = result.metrics or {}
        config = result.config or _params(result.path)
        trial_id = metrics.get("trial_id") or Path(result.path).name
        record = records.get(trial_id)
        if result.error is not None:
            state = "error"
            reason = error_reason(str(result.error))
        elif metrics.get("completed") == 1:
            state, reason = "completed", None
        elif record is not None and record["state"] == "stopped_early":
            state, reason = "stopped_early", None
        else:
            state, reason = "interrupted", None
        trials[trial_id] = {"state": state, "method": config.get("method"), "scene": config.get("scene"),
                            "seed": config.get("seed"), "epochs": metrics.get("epoch"), "error": reason}
    counts: dict[str, int] = {}
    for trial in trials.values():
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    return {"complete": counts.get("interrupted", 0) == 0 and bool(trials), "counts": counts, "trials": trials}


# ----------------------------------------------------------------------------------------- runner
def prepare(spec: StudySpec, *, storage: str | None = None, name: str | None = None, smoke: bool = False,
            wandb: bool | None = None) -> tuple[CheckedStudy, str]:
    """Apply the run options to the spec and validate it (no Ray needed): the checked study and its folder."""
    quiet_environment()
    if smoke:
        spec = smoke_spec(spec)
    if name:
        spec = spec.replace(name=name)
    if wandb is not None:
        spec = spec.replace(wandb=wandb)
    spec = spec.replace(storage_path=storage_root(storage or spec.storage_path))
    checked = check_study(spec)
    return checked, f"{spec.storage_path.rstrip('/')}/{spec.name}"


def run_study(
    spec: StudySpec,
    *,
    storage: str | None = None,
    name: str | None = None,
    address: str | None = None,
    smoke: bool = False,
    wandb: bool | None = None,
    verbose: int = 1,
    num_cpus: int | None = None,
    dashboard: bool | None = None,
    echo: Callable[[str], None] = print,
) -> Any:
    """Validate, then run or resume the study; returns Ray's ResultGrid. Nothing starts if the spec is bad."""
    checked, experiment = prepare(spec, storage=storage, name=name, smoke=smoke, wandb=wandb)
    return run_checked(checked, experiment, address=address, verbose=verbose, num_cpus=num_cpus,
                       dashboard=dashboard, echo=echo)


def run_checked(
    checked: CheckedStudy,
    experiment: str,
    *,
    address: str | None = None,
    verbose: int = 1,
    num_cpus: int | None = None,
    dashboard: bool | None = None,
    echo: Callable[[str], None] = print,
) -> Any:
    """Run a study `prepare` has validated, in `experiment`; returns Ray's ResultGrid."""
    connection = connect(address, num_cpus=num_cpus, dashboard=dashboard)
    try:
        _announce(connection, experiment, echo)
        return _fit(checked, experiment, verbose, echo)
    finally:
        disconnect(connection)


def _announce(connection: Connection, experiment: str, echo: Callable[[str], None]) -> None:
    where = {"embedded": "embedded Ray on this machine", "existing": f"Ray cluster at {connection.address}",
             "reused": "the running Ray session"}[connection.kind]
    echo(f"study runs on {where} ({connection.num_cpus:g} CPUs, {connection.num_gpus:g} GPUs)")
    echo(f"results go to {experiment}")
    if connection.dashboard_url:
        echo(f"Ray dashboard: {connection.dashboard_url}")


def _fit(checked: CheckedStudy, experiment: str, verbose: int, echo: Callable[[str], None]) -> Any:
    from ray.tune import Tuner

    from nisca.tune.trainable import TrialSettings, make_trainable

    spec = checked.spec
    settings = TrialSettings(
        max_epochs=spec.max_epochs,
        trained=checked.trained,
        budget_field=checked.budget_field,
        threads=max(1, int(float(spec.resources.get("cpu", 1)))),
    )
    trainable = make_trainable(checked.scenes, settings, spec.resources)
    study_files = f"{experiment}/{STUDY_FOLDER}"
    fingerprint = spec_fingerprint(spec)
    if Tuner.can_restore(experiment):
        stored = json.loads(read_text(f"{study_files}/spec.json") or "{}")
        if stored.get("fingerprint") not in (None, fingerprint):
            raise ConfigError(
                f"{experiment} holds a study with a different spec; resume it with its own spec, "
                f"or give this one another --name"
            )
        status = json.loads(read_text(f"{study_files}/status.json") or "{}")
        tuner = Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
        if status.get("complete"):
            echo("the study had completed: loading its results (nothing is rerun)")
            results = tuner.get_results()
            _finish(results, experiment, echo)
            return results
        echo("resuming the unfinished study from its experiment folder (search state and checkpoints kept)")
    else:
        _write_study_files(checked, experiment, fingerprint)
        tuner = _new_tuner(checked, experiment, trainable, verbose)
    results = tuner.fit()
    _finish(results, experiment, echo)
    return results


def _new_tuner(checked: CheckedStudy, experiment: str, trainable: Any, verbose: int) -> Any:
    from ray.tune import CheckpointConfig, CLIReporter, FailureConfig, RunConfig, TuneConfig, Tuner

    from nisca.tune.search import build_scheduler, build_searcher, param_space

    spec = checked.spec
    metric = checked.tune_metric
    mode = spec.mode if metric else None
    callbacks = [TrialEnded(experiment)]
    if spec.wandb:
        from nisca.tune.wandb import wandb_callback

        callbacks.append(wandb_callback(spec.wandb_project, spec.name))
    reporter = None
    if verbose:
        reporter = CLIReporter(
            metric_columns={key: key for key in (metric or "reconstruction_rmse", "epoch")},
            parameter_columns=["method", "scene", "seed"],
            max_report_frequency=30,
            max_progress_rows=12,
            max_error_rows=5,
            sort_by_metric=bool(metric),
        )
    keep_by_score = metric is not None and metric not in ("reconstruction_rmse",)
    return Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=build_searcher(spec, metric, mode),
            scheduler=build_scheduler(spec, metric, mode),
            num_samples=spec.num_samples,
            max_concurrent_trials=spec.max_concurrent_trials,
            reuse_actors=True,  # a finished trial's worker (torch and Lightning imported) runs the next one
        ),
        run_config=RunConfig(
            name=spec.name,
            storage_path=spec.storage_path,
            failure_config=FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=CheckpointConfig(
                num_to_keep=spec.keep_checkpoints,
                checkpoint_score_attribute=metric if keep_by_score else None,
                checkpoint_score_order=spec.mode,
            ),
            callbacks=callbacks,
            verbose=min(verbose, 1) if verbose else 0,
            progress_reporter=reporter,
        ),
    )


def _write_study_files(checked: CheckedStudy, experiment: str, fingerprint: str) -> None:
    files = f"{experiment}/{STUDY_FOLDER}"
    spec = checked.spec
    write_text(f"{files}/spec.json", _json({"fingerprint": fingerprint, "tune_metric": checked.tune_metric,
                                            "selection_metric": checked.selection_metric,
                                            "spec": describe_spec(spec)}))
    write_text(f"{files}/environment.json", _json(environment_versions()))
    write_text(f"{files}/data.json", _json({name: scene_record(scene, spec.scenes[name])
                                            for name, scene in checked.scenes.items()}))


def _finish(results: Any, experiment: str, echo: Callable[[str], None]) -> None:
    status = completion(results, experiment)
    write_text(f"{experiment}/{STUDY_FOLDER}/status.json", _json(status))
    counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(status["counts"].items()))
    echo(f"{len(status['trials'])} trials: {counts}")
    for trial_id, trial in status["trials"].items():
        if trial["state"] == "error":
            echo(f"  trial {trial_id} ({trial['method']}, scene {trial['scene']}) failed: {trial['error']}")
    if not status["complete"]:
        echo("the study is NOT complete (interrupted trials); run the same command again to resume it")


def load_status(experiment: str) -> dict[str, Any]:
    """The study's status.json (empty when the study never finished a run)."""
    return json.loads(read_text(f"{experiment}/{STUDY_FOLDER}/status.json") or "{}")


def load_spec_record(experiment: str) -> Mapping[str, Any]:
    """The study's spec.json record (fingerprint, metrics, spec)."""
    return json.loads(read_text(f"{experiment}/{STUDY_FOLDER}/spec.json") or "{}")
