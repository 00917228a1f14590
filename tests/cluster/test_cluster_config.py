"""cluster/gcp.yaml and cluster/local.yaml pass Ray's offline validation and the project's checks;
broken copies, placeholders and secrets are caught, and cluster/launch.sh refuses to launch them."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from nisca.cluster_config import check_cluster_config, main, project_problems, ray_problems, require_launchable
from nisca.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
GCP = REPO / "cluster" / "gcp.yaml"
LOCAL = REPO / "cluster" / "local.yaml"

# What a user writes in place of the placeholders.
FILLED = {
    "YOUR_GCP_PROJECT_ID": "nisca-research-4711",
    "YOUR_BUCKET": "nisca-research-4711-studies",
    "YOUR_HEAD_HOST": "10.0.0.10",
    "YOUR_WORKER_HOST_1": "10.0.0.11",
    "YOUR_WORKER_HOST_2": "10.0.0.12",
    "YOUR_SSH_USER": "ubuntu",
    "YOUR_REGISTRY": "registry.example.org/lab",
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def write(tmp_path: Path, config: dict, name: str = "cluster.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def filled_copy(source: Path, tmp_path: Path) -> Path:
    text = source.read_text()
    for placeholder, value in FILLED.items():
        text = text.replace(placeholder, value)
    path = tmp_path / source.name
    path.write_text(text)
    return path


def broken(source: Path, tmp_path: Path, mutate: Callable[[dict], None]) -> Path:
    config = copy.deepcopy(load(source))
    mutate(config)
    return write(tmp_path, config, f"broken-{source.name}")


@pytest.mark.parametrize("path", [GCP, LOCAL], ids=["gcp", "local"])
def test_files_pass_rays_own_offline_validation(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(load(path))
    validate_config(prepared)  # raises on any schema or consistency error
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("path", [GCP, LOCAL], ids=["gcp", "local"])
def test_committed_files_pass_the_project_checks(path):
    assert check_cluster_config(path) == []


def test_gcp_file_declares_the_promised_node_types():
    config = load(GCP)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and "guestAccelerators" not in head["node_config"]
    start = " ".join(config["head_start_ray_commands"])
    assert "--num-cpus=0" in start and "--dashboard-host=127.0.0.1" in start
    gpu_types = {
        name: (t["node_config"]["machineType"], t["node_config"]["guestAccelerators"][0], t["resources"])
        for name, t in types.items()
        if "guestAccelerators" in t["node_config"]
    }
    assert sorted((m, a["acceleratorType"], a["acceleratorCount"], r["GPU"]) for m, a, r in gpu_types.values()) == [
        ("a2-highgpu-4g", "nvidia-tesla-a100", 4, 4),
        ("g2-standard-8", "nvidia-l4", 1, 1),
    ]
    for name in gpu_types:
        assert types[name]["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
        assert types[name]["max_workers"] >= 1 and types[name]["min_workers"] == 0
    assert "--gpus all" in config["docker"]["worker_run_options"]
    assert "--gpus all" not in config["docker"].get("run_options", [])


@pytest.mark.parametrize(
    ("source", "placeholder"),
    [(GCP, "YOUR_GCP_PROJECT_ID"), (LOCAL, "YOUR_HEAD_HOST")],
    ids=["gcp", "local"],
)
def test_placeholders_are_refused_for_launch_only(source, placeholder, tmp_path):
    problems = check_cluster_config(source, for_launch=True)
    assert any(placeholder in p and str(source) in p for p in problems)
    if source == GCP:
        assert any("docker.run_options" in p and "YOUR_BUCKET" in p for p in problems)
    with pytest.raises(ConfigError, match=placeholder):
        require_launchable(source)

    filled = filled_copy(source, tmp_path)
    assert check_cluster_config(filled, for_launch=True) == []
    require_launchable(filled)


def test_project_id_placeholder_left_in_one_place_is_found(tmp_path):
    filled = filled_copy(GCP, tmp_path)
    config = load(filled)
    config["available_node_types"]["gpu_l4"]["node_config"]["serviceAccounts"][0]["email"] = (
        "ray-autoscaler-sa-v1@YOUR_GCP_PROJECT_ID.iam.gserviceaccount.com"
    )
    problems = check_cluster_config(write(tmp_path, config), for_launch=True)
    assert len(problems) == 1
    assert "available_node_types.gpu_l4.node_config.serviceAccounts[0].email" in problems[0]


def _misspell_accelerators(config: dict) -> None:
    node_config = config["available_node_types"]["gpu_l4"]["node_config"]
    node_config["guestAccelerator"] = node_config.pop("guestAccelerators")


def _gpu_mismatch(config: dict) -> None:
    config["available_node_types"]["gpu_a100x4"]["resources"]["GPU"] = 2


def _accelerator_count_mismatch(config: dict) -> None:
    config["available_node_types"]["gpu_a100x4"]["node_config"]["guestAccelerators"][0]["acceleratorCount"] = 2


def _misspell_accelerator_count(config: dict) -> None:
    entry = config["available_node_types"]["gpu_l4"]["node_config"]["guestAccelerators"][0]
    entry["acceleratorcount"] = entry.pop("acceleratorCount")


def _drop_head_node_type(config: dict) -> None:
    del config["head_node_type"]


def _unknown_top_level_key(config: dict) -> None:
    config["min_wokers"] = 1


def _scheduling_as_list(config: dict) -> None:
    config["available_node_types"]["gpu_l4"]["node_config"]["scheduling"] = [
        {"preemptible": True},
        {"onHostMaintenance": "TERMINATE"},
    ]


def _gpu_without_terminate(config: dict) -> None:
    config["available_node_types"]["gpu_a100x4"]["node_config"]["scheduling"]["onHostMaintenance"] = "MIGRATE"


def _head_takes_trials(config: dict) -> None:
    config["available_node_types"]["head_cpu"]["resources"] = {"CPU": 4}


def _drop_project_id(config: dict) -> None:
    del config["provider"]["project_id"]


def _secret_in_file(config: dict) -> None:
    config["docker"]["run_options"].append("-e WANDB_API_KEY=0123456789abcdef0123456789abcdef01234567")


def _public_dashboard(config: dict) -> None:
    config["head_start_ray_commands"][1] = config["head_start_ray_commands"][1].replace("127.0.0.1", "0.0.0.0")


def _local_storage(config: dict) -> None:
    options = config["docker"]["run_options"]
    options[:] = [o.replace("gs://YOUR_BUCKET/nisca-studies", "/home/ray/nisca-studies") for o in options]


def _too_many_cpus(config: dict) -> None:
    config["available_node_types"]["gpu_l4"]["resources"]["CPU"] = 16


BROKEN_GCP = {
    "misspelt guestAccelerators": (
        _misspell_accelerators,
        "guestAccelerator: not a field of a GCE instance (did you mean guestAccelerators?)",
    ),
    "resources.GPU mismatch": (_gpu_mismatch, "gpu_a100x4.resources.GPU: declares 2 GPU(s) but node_config attaches 4"),
    "acceleratorCount vs machine type": (
        _accelerator_count_mismatch,
        "2 x nvidia-tesla-a100 disagrees with machine type a2-highgpu-4g",
    ),
    "misspelt acceleratorCount": (
        _misspell_accelerator_count,
        "acceleratorcount: unknown field (did you mean acceleratorCount?)",
    ),
    "missing head_node_type": (_drop_head_node_type, "head_node_type: missing"),
    "unknown top-level key": (_unknown_top_level_key, "Ray's validation (prepare_config + validate_config) refuses it"),
    "scheduling as a list": (_scheduling_as_list, "scheduling: must be a mapping"),
    "GPU VM that live-migrates": (_gpu_without_terminate, "onHostMaintenance: must be TERMINATE"),
    "head takes trials": (_head_takes_trials, "the head would take trials"),
    "missing project_id": (_drop_project_id, "provider.project_id: missing"),
    "secret written in": (_secret_in_file, "WANDB_API_KEY is written into the file"),
    "public dashboard": (_public_dashboard, "--dashboard-host=0.0.0.0"),
    "more CPUs than the VM": (_too_many_cpus, "declares 16 CPUs but g2-standard-8 has 8 vCPUs"),
    "study storage on one node": (_local_storage, "NISCA_STUDIES=/home/ray/nisca-studies is a folder on one node"),
}


@pytest.mark.parametrize("case", list(BROKEN_GCP), ids=list(BROKEN_GCP))
def test_broken_gcp_copies_fail(case, tmp_path):
    mutate, expected = BROKEN_GCP[case]
    path = broken(GCP, tmp_path, mutate)
    problems = check_cluster_config(path)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{path}: ") for p in problems)


def test_misspelt_accelerators_on_a_general_machine_loses_the_gpus(tmp_path):
    """On an n1 VM the GPUs come only from guestAccelerators: a misspelling leaves none."""

    def mutate(config: dict) -> None:
        node_type = config["available_node_types"]["gpu_l4"]
        node_type["node_config"]["machineType"] = "n1-standard-8"
        node_type["node_config"]["guestAccelerators"][0]["acceleratorType"] = "nvidia-tesla-t4"
        _misspell_accelerators(config)

    problems = check_cluster_config(broken(GCP, tmp_path, mutate))
    assert any("gpu_l4.resources.GPU: declares 1 GPU(s) but node_config attaches 0" in p for p in problems)


def _head_named_like_rays_default_without_head_node_type(config: dict) -> None:
    types = config["available_node_types"]
    types["ray_head_default"] = types.pop("head_cpu")
    del config["head_node_type"]


@pytest.mark.parametrize(
    "mutate",
    [
        _misspell_accelerators,
        _gpu_mismatch,
        _scheduling_as_list,
        _drop_project_id,
        _head_named_like_rays_default_without_head_node_type,
    ],
)
def test_ray_alone_misses_what_the_project_checks_catch(mutate):
    config = copy.deepcopy(load(GCP))
    mutate(config)
    assert ray_problems(config) == []
    assert project_problems(config) != []


BROKEN_LOCAL = {
    "unknown top-level key": (_unknown_top_level_key, "Ray's validation (prepare_config + validate_config) refuses it"),
    "node types on the local provider": (
        lambda c: c.update(available_node_types={"x": {"resources": {}, "node_config": {}}}),
        "available_node_types: not used by the local provider",
    ),
    "no worker_ips": (lambda c: c["provider"].pop("worker_ips"), "provider.worker_ips: missing"),
    "more workers than machines": (lambda c: c.update(max_workers=5), "max_workers: 5 but only 2 worker_ips"),
    "secret in an option": (
        lambda c: c["docker"]["run_options"].append("--env RAY_AUTH_TOKEN=abc"),
        "RAY_AUTH_TOKEN is written into the file",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_LOCAL), ids=list(BROKEN_LOCAL))
def test_broken_local_copies_fail(case, tmp_path):
    mutate, expected = BROKEN_LOCAL[case]
    problems = check_cluster_config(broken(LOCAL, tmp_path, mutate))
    assert any(expected in p for p in problems), problems


def test_secret_from_environment_reference_is_allowed(tmp_path):
    config = load(LOCAL)
    config["docker"]["run_options"].append("-e WANDB_API_KEY=$WANDB_API_KEY")
    assert check_cluster_config(write(tmp_path, config)) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such cluster config file"),
        ("a: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
    ids=["missing", "bad-yaml", "not-a-mapping"],
)
def test_unreadable_files_raise_one_config_error(content, message, tmp_path):
    path = tmp_path / "cluster.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        check_cluster_config(path)
    assert str(path) in str(error.value)


def test_command_line_exit_codes(tmp_path, capsys):
    assert main([str(GCP), str(LOCAL)]) == 0
    assert main(["--for-launch", str(GCP)]) == 1
    assert "YOUR_GCP_PROJECT_ID" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.yaml")]) == 2


def _fake_ray(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `ray` on PATH that records its arguments instead of creating machines."""
    bin_dir, record = tmp_path / "bin", tmp_path / "ray-args"
    bin_dir.mkdir()
    fake = bin_dir / "ray"
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", NISCA_PYTHON=sys.executable)
    return env, record


def test_launch_script_refuses_placeholders_and_never_calls_ray_up(tmp_path):
    env, record = _fake_ray(tmp_path)
    run = subprocess.run(
        ["bash", str(REPO / "cluster" / "launch.sh"), str(GCP)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "provider.project_id: placeholder YOUR_GCP_PROJECT_ID" in run.stderr
    assert not record.exists()


def test_launch_script_runs_ray_up_once_the_checks_pass(tmp_path):
    env, record = _fake_ray(tmp_path)
    filled = filled_copy(LOCAL, tmp_path)
    run = subprocess.run(
        ["bash", str(REPO / "cluster" / "launch.sh"), str(filled), "--yes"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert record.read_text().split() == ["up", str(filled), "--yes"]
