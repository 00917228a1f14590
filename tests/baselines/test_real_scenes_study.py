"""studies/real_scenes.py --quick end to end on the shared benchmark files (skipped when absent)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _study():
    spec = importlib.util.spec_from_file_location("real_scenes_study", REPO / "studies" / "real_scenes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.shared_data
def test_quick_run_writes_one_table_per_scene_and_truth_version(shared_data, tmp_path):
    out, csv = tmp_path / "real.md", tmp_path / "rows.csv"
    status = _study().main(
        ["--quick", "--methods", "vca,pca", "--data", str(shared_data), "--out", str(out), "--csv", str(csv)]
    )
    assert status == 0
    text = out.read_text()
    assert "## Samson, ground truth 'original'" in text
    assert "## Samson, ground truth 'misicnet'" in text
    assert "## Urban sub-image 34x78, ground truth '4'" in text
    assert "--quick smoke run" in text
    assert "| vca (reference: VCA + FCLS" in text  # the published figure beside ours
    for method in ("vca", "pca"):
        assert f"\n| {method} | " in text
    import pandas as pd

    rows = pd.read_csv(csv)
    assert len(rows) == 2 * 3  # 2 methods x (Samson x 2 truths + Urban x 1)
    assert rows.armse_pct.between(0, 100).all()
    # the same Samson fit scored against two truths gives two different figures
    samson = rows[(rows.scene == "Samson") & (rows.method == "vca")]
    assert samson.armse_pct.nunique() == 2


def test_unknown_method_is_one_line_error(tmp_path, capsys):
    assert _study().main(["--quick", "--methods", "vca,nope", "--data", str(tmp_path)]) == 2
    assert "unknown method(s) nope" in capsys.readouterr().err


@pytest.mark.shared_data
def test_scene_filter_and_config_overrides(shared_data, tmp_path):
    csv = tmp_path / "rows.csv"
    argv = ["--quick", "--methods", "vasca,vca", "--scenes", "Samson", "--set", "prior=learn",
            "--data", str(shared_data), "--csv", str(csv)]
    assert _study().main(argv) == 0
    import pandas as pd

    rows = pd.read_csv(csv)
    assert set(rows.scene) == {"Samson"} and set(rows.method) == {"vasca", "vca"}
    # the purest-pixel endmembers are scored for the variational method only
    assert rows[rows.method == "vasca"].sad_purest_deg.between(0, 90).all()
    assert rows[rows.method == "vca"].sad_purest_deg.isna().all()
    study = _study()
    assert study.main(["--quick", "--scenes", "Nowhere", "--data", str(shared_data)]) == 2
    assert study.main(["--quick", "--set", "prior", "--data", str(shared_data)]) == 2
    assert study.main(["--quick", "--methods", "vca", "--set", "prior=learn", "--data", str(shared_data)]) == 2
