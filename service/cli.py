"""The ``unirep`` console script: one entry point whose subcommands live in small modules.

Each module listed in ``COMMAND_MODULES`` has ``add_parser(subparsers)`` that registers its subcommands and sets
``func`` (taking the parsed args, returning an exit code). Modules are imported when the parser is built, so heavy
imports (torch, fastapi) belong inside the ``func`` bodies, keeping ``unirep --help`` fast, and letting ``main`` set
the OpenMP wait policy before any command loads torch (serving, workers, training, scoring and export all share
cores with other processes; see ``service.runtime.cpu_threads``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = [
    "service.commands.models",
    "service.commands.client",
    "service.commands.serve",
    "service.commands.scaleout",
    "service.commands.keys",
    "service.commands.repository",
    "service.commands.train",
    "service.commands.export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unirep", description="UniRepLKNet multimodal perception service")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from service.runtime.cpu_threads import configure_openmp

    configure_openmp()  # before any command loads torch; decoder and worker processes inherit it
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that note how they ran
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
