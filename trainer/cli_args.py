"""Command-line arguments that `mfvan-train` and `mfvan-eval loso` share, defined once so the
two commands read data and run on devices the same way."""

from __future__ import annotations

import argparse


def add_data_args(p: argparse.ArgumentParser, pairs_help: str) -> None:
    p.add_argument("--data", help="dataset root (overrides data.root)")
    p.add_argument("--annotations", help="annotation file (overrides data.annotations)")
    p.add_argument("--pairs", help=pairs_help)


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides config device")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-progress", action="store_true")
