"""`write_report(paths, out_dir)`: one or more Ray Tune experiment folders -> report.md, report.html,
figures/*.png and tables/*.csv.

What is in it: the leaderboard per method (best configuration by the study metric, mean ± std over
seeds), every metric against every searched hyperparameter, learning curves of the top trials, what
ASHA stopped, sweeps (a metric against SNR, K or data size per method), the best trial of each method
(abundances beside the truth, endmembers against the reference, learned nonlinearities, residuals)
and the failed trials with their reasons. Selection never looks at ground truth.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from nisca.analysis import figures, tables
from nisca.analysis.document import Document
from nisca.analysis.load import Study, StudyResults, load_studies
from nisca.analysis.outputs import SceneLoader, load_trial_outputs

TOP_CURVES = 5  # learning curves: this many best trials per method
RANKING_ROWS = 15  # rows of the per-study ranking shown in the report (the CSV has all)


@dataclass
class ReportFiles:
    """What `write_report` wrote."""

    out_dir: Path
    markdown: Path
    html: Path
    figures: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    results: StudyResults | None = None


def write_report(
    paths: Sequence[str] | str,
    out_dir: str | Path | None = None,
    *,
    metric: str | None = None,
    mode: str | None = None,
    top: int = TOP_CURVES,
    scene_loader: SceneLoader | None = None,
    command: str | None = None,
) -> ReportFiles:
    """Load the experiment folders and write the report; returns the files written.

    out_dir defaults to `report/` inside the (first) experiment folder when it is local, else ./report.
    metric/mode override the study's own (from its spec or Ray's state; val_loss/min by default).
    """
    paths = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    results = load_studies(paths, metric=metric, mode=mode)
    out = Path(out_dir) if out_dir is not None else default_out_dir(paths)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    writer = _Writer(results, out, top, scene_loader)
    title = "Study report: " + ", ".join(s.name for s in results.studies)
    doc = Document(title, out)
    with plt.rc_context(figures.STYLE):
        writer.build(doc, command or _command_line())
    files = ReportFiles(
        out_dir=out,
        markdown=doc.write_markdown(out / "report.md"),
        html=doc.write_html(out / "report.html"),
        figures=writer.figures,
        tables=writer.tables,
        results=results,
    )
    return files


def report_command(paths: Sequence[str] | str) -> str:
    """The `nisca report ...` line that reports these experiment folders (for a study to print at its end)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    return "nisca report " + " ".join(shlex.quote(str(p)) for p in paths)


def default_out_dir(paths: Sequence[str]) -> Path:
    first = str(paths[0])
    return Path(first) / "report" if "://" not in first else Path("report")


class _Writer:
    """Builds the document section by section, saving each table as CSV and each figure as PNG."""

    def __init__(self, results: StudyResults, out: Path, top: int, scene_loader: SceneLoader | None) -> None:
        self.results = results
        self.out = out
        self.top = top
        self.scene_loader = scene_loader
        self.figures: list[Path] = []
        self.tables: list[Path] = []

    def build(self, doc: Document, command: str) -> None:
        self.overview(doc, command)
        self.leaderboard(doc)
        for study in self.results.studies:
            self.study_sections(doc, study)
        self.save_csv(self.results.trials, "trials.csv")
        self.save_csv(self.results.epochs, "epochs.csv")
        self.appendix(doc)
        doc.heading("Files")
        doc.text(
            "Every table above is also a CSV in `tables/` (`trials.csv`: one row per trial with every "
            "hyperparameter and metric; `epochs.csv`: one row per trial-epoch). Figures are PNGs in `figures/`."
        )

    # -- sections ---------------------------------------------------------------------------------
    def overview(self, doc: Document, command: str) -> None:
        doc.heading("What this report shows")
        generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        doc.text(f"Generated {generated} by `{command}`.")
        rows = []
        for study in self.results.studies:
            trials = self.results.trials[self.results.trials["study"] == study.name]
            rows.append({
                "study": study.name,
                "experiment folder": study.path,
                "scenes": ", ".join(study.scenes) if study.scenes else "(not recorded)",
                "methods": ", ".join(sorted(trials["method"].dropna().astype(str).unique())),
                "trials": len(trials),
                "completed": int(trials["completed"].sum()),
                "stopped early": int(trials["stopped_early"].sum()),
                "failed": int((trials["status"] == "ERROR").sum()),
                "other": int((~trials["status"].isin(["TERMINATED", "ERROR"])).sum()),
                "seeds": ", ".join(str(s) for s in sorted(trials["seed"].dropna().unique())),
                "ranked by": f"{study.metric} ({study.mode}, from {study.metric_source})",
            })
        doc.table(pd.DataFrame(rows), self.save_csv(pd.DataFrame(rows), "studies.csv"))
        data = pd.DataFrame([row for study in self.results.studies for row in _scene_rows(study)])
        if not data.empty:
            doc.table(data, self.save_csv(data, "data.csv"), "The data: each scene as the study recorded it "
                      "(generator or file and its arguments, size, ground-truth version, SHA-256 of Y and truth).")
        metrics = ", ".join(sorted({f"`{s.metric}` ({s.mode})" for s in self.results.studies}))
        doc.note(
            f"The best trial and the best configuration are chosen by {metrics} only. Ground-truth metrics "
            "(abundance RMSE, SAD, R², ...) are shown beside them and are never used to choose. A method "
            "that does not report the study metric is ranked by `reconstruction_rmse` (fit to the data)."
        )

    def appendix(self, doc: Document) -> None:
        """The study specs, data records and package versions, for reproducing the numbers."""
        for study in self.results.studies:
            if not (study.spec or study.scenes or study.environment):
                continue
            doc.heading(f"Reproducing {study.name}")
            if study.spec:
                doc.details("Study specification (nisca_study/spec.json)", json.dumps(study.spec, indent=2, default=str))
            if study.scenes:
                doc.details("Data: scene descriptions, shapes, ground-truth versions and SHA-256 (nisca_study/data.json)",
                            json.dumps(study.scenes, indent=2, default=str))
            if study.environment:
                doc.details("Package versions (nisca_study/environment.json)", json.dumps(study.environment, indent=2))

    def leaderboard(self, doc: Document) -> None:
        doc.heading("Leaderboard: the best configuration of each method")
        board = tables.leaderboard(self.results)
        csv = self.save_csv(board, "leaderboard.csv")
        metrics = [m for s in self.results.studies for m in tables.display_metrics(self.results.trials, s.metric, True)]
        metrics = list(dict.fromkeys(metrics))
        view = _narrow(tables.mean_std_view(board, metrics), metrics, ["study", "method", "ranked_by", "configuration",
                                                                     "best_trial", "n_trials", "seeds"])
        sweeps = any(tables.sweep_variables(self.results, s.name) for s in self.results.studies)
        doc.table(view, csv, "Mean ± std over the seeds of each method's best configuration (rank 1 by the "
                  "ranking metric's mean over seeds). best_trial is the single best trial of that method. "
                  "The CSV has every metric."
                  + (" A study that sweeps the data (SNR, K, size) ranks across the swept scenes here; its sweep "
                     "section compares the methods level by level." if sweeps else ""))
        best = tables.best_trials(self.results)
        self.save_csv(best, "best_trials.csv")

    def study_sections(self, doc: Document, study: Study) -> None:
        trials = self.results.trials[self.results.trials["study"] == study.name]
        epochs = self.results.epochs[self.results.epochs["study"] == study.name] if not self.results.epochs.empty else self.results.epochs
        metrics = tables.display_metrics(trials, study.metric, short=True)
        slug = _slug(study.name)
        doc.heading(f"Study {study.name}")
        self.ranking(doc, study, trials, metrics, slug)
        self.hyperparameters(doc, study, trials, metrics, slug)
        self.curves(doc, study, trials, epochs, slug)
        self.scheduler(doc, study, trials, slug)
        self.sweeps(doc, study, metrics, slug)
        self.best_trial_outputs(doc, study, trials, slug)
        self.failures(doc, study, slug)

    def ranking(self, doc: Document, study: Study, trials: pd.DataFrame, metrics: list[str], slug: str) -> None:
        doc.heading("Trials ranked by " + study.metric, 3)
        configs = tables.configurations(self.results)
        configs = configs[configs["study"] == study.name]
        csv = self.save_csv(configs, f"{slug}-configurations.csv")
        view = _narrow(tables.mean_std_view(configs, metrics), metrics,
                       ["method", "rank", "ranked_by", "configuration", "n_trials", "n_failed", "seeds"])
        doc.table(view.groupby("method", sort=False).head(RANKING_ROWS) if len(view) else view, csv,
                  "Every configuration (hyperparameters without the seed) with mean ± std over its seeds, best first "
                  "within each method. Ground-truth metrics come with a trial's final report, so trials stopped "
                  "early have none.")
        parts = []
        for method, group in trials.groupby("method", sort=True):
            ranked = tables.rank_trials(group, study.metric, study.mode, study.selection.get(str(method)))
            parts += [ranked, group[~group["trial_id"].isin(ranked["trial_id"])]]
        ordered = pd.concat(parts, ignore_index=True) if parts else trials
        columns = ["trial_id", "method", "seed"] + self.results.hyperparameters.get(study.name, [])
        columns += metrics + ["epochs", "outcome"]
        view = ordered[[c for c in dict.fromkeys(columns) if c in ordered]]
        csv = self.save_csv(ordered, f"{slug}-trials.csv")
        shown = view.groupby("method", sort=False).head(RANKING_ROWS) if len(view) else view
        doc.table(shown, csv, f"Trials of each method, best first (at most {RANKING_ROWS} per method; failed "
                  "trials last). Hyperparameters a method does not have are shown as —.")

    def hyperparameters(self, doc: Document, study: Study, trials: pd.DataFrame, metrics: list[str], slug: str) -> None:
        sweeps = tables.sweep_variables(self.results, study.name)
        searched = [h for h in self.results.hyperparameters.get(study.name, [])
                    if h not in sweeps and not h.startswith("data/") and not (h == "scene" and sweeps)]
        if not searched:
            return
        doc.heading("Metrics against each searched hyperparameter", 3)
        for hp in searched:
            fig = figures.hyperparameter_figure(trials, hp, metrics[:4], f"{study.name}: metrics against {hp}")
            name = self.save_figure(fig, f"{slug}-hp-{_slug(hp)}.png")
            doc.figure(name, f"{study.name}: each trial's final {', '.join(metrics[:4])} against `{hp}` "
                       "(hollow markers: stopped early by the scheduler, so measured at fewer epochs).")

    def curves(self, doc: Document, study: Study, trials: pd.DataFrame, epochs: pd.DataFrame, slug: str) -> None:
        fig = figures.learning_curves_figure(epochs, trials, study.metric, study.mode, self.top,
                                             f"{study.name}: learning curves of the {self.top} best trials per method")
        if fig is None:
            return
        doc.heading("Learning curves", 3)
        name = self.save_figure(fig, f"{slug}-learning-curves.png")
        doc.figure(name, f"{study.metric} per epoch of the {self.top} best trials of each trained method "
                   "(dashed: stopped early by ASHA).")

    def scheduler(self, doc: Document, study: Study, trials: pd.DataFrame, slug: str) -> None:
        doc.heading("What the scheduler stopped", 3)
        stopped = tables.stopped_trials(self.results)
        stopped = stopped[stopped["study"] == study.name].drop(columns=["study"]).dropna(axis=1, how="all")
        counts = trials["outcome"].value_counts()
        others = {k: int(v) for k, v in counts.items() if k not in ("completed", "stopped early", "failed")}
        doc.text(
            f"{int(counts.get('completed', 0))} of {len(trials)} trials ran to the end; "
            f"{int(counts.get('stopped early', 0))} were stopped early by the scheduler"
            + (f" ({study.spec['scheduler']})" if study.spec.get("scheduler") else "")
            + f"; {int(counts.get('failed', 0))} failed"
            + "".join(f"; {n} {state}" for state, n in others.items()) + "."
            + (" Interrupted trials resume when the study command runs again." if "interrupted" in others else "")
        )
        if not stopped.empty:
            doc.table(stopped, self.save_csv(stopped, f"{slug}-stopped.csv"),
                      "Trials ended early, with the epochs they reached and their study metric then.")
        if int(trials["epochs"].max()) < 1:
            return  # classic methods only: one report per trial, nothing to schedule
        fig = figures.scheduler_figure(trials, study.metric, f"{study.name}: where each trial ended")
        doc.figure(self.save_figure(fig, f"{slug}-scheduler.png"),
                   "Epochs reached by each trial, by outcome, and its study metric at its last report.")

    def sweeps(self, doc: Document, study: Study, metrics: list[str], slug: str) -> None:
        for variable in tables.sweep_variables(self.results, study.name):
            table = tables.sweep_table(self.results, study.name, variable)
            if table.empty:
                continue
            doc.heading(f"Sweep over {variable}", 3)
            csv = self.save_csv(table, f"{slug}-sweep-{_slug(variable)}.csv")
            view = _narrow(tables.mean_std_view(table, metrics), metrics,
                           ["method", variable, "configuration", "n_trials", "n_failed"])
            doc.table(view, csv,
                      f"Per method and {variable}: the best configuration at that level (by {study.metric}), "
                      "mean ± std over its seeds.")
            fig = figures.sweep_figure(table, variable, metrics[:4],
                                       f"{study.name}: metrics against {tables.label(variable)}")
            doc.figure(self.save_figure(fig, f"{slug}-sweep-{_slug(variable)}.png"),
                       f"Mean over seeds against {variable}, one line per method; error bars: one standard "
                       f"deviation over seeds. At each level the method's best configuration by {study.metric}.")

    def best_trial_outputs(self, doc: Document, study: Study, trials: pd.DataFrame, slug: str) -> None:
        best = tables.best_trials(self.results)
        best = best[best["study"] == study.name]
        if best.empty:
            return
        doc.heading("The best trial of each method", 3)
        for _, row in best.iterrows():
            method, best_id = str(row["method"]), str(row["trial_id"])
            group = trials[trials["method"] == row["method"]]
            ranked = tables.rank_trials(group, study.metric, study.mode, study.selection.get(method))
            outputs, trial_id = None, best_id
            for candidate in ranked["trial_id"]:
                outputs = load_trial_outputs(study, str(candidate), scene_loader=self.scene_loader)
                if outputs is not None:
                    trial_id = str(candidate)
                    break
            where = f"{method}, trial {trial_id}"
            if outputs is None:
                doc.text(f"**{method}**: no trial saved final estimates (`abundances.npy`); trials stopped early "
                         "keep only their per-epoch model checkpoints. Nothing to show.")
                continue
            if trial_id != best_id:
                doc.text(f"**{method}**: the best trial {best_id} was stopped early and saved no final estimates; "
                         f"shown instead is {trial_id}, the best trial that did (by the same ranking).")
            truth = outputs.truth
            about = ("ground truth: " + (truth.label or "default")) if truth is not None else "no ground truth available"
            source = outputs.source.rstrip("/").rsplit("/", 1)[-1]
            doc.text(f"**{where}** ({about}; estimates read from the trial's `{source}`).")
            maps = figures.image_shape(outputs) is not None
            makers = (
                ("abundances", figures.abundance_figure,
                 "abundance maps: estimated (top) beside the ground truth (bottom)" if maps and truth is not None
                 else "estimated against true abundance for each component (the diagonal is perfect recovery); "
                 "components matched to the truth by the Hungarian assignment, for display only"
                 if truth is not None else "estimated abundances (no ground truth to compare with)"),
                ("endmembers", figures.endmember_figure, "endmember spectra against the reference"),
                ("nonlinearities", figures.nonlinearity_figure, "learned per-channel nonlinearities f_n"),
                ("residual", figures.residual_figure, "per-pixel reconstruction error"),
            )
            for kind, make, caption in makers:
                fig = make(outputs, f"{study.name}: {where}: {kind}")
                if fig is None:
                    continue
                name = self.save_figure(fig, f"{slug}-best-{_slug(method)}-{kind}.png")
                doc.figure(name, f"{where}: {caption}.")

    def failures(self, doc: Document, study: Study, slug: str) -> None:
        failed = tables.failed_trials(self.results)
        failed = failed[failed["study"] == study.name].drop(columns=["study"]).dropna(axis=1, how="all")
        doc.heading("Failed trials", 3)
        if failed.empty:
            doc.text("No trial failed.")
            return
        doc.table(failed, self.save_csv(failed, f"{slug}-failed.csv"), "Trials that ended in ERROR, with Ray's reason.")

    # -- files ------------------------------------------------------------------------------------
    def save_csv(self, frame: pd.DataFrame, name: str) -> str:
        path = self.out / "tables" / name
        frame.to_csv(path, index=False)
        if path not in self.tables:
            self.tables.append(path)
        return f"tables/{name}"

    def save_figure(self, fig: plt.Figure, name: str) -> str:
        path = self.out / "figures" / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        if path not in self.figures:
            self.figures.append(path)
        return f"figures/{name}"


def _narrow(view: pd.DataFrame, metrics: list[str], front: list[str]) -> pd.DataFrame:
    """The columns a report table shows: identity columns, then the metrics (the CSV keeps all)."""
    keep = [c for c in front if c in view] + [m for m in metrics if m in view]
    view = view[keep]
    return view.drop(columns=[c for c in ("n_failed",) if c in view and (view[c] == 0).all()])


def _scene_rows(study: Study) -> list[dict[str, object]]:
    """One row per scene of a study, from nisca_study/data.json."""
    rows = []
    for name, record in study.scenes.items():
        record = record if isinstance(record, dict) else {}
        description = record.get("description", {}) or {}
        source = "; ".join(
            f"{kind}: " + (", ".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else str(value))
            for kind, value in description.items()
        )
        rows.append({
            "study": study.name,
            "scene": name,
            "source": source,
            "pixels": record.get("pixels"),
            "channels": record.get("channels"),
            "truth": f"{record.get('truth_label')} (K={record.get('truth_k')})" if record.get("truth_k") else "none",
            "sha256": str(record.get("sha256", ""))[:16],
        })
    return rows


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def _command_line() -> str:
    """How this report was made, for the reader: the command line, or the Python call."""
    if sys.argv[1:2] == ["report"]:
        return "nisca " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return "nisca.analysis.report.write_report(...)"
