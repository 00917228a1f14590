"""`nisca data simulate pnl` then `nisca score`: through the real entry point `nisca.cli.main`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nisca.cli
from nisca.cli import main


@pytest.fixture(autouse=True)
def _only_these_commands(monkeypatch):
    """Build the parser from the two command groups under test, so these tests do not depend on
    unrelated subcommands (fit, study, report) importing cleanly."""
    monkeypatch.setattr(nisca.cli, "COMMAND_MODULES", ("nisca.cli.data", "nisca.cli.score"))


@pytest.fixture()
def simulated(tmp_path):
    path = tmp_path / "pnl.npz"
    argv = ["data", "simulate", "pnl", "--channels", "5", "--latent-dim", "3", "--samples", "400",
            "--snr", "25", "--nonlinearity", "original", "--seed", "0", "--out", str(path)]
    assert main(argv) == 0
    return path


def _estimate(folder, **arrays):
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value)
    return folder


def test_simulate_writes_the_scene_layout_with_truth_extras(simulated):
    with np.load(simulated, allow_pickle=False) as data:
        assert data["Y"].shape == (400, 5) and data["A"].shape == (3, 400) and data["E"].shape == (5, 3)
        assert data["linear_mixture"].shape == (400, 5) and data["mixing"].shape == (5, 3)
        assert float(data["noise_variance"]) > 0 and str(data["nonlinearity"]) == "original"
        np.testing.assert_allclose(data["A"].sum(axis=0), 1.0, atol=1e-6)
        provenance = json.loads(str(data["provenance"]))
    assert provenance["seed"] == 0 and provenance["snr_db"] == 25.0 and provenance["mixing_scale"] == 5.0


def test_noiseless_option(tmp_path):
    path = tmp_path / "clean.npz"
    assert main(["data", "simulate", "pnl", "--snr", "inf", "--nonlinearity", "linear", "--out", str(path)]) == 0
    with np.load(path) as data:
        assert float(data["noise_variance"]) == 0.0
        np.testing.assert_array_equal(data["Y"], data["linear_mixture"])


def test_channel_noise_reference_option(tmp_path):
    path = tmp_path / "channel.npz"
    argv = ["data", "simulate", "pnl", "--snr", "20", "--noise-reference", "channel", "--samples", "2000",
            "--out", str(path)]
    assert main(argv) == 0
    with np.load(path) as data:
        provenance = json.loads(str(data["provenance"]))
        observed = data["Y"].astype(np.float64).var(axis=0)
    assert provenance["noise_reference"] == "channel"
    per_channel = np.array(provenance["noise_variance_per_channel"])
    # 20 dB in every channel: s2_n = var(clean_n) / 100, and var(Y_n) = var(clean_n) + s2_n
    np.testing.assert_allclose(per_channel, observed / 101, rtol=0.1)


def test_a_perfect_permuted_estimate_scores_zero(simulated, tmp_path, capsys):
    with np.load(simulated) as data:
        order = [2, 0, 1]
        folder = _estimate(
            tmp_path / "est",
            abundances=data["A"].T[:, order],
            endmembers=data["E"][:, order],
            linear_mixture=2.0 * data["linear_mixture"] - 1.0,
        )
    capsys.readouterr()
    assert main(["score", "--truth", str(simulated), "--estimate", str(folder)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["abundance_rmse"] == 0.0 and metrics["abundance_mse"] == 0.0
    assert metrics["sad_deg"] == 0.0 and metrics["subspace_distance"] < 1e-6
    assert metrics["r2_nonlinearity"] == pytest.approx(1.0, abs=1e-6)


def test_a_random_estimate_scores_badly(simulated, tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = _estimate(tmp_path / "est", abundances=rng.dirichlet(np.ones(3), size=400))
    capsys.readouterr()
    assert main(["score", "--truth", str(simulated), "--estimate", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["abundance_rmse"] > 0.25


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (dict(abundances=np.ones((399, 3)) / 3), "estimated abundances must be (pixels, K) = 400 x K"),
        (dict(abundances=np.ones((400, 2)) / 2), "K = 2 components but the truth has K = 3"),
        (dict(abundances=np.ones((400, 3)) / 3, endmembers=np.ones((4, 3))), "estimated endmembers must be"),
        (dict(endmembers=np.ones((5, 3))), "abundances.npy: missing"),
    ],
)
def test_bad_estimates_exit_2_with_one_line(simulated, tmp_path, capsys, arrays, message):
    folder = _estimate(tmp_path / "est", **arrays)
    capsys.readouterr()
    assert main(["score", "--truth", str(simulated), "--estimate", str(folder)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""


def test_bad_simulation_settings_exit_2(tmp_path, capsys):
    argv = ["data", "simulate", "pnl", "--channels", "3", "--latent-dim", "4", "--out", str(tmp_path / "x.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "K = 4 is larger than the 3 channels" in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


def test_missing_estimate_folder_exit_2(simulated, tmp_path, capsys):
    assert main(["score", "--truth", str(simulated), "--estimate", str(tmp_path / "nowhere")]) == 2
    assert "estimate folder does not exist" in capsys.readouterr().err


def test_truth_version_is_reported_and_checked(simulated, tmp_path, capsys):
    with np.load(simulated) as data:
        folder = _estimate(tmp_path / "est", abundances=data["A"].T)
    capsys.readouterr()
    argv = ["score", "--truth", str(simulated), "--estimate", str(folder)]
    assert main([*argv, "--truth-version", "generator:original"]) == 0
    assert json.loads(capsys.readouterr().out)["truth_version"] == "generator:original"
    assert main([*argv, "--truth-version", "misicnet"]) == 2
    assert "no ground-truth version 'misicnet'" in capsys.readouterr().err


def test_h5_output_and_missing_truth_file(tmp_path, capsys):
    path = tmp_path / "scene.h5"
    argv = ["data", "simulate", "pnl", "--samples", "50", "--nonlinearity", "random_monotone", "--out", str(path)]
    assert main(argv) == 0
    folder = _estimate(tmp_path / "est", abundances=np.ones((50, 3)) / 3)
    capsys.readouterr()
    assert main(["score", "--truth", str(path), "--estimate", str(folder)]) == 0
    assert json.loads(capsys.readouterr().out)["abundance_rmse"] > 0
    assert main(["score", "--truth", str(tmp_path / "absent.npz"), "--estimate", str(folder)]) == 2
    assert "absent.npz" in capsys.readouterr().err
    assert main(["data", "simulate", "pnl", "--out", str(tmp_path / "scene.csv")]) == 2
    assert "written as .npz or .h5" in capsys.readouterr().err


def test_a_scene_without_truth_cannot_be_scored(tmp_path, capsys):
    path = tmp_path / "plain.npz"
    np.savez(path, Y=np.random.default_rng(0).random((20, 4)).astype(np.float32))
    folder = _estimate(tmp_path / "est", abundances=np.ones((20, 2)) / 2)
    assert main(["score", "--truth", str(path), "--estimate", str(folder)]) == 2
    assert "no ground truth" in capsys.readouterr().err


@pytest.fixture()
def phantom(tmp_path):
    out = tmp_path / "phantom"
    argv = ["data", "simulate", "dce", "--out", str(out), "--shape", "12", "12", "2", "--frames", "20", "--snr", "30",
            "--seed", "0"]
    assert main(argv) == 0
    return out


def test_a_nifti_scan_is_scored_against_its_fraction_volume(phantom, tmp_path, capsys):
    """The phantom's fractions, read at the mask's voxels (C order), score zero against themselves
    and badly when the voxels are shuffled."""
    import nibabel as nib

    mask = nib.load(phantom / "mask.nii.gz").get_fdata() > 0
    fractions = nib.load(phantom / "fractions_probseg.nii.gz").get_fdata()[mask]
    argv = ["score", "--truth", str(phantom / "dce.nii.gz"), "--mask", str(phantom / "mask.nii.gz"),
            "--truth-fractions", str(phantom / "fractions_probseg.nii.gz")]
    exact = _estimate(tmp_path / "exact", abundances=fractions[:, ::-1])
    shuffled = _estimate(tmp_path / "shuffled", abundances=np.random.default_rng(0).permutation(fractions))
    capsys.readouterr()
    assert main([*argv, "--estimate", str(exact)]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["abundance_rmse"] < 1e-6 and scores["truth_version"] == "fractions_probseg.nii.gz"
    assert main([*argv, "--estimate", str(shuffled)]) == 0
    assert json.loads(capsys.readouterr().out)["abundance_rmse"] > 0.1


def test_a_fraction_volume_of_the_wrong_shape_is_refused(phantom, tmp_path, capsys):
    import nibabel as nib

    wrong = tmp_path / "wrong.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 2, 4), np.float32), np.eye(4)), wrong)
    folder = _estimate(tmp_path / "est", abundances=np.ones((10, 4)) / 4)
    argv = ["score", "--truth", str(phantom / "dce.nii.gz"), "--mask", str(phantom / "mask.nii.gz"),
            "--truth-fractions", str(wrong), "--estimate", str(folder)]
    assert main(argv) == 2
    assert "(5, 5, 2, 4)" in capsys.readouterr().err


def test_a_fraction_volume_on_another_grid_is_refused(phantom, tmp_path, capsys):
    """Same shape, shifted affine: the fractions belong to other voxels, so scoring refuses them."""
    import nibabel as nib

    original = nib.load(phantom / "fractions_probseg.nii.gz")
    shifted_affine = original.affine.copy()
    shifted_affine[:3, 3] += 5.0
    moved = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(original.dataobj), shifted_affine), moved)
    folder = _estimate(tmp_path / "est", abundances=np.ones((10, 4)) / 4)
    argv = ["score", "--truth", str(phantom / "dce.nii.gz"), "--mask", str(phantom / "mask.nii.gz"),
            "--truth-fractions", str(moved), "--estimate", str(folder)]
    assert main(argv) == 2
    assert "affine differs" in capsys.readouterr().err
