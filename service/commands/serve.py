"""``unirep serve``: the gateway and the device workers in one process tree (CPU, or every visible GPU).

Settings come from flags, then ``UNIREP_*`` environment variables, then a TOML file (``--config`` or
``$UNIREP_CONFIG``); see ``settings_args`` for the flags ``serve``, ``gateway`` and ``worker`` share.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.commands.settings_args import add_settings_arguments, settings_to_run


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve every modality over HTTP (see README: Serving)")
    add_settings_arguments(serve, repository=True)
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_to_run(args, "serve")
    warn_oversubscription(settings)
    from service.http.server import run

    code: int = run(settings)
    return code


def warn_oversubscription(settings: Any) -> None:
    """Say so when decoder processes + model threads exceed the cores of a CPU-only server."""
    import logging
    import sys

    import torch

    from service.runtime.cpu_threads import plan_threads

    on_cpu = settings.device == "cpu" or (settings.device == "auto" and not torch.cuda.is_available())
    message = plan_threads(settings.preprocess_workers, settings.torch_threads, on_cpu).warning()
    if message:
        logging.getLogger("service.commands.serve").warning("oversubscribed: %s", message)
        print(f"unirep serve: warning: {message}", file=sys.stderr)
