"""The pure parts of training: splitting, fingerprints, metrics, batching, sharding, schedule, targets, mixup."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data import Example, discover, fingerprint, stratified_split
from training.distributed import Dist, shard_order
from training.loop import batches
from training.metrics import report
from training.outputs import max_relative_diff
from training.recipe import make_scheduler, mixup, passes_per_epoch, soft_targets
from unirep_errors import DatasetError


def _examples(counts: dict[str, int]) -> list[Example]:
    return [Example(label=label, name=f"{label}{i}", payload=b"x") for label, n in counts.items() for i in range(n)]


@settings(max_examples=50, deadline=None)
@given(
    counts=st.dictionaries(st.sampled_from("abcdef"), st.integers(2, 30), min_size=2),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 10),
)
def test_split_is_stratified_seeded_and_keeps_every_class(counts: dict[str, int], fraction: float, seed: int) -> None:
    examples = _examples(counts)
    train, val = stratified_split(examples, fraction, seed)
    assert sorted(e.name for e in train + val) == sorted(e.name for e in examples)
    assert set(Counter(e.label for e in train)) == set(counts) == set(Counter(e.label for e in val))
    again = stratified_split(examples, fraction, seed)
    assert [e.name for e in again[1]] == [e.name for e in val]


def test_split_refuses_single_example_classes_and_bad_fractions() -> None:
    with pytest.raises(DatasetError, match=r"\['b'\]"):
        stratified_split(_examples({"a": 3, "b": 1}), 0.2, 0)
    with pytest.raises(DatasetError, match="between 0 and 1"):
        stratified_split(_examples({"a": 3, "b": 3}), 1.0, 0)


def test_manifests_resolve_paths_relative_to_themselves(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.csv").write_text("path,label\nx.png,cat\n/abs/y.png,dog\n")
    (tmp_path / "m.jsonl").write_text('{"path": "sub/x.png", "label": "cat"}\n\n')
    csv_examples = discover(tmp_path / "sub" / "m.csv", "image")
    expected = [(tmp_path / "sub" / "x.png", "cat"), (Path("/abs/y.png"), "dog")]
    assert [(e.path, e.label) for e in csv_examples] == expected
    assert [e.path for e in discover(tmp_path / "m.jsonl", "image")] == [tmp_path / "sub" / "x.png"]


def test_fingerprint_ignores_order_and_sees_labels_and_content() -> None:
    pairs = [("a", "1"), ("b", "2")]
    assert fingerprint(pairs) == fingerprint(pairs[::-1])
    assert fingerprint(pairs) != fingerprint([("a", "1"), ("a", "2")])
    assert fingerprint(pairs) != fingerprint([("a", "1"), ("b", "3")])


def test_report_figures() -> None:
    rep = report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["x", "y", "z"])
    assert rep.confusion == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert rep.accuracy == pytest.approx(3 / 5)
    assert rep.per_class["y"]["precision"] == pytest.approx(2 / 3) and rep.per_class["y"]["recall"] == 1.0
    assert rep.per_class["x"]["f1"] == pytest.approx(0.5)
    assert rep.macro_f1 == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_batches_drop_a_trailing_single_example_only() -> None:
    assert list(batches(range(5), 2)) == [[0, 1], [2, 3]]
    assert list(batches(range(6), 4)) == [[0, 1, 2, 3], [4, 5]]
    assert list(batches(range(1), 4)) == [[0]]


@pytest.mark.parametrize(("n", "world"), [(10, 2), (7, 2), (5, 3)])
def test_shards_cover_every_example_with_equal_step_counts(n: int, world: int) -> None:
    shards = [shard_order(n, 3, 0, Dist(rank, world, torch.device("cpu"))) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1
    assert set().union(*map(set, shards)) == set(range(n))
    single = Dist(0, 1, torch.device("cpu"))
    assert shard_order(n, 3, 0, single) != shard_order(n, 4, 0, single)


def test_schedule_warms_up_then_decays() -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_scheduler(opt, total_steps=20, warmup_steps=4)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:])) and lrs[-1] < 0.05


@settings(max_examples=200, deadline=None)
@given(per_pass=st.integers(1, 50), epochs=st.integers(1, 40), min_steps=st.integers(0, 2000))
def test_passes_reach_min_steps_and_no_more_than_needed(per_pass: int, epochs: int, min_steps: int) -> None:
    passes = passes_per_epoch(per_pass, epochs, min_steps)
    assert passes >= 1 and passes * per_pass * epochs >= min_steps
    assert passes == 1 or (passes - 1) * per_pass * epochs < min_steps


def test_soft_targets_and_mixup_keep_distributions() -> None:
    targets = soft_targets(torch.tensor([0, 2, 1]), 3, 0.1)
    assert torch.allclose(targets.sum(-1), torch.ones(3)) and targets[0, 0] == pytest.approx(0.9 + 0.1 / 3)
    x = torch.randn(3, 1, 4, 4)
    mixed, mixed_targets = mixup(x, targets, 1.0, torch.Generator().manual_seed(0))
    assert not torch.equal(mixed, x) and torch.allclose(mixed_targets.sum(-1), torch.ones(3))
    same, same_targets = mixup(x, targets, 0.0, torch.Generator().manual_seed(0))
    assert same is x and same_targets is targets


def test_max_relative_diff() -> None:
    reference = torch.tensor([[1.0, -2.0], [10.0, 0.0]])
    assert max_relative_diff(reference, reference.clone()) == 0.0
    other = reference + torch.tensor([[0.0, 0.002], [0.0, 0.0]])
    assert max_relative_diff(reference, other) == pytest.approx(1e-3, rel=1e-4)
