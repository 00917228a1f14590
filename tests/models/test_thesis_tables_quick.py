"""studies/thesis_tables.py --quick: runs end to end and prints every thesis table beside the published values."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "thesis_tables.py"


@pytest.fixture(scope="module")
def thesis_tables():
    spec = importlib.util.spec_from_file_location("thesis_tables_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_tables_and_rows(thesis_tables, tmp_path, capsys):
    out = tmp_path / "tables.md"
    assert thesis_tables.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    for table in ("5.1", "5.2", "5.3", "5.4", "5.5"):
        assert f"Table {table}" in text
    assert "[5.43e-03]" in text and "[0.971]" in text  # published values beside ours
    assert "| cnae | not run [0.945] |" in text
    assert "validation loss" in text and "Command:" in text
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(row["method"], row["data"]) for row in rows} == {
        ("nisca", "linear"), ("vasca", "linear"), ("nisca", "nonlinear"), ("vasca", "nonlinear")}
    assert all(0.0 <= float(row["abundance_mse"]) <= 1.0 for row in rows)
    rebuilt = tmp_path / "again.md"
    assert thesis_tables.main(["--quick", "--from-csv", str(out.with_suffix(".csv")), "--out", str(rebuilt)]) == 0
    assert rebuilt.read_text().split("\n", 2)[2] == text.split("\n", 2)[2]


def test_table_cells_report_mean_and_std_over_seeds(thesis_tables):
    rows = [{"method": "nisca", "data": "linear", "snr_db": 10.0, "abundance_mse": value, "subspace_distance": 0.1,
             "r2_nonlinearity": 0.9} for value in (0.01, 0.03)]
    text = thesis_tables.markdown(rows, ["nisca"], [10.0])
    assert "| nisca | 2.00e-02 ± 1.00e-02 [2.82e-02] |" in text


def test_ratio_table_and_merged_runs(thesis_tables):
    """NISCA / VASCA ratios of the mean latent MSE; a later run's row replaces the earlier one's."""
    def row(method, data, seed, mse):
        return {"method": method, "data": data, "snr_db": 20.0, "seed": float(seed), "abundance_mse": mse}

    first = [row("nisca", "linear", 0, 0.04), row("nisca", "linear", 1, 0.04), row("vasca", "linear", 0, 0.02),
             row("vasca", "linear", 1, 0.02), row("nisca", "nonlinear", 0, 0.01), row("vasca", "nonlinear", 0, 0.04)]
    second = [row("nisca", "linear", 0, 0.02), row("nisca", "linear", 1, 0.02)]
    merged = thesis_tables.merge_rows([first, second])
    assert len(merged) == len(first)
    text = thesis_tables.ratio_table(merged, [20.0])
    assert "| linear | 1.00x |" in text and "| nonlinear | 0.25x |" in text
    assert "| linear | 2.00x |" in thesis_tables.ratio_table(first, [20.0])
    assert thesis_tables.ratio_table(second, [20.0]) == ""  # no VASCA rows: no ratio table


def test_channel_noise_variant_with_overrides_and_classic_rows(thesis_tables, tmp_path):
    out = tmp_path / "channel.md"
    argv = ["--quick", "--methods", "nisca", "vca", "--noise-reference", "channel", "--set", "noise=learn",
            "--set", "patience=2", "--out", str(out)]
    assert thesis_tables.main(argv) == 0
    text = out.read_text()
    assert "noise reference 'channel'" in text and "noise=learn, patience=2" in text
    assert "Per-channel SNR of the nonlinear scenes" in text
    snr_line = next(line for line in text.splitlines() if line.startswith("- 20 dB: seed 0:"))
    assert all(abs(float(v) - 20.0) <= 1.0 for v in snr_line.split(": ")[-1].split(" / "))
    with out.with_suffix(".csv").open() as handle:
        methods = {row["method"] for row in csv.DictReader(handle)}
    assert methods == {"nisca", "vca"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        thesis_tables.main(["--quick", "--set", "noise"])
    with pytest.raises(SystemExit, match="'noize' belong to none of the methods"):
        thesis_tables.main(["--quick", "--set", "noize=learn"])


def test_original_generator_on_nonlinear_data_only(thesis_tables, tmp_path):
    """--generator original --data nonlinear: one kind of data, the original code's f on every channel."""
    out = tmp_path / "original.md"
    assert thesis_tables.main(["--quick", "--methods", "vca", "--generator", "original", "--data", "nonlinear",
                               "--out", str(out)]) == 0
    assert "nonlinear = 'original'" in out.read_text()
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["data"]) for row in rows] == [("vca", "nonlinear")]
    scene = thesis_tables.make_scene("nonlinear", 20.0, 0, 300, "total", "original")
    assert scene.truth.nonlinearity == "original"
