"""Delayed feedback: the fake-negative weighted (FNW) scheme, as pure NumPy.

Ktena et al. 2019, "Addressing delayed feedback for continuous training with
neural networks in CTR prediction" (RecSys '19). Every impression is trained on
*at once* as a negative; when its click arrives (within the attribution window)
a duplicate of the impression is trained on as a positive. The observed stream
then has ``b(y=1|x) = p(x) / (1 + p(x))`` and ``b(y=0|x) = 1 / (1 + p(x))``, and
the importance weights that turn the loss on ``b`` back into the loss on the
true ``p`` are

    positive:  w = 1 + p(x)
    negative:  w = (1 - p(x)) * (1 + p(x))

with ``p(x)`` the model's own current estimate (treated as a constant). Every
impression is trained exactly once as a negative (the impression cursor) and
every counted click exactly once as a positive (the click cursor), so the
scheme needs no per-impression state and no waiting.

The replay below compares it with "wait for the full attribution window" on a
stream with delayed clicks, measuring both the way serving experiences them:
the prediction of the model as it stands when the impression is *served*,
against the impression's true (eventual) label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_EPS = 1e-7


def fnw_weights(*, labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Importance weights of FNW rows: ``1+p`` for positives, ``(1-p)(1+p)`` for fake negatives."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(labels, dtype=np.float64)
    return np.where(y > 0.5, 1.0 + p, (1.0 - p) * (1.0 + p))


def fnw_label_logloss(*, labels: np.ndarray, p: np.ndarray, sample_weight: np.ndarray | None = None) -> tuple[float, float]:
    """``(Σ loss, Σ weight)`` of the impressions' logloss against their *eventual* labels, from FNW rows.

    Progressive validation as recsys teams read it: each impression scored by the model before it learnt
    from it, against whether it was (eventually) clicked. In the FNW stream every impression is one
    negative row and each click one more, positive, row, so

        Σ_impressions −[y log p + (1 − y) log(1 − p)]
          = Σ_negative rows −log(1 − p)  +  Σ_positive rows [log(1 − p) − log p],

    with the click row's ``p`` (the model when the click arrived) standing in for the impression's; the
    denominator is the number of impressions (the negative rows). ``sample_weight`` (a shadow arm's
    importance weights) weights each row's term and the count.

    Unlike the FNW-weighted logloss, whose weights come from the scored model's own ``p`` (so a model
    that under-predicts is rewarded, and even the true click probabilities can score worse than a
    miscalibrated counter), this is a proper score: its expectation is lowest at the true ``p``.
    """
    y = np.asarray(labels, dtype=np.float64) > 0.5
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    sw = np.ones_like(q) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    term = np.where(y, np.log1p(-q) - np.log(q), -np.log1p(-q))
    return float((sw * term).sum()), float(sw[~y].sum())


def fnw_calibrate(p_biased: np.ndarray) -> np.ndarray:
    """``p = b / (1 - b)``: the true click rate from a model trained on the FNW stream *without* weights.

    Only needed by arms that cannot take sample weights; the weighted arms
    estimate ``p`` directly.
    """
    b = np.clip(np.asarray(p_biased, dtype=np.float64), 0.0, 0.5 - _EPS)
    return b / (1.0 - b)


@dataclass(frozen=True)
class ReplayStream:
    """A synthetic served stream with delayed clicks (times in seconds)."""

    x: np.ndarray  # float32 [n, d] features of each impression
    served_at: np.ndarray  # float64 [n], increasing
    label: np.ndarray  # float32 [n], the true eventual label (clicked within the window)
    click_at: np.ndarray  # float64 [n], served_at + delay for clicks, +inf otherwise


def replay_stream(
    *,
    n: int,
    dim: int,
    rate_per_s: float,
    mean_delay_s: float,
    window_s: float,
    seed: int,
    base_logit: float = -2.5,
    drift_every_s: float | None = None,
) -> ReplayStream:
    """A logistic world with exponential click delays; optional abrupt drift of its weights."""
    rng = np.random.default_rng(seed)
    served_at = np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))
    x = rng.normal(size=(n, dim)).astype(np.float32)
    w = rng.normal(scale=1.0, size=dim)
    logits = np.empty(n)
    if drift_every_s:
        period = (served_at // drift_every_s).astype(int)
        for k in np.unique(period):
            wk = w if k == 0 else np.random.default_rng(seed * 1000 + int(k)).normal(scale=1.0, size=dim)
            sel = period == k
            logits[sel] = base_logit + x[sel] @ wk
    else:
        logits = base_logit + x @ w
    p = 1.0 / (1.0 + np.exp(-logits))
    clicked = rng.random(n) < p
    delay = rng.exponential(mean_delay_s, size=n)
    in_window = clicked & (delay <= window_s)
    click_at = np.where(in_window, served_at + delay, np.inf)
    return ReplayStream(x=x, served_at=served_at, label=in_window.astype(np.float32), click_at=click_at)


class _LogReg:
    """A tiny weighted online logistic regression (Adagrad), the stand-in learner of the replay."""

    def __init__(self, dim: int, lr: float = 0.1) -> None:
        self.w = np.zeros(dim)
        self.b = 0.0
        self.g2 = np.full(dim + 1, 1e-8)
        self.lr = lr

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ self.w + self.b)))

    def fit(self, x: np.ndarray, y: np.ndarray, sw: np.ndarray) -> None:
        if len(y) == 0:
            return
        err = (self.predict(x) - y) * sw
        grad = np.concatenate([x.T @ err, [err.sum()]]) / max(len(y), 1)
        self.g2 += grad**2
        step = self.lr * grad / np.sqrt(self.g2)
        self.w -= step[:-1]
        self.b -= step[-1]


@dataclass(frozen=True)
class ReplayResult:
    scheme: str
    logloss: float  # serving-time predictions vs true labels, over the whole stream
    logloss_last_half: float
    mean_label_delay_s: float  # from a click (or its impression, for negatives) to the update that learns it
    updates: int


def replay(
    stream: ReplayStream,
    *,
    scheme: str,
    tick_s: float,
    window_s: float,
    learner: Callable[[int], _LogReg] | None = None,
) -> ReplayResult:
    """Run a trainer that wakes every ``tick_s`` over ``stream`` with ``scheme`` in {"fnw", "window"}.

    ``fnw``: at each tick, impressions served since the last tick are trained as
    weighted negatives and clicks that arrived since the last tick as weighted
    positives. ``window``: at each tick, impressions whose window closed since
    the last tick are trained with their true label, unweighted.
    """
    if scheme not in {"fnw", "window"}:
        raise ValueError(f"unknown scheme {scheme!r}")
    n, dim = stream.x.shape
    model = (learner or (lambda d: _LogReg(d)))(dim)
    served_pred = np.empty(n)
    end = float(stream.served_at[-1]) + window_s + tick_s
    click_order = np.argsort(stream.click_at, kind="stable")
    click_times = stream.click_at[click_order]
    served_i = 0  # next impression to be scored at serving time
    imp_i = 0  # fnw: next impression to be trained as a negative; window: next to mature
    click_i = 0  # fnw: next click (in arrival order) to be trained as a positive
    delays: list[float] = []
    updates = 0
    t = tick_s
    while t <= end:
        # Serving: everything served before this tick was scored with the current model.
        j = int(np.searchsorted(stream.served_at, t, side="left"))
        if j > served_i:
            served_pred[served_i:j] = model.predict(stream.x[served_i:j])
            served_i = j
        if scheme == "fnw":
            j_imp = j
            j_click = int(np.searchsorted(click_times, t, side="left"))
            neg = np.arange(imp_i, j_imp)
            pos = click_order[click_i:j_click]
            idx = np.concatenate([neg, pos])
            y = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
            if len(idx):
                p = model.predict(stream.x[idx])
                model.fit(stream.x[idx], y, fnw_weights(labels=y, p=p))
                updates += 1
                delays.extend((t - click_times[click_i:j_click]).tolist())
            imp_i, click_i = j_imp, j_click
        else:
            j_mature = int(np.searchsorted(stream.served_at, t - window_s, side="left"))
            idx = np.arange(imp_i, j_mature)
            if len(idx):
                y = stream.label[idx].astype(np.float64)
                model.fit(stream.x[idx], y, np.ones(len(idx)))
                updates += 1
                clicked = idx[y > 0.5]
                delays.extend((t - stream.click_at[clicked]).tolist())
            imp_i = j_mature
        t += tick_s
    if served_i < n:
        served_pred[served_i:] = model.predict(stream.x[served_i:])
    y = stream.label.astype(np.float64)
    p = np.clip(served_pred, _EPS, 1 - _EPS)
    ll = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return ReplayResult(
        scheme=scheme,
        logloss=float(ll.mean()),
        logloss_last_half=float(ll[n // 2 :].mean()),
        mean_label_delay_s=float(np.mean(delays)) if delays else float("nan"),
        updates=updates,
    )
