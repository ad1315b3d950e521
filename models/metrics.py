"""Progressive-validation metrics (pure NumPy)."""

from __future__ import annotations

import numpy as np

_EPS = 1e-7


def logloss(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted mean binary cross-entropy; ``p`` clipped to [1e-7, 1-1e-7]."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    ll = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    if w is None:
        return float(ll.mean()) if ll.size else float("nan")
    w = np.asarray(w, dtype=np.float64)
    tot = w.sum()
    return float((w * ll).sum() / tot) if tot > 0 else float("nan")


def auc(y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None) -> float:
    """Weighted ROC AUC (ties count one half); NaN when only one class is present."""
    y = np.asarray(y, dtype=np.float64) > 0.5
    s = np.asarray(s, dtype=np.float64)
    w = np.ones_like(s) if w is None else np.asarray(w, dtype=np.float64)
    wp = np.where(y, w, 0.0)
    wn = np.where(y, 0.0, w)
    tp, tn = wp.sum(), wn.sum()
    if tp <= 0 or tn <= 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Group equal scores so ties get half credit.
    boundaries = np.flatnonzero(np.diff(s_sorted)) + 1
    starts = np.concatenate(([0], boundaries))
    gp = np.add.reduceat(wp[order], starts)
    gn = np.add.reduceat(wn[order], starts)
    neg_below = np.cumsum(gn) - gn
    return float((gp * (neg_below + 0.5 * gn)).sum() / (tp * tn))


class RunningMetrics:
    """Accumulates progressive logloss and AUC over a stream (for the bench/tests)."""

    def __init__(self) -> None:
        self._y: list[np.ndarray] = []
        self._p: list[np.ndarray] = []

    def add(self, y: np.ndarray, p: np.ndarray) -> None:
        self._y.append(np.asarray(y, dtype=np.float64))
        self._p.append(np.asarray(p, dtype=np.float64))

    @staticmethod
    def single_logloss(y: np.ndarray, p: np.ndarray) -> float:
        return logloss(y, p)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self._y), np.concatenate(self._p)

    def summary(self, last_fraction: float = 0.2) -> dict[str, float]:
        y, p = self.arrays()
        tail = int(len(y) * (1.0 - last_fraction))
        base = float(np.clip(y.mean(), _EPS, 1 - _EPS))
        return {
            "n": float(len(y)),
            "logloss": logloss(y, p),
            "auc": auc(y, p),
            "logloss_last": logloss(y[tail:], p[tail:]),
            "auc_last": auc(y[tail:], p[tail:]),
            "base_rate_logloss": logloss(y, np.full_like(y, base)),
        }
