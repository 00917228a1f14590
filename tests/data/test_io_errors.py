"""Bad files give one DataError naming the file and the problem (issue 2's list, the rows about files)."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io

from nisca.data import io
from nisca.data.scene import ImageGeometry, Scene
from nisca.errors import DataError


def scene(rows=3, cols=4, bands=5):
    rng = np.random.default_rng(0)
    return Scene(Y=rng.uniform(size=(rows * cols, bands)), name="s", geometry=ImageGeometry(rows, cols))


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def volume(tmp_path, shape=(3, 4, 2, 5)):
    data = np.random.default_rng(1).uniform(1, 2, size=shape).astype(np.float32)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def assert_one_line_about(error: pytest.ExceptionInfo, path, *words):
    message = str(error.value)
    assert str(path) in message and "\n" not in message, message
    for word in words:
        assert word in message, message
    assert error.value.__suppress_context__  # raised `from None`: no chained library traceback


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as error:
        io.load_scene(tmp_path / "absent.npz")
    assert str(tmp_path / "absent.npz") in str(error.value)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "scene.csv"
    path.write_text("1,2\n")
    with pytest.raises(DataError, match="unknown file type") as error:
        io.load_scene(path)
    assert ".nii.gz" in str(error.value)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_contract_files(tmp_path, suffix, damage):
    path = io.save_scene(scene(), tmp_path / f"s{suffix}")
    if damage == "truncated":
        truncate(path)
    else:
        path.write_bytes(b"this is not a scene file " * 40)
    with pytest.raises(DataError) as error:
        io.load_scene(path)
    assert_one_line_about(error, path, "truncated or corrupt")


def test_npz_with_a_damaged_member(tmp_path):
    """A zip whose directory is intact but whose compressed Y is not (fails while decompressing)."""
    path = tmp_path / "s.npz"
    np.savez_compressed(path, Y=np.random.default_rng(0).uniform(size=(400, 50)), rows=20, cols=20)
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 200] = b"\x00" * 200
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as error:
        io.load_scene(path)
    assert_one_line_about(error, path, "truncated or corrupt")


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_corrupt_mat_files(tmp_path, version):
    path = tmp_path / "s.mat"
    Y = np.random.default_rng(0).uniform(size=(5, 300))
    if version == "v5":
        scipy.io.savemat(path, {"Y": Y, "nRow": 15, "nCol": 20})
    else:
        with h5py.File(path, "w", userblock_size=512) as handle:
            handle.create_dataset("Y", data=Y.T).attrs["MATLAB_class"] = np.bytes_("double")
    truncate(path, 0.4)
    with pytest.raises(DataError) as error:
        io.load_scene(path)
    assert_one_line_about(error, path, "truncated or corrupt")


def test_garbage_mat_file(tmp_path):
    path = tmp_path / "s.mat"
    path.write_bytes(b"\x01\x02garbage" * 50)
    with pytest.raises(DataError) as error:
        io.load_scene(path)
    assert_one_line_about(error, path, "corrupt")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_nifti(tmp_path, damage):
    path = volume(tmp_path, shape=(10, 12, 3, 20))
    if damage == "truncated":
        truncate(path, 0.6)
    else:
        path.write_bytes(b"\x1f\x8b garbage that only starts like gzip" * 30)
    with pytest.raises(DataError) as error:
        io.load_scene(path)
    assert_one_line_about(error, path, "corrupt")


def test_corrupt_mask_file(tmp_path):
    path = volume(tmp_path)
    mask = tmp_path / "mask.nii.gz"
    mask.write_bytes(b"not a nifti")
    with pytest.raises(DataError) as error:
        io.load_scene(path, mask=mask)
    assert_one_line_about(error, mask, "corrupt")


def test_nifti_mask_shape_mismatch(tmp_path):
    path = volume(tmp_path)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 5, 2), dtype=np.uint8), np.eye(4)), mask)
    with pytest.raises(DataError, match=r"mask shape \(3, 5, 2\) differs from the volume shape \(3, 4, 2\)"):
        io.load_scene(path, mask=mask)
    with pytest.raises(DataError, match="differs from the volume shape"):
        io.load_scene(path, mask=np.ones((2, 2, 2), dtype=bool))


def test_nifti_mask_on_another_grid_is_refused(tmp_path):
    path = volume(tmp_path)
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 2), dtype=np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])), mask)
    with pytest.raises(DataError, match="affine differs"):
        io.load_scene(path, mask=mask)


def test_empty_mask_is_refused(tmp_path):
    with pytest.raises(DataError, match="selects no voxels"):
        io.load_scene(volume(tmp_path), mask=np.zeros((3, 4, 2), dtype=bool))


def test_nifti_without_time_axis_is_refused(tmp_path):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((3, 4, 2), dtype=np.float32), np.eye(4)), path)
    with pytest.raises(DataError, match="has no time axis") as error:
        io.load_scene(path)
    assert str(path) in str(error.value)


def test_nan_inside_mask(tmp_path):
    data = np.ones((3, 4, 2, 5), dtype=np.float32)
    data[1, 1, 0, 3] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with pytest.raises(DataError, match="NaN or Inf"):
        io.load_scene(path)
    mask = np.ones((3, 4, 2), dtype=bool)
    mask[1, 1, 0] = False
    assert io.load_scene(path, mask=mask).n_pixels == 23  # masked out: accepted


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_npz(tmp_path, bad):
    Y = np.ones((6, 3), dtype=np.float32)
    Y[2, 1] = bad
    np.savez(tmp_path / "bad.npz", Y=Y)
    with pytest.raises(DataError, match="NaN") as error:
        io.load_scene(tmp_path / "bad.npz")
    assert "bad.npz" in str(error.value)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4, 5)])
def test_wrong_rank(tmp_path, shape):
    np.save(tmp_path / "y.npy", np.ones(shape))
    with pytest.raises(DataError, match="2-D .* or 3-D") as error:
        io.load_scene(tmp_path / "y.npy")
    assert "y.npy" in str(error.value)
    np.savez(tmp_path / "y.npz", Y=np.ones(shape))
    with pytest.raises(DataError, match="Y must be 2-D"):
        io.load_scene(tmp_path / "y.npz")


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "y.npy", np.ones((100, 20)))
    path = truncate(tmp_path / "y.npy")
    with pytest.raises(DataError) as error:
        io.load_scene(path)
    assert_one_line_about(error, path, "truncated or corrupt")


def test_ground_truth_only_files(tmp_path):
    np.savez(tmp_path / "gt.npz", E4=np.ones((5, 4)), A4=np.full((4, 6), 0.25), rows=2, cols=3)
    with pytest.raises(DataError, match="holds ground truth only .*load_ground_truth"):
        io.load_scene(tmp_path / "gt.npz")
    scipy.io.savemat(tmp_path / "end4.mat", {"M": np.ones((5, 4)), "A": np.full((4, 6), 0.25)})
    with pytest.raises(DataError, match="holds ground truth only"):
        io.load_scene(tmp_path / "end4.mat")


def test_unknown_truth_version_lists_the_available(tmp_path):
    path = io.save_scene(scene(), tmp_path / "s.npz")
    with pytest.raises(DataError, match="has no ground truth"):
        io.load_scene(path, truth_version="misicnet")
    np.savez(tmp_path / "gt.npz", E4=np.ones((5, 4)), A4=np.full((4, 6), 0.25),
             E5=np.ones((5, 5)), A5=np.full((5, 6), 0.2))
    with pytest.raises(DataError, match="no ground-truth version '7'; available: 4, 5"):
        io.load_ground_truth(tmp_path / "gt.npz", "7")


def test_truth_off_the_simplex_or_misshapen(tmp_path):
    Y = np.ones((6, 5), dtype=np.float32)
    np.savez(tmp_path / "a.npz", Y=Y, A=np.full((3, 6), 0.5), E=np.ones((5, 3)))
    with pytest.raises(DataError, match="off the simplex"):
        io.load_scene(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", Y=Y, A=np.full((3, 6), 1 / 3), E=np.ones((4, 3)))
    with pytest.raises(DataError, match="endmembers must have shape"):
        io.load_scene(tmp_path / "b.npz")


def test_mask_for_a_non_volume_file(tmp_path):
    path = io.save_scene(scene(), tmp_path / "s.npz")
    with pytest.raises(DataError, match="mask applies to NIfTI"):
        io.load_scene(path, mask=np.ones(3, dtype=bool))


def test_mat_image_size_mismatch(tmp_path):
    scipy.io.savemat(tmp_path / "s.mat", {"Y": np.ones((5, 12)), "nRow": 4, "nCol": 4})
    with pytest.raises(DataError, match=r"neither axis matches nRow\*nCol"):
        io.load_scene(tmp_path / "s.mat")
