"""Optional Weights & Biases logging: Ray's own WandbLoggerCallback, one W&B run per trial.

Runs are grouped by study name and log the trial config. No API key is ever read from code or a
config file: W&B takes it from `wandb login` / WANDB_API_KEY in the environment. Without an account,
set WANDB_MODE=offline: runs land in $WANDB_DIR/wandb/offline-run-* and `wandb sync` uploads them
later. wandb is imported only when a study asks for it.
"""

from __future__ import annotations

import os
from typing import Any

from nisca.errors import ConfigError


def wandb_callback(project: str, group: str) -> Any:
    """Ray's WandbLoggerCallback for a study (ConfigError when wandb is missing or not logged in)."""
    try:
        import wandb  # noqa: F401 - checks that the optional dependency is installed
        from ray.air.integrations.wandb import WandbLoggerCallback
    except ImportError:
        raise ConfigError("--wandb needs the wandb package: pip install 'nisca[wandb]'") from None
    os.environ.setdefault("WANDB_SILENT", "true")
    offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun")
    if not offline and not os.environ.get("WANDB_API_KEY") and not _logged_in():
        raise ConfigError(
            "--wandb: no W&B credentials (run `wandb login` or set WANDB_API_KEY in the environment); "
            "to log without an account set WANDB_MODE=offline and `wandb sync` the runs later"
        )
    return WandbLoggerCallback(project=project, group=group, log_config=True, upload_checkpoints=False)


def _logged_in() -> bool:
    netrc = os.path.expanduser("~/.netrc")
    try:
        with open(netrc) as handle:
            return "api.wandb.ai" in handle.read()
    except OSError:
        return False
