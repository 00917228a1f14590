"""The DCE-MRI sweep: its phantom scene kind, and a `--smoke` run on the session's Ray cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nisca.errors import ConfigError
from nisca.tune.main import builtin_studies, study_main
from nisca.tune.runner import load_status
from nisca.tune.spec import build_scene

REPO = Path(__file__).resolve().parents[2]
SMALL = {"shape": [12, 12, 2], "frames": 20, "snr_db": None, "seed": 2}


def test_dce_phantom_scene_kind_in_both_domains():
    signal = build_scene("sig", {"dce_phantom": SMALL})
    conc = build_scene("conc", {"dce_phantom": {**SMALL, "domain": "concentration"}})
    assert signal.name == "sig" and signal.axis_name == conc.axis_name == "time_s"
    assert signal.Y.shape == conc.Y.shape and signal.truth.nonlinearity == "spgr"
    np.testing.assert_array_equal(signal.truth.abundances, conc.truth.abundances)
    # noiseless concentrations mix linearly: Y = fractions @ class curves (recovered by least squares)
    curves, residual, *_ = np.linalg.lstsq(conc.truth.abundances, conc.Y, rcond=None)
    assert np.sqrt(residual.sum() / conc.Y.size) < 1e-3 * np.abs(conc.Y).max()
    assert conc.provenance["preprocessing"][-1]["step"] == "signal_to_concentration"
    assert build_scene("sub", {"dce_phantom": SMALL, "max_pixels": 50}).n_pixels == 50


@pytest.mark.parametrize(("value", "words"), [({"domain": "logs"}, "domain must be"),
                                              ({"flavour": 1}, "bad dce_phantom arguments"),
                                              ([1, 2], "as a mapping")])
def test_bad_dce_phantom_scenes_are_refused(value, words):
    with pytest.raises(ConfigError, match=words):
        build_scene("bad", {"dce_phantom": value})


def test_dce_sweep_smoke_run(ray_cluster, tmp_path, capsys):
    assert builtin_studies()["dce-mri-sweep"] == REPO / "studies" / "dce_mri_sweep.py"
    code = study_main(str(REPO / "studies" / "dce_mri_sweep.py"), ["--smoke", "--storage", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    (experiment,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert experiment.name == "dce-mri-sweep-smoke"
    status = load_status(str(experiment))
    assert status["complete"] and len(status["trials"]) == 4  # 2 scenes x (nisca, vca) at K = 4
    assert all(trial["state"] == "completed" for trial in status["trials"].values())
    data = json.loads((experiment / "nisca_study" / "data.json").read_text())
    assert set(data) == {"fast-25db-signal-small", "fast-25db-concentration-small"}
    assert all(scene["channels"] == 30 and scene["truth_k"] == 4 for scene in data.values())
    assert "abundance_rmse at K = 4" in out
    results = [json.loads(line) for path in experiment.glob("*/result.json") for line in path.read_text().splitlines()]
    finals = [r for r in results if r.get("completed") == 1]
    assert len(finals) == 4 and all(0 <= r["abundance_rmse"] < 0.5 for r in finals)
