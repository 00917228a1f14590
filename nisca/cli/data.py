"""`nisca data ...`: the catalog (list, fetch, import, info, build-urban) and generators (simulate)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from nisca.cli import data_catalog, simulate

    parser = subparsers.add_parser("data", help="benchmark scenes, file info and synthetic data")
    data_sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_catalog.register(data_sub)
    simulate.register(data_sub)
