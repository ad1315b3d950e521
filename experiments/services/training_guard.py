"""One guarded update of an arm on one FNW mini-batch: pure (no database), so it is tested directly.

Order of operations, so that a refused batch never changes the arm:

1. the batch's predictions by the current model (progressive validation: these
   predictions are made *before* the model sees the batch);
2. non-finite predictions → refused;
3. FNW importance weights from the arm's reference estimate; the weighted
   logloss/AUC are the batch's guard metrics, and the impressions' logloss
   against their eventual labels (``fnw_label_logloss``, a proper score) is
   the progressive logloss reported per arm;
4. logloss above ``guard_factor`` × the rolling baseline (once warmed up, on a
   batch big enough to judge) → refused;
5. ``partial_fit`` on the weighted batch; a ``DivergedUpdateError``/``BadBatchError``
   or a non-finite loss → refused (``touched``: the caller reloads the arm from
   its last checkpoint rather than trusting its in-memory state).

Where the reference does not depend on the predictions (the TF arms: their counts' estimate),
steps 1-4 run on the update's own forward pass (``Arm.partial_fit_unless``): the arm takes the
step, is judged on the predictions it made before it, and undoes the step exactly when refused.
That saves the forward pass a separate ``predict`` would cost. Elsewhere (the reference is the
arm's own prediction, which the weights need before the update) the arm predicts once, is judged,
then learns.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.services.training_config import TrainingConfig
from experiments.services.training_feedback import fnw_label_logloss, fnw_weights
from models.base import Arm
from models.types import Batch


@dataclass(frozen=True)
class Baseline:
    """The rolling state carried from checkpoint to checkpoint in its metrics."""

    logloss: float | None = None  # EWMA of accepted batches' progressive logloss
    auc: float | None = None  # EWMA of accepted batches' progressive AUC (batches with both classes)
    pv_loss_sum: float = 0.0  # Σ weight × FNW-weighted logloss over every accepted row
    pv_weight_sum: float = 0.0
    label_loss_sum: float = 0.0  # Σ over accepted impressions of the logloss against the eventual label
    label_weight: float = 0.0  # … and their count: the cumulative progressive logloss is the ratio
    seen: float = 0.0  # rows accepted so far
    batches: int = 0  # accepted batches so far
    judged: int = 0  # batches folded into the logloss EWMA: accepted ones and those refused for their logloss

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any] | None) -> Baseline:
        m = metrics or {}

        def opt(key: str) -> float | None:
            v = m.get(key)
            return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

        return cls(
            logloss=opt("baseline_logloss"),
            auc=opt("baseline_auc"),
            pv_loss_sum=float(m.get("pv_loss_sum") or 0.0),
            pv_weight_sum=float(m.get("pv_weight_sum") or 0.0),
            label_loss_sum=float(m.get("label_loss_sum_total") or 0.0),
            label_weight=float(m.get("label_weight_total") or 0.0),
            seen=float(m.get("rows_seen") or 0.0),
            batches=int(m.get("batches_seen") or 0),
            judged=int(m.get("baseline_batches") or 0),
        )

    def as_metrics(self) -> dict[str, Any]:
        return {
            "baseline_logloss": self.logloss,
            "baseline_auc": self.auc,
            "pv_loss_sum": self.pv_loss_sum,
            "pv_weight_sum": self.pv_weight_sum,
            "rows_seen": self.seen,
            "batches_seen": self.batches,
            "baseline_batches": self.judged,
            "label_loss_sum_total": self.label_loss_sum,
            "label_weight_total": self.label_weight,
            "logloss_progressive": self.label_loss_sum / self.label_weight if self.label_weight > 0 else None,
            "logloss_progressive_fnw": self.pv_loss_sum / self.pv_weight_sum if self.pv_weight_sum > 0 else None,
            "auc_progressive": self.auc,
        }

    def _alpha(self, halflife: float) -> float:
        # Warm start: a plain mean over the first batches, then an EWMA. The first FNW batches hold
        # impressions whose clicks have not arrived yet, so an EWMA seeded with them would sit far
        # below the arm's real level for many half-lives.
        return max(1.0 - 0.5 ** (1.0 / halflife), 1.0 / (self.judged + 1))

    def updated(self, *, logloss: float, auc: float, weight: float, rows: int, halflife: float,
                label_loss: float = 0.0, label_weight: float = 0.0) -> Baseline:
        """After an accepted batch: the EWMAs, the cumulative progressive sums and the counters move."""
        a = self._alpha(halflife)
        ll = logloss if self.logloss is None else (1 - a) * self.logloss + a * logloss
        if math.isfinite(auc):
            au = auc if self.auc is None else (1 - a) * self.auc + a * auc
        else:
            au = self.auc
        return Baseline(
            logloss=ll,
            auc=au,
            pv_loss_sum=self.pv_loss_sum + logloss * weight,
            pv_weight_sum=self.pv_weight_sum + weight,
            label_loss_sum=self.label_loss_sum + label_loss,
            label_weight=self.label_weight + label_weight,
            seen=self.seen + rows,
            batches=self.batches + 1,
            judged=self.judged + 1,
        )

    def shifted(self, *, logloss: float, halflife: float) -> Baseline:
        """After a batch refused for its logloss: only the reference level moves.

        So a sudden bad batch is refused, while a lasting change of level is
        refused for a few half-lives (the arm is flagged unhealthy) and then
        learnt, instead of freezing the arm for ever.
        """
        a = self._alpha(halflife)
        return dataclasses.replace(self, logloss=(1 - a) * self.logloss + a * logloss, judged=self.judged + 1)


@dataclass(frozen=True)
class StepOutcome:
    accepted: bool
    reason: str  # "" when accepted
    touched: bool  # partial_fit was called: the in-memory arm may differ from its checkpoint
    metrics: dict[str, Any]
    baseline: Baseline


def step_guarded(*, model: Arm, batch: Batch, baseline: Baseline, config: TrainingConfig) -> StepOutcome:
    """Progressive validation, guardrails, then the update (see module doc)."""
    from models import metrics as arm_metrics
    from models.errors import ArmError, BadBatchError

    labels = np.asarray(batch.labels, dtype=np.float64)
    n = len(labels)

    def refuse(reason: str, touched: bool, extra: dict[str, Any] | None = None) -> StepOutcome:
        return StepOutcome(False, reason, touched, {"n": n, **(extra or {})}, baseline)

    if not np.isfinite(labels).all():
        return refuse("non-finite loss: the batch's labels are not finite", False)

    def fnw(reference: np.ndarray) -> np.ndarray:
        # The weights come from the arm's steadier reference estimate (models.base.Arm.feedback_reference).
        w = fnw_weights(labels=labels, p=np.asarray(reference, dtype=np.float64))
        if batch.sample_weight is not None:  # a shadow arm's importance weights (services/shadow_training.py)
            w = w * np.asarray(batch.sample_weight, dtype=np.float64)
        return w

    judged = (
        baseline.logloss is not None
        and baseline.seen >= config.guard_warmup_examples
        and baseline.batches >= config.guard_warmup_batches
        and n >= config.guard_min_rows
    )
    verdict: dict[str, Any] = {}

    def judge(p_raw: np.ndarray) -> bool:
        """Steps 2-4 on the predictions before the update; True refuses it (the outcome in ``verdict``)."""
        p = np.asarray(p_raw, dtype=np.float64)
        if p.shape != labels.shape or not np.isfinite(p).all():
            verdict["refused"] = refuse("non-finite loss: the model's predictions on the batch are not finite", False)
            return True
        w = verdict["w"] if "w" in verdict else fnw(model.feedback_reference(batch, p))
        ll = arm_metrics.logloss(labels, p, w)
        au = arm_metrics.auc(labels, p, w)
        label_loss, label_weight = fnw_label_logloss(labels=labels, p=p, sample_weight=batch.sample_weight)
        extra = {"logloss_before": ll, "auc_before": au if math.isfinite(au) else None, "weight": float(w.sum()),
                 "label_loss_sum": label_loss, "label_weight": label_weight}
        verdict.update(w=w, extra=extra, ll=ll, au=au, label_loss=label_loss, label_weight=label_weight)
        if not math.isfinite(ll):
            verdict["refused"] = refuse("non-finite loss: progressive logloss is not finite", False, extra)
            return True
        if judged and ll > config.guard_factor * baseline.logloss:
            reason = f"progressive logloss {ll:.4f} > {config.guard_factor:g} x baseline {baseline.logloss:.4f}"
            moved = baseline.shifted(logloss=ll, halflife=config.baseline_halflife)
            verdict["refused"] = StepOutcome(False, reason, False, {"n": n, **extra}, moved)
            return True
        return False

    try:
        if model.reference_is_prediction:
            # The weights depend on the predictions: predict, judge, then learn on the weighted batch.
            if judge(model.predict(batch)):
                return verdict["refused"]
        else:
            # The weights do not: the update judges its own forward pass (undone if refused).
            verdict["w"] = fnw(model.feedback_reference(batch))
    except ArmError as exc:
        return refuse(f"bad batch: {exc}", False)
    except FloatingPointError as exc:
        return refuse(f"non-finite prediction: {exc}", False)
    weighted = dataclasses.replace(batch, sample_weight=verdict["w"].astype(np.float32))
    try:
        if model.reference_is_prediction:
            out: dict[str, float] | None = model.partial_fit(weighted)
        else:
            out, _ = model.partial_fit_unless(weighted, judge)
            if out is None:
                return verdict["refused"]
    except BadBatchError as exc:
        if "extra" not in verdict:  # refused by the arm's checks, before it was judged or touched
            return refuse(f"bad batch: {exc}", False)
        return refuse(f"update refused by the arm: {type(exc).__name__}: {exc}", True, verdict["extra"])
    except ArmError as exc:
        return refuse(f"update refused by the arm: {type(exc).__name__}: {exc}", True, verdict.get("extra"))
    except FloatingPointError as exc:
        return refuse(f"non-finite loss: {exc}", True, verdict.get("extra"))
    extra = verdict["extra"]
    loss = float(out.get("loss", float("nan")))
    if not math.isfinite(loss):
        return refuse(f"non-finite loss: {loss}", True, extra)
    extra["loss"] = loss
    return StepOutcome(
        True,
        "",
        True,
        {"n": n, **extra},
        baseline.updated(logloss=verdict["ll"], auc=verdict["au"], weight=float(verdict["w"].sum()), rows=n,
                         halflife=config.baseline_halflife, label_loss=verdict["label_loss"],
                         label_weight=verdict["label_weight"]),
    )
