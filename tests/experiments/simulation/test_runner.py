"""The simulator's report: an error count comes with the first answer of each kind, so its cause is visible."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from experiments.simulation.runner import Simulation, SimulationConfig


class RefusingSession:
    """Every third recommendation is refused with a 400 error object; clicks of the others get 201."""

    def __init__(self, world) -> None:
        self.world = world
        self.calls = 0

    def post(self, url: str, json: dict, headers: dict, timeout: float):
        if not url.endswith("/recommendations"):
            return SimpleNamespace(status_code=201 if url.endswith("/clicks") else 503, text="busy")
        self.calls += 1
        if self.calls % 3 == 0:
            body = f'{{"error": {{"code": "bad_request", "message": "refusal {self.calls}", "field": "k"}}}}'
            return SimpleNamespace(status_code=400, text=body)
        items = [{"item_id": i, "position": p, "impression_id": f"imp-{self.calls}-{p}"}
                 for p, i in enumerate(self.world.item_ids[:10], start=1)]
        body = {"request_id": f"r{self.calls}", "arm": "a", "model_version": 0, "items": items}
        return SimpleNamespace(status_code=200, json=lambda: body, text="")


def test_each_kind_of_error_keeps_its_first_answer_beside_its_count():
    simulation = Simulation(SimulationConfig(base_url="http://x", users=20, rate=0, duration=0, seed=3, items=30))
    session = RefusingSession(simulation.world)
    rng = np.random.default_rng(5)
    for _ in range(30):
        simulation._shop_once(session, rng)
    report = simulation.snapshot()

    assert report.requests == 20 and report.errors["400"] == 10
    assert report.error_examples["400"] == '{"error": {"code": "bad_request", "message": "refusal 3", "field": "k"}}'
    # Business events answered 503: counted under their own kind, with their own first answer.
    event_errors = {what: n for what, n in report.errors.items() if what.startswith("event")}
    assert event_errors and all(report.error_examples[what] == "busy" for what in event_errors)
    assert report.as_dict()["error_examples"] == report.error_examples
    table = report.table()
    assert 'first 400 error: {"error": {"code": "bad_request", "message": "refusal 3"' in table
