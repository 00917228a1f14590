"""`nisca data list | fetch | import | info | build-urban` through the real entry point."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from nisca.cli import main
from nisca.data import catalog, io

QIBA_V6 = "dce_mri/qiba_v6_tofts/qiba-v6-tofts"


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NISCA_DATA", str(tmp_path / "nisca-cache"))


def run(capsys, *argv):
    code = main(["data", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *words):
    """Exit 2 and the error as the one last line of stderr (progress lines may come before it)."""
    assert code == 2
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("nisca: error: ")]
    assert errors == lines[-1:] and "Traceback" not in err, err
    for word in words:
        assert word in errors[0], errors[0]


def test_list_shows_every_entry(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    for name in ("samson", "jasper", "urban", "cuprite", "apex", "wdc"):
        assert any(line.startswith(name) and "not cached" in line for line in out.splitlines())
    assert "4,5,6" in out


def test_info_on_samson(capsys, shared_data):
    path = shared_data / "hyperspectral" / "Samson.npz"
    code, out, _ = run(capsys, "info", path)
    assert code == 0
    summary = json.loads(out)
    assert (summary["pixels"], summary["channels"]) == (9025, 156)
    assert summary["geometry"] == {"kind": "image", "rows": 95, "cols": 95}
    assert summary["truth"]["K"] == 3 and summary["truth"]["versions"] == ["original", "misicnet"]
    assert summary["sha256"] == io.sha256sum(path) and summary["axis"]["name"] == "wavelength_nm"


def test_info_on_a_masked_volume(capsys, shared_data):
    code, out, _ = run(capsys, "info", shared_data / f"{QIBA_V6}_dce.nii.gz",
                       "--mask", shared_data / f"{QIBA_V6}_label-tissue_mask.nii.gz")
    summary = json.loads(out)
    assert code == 0 and summary["pixels"] == 3000 and summary["channels"] == 1321
    assert summary["geometry"]["kind"] == "volume" and summary["geometry"]["volume_shape"] == [50, 80, 1]
    assert summary["geometry"]["voxel_size"] == [1.0, 1.0, 5.0]
    assert summary["axis"] == {"name": "time_s", "first": 0.0, "last": 660.0} and summary["truth"] is None


def test_info_errors_are_one_line(capsys, tmp_path, shared_data):
    code, _, err = run(capsys, "info", tmp_path / "absent.npz")
    assert_one_line_error(code, err, "absent.npz", "file not found")
    broken = tmp_path / "broken.npz"
    broken.write_bytes((shared_data / "hyperspectral" / "Samson.npz").read_bytes()[:5000])
    code, _, err = run(capsys, "info", broken)
    assert_one_line_error(code, err, "broken.npz", "truncated or corrupt")
    code, _, err = run(capsys, "info", shared_data / "hyperspectral" / "Urban_groundtruth.npz")
    assert_one_line_error(code, err, "ground truth only")
    code, _, err = run(capsys, "info", shared_data / f"{QIBA_V6}_dce.nii.gz",
                       "--mask", shared_data / "dce_mri/qiba_v4_etofts/qiba-v4-etofts_label-tissue_mask.nii.gz")
    assert_one_line_error(code, err, "differs from the volume shape")


def test_fetch_offline_and_unknown_names(capsys, monkeypatch):
    entry = catalog.CATALOG["samson"]
    monkeypatch.setitem(catalog.CATALOG, "samson", dataclasses.replace(entry, files=tuple(
        dataclasses.replace(f, url="http://127.0.0.1:9/" + f.filename) for f in entry.files)))
    code, _, err = run(capsys, "fetch", "samson", "--timeout", "2")
    assert_one_line_error(code, err, "could not download", "nisca data import samson FILE")
    code, _, err = run(capsys, "fetch", "indian_pines")
    assert_one_line_error(code, err, "unknown scene 'indian_pines'", "samson, jasper, urban, cuprite, apex, wdc")


def test_import_then_list_and_load(capsys, shared_data):
    code, out, err = run(capsys, "import", "samson", shared_data / "hyperspectral" / "Samson.npz")
    assert code == 0 and out.strip().endswith("samson.npz") and "sha256" in err
    code, out, _ = run(capsys, "list")
    assert any(line.startswith("samson") and " cached" in line for line in out.splitlines())
    assert catalog.load_catalog_scene("samson").n_pixels == 9025


def test_build_urban(capsys, tmp_path, shared_data):
    out_file = tmp_path / "urban5.npz"
    code, out, _ = run(capsys, "build-urban", "--latent-dim", 5, "--snr", 25, "--nonlinearity", "thesis",
                       "--seed", 0, "--out", out_file, "--crop", 10, 12,
                       "--ground-truth", shared_data / "hyperspectral" / "Urban_groundtruth.npz")
    assert code == 0 and json.loads(out)["pixels"] == 120
    scene = io.load_scene(out_file)
    assert scene.Y.shape == (120, 162) and scene.truth.label == "urban-semireal-K5"
    assert scene.truth.linear_mixture.shape == (120, 162) and scene.truth.nonlinearity == "thesis"
    assert scene.provenance["snr_db"] == 25.0 and scene.provenance["seed"] == 0
    code, out, _ = run(capsys, "info", out_file)
    assert json.loads(out)["truth"]["K"] == 5


def test_build_urban_bad_inputs(capsys, tmp_path, shared_data):
    gt = shared_data / "hyperspectral" / "Urban_groundtruth.npz"
    code, _, err = run(capsys, "build-urban", "--out", tmp_path / "x.csv", "--ground-truth", gt)
    assert_one_line_error(code, err, "x.csv")
    code, _, err = run(capsys, "build-urban", "--out", tmp_path / "x.npz", "--ground-truth", tmp_path / "gt.npz")
    assert_one_line_error(code, err, "Urban ground truth not found", "nisca data fetch urban")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "build-urban", "--latent-dim", "3", "--out", str(tmp_path / "x.npz")])
    assert exit_info.value.code == 2
    assert not np.any([p.name == "x.npz" for p in tmp_path.iterdir()])
