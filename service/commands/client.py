"""``unirep classify`` and ``unirep embed``: send many files to a (possibly remote) service through the SDK.

The commands use only ``unirep_client``, never the server's own packages, so they behave exactly as any other
client would and work against a service on another host. A directory stands for every file under it (recursively,
hidden ones skipped, in name order). Files go out concurrently (``--concurrency``) with a progress bar on stderr;
results come back as a table (default) or as JSON lines (``--json``, streamed as each file finishes, one object
per file, so a long run can be piped into ``jq`` while it goes). Any failed file makes the exit code 1, and its
reason is printed next to its name.

Text that came from elsewhere (labels, file names, the service's messages) is printed with control characters
escaped: a label set or a file name holding terminal escape sequences cannot recolour, retitle or rewrite the
operator's terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unirep_client import AsyncClient, ClassifyResult, EmbedResult

# The built-in ones, for the help text; a server may serve more (`unirep serve --adapters`), and any name is sent.
# Kept literal (and checked against unirep_client.MODALITIES in the tests) so that building the parser does not
# import the SDK: `unirep --help` stays fast.
MODALITIES = ("image", "audio", "video", "pointcloud", "timeseries")
EXIT_FAILED = 1
_NAME_WIDTH = 40


def add_parser(subparsers: Any) -> None:
    for command, summary in (
        ("classify", "classify files with a running service (top-k labels per file)"),
        ("embed", "embed files with a running service (one vector per file)"),
    ):
        parser = subparsers.add_parser(command, help=summary, description=summary)
        parser.add_argument("modality", help=f"{', '.join(MODALITIES)}, or one the server registered")
        parser.add_argument(
            "files",
            nargs="+",
            metavar="FILE",
            help="files to send (one request each); a directory: every file in it",
        )
        parser.add_argument("--url", default=None, help="service URL (default: $UNIREP_URL, else 127.0.0.1:8000)")
        parser.add_argument("--api-key", default=None, help="Bearer key (default: $UNIREP_API_KEY)")
        parser.add_argument("--model", default=None, help="a loaded model of the modality (default: its default model)")
        parser.add_argument("--model-version", default=None, help="the model's version (default: its highest)")
        if command == "classify":
            parser.add_argument("--top-k", type=_positive_int, default=None, help="labels per file (server default: 5)")
        parser.add_argument("--json", action="store_true", help="print one JSON object per file instead of a table")
        parser.add_argument(
            "--concurrency", type=_positive_int, default=8, help="requests in flight at once (default: 8)"
        )
        parser.add_argument("--timeout", type=_positive_float, default=None, help="seconds per HTTP attempt")
        parser.add_argument("--deadline", type=_positive_float, default=None, help="seconds per file, retries included")
        parser.add_argument("--max-retries", type=int, default=None, help="retries on overload and connection errors")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        parser.set_defaults(func=run, command=command)


@dataclass
class Outcome:
    """What happened to one file: a result, or the reason it failed."""

    file: str
    result: ClassifyResult | EmbedResult | None = None
    error: BaseException | None = None

    def to_json(self) -> dict[str, Any]:
        if self.result is not None:
            return {"file": self.file, "ok": True, "result": self.result.model_dump(mode="json")}
        return {"file": self.file, "ok": False, "error": _error_dict(self.error)}


def run(args: argparse.Namespace) -> int:
    args.files = expand_paths(args.files)
    if not args.files:
        print("error: no files to send (the directories given are empty)", file=sys.stderr)
        return 2
    outcomes = asyncio.run(_run_all(args))
    if not args.json:
        print(_render_table(outcomes, args.command))
    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:
        print(f"error: {printable(outcome.file)}: {_reason(outcome.error)}", file=sys.stderr)
    served = {(printable(o.result.model), printable(o.result.weights)) for o in outcomes if o.result is not None}
    served_by = "; ".join(f"{model} (weights: {weights})" for model, weights in sorted(served))
    print(
        f"{len(outcomes)} file(s): {len(outcomes) - len(failed)} ok, {len(failed)} failed"
        + (f"; served by {served_by}" if served_by else ""),
        file=sys.stderr,
    )
    return EXIT_FAILED if failed else 0


async def _run_all(args: argparse.Namespace) -> list[Outcome]:
    from tqdm import tqdm
    from unirep_client import AsyncClient

    client_kwargs: dict[str, Any] = {"api_key": args.api_key}
    if args.timeout is not None:
        client_kwargs["timeout"] = args.timeout
    if args.max_retries is not None:
        client_kwargs["max_retries"] = args.max_retries
    semaphore = asyncio.Semaphore(args.concurrency)
    # disable=None hides the bar when stderr is not a terminal (CI logs, pipes).
    bar = tqdm(total=len(args.files), unit="file", file=sys.stderr, disable=True if args.no_progress else None)
    async with AsyncClient(args.url, **client_kwargs) as client:

        async def one(path: str) -> Outcome:
            async with semaphore:
                outcome = await _send_one(client, args, path)
            if args.json:
                print(json.dumps(outcome.to_json()), flush=True)
            bar.update(1)
            return outcome

        try:
            return list(await asyncio.gather(*(one(path) for path in args.files)))
        finally:
            bar.close()


async def _send_one(client: AsyncClient, args: argparse.Namespace, path: str) -> Outcome:
    from unirep_client import UnirepError

    options: dict[str, Any] = {} if args.deadline is None else {"deadline": args.deadline}
    options.update(model=args.model, version=args.model_version)
    try:
        if args.command == "classify":
            result: ClassifyResult | EmbedResult = await client.classify(
                args.modality, path, top_k=args.top_k, **options
            )
        else:
            result = await client.embed(args.modality, path, **options)
    except (UnirepError, OSError, ValueError, TypeError) as exc:
        return Outcome(path, error=exc)
    return Outcome(path, result=result)


def _error_dict(error: BaseException | None) -> dict[str, Any]:
    """A failure as JSON: the service's code and status when it answered, the exception type otherwise."""
    from unirep_client import APIStatusError

    if isinstance(error, APIStatusError):
        body: dict[str, Any] = {"status": error.status_code, "code": error.code, "message": error.message}
        if error.details:
            body["details"] = error.details
        return body
    return {"status": None, "code": type(error).__name__, "message": str(error)}


def _reason(error: BaseException | None) -> str:
    body = _error_dict(error)
    status = f"{body['status']} " if body["status"] is not None else ""
    return printable(f"{status}{body['code']}: {body['message']}")


def printable(text: str) -> str:
    """``text`` with every non-printable character (ESC, CR, BEL, C1 controls, ...) written as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def expand_paths(paths: list[str]) -> list[str]:
    """Each directory replaced by the files under it (recursively, in name order, hidden names skipped)."""
    import os

    out: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            out.append(path)
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out += [os.path.join(root, name) for name in sorted(files) if not name.startswith(".")]
    return out


def _render_table(outcomes: list[Outcome], command: str) -> str:
    """A fixed-width table in input order: one row per prediction (classify) or per file (embed)."""
    width = min(_NAME_WIDTH, max([len("FILE"), *(len(o.file) for o in outcomes)]))
    if command == "classify":
        lines = [f"{'FILE':<{width}}  {'RANK':>4}  {'SCORE':>7}  LABEL"]
    else:
        lines = [f"{'FILE':<{width}}  {'DIM':>5}  {'L2 NORM':>9}  FIRST VALUES"]
    for outcome in outcomes:
        name = _clip(printable(outcome.file), width)
        result = outcome.result
        if result is None:
            lines.append(f"{name:<{width}}  FAILED  {_reason(outcome.error)}")
        elif command == "classify":
            predictions = getattr(result, "predictions", [])
            if not predictions:
                lines.append(f"{name:<{width}}  {'-':>4}  {'-':>7}  (no predictions)")
            for rank, prediction in enumerate(predictions, start=1):
                shown = name if rank == 1 else ""
                lines.append(f"{shown:<{width}}  {rank:>4}  {prediction.score:>7.4f}  {printable(prediction.label)}")
        else:
            vector: list[float] = getattr(result, "embedding", [])
            norm = math.sqrt(sum(v * v for v in vector))
            head = ", ".join(f"{v:.4f}" for v in vector[:4]) + (", ..." if len(vector) > 4 else "")
            lines.append(f"{name:<{width}}  {len(vector):>5}  {norm:>9.4f}  [{head}]")
    return "\n".join(lines)


def _clip(text: str, width: int) -> str:
    """Keep the end of long paths: the file name is the part a reader needs."""
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value
