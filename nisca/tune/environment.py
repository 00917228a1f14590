"""Where a study runs and what it ran with: quiet Ray start-up, connection, versions.

`connect()` starts an embedded Ray (no cluster, no account) or joins an existing one
(`--address auto`, `ray://host:10001`, or the RAY_ADDRESS that `ray job submit` sets). Output is
kept quiet the way STACK.md describes (old console reporter, loggers at WARNING) without hiding
errors: trial output still reaches the driver and failures are printed in full.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from importlib import metadata

# Set before Ray is imported anywhere: they are read at import / init time.
QUIET_ENVIRONMENT = {
    "RAY_AIR_NEW_OUTPUT": "0",  # the compact classic reporter instead of the verbose new one
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "WANDB_SILENT": "true",
    "RAY_DEDUP_LOGS": "1",
}
NOISY_LOGGERS = ("ray", "ray.tune", "ray.train", "ray.data", "lightning", "lightning.pytorch", "lightning.fabric",
                 "pytorch_lightning", "optuna", "filelock")
VERSIONED_PACKAGES = ("nisca", "torch", "lightning", "ray", "optuna", "optuna-integration", "numpy", "scipy",
                      "scikit-learn", "pandas", "wandb")


def quiet_environment() -> None:
    """Set the quiet-output environment variables (only where the user has not set them)."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def quiet_loggers() -> None:
    """Library loggers at WARNING: progress chatter goes, warnings and errors stay."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    import optuna  # a pinned dependency of the project

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Connection:
    """What `connect` joined: 'embedded' (started here), 'existing' (a running cluster) or 'reused'."""

    kind: str
    address: str
    dashboard_url: str | None
    num_cpus: float
    num_gpus: float


def connect(address: str | None = None, *, num_cpus: int | None = None, dashboard: bool | None = None) -> Connection:
    """Join or start Ray. address None: RAY_ADDRESS when set (ray job submit), else an embedded Ray."""
    quiet_environment()
    quiet_loggers()
    import ray

    if ray.is_initialized():
        context = ray.get_runtime_context()
        return _connection("reused", context.gcs_address, None)
    target = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"logging_level": logging.WARNING, "configure_logging": True}
    if target is None:
        kwargs.update(num_cpus=num_cpus, include_dashboard=dashboard)
        context = ray.init(**kwargs)
        kind = "embedded"
    else:
        context = ray.init(address=target, **kwargs)
        kind = "existing"
    quiet_loggers()
    url = getattr(context, "dashboard_url", None) or None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return _connection(kind, getattr(context, "address_info", {}).get("gcs_address", target or "local"), url)


def _connection(kind: str, address: str, dashboard_url: str | None) -> Connection:
    import ray

    resources = ray.cluster_resources()
    return Connection(kind, str(address), dashboard_url, float(resources.get("CPU", 0)), float(resources.get("GPU", 0)))


def disconnect(connection: Connection) -> None:
    """Shut Ray down only when this process started or joined it (a reused session stays up)."""
    import ray

    if connection.kind != "reused" and ray.is_initialized():
        ray.shutdown()


def environment_versions() -> dict[str, str]:
    """Python, platform and the versions of the packages a study depends on (a pip-freeze-lite)."""
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        import torch

        versions["cuda"] = str(torch.version.cuda) if torch.cuda.is_available() else "none"
    except ImportError:
        versions["cuda"] = "none"
    return versions
