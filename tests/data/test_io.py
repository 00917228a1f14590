"""Reading and writing scene files: the shared benchmarks, MATLAB layouts, NIfTI volumes, round trips."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from nisca.data import io
from nisca.data.scene import ImageGeometry, Scene, Truth, VolumeGeometry

HYPERSPECTRAL_SCENES = ("Samson.npz", "Urban_subimage_34x78.npz")
GROUND_TRUTH_ONLY = ("Urban_groundtruth.npz", "APEX_groundtruth.npz", "WDC_groundtruth.npz",
                     "Cuprite_groundtruth.npz")
QIBA_V6 = "dce_mri/qiba_v6_tofts/qiba-v6-tofts"


def write_mat73(path, variables):
    """A MATLAB v7.3 file: HDF5 after a 512-byte user block whose header says version 0x0200, every
    array stored transposed (MATLAB is column-major), MATLAB_class attributes set."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, value in variables.items():
            array = np.atleast_2d(np.asarray(value, dtype=np.float64))
            dataset = handle.create_dataset(key, data=array.T)
            dataset.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116, b" ")
    with open(path, "r+b") as handle:
        handle.write(header + b"\x00" * 8 + b"\x00\x02" + b"IM")


def image_cube(rows=4, cols=6, bands=5):
    """An image whose every (row, col, band) value is distinct, so any transposition shows."""
    r, c, b = np.meshgrid(np.arange(rows), np.arange(cols), np.arange(bands), indexing="ij")
    return (100.0 * r + 10.0 * c + b + 1.0).astype(np.float64)


def matlab_bands_by_pixels(cube):
    """MATLAB's Y = reshape(cube, [], bands)': bands x pixels, pixel index r + rows*c."""
    rows, cols, bands = cube.shape
    return cube.transpose(1, 0, 2).reshape(rows * cols, bands).T


# ----------------------------------------------------------------------------------------- shared data
@pytest.mark.parametrize("filename", HYPERSPECTRAL_SCENES)
def test_shared_hyperspectral_scenes_load_with_truth(shared_data, filename):
    path = shared_data / "hyperspectral" / filename
    raw = np.load(path)
    scene = io.load_scene(path)
    assert scene.Y.shape == raw["Y"].shape and scene.Y.dtype == np.float32
    np.testing.assert_array_equal(scene.Y, raw["Y"])
    assert isinstance(scene.geometry, ImageGeometry)
    assert (scene.geometry.rows, scene.geometry.cols) == (int(raw["rows"]), int(raw["cols"]))
    np.testing.assert_array_equal(scene.truth.abundances, raw["A"].T)
    np.testing.assert_array_equal(scene.truth.endmembers, raw["E"])
    assert scene.provenance["sha256"] == io.sha256sum(path) and len(scene.provenance["sha256"]) == 64
    assert scene.provenance["format"] == "npz" and scene.provenance["preprocessing"] == []


def test_samson_truth_versions(shared_data):
    path = shared_data / "hyperspectral" / "Samson.npz"
    assert io.truth_versions(path) == ["original", "misicnet"]
    raw = np.load(path)
    original = io.load_scene(path)
    misicnet = io.load_scene(path, truth_version="misicnet")
    assert original.truth.label == "original" and misicnet.truth.label == "misicnet"
    np.testing.assert_array_equal(misicnet.truth.abundances, raw["A_misicnet"].T)
    np.testing.assert_array_equal(misicnet.truth.endmembers, raw["E_misicnet"])
    assert original.axis_name == "wavelength_nm" and 400 < original.axis[0] < original.axis[-1] < 900
    assert original.provenance["endmember_names"] == ["1-rock", "2-Tree", "3-water"]


def test_samson_pixel_order_fits_truth_better_than_transposed(shared_data):
    """Guards against a transposition bug: Y ~ A E' fits the loaded layout far better than the transposed."""
    scene = io.load_scene(shared_data / "hyperspectral" / "Samson.npz", truth_version="misicnet")
    rows, cols = scene.geometry.rows, scene.geometry.cols
    transposed = scene.Y.reshape(rows, cols, -1).transpose(1, 0, 2).reshape(rows * cols, -1)
    A = scene.truth.abundances.astype(np.float64)

    def relative_residual(Y):
        E, *_ = np.linalg.lstsq(A, Y, rcond=None)
        return np.linalg.norm(Y - A @ E) / np.linalg.norm(Y)

    assert relative_residual(scene.Y) < 0.5 * relative_residual(transposed)


def test_urban_subimage_truth_versions_4_5_6(shared_data):
    path = shared_data / "hyperspectral" / "Urban_subimage_34x78.npz"
    assert io.truth_versions(path) == ["4", "5", "6"]
    for K in (4, 5, 6):
        scene = io.load_scene(path, truth_version=str(K))
        assert scene.truth.n_components == K and scene.truth.label == str(K)
    assert io.load_scene(path).truth.label == "4"  # E/A repeat E4/A4: the primary version is "4"


@pytest.mark.parametrize("filename", GROUND_TRUTH_ONLY)
def test_ground_truth_files_load_as_truth_and_not_as_scene(shared_data, filename):
    path = shared_data / "hyperspectral" / filename
    raw = np.load(path)
    with pytest.raises(io.DataError, match="ground truth only"):
        io.load_scene(path)
    versions = io.truth_versions(path)
    assert versions
    truth = io.load_ground_truth(path, versions[0])
    E_key = "E" if "E" in raw.files else f"E{versions[0]}"
    np.testing.assert_array_equal(truth.endmembers, raw[E_key])
    if truth.abundances is not None:
        assert truth.abundances.shape == (int(raw["rows"]) * int(raw["cols"]), truth.endmembers.shape[1])
        np.testing.assert_allclose(truth.abundances.sum(axis=1), 1.0, atol=1e-3)


def test_urban_ground_truth_versions(shared_data):
    path = shared_data / "hyperspectral" / "Urban_groundtruth.npz"
    assert io.truth_versions(path) == ["4", "5", "6"]
    assert io.load_ground_truth(path, "6").endmembers.shape == (162, 6)
    assert io.ground_truth_names(path, "5")[-1] == "5-Dirt"
    assert io.image_shape(path) == (307, 307)


def test_qiba_v6_volume_with_tissue_mask(shared_data):
    dce = shared_data / f"{QIBA_V6}_dce.nii.gz"
    mask_path = shared_data / f"{QIBA_V6}_label-tissue_mask.nii.gz"
    mask = np.asarray(nib.load(mask_path).dataobj) > 0
    scene = io.load_scene(dce, mask=mask_path)
    assert scene.n_pixels == int(mask.sum()) and scene.n_channels == 1321
    sidecar = json.loads((shared_data / f"{QIBA_V6}_dce.json").read_text())
    np.testing.assert_allclose(scene.axis, sidecar["VolumeTiming"])
    assert scene.axis_name == "time_s" and "VolumeTiming" in scene.provenance["frame_times"]
    volume = np.asarray(nib.load(dce).dataobj)
    np.testing.assert_array_equal(scene.Y, volume[mask].astype(np.float32))  # C order inside the mask
    geometry = scene.geometry
    assert isinstance(geometry, VolumeGeometry) and geometry.volume_shape == (50, 80, 1)
    np.testing.assert_allclose(geometry.affine, nib.load(dce).affine)
    assert scene.provenance["mask_sha256"] == io.sha256sum(mask_path)


@pytest.mark.parametrize("acquisition", ["qiba_v4_etofts/qiba-v4-etofts",
                                         "qiba_v9_tofts_6s/qiba-v9-tofts_acq-S0-500-sigma-5"])
def test_other_qiba_volumes_with_their_masks(shared_data, acquisition):
    folder = shared_data / "dce_mri" / acquisition.split("/")[0]
    dce = shared_data / "dce_mri" / f"{acquisition}_dce.nii.gz"
    mask_path = next(folder.glob("*label-tissue_mask.nii.gz"))
    scene = io.load_scene(dce, mask=mask_path)
    assert scene.n_pixels == int((np.asarray(nib.load(mask_path).dataobj) > 0).sum())
    assert scene.n_channels == nib.load(dce).shape[3] == scene.axis.size


def test_frame_times_from_pixdim_when_no_sidecar(tmp_path):
    data = np.arange(2 * 3 * 1 * 4, dtype=np.float32).reshape(2, 3, 1, 4) + 1
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_zooms((1.0, 1.0, 2.0, 1500.0))
    image.header.set_xyzt_units("mm", "msec")
    nib.save(image, tmp_path / "scan.nii.gz")
    scene = io.load_scene(tmp_path / "scan.nii.gz")
    assert scene.n_pixels == 6  # no mask: every voxel
    np.testing.assert_allclose(scene.axis, [0.0, 1.5, 3.0, 4.5])


# ----------------------------------------------------------------------------------------- MATLAB
def test_mat_v5_bands_by_pixels_column_major(tmp_path):
    cube = image_cube()
    path = tmp_path / "scene.mat"
    scipy.io.savemat(path, {"Y": matlab_bands_by_pixels(cube), "nRow": 4.0, "nCol": 6.0, "maxValue": 250.0})
    scene = io.load_scene(path)
    np.testing.assert_array_equal(scene.Y, cube.reshape(-1, 5))
    assert (scene.geometry.rows, scene.geometry.cols) == (4, 6)
    assert scene.provenance["y_scale"] == 250.0 and scene.provenance["format"] == "mat"


def test_mat_v5_pixels_by_bands_and_3d(tmp_path):
    cube = image_cube()
    scipy.io.savemat(tmp_path / "a.mat", {"V": matlab_bands_by_pixels(cube).T, "nRow": 4, "nCol": 6})
    np.testing.assert_array_equal(io.load_scene(tmp_path / "a.mat").Y, cube.reshape(-1, 5))
    scipy.io.savemat(tmp_path / "b.mat", {"Y_clean": cube})  # rows x cols x bands (MiSiCNet layout)
    scene = io.load_scene(tmp_path / "b.mat")
    np.testing.assert_array_equal(scene.Y, cube.reshape(-1, 5))
    assert (scene.geometry.rows, scene.geometry.cols) == (4, 6)


def test_mat_v5_with_benchmark_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    rows, cols, K = 4, 6, 3
    maps = rng.dirichlet(np.ones(K), size=(rows, cols))  # (rows, cols, K)
    E = rng.uniform(0, 1, size=(5, K))
    cube = maps @ E.T
    A_matlab = maps.transpose(1, 0, 2).reshape(rows * cols, K).T  # K x pixels, column-major pixels
    scipy.io.savemat(tmp_path / "img.mat", {"Y": matlab_bands_by_pixels(cube), "nRow": rows, "nCol": cols})
    scipy.io.savemat(tmp_path / "end3.mat", {"M": E, "A": A_matlab,
                                              "cood": np.array(["rock", "tree", "water"], dtype=object)})
    scene = io.load_scene(tmp_path / "img.mat")
    truth = io.load_ground_truth(tmp_path / "end3.mat", rows=rows, cols=cols)
    np.testing.assert_allclose(truth.abundances, maps.reshape(-1, K), atol=1e-6)
    np.testing.assert_allclose(truth.endmembers, E, atol=1e-6)
    np.testing.assert_allclose(scene.Y, truth.abundances @ truth.endmembers.T, atol=1e-5)
    assert io.ground_truth_names(tmp_path / "end3.mat") == ["rock", "tree", "water"]
    with pytest.raises(io.DataError, match="column-major"):
        io.load_ground_truth(tmp_path / "end3.mat")  # no nRow/nCol: the pixel order is unknown


def test_mat_v73_matches_v5(tmp_path):
    cube = image_cube(rows=3, cols=7, bands=4)
    write_mat73(tmp_path / "v73.mat", {"Y": matlab_bands_by_pixels(cube), "nRow": 3, "nCol": 7})
    scene = io.load_scene(tmp_path / "v73.mat")
    np.testing.assert_array_equal(scene.Y, cube.reshape(-1, 4))
    assert (scene.geometry.rows, scene.geometry.cols) == (3, 7)


# ----------------------------------------------------------------------------------------- round trips
def small_scene(rng, with_truth=True):
    rows, cols, K, N = 5, 4, 3, 6
    Z = rng.dirichlet(np.ones(K), size=rows * cols)
    M = rng.normal(size=(N, K))
    linear = Z @ M.T
    truth = Truth(abundances=Z, endmembers=np.tanh(M), linear_mixture=linear, mixing=M, nonlinearity="thesis",
                  noise_variance=0.01, label="generator:thesis") if with_truth else None
    return Scene(Y=np.tanh(linear) + 0.1 * rng.normal(size=linear.shape), name="tiny", truth=truth,
                 geometry=ImageGeometry(rows, cols), axis=np.linspace(400, 900, N), axis_name="wavelength_nm",
                 provenance={"generator": "test", "y_scale": 2.0, "endmember_names": ["a", "b", "c"]})


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_round_trip_contract_formats(tmp_path, suffix):
    rng = np.random.default_rng(1)
    scene = small_scene(rng)
    other = Truth(abundances=rng.dirichlet(np.ones(3), size=20), endmembers=rng.normal(size=(6, 3)))
    path = io.save_scene(scene, tmp_path / f"tiny{suffix}", alternative_truths={"second": other})
    back = io.load_scene(path)
    np.testing.assert_array_equal(back.Y, scene.Y)
    assert back.name == "tiny" and back.geometry == scene.geometry and back.axis_name == "wavelength_nm"
    np.testing.assert_allclose(back.axis, scene.axis)
    for field in ("abundances", "endmembers", "linear_mixture", "mixing"):
        np.testing.assert_allclose(getattr(back.truth, field), getattr(scene.truth, field), rtol=1e-6, atol=1e-7)
    assert back.truth.nonlinearity == "thesis" and back.truth.noise_variance == pytest.approx(0.01)
    assert back.truth.label == "generator:thesis" and back.provenance["y_scale"] == 2.0
    assert back.provenance["generator"] == "test" and back.provenance["endmember_names"] == ["a", "b", "c"]
    assert io.truth_versions(path) == ["generator:thesis", "second"]
    second = io.load_scene(path, truth_version="second")
    np.testing.assert_allclose(second.truth.abundances, other.abundances, rtol=1e-6)
    assert second.truth.linear_mixture is None  # generator extras belong to the primary truth only


def test_round_trip_npy(tmp_path):
    scene = small_scene(np.random.default_rng(2), with_truth=False)
    io.save_scene(scene, tmp_path / "tiny.npy")
    assert np.load(tmp_path / "tiny.npy").shape == (5, 4, 6)
    back = io.load_scene(tmp_path / "tiny.npy")
    np.testing.assert_array_equal(back.Y, scene.Y)
    assert back.geometry == ImageGeometry(5, 4)
    np.save(tmp_path / "flat.npy", scene.Y)
    assert io.load_scene(tmp_path / "flat.npy").geometry is None


def volume_scene(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.uniform(1, 10, size=(4, 5, 3, 7)).astype(np.float32)
    affine = np.array([[-2.0, 0, 0, 10], [0, 1.5, 0, -3], [0, 0, 4, 1], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms((2.0, 1.5, 4.0, 3.0))
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    nib.save(image, tmp_path / "scan_dce.nii.gz")
    mask = np.zeros((4, 5, 3), dtype=np.uint8)
    mask[1:3, 1:4, :2] = 1
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "scan_mask.nii.gz")
    return io.load_scene(tmp_path / "scan_dce.nii.gz", mask=tmp_path / "scan_mask.nii.gz"), data, mask, affine


def test_round_trip_nifti(tmp_path):
    scene, data, mask, affine = volume_scene(tmp_path)
    assert scene.n_pixels == int(mask.sum()) == 12
    np.testing.assert_allclose(scene.axis, np.arange(7) * 3.0)
    out = tmp_path / "out"
    out.mkdir()
    io.save_scene(scene, out / "copy.nii.gz")
    back = io.load_scene(out / "copy.nii.gz", mask=out / "copy_mask.nii.gz")
    np.testing.assert_array_equal(back.Y, scene.Y)
    np.testing.assert_allclose(back.axis, scene.axis)
    np.testing.assert_allclose(back.geometry.affine, affine)
    np.testing.assert_array_equal(back.geometry.mask, mask > 0)


def test_write_abundances_volume_keeps_affine_codes_and_zooms(tmp_path):
    scene, _, mask, affine = volume_scene(tmp_path)
    rng = np.random.default_rng(4)
    abundances = rng.dirichlet(np.ones(3), size=scene.n_pixels)
    paths = io.write_abundances(scene, abundances, tmp_path / "maps", ["vessel", "tumour rim", "healthy"])
    assert [p.name for p in paths] == ["abundances_probseg.nii.gz", "abundance_vessel.nii.gz",
                                       "abundance_tumour_rim.nii.gz", "abundance_healthy.nii.gz"]
    probseg = nib.load(paths[0])
    assert probseg.shape == (4, 5, 3, 3) and probseg.get_data_dtype() == np.float32
    values = probseg.get_fdata()
    np.testing.assert_allclose(values[mask > 0], abundances, atol=1e-6)
    assert np.all(values[mask == 0] == 0)
    for path in paths:
        image = nib.load(path)
        np.testing.assert_allclose(image.affine, affine)
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 2
        np.testing.assert_allclose(image.header.get_zooms()[:3], (2.0, 1.5, 4.0))
        assert image.header.get_xyzt_units() == ("mm", "unknown")
    np.testing.assert_allclose(nib.load(paths[2]).get_fdata()[mask > 0], abundances[:, 1], atol=1e-6)


def test_write_abundances_image(tmp_path):
    scene = small_scene(np.random.default_rng(5))
    paths = io.write_abundances(scene, scene.truth.abundances, tmp_path)
    maps = np.load(paths[0])
    assert maps["abundances"].shape == (5, 4, 3)
    np.testing.assert_allclose(maps["abundances"][1, 2], scene.truth.abundances[1 * 4 + 2])
    assert list(maps["component_names"]) == ["a", "b", "c"]
    with pytest.raises(io.DataError, match="abundances must be"):
        io.write_abundances(scene, scene.truth.abundances[:5], tmp_path)


# ----------------------------------------------------------------------------------------- preprocessing
def test_preprocessing_is_explicit_recorded_and_noise_free(shared_data):
    from nisca.data import preprocess

    scene = io.load_scene(shared_data / "hyperspectral" / "Urban_subimage_34x78.npz")
    scene.provenance["y_scale"] = 2.0
    halved = preprocess.scale_by_y_scale(scene)
    np.testing.assert_allclose(halved.Y, scene.Y / 2, rtol=1e-6)
    np.testing.assert_array_equal(halved.truth.endmembers, scene.truth.endmembers)  # E is on Y / y_scale already
    assert halved.provenance["y_scale"] == 1.0 and scene.provenance["preprocessing"] == []

    unit = preprocess.normalize_global(scene)
    assert np.abs(unit.Y).max() == pytest.approx(1.0)
    banded = preprocess.normalize_bands_max(scene)
    np.testing.assert_allclose(np.abs(banded.Y).max(axis=0), 1.0, rtol=1e-6)
    standard = preprocess.standardize_bands(scene)
    np.testing.assert_allclose(standard.Y.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(standard.Y.std(axis=0), 1.0, atol=1e-3)
    chosen = preprocess.select_bands(standard, [0, 10, 20])
    assert chosen.Y.shape == (2652, 3) and chosen.truth.endmembers.shape == (3, 4)
    np.testing.assert_array_equal(chosen.Y, standard.Y[:, [0, 10, 20]])
    assert [step["op"] for step in chosen.provenance["preprocessing"]] == ["standardize_bands", "select_bands"]
    mask = np.zeros(162, dtype=bool)
    mask[5:8] = True
    assert preprocess.select_bands(scene, mask).n_channels == 3
    with pytest.raises(io.DataError, match="band indices must lie in 0..161"):
        preprocess.select_bands(scene, [200])
    # no noise: every step is deterministic
    np.testing.assert_array_equal(preprocess.standardize_bands(scene).Y, standard.Y)


@pytest.mark.parametrize("step", ["normalize_global", "normalize_bands_max", "standardize_bands"])
def test_truth_endmembers_follow_the_data(step):
    """On an exactly linear scene Y = Z E', the mapped endmembers still reproduce the mapped Y."""
    from nisca.data import preprocess

    rng = np.random.default_rng(6)
    Z = rng.dirichlet(np.ones(3), size=50)
    E = rng.uniform(0.1, 3.0, size=(8, 3))
    scene = Scene(Y=Z @ E.T, truth=Truth(abundances=Z, endmembers=E, noise_variance=0.5))
    mapped = getattr(preprocess, step)(scene)
    np.testing.assert_allclose(mapped.Y, mapped.truth.abundances @ mapped.truth.endmembers.T, atol=1e-5)
    np.testing.assert_array_equal(mapped.truth.abundances, scene.truth.abundances)
    assert mapped.provenance["preprocessing"][-1]["op"] == step


def test_volume_scene_through_npz_keeps_its_grid(tmp_path):
    """A volume scene saved in the project's format (no NIfTI header) still writes NIfTI maps on its grid."""
    scene, _, mask, affine = volume_scene(tmp_path)
    back = io.load_scene(io.save_scene(scene, tmp_path / "vol.npz"))
    assert isinstance(back.geometry, VolumeGeometry) and back.geometry.header is None
    np.testing.assert_array_equal(back.geometry.mask, mask > 0)
    np.testing.assert_allclose(back.axis, scene.axis)
    paths = io.write_abundances(back, np.full((back.n_pixels, 2), 0.5), tmp_path / "maps")
    image = nib.load(paths[0])
    np.testing.assert_allclose(image.affine, affine)
    np.testing.assert_allclose(image.header.get_zooms()[:3], (2.0, 1.5, 4.0))
    assert [p.name for p in paths[1:]] == ["abundance_k0.nii.gz", "abundance_k1.nii.gz"]
