"""A read's rows as columns: transposed once, cut into mini-batches and joined again without losing a row."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from experiments.services.training_data import IMPRESSION_COLUMNS, Rows, StepRows

NAMES = ("id", *IMPRESSION_COLUMNS)
CLICK_NAMES = ("id", "clicked_at", "impression_id", *IMPRESSION_COLUMNS)
T0 = dt.datetime(2026, 12, 8, tzinfo=dt.UTC)


def _imps(ids: list[int]) -> Rows:
    return Rows.fetched(NAMES, [(i, 100 + i, 200 + i % 3, 1 + i % 5, [7] if i % 2 else None, None) for i in ids])


def _clicks(ids: list[int]) -> Rows:
    return Rows.fetched(CLICK_NAMES, [(i, T0 + dt.timedelta(seconds=i), 10 * i, 100 + i, 200, 1, None, [8, 9])
                                      for i in ids])


def test_columns_hold_the_rows_fields_numbers_as_int64_the_rest_as_lists():
    rows = _imps([3, 4])
    assert len(rows) == 2 and rows.names == NAMES and rows.last_id == 4
    np.testing.assert_array_equal(rows["item_id"], [200, 201])
    assert rows["item_id"].dtype == np.int64 and rows["position"].dtype == np.int64
    assert rows["hist_clicked"] == [[7], None] and rows.get("weight") is None
    assert rows.records()[0] == {"id": 3, "user_id": 103, "item_id": 200, "position": 4, "hist_clicked": [7],
                                 "hist_impressed": None}


def test_a_weight_column_is_float_and_an_empty_read_keeps_its_columns():
    weighted = Rows.fetched(("id", "weight"), [(1, 0.5), (2, 2.0)])
    assert weighted["weight"].dtype == np.float64 and weighted["weight"].tolist() == [0.5, 2.0]
    empty = Rows.fetched(NAMES, [])
    assert len(empty) == 0 and empty.names == NAMES and empty["id"].dtype == np.int64 and empty.records() == []
    assert len(empty.followed_by(_imps([1]))) == 1


def test_rows_whose_width_differs_from_the_names_are_refused():
    with pytest.raises(ValueError, match="3 fields, not the 2"):
        Rows.fetched(("id", "user_id"), [(1, 2, 3)])
    with pytest.raises(ValueError, match="different columns"):
        _imps([1]).followed_by(_clicks([1]))


def test_chunks_cut_both_parts_with_their_cursors_and_merging_them_gives_the_read_back():
    read = StepRows(_imps(list(range(1, 8))), _clicks([11, 12, 13]), cursor=50, click_cursor=60)
    chunks = read.chunks(3)
    assert [(len(c.impressions), len(c.clicks)) for c in chunks] == [(3, 3), (3, 0), (1, 0)]
    # Each chunk's cursors mark its last row as read; the last chunk ends at the read's own cursors.
    assert [(c.cursor, c.click_cursor) for c in chunks] == [(3, 60), (6, 60), (50, 60)]
    whole = chunks[0].merged(chunks[1]).merged(chunks[2])
    assert (whole.cursor, whole.click_cursor, whole.n) == (50, 60, 10)
    assert whole.impressions.records() == read.impressions.records()
    assert whole.clicks.records() == read.clicks.records()
    assert whole.clicks["clicked_at"][0] == T0 + dt.timedelta(seconds=11)


def test_a_slice_past_the_end_is_short_not_an_error():
    rows = _imps([1, 2, 3])
    assert len(rows.sliced(2, 10)) == 1 and rows.sliced(2, 10).last_id == 3
    assert len(rows.sliced(5, 10)) == 0
