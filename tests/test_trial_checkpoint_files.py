"""The files of a Tune trial's final checkpoint: the same estimates `nisca fit` writes."""

from __future__ import annotations

import json

import numpy as np

from nisca.fit import FitResult
from nisca.tune.trainable import write_final_checkpoint


def test_the_final_checkpoint_holds_every_estimate_of_the_fit(tmp_path):
    rng = np.random.default_rng(0)
    Y = rng.random((12, 5))
    result = FitResult(
        method="nisca", abundances=rng.dirichlet(np.ones(3), 12), endmembers=rng.random((5, 3)),
        metrics={"val_loss": 1.5}, config={"latent_dim": 3}, wall_time_s=1.0, epochs=2, checkpoint_path=None,
        reconstruction=Y + 0.1,
        extras={"abundances_mode": rng.dirichlet(np.ones(3), 12), "endmembers_purest": rng.random((5, 3))},
    )
    write_final_checkpoint(tmp_path, result, Y)
    for name, expected in [("abundances", result.abundances), ("endmembers", result.endmembers),
                           *result.extras.items()]:
        saved = np.load(tmp_path / f"{name}.npy")
        assert saved.dtype == np.float32
        np.testing.assert_allclose(saved, expected, rtol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "residual_rmse.npy"), 0.1, rtol=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"val_loss": 1.5}
