"""The DCE mixture phantom: simplex fractions, physics of both mixing models, noise level, files, CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nisca.data import dce
from nisca.data.dce_phantom import TISSUE_CLASSES, simulate_dce_phantom, write_dce_phantom
from nisca.errors import ConfigError

EXPECTED_FILES = {
    "dce.nii.gz", "dce.json", "fractions_probseg.nii.gz", "labels.nii.gz", "labels.tsv", "mask.nii.gz",
    "class_curves.csv", "parameters.json", "t10.nii.gz", "m0.nii.gz",
}


@pytest.fixture(scope="module")
def noisy():
    return simulate_dce_phantom(seed=0, snr_db=30.0)


def test_fractions_are_on_the_simplex_with_pure_and_mixed_voxels(noisy):
    f = noisy.fractions[noisy.mask]
    assert f.shape[1] == 4 and noisy.fractions.shape == (32, 32, 4, 4)
    assert f.min() >= 0 and np.allclose(f.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(noisy.fractions[~noisy.mask] == 0) and (~noisy.mask).sum() > 100  # air around the body
    assert np.all(f.max(axis=0) > 0.95), f"every class needs near-pure voxels: {f.max(axis=0)}"
    mixed = (f.max(axis=1) < 0.9).mean()
    assert 0.1 < mixed < 0.6, f"fraction of partial-volume voxels {mixed:.2f}"
    np.testing.assert_array_equal(noisy.labels[noisy.mask], f.argmax(axis=1) + 1)
    assert np.all(noisy.labels[~noisy.mask] == 0)


def test_fractions_are_spatially_smooth(noisy):
    inside = noisy.mask[1:, :, :] & noisy.mask[:-1, :, :]
    step = np.abs(np.diff(noisy.fractions, axis=0))[inside].mean()
    shuffled = noisy.fractions.copy()
    shuffled[noisy.mask] = np.random.default_rng(0).permutation(noisy.fractions[noisy.mask])
    random_step = np.abs(np.diff(shuffled, axis=0))[inside].mean()
    assert step < 0.3 * random_step, (step, random_step)


def test_noise_matches_the_requested_snr(noisy):
    # definition: SNR_dB = 20 log10(mean noiseless baseline signal / sigma)
    assert 20 * np.log10(noisy.baseline_signal / noisy.noise_sigma) == pytest.approx(30.0, abs=1e-9)
    base = noisy.clean_signal[noisy.mask][:, : noisy.parameters["acquisition"]["baseline_frames"]]
    assert base.mean() == pytest.approx(noisy.baseline_signal, rel=1e-5)
    # air holds pure Rician (Rayleigh) noise: mean = sigma sqrt(pi/2)
    air = noisy.signal[~noisy.mask]
    assert air.mean() / np.sqrt(np.pi / 2) == pytest.approx(noisy.noise_sigma, rel=0.03)
    # where the signal is far above sigma, the residual is nearly Gaussian with SD sigma
    bright = noisy.clean_signal > 10 * noisy.noise_sigma
    residual = (noisy.signal - noisy.clean_signal)[bright]
    assert residual.std() == pytest.approx(noisy.noise_sigma, rel=0.03)
    assert abs(residual.mean()) < 0.05 * noisy.noise_sigma


def test_fast_exchange_is_spgr_of_the_mixed_concentration():
    r = simulate_dce_phantom(seed=4, snr_db=None, mixing="fast", t10_variation=0.15, m0_variation=0.1)
    p = r.parameters["sequence"]
    m = r.mask
    expected = dce.concentration_to_signal(r.concentration[m], r.t10_map[m], p["r1_per_s_per_mM"], r.m0_map[m],
                                           p["FlipAngle_deg"], p["RepetitionTimeExcitation_s"])
    np.testing.assert_allclose(r.clean_signal[m], expected, rtol=1e-5)
    np.testing.assert_array_equal(r.signal, r.clean_signal)  # noiseless
    mixed_conc = r.fractions[m] @ r.class_concentrations.T
    np.testing.assert_allclose(r.concentration[m], mixed_conc, rtol=1e-5, atol=1e-7)
    assert r.t10_map[m].std() > 0.05 and r.m0_map[m].std() > 10  # the variations are really there


def test_scene_truth_is_the_post_nonlinear_model():
    r = simulate_dce_phantom(seed=0, snr_db=None, mixing="fast")
    scene, truth = r.scene, r.scene.truth
    p = r.parameters["sequence"]
    assert scene.Y.shape == (int(r.mask.sum()), 60) and scene.axis_name == "time_s"
    np.testing.assert_allclose(scene.axis, np.arange(60) * 5.0)
    np.testing.assert_allclose(truth.abundances, r.fractions[r.mask], atol=1e-6)
    # without T10/M0 variation the latent (R1) is exactly the linear mixture of the class R1 curves
    np.testing.assert_allclose(truth.linear_mixture, truth.abundances @ truth.mixing.T, rtol=1e-5)
    f_of_latent = dce.spgr_signal(truth.linear_mixture, p["M0"], p["FlipAngle_deg"], p["RepetitionTimeExcitation_s"])
    np.testing.assert_allclose(scene.Y, f_of_latent, rtol=1e-5)
    assert truth.nonlinearity == "spgr" and truth.endmembers.shape == (60, 4)
    pure = truth.abundances.max(axis=1) > 0.9999
    assert pure.sum() > 50
    k = truth.abundances[pure].argmax(axis=1)
    np.testing.assert_allclose(scene.Y[pure], truth.endmembers.T[k], rtol=2e-3)
    assert scene.geometry.volume_shape == (32, 32, 4) and scene.geometry.header.get_xyzt_units() == ("mm", "sec")


def test_slow_exchange_mixes_the_class_signals():
    slow = simulate_dce_phantom(seed=2, snr_db=None, mixing="slow")
    fast = simulate_dce_phantom(seed=2, snr_db=None, mixing="fast")
    m = slow.mask
    np.testing.assert_allclose(slow.clean_signal[m], slow.fractions[m] @ slow.class_signals.T, rtol=1e-5)
    assert slow.scene.truth.nonlinearity == "linear"
    np.testing.assert_array_equal(slow.fractions, fast.fractions)  # same anatomy, other physics
    mixed = fast.fractions[m].max(axis=1) < 0.8
    gap = np.abs(fast.clean_signal[m][mixed] - slow.clean_signal[m][mixed]).max(axis=1)
    assert np.median(gap) > 1.0, "fast and slow exchange must differ in mixed voxels"


def test_every_seed_is_honoured():
    a, b, c = (simulate_dce_phantom(seed=s, frames=20) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.signal, b.signal)
    assert not np.allclose(a.fractions, c.fractions)
    assert a.scene.provenance["seed"] == 0 and c.scene.provenance["seed"] == 1


def test_bad_settings_are_refused_clearly():
    with pytest.raises(ConfigError, match="unknown DCE phantom class"):
        simulate_dce_phantom(["vessel", "bone"])
    with pytest.raises(ConfigError, match="at least 2 distinct"):
        simulate_dce_phantom(["rim", "rim"])
    with pytest.raises(ConfigError, match="mixing"):
        simulate_dce_phantom(mixing="medium")
    with pytest.raises(ConfigError, match="t10-variation"):
        simulate_dce_phantom(t10_variation=1.5)


def _check_written(out, result):
    assert EXPECTED_FILES <= {p.name for p in out.iterdir()}
    img = nib.load(out / "dce.nii.gz")
    assert img.shape == (*result.mask.shape, result.frame_times.size) and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, result.affine)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert img.header.get_xyzt_units() == ("mm", "sec")
    voxel = result.parameters["acquisition"]["voxel_size_mm"]
    np.testing.assert_allclose(img.header.get_zooms(), [*voxel, result.parameters["acquisition"]["dt_s"]])
    np.testing.assert_allclose(np.asanyarray(img.dataobj), result.signal)
    probseg = nib.load(out / "fractions_probseg.nii.gz")
    assert probseg.shape == (*result.mask.shape, len(result.class_names))
    np.testing.assert_allclose(probseg.affine, result.affine)
    np.testing.assert_allclose(np.asanyarray(probseg.dataobj), result.fractions)
    labels, mask = nib.load(out / "labels.nii.gz"), nib.load(out / "mask.nii.gz")
    assert labels.shape == result.mask.shape and mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(mask.dataobj).astype(bool), result.mask)
    for each in (labels, mask):
        np.testing.assert_allclose(each.affine, result.affine)
        assert int(each.header["sform_code"]) == 1 and int(each.header["qform_code"]) == 1
    sidecar = json.loads((out / "dce.json").read_text())
    for key in ("FlipAngle", "RepetitionTimeExcitation", "VolumeTiming", "T10_s", "r1_per_s_per_mM",
                "Hematocrit", "MixingModel", "SNR_dB", "Seed"):
        assert key in sidecar, key
    np.testing.assert_allclose(sidecar["VolumeTiming"], result.frame_times)
    table = pd.read_csv(out / "labels.tsv", sep="\t")
    assert list(table["name"]) == ["background", *result.class_names] and list(table["index"]) == list(
        range(len(result.class_names) + 1))
    curves = pd.read_csv(out / "class_curves.csv")
    assert curves.shape[0] == result.frame_times.size and "time_s" in curves
    for name in result.class_names:
        assert {f"{name}_concentration_mM", f"{name}_signal"} <= set(curves.columns)
    params = json.loads((out / "parameters.json").read_text())
    assert set(params["classes"]) == set(result.class_names)
    return sidecar, params


def test_writer_keeps_geometry_units_and_truth(tmp_path, noisy):
    written = write_dce_phantom(noisy, tmp_path)
    assert {p.name for p in written} == EXPECTED_FILES
    sidecar, params = _check_written(tmp_path, noisy)
    assert sidecar["FlipAngle"] == 30.0 and sidecar["RepetitionTimeExcitation"] == 0.005
    assert params["classes"]["rim"]["ktrans_per_min"] == TISSUE_CLASSES["rim"].ktrans_per_min


def test_cli_writes_every_file(tmp_path, capsys):
    from nisca.cli import main

    out = tmp_path / "phantom"
    code = main(["data", "simulate", "dce", "--out", str(out), "--classes", "vessel,rim,healthy", "--snr", "25",
                 "--seed", "0", "--mixing", "slow", "--shape", "16", "20", "2", "--frames", "24", "--dt", "2.5",
                 "--t10-variation", "0.1", "--m0-variation", "0.05"])
    assert code == 0
    expected = simulate_dce_phantom(["vessel", "rim", "healthy"], shape=(16, 20, 2), frames=24, dt_s=2.5,
                                    snr_db=25.0, seed=0, mixing="slow", t10_variation=0.1, m0_variation=0.05)
    sidecar, _ = _check_written(out, expected)
    assert sidecar["MixingModel"] == "slow" and sidecar["SNR_dB"] == 25.0 and sidecar["Seed"] == 0
    assert "dce.nii.gz" in capsys.readouterr().out
    assert main(["data", "simulate", "dce", "--out", str(out), "--classes", "vessel,bone"]) == 2
    assert "unknown DCE phantom class" in capsys.readouterr().err
