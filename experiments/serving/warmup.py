"""Warming a serving process, so that no request waits for a model.

A freshly built or restored arm is slow on its first rankings: the first TensorFlow arm imports
TensorFlow, and every ``tf.function`` traces on its first call and once more on the first call with
a different number of candidates (``reduce_retracing`` then relaxes the shape, and later catalogue
sizes reuse that graph). Measured on this box: 100–250 ms for each of the first two rankings of a
``deep_ctr`` or ``neural_bandit`` arm, 3 ms afterwards. :func:`model_warm` pays that in the serving
cache's refresh thread, before the model is published, so a request never meets a cold model —
neither at start-up nor after a hot reload (the previous version keeps serving meanwhile).

The process as a whole (start-up, the other first-request costs, ``/healthz``'s ``warming``) is
``experiments.serving.startup``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from experiments import features

log = logging.getLogger(__name__)

# Two candidate-set sizes: the first call traces, the second relaxes the traced shape to any size.
_WARM_SIZES = 2


def _warm_candidates(catalogue: Any, item_dim: int) -> tuple[np.ndarray, np.ndarray]:
    feats = catalogue.feats.get(item_dim)
    if catalogue.n >= 2:
        if feats is None:
            feats = features.item_matrix(catalogue.rows, dim=item_dim)
        return catalogue.keys, feats
    # An empty (or one-item) catalogue: synthetic candidates of the same dtypes still trace the graphs.
    n = 3
    return np.arange(1, n + 1, dtype=np.int64), np.zeros((n, item_dim), np.float32)


def model_warm(*, loaded: Any, catalogue: Any) -> float:
    """Ranks a few times for a new user with ``loaded``'s model, as a request would; returns the seconds spent.

    Never raises: a model that cannot rank is left for the request path to report.
    """
    from models.types import Context

    started = time.perf_counter()
    model = loaded.model
    try:
        item_dim = int(model.params["item_dim"])
        user_dim = int(model.params["user_dim"])
        history_len = int(model.params.get("history_len", 10))
        keys, feats = _warm_candidates(catalogue, item_dim)
        rng = np.random.default_rng(0)  # the model's own generator stays untouched
        user_feats = np.zeros(user_dim, np.float32)  # only shapes and dtypes matter to tracing
        for size in range(_WARM_SIZES):
            n = keys.shape[0] - size
            ctx = Context.make(features.external_key(f"warmup-{size}"), user_feats, keys[:n], feats[:n],
                               history_len=history_len)
            model.rank(ctx, min(10, n), rng)
    except Exception as exc:
        log.warning("model_warm_failed arm=%s version=%s error=%s", loaded.arm_id, loaded.version,
                    f"{type(exc).__name__}: {exc}".strip())
    elapsed = time.perf_counter() - started
    log.info("model_warmed arm=%s version=%s seconds=%.3f", loaded.arm_id, loaded.version, elapsed)
    return elapsed
