"""The three config flags every command takes: --config, --print-config, --validate-config."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from engine.config.loader import ConfigError, dump_config, load_config, report_and_exit

M = TypeVar("M", bound=BaseModel)


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", metavar="YAML", help="config file (defaults apply when omitted)")
    group.add_argument(
        "--print-config", action="store_true", help="print the effective config (file + env + flags) and exit"
    )
    group.add_argument("--validate-config", action="store_true", help="validate the config and exit (0 ok, 2 bad)")


def config_from_args(
    args: argparse.Namespace, model: type[M], overrides: Mapping[str, Any] | None = None
) -> M:
    """Load the config, honour --print-config / --validate-config (they exit), else return it.

    A bad config exits with status 2 and `file:line: key.path: message` lines on stderr.
    """
    try:
        cfg = load_config(model, args.config, overrides=overrides)
    except ConfigError as err:
        report_and_exit(err)
        raise  # unreachable; keeps type checkers calm
    if args.print_config:
        print(dump_config(cfg), end="")
        raise SystemExit(0)
    if args.validate_config:
        print(f"{args.config or '<defaults>'}: ok")
        raise SystemExit(0)
    return cfg
