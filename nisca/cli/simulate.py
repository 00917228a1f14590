"""`nisca data simulate pnl|dce`: write synthetic scenes with their ground truth."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from nisca.cli import simulate_dce, simulate_pnl

    parser = subparsers.add_parser("simulate", help="generate a synthetic scene with ground truth")
    sim_sub = parser.add_subparsers(dest="simulate_command", metavar="KIND")
    simulate_pnl.register(sim_sub)
    simulate_dce.register(sim_sub)
