"""Sensitivity of team-draft interleaving against an A/B split, in the synthetic world (pure NumPy, no Django).

Two rankers see the truth of :class:`models.synthetic.SyntheticWorld` through noise: ranker r scores item i
for user u as ``logit_ui + σ_r·ε^r_ui`` with its own seeded ε, and shows its top ``k``. Ranker A has
``σ_a``; ``σ_b`` is solved so that A's true CTR (expected clicks per impression over users, position bias
included) is ``1 + lift`` times B's. Every request is a user drawn uniformly; clicks follow the world's
position-based model, independently per slot.

Both designs are computed **exactly** from the world and then checked by Monte Carlo:

* A/B split, requests randomised 50/50 (kinder to A/B than the product's per-user split, which adds the
  between-user variance once more): per-request clicks have mean μ_r and variance V_r (within-slate
  Bernoulli variance plus between-user variance), and a two-sided z-test at α needs
  ``n = (z_{α/2} + z_β)² (V_a + V_b) / (μ_a − μ_b)²`` requests per arm.
* Interleaving: for every user and every coin sequence of team draft, the clicks credited to each team
  are Poisson-binomial, so P(A wins), P(B wins) per request are exact; the sign test needs
  ``D = ((z_{α/2}·½ + z_β·sqrt(q(1−q))) / (q − ½))²`` decisive requests (q = P(A wins | decisive)).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from experiments.stats.interleaving import draft
from experiments.stats.preference import DEFAULT_CONCENTRATION, PairCounts, path_always_valid_p, sign_test_p
from models.synthetic import SyntheticWorld, WorldConfig


@dataclass
class RankerPair:
    """Two rankers' top lists per user in one world, the exact click probabilities of their team-draft slates."""

    world: SyntheticWorld
    k: int
    sigma_a: float
    sigma_b: float
    top_a: np.ndarray  # [users, depth] item indices, best first
    top_b: np.ndarray
    # Team draft, enumerated: for each user and each of the 2^(k/2) coin sequences, slot probabilities and teams.
    slot_p: np.ndarray  # [users, sequences, k]
    slot_team: np.ndarray  # [users, sequences, k] 0 = A, 1 = B
    activity: np.ndarray  # [users] multiplier of every click probability of the user
    # Request attention: with probability levels[l][0] a request's click probabilities are scaled by levels[l][1].
    levels: tuple[tuple[float, float], ...] = ((1.0, 1.0),)

    def scaled(self, p: np.ndarray, factor: float) -> np.ndarray:
        """Click probabilities of ``p`` ([users, ...]) at one attention level, user activity included."""
        act = self.activity.reshape((-1,) + (1,) * (p.ndim - 1))
        return np.minimum(1.0, p * act * factor)

    def _slate_p(self, top: np.ndarray) -> np.ndarray:
        users = np.arange(top.shape[0])[:, None]
        return self.world.click_prob(users, top[:, : self.k], np.arange(1, self.k + 1)[None, :])

    def _ctr(self, top: np.ndarray) -> float:
        base = self._slate_p(top)
        return float(sum(w * self.scaled(base, f).mean() for w, f in self.levels))

    @property
    def ctr_a(self) -> float:
        return self._ctr(self.top_a)

    @property
    def ctr_b(self) -> float:
        return self._ctr(self.top_b)


def _logits(world: SyntheticWorld) -> np.ndarray:
    c = world.config
    return c.base_logit + world.item_bias[None, :] + c.interaction_scale * world.user_latent @ world.item_latent.T


def _top(scores: np.ndarray, depth: int) -> np.ndarray:
    part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _ctr_of(world: SyntheticWorld, top: np.ndarray, k: int, activity: np.ndarray,
            levels: tuple[tuple[float, float], ...]) -> float:
    users = np.arange(top.shape[0])[:, None]
    base = world.click_prob(users, top[:, :k], np.arange(1, k + 1)[None, :]) * activity[:, None]
    return float(sum(w * np.minimum(1.0, base * f).mean() for w, f in levels))


# A shop's requests are not alike: most are glances that end without a click, a few are engaged sessions
# that click several items. Three attention levels with that shape, and user activity spread log-normally.
HETEROGENEOUS = {"levels": ((0.6, 0.15), (0.3, 1.0), (0.1, 3.0)), "activity_sigma": 0.8}


def ranker_pair(*, seed: int = 0, n_users: int = 400, n_items: int = 300, k: int = 10, lift: float = 0.05,
                sigma_a: float = 1.0, identical: bool = False, levels: tuple[tuple[float, float], ...] = ((1.0, 1.0),),
                activity_sigma: float = 0.0) -> RankerPair:
    """Rankers whose true CTRs differ by ``lift`` (relative); ``identical`` gives A against itself (A/A).

    ``levels`` and ``activity_sigma`` add request and user heterogeneity (:data:`HETEROGENEOUS`); the
    defaults are the synthetic world as it is.
    """
    if k % 2:
        raise ValueError("k must be even (whole rounds of two)")
    if not math.isclose(sum(w for w, _ in levels), 1.0):
        raise ValueError("attention level probabilities must sum to 1")
    world = SyntheticWorld(WorldConfig(n_users=n_users, n_items=n_items), seed=seed)
    logits = _logits(world)
    noise_a = np.random.default_rng([seed, 0xA]).normal(size=logits.shape)
    noise_b = np.random.default_rng([seed, 0xB]).normal(size=logits.shape)
    activity = np.exp(np.random.default_rng([seed, 0xC]).normal(0.0, activity_sigma, n_users)
                      - activity_sigma**2 / 2)  # mean 1
    depth = 2 * k  # an arm picks at most k items and at most k − 1 of its top ones are taken by the other
    top_a = _top(logits + sigma_a * noise_a, depth)
    if identical:
        sigma_b, top_b = sigma_a, top_a
    else:
        target = _ctr_of(world, top_a, k, activity, levels) / (1.0 + lift)
        lo, hi = sigma_a, 50.0
        for _ in range(50):  # bisection: CTR falls as the noise grows
            mid = 0.5 * (lo + hi)
            if _ctr_of(world, _top(logits + mid * noise_b, depth), k, activity, levels) > target:
                lo = mid
            else:
                hi = mid
        sigma_b = 0.5 * (lo + hi)
        top_b = _top(logits + sigma_b * noise_b, depth)
    orders = list(itertools.product(((0, 1), (1, 0)), repeat=k // 2))
    slot_p = np.empty((n_users, len(orders), k))
    slot_team = np.empty((n_users, len(orders), k), np.int64)
    positions = np.arange(1, k + 1)
    for u in range(n_users):
        ranks = [top_a[u].tolist(), top_b[u].tolist()]
        for s, order in enumerate(orders):
            items, teams = draft(ranks, k, order)
            slot_p[u, s] = world.click_prob(u, np.asarray(items), positions)
            slot_team[u, s] = teams
    return RankerPair(world, k, sigma_a, float(sigma_b), top_a, top_b, slot_p, slot_team, activity, tuple(levels))


# ------------------------------------------------------------------------------------------ exact designs


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _ab_user_moments(pair: RankerPair, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user: mean and variance of clicks per request (within-slate Bernoulli and attention levels)."""
    base = pair._slate_p(top)
    m1 = sum(w * pair.scaled(base, f).sum(axis=1) for w, f in pair.levels)
    m2 = sum(w * (((q := pair.scaled(base, f)) * (1 - q)).sum(axis=1) + q.sum(axis=1) ** 2) for w, f in pair.levels)
    return m1, m2 - m1 * m1


def ab_requests_per_arm(pair: RankerPair, *, alpha: float = 0.05, power: float = 0.95,
                        requests_per_user: int = 1) -> tuple[float, float, float]:
    """``(requests per arm, V_a, V_b)`` of the two-sided z-test on clicks per request.

    ``requests_per_user`` = R > 1 is the product's sticky split: users (not requests) are randomised and each
    brings R requests, so the between-user variance counts R times: V = E[σ²_u] + R·Var(μ_u) per request.
    """
    z_a, z_b = _z(alpha, power)
    moments = []
    for top in (pair.top_a, pair.top_b):
        mu_u, var_u = _ab_user_moments(pair, top)
        moments.append((float(mu_u.mean()), float(var_u.mean() + requests_per_user * mu_u.var())))
    (mu_a, v_a), (mu_b, v_b) = moments
    return (z_a + z_b) ** 2 * (v_a + v_b) / (mu_a - mu_b) ** 2, v_a, v_b


def _outcome_probs_at(slot_p: np.ndarray, slot_team: np.ndarray, k: int) -> tuple[float, float]:
    shape = slot_p.shape[:2]
    pmf = [np.zeros((*shape, k + 1)), np.zeros((*shape, k + 1))]
    for t in (0, 1):
        pmf[t][..., 0] = 1.0
    for j in range(k):
        p = slot_p[..., j][..., None]
        for t in (0, 1):
            mine = (slot_team[..., j] == t)[..., None]
            shifted = np.concatenate([np.zeros((*shape, 1)), pmf[t][..., :-1]], axis=-1)
            pmf[t] = np.where(mine, pmf[t] * (1 - p) + shifted * p, pmf[t])
    # P(A > B) = Σ_x P(A = x) P(B ≤ x − 1), and symmetrically for B.
    below_b = np.concatenate([np.zeros((*shape, 1)), np.cumsum(pmf[1], axis=-1)[..., :-1]], axis=-1)
    below_a = np.concatenate([np.zeros((*shape, 1)), np.cumsum(pmf[0], axis=-1)[..., :-1]], axis=-1)
    return (pmf[0] * below_b).sum(-1).mean(axis=1), (pmf[1] * below_a).sum(-1).mean(axis=1)


def interleaving_user_outcomes(pair: RankerPair) -> tuple[np.ndarray, np.ndarray]:
    """Per user, exact ``(P(A wins), P(B wins))`` of one request: Poisson-binomial credits, every coin sequence."""
    win = loss = 0.0
    for w, f in pair.levels:
        pw, pl = _outcome_probs_at(pair.scaled(pair.slot_p, f), pair.slot_team, pair.k)
        win, loss = win + w * pw, loss + w * pl
    return np.asarray(win), np.asarray(loss)


def interleaving_outcome_probs(pair: RankerPair) -> tuple[float, float]:
    """Exact ``(P(A wins), P(B wins))`` per request, over users."""
    win, loss = interleaving_user_outcomes(pair)
    return float(win.mean()), float(loss.mean())


def interleaving_requests_clustered(pair: RankerPair, *, requests_per_user: int, alpha: float = 0.05,
                                    power: float = 0.95) -> float:
    """Requests the sign test needs when each user brings R requests (users differ in how much they prefer A).

    Per request X = +1/−1/0 with E[X | u] = δ_u and E[X² | u] = d_u. The null variance of Σ X is n·d (fair
    coins, exchangeable within a user: the test stays exact); under A it is n·(E[d_u − δ_u²] + R·Var δ_u).
    """
    z_a, z_b = _z(alpha, power)
    win, loss = interleaving_user_outcomes(pair)
    delta_u, d_u = win - loss, win + loss
    delta, d = float(delta_u.mean()), float(d_u.mean())
    v1 = float((d_u - delta_u**2).mean() + requests_per_user * delta_u.var())
    return ((z_a * math.sqrt(d) + z_b * math.sqrt(v1)) / delta) ** 2


def interleaving_requests(p_win: float, p_loss: float, *, alpha: float = 0.05, power: float = 0.95) -> float:
    """Requests the two-sided sign test needs at this power (normal approximation of the binomial)."""
    z_a, z_b = _z(alpha, power)
    d = p_win + p_loss
    q = p_win / d
    decisive = ((z_a * 0.5 + z_b * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2
    return decisive / d


# ------------------------------------------------------------------------------------------ Monte Carlo


def _levels_draw(pair: RankerPair, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    weights = np.array([w for w, _ in pair.levels])
    factors = np.array([f for _, f in pair.levels])
    return factors[rng.choice(len(weights), size=shape, p=weights)]


def simulate_interleaving(pair: RankerPair, n_requests: int, reps: int, rng: np.random.Generator,
                          chunk: int = 2_000_000, requests_per_user: int = 1) -> np.ndarray:
    """Per-request outcomes ``[reps, n_requests]``: +1 A wins, −1 B wins, 0 tie or no click.

    ``requests_per_user`` = R: each drawn user brings R consecutive requests (the last user may bring fewer).
    """
    out = np.empty((reps, n_requests), np.int8)
    step = max(1, chunk // (n_requests * pair.k))
    for r0 in range(0, reps, step):
        r1 = min(reps, r0 + step)
        n_users = -(-n_requests // requests_per_user)
        drawn = rng.integers(0, pair.slot_p.shape[0], (r1 - r0, n_users))
        users = np.repeat(drawn, requests_per_user, axis=1)[:, :n_requests]
        seqs = rng.integers(0, pair.slot_p.shape[1], (r1 - r0, n_requests))
        factor = (pair.activity[users] * _levels_draw(pair, users.shape, rng))[..., None]
        p = np.minimum(1.0, pair.slot_p[users, seqs] * factor)  # [reps, n, k]
        team = pair.slot_team[users, seqs]
        clicks = rng.random(p.shape) < p
        ca = (clicks & (team == 0)).sum(-1)
        cb = (clicks & (team == 1)).sum(-1)
        out[r0:r1] = np.sign(ca - cb)
    return out


def sign_power(outcomes: np.ndarray, alpha: float = 0.05) -> float:
    """Share of replicates whose fixed-horizon sign test, read once at the end, rejects in A's favour."""
    wins = (outcomes > 0).sum(axis=1)
    losses = (outcomes < 0).sum(axis=1)
    rejects = [w > n_l and sign_test_p(PairCounts(int(w), int(n_l))) < alpha for w, n_l in zip(wins, losses, strict=True)]
    return float(np.mean(rejects))


def simulate_ab(pair: RankerPair, n_per_arm: int, reps: int, rng: np.random.Generator,
                alpha: float = 0.05, requests_per_user: int = 1) -> float:
    """Share of replicates whose two-sided z-test on clicks per request picks A.

    ``n_per_arm`` requests per arm; with ``requests_per_user`` = R each randomised user brings R of them and the
    test is on per-user means (the delta method with equal cluster sizes), as the product's sticky split is.
    """
    n_users = max(2, n_per_arm // requests_per_user)
    means, variances = [], []
    for top in (pair.top_a, pair.top_b):
        base = pair._slate_p(top)
        m, v = np.empty(reps), np.empty(reps)
        for r in range(reps):
            users = np.repeat(rng.integers(0, base.shape[0], n_users), requests_per_user)
            factor = (pair.activity[users] * _levels_draw(pair, users.shape, rng))[:, None]
            clicks = (rng.random((users.size, pair.k)) < np.minimum(1.0, base[users] * factor)).sum(-1)
            per_user = clicks.reshape(n_users, requests_per_user).mean(axis=1)
            m[r], v[r] = per_user.mean(), per_user.var(ddof=1)
        means.append(m)
        variances.append(v)
    z = (means[0] - means[1]) / np.sqrt((variances[0] + variances[1]) / n_users)
    return float(np.mean(z > stats.norm.ppf(1 - alpha / 2)))


def peeking_false_positive(outcomes: np.ndarray, alpha: float = 0.05,
                           concentration: float = DEFAULT_CONCENTRATION) -> tuple[float, float]:
    """``(always-valid, naive)``: share of replicates that ever reach p < α when p is read after every request.

    The naive rate reads the fixed-horizon sign test at 1, 2, 4, 8, … decisive requests (peeking every
    request would only make it worse); the always-valid one reads the mixture p after every request.
    """
    ever_valid, ever_naive = [], []
    for row in outcomes:
        path = path_always_valid_p(row, concentration)
        ever_valid.append(bool(path.size) and bool(path[-1] < alpha))
        decisive = row[row != 0]
        wins = np.cumsum(decisive > 0)
        looks = [n for n in (2 ** np.arange(4, 30)) if n <= decisive.size]
        ever_naive.append(any(sign_test_p(PairCounts(int(wins[n - 1]), int(n - wins[n - 1]))) < alpha for n in looks))
    return float(np.mean(ever_valid)), float(np.mean(ever_naive))


def sequential_stop(outcomes: np.ndarray, alpha: float = 0.05, concentration: float = DEFAULT_CONCENTRATION
                    ) -> np.ndarray:
    """Requests until the always-valid p first drops below α in A's favour (inf if it never does)."""
    out = np.full(outcomes.shape[0], np.inf)
    for r, row in enumerate(outcomes):
        idx = np.flatnonzero(row)
        path = path_always_valid_p(row, concentration)
        wins = np.cumsum(row[idx] > 0)
        hit = np.flatnonzero((path < alpha) & (wins > np.arange(1, idx.size + 1) - wins))
        if hit.size:
            out[r] = idx[hit[0]] + 1
    return out
