"""The arm interface every kind implements, plus the shared plumbing.

Subclasses implement the ``_``-prefixed hooks; the public methods here validate
input, compute progressive-validation metrics and handle checkpoints, so every
kind behaves identically at the edges.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from models import exploration, metrics, serialization
from models.errors import BadBatchError, DivergedUpdateError, StateFormatError
from models.params import Param
from models.types import Batch, Context, Ranking, Users

# Shown the predictions a model makes of a batch before it learns from it: True refuses the update.
Refuse = Callable[[np.ndarray], bool]


class Arm:
    """Base class. Construct through :func:`models.registry.make_arm`."""

    kind: ClassVar[str] = ""
    # Whether ``feedback_reference`` is the arm's own prediction (so it depends on the predictions).
    reference_is_prediction: ClassVar[bool] = True
    # Whether ``_fit`` takes ``refuse`` and, when it refuses, leaves the arm exactly as it was.
    fit_can_refuse: ClassVar[bool] = False
    PARAMS: ClassVar[dict[str, Param]] = {}
    # Shared by every kind, so the Django side can size its arrays uniformly.
    COMMON: ClassVar[dict[str, Param]] = {
        "user_dim": Param(8, lo=1, hi=4096, doc="length of the user feature vector"),
        "item_dim": Param(16, lo=1, hi=4096, doc="length of the item feature vector"),
        "history_len": Param(10, lo=1, hi=1000, doc="session history length (padded with -1)"),
    }

    def __init__(self, params: dict[str, Any], seed: int) -> None:
        # ``params`` arrive validated and complete (the registry sees to that).
        self.params = dict(params)
        self.seed = int(seed)
        self.n_updates = 0
        self.n_seen = 0.0

    @classmethod
    def param_spec(cls) -> dict[str, Param]:
        return {**cls.COMMON, **cls.PARAMS}

    # ----------------------------------------------------------------- rank
    def rank(self, ctx: Context, k: int, rng: np.random.Generator) -> Ranking:
        """Choose k of ``ctx``'s candidates, with exploration and exact propensities."""
        self._check_context(ctx.user_feats[None, :], ctx.item_feats)
        if k < 1:
            raise ValueError("k must be >= 1")
        slates, scores, props = self._rank_many(Users.of(ctx), ctx.item_keys, ctx.item_feats, k, rng, True)
        assert props is not None
        return Ranking(slates[0].astype(np.int64), scores[0], props[0])

    def rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Rank one shared candidate set for m users at once (simulators, tests).

        Same randomisation as :meth:`rank` row by row. Returns slates ``[m, k]``,
        scores ``[m, k]`` and propensities ``[m, k]`` (None if not asked for).
        """
        self._check_context(users.feats, item_feats)
        if k < 1:
            raise ValueError("k must be >= 1")
        return self._rank_many(users, item_keys, item_feats, k, rng, propensities)

    def propensity_matrix(self, ctx: Context, k: int) -> np.ndarray:
        """Exact ``P[i, j]``: probability that candidate i is shown in slot j.

        Rows sum to at most 1, columns to exactly 1 (for j < min(k, n)).
        """
        self._check_context(ctx.user_feats[None, :], ctx.item_feats)
        if k < 1:
            raise ValueError("k must be >= 1")
        return self._propensity_matrix(ctx, min(k, ctx.n))

    def rank_with_matrix(self, ctx: Context, k: int, rng: np.random.Generator) -> tuple[Ranking, np.ndarray]:
        """:meth:`rank` and :meth:`propensity_matrix` of one context (a shadow arm needs both; arms whose two
        share their scores compute them once)."""
        return self.rank(ctx, k, rng), self.propensity_matrix(ctx, k)

    def rank_many_against(
        self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray, shown: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A shadow arm's work for m requests over one candidate set, each of which showed ``shown[r]`` (candidate
        indices ``[m, k]``, slot order): this arm's own slates and scores ``[m, k]`` and ``target [m, k]``, its exact
        probability of ``shown[r, j]`` in slot j. By default row by row through :meth:`rank_with_matrix`; arms
        whose matrix follows from one scoring pass do all rows in one."""
        self._check_context(users.feats, item_feats)
        m, k = shown.shape
        slates, scores, target = np.empty((m, k), np.int64), np.empty((m, k)), np.empty((m, k))
        for r in range(m):
            ctx = Context(int(users.keys[r]), users.feats[r], item_keys, item_feats, users.clicked[r],
                          users.impressed[r])
            own, matrix = self.rank_with_matrix(ctx, k, rng)
            slates[r], scores[r], target[r] = own.indices, own.scores, matrix[shown[r], np.arange(k)]
        return slates, scores, target

    # -------------------------------------------------------------- predict
    def predict(self, batch: Batch) -> np.ndarray:
        """Click probabilities of the batch rows (at ``batch.position``) as float64."""
        self._check_batch(batch, labelled=False)
        return np.asarray(self._predict(batch), dtype=np.float64)

    def feedback_reference(self, batch: Batch, predicted: np.ndarray | None = None) -> np.ndarray:
        """The click probabilities that delayed-feedback importance weights (FNW) are computed from.

        FNW weighs a fake negative by ``(1-p)(1+p)`` and a positive by ``1+p``, exact when p is. With a
        model's own per-user estimate, an error feeds itself: a pair the model over-rates gets its
        negatives down-weighted and its positives up-weighted, so it is over-rated more. Arms with a
        noisy personal estimate return a steadier one (and set ``reference_is_prediction = False``); by
        default the arm's own prediction, ``predicted`` when the caller has just made it.
        """
        if predicted is not None and self.reference_is_prediction:
            return np.asarray(predicted, dtype=np.float64)
        return self.predict(batch)

    # ---------------------------------------------------------------- learn
    def partial_fit(self, batch: Batch) -> dict[str, float]:
        """One online update; metrics of the model *before* the update included.

        Raises BadBatchError (nothing touched) or DivergedUpdateError (state
        restored exactly).
        """
        return self.partial_fit_predict(batch)[0]

    def partial_fit_unless(self, batch: Batch, refuse: Refuse) -> tuple[dict[str, float] | None, np.ndarray]:
        """:meth:`partial_fit`, unless ``refuse``, shown the predictions made before the update, says no:
        then the arm is exactly as it was and ``(None, predictions)`` is returned.

        A guard that judges a batch by the model's own progressive predictions needs them before the
        update. Arms whose ``_fit`` can undo its step exactly (``fit_can_refuse``) take them from the
        update's own forward pass; the others predict the batch first, then learn.
        """
        if self.fit_can_refuse:
            return self._learn(batch, refuse)
        p = self.predict(batch)
        if refuse(p):
            return None, p
        out, _ = self._learn(batch, None)
        return out, p

    def partial_fit_predict(self, batch: Batch) -> tuple[dict[str, float], np.ndarray]:
        """:meth:`partial_fit`, also returning the per-row predictions made before
        the update (progressive validation scores, at no extra cost)."""
        out, p = self._learn(batch, None)
        assert out is not None
        return out, p

    def _learn(self, batch: Batch, refuse: Refuse | None) -> tuple[dict[str, float] | None, np.ndarray]:
        """The checks, the update (``refuse`` only for ``fit_can_refuse`` kinds) and its metrics."""
        self._check_batch(batch, labelled=True)
        assert batch.labels is not None
        w = batch.weights()
        with np.errstate(over="ignore"):  # an overflowing total is refused by the arm
            total = float(w.sum(dtype=np.float64))
        if not total > 0:
            raise BadBatchError("sample weights sum to zero")
        p_before, loss, extra = self._fit(batch) if refuse is None else self._fit(batch, refuse)  # type: ignore[call-arg]
        if loss is None:  # refused: the arm is as it was
            return None, np.asarray(p_before, dtype=np.float64)
        if not np.isfinite(loss) or not np.isfinite(p_before).all():
            # Hooks validate before applying, so this is a last line of defence.
            raise DivergedUpdateError(f"{self.kind}: non-finite loss {loss}")
        self.n_updates += 1
        self.n_seen += float(w.sum())
        out = {
            "loss": float(loss),
            "n": float(len(batch)),
            "logloss_before": metrics.logloss(batch.labels, p_before, w),
            "auc_before": metrics.auc(batch.labels, p_before, w),
            "n_updates": float(self.n_updates),
        }
        out.update(extra)
        return out, np.asarray(p_before, dtype=np.float64)

    # ---------------------------------------------------------------- state
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The whole state as small JSON metadata plus named arrays (what :meth:`to_bytes` packs).

        The arrays may be the arm's own buffers: read them, never write them.
        ``from_state(*arm.state())`` rebuilds an equal arm; :mod:`models.deltas`
        diffs these arrays between versions without knowing what they hold.
        """
        meta = {
            "kind": self.kind,
            "params": self.params,
            "seed": self.seed,
            "n_updates": self.n_updates,
            "n_seen": self.n_seen,
            "extra": self._extra_state(),
        }
        return meta, self._arrays()

    def to_bytes(self) -> bytes:
        """Whole state (params, weights, optimizer slots, counters) as bytes."""
        return serialization.pack(*self.state())

    @classmethod
    def from_bytes(cls, data: bytes) -> Arm:
        """Rebuild an arm of this kind from :meth:`to_bytes` output.

        Any kind, read from the bytes: :func:`models.registry.arm_from_bytes`.
        """
        meta, arrays = serialization.unpack(data)
        return cls.from_state(meta, arrays)

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Arm:
        """Rebuild an arm of this kind from unpacked checkpoint parts."""
        if not cls.kind:
            raise TypeError("Arm is abstract: restore through models.registry.arm_from_bytes")
        if cls.kind != meta.get("kind"):
            raise StateFormatError(f"checkpoint is {meta.get('kind')!r}, not {cls.kind!r}")
        arm = cls(meta["params"], meta["seed"])
        arm.n_updates = int(meta["n_updates"])
        arm.n_seen = float(meta["n_seen"])
        arm._load_extra_state(meta["extra"])
        arm._load_arrays(arrays)
        return arm

    # ---------------------------------------------------------- validation
    def _check_context(self, user_feats: np.ndarray, item_feats: np.ndarray) -> None:
        if not (np.isfinite(user_feats).all() and np.isfinite(item_feats).all()):
            raise BadBatchError("features contain NaN or inf")
        if user_feats.shape[1] != self.params["user_dim"]:
            raise BadBatchError(f"user_feats has length {user_feats.shape[1]}, arm expects {self.params['user_dim']}")
        if item_feats.shape[1] != self.params["item_dim"]:
            raise BadBatchError(f"item_feats has length {item_feats.shape[1]}, arm expects {self.params['item_dim']}")

    def _check_batch(self, batch: Batch, labelled: bool) -> None:
        if not isinstance(batch, Batch):
            raise BadBatchError("expected a models.types.Batch")
        if labelled and batch.labels is None:
            raise BadBatchError("partial_fit needs labels")
        self._check_context(batch.user_feats, batch.item_feats)
        # Batch.make validates, but a Batch built directly must not slip NaN in.
        for name in ("user_feats", "item_feats", "labels", "sample_weight"):
            arr = getattr(batch, name)
            if arr is not None and not np.isfinite(arr).all():
                raise BadBatchError(f"{name} contains NaN or inf")
        h = self.params["history_len"]
        if batch.clicked.shape[1] != h or batch.impressed.shape[1] != h:
            raise BadBatchError(f"history arrays must have length history_len={h}")

    # ---------------------------------------------------------------- hooks
    def _rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _propensity_matrix(self, ctx: Context, k: int) -> np.ndarray:
        raise NotImplementedError

    def _predict(self, batch: Batch) -> np.ndarray:
        raise NotImplementedError

    def _fit(self, batch: Batch) -> tuple[np.ndarray, float | None, dict[str, float]]:
        """Update; return (predictions before the update, loss, extra metrics). Kinds with
        ``fit_can_refuse`` also take ``refuse`` and return loss None when it refused."""
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        return None


class EpsilonGreedyRanking:
    """Ranking by slate-level ε-greedy over one score per candidate (models.exploration).

    The arm supplies ``_greedy_scores(users, item_keys, item_feats) -> [m, n]`` (a click
    probability, or a Q value) and an ``epsilon`` param; ranking and the exact propensity
    matrix then follow from the same scores, so they can never disagree.
    """

    params: dict[str, Any]

    def _greedy_scores(self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _rank_many(
        self,
        users: Users,
        item_keys: np.ndarray,
        item_feats: np.ndarray,
        k: int,
        rng: np.random.Generator,
        propensities: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        scores = self._greedy_scores(users, item_keys, item_feats)
        slates, props = exploration.epsilon_greedy(scores, k, self.params["epsilon"], rng)
        return slates, np.take_along_axis(scores, slates, axis=1), props if propensities else None

    def _propensity_matrix(self, ctx: Context, k: int) -> np.ndarray:
        scores = self._greedy_scores(Users.of(ctx), ctx.item_keys, ctx.item_feats)[0]
        return exploration.epsilon_greedy_matrix(scores, k, self.params["epsilon"])

    def rank_with_matrix(self, ctx: Context, k: int, rng: np.random.Generator) -> tuple[Ranking, np.ndarray]:
        """One scoring pass for both (what ``Arm.rank`` and ``Arm.propensity_matrix`` give separately)."""
        self._check_context(ctx.user_feats[None, :], ctx.item_feats)  # type: ignore[attr-defined]
        if k < 1:
            raise ValueError("k must be >= 1")
        scores = self._greedy_scores(Users.of(ctx), ctx.item_keys, ctx.item_feats)
        slates, props = exploration.epsilon_greedy(scores, k, self.params["epsilon"], rng)
        ranking = Ranking(slates[0].astype(np.int64), np.take_along_axis(scores, slates, axis=1)[0], props[0])
        return ranking, exploration.epsilon_greedy_matrix(scores[0], min(k, ctx.n), self.params["epsilon"])

    def rank_many_against(
        self, users: Users, item_keys: np.ndarray, item_feats: np.ndarray, shown: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All m rows from one scoring pass: ``P(i at j) = (1-ε)·1[greedy_j = i] + ε/n``."""
        self._check_context(users.feats, item_feats)  # type: ignore[attr-defined]
        m, k = shown.shape
        n, eps = item_keys.shape[0], self.params["epsilon"]
        scores = self._greedy_scores(users, item_keys, item_feats)
        greedy = exploration.topk(scores, k)
        slates, _ = exploration.epsilon_greedy(scores, k, eps, rng, greedy=greedy)
        target = (1.0 - eps) * (greedy == shown) + eps / n
        return slates, np.take_along_axis(scores, slates, axis=1), target
