"""Reproduce the thesis' synthetic benchmark (Tables 5.1-5.5, MODEL.md section 5) with our NISCA and VASCA.

Data: `nisca.data.synthetic.simulate_pnl` with N = K = 3, the "thesis" generator for nonlinear data (A =
10 N(0,1), f cycling 5 sigmoid(y) + 0.3 y, -3 tanh(y) - 0.2 y, 0.4 exp(y)) and "linear" for linear data,
noise from the signal power at 10, 20 and 30 dB; scene seed = fit seed = 0..seeds-1. Every fit uses the
method's default config (noise variance estimated from the data, not given) with a capped epoch budget;
checkpoints are selected on the held-out validation loss, never on ground truth. Prints a Markdown table
per thesis table with our mean ± std beside the published numbers, and writes the raw rows as CSV.

    python studies/thesis_tables.py --out docs/thesis_tables.md            # full: 5 seeds, 3 SNRs
    python studies/thesis_tables.py --quick                                # seconds, for tests

    python studies/thesis_tables.py --noise-reference channel --set noise=learn   # the per-channel variant

`--methods` takes any method of the registry (cnae is the thesis' CNAE/MVES column; vca, mves, nmf, ica
and pca are extra rows). `--noise-reference channel` gives every channel the stated SNR of its own signal
variance instead of one white variance from the total power: with the thesis generator verbatim, the
0.4*exp(y) channel carries almost all the power and the other two channels sit below the noise for most
seeds (the header lists every scene's per-channel SNR). `--set KEY=VALUE` sets a config key on every
method whose config has it (e.g. `--set noise=learn`); a key that no listed method has is an error.
When both NISCA and VASCA have rows, a last table gives NISCA's mean latent MSE over VASCA's (issue 3's
ratio targets). `--from-csv A.csv B.csv` rebuilds the tables from earlier runs, B's rows replacing A's for
the same method, data, SNR and seed (one NISCA option set beside another run's VASCA rows).
`--generator original` uses the original code's nonlinear generator instead (A z scaled by 5, 5 sigmoid(y)
+ 0.3 y on every channel; MODEL.md section 5), and `--data nonlinear` runs only one kind of data.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

METHODS = ["nisca", "vasca"]
SNRS = (10.0, 20.0, 30.0)
DATA = ("linear", "nonlinear")  # data kinds; nonlinear data use the --generator (default "thesis")
GENERATORS = ("thesis", "original")

# (table, metric, data kind, title) in the thesis' order; published values by method then SNR.
TABLES = (
    ("5.1", "abundance_mse", "linear", "latent MSE, linear data"),
    ("5.2", "subspace_distance", "linear", "subspace distance, linear data"),
    ("5.3", "r2_nonlinearity", "nonlinear", "R^2 of the residual nonlinearity, nonlinear data"),
    ("5.4", "abundance_mse", "nonlinear", "latent MSE, nonlinear data"),
    ("5.5", "subspace_distance", "nonlinear", "subspace distance, nonlinear data"),
)
PUBLISHED: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {
    ("abundance_mse", "linear"): {"nisca": (2.82e-2, 5.43e-3, 5.63e-3), "vasca": (2.93e-2, 5.47e-3, 5.03e-3)},
    ("subspace_distance", "linear"): {"nisca": (0.331, 0.130, 0.132), "vasca": (0.357, 0.131, 0.128)},
    ("r2_nonlinearity", "nonlinear"): {"vasca": (0.671, 0.561, 0.715), "cnae": (0.772, 0.945, 0.991),
                                       "nisca": (0.897, 0.971, 0.994)},
    ("abundance_mse", "nonlinear"): {"vasca": (7.34e-2, 6.81e-2, 4.87e-2), "cnae": (6.85e-2, 2.07e-2, 5.01e-3),
                                     "nisca": (6.71e-2, 2.21e-2, 5.23e-3)},
    ("subspace_distance", "nonlinear"): {"vasca": (0.562, 0.611, 0.607), "cnae": (0.518, 0.226, 0.123),
                                         "nisca": (0.493, 0.272, 0.131)},
}
HIGHER_IS_BETTER = {"r2_nonlinearity"}


@dataclass(frozen=True)
class Job:
    method: str
    data: str
    snr: float
    seed: int
    samples: int
    max_epochs: int
    noise_reference: str = "total"
    overrides: tuple[tuple[str, object], ...] = ()
    generator: str = "thesis"


def make_scene(data: str, snr: float, seed: int, samples: int, noise_reference: str, generator: str = "thesis"):
    from nisca.data.synthetic import simulate_pnl

    nonlinearity = "linear" if data == "linear" else generator
    return simulate_pnl(3, 3, samples, snr, nonlinearity=nonlinearity, seed=seed, noise_reference=noise_reference)


def channel_snrs(data: str, snr: float, seed: int, samples: int, noise_reference: str,
                 generator: str = "thesis") -> list[float]:
    """Each channel's SNR in dB (its clean signal variance over its noise variance) for one scene."""
    import numpy as np

    clean = make_scene(data, math.inf, seed, samples, noise_reference, generator).Y.astype(np.float64)
    noisy = make_scene(data, snr, seed, samples, noise_reference, generator).Y.astype(np.float64)
    return (10 * np.log10(clean.var(axis=0) / (noisy - clean).var(axis=0))).tolist()


def run_job(job: Job) -> dict[str, object]:
    """One fit on one freshly generated scene; returns a flat row for the CSV."""
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    from nisca import fit
    from nisca.methods import get_method

    scene = make_scene(job.data, job.snr, job.seed, job.samples, job.noise_reference, job.generator)
    config: dict[str, object] = {"seed": job.seed, **dict(job.overrides)}
    if get_method(job.method).trained:
        config["max_epochs"] = job.max_epochs
    result = fit(job.method, scene, config, progress_bar=False)
    row: dict[str, object] = {"method": job.method, "data": job.data, "snr_db": job.snr, "seed": job.seed,
                              "samples": job.samples, "epochs": result.epochs}
    for key in FIELDS[6:]:
        row[key] = result.metrics.get(key, math.nan)
    return row


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return mean, std


def _fmt(value: float, metric: str) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.2e}" if metric == "abundance_mse" else f"{value:.3f}"


def cell_values(rows: list[dict[str, object]], method: str, data: str, snr: float, metric: str) -> list[float]:
    """One cell's values over seeds: `metric` of every row of `method` on `data` at `snr`."""
    return [float(r[metric]) for r in rows if r["method"] == method and r["data"] == data and float(r["snr_db"]) == snr]


def markdown(rows: list[dict[str, object]], methods: Sequence[str], snrs: Sequence[float]) -> str:
    """One Markdown table per thesis table: ours (mean ± std over seeds) beside the published value."""
    lines: list[str] = []
    for table, metric, data, title in TABLES:
        lines += [f"**Table {table}: {title}** (ours: mean ± std; thesis in brackets; "
                  f"{'higher' if metric in HIGHER_IS_BETTER else 'lower'} is better)", ""]
        lines.append("| method | " + " | ".join(f"{snr:g} dB" for snr in snrs) + " |")
        lines.append("|---|" + "---|" * len(snrs))
        published = PUBLISHED.get((metric, data), {})
        for method in list(methods) + [m for m in published if m not in methods]:
            cells = []
            for snr in snrs:
                values = cell_values(rows, method, data, snr, metric)
                mean, std = _mean_std(values)
                ours = f"{_fmt(mean, metric)} ± {_fmt(std, metric)}" if values else "not run"
                index = SNRS.index(snr) if snr in SNRS else None
                paper = published.get(method)
                paper_text = f" [{_fmt(paper[index], metric)}]" if paper and index is not None else ""
                cells.append(ours + paper_text)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def ratio_table(rows: list[dict[str, object]], snrs: Sequence[float]) -> str:
    """NISCA's mean latent MSE over VASCA's per data kind and SNR (issue 3's targets: at most 0.5 on
    nonlinear data, within 10 % on linear data); empty unless both methods have rows."""
    def mean(method: str, data: str, snr: float) -> float | None:
        values = cell_values(rows, method, data, snr, "abundance_mse")
        return sum(values) / len(values) if values else None

    lines = ["**NISCA / VASCA latent MSE** (ratio of the means over seeds; target: at most 0.5x on "
             "nonlinear data, at most 1.1x on linear data)", "",
             "| data | " + " | ".join(f"{snr:g} dB" for snr in snrs) + " |", "|---|" + "---|" * len(snrs)]
    found = False
    for data in DATA:
        cells = []
        for snr in snrs:
            nisca, vasca = mean("nisca", data, snr), mean("vasca", data, snr)
            found |= nisca is not None and vasca is not None
            cells.append(f"{nisca / vasca:.2f}x" if nisca is not None and vasca else "-")
        lines.append(f"| {data} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" if found else ""


def merge_rows(tables: Sequence[list[dict[str, object]]]) -> list[dict[str, object]]:
    """Rows of several runs; a later run's row replaces an earlier one for the same method, data, SNR
    and seed (e.g. a NISCA option set read beside the VASCA rows of an earlier run)."""
    merged: dict[tuple[object, ...], dict[str, object]] = {}
    for rows in tables:
        for row in rows:
            merged[(row["method"], row["data"], float(row["snr_db"]), float(row["seed"]))] = row
    return list(merged.values())


FIELDS = ("method", "data", "snr_db", "seed", "samples", "epochs", "abundance_mse", "subspace_distance",
          "r2_nonlinearity", "val_loss", "wall_time_s", "nonlinearity_kept",
          "val_loss_linear_phase")


def run_all(jobs: list[Job], workers: int, csv_path: Path | None) -> list[dict[str, object]]:
    """Run every job (in parallel when workers > 1), appending each row to the CSV as it finishes."""
    handle = None
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        handle = csv_path.open("w", newline="")
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
    rows: list[dict[str, object]] = []
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        results = pool.map(run_job, jobs) if pool else map(run_job, jobs)
        for row in results:
            rows.append(row)
            print(f"[{len(rows)}/{len(jobs)}] {row['method']} {row['data']} {row['snr_db']:g} dB seed {row['seed']}: "
                  f"mse {float(row['abundance_mse']):.3g}, {row['epochs']} epochs", file=sys.stderr, flush=True)
            if handle is not None:
                writer.writerow(row)
                handle.flush()
    finally:
        if pool is not None:
            pool.shutdown()
        if handle is not None:
            handle.close()
    return rows


def read_rows(path: Path) -> list[dict[str, object]]:
    with path.open() as handle:
        return [{key: (value if key in ("method", "data") else float(value)) for key, value in row.items()}
                for row in csv.DictReader(handle)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 20 dB, 300 samples, 3 epochs (tests)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per cell (default 5)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (to add seeds to a run)")
    parser.add_argument("--samples", type=int, default=5000, help="pixels per scene (default 5000)")
    parser.add_argument("--max-epochs", type=int, default=200, help="epoch cap per fit (default 200)")
    parser.add_argument("--methods", nargs="+", default=METHODS, help=f"default: {' '.join(METHODS)}")
    parser.add_argument("--snr", nargs="+", type=float, default=list(SNRS), help="SNRs in dB")
    parser.add_argument("--jobs", type=int, default=1, help="parallel fits (one torch thread each)")
    parser.add_argument("--noise-reference", choices=("total", "channel"), default="total",
                        help="noise from the total signal power (MODEL.md, default) or per channel")
    parser.add_argument("--generator", choices=GENERATORS, default="thesis",
                        help="nonlinear data: the thesis' generator (default) or the original code's")
    parser.add_argument("--data", nargs="+", choices=DATA, default=list(DATA), help="kinds of data to run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for the trained methods (value parsed as JSON, else a string)")
    parser.add_argument("--out", default=None, help="write the Markdown here (and the rows as .csv beside it)")
    parser.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                        help="only rebuild the tables from the rows of earlier runs (a later file's row replaces "
                             "an earlier one for the same method, data, SNR and seed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.samples, args.max_epochs, args.snr = 1, 300, 3, [20.0]
    from nisca.config import parse_assignment
    from nisca.errors import ConfigError
    from nisca.methods import overrides_by_method

    try:
        overrides = dict(parse_assignment(text) for text in args.overrides)
        per_method = overrides_by_method(args.methods, overrides)
    except ConfigError as error:
        raise SystemExit(f"thesis_tables: {error}") from None
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [Job(method, data, snr, seed, args.samples, args.max_epochs, args.noise_reference,
                tuple(per_method[method].items()), args.generator)
            for seed in seeds for data in args.data for snr in args.snr for method in args.methods]
    start = time.perf_counter()
    csv_path = Path(args.out).with_suffix(".csv") if args.out else None
    if args.from_csv:
        rows = merge_rows([read_rows(Path(path)) for path in args.from_csv])
    else:
        rows = run_all(jobs, args.jobs, csv_path)
    elapsed = time.perf_counter() - start
    command = "python studies/thesis_tables.py " + " ".join(argv if argv is not None else sys.argv[1:])
    settings = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "none"
    header = (
        f"Generator: simulate_pnl N = K = 3, nonlinear = '{args.generator}', linear = 'linear', noise reference "
        f"'{args.noise_reference}'; {args.samples} samples; seeds {seeds[0]}..{seeds[-1]}; SNR "
        f"{', '.join(f'{s:g}' for s in args.snr)} dB; methods' default configs with overrides: {settings}; "
        f"trained methods at most {args.max_epochs} epochs, early stopping and checkpoint selection on the "
        f"validation loss (10 % held out). {len(rows)} fits in {elapsed / 60:.1f} min "
        f"({os.cpu_count()} CPUs, shared). Command: `{command.strip()}`\n"
    )
    channels = "sigmoid, tanh, exp" if args.generator == "thesis" else "5 sigmoid(y) + 0.3 y in each"
    snr_lines = [f"Per-channel SNR of the nonlinear scenes (dB, channels 1-3: {channels}):", ""]
    for snr in args.snr:
        cells = [" / ".join(f"{v:.0f}" for v in channel_snrs("nonlinear", snr, seed, args.samples,
                                                             args.noise_reference, args.generator))
                 for seed in seeds]
        snr_lines.append(f"- {snr:g} dB: " + "; ".join(f"seed {i}: {c}" for i, c in zip(seeds, cells)))
    text = header + "\n" + "\n".join(snr_lines) + "\n\n" + markdown(rows, args.methods, args.snr)
    ratios = ratio_table(rows, args.snr)
    if ratios:
        text += "\n" + ratios
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
