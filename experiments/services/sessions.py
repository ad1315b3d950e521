"""Each shopper's session: the items recently shown to them and clicked, for arms that rank on it (``q_learning``).

Where it lives, and why there:

* On the ``ShopUser`` row (``session_impressed``, ``session_clicked``: Item ids,
  most recent first, at most :data:`HISTORY_LEN`; ``session_at``: last impression).
  Serving reads it in the same SELECT that reads the user and their assignment,
  and the statement that logs a slate's impressions extends it, so the hot path
  pays no extra round trip. The click statement prepends the clicked item.
* A session ends after ``SESSION_IDLE_S`` (default 30 min) without an impression:
  the next slate starts from an empty history.
* Each impression of such an arm stores the state it was ranked with
  (``Impression.hist_clicked``, ``hist_impressed``), so training learns on
  exactly the state serving saw, not on a reconstruction.
* The per-process user cache keeps a copy that this process's own writes refresh
  from what Postgres returns. A click posted to *another* process reaches this
  one's copy when the entry expires (``USER_CACHE_TTL_S``, 5 s).

Only arms whose ``uses_session`` is true pay for any of this; for the others
the columns stay untouched and the impressions' history is null.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from django.conf import settings

from experiments import features
from experiments.models import Item
from models.types import PAD

HISTORY_LEN = 10


class Session(NamedTuple):
    clicked: tuple[int, ...] = ()  # Item ids, most recent first
    impressed: tuple[int, ...] = ()


EMPTY = Session()


def idle_s() -> float:
    return float(settings.RECSITE.get("SESSION_IDLE_S", 1800.0))


def session_of(clicked: Sequence[int] | None, impressed: Sequence[int] | None, live: bool | None) -> Session:
    """The session read from a user row (``live`` false or null: it has expired)."""
    if not live:
        return EMPTY
    return Session(tuple(clicked or ())[:HISTORY_LEN], tuple(impressed or ())[:HISTORY_LEN])


# Columns for the user lookup's SELECT (the parameter is idle_s()).
SELECT_COLUMNS = "u.session_clicked, u.session_impressed, u.session_at > now() - make_interval(secs => %s)"

# A CTE for the impressions statement: the slate's items go first, an expired session starts over.
# Parameters: items (slot order), user_id, track_session, session_idle, history_len.
_LIVE = "session_at > now() - make_interval(secs => %(session_idle)s)"
IMPRESSIONS_CTE = f"""
, sess AS (
    UPDATE experiments_shopuser SET
        session_impressed = (%(items)s::bigint[] || CASE WHEN {_LIVE} THEN session_impressed ELSE '{{}}' END)
                            [1:%(history_len)s],
        session_clicked = CASE WHEN {_LIVE} THEN session_clicked ELSE '{{}}' END,
        session_at = now()
    WHERE id = %(user_id)s AND %(track_session)s
    RETURNING session_clicked, session_impressed
)"""

# A CTE for the click statement (after its imp and ins CTEs): a click on a tracked impression of a live session.
CLICK_CTE = f"""
, sess AS (
    UPDATE experiments_shopuser u SET session_clicked = (ARRAY[imp.item_id] || u.session_clicked)[1:%(history_len)s]
    FROM imp, ins
    WHERE u.id = imp.user_id AND imp.tracked AND ins.impression_id IS NOT NULL AND u.{_LIVE}
    RETURNING u.external_id, u.session_clicked, u.session_impressed
)"""


def impression_params(*, tracked: bool, session: Session) -> dict[str, Any]:
    """The impressions statement's session parameters: history stored with each row, and the update's switches."""
    return {
        "track_session": tracked,
        "session_idle": idle_s(),
        "history_len": HISTORY_LEN,
        "hist_clicked": list(session.clicked) if tracked else None,
        "hist_impressed": list(session.impressed) if tracked else None,
    }


def history_keys(item_ids: Sequence[int], pks: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Item ids → the arms' item keys ``[HISTORY_LEN]``, PAD-padded; ids no longer in (pks, keys) are dropped."""
    out = np.full(HISTORY_LEN, PAD, np.int64)
    if not item_ids or pks.shape[0] == 0:
        return out
    order = np.argsort(pks, kind="stable")
    ids = np.asarray(item_ids, np.int64)
    at = np.minimum(np.searchsorted(pks[order], ids), pks.shape[0] - 1)
    found = pks[order][at] == ids
    got = keys[order][at][found][:HISTORY_LEN]
    out[: got.shape[0]] = got
    return out


def history_matrix(rows: Sequence[tuple[Sequence[int] | None, Sequence[int] | None]], item_keys: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Training: per-row (hist_clicked, hist_impressed) Item ids → two ``[m, HISTORY_LEN]`` key matrices."""
    m = len(rows)
    clicked = np.full((m, HISTORY_LEN), PAD, np.int64)
    impressed = np.full((m, HISTORY_LEN), PAD, np.int64)
    for r, (c, i) in enumerate(rows):
        for out, ids in ((clicked, c), (impressed, i)):
            got = [item_keys[x] for x in (ids or ())[:HISTORY_LEN] if x in item_keys]
            out[r, : len(got)] = got
    return clicked, impressed


def item_keys_of(item_ids: set[int]) -> dict[int, int]:
    """Item id → the arms' key (features.external_key of its external id), in one query."""
    if not item_ids:
        return {}
    rows = Item.objects.filter(id__in=item_ids).values_list("id", "external_id")
    return {pk: int(features.external_key(ext)) for pk, ext in rows}
