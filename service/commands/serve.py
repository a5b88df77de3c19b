"""``unirep serve``: the gateway and the worker pool in one process tree (CPU, or every visible GPU).

Settings come from flags, then ``UNIREP_*`` environment variables, then a TOML file (``--config`` or
``$UNIREP_CONFIG``); ``--set section.field=value`` reaches any field, e.g. ``--set image.max_batch_size=32``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve every modality over HTTP (see README: Serving)")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1; 0.0.0.0 in containers)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--config", default=None, help="TOML settings file (also $UNIREP_CONFIG)")
    serve.add_argument("--device", default=None, help="auto, cpu, cuda, or cuda:0,cuda:1")
    serve.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting, dotted for sections: --set image.weights=path/to/ckpt.pth (repeatable)",
    )
    serve.add_argument("--print-settings", action="store_true", help="print the resolved settings as JSON and exit")
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from service.runtime.cpu_threads import configure_openmp

    configure_openmp()  # before anything imports torch; the decoder processes inherit it
    from pydantic import ValidationError

    from service.settings import ServiceSettings, parse_overrides

    try:
        overrides = parse_overrides(args.overrides)
        for name in ("host", "port", "device", "log_level"):
            value = getattr(args, name)
            if value is not None:
                overrides[name] = value
        settings = ServiceSettings.load(args.config, **overrides)
    except (ValueError, ValidationError, FileNotFoundError) as exc:
        print(f"unirep serve: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.print_settings:
        print(settings.model_dump_json(indent=2))
        return 0
    warn_oversubscription(settings)
    from service.http.server import run

    return run(settings)


def warn_oversubscription(settings: Any) -> None:
    """Say so when decoder processes + model threads exceed the cores of a CPU-only server."""
    import logging

    import torch

    from service.runtime.cpu_threads import plan_threads

    on_cpu = settings.device == "cpu" or (settings.device == "auto" and not torch.cuda.is_available())
    message = plan_threads(settings.preprocess_workers, settings.torch_threads, on_cpu).warning()
    if message:
        logging.getLogger("service.commands.serve").warning("oversubscribed: %s", message)
        print(f"unirep serve: warning: {message}", file=sys.stderr)
