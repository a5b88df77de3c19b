"""How long one training step of the run's network takes with one torch thread and with more, under each OpenMP
wait policy.

A second intra-op thread only pays where it is awake when work arrives: a spinning (``ACTIVE``) thread is, a
passive one sleeps and is woken for every parallel operation. On small maps and batches (the map search's trials,
the test suite's runs, a small training split's batches) operations are short and the waking dominates, so under
the passive policy that ``unirep train`` sets by default the second thread may cost time instead of saving it.
Measured here rather than assumed, on the network and optimizer a run builds (``training.modeling``,
``training.recipe``), one process a policy (the policy is read when torch loads), the rounds interleaved because
this machine's timings drift. Example::

    python benchmarks/train_step_threads.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POLICIES = ("PASSIVE", "ACTIVE")
SHAPES = ("16x4", "32x16", "64x32")
"""Map side x batch: the tests' and the search trials' maps, the CPU recipe's, the default recipe's."""


def step_seconds(side: int, batch: int, threads: int, steps: int) -> float:
    """Mean wall seconds of a training step (forward, backward, AdamW) of UniRepLKNet-A on random 3 x side x side
    maps with ``threads`` intra-op threads, after one untimed step."""
    import torch

    from training.modeling import build_model
    from training.recipe import make_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_model("timeseries", "unireplknet_a", 3, 4, {})
    optimizer = make_optimizer(net, 2e-3, 0.05)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, side, side, generator=generator)
    y = torch.randint(0, 4, (batch,), generator=generator)
    net.train()
    start = 0.0
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / max(1, steps)


def measure_policy(policy: str, shapes: list[str], threads: list[int], steps: int) -> dict[str, float]:
    """Seconds a step, keyed ``"<shape> <threads>"``, measured in a fresh process under ``policy``."""
    command = [sys.executable, __file__, "--measure", "--shapes", ",".join(shapes)]
    command += ["--threads", ",".join(map(str, threads)), "--steps", str(steps)]
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _measure_here(shapes: list[str], threads: list[int], steps: int) -> None:
    out = {}
    for shape in shapes:
        side, batch = (int(v) for v in shape.split("x"))
        for count in threads:
            out[f"{shape} {count}"] = step_seconds(side, batch, count, steps)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="map side x batch, comma-separated")
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts, comma-separated")
    ap.add_argument("--steps", type=int, default=8, help="timed steps a measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--measure", action="store_true", help="measure in this process and print JSON (internal)")
    args = ap.parse_args()
    shapes, threads = args.shapes.split(","), [int(t) for t in args.threads.split(",")]
    if args.measure:
        _measure_here(shapes, threads, args.steps)
        return
    runs: dict[str, dict[str, list[float]]] = {p: {} for p in POLICIES}
    for _ in range(args.rounds):
        for policy in POLICIES:
            for key, step in measure_policy(policy, shapes, threads, args.steps).items():
                runs[policy].setdefault(key, []).append(step)
    print(f"training step of UniRepLKNet-A, {os.cpu_count()} cores; ms a step (one figure a round):")
    for policy, measured in runs.items():
        for key, seconds in measured.items():
            shape, count = key.split()
            print(f"  {policy:8s} map {shape:6s} {count} thread(s) " + " ".join(f"{1000 * s:7.1f}" for s in seconds))
    for policy, measured in runs.items():
        for shape in shapes:
            most = statistics.median(measured[f"{shape} {threads[-1]}"])
            one = statistics.median(measured[f"{shape} {threads[0]}"])
            ratio = f"{threads[-1]} threads / {threads[0]}: {most / one:.2f}"
            print(f"{policy}, map {shape}: {ratio} (median of {args.rounds})")


if __name__ == "__main__":
    main()
