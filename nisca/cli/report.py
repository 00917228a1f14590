"""`nisca report EXPERIMENT_DIR [EXPERIMENT_DIR...] [--out DIR]`: tables, figures, report.md and report.html."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write a Markdown + HTML report (tables, figures) of one or more Ray Tune studies",
        description="Read experiment folders written by `nisca study` / Ray Tune (local paths or gs:// URIs) "
        "and write report.md, a self-contained report.html, figures/*.png and tables/*.csv. The best trial "
        "of each method is chosen by the study metric (validation loss by default), never by ground truth.",
    )
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT_DIR",
                        help="experiment folder(s): storage_path/name of a study")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: EXPERIMENT_DIR/report for a local folder, else ./report)")
    parser.add_argument("--metric", default=None,
                        help="rank by this metric instead of the study's own (e.g. val_loss)")
    parser.add_argument("--mode", choices=("min", "max"), default=None, help="direction of --metric")
    parser.add_argument("--top", type=int, default=5, metavar="N",
                        help="learning curves of the N best trials per method (default: 5)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import shlex

    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed

    from nisca.analysis.report import write_report

    command = "nisca report " + " ".join(shlex.quote(str(e)) for e in args.experiments)
    if args.out:
        command += f" --out {shlex.quote(str(args.out))}"
    files = write_report(args.experiments, args.out, metric=args.metric, mode=args.mode, top=args.top,
                         command=command)
    print(f"report: {files.html}")
    print(f"        {files.markdown}")
    print(f"        {len(files.figures)} figures in {files.out_dir / 'figures'}, "
          f"{len(files.tables)} tables in {files.out_dir / 'tables'}")
    return 0
