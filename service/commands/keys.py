"""``unirep keys create|list|revoke``: API keys in Redis (``UNIREP_REDIS_URL``), for ``UNIREP_AUTH_ENABLED=true``.

``create`` prints the token once (only its SHA-256 is stored); ``--weight W`` gives the key's client a share of
the decoders and batch places proportional to W (clients weigh 1 by default); ``list`` shows ids, names, prefixes,
limits and weights;
``revoke`` takes an id (or a unique name) and takes effect on the next request at every gateway.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def add_parser(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="manage API keys (stored hashed in Redis)")
    keys.add_argument("--redis-url", default=None, help="redis://[:password@]host:6379/0 (also $UNIREP_REDIS_URL)")
    keys.add_argument("--config", default=None, help="TOML settings file (also $UNIREP_CONFIG)")
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create a key and print its token (shown once)")
    create.add_argument("name", help="who or what the key is for")
    create.add_argument("--rate-per-minute", type=float, default=None, help="this key's rate (default: the setting)")
    create.add_argument("--burst", type=int, default=None, help="requests at once above the rate (default: setting)")
    create.add_argument("--admin", action="store_true", help="may also manage models (load, unload)")
    create.add_argument(
        "--weight",
        type=float,
        default=1.0,
        help="share of decoders and batch places relative to other clients (default 1; 0.01 to 100)",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=run_keys)

    listing = actions.add_parser("list", help="list keys (never their tokens)")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    listing.set_defaults(func=run_keys)

    revoke = actions.add_parser("revoke", help="revoke a key by id (or unique name)")
    revoke.add_argument("key", help="the key's id (see `unirep keys list`) or its unique name")
    revoke.set_defaults(func=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from service.commands.settings_args import one_line
    from service.scaleout.api_keys import ApiKeyStore, check_weight
    from service.scaleout.connection import REDIS_ERRORS, Keys, redacted, sync_client
    from service.settings import ServiceSettings

    try:
        overrides = {"redis_url": args.redis_url} if args.redis_url else {}
        settings = ServiceSettings.load(args.config, **overrides)
    except (ValueError, ValidationError, FileNotFoundError) as exc:
        print(f"unirep keys: invalid settings: {one_line(exc)}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print("unirep keys: set UNIREP_REDIS_URL (or --redis-url): keys live in Redis", file=sys.stderr)
        return 2
    store = ApiKeyStore(
        sync_client(settings.redis_url, max(settings.redis_timeout_s, 5.0)), Keys(settings.redis_namespace)
    )
    try:
        if args.keys_action == "create":
            if args.rate_per_minute is not None and args.rate_per_minute <= 0:
                print("unirep keys: --rate-per-minute must be positive", file=sys.stderr)
                return 2
            try:
                weight = check_weight(args.weight)
            except ValueError as exc:
                print(f"unirep keys: --weight: {exc}", file=sys.stderr)
                return 2
            token, info = store.create(args.name, args.rate_per_minute, args.burst, admin=args.admin, weight=weight)
            if args.json:
                print(json.dumps({"token": token, **info.as_dict()}))
            else:
                print(token)
                print(
                    f"# id {info.key_id}, name {info.name!r}: store the token now, it is not shown again",
                    file=sys.stderr,
                )
            return 0
        if args.keys_action == "list":
            for info in store.list():
                if args.json:
                    print(json.dumps(info.as_dict()))
                else:
                    rate = "default" if info.rate_per_minute is None else f"{info.rate_per_minute:g}/min"
                    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
                    scope = "admin" if info.admin else "inference"
                    print(
                        f"{info.key_id}  {info.prefix}...  {created}  rate {rate}  weight {info.weight:g}  {scope}  "
                        f"{info.name}"
                    )
            return 0
        if store.revoke(args.key):
            print(f"revoked {args.key}")
            return 0
        print(f"unirep keys: no key {args.key!r}", file=sys.stderr)
        return 1
    except REDIS_ERRORS as exc:
        print(f"unirep keys: Redis at {redacted(settings.redis_url)} failed: {exc}", file=sys.stderr)
        return 1
