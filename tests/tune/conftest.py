"""One Ray for the whole tests/tune session: a local multi-node cluster (head + two 1-CPU workers).

The head takes no trials (num_cpus=0), so every trial runs on a worker node and a test can remove one
mid-study. RAY_TMPDIR and HOME point at temporary folders: tests leave nothing in the user's home.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_env(tmp_path_factory) -> dict[str, str]:
    """Environment for Ray processes (also for driver subprocesses): private temp and home folders.

    RAY_TMPDIR is a short folder directly under the system temp: Ray's socket paths must stay
    under 108 bytes."""
    base = tmp_path_factory.mktemp("ray-session")
    short = Path(tempfile.mkdtemp(prefix="nray-"))
    env = {
        "RAY_TMPDIR": str(short),
        "HOME": str(base / "home"),
        "NISCA_DATA": str(base / "home" / "nisca-cache"),
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(base / "home"),
        "RAY_AIR_NEW_OUTPUT": "0",
    }
    for value in (env["RAY_TMPDIR"], env["HOME"]):
        Path(value).mkdir(parents=True, exist_ok=True)
    yield env
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_cluster(ray_env):
    """A head (no CPUs for trials) and two 1-CPU worker nodes; ray.init() joined to it."""
    saved = {key: os.environ.get(key) for key in ray_env}
    os.environ.update(ray_env)
    import nisca.tune  # noqa: F401 - sets the quiet environment before Ray is imported
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="warning")
    yield cluster
    del workers
    ray.shutdown()
    cluster.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def subprocess_env(ray_env) -> dict[str, str]:
    """The environment for a study driver run as a subprocess (its own embedded Ray)."""
    env = dict(os.environ)
    env.update(ray_env)
    env["RAY_TMPDIR"] = ray_env["RAY_TMPDIR"] + "/sub"
    Path(env["RAY_TMPDIR"]).mkdir(parents=True, exist_ok=True)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
