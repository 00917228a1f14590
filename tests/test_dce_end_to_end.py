"""DCE-MRI end to end through the CLI: simulate a phantom, fit it from NIfTI, get NIfTI fraction maps back.

Checks the issue-8 contract: fraction maps keep the input's affine, qform/sform codes and voxel sizes;
wrong masks and files without a time axis are refused with one line and exit status 2; the estimated
class curves are written against time in seconds.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nisca.cli import main
from nisca.data.dce_convert import require_frame_times, signal_scene_to_concentration
from nisca.data.io import load_scene
from nisca.dce_outputs import write_class_curves
from nisca.errors import DataError
from nisca.fit import fit
from nisca.metrics import match_components

K = 4


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    code = main(["data", "simulate", "dce", "--out", str(out), "--shape", "16", "16", "2", "--frames", "30",
                 "--snr", "30", "--seed", "1"])
    assert code == 0
    return out


def _assert_same_grid(source: nib.Nifti1Image, written: nib.Nifti1Image) -> None:
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
    np.testing.assert_allclose(written.get_qform(), source.get_qform(), atol=1e-6)
    np.testing.assert_allclose(written.get_sform(), source.get_sform(), atol=1e-6)
    assert int(written.header["qform_code"]) == int(source.header["qform_code"]) == 1
    assert int(written.header["sform_code"]) == int(source.header["sform_code"]) == 1
    assert written.header.get_zooms()[:3] == source.header.get_zooms()[:3] == (1.0, 1.0, 2.0)


@pytest.mark.parametrize("method, extra", [("vca", []), ("nisca", ["--max-epochs", "2", "--seed", "0"])])
def test_fit_writes_fraction_maps_on_the_input_grid(phantom, tmp_path, method, extra, capsys):
    out = tmp_path / method
    code = main(["fit", method, "--data", str(phantom / "dce.nii.gz"), "--mask", str(phantom / "mask.nii.gz"),
                 "--latent-dim", str(K), "--out", str(out), *extra])
    assert code == 0, capsys.readouterr().err
    source = nib.load(phantom / "dce.nii.gz")
    mask = np.asarray(nib.load(phantom / "mask.nii.gz").dataobj) > 0
    probseg = nib.load(out / "abundances_probseg.nii.gz")
    _assert_same_grid(source, probseg)
    maps = np.asarray(probseg.dataobj)
    assert maps.shape == (16, 16, 2, K)
    abundances = np.load(out / "abundances.npy")
    np.testing.assert_allclose(maps[mask], abundances, atol=1e-6)  # same voxel order as the loader
    assert np.all(maps[~mask] == 0) and np.allclose(abundances.sum(axis=1), 1.0, atol=1e-3)
    per_component = sorted(out.glob("abundance_*.nii.gz"))
    assert len(per_component) == K
    for k, path in enumerate(per_component):
        image = nib.load(path)
        _assert_same_grid(source, image)
        np.testing.assert_allclose(np.asarray(image.dataobj), maps[..., k], atol=1e-6)
    assert set(json.loads((out / "metrics.json").read_text())) >= {"wall_time_s", "epochs"}


def test_wrong_mask_shape_is_refused_in_one_line(phantom, tmp_path, capsys):
    source = nib.load(phantom / "dce.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 2), np.uint8), source.affine), tmp_path / "small_mask.nii.gz")
    code = main(["fit", "vca", "--data", str(phantom / "dce.nii.gz"), "--mask", str(tmp_path / "small_mask.nii.gz"),
                 "--latent-dim", str(K), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "small_mask.nii.gz" in err and "mask shape (8, 8, 2) differs from the volume shape (16, 16, 2)" in err
    assert not (tmp_path / "out").exists()


def test_files_without_a_time_axis_are_refused(phantom, tmp_path, capsys):
    source = nib.load(phantom / "dce.nii.gz")
    data = np.asarray(source.dataobj)
    nib.save(nib.Nifti1Image(data[..., 0], source.affine), tmp_path / "one_frame.nii.gz")
    code = main(["fit", "vca", "--data", str(tmp_path / "one_frame.nii.gz"), "--latent-dim", str(K),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "has no time axis" in err and "one_frame.nii.gz" in err
    # 4-D, but the 4th axis carries no time (pixdim[4] = 0, no unit, no sidecar): DCE steps refuse it
    no_time = nib.Nifti1Image(data, source.affine)
    no_time.header.set_zooms((1.0, 1.0, 2.0, 0.0))
    nib.save(no_time, tmp_path / "no_time.nii.gz")
    scene = load_scene(tmp_path / "no_time.nii.gz", mask=phantom / "mask.nii.gz")
    with pytest.raises(DataError, match=r"no_time.nii.gz: the 4th axis is not time"):
        require_frame_times(scene)
    with pytest.raises(DataError, match="the 4th axis is not time"):
        signal_scene_to_concentration(scene, t10_s=1.0, flip_angle_deg=30, tr_s=0.005, n_baseline=6)
    np.testing.assert_allclose(require_frame_times(load_scene(phantom / "dce.nii.gz")), np.arange(30) * 5.0)


def test_class_curves_are_written_against_time_and_match_the_truth(phantom, tmp_path):
    """On the concentration route (sidecar sequence, true T10 map) VCA's class curves are the true ones."""
    scene = load_scene(phantom / "dce.nii.gz", mask=phantom / "mask.nii.gz")
    conc = signal_scene_to_concentration(scene, t10_s=phantom / "t10.nii.gz", clip=True)
    result = fit("vca", conc, {"latent_dim": K, "seed": 0})
    paths = write_class_curves(result, conc, tmp_path)
    assert [p.name for p in paths] == ["class_curves.csv", "class_curves.png"]
    assert paths[1].stat().st_size > 5000 and paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(paths[0])
    assert list(table.columns) == ["time_s", *(f"k{k}" for k in range(K))]
    np.testing.assert_allclose(table["time_s"], np.arange(30) * 5.0)
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), result.endmembers, rtol=1e-5, atol=1e-6)
    truth = pd.read_csv(phantom / "class_curves.csv")
    names = [c.removesuffix("_concentration_mM") for c in truth.columns if c.endswith("_concentration_mM")]
    true_curves = truth[[f"{n}_concentration_mM" for n in names]].to_numpy()
    true_fractions = np.asarray(nib.load(phantom / "fractions_probseg.nii.gz").dataobj)[conc.geometry.mask]
    order = match_components(true_fractions, result.abundances)
    estimated = table.iloc[:, 1:].to_numpy()[:, order]
    error = np.abs(estimated - true_curves).max(axis=0) / np.abs(true_curves).max(axis=0)
    assert np.all(error[[names.index("vessel"), names.index("rim")]] < 0.15), dict(zip(names, error))


def test_class_curves_need_frame_times(phantom):
    scene = load_scene(phantom / "dce.nii.gz", mask=phantom / "mask.nii.gz")
    result = fit("vca", scene, {"latent_dim": K})
    from dataclasses import replace

    with pytest.raises(DataError, match="class curves need frame times"):
        write_class_curves(result, replace(scene, axis=None, axis_name=None), "unused")


def test_fit_cli_refuses_a_4d_file_without_time_and_runs_the_concentration_route(phantom, tmp_path, capsys):
    source = nib.load(phantom / "dce.nii.gz")
    no_time = nib.Nifti1Image(np.asarray(source.dataobj), source.affine)
    no_time.header.set_zooms((1.0, 1.0, 2.0, 0.0))
    nib.save(no_time, tmp_path / "no_time.nii.gz")
    code = main(["fit", "vca", "--data", str(tmp_path / "no_time.nii.gz"), "--latent-dim", str(K),
                 "--out", str(tmp_path / "refused")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "the 4th axis is not time" in err
    assert not (tmp_path / "refused").exists()

    out = tmp_path / "conc"
    code = main(["fit", "vca", "--data", str(phantom / "dce.nii.gz"), "--mask", str(phantom / "mask.nii.gz"),
                 "--latent-dim", str(K), "--out", str(out), "--to-concentration", "--t10", str(phantom / "t10.nii.gz")])
    assert code == 0, capsys.readouterr().err
    curves = pd.read_csv(out / "class_curves.csv")
    assert curves.shape == (30, K + 1) and (out / "class_curves.png").stat().st_size > 5000
    # concentration curves start at ~0 mM before contrast arrives (signal curves would start at M0-scale values)
    assert np.abs(curves.iloc[0, 1:].to_numpy()).max() < 0.05
