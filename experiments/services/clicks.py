"""Record a click: once per impression, counted in the rollup, credited to its team in an interleaved slate.

One statement (atomic on its own, synchronous commit); the statement text is a constant and every value
a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from experiments.services import sessions
from experiments.services.impression_ids import impression_id_decode
from experiments.services.shoppers import _user_session_refresh

_CLICK_SQL = """
WITH imp AS (
    SELECT id, arm_id, user_id, epoch, served_at, item_id, position, hist_clicked, hist_impressed,
           hist_impressed IS NOT NULL AS tracked, experiment_id, request_id
    FROM experiments_impression WHERE id = %(impression_id)s
), ins AS (
    -- The click carries its impression's training columns (models.Click): the trainer reads it without a join.
    INSERT INTO experiments_click (impression_id, clicked_at, late, arm_id, served_at, user_id, item_id, position,
                                   hist_clicked, hist_impressed)
    SELECT id, now(), now() - served_at > make_interval(secs => %(window)s), arm_id, served_at, user_id, item_id,
           position, hist_clicked, hist_impressed FROM imp
    ON CONFLICT (impression_id) DO NOTHING
    RETURNING impression_id, late, clicked_at
), counted AS (
    UPDATE experiments_armuserstat s SET clicks = s.clicks + 1
    FROM imp, ins
    WHERE NOT ins.late AND s.arm_id = imp.arm_id AND s.user_id = imp.user_id AND s.epoch = imp.epoch
    RETURNING s.id
), credited AS (
    -- An interleaved slate: the click credits the team (arm) that contributed the item.
    INSERT INTO experiments_interleavecredit (experiment_id, request_id, arm_id, clicks, first_clicked_at)
    SELECT imp.experiment_id, imp.request_id, imp.arm_id, 1, ins.clicked_at
    FROM imp JOIN ins ON NOT ins.late JOIN experiments_experiment e ON e.id = imp.experiment_id
    WHERE e.mode = 'interleaved'
    ON CONFLICT (request_id, arm_id) DO UPDATE SET clicks = experiments_interleavecredit.clicks + 1
    RETURNING 1
)""" + sessions.CLICK_CTE + """
SELECT (SELECT count(*) FROM imp), ins.late, ins.clicked_at, (SELECT count(*) FROM counted),
       sess.external_id, sess.session_clicked, sess.session_impressed
FROM (SELECT 1) AS one LEFT JOIN ins ON true LEFT JOIN sess ON true
"""


@dataclass(frozen=True)
class ClickResult:
    impression_id: str
    created: bool
    late: bool
    clicked_at: Any

    @property
    def counted(self) -> bool:
        return not self.late

    def as_dict(self) -> dict[str, Any]:
        return {
            "impression_id": self.impression_id,
            "created": self.created,
            "counted": self.counted,
            "late": self.late,
            "clicked_at": self.clicked_at.isoformat(),
        }


class UnknownImpression(Exception):
    pass


def click_record(*, impression_id: str) -> ClickResult:
    """Store the click of an impression once; a click past the attribution window is kept as late, not counted.

    ``impression_id`` is the opaque id a recommendation returned; a malformed, forged or unknown one raises
    :class:`UnknownImpression`, all alike.
    """
    pk = impression_id_decode(impression_id)
    if pk is None:
        raise UnknownImpression(impression_id)
    window = float(settings.RECSITE["ATTRIBUTION_WINDOW_S"])
    # One statement: atomic on its own (autocommit), with a synchronous commit.
    with connection.cursor() as cursor:
        cursor.execute(_CLICK_SQL, {"impression_id": pk, "window": window, "history_len": sessions.HISTORY_LEN,
                                    "session_idle": sessions.idle_s()})
        found, late, clicked_at, _counted, session_user, s_clicked, s_impressed = cursor.fetchone()
        if not found:
            raise UnknownImpression(impression_id)
        if session_user is not None:
            _user_session_refresh(session_user, sessions.Session(tuple(s_clicked), tuple(s_impressed)))
        if late is not None:
            return ClickResult(impression_id, True, bool(late), clicked_at)
        cursor.execute("SELECT late, clicked_at FROM experiments_click WHERE impression_id = %s", [pk])
        late, clicked_at = cursor.fetchone()
    return ClickResult(impression_id, False, bool(late), clicked_at)
