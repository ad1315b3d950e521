"""Exploration schemes whose marginal propensities are exact and closed-form.

A *slate* is k candidate indices in slot order. ``P[i, j]`` is the probability
that candidate ``i`` is shown in slot ``j`` under the arm's randomisation.
"""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores along the last axis, best first.

    Deterministic for a given input (ties broken by lower index), which is what
    makes the greedy slate a function of the context and its propensity exact.
    For small k this runs k vectorised argmax passes: O(k·n) and, on this
    hardware, an order of magnitude faster than NumPy's (arg)partition/sort.
    """
    n = scores.shape[-1]
    k = min(k, n)
    lead = scores.shape[:-1]
    flat = scores.reshape(-1, n)
    if k > 32:
        # Stable sort of the negated scores keeps the lower index first on ties.
        out = np.argsort(-flat, axis=1, kind="stable")[:, :k]
        return out.reshape(*lead, k)
    work = flat.astype(np.float64, copy=True)
    rows = np.arange(work.shape[0])
    out = np.empty((work.shape[0], k), np.int64)
    for j in range(k):
        best = work.argmax(axis=1)  # first maximum: lower index wins ties
        out[:, j] = best
        work[rows, best] = -np.inf
    return out.reshape(*lead, k)


def random_slates(m: int, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """m uniformly random ordered k-subsets of range(n): every (i, j) has prob 1/n."""
    u = rng.random((m, n))
    return topk(u, k)


def epsilon_greedy(
    scores: np.ndarray, k: int, epsilon: float, rng: np.random.Generator, greedy: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Slate-level ε-greedy for ``scores [m, n]``.

    With prob 1-ε the greedy slate, else a uniformly random slate, so
    ``P(i at j) = (1-ε)·1[greedy_j = i] + ε/n`` exactly. Returns (slates, props).
    ``greedy``: ``topk(scores, k)`` when the caller has it already.
    """
    m, n = scores.shape
    k = min(k, n)
    greedy = topk(scores, k) if greedy is None else greedy
    explore = rng.random(m) < epsilon
    slates = greedy.copy()
    if explore.any():
        slates[explore] = random_slates(int(explore.sum()), n, k, rng)
    props = (1.0 - epsilon) * (slates == greedy) + epsilon / n
    return slates, props


def epsilon_greedy_matrix(scores: np.ndarray, k: int, epsilon: float) -> np.ndarray:
    """Exact ``P [n, k]`` of :func:`epsilon_greedy` for one context's ``scores [n]``."""
    n = scores.shape[0]
    k = min(k, n)
    p = np.full((n, k), epsilon / n)
    greedy = topk(scores[None, :], k)[0]
    p[greedy, np.arange(k)] += 1.0 - epsilon
    return p


def ensemble_sample(
    head_scores: np.ndarray, k: int, epsilon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thompson sampling over an ensemble of H posterior samples (bootstrapped heads).

    ``head_scores [m, n, H]``. Per row a head is drawn uniformly and its greedy
    slate shown; with prob ε a uniform random slate instead (full support).
    ``P(i at j) = (1-ε)·#{h: greedy_h,j = i}/H + ε/n`` exactly.
    Returns (slates, props, chosen head scores [m, n]).
    """
    m, n, n_heads = head_scores.shape
    k = min(k, n)
    per_head = topk(np.moveaxis(head_scores, 2, 1), k)  # [m, H, k]
    heads = rng.integers(0, n_heads, size=m)
    slates = per_head[np.arange(m), heads]
    explore = rng.random(m) < epsilon
    if explore.any():
        slates[explore] = random_slates(int(explore.sum()), n, k, rng)
    agree = (per_head == slates[:, None, :]).mean(axis=1)
    props = (1.0 - epsilon) * agree + epsilon / n
    return slates, props, head_scores[np.arange(m), :, heads]


def ensemble_matrix(head_scores: np.ndarray, k: int, epsilon: float) -> np.ndarray:
    """Exact ``P [n, k]`` of :func:`ensemble_sample` for one context's ``[n, H]`` scores."""
    n, n_heads = head_scores.shape
    k = min(k, n)
    per_head = topk(head_scores.T, k)  # [H, k]
    p = np.full((n, k), epsilon / n)
    for h in range(n_heads):
        p[per_head[h], np.arange(k)] += (1.0 - epsilon) / n_heads
    return p
