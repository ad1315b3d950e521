"""The simulated shoppers' business truth: purchases fall with price, revenue and CTR pick different slates."""

from __future__ import annotations

import numpy as np

from experiments.simulation.world import (
    PURCHASE_GIVEN_CART,
    ShopperWorld,
    cart_probability,
    purchase_probability,
)


def test_purchase_probability_given_a_click_falls_with_price():
    prices = np.array([1.0, 5.0, 20.0, 80.0, 500.0])
    p = purchase_probability(prices)
    assert np.all(np.diff(p) < 0)
    assert np.all((p > 0) & (p <= PURCHASE_GIVEN_CART))
    np.testing.assert_allclose(p, cart_probability(prices) * PURCHASE_GIVEN_CART)


def test_yet_the_expected_revenue_of_a_click_rises_with_price():
    prices = np.array([5.0, 20.0, 80.0, 500.0])
    assert np.all(np.diff(prices * purchase_probability(prices)) > 0)


def test_prices_are_seeded_and_cheaper_for_the_items_that_draw_clicks():
    one, two = ShopperWorld(seed=0, n_users=10, n_items=200), ShopperWorld(seed=0, n_users=10, n_items=200)
    prices = np.array([one.price(i) for i in one.item_ids])
    bias = np.array([one.item(i)[1] for i in one.item_ids])

    assert [two.price(i) for i in two.item_ids] == prices.tolist()
    assert one.price("foreign-sku") == two.price("foreign-sku") > 0
    assert np.corrcoef(np.log(prices), bias)[0, 1] < -0.5
    assert [one.item_row(i)["price"] for i in one.item_ids[:3]] == prices[:3].tolist()


def test_the_ctr_optimal_slate_loses_revenue_and_the_revenue_optimal_slate_loses_ctr():
    world = ShopperWorld(seed=0, n_users=300, n_items=200)
    k, positions = 10, np.arange(1, 11)
    prices = np.array([world.price(i) for i in world.item_ids])
    clicks = {"ctr": 0.0, "revenue": 0.0}
    revenue = {"ctr": 0.0, "revenue": 0.0}
    for user in world.user_ids:
        relevance = world.relevance(user, world.item_ids, 0)
        value = relevance * purchase_probability(prices) * prices
        for name, order in (("ctr", np.argsort(-relevance)), ("revenue", np.argsort(-value))):
            shown = [world.item_ids[j] for j in order[:k]]
            clicks[name] += float(world.click_probability(user, shown, positions, 0).sum())
            revenue[name] += float(world.expected_revenue(user, shown, positions, 0).sum())

    assert revenue["ctr"] / revenue["revenue"] < 0.75  # about 0.69: 31% of the revenue lost
    assert clicks["revenue"] / clicks["ctr"] < 0.95  # about 0.91


class FakeSession:
    """Answers like the API: a slate of ten of the world's items, 201 for every click and event."""

    def __init__(self, world: ShopperWorld) -> None:
        self.world = world
        self.posts: list[tuple[str, dict]] = []

    def post(self, url: str, json: dict, headers: dict, timeout: float):
        from types import SimpleNamespace

        self.posts.append((url.split("/api/v1/")[1], json))
        if url.endswith("/recommendations"):
            items = [{"item_id": i, "position": p, "impression_id": f"imp-{len(self.posts)}-{p}"}
                     for p, i in enumerate(self.world.item_ids[:10], start=1)]
            body = {"request_id": f"r{len(self.posts)}", "arm": "a", "model_version": 0, "items": items}
            return SimpleNamespace(status_code=200, json=lambda: body, text="")
        return SimpleNamespace(status_code=201, text="")


def shop(seed: int, rounds: int = 300) -> tuple[list[tuple[str, dict]], dict]:
    from experiments.simulation.runner import Simulation, SimulationConfig

    simulation = Simulation(SimulationConfig(base_url="http://x", users=20, rate=0, duration=0, seed=seed, items=30))
    session = FakeSession(simulation.world)
    rng = np.random.default_rng([seed, 1000])
    for _ in range(rounds):
        simulation._shop_once(session, rng)
    return session.posts, simulation.snapshot().arms["a"].as_dict()


def test_simulated_shoppers_post_seeded_carts_and_purchases_at_the_item_price():
    posts, tally = shop(seed=7)
    again, _ = shop(seed=7)
    purchases = [body for path, body in posts if path == "events" and body["type"] == "purchase"]
    carts = [body for path, body in posts if path == "events" and body["type"] == "add_to_cart"]
    world = ShopperWorld(seed=7, n_users=20, n_items=30)

    assert posts == again  # the same seed, the same shoppers, the same events
    assert 0 < len(purchases) < len(carts) < tally["clicks"]
    assert all(body["value"] == world.price(body["item_id"]) for body in purchases)
    assert all(body["impression_id"] and body["event_id"].endswith("-buy") for body in purchases)
    assert (tally["purchases"], tally["revenue"]) == (len(purchases), round(sum(b["value"] for b in purchases), 2))
