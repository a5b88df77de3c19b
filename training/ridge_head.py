"""The closed-form head: the network's linear head solved as a ridge regression on its pooled features.

Trained end to end from scratch on a few dozen examples, a ConvNet may learn less than a linear classifier on
features it has not been trained at all: ROCKET's recipe is exactly that (many random convolutions, pooled, and a
ridge classifier whose penalty is chosen by leave-one-out error), and on some series sets (ten appliances from 70
day-long power records) it is far ahead of anything 300 steps of training reach. Here the features are the
network's own (``forward_features``: the backbone as initialized by the run's seed, or loaded by ``--init``), and
the solution is written into its ``head``: the model file is an ordinary UniRepLKNet that serves like any other.

scikit-learn's ``RidgeCV`` does the job: one decomposition of the features gives the exact leave-one-out error of
every penalty, for all classes at once (one-hot targets of -1 / +1, as its ridge classifier uses).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from training.modeling import backbone_of

if TYPE_CHECKING:
    from training.loop import Run

ALPHAS = tuple(float(a) for a in np.logspace(-3, 4, 15))
"""The ridge penalties tried (leave-one-out error picks one)."""
FEATURE_BATCH = 64


def pooled_features(
    net: nn.Module,
    inputs: Sequence[torch.Tensor] | torch.Tensor,
    to_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """``forward_features`` of the network in eval mode, float64, in order (batches of ``FEATURE_BATCH``);
    ``to_map`` makes each input the network's map one batch at a time (a large image set's maps would not fit in
    memory at once)."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), FEATURE_BATCH):
            chunk = inputs[start : start + FEATURE_BATCH]
            if to_map is not None:
                chunk = [to_map(t) for t in chunk]
            x = chunk if isinstance(chunk, torch.Tensor) else torch.stack(list(chunk))
            out.append(net.forward_features(x.to(device)).double().cpu().numpy())  # type: ignore[operator]
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0))


def fit_ridge_head(net: nn.Module, features: np.ndarray, targets: Sequence[int], num_classes: int) -> float:
    """Solve the head on ``features`` (N x D) for ``targets`` (class indices) and write it into ``net``'s head;
    returns the penalty leave-one-out error chose."""
    from sklearn.linear_model import RidgeCV

    y = -np.ones((len(targets), num_classes))
    y[np.arange(len(targets)), np.asarray(targets, dtype=int)] = 1.0
    ridge = RidgeCV(alphas=ALPHAS).fit(features, y)
    head = backbone_of(net).head
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(ridge.coef_, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(ridge.intercept_, dtype=head.bias.dtype))
    return float(ridge.alpha_)


def _solve_on_training_maps(run: Run) -> tuple[np.ndarray, list[int], float]:
    """Features of the un-augmented training maps through ``run.net`` as it stands, and the head solved on them:
    (features, targets, the penalty chosen)."""
    adapter, params = run.adapter, run.data.params
    index = {label: i for i, label in enumerate(run.data.labels)}
    targets = [index[label] for label in run.data.train.labels]
    features = pooled_features(run.net, run.data.train.tensors, lambda t: adapter.training_input(t, **params))
    return features, targets, fit_ridge_head(run.net, features, targets, len(run.data.labels))


def ridge_epoch(run: Run) -> dict[str, Any]:
    """The whole of a ``--head ridge`` run: features of the un-augmented training maps, the head solved on them;
    returns the history entry (training loss and accuracy of the solved head; no optimizer steps)."""
    started = time.monotonic()
    features, targets, alpha = _solve_on_training_maps(run)
    head = backbone_of(run.net).head
    with torch.no_grad():
        logits = head(torch.as_tensor(features, dtype=head.weight.dtype, device=head.weight.device)).float().cpu()
    y = torch.as_tensor(targets)
    backbone = "from --init" if run.cfg.init else f"as seed {run.cfg.seed} initialized it"
    run.notes.append(
        f"head solved by ridge regression on the features of {len(targets)} training examples (penalty {alpha:.3g}, "
        f"chosen by leave-one-out error); backbone {backbone}, not trained"
    )
    seconds = time.monotonic() - started
    return {
        "epoch": 1,
        "train_loss": float(torch.nn.functional.cross_entropy(logits, y)),
        "train_acc": float((logits.argmax(-1) == y).float().mean()),
        "lr": 0.0,
        "steps": 0,
        "seconds": seconds,
        "examples_per_second": len(targets) / max(seconds, 1e-9),
    }


def refit_head(run: Run) -> None:
    """``--head train+ridge``: after training (and the epoch selection), the trained head replaced by the ridge
    solution on the trained backbone's features of the training examples.

    Trained from scratch for a few hundred steps on a small set, the backbone's features can separate the classes
    better than the head that was trained beside them, which label smoothing and weight decay keep soft; the
    closed form reads them out exactly, with its penalty chosen by leave-one-out error."""
    _, targets, alpha = _solve_on_training_maps(run)
    epoch = int(run.selected["epoch"])
    trained = run.history[epoch - 1]["val_acc"]
    run.notes.append(
        f"head solved anew by ridge regression on the trained features of {len(targets)} training examples (penalty "
        f"{alpha:.3g}, chosen by leave-one-out error), replacing epoch {epoch}'s trained head (its validation "
        f"accuracy: {trained:.3f})"
    )
