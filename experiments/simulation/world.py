"""The shoppers' hidden preferences, built on ``models.synthetic.SyntheticWorld``.

The simulator's own shoppers and items are the synthetic world's users and
items (shopper ``<prefix>user-00007`` is world user 7, item ``<prefix>item-00042``
world item 42), so their latent factors, biases, position bias and observable
features are the ones the arms' own tests and benchmarks use, fixed by the
seed. An item the simulator did not create (say, the demo catalogue) gets a
latent vector and bias drawn from a generator seeded by ``(seed, its id)``,
in the same distribution, so every item has a defined, run-independent taste:

    P(click | u, i, slot s) = examination(s) · σ(base + bias_i + scale · ⟨z_u, v_i⟩)

with ``examination(s) = s^(-position_decay)`` and ``scale`` the world's affinity (``DEFAULT_AFFINITY``,
3.2, unless given). After ``drift_at`` seconds every
shopper's latent vector is redrawn: tastes change under the arms' feet.

Business truth (issue 18). Prices are lognormal and *cheaper for the items that draw clicks*:
``log price_i = 3 + 0.4·ε_i − PRICE_CLICKBAIT·bias_i`` (ε seeded by ``(seed, id)``). A click becomes a cart
with ``P(cart | click) = min(1, CART_AT_REF · (price / PRICE_REF)^(−PRICE_ELASTICITY))`` and a cart a
purchase with ``PURCHASE_GIVEN_CART``, at value = the price. So P(purchase | click) falls with price, yet the
expected revenue of a click, ∝ price^(1 − elasticity), rises with it: the slate that maximises CTR (cheap,
click-baiting items) is not the one that maximises revenue. ``tests/experiments/simulation/test_business.py``
measures the gap (seed 0, 300 shoppers, 200 items, k = 10): the CTR-optimal slates earn about 31% less
revenue than the revenue-optimal ones, which in turn have about 9% fewer clicks (24% and 14% at affinity 1.6). An arm that learns CTR well
can therefore lose on revenue per user to a worse-CTR arm that happens to show dearer items.

What the simulator publishes through the API are the world's *observable*
features (noisy linear views of the latents): item ``features.vec`` and a
category, user ``attributes.vec`` and a segment. In the ``ids`` world the same
fields are published but are independent noise: the truth is identical, and
only the ids tell shoppers apart. The oracle ranks the whole
known catalogue by true relevance (optimal, since examination decreases with
the slot); a slate's regret is the oracle's expected clicks minus its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from models.synthetic import SyntheticWorld, WorldConfig

N_SEGMENTS = 4
PRICE_REF = 20.0
PRICE_CLICKBAIT = 0.35
PRICE_ELASTICITY = 0.5
CART_AT_REF = 0.3
PURCHASE_GIVEN_CART = 0.6
# The simulator's world names → WorldConfig.observable.
WORLDS = {"latent": "latent", "ids": "none"}
# The weight of a shopper's own taste in a click's log-odds (WorldConfig.interaction_scale) when none is given.
# Twice the synthetic world's 1.6: at 1.6 the sigmoid saturates for the strongest items, so the oracle's slates
# are only 1.143x the best single list over the race's 200 shoppers and 600 items; no personal ranking could be
# 1.15x a counter that finds that list (docs/benchmarks.md, "Learning race: how far a counter can go"). At 3.2
# the oracle is 1.30x it. The arms' own tests and benchmarks keep models.synthetic's 1.6.
DEFAULT_AFFINITY = 3.2


def cart_probability(price: np.ndarray) -> np.ndarray:
    """P(add to cart | click): falls with the price."""
    ratio = np.maximum(np.asarray(price, np.float64), 0.01) / PRICE_REF
    return np.minimum(1.0, CART_AT_REF * ratio ** (-PRICE_ELASTICITY))


def purchase_probability(price: np.ndarray) -> np.ndarray:
    """P(purchase | click) = P(cart | click) · P(purchase | cart)."""
    return cart_probability(price) * PURCHASE_GIVEN_CART


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


@dataclass
class ShopperWorld:
    seed: int
    n_users: int = 200
    n_items: int = 200
    prefix: str = "sim-"
    drift_at: float | None = None
    world: str = "latent"  # "latent", or "ids": the published features carry no signal (WorldConfig.observable)
    # How much a shopper's own taste moves a click (WorldConfig.interaction_scale); None: DEFAULT_AFFINITY.
    affinity: float | None = None

    def __post_init__(self) -> None:
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {sorted(WORLDS)}, not {self.world!r}")
        if self.affinity is not None and not (np.isfinite(self.affinity) and self.affinity >= 0):
            raise ValueError(f"affinity must be a finite number >= 0, not {self.affinity!r}")
        config = WorldConfig(n_users=max(1, self.n_users), n_items=max(1, self.n_items), observable=WORLDS[self.world],
                             interaction_scale=float(DEFAULT_AFFINITY if self.affinity is None else self.affinity))
        self.synthetic = SyntheticWorld(config, seed=self.seed)
        c = self.synthetic.config
        self.dim = c.latent_dim
        self.base = c.base_logit
        self.scale = c.interaction_scale
        self.user_ids = [f"{self.prefix}user-{i:05d}" for i in range(self.n_users)]
        self.item_ids = [f"{self.prefix}item-{i:05d}" for i in range(self.n_items)]
        self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        self._item_index = {i: j for j, i in enumerate(self.item_ids)}
        self._items: dict[str, tuple[np.ndarray, float]] = {}
        self._users: dict[tuple[str, int], np.ndarray] = {}

    def examine(self, positions: np.ndarray) -> np.ndarray:
        return self.synthetic.examination(np.asarray(positions))

    # ------------------------------------------------------------------ latents
    def _rng(self, kind: str, external_id: str, phase: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, phase, _key(kind), _key(external_id)])

    def item(self, item_id: str) -> tuple[np.ndarray, float]:
        cached = self._items.get(item_id)
        if cached is None:
            j = self._item_index.get(item_id)
            if j is not None:
                cached = (self.synthetic.item_latent[j], float(self.synthetic.item_bias[j]))
            else:
                rng = self._rng("item", item_id)
                c = self.synthetic.config
                cached = (rng.normal(0, 1 / np.sqrt(np.sqrt(self.dim)), self.dim),
                          float(rng.normal(0, c.item_bias_scale)))
            self._items[item_id] = cached
        return cached

    def phase(self, elapsed_s: float) -> int:
        return int(self.drift_at is not None and elapsed_s >= self.drift_at)

    def user(self, user_id: str, phase: int = 0) -> np.ndarray:
        cached = self._users.get((user_id, phase))
        if cached is None:
            i = self._user_index.get(user_id)
            if i is not None and phase == 0:
                cached = self.synthetic.user_latent[i]
            else:
                cached = self._rng("user", user_id, phase).normal(0, 1 / np.sqrt(np.sqrt(self.dim)), self.dim)
            self._users[(user_id, phase)] = cached
        return cached

    # --------------------------------------------------------------- published
    def item_row(self, item_id: str) -> dict:
        """The item as the simulator upserts it: the world's observable features."""
        j = self._item_index[item_id]
        return {
            "item_id": item_id,
            "title": f"Simulated product {j}",
            "category": f"cat-{int(np.argmax(self.synthetic.item_feats[j][:6]))}",
            "price": self.price(item_id),
            "features": {"vec": [round(float(x), 3) for x in self.synthetic.item_feats[j]]},
        }

    def price(self, item_id: str) -> float:
        """The item's price, cheaper the more its bias draws clicks (module doc); also for foreign items."""
        noise = self._rng("item-noise", item_id).normal()
        return round(float(np.exp(3.0 + 0.4 * noise - PRICE_CLICKBAIT * self.item(item_id)[1])), 2)

    def user_row(self, user_id: str) -> dict:
        i = self._user_index[user_id]
        feats = self.synthetic.user_feats[i]
        return {
            "user_id": user_id,
            "attributes": {"segment": f"s{int(np.argmax(feats[:N_SEGMENTS]))}",
                           "vec": [round(float(x), 3) for x in feats]},
        }

    # ------------------------------------------------------------------- truth
    def click_probability(self, user_id: str, item_ids: list[str], positions: np.ndarray, phase: int) -> np.ndarray:
        return self.examine(positions) * self.relevance(user_id, item_ids, phase)

    def relevance(self, user_id: str, item_ids: list[str], phase: int) -> np.ndarray:
        """σ(logit): the click probability in slot 1."""
        u = self.user(user_id, phase)
        vs = np.array([self.item(i)[0] for i in item_ids])
        pops = np.array([self.item(i)[1] for i in item_ids])
        logit = self.base + pops + self.scale * (vs @ u)
        return 1.0 / (1.0 + np.exp(-logit))

    def expected_revenue(self, user_id: str, item_ids: list[str], positions: np.ndarray, phase: int) -> np.ndarray:
        """Expected revenue of each shown item: P(click) · P(purchase | click) · price."""
        prices = np.array([self.price(i) for i in item_ids])
        return self.click_probability(user_id, item_ids, positions, phase) * purchase_probability(prices) * prices

    def _catalogue_logits(self, z: np.ndarray, catalogue: CatalogueView) -> np.ndarray:
        """Log-odds of relevance of every catalogue item for taste vector(s) ``z`` (``[d]`` or ``[m, d]``)."""
        return self.base + catalogue.pops + self.scale * (z @ catalogue.vectors.T)

    def oracle_expected_clicks(self, user_id: str, catalogue: CatalogueView, k: int, phase: int) -> float:
        """Expected clicks of the best slate of k over the catalogue, under the true model."""
        logit = self._catalogue_logits(self.user(user_id, phase), catalogue)
        k = min(k, logit.shape[0])
        top = np.sort(np.partition(logit, -k)[-k:])[::-1] if k < logit.shape[0] else np.sort(logit)[::-1]
        rel = 1.0 / (1.0 + np.exp(-top))
        return float((self.examine(np.arange(1, k + 1)) * rel).sum())

    def best_single_slate_clicks(self, requests: dict[str, float], catalogue: CatalogueView, k: int,
                                 phase: int) -> float:
        """Expected clicks per request of the best slate shown to *every* request: a counter's ceiling.

        ``requests`` maps a user to how many requests (or impressions) of theirs to average over. No
        non-personalised ranking does better on those requests in expectation: its slate is one fixed list,
        and the best fixed list puts the items of highest mean relevance in slot order.
        """
        users = [u for u, n in requests.items() if n > 0]
        if not users or not catalogue.ids:
            return 0.0
        weights = np.array([requests[u] for u in users], np.float64)
        z = np.array([self.user(u, phase) for u in users])
        rel = 1.0 / (1.0 + np.exp(-self._catalogue_logits(z, catalogue)))  # [users, items]
        mean = weights @ rel / weights.sum()
        k = min(k, mean.shape[0])
        top = np.sort(mean)[::-1][:k]
        return float((self.examine(np.arange(1, k + 1)) * top).sum())


class CatalogueView:
    """The items known to the simulator (synced or seen in responses), as matrices for the oracle."""

    def __init__(self, world: ShopperWorld) -> None:
        self.world = world
        self.ids: list[str] = []
        self._index: set[str] = set()
        self.vectors = np.zeros((0, world.dim))
        self.pops = np.zeros(0)

    def add(self, item_ids: list[str]) -> None:
        new = [i for i in dict.fromkeys(item_ids) if i not in self._index]
        if not new:
            return
        self.ids.extend(new)
        self._index.update(new)
        self.vectors = np.vstack([self.vectors, np.array([self.world.item(i)[0] for i in new])])
        self.pops = np.concatenate([self.pops, np.array([self.world.item(i)[1] for i in new])])
