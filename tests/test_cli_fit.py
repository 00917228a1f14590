"""`nisca fit`: the CLI contract files, their shapes, and clear errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from nisca.cli import main
from nisca.data.io import save_scene
from nisca.data.scene import ImageGeometry
from nisca.data.synthetic import simulate_pnl

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    """A 20 x 15 image scene with 3 channels and K = 3, saved in the project's .npz format."""
    scene = simulate_pnl(3, 3, 300, 25.0, nonlinearity="original", seed=2)
    scene = replace(scene, geometry=ImageGeometry(rows=20, cols=15), axis=np.array([450.0, 550.0, 650.0]),
                    axis_name="wavelength_nm")
    path = tmp_path_factory.mktemp("scene") / "image.npz"
    save_scene(scene, path)
    return path


@pytest.mark.parametrize("method", ["nisca", "vasca"])
def test_fit_writes_every_contract_file(image_file, tmp_path, method, capsys):
    out = tmp_path / "out"
    code = main(["fit", method, "--data", str(image_file), "--latent-dim", "3", "--out", str(out),
                 "--seed", "0", "--max-epochs", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    abundances = np.load(out / "abundances.npy")
    assert abundances.dtype == np.float32 and abundances.shape == (300, 3)
    assert np.allclose(abundances.sum(1), 1.0, atol=1e-5) and (abundances >= 0).all()
    endmembers = np.load(out / "endmembers.npy")
    assert endmembers.dtype == np.float32 and endmembers.shape == (3, 3)
    assert np.load(out / "endmembers_purest.npy").shape == (3, 3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"abundance_rmse", "sad_deg", "sad_purest_deg", "val_loss", "epochs"} <= set(metrics)
    assert metrics["epochs"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == method and config["max_epochs"] == 2 and config["seed"] == 0
    assert config["latent_dim"] == 3 and config["device"] == "cpu"
    assert (out / "checkpoint.ckpt").stat().st_size > 0
    for picture in ("abundance_maps.png", "endmembers.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "nonlinearities.png").exists() == (method == "nisca")
    assert "wrote" in capsys.readouterr().out


def test_config_file_is_read_and_flags_override_it(image_file, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("max_epochs: 50\nbatch_size: 64\nmonotone: true\n")
    out = tmp_path / "out"
    assert main(["fit", "nisca", "--data", str(image_file), "--latent-dim", "3", "--out", str(out),
                 "--config", str(settings), "--max-epochs", "1"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["max_epochs"] == 1 and config["batch_size"] == 64 and config["monotone"] is True


@pytest.mark.parametrize("extra,message", [
    (["--config", "{settings}"], "valid keys are"),
    (["--latent-dim", "9"], "larger than the 3 channels"),
])
def test_bad_settings_print_one_clear_error(image_file, tmp_path, capsys, extra, message):
    settings = tmp_path / "bad.json"
    settings.write_text(json.dumps({"learning_rate": 0.1}))
    args = ["fit", "nisca", "--data", str(image_file), "--latent-dim", "3", "--out", str(tmp_path / "o")]
    args += [item.format(settings=settings) for item in extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_epoch_and_device_flags_are_refused_for_untrained_methods(image_file, tmp_path, capsys):
    code = main(["fit", "pca", "--data", str(image_file), "--latent-dim", "3", "--out", str(tmp_path / "o"),
                 "--max-epochs", "5"])
    assert code == 2
    assert "--max-epochs applies to trained methods" in capsys.readouterr().err


def test_nan_data_file_is_refused(tmp_path, capsys):
    Y = np.random.default_rng(0).random((40, 3)).astype(np.float32)
    Y[3, 1] = np.nan
    path = tmp_path / "nan.npy"
    np.save(path, Y)
    assert main(["fit", "nisca", "--data", str(path), "--latent-dim", "3", "--out", str(tmp_path / "o")]) == 2
    assert "NaN" in capsys.readouterr().err


def test_identifiability_warning_is_printed(tmp_path, capsys):
    scene = simulate_pnl(8, 3, 200, 30.0, nonlinearity="linear", seed=0)
    path = tmp_path / "wide.npz"
    save_scene(scene, path)
    assert main(["fit", "nisca", "--data", str(path), "--latent-dim", "3", "--out", str(tmp_path / "o"),
                 "--max-epochs", "1"]) == 0
    assert "warning: the identifiability condition 3 <= K <= N <= K(K-1)/2 does not hold" in capsys.readouterr().err
