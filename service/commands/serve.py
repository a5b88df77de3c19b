"""``unirep serve``: the gateway and the device workers in one process tree (CPU, or every visible GPU).

Settings come from flags, then ``UNIREP_*`` environment variables, then a TOML file (``--config`` or
``$UNIREP_CONFIG``); see ``settings_args`` for the flags ``serve``, ``gateway`` and ``worker`` share.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.commands.settings_args import add_settings_arguments, load_settings


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve every modality over HTTP (see README: Serving)")
    add_settings_arguments(serve)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args, "serve")
    if settings is None:
        return 2
    if args.print_settings:
        print(settings.model_dump_json(indent=2))
        return 0
    from service.http.server import run

    code: int = run(settings)
    return code
