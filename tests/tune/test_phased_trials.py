"""A fit that trains more than once (linear_first, refinement, restarts) runs as one Tune trial that
reports once, at the end, with the metrics of every phase; an ordinary trial reports every epoch."""

from __future__ import annotations

import pytest

from nisca.tune.runner import load_status, run_study
from nisca.tune.spec import StudySpec

TINY = {"encoder_hidden": [16], "inference_samples": 4, "nonlinearity_hidden": 8, "batch_size": 50}


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
    by_method = {result.config["method"]: result for result in results}  # every report: Ray's metrics_dataframe
    phased, plain = by_method["nisca"].metrics_dataframe, by_method["vasca"].metrics_dataframe
    assert len(phased) == 1 and phased["completed"].iloc[0] == 1
    final = phased.iloc[0]
    assert final["nonlinearity_kept"] in (0.0, 1.0)
    assert final["val_loss"] == pytest.approx(min(final["val_loss_linear_refined"], final["val_loss_nonlinear_refined"]))
    assert plain["completed"].tolist() == [0, 0, 0, 1]  # 3 epochs, then the end
    states = {t["method"]: t["state"] for t in load_status(str(tmp_path / "phased"))["trials"].values()}
    assert states == {"nisca": "completed", "vasca": "completed"}
