"""Folding: one training step learns from several pending mini-batches and writes them as one version.

Each mini-batch (up to ``batch_rows`` impressions and as many clicks, cut in id
order from one read) still gets its own guarded update (:mod:`training_guard`),
so learning is the same as one version per mini-batch; only the checkpoint
writes, announcements and round trips are shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from experiments.services.training_config import TrainingConfig
from experiments.services.training_data import StepRows, step_batch
from experiments.services.training_guard import Baseline, step_guarded
from models.base import Arm as Model
from models.errors import BadBatchError


class RetryUnfolded(Exception):
    """A folded step was refused part-way after touching the arm: redo it one mini-batch at a time."""


@dataclass
class Fold:
    """The mini-batches of one step that went into the model (all accepted), or the one refused."""

    accepted: bool = True
    reason: str = ""
    touched: bool = False
    rows: StepRows | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline: Baseline | None = None
    batches: int = 0


def fit_fold(model: Model, chunks: list[StepRows], baseline: Baseline, config: TrainingConfig) -> Fold:
    """Guarded updates on the chunks in order, as long as they are accepted.

    Returns the accepted prefix merged into one version, or — when the first chunk is
    refused — that chunk alone as a rejected version. A later chunk that is refused is
    left for the next step (which refuses it alone), unless refusing it touched the arm.
    """
    fold = Fold(baseline=baseline)
    sums: dict[str, float] = {}
    for i, chunk in enumerate(chunks):
        try:
            batch = step_batch(rows=chunk, params=model.params)
        except BadBatchError as exc:
            outcome = None
            reason, touched = f"bad batch: {exc}", False
        else:
            outcome = step_guarded(model=model, batch=batch, baseline=fold.baseline, config=config)
            reason, touched = outcome.reason, outcome.touched
        if outcome is None or not outcome.accepted:
            if i == 0:
                return Fold(False, reason, touched, chunk,
                             outcome.metrics if outcome is not None else {"n": chunk.n},
                             outcome.baseline if outcome is not None else baseline, 1)
            if touched:  # the arm may hold part of this chunk: drop the whole step, take one chunk next time
                raise RetryUnfolded()
            break
        fold.rows = chunk if fold.rows is None else fold.rows.merged(chunk)
        fold.baseline = outcome.baseline
        fold.batches += 1
        m = outcome.metrics
        w = float(m.get("weight", 0.0))
        for key in ("logloss_before", "loss"):
            if m.get(key) is not None:
                sums[key] = sums.get(key, 0.0) + float(m[key]) * w
        sums["weight"] = sums.get("weight", 0.0) + w
        for key in ("label_loss_sum", "label_weight"):
            sums[key] = sums.get(key, 0.0) + float(m.get(key) or 0.0)
        fold.metrics = {**m, "n": (fold.metrics.get("n", 0) + m.get("n", 0))}
    if fold.batches > 1 and sums.get("weight", 0) > 0:
        for key in ("logloss_before", "loss"):
            if key in sums:
                fold.metrics[key] = sums[key] / sums["weight"]
        fold.metrics["weight"] = sums["weight"]
        fold.metrics["label_loss_sum"], fold.metrics["label_weight"] = sums["label_loss_sum"], sums["label_weight"]
    fold.touched = True
    return fold
