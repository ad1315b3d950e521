"""Simulated shoppers calling the public HTTP API like any client.

Workers (threads, one keep-alive session each) share a rate limiter; each
iteration picks a shopper, asks for recommendations, draws clicks from the
hidden model (:mod:`experiments.simulation.world`) and posts them; each click
may become an add-to-cart and then a purchase at the item's price (the world's
price-aware truth), posted to ``POST /api/v1/events`` with the impression and a
deterministic ``event_id``. Per arm it tallies impressions, clicks, carts,
purchases, revenue, the expected clicks and revenue of what was shown and the
oracle's expected clicks, from which CTR, oracle CTR and regret follow. Every
draw comes from a generator seeded by ``(seed, worker)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from experiments.simulation.world import PURCHASE_GIVEN_CART, CatalogueView, ShopperWorld, cart_probability

log = logging.getLogger(__name__)

SYNC_CHUNK = 10_000


class SimulationError(Exception):
    pass


@dataclass
class ArmTally:
    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    expected_clicks: float = 0.0
    oracle_clicks: float = 0.0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    expected_revenue: float = 0.0
    first_version: int | None = None
    last_version: int = 0
    max_version: int = 0

    def as_dict(self) -> dict[str, Any]:
        n = max(self.impressions, 1)
        return {
            "requests": self.requests,
            "impressions": self.impressions,
            "clicks": self.clicks,
            "ctr": self.clicks / n,
            "expected_ctr": self.expected_clicks / n,
            "oracle_ctr": self.oracle_clicks / n,
            "regret": self.oracle_clicks - self.expected_clicks,
            "regret_per_1k_impressions": 1000 * (self.oracle_clicks - self.expected_clicks) / n,
            "carts": self.carts,
            "purchases": self.purchases,
            "revenue": round(self.revenue, 2),
            "revenue_per_1k_impressions": 1000 * self.revenue / n,
            "expected_revenue_per_1k_impressions": 1000 * self.expected_revenue / n,
            "model_version_first": self.first_version,
            "model_version_max": self.max_version,
        }


@dataclass
class SimulationConfig:
    base_url: str
    users: int
    rate: float
    duration: float
    seed: int
    drift_at: float | None = None
    k: int = 10
    items: int = 200
    concurrency: int = 16
    experiment: str | None = None
    api_key: str = ""
    prefix: str = "sim-"
    timeout_s: float = 30.0
    world: str = "latent"
    affinity: float | None = None  # ShopperWorld.affinity


@dataclass
class SimulationReport:
    elapsed_s: float
    requests: int
    clicks_posted: int
    errors: dict[str, int]
    arms: dict[str, ArmTally] = field(default_factory=dict)
    events_posted: int = 0
    # The first answer of each kind of error (status code, or "connection"), so a count comes with its cause.
    error_examples: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed_s": self.elapsed_s,
            "requests": self.requests,
            "requests_per_s": self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0,
            "clicks_posted": self.clicks_posted,
            "events_posted": self.events_posted,
            "http_calls_per_s": ((self.requests + self.clicks_posted + self.events_posted) / self.elapsed_s
                                 if self.elapsed_s > 0 else 0.0),
            "errors": dict(self.errors),
            "error_examples": dict(self.error_examples),
            "arms": {name: tally.as_dict() for name, tally in sorted(self.arms.items())},
        }

    def table(self) -> str:
        lines = [f"{'arm':<16}{'impr':>9}{'clicks':>8}{'CTR':>8}{'oracle':>8}{'regret':>10}{'buys':>7}"
                 f"{'revenue':>11}{'versions':>12}"]
        for name, t in sorted(self.arms.items()):
            d = t.as_dict()
            lines.append(
                f"{name:<16}{d['impressions']:>9}{d['clicks']:>8}{d['ctr']:>8.4f}{d['oracle_ctr']:>8.4f}"
                f"{d['regret']:>10.1f}{t.purchases:>7}{t.revenue:>11.2f}{f'{t.first_version}→{t.max_version}':>12}"
            )
        rps = self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0
        calls = (self.requests + self.clicks_posted + self.events_posted) / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines.append(f"{self.requests} recommendation requests in {self.elapsed_s:.1f}s ({rps:.1f}/s), "
                     f"{self.clicks_posted} clicks and {self.events_posted} business events posted "
                     f"({calls:.1f} HTTP calls/s), "
                     f"errors: {dict(self.errors) or 'none'}")
        lines.extend(f"first {what} error: {detail}" for what, detail in sorted(self.error_examples.items()))
        return "\n".join(lines)


class RateLimiter:
    """Spaces calls 1/rate apart across threads; rate <= 0 means unlimited."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        if self.interval == 0:
            return not stop.is_set()
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            return not stop.wait(delay)
        return not stop.is_set()


class Simulation:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.world = ShopperWorld(seed=config.seed, n_users=config.users, n_items=config.items, prefix=config.prefix,
                                  drift_at=config.drift_at, world=config.world,
                                  affinity=config.affinity)
        self.catalogue = CatalogueView(self.world)
        self.user_ids = self.world.user_ids
        self.item_ids = self.world.item_ids
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._tallies: dict[str, ArmTally] = {}
        self._errors: dict[str, int] = {}
        self._error_examples: dict[str, str] = {}
        self._requests = 0
        self._clicks_posted = 0
        self._events_posted = 0
        self._successes = 0
        self._last_error = ""
        self._started = 0.0

    # --------------------------------------------------------------------- http
    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.config.api_key} if self.config.api_key else {}

    def _post(self, session: requests.Session, path: str, body: dict) -> requests.Response:
        return session.post(self.config.base_url.rstrip("/") + path, json=body, headers=self._headers(),
                            timeout=self.config.timeout_s)

    def sync(self) -> None:
        """Upserts the simulator's shoppers and catalogue through the public bulk endpoints."""
        with requests.Session() as session:
            for path, key, rows in (
                ("/api/v1/users", "users", [self.world.user_row(u) for u in self.user_ids]),
                ("/api/v1/items", "items", [self.world.item_row(i) for i in self.item_ids]),
            ):
                for start in range(0, len(rows), SYNC_CHUNK):
                    response = self._post(session, path, {key: rows[start:start + SYNC_CHUNK]})
                    if response.status_code != 200:
                        raise SimulationError(f"{path} answered {response.status_code}: {response.text[:300]}")
        self.catalogue.add(self.item_ids)

    # --------------------------------------------------------------------- loop
    def _error(self, what: str, detail: str) -> None:
        with self._lock:
            self._errors[what] = self._errors.get(what, 0) + 1
            self._error_examples.setdefault(what, detail)
            self._last_error = detail

    def _shop_once(self, session: requests.Session, rng: np.random.Generator) -> None:
        cfg = self.config
        user_id = self.user_ids[int(rng.integers(len(self.user_ids)))]
        body: dict[str, Any] = {"user_id": user_id, "k": cfg.k, "context": {"source": "simulate"}}
        if cfg.experiment:
            body["experiment"] = cfg.experiment
        try:
            response = self._post(session, "/api/v1/recommendations", body)
        except requests.RequestException as exc:
            self._error("connection", str(exc))
            return
        if response.status_code != 200:
            self._error(str(response.status_code), response.text[:300])
            return
        data = response.json()
        items = data["items"]
        if not items:
            return
        item_ids = [i["item_id"] for i in items]
        positions = np.array([i["position"] for i in items])
        phase = self.world.phase(time.monotonic() - self._started)
        with self._lock:
            self.catalogue.add(item_ids)
            probs = self.world.click_probability(user_id, item_ids, positions, phase)
            oracle = self.world.oracle_expected_clicks(user_id, self.catalogue, len(items), phase)
            expected_revenue = float(self.world.expected_revenue(user_id, item_ids, positions, phase).sum())
        clicked = [item for item, p in zip(items, probs, strict=True) if rng.random() < p]
        posted = events = carts = purchases = 0
        revenue = 0.0
        for item in clicked:
            if not self._send(session, "/api/v1/clicks", {"impression_id": item["impression_id"]}, "click"):
                continue
            posted += 1
            price = self.world.price(item["item_id"])
            if rng.random() >= float(cart_probability(price)):
                continue
            base = {"user_id": user_id, "item_id": item["item_id"], "impression_id": item["impression_id"]}
            carts += 1
            key = f"{data['request_id']}-{item['position']}"  # deterministic: a retried post is counted once
            events += self._send(session, "/api/v1/events", {**base, "type": "add_to_cart", "event_id": f"{key}-cart"},
                                 "event")
            if rng.random() >= PURCHASE_GIVEN_CART:
                continue
            purchases += 1
            revenue += price
            events += self._send(session, "/api/v1/events",
                                 {**base, "type": "purchase", "value": price, "event_id": f"{key}-buy"}, "event")
        with self._lock:
            tally = self._tallies.setdefault(data["arm"], ArmTally())
            tally.requests += 1
            tally.impressions += len(items)
            tally.clicks += len(clicked)
            tally.expected_clicks += float(probs.sum())
            tally.oracle_clicks += oracle
            tally.carts += carts
            tally.purchases += purchases
            tally.revenue += revenue
            tally.expected_revenue += expected_revenue
            version = int(data["model_version"])
            if tally.first_version is None:
                tally.first_version = version
            tally.last_version = version
            tally.max_version = max(tally.max_version, version)
            self._requests += 1
            self._successes += 1
            self._clicks_posted += posted
            self._events_posted += events

    def _send(self, session: requests.Session, path: str, body: dict, what: str) -> bool:
        """POSTs one click or event; a failure is tallied, never raised (the shopper carries on)."""
        try:
            response = self._post(session, path, body)
        except requests.RequestException as exc:
            self._error("connection", str(exc))
            return False
        if response.status_code in (200, 201):
            return True
        self._error(f"{what} {response.status_code}", response.text[:300])
        return False

    def _worker(self, index: int, limiter: RateLimiter) -> None:
        rng = np.random.default_rng([self.config.seed, 1000 + index])
        with requests.Session() as session:
            session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1))
            while limiter.wait(self.stop):
                if self._deadline_passed():
                    self.stop.set()
                    break
                try:
                    self._shop_once(session, rng)
                except Exception as exc:  # a worker must not die silently mid-run
                    log.exception("simulate_worker_error")
                    self._error(type(exc).__name__, str(exc))
                with self._lock:
                    failing = self._successes == 0 and sum(self._errors.values()) >= 20
                if failing:
                    self.stop.set()

    def _deadline_passed(self) -> bool:
        return self.config.duration > 0 and time.monotonic() - self._started >= self.config.duration

    def run(self, *, on_tick: Callable[[SimulationReport], None] | None = None, tick_s: float = 0.5) -> SimulationReport:
        self._started = time.monotonic()
        limiter = RateLimiter(self.config.rate)
        threads = [threading.Thread(target=self._worker, args=(i, limiter), name=f"shopper-{i}", daemon=True)
                   for i in range(self.config.concurrency)]
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                if self.stop.wait(tick_s) and not any(t.is_alive() for t in threads):
                    break
                if on_tick is not None:
                    on_tick(self.snapshot())
        except KeyboardInterrupt:
            self.stop.set()
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(self.config.timeout_s + 1)
        report = self.snapshot()
        if report.requests == 0 and report.errors:
            raise SimulationError(f"no request succeeded; last error: {self._last_error}")
        return report

    def snapshot(self) -> SimulationReport:
        with self._lock:
            arms = {name: ArmTally(**vars(t)) for name, t in self._tallies.items()}
            return SimulationReport(time.monotonic() - self._started, self._requests, self._clicks_posted,
                                    dict(self._errors), arms, self._events_posted, dict(self._error_examples))
