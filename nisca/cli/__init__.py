"""`nisca` command line: one small module per subcommand, each with `register(subparsers)`.

Handlers import heavy libraries (torch, Ray) themselves, so `nisca --help` stays fast. A NiscaError
is printed as one line without a traceback and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nisca.errors import NiscaError

# Each module defines register(subparsers) and sets `handler` on the parsers it adds.
COMMAND_MODULES = (
    "nisca.cli.fit",
    "nisca.cli.score",
    "nisca.cli.data",
    "nisca.cli.study",
    "nisca.cli.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nisca",
        description="Post-nonlinear simplex component analysis: fit, score, data, studies and reports.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(handler(args) or 0)
    except NiscaError as error:
        print(f"nisca: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nisca: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
