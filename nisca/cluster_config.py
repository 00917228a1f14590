"""Offline checks of the Ray cluster files (cluster/gcp.yaml, cluster/local.yaml) before `ray up`.

Two layers. First Ray's own validation, the one `ray up` applies (`prepare_config` fills the
provider's defaults from a file shipped with Ray, no network; `validate_config` applies Ray's JSON
schema). Then the project's checks for what that schema lets through and GCE or the study platform
would trip over later, after minutes of provisioning and money spent: fields inside `node_config`
(a misspelt `guestAccelerators` silently gives a node without GPUs), GPU counts that disagree with
`resources`, GPU nodes whose `scheduling` GCE refuses, a head that would take trials or publish its
dashboard, a missing `head_node_type` or `project_id`, a default study storage only one node can
reach, and secrets written into the file. Before a launch (`for_launch=True`) the placeholders
(`YOUR_...`) must be gone too.

Run as `python -m nisca.cluster_config [--for-launch] FILE...`; cluster/launch.sh does so before `ray up`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import io
import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nisca.errors import ConfigError

# Writable fields of a GCE instance (compute v1 `instances.insert` body), plus Ray's own
# `sourceInstanceTemplate`. Anything else in a GCP node_config is refused by GCE at launch time.
GCE_INSTANCE_FIELDS = frozenset(
    {
        "advancedMachineFeatures",
        "canIpForward",
        "confidentialInstanceConfig",
        "deletionProtection",
        "description",
        "disks",
        "displayDevice",
        "guestAccelerators",
        "hostname",
        "instanceEncryptionKey",
        "keyRevocationActionType",
        "labels",
        "machineType",
        "metadata",
        "minCpuPlatform",
        "name",
        "networkInterfaces",
        "networkPerformanceConfig",
        "params",
        "privateIpv6GoogleAccessType",
        "reservationAffinity",
        "resourcePolicies",
        "scheduling",
        "serviceAccounts",
        "shieldedInstanceConfig",
        "shieldedInstanceIntegrityPolicy",
        "sourceMachineImage",
        "sourceMachineImageEncryptionKey",
        "tags",
        "sourceInstanceTemplate",
    }
)
ACCELERATOR_FIELDS = frozenset({"acceleratorType", "acceleratorCount"})
# Fields that mark a TPU node (Ray's TPU support takes a different node_config).
TPU_MARKERS = frozenset({"acceleratorType", "acceleratorConfig", "runtimeVersion"})

# Accelerator-optimized machine types come with their GPUs: (accelerator, count, vCPUs).
ACCELERATOR_MACHINE_TYPES: dict[str, tuple[str, int, int]] = {
    "g2-standard-4": ("nvidia-l4", 1, 4),
    "g2-standard-8": ("nvidia-l4", 1, 8),
    "g2-standard-12": ("nvidia-l4", 1, 12),
    "g2-standard-16": ("nvidia-l4", 1, 16),
    "g2-standard-24": ("nvidia-l4", 2, 24),
    "g2-standard-32": ("nvidia-l4", 1, 32),
    "g2-standard-48": ("nvidia-l4", 4, 48),
    "g2-standard-96": ("nvidia-l4", 8, 96),
    "a2-highgpu-1g": ("nvidia-tesla-a100", 1, 12),
    "a2-highgpu-2g": ("nvidia-tesla-a100", 2, 24),
    "a2-highgpu-4g": ("nvidia-tesla-a100", 4, 48),
    "a2-highgpu-8g": ("nvidia-tesla-a100", 8, 96),
    "a2-megagpu-16g": ("nvidia-tesla-a100", 16, 96),
    "a2-ultragpu-1g": ("nvidia-a100-80gb", 1, 12),
    "a2-ultragpu-2g": ("nvidia-a100-80gb", 2, 24),
    "a2-ultragpu-4g": ("nvidia-a100-80gb", 4, 48),
    "a2-ultragpu-8g": ("nvidia-a100-80gb", 8, 96),
    "a3-highgpu-8g": ("nvidia-h100-80gb", 8, 208),
}
GENERAL_MACHINE_TYPE = re.compile(r"^(?:n1|n2|n2d|n4|e2|c2|c2d|c3|c3d|c4|t2d)-(?:standard|highmem|highcpu)-(\d+)$")

PLACEHOLDER = re.compile(r"YOUR_[A-Z0-9_]+|<[A-Za-z_][A-Za-z0-9_-]*>")
STORAGE_SETTING = re.compile(r"\bNISCA_STUDIES=(\S+)")
SECRET_NAMES = ("WANDB_API_KEY", "RAY_AUTH_TOKEN")
# A secret assigned a literal value in a command or option (a `$VAR` reference is fine).
SECRET_ASSIGNMENT = re.compile(r"\b(WANDB_API_KEY|RAY_AUTH_TOKEN)=(?![\s$\"'])\S")


def check_cluster_config(path: str | Path, *, for_launch: bool = False) -> list[str]:
    """Every problem found in the cluster file, each naming the file and the setting; [] when fine.

    `for_launch=True` also refuses placeholders left in (the committed files keep theirs).
    Raises ConfigError when the file is missing or is not a YAML mapping.
    """
    path = Path(path)
    config = load_cluster_yaml(path)
    problems = ray_problems(config) + project_problems(config)
    if for_launch:
        problems += placeholder_problems(config)
    return [f"{path}: {problem}" for problem in problems]


def require_launchable(path: str | Path) -> None:
    """Raise one ConfigError listing every problem that must be fixed before `ray up PATH`."""
    problems = check_cluster_config(path, for_launch=True)
    if problems:
        lines = [f"{path} is not ready to launch ({len(problems)} problem(s)):"]
        lines += [f"  - {problem}" for problem in problems]
        raise ConfigError("\n".join(lines))


def load_cluster_yaml(path: Path) -> dict[str, Any]:
    """The parsed YAML mapping, or a ConfigError naming the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such cluster config file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the cluster config: {error.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a cluster config must be a YAML mapping, got {type(config).__name__}")
    return config


def ray_problems(config: Mapping[str, Any]) -> list[str]:
    """What Ray's own offline validation (`prepare_config` + `validate_config`) says, as problems."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    # Ray's cli_logger prints its own panic line before raising, and its util logger notes the
    # defaults it fills in: the problem list says what matters, once.
    quiet = io.StringIO()
    ray_logger = logging.getLogger("ray.autoscaler._private.util")
    level = ray_logger.level
    ray_logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            validate_config(prepare_config(copy.deepcopy(dict(config))))
    except Exception as error:  # Ray raises schema, value, key, assertion and click errors alike.
        return [f"Ray's validation (prepare_config + validate_config) refuses it: {_describe(error)}"]
    finally:
        ray_logger.setLevel(level)
    return []


def project_problems(config: Mapping[str, Any]) -> list[str]:
    """The project's checks of what Ray's schema does not look at."""
    provider = config.get("provider")
    if not isinstance(provider, Mapping):
        return ["provider: missing (a mapping with `type: gcp` or `type: local`)"]
    problems = _secret_problems(config) + _dashboard_problems(config)
    kind = provider.get("type")
    if kind == "gcp":
        problems += _gcp_problems(config, provider)
    elif kind == "local":
        problems += _local_problems(config, provider)
    return problems


def placeholder_problems(config: Mapping[str, Any]) -> list[str]:
    """Values still holding a placeholder such as YOUR_GCP_PROJECT_ID or <project_id>."""
    problems = []
    for where, value in _strings(config):
        found = sorted(set(PLACEHOLDER.findall(value)))
        if found:
            problems.append(f"{where}: placeholder {', '.join(found)} left in; replace it before launching")
    provider = config.get("provider")
    if isinstance(provider, Mapping) and provider.get("type") == "gcp" and not provider.get("project_id"):
        problems.append("provider.project_id: empty; set your GCP project id before launching")
    return problems


# --- GCP -------------------------------------------------------------------------------------------


def _gcp_problems(config: Mapping[str, Any], provider: Mapping[str, Any]) -> list[str]:
    problems = []
    if not provider.get("project_id"):
        problems.append("provider.project_id: missing; Ray's GCP provider needs the project id")
    region, zone = provider.get("region"), provider.get("availability_zone")
    if not region or not zone:
        problems.append("provider: set both `region` and `availability_zone` (e.g. us-central1, us-central1-a)")
    elif not str(zone).startswith(f"{region}-"):
        problems.append(f"provider.availability_zone: {zone} is not a zone of region {region}")

    problems += _storage_problems(config)
    node_types = config.get("available_node_types")
    if not isinstance(node_types, Mapping) or not node_types:
        return problems + ["available_node_types: missing; declare the head and worker node types"]
    head = config.get("head_node_type")
    if head is None:
        problems.append(
            "head_node_type: missing; name the head among available_node_types "
            f"({', '.join(map(str, node_types))}); Ray would otherwise fill in its default `ray_head_default`"
        )
    elif head not in node_types:
        problems.append(
            f"head_node_type: {head!r} is not one of available_node_types ({', '.join(map(str, node_types))})"
        )

    gpu_node_types = set()
    for name, node_type in node_types.items():
        where = f"available_node_types.{name}"
        if not isinstance(node_type, Mapping):
            problems.append(f"{where}: must be a mapping with resources and node_config")
            continue
        node_problems, gpus = _gcp_node_problems(where, node_type)
        problems += node_problems
        if gpus:
            gpu_node_types.add(name)
    if head in node_types and isinstance(node_types[head], Mapping):
        problems += _head_problems(config, head, node_types[head], head_has_gpus=head in gpu_node_types)
    return problems


def _gcp_node_problems(where: str, node_type: Mapping[str, Any]) -> tuple[list[str], int]:
    """Problems of one GCP node type, and the number of GPUs its node_config attaches."""
    problems: list[str] = []
    node_config = node_type.get("node_config")
    resources = node_type.get("resources")
    if not isinstance(node_config, Mapping):
        return [f"{where}.node_config: must be a mapping of GCE instance fields"], 0
    if not isinstance(resources, Mapping):
        resources = {}
    if TPU_MARKERS & set(node_config):
        return [], 0  # A TPU node: Ray's TPU node_config, not a GCE instance.

    for key in node_config:
        if key not in GCE_INSTANCE_FIELDS:
            problems.append(
                f"{where}.node_config.{key}: not a field of a GCE instance{_did_you_mean(key, GCE_INSTANCE_FIELDS)}"
            )

    machine_type = str(node_config.get("machineType", "")).rsplit("/", 1)[-1]
    if not machine_type:
        problems.append(f"{where}.node_config.machineType: missing")
    listed, listed_gpus = _guest_accelerators(where, node_config.get("guestAccelerators"), problems)
    attached = listed_gpus
    if machine_type in ACCELERATOR_MACHINE_TYPES:
        kind, count, _ = ACCELERATOR_MACHINE_TYPES[machine_type]
        attached = count
        for accelerator_type, accelerator_count in listed:
            if accelerator_type != kind or accelerator_count != count:
                problems.append(
                    f"{where}.node_config.guestAccelerators: {accelerator_count} x {accelerator_type} disagrees "
                    f"with machine type {machine_type}, which comes with {count} x {kind}"
                )

    declared_gpus = resources.get("GPU", 0)
    if declared_gpus != attached:
        problems.append(
            f"{where}.resources.GPU: declares {declared_gpus} GPU(s) but node_config attaches {attached} "
            f"(machineType {machine_type or '?'}, guestAccelerators {listed_gpus}); Ray would schedule on GPUs "
            "that are not there, or leave real ones unused"
        )
    vcpus = _vcpus(machine_type)
    if vcpus is not None and resources.get("CPU", 0) > vcpus:
        problems.append(f"{where}.resources.CPU: declares {resources['CPU']} CPUs but {machine_type} has {vcpus} vCPUs")
    if attached:
        problems += _gpu_scheduling_problems(where, node_config.get("scheduling"))
    return problems, attached


def _guest_accelerators(where: str, value: Any, problems: list[str]) -> tuple[list[tuple[str, int]], int]:
    """(type, count) of each guestAccelerators entry, and their total; problems appended."""
    if value is None:
        return [], 0
    where = f"{where}.node_config.guestAccelerators"
    if not isinstance(value, list):
        problems.append(f"{where}: must be a list of {{acceleratorType, acceleratorCount}}")
        return [], 0
    listed = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            problems.append(f"{where}[{index}]: must be a mapping with acceleratorType and acceleratorCount")
            continue
        for key in entry:
            if key not in ACCELERATOR_FIELDS:
                problems.append(f"{where}[{index}].{key}: unknown field{_did_you_mean(key, ACCELERATOR_FIELDS)}")
        accelerator_type, count = entry.get("acceleratorType"), entry.get("acceleratorCount")
        if not isinstance(accelerator_type, str) or not accelerator_type:
            problems.append(f"{where}[{index}].acceleratorType: missing (e.g. nvidia-l4)")
            continue
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            problems.append(f"{where}[{index}].acceleratorCount: must be a positive integer, got {count!r}")
            continue
        listed.append((accelerator_type.rsplit("/", 1)[-1], count))
    return listed, sum(count for _, count in listed)


def _gpu_scheduling_problems(where: str, scheduling: Any) -> list[str]:
    where = f"{where}.node_config.scheduling"
    if scheduling is None:
        return [f"{where}: missing; a GPU VM needs `onHostMaintenance: TERMINATE` (GPUs cannot live-migrate)"]
    if not isinstance(scheduling, Mapping):
        return [
            f"{where}: must be a mapping (GCE's Scheduling object), not a {type(scheduling).__name__}; "
            "write `scheduling: {onHostMaintenance: TERMINATE, ...}`"
        ]
    problems = []
    if scheduling.get("onHostMaintenance") != "TERMINATE":
        problems.append(
            f"{where}.onHostMaintenance: must be TERMINATE on a GPU VM, got {scheduling.get('onHostMaintenance')!r}"
        )
    reclaimable = scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True
    if reclaimable and scheduling.get("automaticRestart") is True:
        problems.append(f"{where}.automaticRestart: must be false on spot or preemptible VMs")
    return problems


def _head_problems(
    config: Mapping[str, Any], head: str, node_type: Mapping[str, Any], *, head_has_gpus: bool
) -> list[str]:
    """The head coordinates the study and must not take trials."""
    where = f"available_node_types.{head}.resources"
    resources = node_type.get("resources") if isinstance(node_type.get("resources"), Mapping) else {}
    problems = []
    if resources.get("CPU") != 0 or resources.get("GPU", 0) != 0:
        problems.append(
            f"{where}: the head would take trials; declare `resources: {{CPU: 0}}` so every trial "
            "(which asks for at least one CPU) lands on a worker"
        )
    start = " ".join(map(str, config.get("head_start_ray_commands") or []))
    if "--num-cpus=0" not in start:
        problems.append("head_start_ray_commands: add `--num-cpus=0` to `ray start --head` so the head takes no trials")
    docker = config.get("docker")
    if isinstance(docker, Mapping) and not head_has_gpus:
        head_options = " ".join(
            map(str, list(docker.get("run_options") or []) + list(docker.get("head_run_options") or []))
        )
        if "--gpus" in head_options:
            problems.append(
                "docker.run_options: `--gpus` also reaches the CPU head, where `docker run` fails; "
                "use worker_run_options"
            )
    return problems


def _storage_problems(config: Mapping[str, Any]) -> list[str]:
    """A default study storage on a cloud cluster must be a bucket: trials on every node write to it."""
    problems = []
    for where, value in _strings(config.get("docker") or {}, "docker"):
        for match in STORAGE_SETTING.finditer(value):
            if not match.group(1).startswith("gs://"):
                problems.append(
                    f"{where}: NISCA_STUDIES={match.group(1)} is a folder on one node; trials on other nodes "
                    "cannot write there: use gs://BUCKET/..."
                )
    return problems


def _vcpus(machine_type: str) -> int | None:
    if machine_type in ACCELERATOR_MACHINE_TYPES:
        return ACCELERATOR_MACHINE_TYPES[machine_type][2]
    match = GENERAL_MACHINE_TYPE.match(machine_type)
    return int(match.group(1)) if match else None


# --- local (on-premise) ----------------------------------------------------------------------------


def _local_problems(config: Mapping[str, Any], provider: Mapping[str, Any]) -> list[str]:
    problems = []
    for key in ("available_node_types", "head_node_type", "head_node", "worker_nodes"):
        if key in config:
            problems.append(f"{key}: not used by the local provider (Ray detects each machine's resources); remove it")
    if not isinstance(provider.get("head_ip"), str) or not provider.get("head_ip"):
        problems.append("provider.head_ip: missing; the address of the head machine")
    workers = provider.get("worker_ips")
    if not isinstance(workers, list) or not workers:
        problems.append("provider.worker_ips: missing; a list of worker machine addresses")
    elif isinstance(config.get("max_workers"), int) and config["max_workers"] > len(workers):
        problems.append(f"max_workers: {config['max_workers']} but only {len(workers)} worker_ips are listed")
    return problems


# --- both providers --------------------------------------------------------------------------------


def _secret_problems(config: Mapping[str, Any]) -> list[str]:
    found = []
    for where, value in _strings(config):
        name = where.rsplit(".", 1)[-1]
        if name in SECRET_NAMES and value and not value.startswith("$"):
            found.append((where, name))
        found += [(where, match.group(1)) for match in SECRET_ASSIGNMENT.finditer(value)]
    return [
        f"{where}: {name} is written into the file; take it from the environment or "
        "GCP Secret Manager instead (cluster/README.md)"
        for where, name in found
    ]


def _dashboard_problems(config: Mapping[str, Any]) -> list[str]:
    start = " ".join(map(str, config.get("head_start_ray_commands") or []))
    if re.search(r"--dashboard-host[= ]+0\.0\.0\.0", start):
        return [
            "head_start_ray_commands: --dashboard-host=0.0.0.0 publishes the dashboard (which can run code); "
            "keep it on 127.0.0.1 and use `ray dashboard CLUSTER.yaml`"
        ]
    return []


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every string value with its dotted location."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield where, value


def _did_you_mean(key: str, known: frozenset[str]) -> str:
    lowered = {name.lower(): name for name in known}
    close = difflib.get_close_matches(str(key).lower(), lowered, n=1, cutoff=0.75)
    return f" (did you mean {lowered[close[0]]}?)" if close else ""


def _describe(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    location = "/".join(map(str, getattr(error, "absolute_path", []) or []))
    first_line = str(message).strip().splitlines()[0]
    return f"{location + ': ' if location else ''}{first_line}"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m nisca.cluster_config [--for-launch] FILE...`: print problems; exit 1 if any."""
    parser = argparse.ArgumentParser(prog="python -m nisca.cluster_config", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="cluster YAML files (cluster/gcp.yaml, cluster/local.yaml)")
    parser.add_argument(
        "--for-launch", action="store_true", help="also refuse placeholders such as YOUR_GCP_PROJECT_ID"
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            problems = check_cluster_config(path, for_launch=args.for_launch)
        except ConfigError as error:
            print(f"nisca: error: {error}", file=sys.stderr)
            status = 2
            continue
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            status = max(status, 1)
        else:
            print(f"{path}: ok{' (ready to launch)' if args.for_launch else ''}")
    return status


if __name__ == "__main__":
    sys.exit(main())
