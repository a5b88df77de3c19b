"""The settings flags ``serve``, ``gateway`` and ``worker`` share, and how they become one ``ServiceSettings``.

Flags beat ``UNIREP_*`` variables, which beat the TOML file; ``--set section.field=value`` reaches any field.
``--adapters MODULE`` imports a module that registers more modalities (``modality_adapters.register_adapter``)
before the settings are built, so each gets its settings section, route and decoder.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any


def add_settings_arguments(
    parser: argparse.ArgumentParser, *, device: bool = True, redis: bool = False, repository: bool = False
) -> None:
    """The shared flags; ``repository``: the model repository's (``unirep serve``: the process that loads models)."""
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1; 0.0.0.0 in containers)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=None, help="also serve the V2 protocol over gRPC on this port")
    parser.add_argument("--config", default=None, help="TOML settings file (also $UNIREP_CONFIG)")
    if device:
        parser.add_argument("--device", default=None, help="auto, cpu, cuda, or cuda:0,cuda:1")
        parser.add_argument(
            "--remeasure-backends",
            dest="backend_remeasure",
            action="store_true",
            default=None,
            help="auto backends: time the candidates again instead of reusing the choice remembered for this host",
        )
    if redis:
        parser.add_argument(
            "--redis-url", default=None, help="redis://[:password@]host:6379/0 (also $UNIREP_REDIS_URL)"
        )
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    if repository:
        parser.add_argument("--model-repository", default=None, metavar="DIR", help="serve the models of DIR too")
        parser.add_argument("--model-control", default=None, choices=["none", "explicit", "poll"])
        parser.add_argument(
            "--load-model",
            dest="load_models",
            action="append",
            default=None,
            metavar="NAME",
            help="with --model-control explicit: load NAME at start (repeatable; '*': every model)",
        )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting, dotted for sections: --set image.weights=path/to/ckpt.pth (repeatable)",
    )
    parser.add_argument(
        "--adapters",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first: it registers more modalities with modality_adapters.register_adapter (repeatable)",
    )
    parser.add_argument("--print-settings", action="store_true", help="print the resolved settings as JSON and exit")


def load_settings(args: argparse.Namespace, command: str) -> Any:
    """The settings, or None after printing why they are invalid (the command exits 2)."""
    from pydantic import ValidationError

    from service.settings import ServiceSettings, parse_overrides

    try:
        for module in args.adapters:
            importlib.import_module(module)
    except ImportError as exc:
        print(f"unirep {command}: cannot import adapter module: {exc}", file=sys.stderr)
        return None
    try:
        overrides = parse_overrides(args.overrides)
        for name in (
            "host",
            "port",
            "grpc_port",
            "device",
            "log_level",
            "redis_url",
            "model_repository",
            "model_control",
            "load_models",
            "backend_remeasure",
        ):
            value = getattr(args, name, None)
            if value is not None:
                overrides[name] = value
        return ServiceSettings.load(args.config, **overrides)
    except (ValueError, ValidationError, FileNotFoundError) as exc:
        print(f"unirep {command}: invalid settings: {one_line(exc)}", file=sys.stderr)
        return None


def one_line(exc: Exception) -> str:
    """A settings error as one line. A pydantic ValidationError becomes ``field: reason`` for each problem: its
    own text spans lines and repeats each input value, which may be a password in a Redis URL."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return " ".join(str(exc).split())
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "settings"
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def settings_to_run(
    args: argparse.Namespace, command: str, *, need_redis: bool = False, serves_grpc: bool = True
) -> Any:
    """The settings a serving command starts with, shared by ``serve``, ``gateway`` and ``worker``.

    Invalid settings (or no Redis URL where the command runs through Redis) print why and exit 2; ``--print-settings``
    prints them (secrets hidden) and exits 0; a port another process holds exits 1 before any model loads (a worker
    listens on ``port`` only, for its health). Exiting here keeps the three commands' bodies about what they run.
    """
    settings = load_settings(args, command)
    if settings is not None and need_redis and not settings.redis_url:
        print(f"unirep {command}: set UNIREP_REDIS_URL (or --redis-url): it runs through Redis", file=sys.stderr)
        settings = None
    if settings is None:
        raise SystemExit(2)
    if args.print_settings:
        from service.redaction import settings_json

        print(settings_json(settings.model_dump(mode="json")))
        raise SystemExit(0)
    for port in (settings.port, settings.grpc_port if serves_grpc else None):
        if port:
            check_port_free(settings.host, port, command)
    return settings


def check_port_free(host: str, port: int, command: str) -> None:
    """Exit with one line, before any model loads, when another process (another worker) already has the port."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is fine
            sock.bind((host, port))
    except OSError as exc:
        print(
            f"unirep {command}: cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(is another unirep process using it? give each its own --port)",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
