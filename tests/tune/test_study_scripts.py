"""`--smoke` runs of every study script (tiny budgets) on the session's Ray cluster, through the same
`study_main` that `python studies/NAME.py` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nisca.tune.main import builtin_studies, study_main
from nisca.tune.runner import load_spec_record, load_status

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ("synthetic_default", "synthetic_snr", "urban_sweep", "samson_sweep", "latent_dim")


def test_every_study_script_is_a_builtin_study():
    assert {path.stem for path in builtin_studies().values()} >= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_study_script_smoke_run(script, ray_cluster, shared_data, tmp_path, capsys):
    path = REPO / "studies" / f"{script}.py"
    code = study_main(str(path), ["--smoke", "--storage", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    experiments = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(experiments) == 1 and experiments[0].name.endswith("-smoke")
    experiment = experiments[0]
    status = load_status(str(experiment))
    assert status["complete"] and status["trials"]
    assert all(trial["state"] in ("completed", "stopped_early") for trial in status["trials"].values())
    assert any(trial["state"] == "completed" for trial in status["trials"].values())
    record = load_spec_record(str(experiment))
    assert record["spec"]["name"] == experiment.name
    data = json.loads((experiment / "nisca_study" / "data.json").read_text())
    assert all(len(scene["sha256"]) == 64 for scene in data.values())
    versions = json.loads((experiment / "nisca_study" / "environment.json").read_text())
    assert {"python", "torch", "ray", "optuna", "lightning", "nisca"} <= set(versions)
    assert "best trial per method" in out and f"nisca report {experiment}" in out
