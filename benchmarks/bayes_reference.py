"""What the truth itself scores on the thesis tables: the Bayes posterior under the TRUE A, f and noise.

For every cell of the thesis benchmark (studies/thesis_tables.py: N = K = 3, 3000 pixels, the 'thesis'
generator for nonlinear data and 'linear' for linear data, seeds 0-4, --noise-reference as there; or the
original code's generator, `--data original`, beside the published CNAE/MVES row) this
computes, without any training, the exact posterior p(z | x) ∝ N(x; f(A z), diag(s2_n)) under the flat
Dirichlet(1) prior, on an even lattice over the simplex (nisca.models.lattice, 49,770 points), and scores

    posterior mean   the Bayes estimate for the abundance MSE: no method can have a lower expected MSE
    posterior mode   the lattice point of largest posterior (maximum likelihood under the true decoder)

with the same metrics as the tables (`nisca.metrics.score`: latent MSE after Hungarian matching, subspace
distance, and R^2 of the estimated linear mixture A z_hat against the true A z). A model that learns A and
f from the data alone can match these figures only by recovering the truth; a published figure below the
posterior mean's MSE cannot have come from this data. This is a reference, not a method: it uses the truth.

--fit also trains NISCA (its defaults with the sampling readout, plus --set KEY=VALUE) on every scene and
reports, per seed, the exact log-likelihood log p(x) per pixel (the lattice average of the likelihood, data
units) of the true decoder and of the learned one, and the learned decoder's own exact posterior mean: if
the truth has the higher likelihood, the training stopped short of the maximum-likelihood decoder.

    python benchmarks/bayes_reference.py [--seeds 0 1 2 3 4] [--samples 3000] [--noise-reference channel]
                                         [--snrs 10 20 30] [--data linear thesis original] [--fit [--set KEY=VALUE]]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import numpy as np

import torch

from nisca.data.scene import Scene
from nisca.data.synthetic import make_nonlinearity, simulate_pnl
from nisca.metrics import score
from nisca.models.lattice import default_resolution, lattice_log_likelihood, lattice_posterior, simplex_lattice

PUBLISHED = {  # MODEL.md section 5: thesis NISCA (selected on ground truth); CNAE/MVES for the original generator
    ("linear", "abundance_mse"): (2.82e-2, 5.43e-3, 5.63e-3),
    ("linear", "subspace_distance"): (0.331, 0.130, 0.132),
    ("thesis", "r2_nonlinearity"): (0.897, 0.971, 0.994),
    ("thesis", "abundance_mse"): (6.71e-2, 2.21e-2, 5.23e-3),
    ("thesis", "subspace_distance"): (0.493, 0.272, 0.131),
    ("original", "r2_nonlinearity"): (0.772, 0.945, 0.991),
    ("original", "abundance_mse"): (6.85e-2, 2.07e-2, 5.01e-3),
    ("original", "subspace_distance"): (0.518, 0.226, 0.123),
}


def true_decoder_means(scene: Scene, nonlinearity: str, lattice: torch.Tensor) -> torch.Tensor:
    """f(A g) for every lattice point g, with the scene's own A and f (deterministic generators only)."""
    linear = lattice.double().numpy() @ scene.truth.mixing.T
    # the thesis, original and linear generators draw nothing, so any rng reproduces the scene's f
    means = make_nonlinearity(nonlinearity, scene.truth.linear_mixture, np.random.default_rng(0))(linear)
    return torch.as_tensor(np.asarray(means, dtype=np.float64))


def edge_ratio(mixing: np.ndarray) -> float:
    """How flat the linear simplex is: the largest over the smallest singular value of its edges
    A e_k - A e_1 (1 for a regular simplex; a large ratio leaves one direction thin against the noise)."""
    edges = mixing[:, 1:] - mixing[:, :1]
    values = np.linalg.svd(edges, compute_uv=False)
    return float(values[0] / values[-1])


def score_truth(scene: Scene, data: str, lattice: torch.Tensor) -> dict[str, dict[str, float]]:
    """The posterior mean's and mode's metrics under the true decoder, and the truth's log p(x)."""
    vertices = true_decoder_means(scene, data, torch.eye(3, dtype=torch.float64)).numpy()
    if not np.allclose(vertices, scene.truth.endmembers.T, rtol=1e-5, atol=1e-6):  # float32 storage
        raise RuntimeError(f"{scene.name}: the rebuilt decoder does not reproduce the scene's endmembers")
    noise = torch.as_tensor(scene.provenance["noise_variance_per_channel"], dtype=torch.float64)
    x = torch.as_tensor(scene.Y, dtype=torch.float64)
    means = true_decoder_means(scene, data, lattice)
    posterior = lattice_posterior(x, means, noise, lattice)
    out = {name: score(scene, abundances=z.numpy(), linear_mixture=z.numpy() @ scene.truth.mixing.T)
           for name, z in (("posterior mean", posterior["mean"]), ("posterior mode", posterior["mode"]))}
    out["posterior mean"]["log_likelihood"] = float(lattice_log_likelihood(x, means, noise).mean())
    return out


def score_learned(scene: Scene, seed: int, overrides: dict[str, object], lattice: torch.Tensor) -> dict[str, float]:
    """Train NISCA on the scene (no truth seen) and score its decoder the same way, in data units."""
    from nisca import fit
    from nisca.models.nisca import load_checkpoint

    # the fit's own readout is the encoder's sampling one unless --set inference=... says otherwise
    result = fit("nisca", scene, {"seed": seed, "inference": "sampling", **overrides}, progress_bar=False)
    module = load_checkpoint(result.checkpoint_path).module
    means, noise = module.lattice_means_in_data_units(lattice)
    x = torch.as_tensor(scene.Y, dtype=torch.float64)
    z = lattice_posterior(x, means, noise, lattice)["mean"]
    with torch.no_grad():
        linear = module.linear(z.float()).double().numpy()
    exact = score(scene, abundances=z.numpy(), linear_mixture=linear)
    metrics = ("abundance_mse", "subspace_distance", "r2_nonlinearity")
    return {"log_likelihood": float(lattice_log_likelihood(x, means, noise).mean()), "epochs": result.epochs,
            "NISCA, sampling": {key: result.metrics[key] for key in metrics},
            "NISCA, exact posterior": {key: exact[key] for key in metrics}}


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--noise-reference", choices=("channel", "total"), default="channel")
    parser.add_argument("--snrs", nargs="+", type=float, default=[10.0, 20.0, 30.0])
    parser.add_argument("--data", nargs="+", choices=("linear", "thesis", "original"),
                        default=["linear", "thesis"])
    parser.add_argument("--fit", action="store_true", help="also train NISCA and compare its likelihood")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="NISCA setting for --fit")
    args = parser.parse_args(argv)
    overrides = {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}
    torch.set_num_threads(1)
    lattice = simplex_lattice(3, default_resolution(3), dtype=torch.float64)
    rows: dict[tuple[str, str, str, float], list[float]] = {}
    for data in args.data:
        for snr in args.snrs:
            for seed in args.seeds:
                scene = simulate_pnl(3, 3, args.samples, snr, nonlinearity=data, seed=seed,
                                     noise_reference=args.noise_reference)
                cell = score_truth(scene, data, lattice)
                for estimate, metrics in cell.items():
                    for metric, value in metrics.items():
                        rows.setdefault((data, estimate, metric, snr), []).append(value)
                truth = cell["posterior mean"]
                line = (f"{data} {snr:g} dB seed {seed}: truth mse {truth['abundance_mse']:.3g}, subspace "
                        f"{truth['subspace_distance']:.3f}, R^2 {truth['r2_nonlinearity']:.4f}; simplex edge ratio "
                        f"{edge_ratio(scene.truth.mixing):.1f}")
                if args.fit:
                    learned = score_learned(scene, seed, overrides, lattice)
                    for estimate in ("NISCA, sampling", "NISCA, exact posterior"):
                        for metric, value in learned[estimate].items():
                            rows.setdefault((data, estimate, metric, snr), []).append(value)
                    line += (f", log p(x) {truth['log_likelihood']:.3f}; NISCA ({learned['epochs']} epochs) mse "
                             f"{learned['NISCA, sampling']['abundance_mse']:.3g} (exact posterior "
                             f"{learned['NISCA, exact posterior']['abundance_mse']:.3g}), "
                             f"log p(x) {learned['log_likelihood']:.3f} "
                             f"(learned - true {learned['log_likelihood'] - truth['log_likelihood']:+.3f})")
                print(line, flush=True)
    published = args.snrs == [10.0, 20.0, 30.0]
    print(f"\nBayes posterior under the true decoder (posterior mean / mode)"
          + (f" and NISCA {overrides or '(defaults)'} read out by sampling and exactly" if args.fit else "")
          + f"; simulate_pnl N = K = 3, {args.samples} pixels, noise "
          f"reference '{args.noise_reference}', seeds {args.seeds}; mean ± std over seeds"
          + (" [published: thesis NISCA; CNAE/MVES for 'original']" if published else "") + "\n")
    print("| data, metric | estimate | " + " | ".join(f"{snr:g} dB" for snr in args.snrs) + " |")
    print("|---|---|" + "---|" * len(args.snrs))
    for (data, metric), reference in PUBLISHED.items():
        if data not in args.data:
            continue
        fmt = ".2e" if metric == "abundance_mse" else ".3f"
        estimates = ["posterior mean", "posterior mode"] + (["NISCA, sampling", "NISCA, exact posterior"] if args.fit else [])
        for estimate in estimates:
            cells = []
            for i, snr in enumerate(args.snrs):
                values = np.asarray(rows[(data, estimate, metric, snr)])
                cells.append(f"{values.mean():{fmt}} ± {values.std():{fmt}}"
                             + (f" [{reference[i]:{fmt}}]" if published else ""))
            print(f"| {data}, {metric} | {estimate} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
