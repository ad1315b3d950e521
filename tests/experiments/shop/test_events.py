"""The shop's "Add to cart" and "Buy" buttons: business events recorded by the shop for its visitor."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from experiments.models import ArmUserOutcome, BusinessEvent, Impression
from experiments.services.impression_ids import impression_id_decode
from tests.support.serving import catalogue_make, experiment_make


@pytest.fixture
def page(db, serving_inline):
    """A CSRF-enforcing browser that has opened the shop as alice: (client, page html)."""
    catalogue_make(n=30)
    experiment_make()
    client = Client(enforce_csrf_checks=True)
    return client, client.get("/shop/?user=alice").content.decode()


def tile(html: str, n: int = 0) -> dict[str, str]:
    actions = re.findall(r'<div class="actions" data-impression-id="([^"]+)" data-item-id="([^"]+)">', html)
    impression_id, item_id = actions[n]
    return {"impression_id": impression_id, "item_id": item_id}


def press(client, html: str, body: dict, *, token: bool = True):
    headers = {"X-CSRFToken": re.search(r'data-csrf-token="([^"]+)"', html).group(1)} if token else {}
    return client.post("/shop/event", body, content_type="application/json", headers=headers)


def test_every_tile_has_the_two_buttons_for_its_impression(page):
    _, html = page
    assert html.count('data-event-type="add_to_cart"') == html.count('data-event-type="purchase"') == 12
    assert impression_id_decode(tile(html, 3)["impression_id"]) in set(Impression.objects.values_list("id", flat=True))


def test_buy_records_a_purchase_at_the_catalogue_price_for_the_visitors_arm(page):
    client, html = page
    shown = tile(html)
    response = press(client, html, {"type": "purchase", **shown, "event_id": "press-1", "value": 0.01})

    assert response.status_code == 201
    event = BusinessEvent.objects.select_related("item", "user").get()
    assert (event.user.external_id, event.type, event.value) == ("alice", "purchase", event.item.price)
    served_arm = Impression.objects.get(pk=impression_id_decode(shown["impression_id"])).arm
    assert (ArmUserOutcome.objects.get().arm, ArmUserOutcome.objects.get().revenue) == (served_arm, event.item.price)
    assert event.item.price != Decimal("0.01")  # the page cannot set the price


def test_add_to_cart_is_counted_once_per_press(page):
    client, html = page
    body = {"type": "add_to_cart", **tile(html), "event_id": "press-2"}
    assert [press(client, html, body).status_code for _ in range(2)] == [201, 200]
    assert ArmUserOutcome.objects.get().carts == 1


def test_a_press_without_the_csrf_token_is_refused(page):
    client, html = page
    assert press(client, html, {"type": "purchase", **tile(html)}, token=False).status_code == 403
    assert not BusinessEvent.objects.exists()


@pytest.mark.parametrize("patch, status, code", [
    ({"type": "view"}, 400, "unknown_type"),
    ({"item_id": "nope"}, 404, "item_not_found"),
    ({"impression_id": "forged"}, 404, "impression_not_found"),
])
def test_a_bad_press_is_a_json_error(page, patch, status, code):
    client, html = page
    response = press(client, html, {"type": "purchase", **tile(html), **patch})
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert not BusinessEvent.objects.exists()


def test_another_visitor_cannot_use_alices_impression(page):
    client, html = page
    client.cookies["recsite_shopper"] = "mallory"
    response = press(client, html, {"type": "purchase", **tile(html)})
    assert (response.status_code, response.json()["error"]["code"]) == (404, "impression_not_found")
