"""Per-item click counts under an examination model (a building block).

``popularity`` is this layer alone; the TensorFlow arms use it as their *base
margin*: the network learns a correction on top of the counts' log-odds instead
of re-learning item popularity through slow gradient steps (the counts update in
closed form, so a new item's CTR is right after a handful of views).

Model: a view at slot ``pos`` is examined with probability ``e(pos)`` (slot 1 is
always examined), and an examined item is clicked with its relevance θ_item, so
``P(click) = e(pos)·θ``. ``e`` is the slot's CTR relative to slot 1, from global
per-slot counts. A view at slot ``pos`` counts as ``e(pos)`` expected
examinations ("clicks over expected clicks"), and θ has the posterior
``Beta(α + clicks, β + examinations − clicks)``.

With ``heads > 0`` the layer also keeps bootstrap replicates (Eckles & Kaptein,
2014): each observation enters replicate h with a double-or-nothing weight
ω_h ∈ {0, 2} supplied by the caller (hashed from the row, so a replay is exact),
and each replicate's prior pseudo-counts are scaled by independent hashed
U(0, 2), so replicates disagree about unseen items until data outweighs the prior.

Updates are validate-then-apply: :meth:`stage` computes the new values of every
row a batch touches, :meth:`apply` commits them, so a caller can refuse an update
(non-finite counts, or a diverging network beside it) with the state unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models import hashing
from models.errors import DivergedUpdateError, StateFormatError

_NAMES = ("clicks", "shows", "boot_clicks", "boot_shows", "pos_clicks", "pos_shows")


class Staged(NamedTuple):
    """New values for the rows one batch touches (see :meth:`ItemCounts.stage`)."""

    touched: np.ndarray
    clicks: np.ndarray
    shows: np.ndarray
    boot_clicks: np.ndarray | None
    boot_shows: np.ndarray | None
    pos_clicks: np.ndarray
    pos_shows: np.ndarray


class ItemCounts:
    def __init__(
        self, *, buckets: int, max_position: int, prior_alpha: float, prior_beta: float, heads: int = 0
    ) -> None:
        self.buckets, self.max_position, self.heads = buckets, max_position, heads
        self.prior_alpha, self.prior_beta = prior_alpha, prior_beta
        self.clicks = np.zeros(buckets, np.float64)
        self.shows = np.zeros(buckets, np.float64)
        self.pos_clicks = np.zeros(max_position, np.float64)
        self.pos_shows = np.zeros(max_position, np.float64)
        self.boot_clicks = np.zeros((buckets, heads), np.float64)
        self.boot_shows = np.zeros((buckets, heads), np.float64)
        # The replicates' random priors are a pure function of the cell: no storage, no RNG.
        cells = np.arange(buckets * heads, dtype=np.int64).reshape(buckets, heads)
        self.prior_clicks = prior_alpha * 2.0 * hashing.uniform01(cells, 7)
        self.prior_rest = prior_beta * 2.0 * hashing.uniform01(cells, 8)
        # Serving reads one float32 table of replicate means; apply() refreshes the rows it touches.
        self.replicate_table = self._replicate_means(slice(None)).astype(np.float32)

    # ------------------------------------------------------------ reading
    def bucket(self, item_keys: np.ndarray) -> np.ndarray:
        return hashing.bucket(item_keys, self.buckets)

    def examination(self, position: np.ndarray) -> np.ndarray:
        """Estimated examination probability of each slot (1 until data says otherwise)."""
        ctr = (self.pos_clicks + 1.0) / (self.pos_shows + 2.0)
        rel = np.minimum(ctr / ctr[0], 1.0)
        return rel[np.minimum(position, self.max_position) - 1]

    def posterior(self, item_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beta(a, b) over each item's relevance θ."""
        b = self.bucket(item_keys)
        a = self.prior_alpha + self.clicks[b]
        # Expected examinations can fall below clicks by noise; keep b > 0.
        return a, self.prior_beta + np.maximum(self.shows[b] - self.clicks[b], 0.0)

    def mean(self, item_keys: np.ndarray) -> np.ndarray:
        a, b = self.posterior(item_keys)
        return a / (a + b)

    def log_odds(self, item_keys: np.ndarray) -> np.ndarray:
        """log(E-ish odds) of θ: log(a / b), finite for every item (a, b > 0)."""
        a, b = self.posterior(item_keys)
        return np.log(a) - np.log(b)

    def _replicate_means(self, rows: np.ndarray | slice) -> np.ndarray:
        a = self.prior_clicks[rows] + self.boot_clicks[rows]
        n = a + self.prior_rest[rows] + np.maximum(self.boot_shows[rows] - self.boot_clicks[rows], 0.0)
        return a / n

    def replicate_means(self, item_keys: np.ndarray) -> np.ndarray:
        """Each replicate's posterior mean ``[n, heads]`` (a cached table, gathered)."""
        return self.replicate_table[self.bucket(item_keys)]

    def replicate_log_odds(self, item_keys: np.ndarray) -> np.ndarray:
        p = self.replicate_means(item_keys).astype(np.float64)
        return np.log(p) - np.log1p(-p)

    # ----------------------------------------------------------- updating
    def stage(
        self,
        item_keys: np.ndarray,
        position: np.ndarray,
        labels: np.ndarray,
        weights: np.ndarray,
        omega: np.ndarray | None = None,
    ) -> Staged:
        """New counts for the rows a batch touches; raises if any is not finite."""
        with np.errstate(over="ignore", invalid="ignore"):
            w = weights.astype(np.float64)
            y = labels.astype(np.float64)
            slot = np.minimum(position, self.max_position) - 1
            ew = w * self.examination(position)  # expected examinations
            touched, inv = np.unique(self.bucket(item_keys), return_inverse=True)
            nt = touched.shape[0]
            clicks = self.clicks[touched] + np.bincount(inv, w * y, nt)
            shows = self.shows[touched] + np.bincount(inv, ew, nt)
            boot_c = boot_s = None
            if self.heads:
                assert omega is not None and omega.shape == (w.shape[0], self.heads)
                add_c, add_s = np.zeros((nt, self.heads)), np.zeros((nt, self.heads))
                np.add.at(add_c, inv, omega * (w * y)[:, None])
                np.add.at(add_s, inv, omega * ew[:, None])
                boot_c, boot_s = self.boot_clicks[touched] + add_c, self.boot_shows[touched] + add_s
            mp = self.max_position
            staged = Staged(
                touched,
                clicks,
                shows,
                boot_c,
                boot_s,
                self.pos_clicks + np.bincount(slot, w * y, mp),
                self.pos_shows + np.bincount(slot, w, mp),
            )
        if not all(v is None or np.isfinite(v).all() for v in staged[1:]):
            raise DivergedUpdateError("item counts overflowed")
        return staged

    def apply(self, s: Staged) -> None:
        self.pos_clicks, self.pos_shows = s.pos_clicks, s.pos_shows
        self.clicks[s.touched] = s.clicks
        self.shows[s.touched] = s.shows
        if self.heads:
            self.boot_clicks[s.touched] = s.boot_clicks
            self.boot_shows[s.touched] = s.boot_shows
            self.replicate_table[s.touched] = self._replicate_means(s.touched)

    # -------------------------------------------------------------- state
    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        names = _NAMES if self.heads else ("clicks", "shows", "pos_clicks", "pos_shows")
        return {prefix + n: getattr(self, n) for n in names}

    def load(self, arrays: dict[str, np.ndarray], prefix: str = "") -> None:
        for name in self.arrays():
            if prefix + name not in arrays:
                raise StateFormatError(f"checkpoint lacks {prefix}{name} (written by an older layout?)")
            value = arrays[prefix + name].astype(np.float64)
            if value.shape != getattr(self, name).shape:
                raise StateFormatError(f"{prefix}{name}: shape {value.shape}, expected {getattr(self, name).shape}")
            setattr(self, name, value.copy())
        self.replicate_table = self._replicate_means(slice(None)).astype(np.float32)
