"""``unirep repository index|load|unload``: manage the models of a running service (its model repository) through
the SDK, as any client would; with API keys on, the key must be an admin key (``unirep keys create --admin``).

``load NAME`` loads (or reloads) a model of the server's repository; ``--file 2/model.safetensors=PATH`` sends a
local file as version 2's, so one command deploys a model made by ``unirep train`` (the server needs
``--model-control explicit``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    repo = subparsers.add_parser("repository", help="list, load and unload the models of a running service")
    repo.add_argument("--url", default=None, help="service URL (default: $UNIREP_URL, else 127.0.0.1:8000)")
    repo.add_argument("--api-key", default=None, help="an admin key (default: $UNIREP_API_KEY)")
    actions = repo.add_subparsers(dest="repository_action", required=True, metavar="ACTION")
    index = actions.add_parser("index", help="every model and version with its state")
    index.add_argument("--ready", action="store_true", help="only the ready ones")
    index.add_argument("--json", action="store_true", help="print JSON lines")
    load = actions.add_parser("load", help="load or reload a model (returns once it serves)")
    load.add_argument("name")
    load.add_argument("--config", default=None, help="JSON config override (batching, backend, version_policy)")
    load.add_argument(
        "--file",
        dest="files",
        action="append",
        default=[],
        metavar="N/model.safetensors=PATH",
        help="send a local file as the model's version N (repeatable)",
    )
    unload = actions.add_parser("unload", help="stop serving a model")
    unload.add_argument("name")
    for parser in (index, load, unload):
        parser.set_defaults(func=run)


def _files(pairs: list[str]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for pair in pairs:
        target, sep, local = pair.partition("=")
        if not sep or not target or not local:
            raise ValueError(f"--file expects N/model.safetensors=PATH, got {pair!r}")
        files[target] = Path(local).expanduser().read_bytes()
    return files


def run(args: argparse.Namespace) -> int:
    from unirep_client import Client, UnirepError

    try:
        with Client(args.url, api_key=args.api_key, timeout=600.0) as client:
            if args.repository_action == "index":
                for entry in client.repository_index(ready=args.ready):
                    if args.json:
                        print(json.dumps(entry.model_dump()))
                    else:
                        print(f"{entry.name:<24} {entry.version or '-':>7}  {entry.state:<11} {entry.reason}")
            elif args.repository_action == "load":
                config = json.loads(args.config) if args.config else None
                client.load_model(args.name, config=config, files=_files(args.files) or None)
                print(f"loaded {args.name}")
            else:
                client.unload_model(args.name)
                print(f"unloaded {args.name}")
    except (UnirepError, OSError, ValueError) as exc:
        print(f"unirep repository: {exc}", file=sys.stderr)
        return 1
    return 0
