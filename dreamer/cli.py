"""`dreamer` command line. Each subcommand lives in `dreamer/commands/<name>.py` and exposes
`register(subparsers)`; heavy imports happen inside the handlers so `dreamer --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import dreamer.commands
from dreamer import __version__
from dreamer.errors import DreamerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dreamer", description="DreamerV3 world-model trading pipeline")
    parser.add_argument("--version", action="version", version=f"dreamer-trading {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(dreamer.commands.__path__), key=lambda m: m.name):
        if module_info.name.startswith("_") or module_info.name == "common":
            continue
        importlib.import_module(f"dreamer.commands.{module_info.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except DreamerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: committed work is kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
