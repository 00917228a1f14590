"""`nisca report` and the analysis notebooks on a tiny real study run through the project's runner.

One module-scoped pair of studies (run with nisca.tune.runner.run_study on one private embedded Ray):
  - "trained": NISCA and VASCA, random search over lr_encoder, ASHA, two seeds (per-epoch reports,
    checkpoints, early stops);
  - "classic": VCA on two scenes that differ in SNR (a sweep), two seeds (one report each, ranked by
    reconstruction_rmse).
The tests check the tables against Ray's own ResultGrid and the runner's records, the figures, the
self-contained HTML, and that both notebooks execute.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

SCENE = {"pnl": {"synthetic": {"channels": 6, "latent_dim": 3, "samples": 240, "snr_db": 30, "seed": 0}}}
SNR_SWEEP = {f"snr{snr}": {"synthetic": {"channels": 6, "latent_dim": 3, "samples": 240, "snr_db": snr, "seed": 0}}
             for snr in (10, 30)}
TRIALS = {"trained": 4, "classic": 4}


def _specs():
    from ray import tune

    from nisca.tune.spec import StudySpec

    small = {"encoder_hidden": [16], "lr_encoder": tune.loguniform(3e-3, 3e-2), "batch_size": 64, "inference_samples": 8}
    trained = StudySpec(
        name="trained", scenes=SCENE,
        methods={"nisca": {**small, "nonlinearity_hidden": 8}, "vasca": dict(small)},
        metric="val_loss", mode="min", searcher="random", scheduler="asha", num_samples=1, max_epochs=3,
        grace_period=1, reduction_factor=2, seeds=(0, 1), max_concurrent_trials=2, keep_checkpoints=2,
    )
    classic = StudySpec(
        name="classic", scenes=SNR_SWEEP, methods={"vca": {}}, metric="reconstruction_rmse", mode="min",
        searcher="random", scheduler="none", num_samples=1, seeds=(0, 1), max_concurrent_trials=2,
    )
    return trained, classic


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """Run both studies once; yields {name: (experiment folder, ResultGrid)}."""
    import ray

    from nisca.tune.runner import run_study

    saved = dict(os.environ)
    home = tmp_path_factory.mktemp("analysis-home")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    os.environ.update(HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_AIR_NEW_OUTPUT="0", RAY_DEDUP_LOGS="1")
    os.environ.pop("RAY_ADDRESS", None)
    storage = tmp_path_factory.mktemp("studies")
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
        out = {}
        for spec in _specs():
            grid = run_study(spec, storage=str(storage), verbose=0, echo=lambda line: None)
            out[spec.name] = (str(storage / spec.name), grid)
        yield out
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def report(studies, tmp_path_factory):
    """`nisca report trained classic --out DIR` through the subcommand's own parser and handler."""
    from nisca.cli import report as report_cli

    out = tmp_path_factory.mktemp("report")
    parser = argparse.ArgumentParser(prog="nisca")
    report_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", studies["trained"][0], studies["classic"][0], "--out", str(out)])
    assert args.handler(args) == 0
    return out


def _csv(report: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(report / "tables" / name, dtype={"trial_id": str})


def test_trial_table_matches_ray(studies, report):
    trials = _csv(report, "trials.csv")
    for name, (_, grid) in studies.items():
        mine = trials[trials["study"] == name]
        ray_frame = grid.get_dataframe()
        assert len(mine) == len(grid) == TRIALS[name]
        assert set(mine["trial_id"]) == set(ray_frame["trial_id"].astype(str))
        assert sorted(mine["method"]) == sorted(ray_frame["config/method"])
        assert set(mine["seed"]) == {0, 1}
    for column in ("study", "trial_id", "method", "seed", "status", "outcome", "completed", "stopped_early",
                   "error", "epochs", "node_ip", "wall_time_s", "val_loss", "best_val_loss",
                   "reconstruction_rmse", "abundance_rmse", "nisca/lr_encoder", "vasca/lr_encoder"):
        assert column in trials.columns, column
    trained = trials[trials["study"] == "trained"]
    # each method's searched hyperparameter is set for that method's trials only
    assert trained.loc[trained["method"] == "nisca", "nisca/lr_encoder"].between(3e-3, 3e-2).all()
    assert trained.loc[trained["method"] == "nisca", "vasca/lr_encoder"].isna().all()


def test_outcomes_agree_with_the_runner_records(studies, report):
    import json

    trials = _csv(report, "trials.csv")
    for name, (path, grid) in studies.items():
        status = json.loads((Path(path) / "nisca_study" / "status.json").read_text())["trials"]
        mine = trials[trials["study"] == name].set_index("trial_id")
        for trial_id, record in status.items():
            expected = {"completed": "completed", "stopped_early": "stopped early", "error": "failed"}[record["state"]]
            assert mine.loc[trial_id, "outcome"] == expected
    stopped = _csv(report, "trained-stopped.csv") if (report / "tables" / "trained-stopped.csv").exists() else None
    early = set(trials.loc[trials["stopped_early"], "trial_id"])
    assert early == (set(stopped["trial_id"]) if stopped is not None else set())


def test_epoch_table_holds_every_epoch_report(studies, report):
    epochs = _csv(report, "epochs.csv")
    trials = _csv(report, "trials.csv").set_index("trial_id")
    _, grid = studies["trained"]
    for result in grid:
        trial_id = result.metrics["trial_id"]
        history = result.metrics_dataframe
        per_epoch = history[history["completed"] == 0]
        mine = epochs[epochs["trial_id"] == trial_id].sort_values("epoch")
        assert len(mine) == len(per_epoch) == trials.loc[trial_id, "epochs"] >= 1
        np.testing.assert_allclose(mine["val_loss"], per_epoch["val_loss"])
        assert mine["epoch"].tolist() == list(range(1, len(mine) + 1))
    assert not epochs["study"].eq("classic").any()  # classic methods report once, no learning curve


def test_best_trial_equals_ray_best_result(studies, report):
    best = _csv(report, "best_trials.csv")
    for name, metric in (("trained", "val_loss"), ("classic", "reconstruction_rmse")):
        _, grid = studies[name]
        ray_best = grid.get_best_result(metric=metric, mode="min")
        mine = best[best["study"] == name]
        overall = mine.sort_values([metric, "trial_id"]).iloc[0]
        assert overall["trial_id"] == ray_best.metrics["trial_id"]
        # per method, against Ray's own table of last results
        frame = grid.get_dataframe()
        for method, group in frame.groupby("config/method"):
            expected = group.sort_values([metric, "trial_id"]).iloc[0]["trial_id"]
            assert mine.loc[mine["method"] == method, "trial_id"].item() == expected


def test_leaderboard_per_method_with_seed_statistics(report):
    board = _csv(report, "leaderboard.csv")
    assert sorted(zip(board["study"], board["method"])) == [("classic", "vca"), ("trained", "nisca"), ("trained", "vasca")]
    classic = board[board["study"] == "classic"].set_index("method")
    assert (classic["ranked_by"] == "reconstruction_rmse").all()
    assert (classic["n_trials"] == 2).all()  # a configuration (here: a scene) over two seeds
    trials = _csv(report, "trials.csv")
    for method in ("vca",):
        snr = classic.loc[method, "data/snr_db"]
        pick = (trials["study"] == "classic") & (trials["method"] == method) & (trials["data/snr_db"] == snr)
        values = trials.loc[pick, "abundance_rmse"]
        assert len(values) == 2
        assert classic.loc[method, "abundance_rmse_mean"] == pytest.approx(values.mean())
        assert classic.loc[method, "abundance_rmse_std"] == pytest.approx(values.std(ddof=1), abs=1e-12)
        # rank 1 is the scene whose mean reconstruction error over seeds is lowest
        means = trials[(trials["study"] == "classic") & (trials["method"] == method)].groupby("data/snr_db")[
            "reconstruction_rmse"].mean()
        assert snr == means.idxmin()
    assert (board.loc[board["study"] == "trained", "ranked_by"] == "val_loss").all()


def test_sweep_table_per_method_and_level(report):
    sweep = _csv(report, "classic-sweep-data-snr_db.csv")
    trials = _csv(report, "trials.csv")
    trials = trials[trials["study"] == "classic"]
    assert sorted(zip(sweep["method"], sweep["data/snr_db"])) == [("vca", 10), ("vca", 30)]
    expected = trials.groupby(["method", "data/snr_db"])["abundance_rmse"].agg(["mean", "std"])
    for _, row in sweep.iterrows():
        mean, std = expected.loc[(row["method"], row["data/snr_db"])]
        assert row["n_trials"] == 2
        assert row["abundance_rmse_mean"] == pytest.approx(mean)
        assert row["abundance_rmse_std"] == pytest.approx(std, abs=1e-12)


def test_selection_never_looks_at_ground_truth(report):
    from nisca.analysis import load_studies, tables
    from nisca.analysis.load import StudyResults

    paths = [str(p) for p in _csv(report, "studies.csv")["experiment folder"]]
    results = load_studies(paths)
    before = tables.best_trials(results)[["study", "method", "trial_id"]]
    scrambled = results.trials.copy()
    for column in [c for c in scrambled.columns if c.startswith(("abundance_", "sad_deg", "subspace", "r2_"))]:
        scrambled[column] = -scrambled[column]  # reverses any ranking by a truth metric
    after = tables.best_trials(StudyResults(results.studies, scrambled, results.epochs, results.hyperparameters))
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after[["study", "method", "trial_id"]].reset_index(drop=True))


def test_every_figure_is_a_png_and_the_expected_ones_exist(studies, report):
    markdown = (report / "report.md").read_text()
    referenced = sorted(set(line.split("](")[1].rstrip(")") for line in markdown.splitlines() if line.startswith("![")))
    assert referenced, "the report shows no figure"
    for name in referenced:
        data = (report / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert len(data) > 5_000, name
    names = {Path(n).name for n in referenced}
    expected = {"trained-learning-curves.png", "trained-scheduler.png", "trained-hp-nisca-lr_encoder.png",
                "trained-hp-vasca-lr_encoder.png", "classic-best-vca-abundances.png", "classic-best-vca-endmembers.png",
                "classic-best-vca-residual.png", "classic-sweep-data-snr_db.png"}
    # the best trial's estimates are shown for every method with a trial that ran to the end (trials
    # stopped early by ASHA keep only per-epoch model checkpoints); Ray's own results say which ran
    _, grid = studies["trained"]
    finished = {r.config["method"] for r in grid if r.metrics.get("completed") == 1}
    for method in finished:
        expected |= {f"trained-best-{method}-abundances.png", f"trained-best-{method}-endmembers.png"}
    if "nisca" in finished:
        expected.add("trained-best-nisca-nonlinearities.png")
    for method in {"nisca", "vasca"} - finished:
        assert f"**{method}**: no trial saved final estimates" in markdown
    assert expected <= names, expected - names
    assert {p.name for p in (report / "figures").iterdir()} == names  # no figure left out of the report


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            if tag != "img" and value and not value.startswith(("#", "data:")):
                self.external.append(f"{tag} {key}={value}")


def test_html_is_self_contained(report):
    parser = _Sources()
    parser.feed((report / "report.html").read_text())
    figures = list((report / "figures").glob("*.png"))
    assert len(parser.images) == len(figures)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert parser.external == []
    html = (report / "report.html").read_text()
    assert "<table" in html and "Leaderboard" in html and "What the scheduler stopped" in html


def test_tables_are_also_csv(report):
    markdown = (report / "report.md").read_text()
    linked = [line.split("](")[1].rstrip(")") for line in markdown.splitlines() if line.startswith("CSV: [")]
    assert linked
    for name in linked:
        frame = pd.read_csv(report / name)
        assert len(frame.columns) >= 2, name


def test_notebooks_execute(studies, monkeypatch, tmp_path):
    """Both notebooks run top to bottom on the tiny studies (two kernels at once, to save time)."""
    import asyncio

    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("NISCA_EXPERIMENTS", os.pathsep.join(path for path, _ in studies.values()))
    monkeypatch.setenv("NISCA_EXPERIMENT", studies["trained"][0])
    notebooks = {name: nbformat.read(REPO / "analysis" / name, as_version=4)
                 for name in ("compare_trials.ipynb", "explore_model.ipynb")}
    for name, notebook in notebooks.items():
        assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), f"{name} has outputs"
        assert any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells), name

    async def run_all():
        clients = [NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
                   for nb in notebooks.values()]
        await asyncio.gather(*(client.async_execute() for client in clients))

    asyncio.run(run_all())
    for name, notebook in notebooks.items():
        errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert errors == [], name
        images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(images) >= 3, f"{name} drew {len(images)} figures"


def test_remote_style_uri_and_bad_folder(studies, tmp_path):
    from nisca.analysis import load_studies
    from nisca.errors import DataError

    path, grid = studies["classic"]
    results = load_studies([f"file://{path}"])  # the pyarrow URI route used for gs://
    assert set(results.trials["trial_id"]) == {r.metrics["trial_id"] for r in grid}
    with pytest.raises(DataError, match="not a Ray Tune experiment folder"):
        load_studies([str(tmp_path)])
    with pytest.raises(DataError, match="no such experiment folder"):
        load_studies([str(tmp_path / "missing")])


def test_error_reason_is_the_exception_line():
    from nisca.analysis.load import error_reason

    traceback = (
        "Failure # 1 (occurred at 2026-11-26)\nTraceback (most recent call last):\n"
        '  File "trainable.py", line 3, in fit\n    raise TrainingDivergedError(msg)\n'
        "nisca.errors.TrainingDivergedError: nisca: the loss became NaN at epoch 4\n"
    )
    assert error_reason(traceback) == "nisca.errors.TrainingDivergedError: nisca: the loss became NaN at epoch 4"

    class Wrapped(Exception):  # what Ray returns: a RayTaskError whose .cause is the trial's exception
        cause = ValueError("bad batch size")

    assert error_reason(Wrapped("long ray traceback")) == "ValueError: bad batch size"
    assert error_reason(None) == ""
