"""The command line every study shares: `python studies/NAME.py` and `nisca study NAME` take the same options.

    [--smoke] [--address ADDR] [--storage PATH] [--name NAME] [--wandb] [--quiet]

A study is one of: a built-in name (`nisca study --list`), a Python file defining `build_spec(smoke)`
(the scripts in studies/), or a YAML/JSON spec file (nisca/tune/spec.py documents its keys).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nisca.errors import ConfigError, NiscaError
from nisca.tune.spec import StudySpec

REPO_STUDIES = Path(__file__).resolve().parents[2] / "studies"


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by `nisca study` and every studies/*.py script."""
    parser.add_argument("--smoke", action="store_true", help="a tiny version (few trials, 2 epochs, small scenes)")
    parser.add_argument("--address", help="Ray cluster to join: 'auto' or ray://HOST:10001 (default: embedded Ray, "
                        "or RAY_ADDRESS as set by `ray job submit`)")
    parser.add_argument("--storage", help="where the experiment folder goes: a folder or gs://bucket/path "
                        "(default: $NISCA_STUDIES or ~/nisca-studies)")
    parser.add_argument("--name", help="experiment name (default: the study's; --smoke appends -smoke)")
    parser.add_argument("--wandb", action="store_true", default=None,
                        help="log every trial to Weights & Biases (WANDB_MODE=offline works without an account)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false", default=None,
                        help="do not start the Ray dashboard with an embedded Ray (starts faster)")
    parser.add_argument("--quiet", action="store_true", help="no progress table (errors are still printed)")


def run_and_summarize(spec: StudySpec, args: argparse.Namespace, module: Any = None) -> int:
    """Run or resume the study, print its best trials per method (and the study script's own
    `summarize(results)` when it has one); exit status 0 when every trial ended (none interrupted)."""
    from nisca.tune.runner import load_status, prepare, run_checked
    from nisca.tune.summary import print_summary

    checked, experiment = prepare(spec, storage=args.storage, name=args.name, smoke=args.smoke, wandb=args.wandb)
    results = run_checked(checked, experiment, address=args.address, verbose=0 if args.quiet else 1,
                          num_cpus=args.num_cpus, dashboard=args.dashboard)
    print_summary(results, checked.selection_metric, checked.spec.mode, experiment)
    if module is not None and callable(getattr(module, "summarize", None)):
        module.summarize(results)
    return 0 if load_status(experiment).get("complete") else 1


def study_main(script: str, argv: Sequence[str] | None = None) -> int:
    """`main()` of a study script (`sys.exit(study_main(__file__))`): parse the shared options, run,
    summarise; a NiscaError is printed as one line (exit 2)."""
    module = load_study_module(Path(script).resolve())
    parser = argparse.ArgumentParser(description=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_and_summarize(module.build_spec(args.smoke), args, module)
    except NiscaError as error:
        print(f"nisca: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nisca: interrupted; run the same command again to resume the study", file=sys.stderr)
        return 130


def builtin_studies() -> dict[str, Path]:
    """Built-in study names -> their scripts in studies/ (names use '-' for '_')."""
    if not REPO_STUDIES.is_dir():
        return {}
    return {
        path.stem.replace("_", "-"): path
        for path in sorted(REPO_STUDIES.glob("*.py"))
        if not path.name.startswith("_") and "def build_spec" in path.read_text()
    }


def resolve_study(study: str, smoke: bool) -> tuple[StudySpec, Any]:
    """(spec, study module or None) from a built-in name, a studies/NAME.py path, or a YAML/JSON spec file."""
    path = Path(study)
    if path.suffix in (".yaml", ".yml", ".json"):
        from nisca.tune.spec import load_spec_file

        if not path.is_file():
            raise ConfigError(f"study spec file not found: {path}")
        return load_spec_file(path), None
    if path.suffix != ".py":
        known = builtin_studies()
        if study not in known and study.replace("_", "-") not in known:
            raise ConfigError(f"unknown study {study!r}; built-in studies: {', '.join(known) or 'none found'} "
                              f"(or give a studies/NAME.py or a YAML spec file)")
        path = known.get(study) or known[study.replace("_", "-")]
    if not path.is_file():
        raise ConfigError(f"study script not found: {path}")
    module = load_study_module(path)
    return module.build_spec(smoke), module


def load_study_module(path: Path):
    """Import a study script as module `nisca_study_<stem>` (the same name on every run, so a
    resumed Optuna searcher finds the define-by-run functions it pickled)."""
    name = f"nisca_study_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import study script {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "build_spec", None)):
        raise ConfigError(f"{path} defines no build_spec(smoke) -> StudySpec")
    return module
