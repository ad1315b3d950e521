"""What a shadow arm learns from: the served arms' impressions and clicks it ranked in the shadow, each weighted by
π_shadow / π_logged (the shadow's probability of the shown item at its position over the served arm's), clipped
at :data:`MAX_WEIGHT` (the usual bias-for-variance trade of clipped IPS).

Shadow rows are written after the response, by the light worker's drain (services/shadow.py), so a row for an
older impression can commit after a newer one. Both reads therefore stay :data:`LAG_S` behind the clock: a
shadow row or a click is read only once it is that old, and a cursor only moves past what is that old. A
click's shadow rows are written a second or two after its impression (or never, when the queue overflowed),
long before that. The cursors are kept in the version's metrics (``shadow_cursor``, ``shadow_click_cursor``), not in
the checkpoint's own impression and click cursors, which stay for the arm's own traffic once it is live.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import connection

from experiments.models import ModelCheckpoint
from experiments.services.training_data import IMPRESSION_COLUMNS, Horizon, Rows, StepRows, entities_read

MAX_WEIGHT = 10.0
LAG_S = 30.0
SLOTS_PER_REQUEST = 10  # a read takes limit / this many requests (whole: a cursor never splits one)

# A shadow row holds one request's slots as arrays (experiments/shadow_models.py); the reads unnest them into the
# impression columns training expects (IMPRESSION_COLUMNS), position = the slot's ordinal.
_SLOTS = """CROSS JOIN LATERAL unnest(s.impression_ids, s.items, s.logged_propensities, s.target_propensities)
     WITH ORDINALITY AS u(impression_id, item_id, logged, target, position)"""
_WEIGHT = "LEAST(u.target / u.logged, %(max_weight)s)"
_IMPRESSIONS_SQL = f"""
SELECT s.id, s.user_id, u.item_id, u.position, s.hist_clicked, s.hist_impressed, {_WEIGHT}
FROM (SELECT * FROM experiments_shadowranking
      WHERE arm_id = %(arm)s AND id > %(cursor)s AND created_at < now() - make_interval(secs => %(lag)s)
      ORDER BY id LIMIT %(requests)s) s
{_SLOTS}
ORDER BY s.id, u.position
"""
_IMPRESSIONS_END_SQL = """
SELECT max(s.id) FROM experiments_shadowranking s
WHERE s.arm_id = %(arm)s AND s.id > %(cursor)s AND s.created_at < now() - make_interval(secs => %(lag)s)
"""
_CLICKS_SQL = f"""
SELECT c.id, c.clicked_at, c.impression_id, s.user_id, u.item_id, u.position, s.hist_clicked, s.hist_impressed,
       {_WEIGHT}
FROM experiments_click c
JOIN experiments_impression i ON i.id = c.impression_id
JOIN experiments_shadowranking s ON s.arm_id = %(arm)s AND s.request_id = i.request_id
{_SLOTS}
WHERE c.id > %(cursor)s AND c.id <= %(horizon)s AND NOT c.late
  AND c.clicked_at < now() - make_interval(secs => %(lag)s) AND u.impression_id = c.impression_id
ORDER BY c.id LIMIT %(limit)s
"""
_CLICKS_END_SQL = """
SELECT max(c.id) FROM experiments_click c
WHERE c.id > %(cursor)s AND c.id <= %(horizon)s AND c.clicked_at < now() - make_interval(secs => %(lag)s)
"""


def shadow_cursors(*, arm_id: int, head: dict[str, Any]) -> tuple[int, int]:
    """(shadow-row cursor, click cursor) of a shadow step: the head's, or the newest shadow version's when the arm
    was live meanwhile (0, 0 for its first time in the shadow). Shadow versions carry the arm's own cursors
    unchanged in the checkpoint's columns, so a live step always starts from the head's."""
    for metrics in [head.get("metrics") or {}] + [
            m or {} for m in ModelCheckpoint.objects.filter(arm_id=arm_id, metrics__shadow=True)
            .order_by("-version").values_list("metrics", flat=True)[:1]]:
        if metrics.get("shadow"):
            return int(metrics.get("shadow_cursor", 0)), int(metrics.get("shadow_click_cursor", 0))
    return 0, 0


def shadow_rows_read(*, arm_id: int, cursor: int, click_cursor: int, horizon: Horizon, limit: int) -> StepRows:
    """The next mini-batch of a shadow arm: up to ``limit`` shadow impressions and ``limit`` clicks on them, each
    row carrying its importance weight (``weight``)."""
    requests = max(1, limit // SLOTS_PER_REQUEST)
    args = {"arm": arm_id, "cursor": cursor, "limit": limit, "requests": requests, "lag": LAG_S,
            "max_weight": MAX_WEIGHT, "horizon": horizon.click_id}
    names = ("id", *IMPRESSION_COLUMNS, "weight")
    with connection.cursor() as cur:
        cur.execute(_IMPRESSIONS_SQL, args)
        imps = Rows.fetched(names, cur.fetchall())
        if len(np.unique(imps["id"])) < requests:
            cur.execute(_IMPRESSIONS_END_SQL, args)
            end = cur.fetchone()[0]
            new_cursor = max(cursor, int(end or 0))
        else:
            new_cursor = imps.last_id
        click_args = {**args, "cursor": click_cursor}
        cur.execute(_CLICKS_SQL, click_args)
        click_names = ("id", "clicked_at", "impression_id", *IMPRESSION_COLUMNS, "weight")
        clicks = Rows.fetched(click_names, cur.fetchall())
        if len(clicks) < limit:
            cur.execute(_CLICKS_END_SQL, click_args)
            end = cur.fetchone()[0]
            new_click_cursor = max(click_cursor, int(end or 0))
        else:
            new_click_cursor = clicks.last_id
        entities = entities_read(cur, imps, clicks)
    return StepRows(imps, clicks, new_cursor, new_click_cursor, entities)
