"""COPY-based event import: everything or nothing, with clicks, late clicks and the rollup."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from experiments.models import ArmUserStat, Click, Impression, Item, ShopUser
from experiments.services.bulk import EventImportError, events_import_text
from tests.support.serving import catalogue_make, experiment_make

pytestmark = pytest.mark.django_db

HEADER = "request_id,user_id,item_id,experiment,arm,position,score,propensity,served_at,clicked_at,model_version\n"
SERVED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def rows(n_requests: int, *, arm: str = "a", clicked=lambda r, p: p == 1, late_after=None) -> str:
    out = [HEADER]
    for r in range(n_requests):
        request = uuid.UUID(int=r + 1)
        for position in (1, 2, 3):
            click = ""
            if clicked(r, position):
                delay = timedelta(seconds=late_after if late_after is not None else 30)
                click = (SERVED + delay).isoformat()
            out.append(f"{request},user-{r % 4},item-{position:05d},exp,{arm},{position},0.5,0.25,"
                       f"{SERVED.isoformat()},{click},3\n")
    return "".join(out)


@pytest.fixture
def experiment():
    catalogue_make(n=5)
    return experiment_make()


def test_impressions_and_clicks_are_imported(experiment):
    result = events_import_text(text=rows(10))
    assert (result.impressions, result.clicks, result.late_clicks) == (30, 10, 0)
    assert (Impression.objects.count(), Click.objects.count()) == (30, 10)
    assert set(Impression.objects.values_list("model_version", flat=True)) == {3}
    # Each click carries its impression's arm and training columns (models.Click).
    copied = ("arm_id", "served_at", "user_id", "item_id", "position")
    for click in Click.objects.select_related("impression"):
        assert [getattr(click, f) for f in copied] == [getattr(click.impression, f) for f in copied]


def test_the_rollup_counts_imported_events(experiment):
    events_import_text(text=rows(8))
    stats = {(s.user.external_id, s.impressions, s.clicks) for s in ArmUserStat.objects.select_related("user")}
    assert stats == {(f"user-{u}", 6, 2) for u in range(4)}


def test_late_clicks_are_stored_but_not_counted(experiment, settings):
    result = events_import_text(text=rows(4, late_after=settings.RECSITE["ATTRIBUTION_WINDOW_S"] + 1))
    assert (result.late_clicks, Click.objects.filter(late=True).count()) == (4, 4)
    assert sum(ArmUserStat.objects.values_list("clicks", flat=True)) == 0


def test_unseen_users_and_items_are_created_inactive(experiment):
    text = HEADER + f"{uuid.uuid4()},new-user,new-item,exp,a,1,0.1,0.5,{SERVED.isoformat()},,0\n"
    result = events_import_text(text=text)
    assert (result.new_users, result.new_items) == (1, 1)
    assert ShopUser.objects.filter(external_id="new-user").exists()
    assert Item.objects.get(external_id="new-item").active is False


def test_an_unknown_arm_writes_nothing(experiment):
    with pytest.raises(EventImportError, match="unknown experiment/arm"):
        events_import_text(text=rows(3, arm="zzz"))
    assert not Impression.objects.exists()


def test_an_invalid_propensity_writes_nothing(experiment):
    text = rows(3).replace(",0.25,", ",0,", 1)
    with pytest.raises(EventImportError, match="propensity"):
        events_import_text(text=text)
    assert (Impression.objects.count(), ShopUser.objects.count()) == (0, 0)


def test_a_malformed_value_names_its_line(experiment):
    text = rows(2).replace(",0.5,", ",high,", 1)
    with pytest.raises(EventImportError, match="file line 2, column score"):
        events_import_text(text=text)


def test_a_bad_header_is_refused(experiment):
    with pytest.raises(EventImportError, match="missing"):
        events_import_text(text="request_id,user_id\n")


def test_importing_the_same_file_twice_fails_the_second_time_whole(experiment):
    events_import_text(text=rows(5))
    with pytest.raises(EventImportError):
        events_import_text(text=rows(5))
    assert Impression.objects.count() == 15


def test_per_row_trigger_checks_are_back_on_after_an_import(experiment):
    from django.db import connection

    events_import_text(text=rows(2))
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        assert cursor.fetchone()[0] == "origin"


def test_imported_rows_reference_existing_parents(experiment):
    from django.db import connection

    events_import_text(text=rows(6) + f"{uuid.uuid4()},fresh-user,fresh-item,exp,b,1,0.1,0.5,{SERVED.isoformat()},,0\n")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM experiments_impression i "
            "LEFT JOIN experiments_shopuser u ON u.id = i.user_id LEFT JOIN experiments_item t ON t.id = i.item_id "
            "LEFT JOIN experiments_arm a ON a.id = i.arm_id AND a.experiment_id = i.experiment_id "
            "WHERE u.id IS NULL OR t.id IS NULL OR a.id IS NULL"
        )
        assert cursor.fetchone()[0] == 0
