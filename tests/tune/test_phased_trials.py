"""A fit that trains more than once (linear_first, refinement, restarts) runs as one Tune trial that
reports once, at the end, with the metrics of every phase; an ordinary trial reports every epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nisca.tune.runner import load_status, run_study
from nisca.tune.spec import StudySpec

TINY = {"encoder_hidden": [16], "inference_samples": 4, "nonlinearity_hidden": 8, "batch_size": 50}


def reports(experiment: Path) -> dict[str, list[dict]]:
    """Every report of every trial, keyed by the trial's method, read from Ray's result.json files."""
    out = {}
    for path in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[rows[0]["config"]["method"]] = rows
    return out


def test_phased_trial_reports_once_with_the_metrics_of_both_phases(ray_cluster, tmp_path):
    spec = StudySpec(
        name="phased",
        scenes={"syn": {"synthetic": {"channels": 6, "latent_dim": 3, "samples": 300, "snr_db": 20.0, "seed": 0}}},
        methods={"nisca": {**TINY, "linear_first": True, "refine_epochs": 2},
                 "vasca": {key: value for key, value in TINY.items() if key != "nonlinearity_hidden"}},
        searcher="grid", scheduler="none", num_samples=1, max_epochs=3, max_failures=0,
    )
    results = run_study(spec, storage=str(tmp_path), verbose=0)
    assert results.num_errors == 0
    rows = reports(tmp_path / "phased")
    phased, plain = rows["nisca"], rows["vasca"]
    assert len(phased) == 1 and phased[0]["completed"] == 1
    final = phased[0]
    assert final["nonlinearity_kept"] in (0.0, 1.0)
    assert final["val_loss"] == pytest.approx(min(final["val_loss_linear_refined"], final["val_loss_nonlinear_refined"]))
    assert len(plain) == 4 and [row["completed"] for row in plain] == [0, 0, 0, 1]  # 3 epochs, then the end
    states = {t["method"]: t["state"] for t in load_status(str(tmp_path / "phased"))["trials"].values()}
    assert states == {"nisca": "completed", "vasca": "completed"}
