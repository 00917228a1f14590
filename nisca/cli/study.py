"""`nisca study STUDY [--smoke] [--address ADDR] [--storage PATH] [--name NAME] [--wandb]`.

STUDY is a built-in study name (`nisca study --list`; the scripts in studies/), a path to a
studies/NAME.py script defining `build_spec(smoke)`, or a YAML/JSON spec file (docs/studies.md).
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from nisca.tune.main import add_run_arguments

    parser = subparsers.add_parser(
        "study",
        help="run or resume a Ray Tune study (Optuna search, ASHA) and print its best trials",
        description="Run or resume a Ray Tune study. Results go to STORAGE/NAME; the same command resumes it.",
    )
    parser.add_argument("study", nargs="?", help="built-in study name, studies/NAME.py, or a YAML/JSON spec")
    parser.add_argument("--list", action="store_true", help="list the built-in studies and exit")
    add_run_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from nisca.errors import ConfigError
    from nisca.tune.main import builtin_studies, resolve_study, run_and_summarize

    if args.list:
        for name, path in builtin_studies().items():
            print(f"{name:20s} {path}")
        return 0
    if not args.study:
        raise ConfigError("name a study (nisca study --list shows the built-in ones)")
    spec, module = resolve_study(args.study, args.smoke)
    return run_and_summarize(spec, args, module)
