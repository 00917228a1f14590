"""Which estimate from one NISCA fit scores best on a real scene, beside linear oracles.

For one fit (default config unless --set) on Samson or the Urban sub-image, scores against every ground
truth: the posterior-mean abundances, softmax([mu, 0]), FCLS on NISCA's vertex endmembers f(A e_k),
per-pixel maximum likelihood under the fitted decoder (Adam on the softmax logits, from the posterior
mean), the purest-pixel endmembers (nisca.models.nisca.purest_pixel_endmembers) alone and with FCLS,
VCA (largest of 8 simplices) + FCLS, and FCLS on each truth's own endmembers (an oracle: how far a
linear unmixing with the reference spectra is from the reference fractions).

    python benchmarks/real_scene_estimates.py --scene samson --seed 0 [--set linear_first=true]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from nisca.data.catalog import shared_data_dir

DEFAULT_DATA = shared_data_dir()


def main(argv: list[str] | None = None) -> int:
    from nisca.baselines.fcls import fcls
    from nisca.baselines.vca import vca_max_volume
    from nisca.config import parse_assignment
    from nisca.data import io
    from nisca.errors import NiscaError
    from nisca.fit import fit
    from nisca.metrics import score
    from nisca.models.nisca import load_checkpoint, purest_pixel_endmembers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", choices=["samson", "urban"], default="samson")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=80)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--set", action="append", default=[], type=parse_assignment, metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    hyper = args.data / "hyperspectral"
    try:
        if args.scene == "samson":
            path = hyper / "Samson.npz"
            scene = io.load_scene(path, truth_version="original")
            truths = {version: io.load_ground_truth(path, version) for version in ("original", "misicnet")}
        else:
            scene = io.load_scene(hyper / "Urban_subimage_34x78.npz", truth_version="4")
            truths = {"4": scene.truth}
    except NiscaError as error:
        print(f"error: {error} (set --data or NISCA_SHARED_DATA)", file=sys.stderr)
        return 2
    K = scene.truth.n_components
    config = {"latent_dim": K, "seed": args.seed, "max_epochs": args.max_epochs, **dict(args.set)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identifiability note: K and N are stated
        result = fit("nisca", scene, config, progress_bar=False)
    Y = scene.Y.astype(np.float64)

    def report(label: str, abundances: np.ndarray, endmembers: np.ndarray | None) -> None:
        cells = []
        for version, truth in truths.items():
            m = score(scene.with_truth(truth), abundances=abundances, endmembers=endmembers)
            cells.append(f"{version}: {100 * m['abundance_rmse']:.1f} % / {m.get('sad_deg', float('nan')):.1f} deg")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)

    print(f"{scene.name}, nisca seed {args.seed}, config {config}; cells: aRMSE / SAD per truth")
    report("posterior mean, f(A e_k)", result.abundances, result.endmembers)
    report("softmax([mu, 0]), f(A e_k)", result.extras["abundances_mode"], result.endmembers)
    report("FCLS on f(A e_k)", fcls(Y, result.endmembers), result.endmembers)
    report("per-pixel maximum likelihood", _maximum_likelihood(load_checkpoint(result.checkpoint_path).module,
                                                                Y, result.abundances), result.endmembers)
    purest = purest_pixel_endmembers(Y, result.abundances)
    report("posterior mean, purest-pixel endmembers", result.abundances, purest)
    report("FCLS on purest-pixel endmembers", fcls(Y, purest), purest)
    vca_endmembers, _ = vca_max_volume(Y, K, seed=args.seed, restarts=8)
    report("VCA (largest of 8) + FCLS", fcls(Y, vca_endmembers), vca_endmembers)
    for version, truth in truths.items():
        report(f"oracle: FCLS on the {version!r} endmembers", fcls(Y, truth.endmembers), truth.endmembers)
    return 0


def _maximum_likelihood(module: torch.nn.Module, Y: np.ndarray, start: np.ndarray, steps: int = 400) -> np.ndarray:
    """argmax_z p(x | z) on the simplex for every pixel under the fitted decoder (softmax logits, Adam)."""
    x = (torch.as_tensor(Y, dtype=torch.float32) - module.offset) / module.scale
    s2 = module.noise_variance().detach()
    logits = torch.log(torch.as_tensor(np.clip(start, 1e-4, None), dtype=torch.float32)).requires_grad_(True)
    optimiser = torch.optim.Adam([logits], lr=0.05)
    for _ in range(steps):
        loss = (((x - module.decode(torch.softmax(logits, 1))) ** 2) / s2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return torch.softmax(logits, 1).detach().numpy()


if __name__ == "__main__":
    sys.exit(main())
