"""Bad study specs fail before any trial starts, with one clear message (no Ray needed)."""

from __future__ import annotations

import pytest
import yaml
from ray import tune

from nisca.errors import ConfigError, DataError
from nisca.tune.runner import run_study
from nisca.tune.search import StudyDefineByRun, param_space
from nisca.tune.spec import StudySpec, load_spec_file, smoke_spec
from nisca.tune.validate import check_study

SCENE = {"syn": {"synthetic": {"channels": 6, "latent_dim": 3, "samples": 200, "snr_db": 20.0, "seed": 0}}}


def spec(**changes) -> StudySpec:
    base = StudySpec(name="unit", scenes=SCENE, methods={"nisca": {"lr_encoder": tune.loguniform(1e-3, 1e-2)}})
    return base.replace(**changes)


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"methods": {"nisca2": {"lr_encoder": tune.uniform(0.1, 0.2)}}}, ConfigError, ["unknown method", "nisca2"]),
        ({"methods": {"nisca": {"learning_rate": tune.uniform(0.1, 0.2)}}}, ConfigError,
         ["unknown hyperparameter", "learning_rate", "lr_encoder"]),
        ({"methods": {"nisca": {"batch_size": 64}}}, ConfigError, ["empty search space", "nisca"]),
        ({"methods": {"nisca": {"batch_size": tune.choice([64, "big"])}}}, ConfigError, ["batch_size"]),
        ({"metric": "val_los"}, ConfigError, ["val_los", "never reported"]),
        ({"metric": "abundance_rmse", "scheduler": "none"}, ConfigError, ["ground truth", "optimize_truth"]),
        ({"methods": {"nisca": {"lr_encoder": tune.uniform(0.1, 0.2)}, "vca": {"snr_db": tune.uniform(10, 30)}}},
         ConfigError, ["val_loss", "never reported by vca"]),
        ({"scenes": {"gone": {"file": "/nonexistent/scene.npz"}}}, DataError, ["gone", "/nonexistent/scene.npz"]),
        ({"scenes": {"cat": {"catalog": "no-such-scene"}}}, DataError, ["no-such-scene"]),
        ({"searcher": "bayes"}, ConfigError, ["searcher", "bayes"]),
        ({"resources": {"cpu": 0}}, ConfigError, ["resources.cpu"]),
        ({"latent_dims": [9]}, DataError, ["K = 9", "6 channels"]),
        ({"methods": {"nisca": {"lr_encoder": tune.uniform(0.1, 0.2), "restarts": 3}}}, ConfigError,
         ["restarts", "ASHA", "scheduler 'none'"]),
        ({"methods": {"nisca": {"lr_encoder": tune.uniform(0.1, 0.2), "linear_first": True}}}, ConfigError,
         ["linear_first", "ASHA", "scheduler 'none'"]),
        ({"methods": {"nisca": {"lr_encoder": tune.uniform(0.1, 0.2), "refine_epochs": 50}}}, ConfigError,
         ["refine_epochs", "ASHA", "scheduler 'none'"]),
        ({"methods": {"nisca": {"refine_epochs": tune.choice([0, 50])}}}, ConfigError,
         ["refine_epochs", "ASHA", "scheduler 'none'"]),
        ({"methods": {"nisca": {"refine_epochs": tune.choice([0, 50])}}, "scheduler": "none"}, ConfigError,
         ["'refine_epochs'", "val_loss", "bound"]),
        ({"methods": {"nisca": {"objective": tune.choice(["elbo", "iwae"]), "mc_samples": 4}}}, ConfigError,
         ["'objective'", "val_loss", "different bounds"]),
        ({"methods": {"nisca": {"mc_samples": tune.choice([2, 8])}}}, ConfigError,
         ["'mc_samples'", "different bounds"]),
    ],
)
def test_bad_spec_is_refused_with_one_message(changes, error, words):
    with pytest.raises(error) as caught:
        check_study(spec(**changes))
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_bad_spec_never_starts_ray_nor_writes_the_experiment(tmp_path, monkeypatch):
    import nisca.tune.runner as runner

    def no_connection(*args, **kwargs):
        raise AssertionError("Ray was contacted for a bad spec")

    monkeypatch.setattr(runner, "connect", no_connection)
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        run_study(spec(methods={"nisca": {"hidden": tune.choice([8, 16])}}), storage=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_training_phase_options_switched_off_are_accepted_under_asha():
    check_study(spec(methods={"nisca": {"lr_encoder": tune.uniform(0.1, 0.2), "refine_epochs": 0,
                                        "linear_first": False, "restarts": 1}}))


def test_training_phase_options_are_accepted_without_a_scheduler():
    """linear_first, refinement and restarts report once per trial: fine when nothing prunes on epochs."""
    check_study(spec(scheduler="none", methods={"nisca": {"lr_encoder": tune.uniform(0.1, 0.2), "linear_first": True,
                                                          "refine_epochs": 50, "restarts": tune.choice([1, 2])}}))


def test_define_by_run_space_is_checked_against_the_config():
    def space(trial):
        trial.suggest_float("lr_encoder", 1e-3, 1e-2, log=True)
        trial.suggest_int("depth", 1, 3)

    with pytest.raises(ConfigError, match="'depth'"):
        check_study(spec(methods={"nisca": space}))


def test_classic_and_trained_methods_share_a_grid_study_each_with_its_metric():
    checked = check_study(spec(methods={"nisca": {"max_epochs": 2}, "vca": {}}, searcher="grid", scheduler="none"))
    assert checked.tune_metric is None
    assert checked.selection_metric == {"nisca": "val_loss", "vca": "reconstruction_rmse"}
    assert checked.trained == {"nisca": True, "vca": False}
    assert checked.budget_field["nisca"] == "max_epochs"


def test_optuna_space_is_conditional_on_the_method_and_namespaced():
    import optuna

    study_spec = spec(methods={"nisca": {"lr_encoder": tune.loguniform(1e-3, 1e-2), "encoder_hidden":
                                         tune.choice([[8], [16, 16]])},
                               "vasca": {"batch_size": tune.choice([32, 64])}})
    define = StudyDefineByRun(study_spec)
    seen = set()
    for _ in range(12):
        trial = optuna.create_study().ask()
        constants = define(trial)
        method = trial.params["method"]
        seen.add(method)
        assert all(name == "method" or name.startswith(f"{method}/") for name in trial.params)
        assert constants["scene"] == "syn" and constants["seed"] == 0
    assert seen == {"nisca", "vasca"}


def test_grid_space_draws_each_method_only_for_its_own_trials():
    from ray.tune.search.variant_generator import generate_variants

    study_spec = spec(methods={"nisca": {"lr_encoder": tune.loguniform(1e-3, 1e-2)}, "vca": {}},
                      searcher="random", num_samples=1, seeds=(0, 1), scheduler="none")
    configs = [config for _, config in generate_variants(param_space(study_spec))]
    assert len(configs) == 4  # 2 methods x 2 seeds
    for config in configs:
        other = "vca" if config["method"] == "nisca" else "nisca"
        assert config[other] is None
        if config["method"] == "nisca":
            assert 1e-3 <= config["nisca"]["lr_encoder"] <= 1e-2


def test_yaml_spec_round_trip_and_smoke(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "yaml-study", "scenes": SCENE,
        "methods": {"nisca": {"lr_encoder": {"loguniform": [1e-3, 1e-2]}, "batch_size": {"choice": [32, 64]}}},
        "num_samples": 6, "max_epochs": 40,
    }))
    loaded = load_spec_file(path)
    check_study(loaded)
    small = smoke_spec(loaded)
    assert (small.num_samples, small.max_epochs, small.name) == (2, 2, "yaml-study-smoke")
    path.write_text(yaml.safe_dump({"name": "y", "scenes": SCENE, "methods": ["nisca"], "colour": "red"}))
    with pytest.raises(ConfigError, match="'colour'"):
        load_spec_file(path)


def test_cli_prints_one_line_without_traceback(tmp_path, capsys):
    from nisca.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "scenes": SCENE, "methods": {"nisca": {"lr": {"uniform": [0, 1]}}}}))
    assert main(["study", str(path), "--storage", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and "unknown hyperparameter(s) 'lr'" in err
    assert not (tmp_path / "s").exists()


def test_trials_request_fractional_gpus_and_carry_their_seed():
    from nisca.tune.trainable import TrialSettings, make_trainable, method_config

    trainable = make_trainable({}, TrialSettings(5, {"nisca": True}, {"nisca": "max_epochs"}), {"cpu": 2, "gpu": 0.25})
    assert trainable._resources.bundles == [{"CPU": 2.0, "GPU": 0.25}]
    settings = TrialSettings(5, {"nisca": True, "vca": False}, {"nisca": "max_epochs", "vca": None})
    config = {"method": "nisca", "scene": "syn", "seed": 7, "latent_dim": None,
              "nisca": {"encoder_hidden": "json:[16, 16]", "lr_encoder": 0.01}, "vca": None}
    assert method_config(config, settings) == {"encoder_hidden": [16, 16], "lr_encoder": 0.01, "seed": 7,
                                               "max_epochs": 5}
    assert method_config({**config, "method": "vca", "latent_dim": 4}, settings) == {"seed": 7, "latent_dim": 4}


def test_wandb_logger_offline_without_account_and_refused_online_without_key(monkeypatch, tmp_path):
    from ray.air.integrations.wandb import WandbLoggerCallback

    from nisca.tune.wandb import wandb_callback

    monkeypatch.setenv("WANDB_MODE", "offline")
    callback = wandb_callback("nisca-tests", "study-x")
    assert isinstance(callback, WandbLoggerCallback)
    assert (callback.project, callback.group, callback.log_config) == ("nisca-tests", "study-x", True)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="WANDB_MODE=offline"):
        wandb_callback("nisca-tests", "study-x")
