"""Team-draft interleaving and multileaving: one slate from several arms' rankings, with exact propensities.

Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?" (CIKM 2008) for two
rankers; Schuth et al., "Multileaved comparisons for fast online evaluation" (CIKM 2014) for more. The slate
is filled in *rounds*: each round draws a uniformly random order of the arms, and in that order each arm adds
its highest-ranked item not already in the slate, until the slate holds ``k`` items. The arm that added an
item is its *team*; a click on the item credits that team. With two arms this is exactly Radlinski's coin
flip whenever the teams are the same size.

Propensities are exact for the mechanism *given the arms' rankings*: ``P(item at slot j)`` is the sum over
all round orders of their probability, computed by dynamic programming over the set of items already
chosen (the next picks depend on that set only, and the slot a pick lands in is its size). An arm's own
exploration is upstream of this: its ranking is an input here. Pure NumPy, no Django.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The number of distinct chosen-item sets the DP may carry per round before refusing (a pathological
# input with many arms and long, heavily overlapping rankings); real slates stay in the hundreds.
MAX_STATES = 200_000
MAX_ARMS = 6


@dataclass(frozen=True)
class Interleaving:
    """One interleaved slate: the items in order, the team (arm index) of each slot, and its exact propensity."""

    items: np.ndarray  # int64 [k']
    teams: np.ndarray  # int64 [k'], index into the rankings given
    propensities: np.ndarray  # float64 [k'], P(items[j] at slot j | rankings)

    def credit(self, clicked: Sequence[bool] | np.ndarray, n_arms: int) -> np.ndarray:
        """Clicks credited to each arm: the number of clicked slots of its team."""
        return team_credit(self.teams, clicked, n_arms)


def _check(rankings: Sequence[Sequence[int]], k: int) -> list[list[int]]:
    if not 1 <= len(rankings) <= MAX_ARMS:
        raise ValueError(f"interleaving needs 1 to {MAX_ARMS} rankings, got {len(rankings)}")
    if k < 1:
        raise ValueError("k must be >= 1")
    out = []
    for r in rankings:
        items = [int(x) for x in np.asarray(r, dtype=np.int64).ravel()]
        if len(set(items)) != len(items):
            raise ValueError("a ranking lists an item twice")
        out.append(items)
    return out


def _round(rankings: list[list[int]], chosen: set[int], order: Sequence[int], k: int) -> list[tuple[int, int]]:
    """The picks ``(item, team)`` of one round in this arm order, given the items already chosen."""
    picks: list[tuple[int, int]] = []
    taken = set(chosen)
    for arm in order:
        if len(taken) >= k:
            break
        for item in rankings[arm]:
            if item not in taken:
                picks.append((item, arm))
                taken.add(item)
                break
    return picks


def _pool(rankings: list[list[int]]) -> int:
    return len(set(itertools.chain.from_iterable(rankings)))


def draft(rankings: Sequence[Sequence[int]], k: int, orders: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """The slate and teams that the given per-round arm orders produce (deterministic; no propensities)."""
    ranks = _check(rankings, k)
    k = min(k, _pool(ranks))
    items: list[int] = []
    teams: list[int] = []
    for order in orders:
        if len(items) >= k:
            break
        picks = _round(ranks, set(items), order, k)
        if not picks:
            break
        items.extend(p[0] for p in picks)
        teams.extend(p[1] for p in picks)
    if len(items) < k:
        raise ValueError(f"{len(orders)} round orders fill only {len(items)} of {k} slots")
    return items, teams


def slot_propensities(rankings: Sequence[Sequence[int]], k: int) -> list[dict[int, float]]:
    """``out[j][item]`` = exact probability that ``item`` fills slot ``j`` (0-based) under team draft."""
    ranks = _check(rankings, k)
    k = min(k, _pool(ranks))
    orders = list(itertools.permutations(range(len(ranks))))
    p_order = 1.0 / len(orders)
    marginals: list[dict[int, float]] = [{} for _ in range(k)]
    states: dict[frozenset[int], float] = {frozenset(): 1.0}
    while states:
        nxt: dict[frozenset[int], float] = {}
        for chosen, prob in states.items():
            if len(chosen) >= k:
                continue
            for order in orders:
                picks = _round(ranks, set(chosen), order, k)
                q = prob * p_order
                for offset, (item, _team) in enumerate(picks):
                    slot = marginals[len(chosen) + offset]
                    slot[item] = slot.get(item, 0.0) + q
                after = chosen.union(p[0] for p in picks)
                if len(after) < k:
                    nxt[after] = nxt.get(after, 0.0) + q
        if len(nxt) > MAX_STATES:
            raise ValueError(f"team-draft propensities need more than {MAX_STATES} states; shorten k or the rankings")
        states = nxt
    return marginals


def team_draft(rankings: Sequence[Sequence[int]], k: int, rng: np.random.Generator) -> Interleaving:
    """Interleave the rankings into a slate of ``min(k, distinct items)`` with teams and exact propensities."""
    ranks = _check(rankings, k)
    k = min(k, _pool(ranks))
    rounds = math.ceil(k / len(ranks)) + k  # enough rounds even if some arms run out of items
    orders = [rng.permutation(len(ranks)).tolist() for _ in range(rounds)]
    items, teams = draft(ranks, k, orders)
    marginals = slot_propensities(ranks, k)
    props = np.array([marginals[j][item] for j, item in enumerate(items)], dtype=np.float64)
    return Interleaving(np.asarray(items, np.int64), np.asarray(teams, np.int64), props)


def team_credit(teams: Sequence[int] | np.ndarray, clicked: Sequence[bool] | np.ndarray, n_arms: int) -> np.ndarray:
    """Clicks per arm: ``out[a]`` = number of clicked slots whose team is ``a``."""
    t = np.asarray(teams, dtype=np.int64)
    c = np.asarray(clicked, dtype=bool)
    if t.shape != c.shape:
        raise ValueError("teams and clicked must have the same shape")
    if t.size and (t.min() < 0 or t.max() >= n_arms):
        raise ValueError("a team index is out of range")
    return np.bincount(t[c], minlength=n_arms).astype(np.int64)
