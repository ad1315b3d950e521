"""A seeded synthetic shop: latent factors → true click probability.

Used by the tests, the benchmark and the shop simulator. Everything is a
function of the seed, so runs are reproducible.

Model of a click on item i shown to user u at slot ``pos`` in a session::

    relevance = sigmoid(base_logit + item_bias_i + scale·<z_u, v_i>
                        - repeat_penalty·[i already impressed this session]
                        + history_affinity·mean_{c clicked this session} <v_c, v_i>)
    P(click) = examination(pos) · relevance,   examination(pos) = pos^(-position_decay)

Observable features are noisy linear functions of the latent factors, so
content features are informative but not sufficient (ids still help):
``user_feats = A·z_u + noise``, ``item_feats = B·[v_i, item_bias_i] + noise``.
Optional ``drift`` moves item biases as a random walk per example served.

``observable="none"`` gives the *ids-only* world: the same latent truth, but the
features are independent noise (drawn from their own generator, so the truth is
the seed's), so whatever an arm learns about who likes what it must learn from
the user and item ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from models.types import PAD, Batch, Context

OBSERVABLE = ("latent", "none")


@dataclass(frozen=True)
class WorldConfig:
    n_users: int = 2000
    n_items: int = 500
    latent_dim: int = 4
    user_dim: int = 8
    item_dim: int = 16
    history_len: int = 10
    base_logit: float = -1.6
    item_bias_scale: float = 1.4
    interaction_scale: float = 1.6
    feature_noise: float = 0.5
    position_decay: float = 0.7
    max_position: int = 10
    repeat_penalty: float = 1.0
    history_affinity: float = 0.8
    session_len: int = 5
    drift: float = 0.0
    observable: str = "latent"  # "latent": features are noisy views of the latents; "none": pure noise

    def __post_init__(self) -> None:
        if self.observable not in OBSERVABLE:
            raise ValueError(f"observable must be one of {OBSERVABLE}, not {self.observable!r}")


class SyntheticWorld:
    """Users and items with keys, features and a true click probability."""

    def __init__(self, config: WorldConfig | None = None, seed: int = 0) -> None:
        self.config = c = config or WorldConfig()
        rng = np.random.default_rng(seed)
        self.user_keys = rng.choice(np.int64(1) << 62, c.n_users, replace=False).astype(np.int64)
        self.item_keys = rng.choice(np.int64(1) << 62, c.n_items, replace=False).astype(np.int64)
        d = c.latent_dim
        self.user_latent = rng.normal(0, 1 / np.sqrt(np.sqrt(d)), (c.n_users, d))
        self.item_latent = rng.normal(0, 1 / np.sqrt(np.sqrt(d)), (c.n_items, d))
        self.item_bias = rng.normal(0, c.item_bias_scale, c.n_items)
        a = rng.normal(0, 1 / np.sqrt(d), (d, c.user_dim))
        b = rng.normal(0, 1 / np.sqrt(d + 1), (d + 1, c.item_dim))
        self.user_feats = (self.user_latent @ a + rng.normal(0, c.feature_noise, (c.n_users, c.user_dim))).astype(
            np.float32
        )
        item_src = np.concatenate([self.item_latent, self.item_bias[:, None]], axis=1)
        self.item_feats = (item_src @ b + rng.normal(0, c.feature_noise, (c.n_items, c.item_dim))).astype(np.float32)
        if c.observable == "none":
            # Same truth, same spread of feature values, no information in them.
            noise = np.random.default_rng([seed, 0x1D5])
            self.user_feats = noise.normal(0, self.user_feats.std(), self.user_feats.shape).astype(np.float32)
            self.item_feats = noise.normal(0, self.item_feats.std(), self.item_feats.shape).astype(np.float32)
        self._item_index = {int(k): i for i, k in enumerate(self.item_keys)}

    # ----------------------------------------------------------- truth
    def examination(self, position: np.ndarray | int) -> np.ndarray:
        """Probability that a shopper looks at slot ``position`` (1-based)."""
        return np.asarray(position, np.float64) ** (-self.config.position_decay)

    def item_index(self, keys: np.ndarray) -> np.ndarray:
        """Item indices of keys; -1 for padding or unknown keys."""
        return np.array([self._item_index.get(int(k), -1) for k in np.ravel(keys)]).reshape(np.shape(keys))

    def click_prob(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        position: np.ndarray | int = 1,
        impressed_idx: np.ndarray | None = None,
        clicked_idx: np.ndarray | None = None,
    ) -> np.ndarray:
        """True P(click). Shapes broadcast; histories are item indices ``[..., h]`` (-1 pad)."""
        c = self.config
        user_idx = np.asarray(user_idx)
        item_idx = np.asarray(item_idx)
        logit = (
            c.base_logit
            + self.item_bias[item_idx]
            + c.interaction_scale * np.einsum("...d,...d->...", self.user_latent[user_idx], self.item_latent[item_idx])
        )
        if impressed_idx is not None:
            seen = (np.asarray(impressed_idx) == item_idx[..., None]).any(axis=-1)
            logit = logit - c.repeat_penalty * seen
        if clicked_idx is not None:
            ci = np.asarray(clicked_idx)
            valid = ci >= 0
            vc = self.item_latent[np.where(valid, ci, 0)] * valid[..., None]
            cnt = valid.sum(axis=-1)
            mean_vc = vc.sum(axis=-2) / np.maximum(cnt, 1)[..., None]
            aff = np.einsum("...d,...d->...", mean_vc, self.item_latent[item_idx])
            logit = logit + c.history_affinity * aff
        return self.examination(position) / (1.0 + np.exp(-logit))

    def advance(self, n_examples: int, rng: np.random.Generator) -> None:
        """Apply ``drift`` for n examples served (random walk of item biases)."""
        if self.config.drift > 0:
            self.item_bias += rng.normal(0, self.config.drift * np.sqrt(n_examples), self.item_bias.shape)

    # ------------------------------------------------------- requests
    def context(
        self,
        user_idx: int,
        item_idx: np.ndarray | None = None,
        clicked_idx: np.ndarray | None = None,
        impressed_idx: np.ndarray | None = None,
    ) -> Context:
        """A ranking request for one user over ``item_idx`` (default: all items)."""
        items = np.arange(self.config.n_items) if item_idx is None else np.asarray(item_idx)
        return Context.make(
            self.user_keys[user_idx],
            self.user_feats[user_idx],
            self.item_keys[items],
            self.item_feats[items],
            clicked=self._keys_of(clicked_idx, None),
            impressed=self._keys_of(impressed_idx, None),
            history_len=self.config.history_len,
        )

    def _keys_of(self, idx: np.ndarray | None, rows: int | None) -> np.ndarray | None:
        if idx is None:
            return None
        idx = np.asarray(idx)
        return np.where(idx >= 0, self.item_keys[np.maximum(idx, 0)], PAD).astype(np.int64)

    def batch(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        labels: np.ndarray | None = None,
        position: np.ndarray | None = None,
        clicked_idx: np.ndarray | None = None,
        impressed_idx: np.ndarray | None = None,
    ) -> Batch:
        """A Batch of (user, item) rows given as indices into this world."""
        return Batch.make(
            self.user_keys[user_idx],
            self.user_feats[user_idx],
            self.item_keys[item_idx],
            self.item_feats[item_idx],
            labels=labels,
            position=position,
            clicked=self._keys_of(clicked_idx, len(user_idx)),
            impressed=self._keys_of(impressed_idx, len(user_idx)),
            history_len=self.config.history_len,
        )

    def stream(self, n_examples: int, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[Batch, np.ndarray]]:
        """Logged impressions in arrival order under a uniform logging policy.

        Sessions of ``session_len`` impressions per user: each shows a uniformly
        random item at a uniformly random slot, with the session's click and
        impression history so far. Yields (batch, true click probabilities).
        """
        c = self.config
        done = 0
        while done < n_examples:
            m = min(batch_size, n_examples - done)
            n_sess = -(-m // c.session_len)
            users = rng.integers(0, c.n_users, n_sess)
            hist_imp = np.full((n_sess, c.history_len), PAD, np.int64)
            hist_clk = np.full((n_sess, c.history_len), PAD, np.int64)
            rows: list[tuple[np.ndarray, ...]] = []
            for _ in range(c.session_len):
                items = rng.integers(0, c.n_items, n_sess)
                pos = rng.integers(1, c.max_position + 1, n_sess)
                p = self.click_prob(users, items, pos, hist_imp, hist_clk)
                y = (rng.random(n_sess) < p).astype(np.float32)
                rows.append((users, items, pos, y, p, hist_clk.copy(), hist_imp.copy()))
                # Most recent first: shift right, put the new item at slot 0.
                hist_imp = np.concatenate([items[:, None], hist_imp[:, :-1]], axis=1)
                clicked = y > 0
                hist_clk[clicked] = np.concatenate([items[clicked, None], hist_clk[clicked, :-1]], axis=1)
            # Interleave sessions so the batch is in arrival order within sessions.
            cols = [
                np.stack([r[i] for r in rows], axis=1).reshape(n_sess * c.session_len, *r_shape)
                for i, r_shape in enumerate([(), (), (), (), (), (c.history_len,), (c.history_len,)])
            ]
            u, it, pos, y, p, hc, hi = (col[:m] for col in cols)
            yield self.batch(u, it, y, pos, hc, hi), p
            self.advance(m, rng)
            done += m

    def uniform_ctr(self, position: int = 1) -> float:
        """Expected CTR of showing a uniformly random item at ``position``."""
        u = np.arange(self.config.n_users)[:, None]
        i = np.arange(self.config.n_items)[None, :]
        return float(self.click_prob(u, i, position).mean())
