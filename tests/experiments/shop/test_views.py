"""The demo shop: the grid is a logged recommendation; the product page; a real browser click."""

import pytest

from experiments.models import Click, Impression, ShopUser
from experiments.services.impression_ids import impression_id_decode, impression_id_encode
from tests.support import live
from tests.support.serving import catalogue_make, experiment_make


@pytest.fixture
def shop(db, serving_inline):
    catalogue_make(n=30)
    return experiment_make()


def test_the_grid_shows_logged_recommendations_with_the_arm_badge(client, shop):
    response = client.get("/shop/?user=alice")
    impressions = list(Impression.objects.filter(user__external_id="alice").select_related("arm"))
    assert (response.status_code, len(impressions)) == (200, 12)
    assert response.content.decode().count(f">{impressions[0].arm.name} · #") == 12


def test_every_tile_carries_its_impression_id(client, shop):
    page = client.get("/shop/?user=alice").content.decode()
    ids = Impression.objects.filter(user__external_id="alice").values_list("id", flat=True)
    assert all(f'data-impression-id="{impression_id_encode(i)}"' in page for i in ids)


def test_the_visitor_is_remembered_by_cookie(client, shop):
    client.get("/shop/?user=bob")
    client.get("/shop/")
    assert Impression.objects.filter(user__external_id="bob").count() == 24


def test_a_new_visitor_gets_an_id(client, shop):
    response = client.get("/shop/")
    assert response.cookies["recsite_shopper"].value.startswith("visitor-")
    assert ShopUser.objects.filter(external_id=response.cookies["recsite_shopper"].value).exists()


def test_an_empty_catalogue_is_explained(client, db, serving_inline):
    experiment_make()
    response = client.get("/shop/?user=carol")
    assert (response.status_code, "no active items" in response.content.decode()) == (409, True)


def test_the_product_page(client, shop):
    response = client.get("/shop/item/?id=item-00004")
    assert (response.status_code, "Item 4" in response.content.decode()) == (200, True)


def test_an_unknown_product_is_a_404(client, shop):
    assert client.get("/shop/item/?id=nope").status_code == 404


@pytest.mark.e2e
def test_clicking_a_product_logs_the_click_through_the_api_then_opens_it(daphne_server):
    from playwright.sync_api import sync_playwright

    catalogue_make(n=30)
    experiment_make()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{daphne_server}/shop/?user=dora")
        tile = page.locator("a.product").nth(2)
        impression_id = impression_id_decode(tile.get_attribute("data-impression-id"))
        item_id = tile.get_attribute("data-item-id")
        live.ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(live.ARTIFACTS / "shop-grid.png"), full_page=True)
        tile.click()
        page.wait_for_url("**/shop/item/**")
        assert item_id in page.content()
        browser.close()
    assert Click.objects.filter(impression_id=impression_id, late=False).exists()
