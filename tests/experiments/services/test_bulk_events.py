"""COPY-based import of business events: attributed like the API, counted in the outcome rollup, idempotent."""

from datetime import timedelta
from decimal import Decimal

import pytest

from experiments.models import ArmUserOutcome, BusinessEvent, EventAttribution, Item
from experiments.services.bulk import EventImportError, events_import_text
from experiments.services.bulk_events import business_events_import
from tests.experiments.services.test_bulk import SERVED, rows
from tests.support.serving import catalogue_make, experiment_make

pytestmark = pytest.mark.django_db

HEADER = "user_id,type,ts,item_id,value,event_id,request_id,position\n"
SOON = (SERVED + timedelta(minutes=5)).isoformat()
LATER = (SERVED + timedelta(days=1)).isoformat()


def import_text(text: str):
    import io

    return business_events_import(stream=io.BytesIO(text.encode()))


@pytest.fixture
def served():
    """Ten requests of three impressions each on arm ``a`` at SERVED (users user-0 … user-3)."""
    catalogue_make(n=5)
    experiment_make()
    events_import_text(text=rows(10))


def events_file() -> str:
    return HEADER + "".join([
        # Through an impression (request 1 is user-0's), inside the window and a day late.
        f"user-0,purchase,{SOON},item-00001,19.99,o-1,00000000-0000-0000-0000-000000000001,1\n",
        f"user-0,purchase,{LATER},item-00001,5.00,o-2,00000000-0000-0000-0000-000000000001,1\n",
        # Without: the user's latest serve covering ts.
        f"user-1,add_to_cart,{SOON},item-00002,,c-1,,\n",
        f"user-1,purchase,{SOON},new-sku,7.5,o-3,,\n",
        # No serve covers it: stored, attributed to nothing.
        f"user-2,view,{LATER},,,,,\n",
    ])


def test_a_file_round_trips_into_events_attributions_and_the_rollup(served):
    result = import_text(events_file())

    assert (result.events, result.skipped, result.attributions, result.late) == (5, 0, 4, 1)
    assert BusinessEvent.objects.count() == 5
    assert EventAttribution.objects.filter(late=True).get().event.event_id == "o-2"
    rollup = {(o.user.external_id, o.arm.name, o.carts, o.purchases, o.revenue)
              for o in ArmUserOutcome.objects.select_related("user", "arm")}
    assert rollup == {("user-0", "a", 0, 1, Decimal("19.99")), ("user-1", "a", 1, 1, Decimal("7.50"))}
    assert Item.objects.get(external_id="new-sku").active is False


def test_a_second_import_of_the_same_file_skips_every_event_id_and_changes_nothing(served):
    import_text(events_file())
    again = import_text(events_file())

    # The row without event_id cannot be recognised: it is inserted again (and attributed to nothing).
    assert (again.events, again.skipped) == (1, 4)
    assert sorted(ArmUserOutcome.objects.values_list("purchases", "revenue")) == [
        (1, Decimal("7.50")), (1, Decimal("19.99"))]


def test_an_event_id_repeated_inside_a_file_keeps_its_first_row(served):
    result = import_text(HEADER + f"user-1,purchase,{SOON},,1,o-1,,\n" + f"user-1,purchase,{SOON},,2,o-1,,\n")
    assert (result.events, result.skipped, BusinessEvent.objects.get().value) == (1, 1, Decimal("1.00"))


@pytest.mark.parametrize("line, message", [
    (f"user-1,refund,{SOON},,,,,\n", "unknown type"),
    (f"user-1,purchase,{SOON},,-1,,,\n", "negative value"),
    (f"user-1,purchase,{SOON},,1.999,,,\n", "two decimals"),
    ("user-1,purchase,2999-01-01T00:00:00Z,,1,,,\n", "in the future"),
    (f"user-1,purchase,{SOON},,1,,00000000-0000-0000-0000-000000000001,\n", "request_id without position"),
    (f"user-1,purchase,{SOON},,1,,00000000-0000-0000-0000-000000000001,1\n", "no impression of their user"),
    ("user-1,purchase,,,1,,,\n", "empty required field"),
    ("user-1,purchase,not-a-time,,1,,,\n", "file line 3"),
])
def test_one_bad_row_fails_the_whole_file(served, line, message):
    good = f"user-1,purchase,{SOON},,1,ok-1,,\n"
    with pytest.raises(EventImportError, match=message):
        import_text(HEADER + good + line)
    assert not BusinessEvent.objects.exists()
    assert not ArmUserOutcome.objects.exists()


def test_a_bad_header_is_refused(served):
    with pytest.raises(EventImportError, match="missing \\['ts'\\]"):
        import_text("user_id,type\nuser-1,view\n")
