"""Signal -> concentration for DCE scenes: exact on the noiseless phantom, sidecar-driven, clear refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from nisca.data.dce_convert import sequence_from_sidecar, sidecar_path, signal_scene_to_concentration
from nisca.data.dce_phantom import simulate_dce_phantom, write_dce_phantom
from nisca.data.io import load_scene
from nisca.errors import DataError
from nisca.fit import fit

SEQUENCE = {"flip_angle_deg": 30.0, "tr_s": 0.005, "n_baseline": 6}


@pytest.fixture(scope="module")
def clean():
    return simulate_dce_phantom(seed=3, snr_db=None, shape=(20, 20, 2), t10_variation=0.2)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory, clean):
    out = tmp_path_factory.mktemp("dce")
    write_dce_phantom(clean, out)
    return out


def test_noiseless_conversion_recovers_the_mixed_concentration(clean):
    conc = signal_scene_to_concentration(clean.scene, t10_s=clean.t10_map, **SEQUENCE)
    expected = clean.concentration[clean.mask]
    assert np.abs(conc.Y - expected).max() < 1e-4 * expected.max()
    assert conc.axis_name == "time_s" and np.array_equal(conc.axis, clean.scene.axis)
    np.testing.assert_array_equal(conc.truth.abundances, clean.scene.truth.abundances)
    step = conc.provenance["preprocessing"][-1]
    assert step["step"] == "signal_to_concentration" and step["flip_angle_deg"] == 30.0 and step["n_baseline"] == 6
    assert conc.provenance["units"] == "mM" and clean.scene.provenance.get("preprocessing") is None


def test_conversion_makes_fast_exchange_linear_for_a_pure_pixel_method(clean):
    """In fast exchange the signal is a post-nonlinear mixture; the concentrations mix linearly."""
    conc = signal_scene_to_concentration(clean.scene, t10_s=clean.t10_map, **SEQUENCE)
    on_signal = fit("vca", clean.scene, {"latent_dim": 4}).metrics["abundance_rmse"]
    on_conc = fit("vca", conc, {"latent_dim": 4}).metrics["abundance_rmse"]
    assert on_conc < 0.01 < 0.1 < on_signal, (on_conc, on_signal)


def test_sequence_and_t10_map_come_from_the_sidecar_and_a_nifti(phantom_dir, clean):
    seq = sequence_from_sidecar(phantom_dir / "dce.nii.gz")
    assert (seq.flip_angle_deg, seq.tr_s, seq.n_baseline) == (30.0, 0.005, 6)
    assert seq.source == str(phantom_dir / "dce.json") == str(sidecar_path(phantom_dir / "dce.nii.gz"))
    scene = load_scene(phantom_dir / "dce.nii.gz", mask=phantom_dir / "mask.nii.gz")
    conc = signal_scene_to_concentration(scene, t10_s=phantom_dir / "t10.nii.gz")
    expected = clean.concentration[clean.mask]
    assert np.abs(conc.Y - expected).max() < 1e-3 * expected.max()
    step = conc.provenance["preprocessing"][-1]
    assert step["sequence_source"] == str(phantom_dir / "dce.json") and step["t10_s"].endswith("t10.nii.gz")


def test_missing_sidecar_gives_nothing(tmp_path):
    seq = sequence_from_sidecar(tmp_path / "scan.nii.gz")
    assert seq.flip_angle_deg is None and seq.tr_s is None and seq.source is None


def test_missing_parameters_are_named(clean):
    with pytest.raises(DataError, match=r"flip angle \(FlipAngle\).*TR \(RepetitionTimeExcitation\)"):
        signal_scene_to_concentration(clean.scene, t10_s=1.2, n_baseline=6)
    with pytest.raises(DataError, match="T10"):
        signal_scene_to_concentration(clean.scene, **SEQUENCE)


def test_impossible_signals_and_bad_maps_are_refused(clean):
    Y = clean.scene.Y.copy()
    Y[5, 40] = 1e6  # far above the SPGR asymptote M0 sin(FA)
    with pytest.raises(DataError, match="outside the range of the SPGR equation"):
        signal_scene_to_concentration(replace(clean.scene, Y=Y), t10_s=1.2, **SEQUENCE)
    clipped = signal_scene_to_concentration(replace(clean.scene, Y=Y), t10_s=1.2, clip=True, **SEQUENCE)
    assert np.isfinite(clipped.Y).all()
    Y = clean.scene.Y.copy()
    Y[7, :6] = 0.0
    with pytest.raises(DataError, match="pre-contrast signal"):
        signal_scene_to_concentration(replace(clean.scene, Y=Y), t10_s=1.2, **SEQUENCE)
    with pytest.raises(DataError, match="T10 map .* has shape"):
        signal_scene_to_concentration(clean.scene, t10_s=np.ones((3, 3, 3)), **SEQUENCE)
    with pytest.raises(DataError, match="zero, negative"):
        signal_scene_to_concentration(clean.scene, t10_s=np.zeros(clean.scene.n_pixels), **SEQUENCE)
    with pytest.raises(DataError, match="n_baseline"):
        signal_scene_to_concentration(clean.scene, t10_s=1.2, flip_angle_deg=30, tr_s=0.005, n_baseline=0)


def test_a_sidecar_with_tr_in_milliseconds_is_refused(tmp_path):
    (tmp_path / "scan.json").write_text(json.dumps({"FlipAngle": 30, "RepetitionTimeExcitation": 5.0}))
    with pytest.raises(DataError, match="scan.json: RepetitionTimeExcitation = 5.0 s"):
        sequence_from_sidecar(tmp_path / "scan.nii.gz")
