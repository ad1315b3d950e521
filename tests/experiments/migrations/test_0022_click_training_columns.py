"""Migration 0022 on a log that exists: each click gets its impression's columns, an orphan click goes, and the
migration reverses."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.support.training_world import traffic_log, world_make

BEFORE = ("experiments", "0021_guardrail_bounds")
AFTER = ("experiments", "0022_click_training_columns")
COPIED = ("arm_id", "served_at", "user_id", "item_id", "position", "hist_clicked", "hist_impressed")


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def _click_columns() -> set[str]:
    with connection.cursor() as cur:
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'experiments_click'")
        return {row[0] for row in cur.fetchall()}


@pytest.mark.django_db(transaction=True)
def test_existing_clicks_are_filled_from_their_impressions_and_orphans_removed():
    world = world_make(seed=22)
    imps, clicks = traffic_log(world, requests=20, k=5, seed=3)
    assert clicks
    with connection.cursor() as cur:  # one impression ranked with a session, so the arrays are copied too
        cur.execute("UPDATE experiments_impression SET hist_clicked = '{7}', hist_impressed = '{7,8}' WHERE id IN "
                    "(SELECT impression_id FROM experiments_click ORDER BY id LIMIT 3)")
    _migrate(BEFORE)
    try:
        assert not set(COPIED) & _click_columns()
        with connection.cursor() as cur:  # a click whose impression is gone (its partition dropped)
            cur.execute("INSERT INTO experiments_click (impression_id, clicked_at, late) VALUES (%s, now(), false)",
                        [max(imps) + 1_000_000])
    finally:
        _migrate(AFTER)
    assert set(COPIED) <= _click_columns()
    cols = ", ".join(f"c.{c} IS NOT DISTINCT FROM i.{c}" for c in COPIED)
    with connection.cursor() as cur:
        cur.execute(f"SELECT c.id, {cols} FROM experiments_click c JOIN experiments_impression i ON i.id = c.impression_id")
        rows = cur.fetchall()
        cur.execute("SELECT count(*) FROM experiments_click")
        (total,) = cur.fetchone()
    assert sorted(r[0] for r in rows) == sorted(clicks) and total == len(clicks)  # the orphan is gone
    assert all(all(r[1:]) for r in rows)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM experiments_click WHERE hist_impressed = '{7,8}'")
        assert cur.fetchone()[0] == 3
