"""The benchmark catalog: entries, cache, fetch failing fast without network, import of local files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.io

from nisca.data import catalog, io
from nisca.errors import DataError

ROWS, COLS, BANDS = 4, 6, 7


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    """Each test gets its own empty cache."""
    monkeypatch.setenv("NISCA_DATA", str(tmp_path / "nisca-cache"))


def column_major(maps):
    """(rows, cols, X) -> MATLAB's X x pixels with pixel index r + rows*c."""
    rows, cols, depth = maps.shape
    return maps.transpose(1, 0, 2).reshape(rows * cols, depth).T


def fake_benchmark(folder, K=3, seed=0):
    """Abundance maps, endmembers and the image they make, in row-major numpy form."""
    rng = np.random.default_rng(seed)
    maps = rng.dirichlet(np.ones(K), size=(ROWS, COLS))
    E = rng.uniform(0.05, 0.6, size=(BANDS, K))
    folder.mkdir(parents=True, exist_ok=True)
    return maps, E, maps @ E.T


def test_entries_are_complete():
    assert set(catalog.CATALOG) == {"samson", "jasper", "urban", "cuprite", "apex", "wdc"}
    for entry in catalog.CATALOG.values():
        assert entry.page.startswith("https://") and entry.licence and entry.description
        assert sum(f.role == "image" for f in entry.files) == 1
        assert all(f.url is None or f.url.startswith("https://") for f in entry.files)
    assert catalog.entry("urban").truth_versions == ["4", "5", "6"]
    assert catalog.entry("samson").truth_versions == ["original", "misicnet"]


def test_unknown_scene_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown scene 'indian_pines'; known scenes: samson, jasper, urban"):
        catalog.entry("indian_pines")
    with pytest.raises(DataError, match="known scenes"):
        catalog.load_catalog_scene("indian_pines")


def test_cache_location_follows_nisca_data(tmp_path, monkeypatch):
    monkeypatch.setenv("NISCA_DATA", str(tmp_path / "cache"))
    assert catalog.cache_dir() == tmp_path / "cache"
    assert catalog.scene_path("Samson") == tmp_path / "cache" / "samson.npz"
    monkeypatch.delenv("NISCA_DATA")
    assert catalog.cache_dir().parts[-2:] == (".cache", "nisca")


def test_missing_scene_says_how_to_get_it():
    assert catalog.available_scene("samson") is None
    with pytest.raises(DataError) as error:
        catalog.load_catalog_scene("samson")
    message = str(error.value)
    assert "nisca data fetch samson" in message and "nisca data import samson FILE" in message
    assert "Samson_GT.mat" in message


def test_fetch_without_network_fails_with_import_instructions(monkeypatch):
    entry = catalog.CATALOG["jasper"]
    offline = dataclasses.replace(entry, files=tuple(
        dataclasses.replace(f, url="http://127.0.0.1:9/" + f.filename) for f in entry.files))
    monkeypatch.setitem(catalog.CATALOG, "jasper", offline)
    messages = []
    with pytest.raises(DataError) as error:
        catalog.fetch("jasper", timeout=2.0, log=messages.append)
    message = str(error.value)
    assert "could not download http://127.0.0.1:9/" in message
    assert "nisca data import jasper FILE" in message and "no network?" in message
    assert not list(catalog.source_dir("jasper").glob("*.part"))  # no half-written file left behind


def test_fetch_of_an_entry_without_image_link_says_so(monkeypatch, tmp_path):
    entry = catalog.CATALOG["wdc"]
    # The ground-truth files are "downloaded" from local file URLs; the image has no public link.
    files = []
    for source in entry.files:
        if source.url is not None:
            local = tmp_path / source.filename
            scipy.io.savemat(local, {"E": np.ones((BANDS, 2))} if source.filename == "E.mat"
                             else {"A_true": np.full((ROWS, COLS, 2), 0.5)})
            source = dataclasses.replace(source, url=local.as_uri())
        files.append(source)
    monkeypatch.setitem(catalog.CATALOG, "wdc", dataclasses.replace(entry, files=tuple(files)))
    messages = []
    with pytest.raises(DataError, match="cannot be downloaded automatically.*nisca data import wdc"):
        catalog.fetch("wdc", log=messages.append)
    assert (catalog.source_dir("wdc") / "E.mat").is_file()
    assert any("not verified" in m and "sha256" in m for m in messages)


def test_checksum_mismatch_removes_the_file(monkeypatch, tmp_path):
    entry = catalog.CATALOG["jasper"]
    local = tmp_path / "jasperRidge2_R198.mat"
    scipy.io.savemat(local, {"Y": np.ones((BANDS, ROWS * COLS)), "nRow": ROWS, "nCol": COLS})
    image = dataclasses.replace(entry.image, expected_sha256="0" * 64)
    monkeypatch.setitem(catalog.CATALOG, "jasper", dataclasses.replace(entry, files=(image,)))
    with pytest.raises(DataError, match="checksum mismatch"):
        catalog.import_files("jasper", [local], log=lambda m: None)
    assert not (catalog.source_dir("jasper") / "jasperRidge2_R198.mat").exists()


def test_import_samson_from_mat_files_with_both_truths(tmp_path):
    maps, E, cube = fake_benchmark(tmp_path / "download")
    maps2 = np.roll(maps, 1, axis=2)  # a second, different ground truth
    d = tmp_path / "download"
    scipy.io.savemat(d / "samson_1.mat", {"V": column_major(cube), "nRow": ROWS, "nCol": COLS, "nBand": BANDS})
    scipy.io.savemat(d / "Samson_GT.mat", {"M": E, "A": column_major(maps),
                                            "cood": np.array(["1-rock", "2-Tree", "3-water"], dtype=object)})
    scipy.io.savemat(d / "E.mat", {"E": 2 * E})
    scipy.io.savemat(d / "A_true.mat", {"A_true": maps2})  # rows x cols x K, as MiSiCNet stores it
    messages = []
    path = catalog.import_files("samson", [d / "samson_1.mat", d / "Samson_GT.mat", d / "E.mat", d / "A_true.mat"],
                                log=messages.append)
    assert path == catalog.available_scene("samson")
    assert any("taken as the image" in m for m in messages)
    scene = catalog.load_catalog_scene("samson")
    np.testing.assert_allclose(scene.Y, cube.reshape(-1, BANDS), rtol=1e-6)
    np.testing.assert_allclose(scene.truth.abundances, maps.reshape(-1, 3), atol=1e-6)
    np.testing.assert_allclose(scene.truth.endmembers, E, rtol=1e-6)
    assert scene.truth.label == "original" and scene.provenance["endmember_names"][0] == "1-rock"
    assert io.truth_versions(path) == ["original", "misicnet"]
    other = catalog.load_catalog_scene("samson", truth_version="misicnet")
    np.testing.assert_allclose(other.truth.abundances, maps2.reshape(-1, 3), atol=1e-6)
    np.testing.assert_allclose(other.truth.endmembers, 2 * E, rtol=1e-6)
    assert set(scene.provenance["source_files"]) == {"Samson.mat", "Samson_GT.mat", "E.mat", "A_true.mat"}
    assert [row["cached"] for row in catalog.catalog_status() if row["name"] == "samson"] == [True]


def test_import_urban_with_three_ground_truths_and_y_scale(tmp_path):
    d = tmp_path / "download"
    truths = {K: fake_benchmark(d, K=K, seed=K) for K in (4, 5, 6)}
    maps, E, cube = truths[4]
    scipy.io.savemat(d / "Urban_R162.mat", {"Y": column_major(1000 * cube), "nRow": ROWS, "nCol": COLS})
    files = [d / "Urban_R162.mat"]
    for K, (maps_k, E_k, _) in truths.items():
        scipy.io.savemat(d / f"end{K}_groundTruth.mat", {"M": E_k, "A": column_major(maps_k), "nEnd": K,
                                                          "nRow": ROWS, "nCol": COLS})
        files.append(d / f"end{K}_groundTruth.mat")
    catalog.import_files("urban", files, log=lambda m: None)
    scene = catalog.load_catalog_scene("urban")
    assert scene.truth.label == "4" and scene.provenance["y_scale"] == 1000.0
    np.testing.assert_allclose(scene.Y / scene.provenance["y_scale"], scene.truth.abundances @ E.T, atol=1e-5)
    for K in (5, 6):
        other = catalog.load_catalog_scene("urban", truth_version=str(K))
        np.testing.assert_allclose(other.truth.abundances, truths[K][0].reshape(-1, K), atol=1e-6)


def test_import_with_missing_truth_files_converts_what_is_there(tmp_path):
    d = tmp_path / "download"
    _, _, cube = fake_benchmark(d)
    scipy.io.savemat(d / "jasperRidge2_R198.mat", {"Y": column_major(cube), "nRow": ROWS, "nCol": COLS,
                                                    "maxValue": 4000.0})
    messages = []
    catalog.import_files("jasper", [d / "jasperRidge2_R198.mat"], log=messages.append)
    scene = catalog.load_catalog_scene("jasper")
    assert scene.truth is None and scene.provenance["y_scale"] == 4000.0
    assert any("ground truth 'original' skipped, missing Jasper_GT.mat" in m for m in messages)


def test_import_needs_the_image(tmp_path):
    d = tmp_path / "download"
    maps, E, _ = fake_benchmark(d)
    scipy.io.savemat(d / "Jasper_GT.mat", {"M": E, "A": column_major(maps), "nRow": ROWS, "nCol": COLS})
    with pytest.raises(DataError, match="image file jasperRidge2_R198.mat is still missing"):
        catalog.import_files("jasper", [d / "Jasper_GT.mat"], log=lambda m: None)
    with pytest.raises(DataError, match="file not found"):
        catalog.import_files("jasper", [d / "absent.mat"], log=lambda m: None)


def test_import_a_ready_scene_file(shared_data):
    path = catalog.import_files("samson", [shared_data / "hyperspectral" / "Samson.npz"], log=lambda m: None)
    scene = catalog.load_catalog_scene("samson", truth_version="misicnet")
    assert path.name == "samson.npz" and scene.n_pixels == 9025 and scene.truth.label == "misicnet"


def test_shared_data_dir_is_the_environment_variable_else_the_folder_beside_the_repository(monkeypatch, tmp_path):
    from pathlib import Path

    from nisca.data.catalog import shared_data_dir

    monkeypatch.setenv("NISCA_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    monkeypatch.delenv("NISCA_SHARED_DATA")
    repository = Path(__file__).resolve().parents[2]
    assert shared_data_dir() == repository.parent / "shared" / "data"
