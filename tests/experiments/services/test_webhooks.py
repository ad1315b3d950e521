"""Webhooks: Slack-compatible, HMAC-signed notifications to a local receiver, retried with backoff, logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client

from experiments import tasks
from experiments.errors import ApplicationError
from experiments.models import Decision, WebhookDelivery, WebhookEndpoint
from experiments.services import decisions, lifecycle
from experiments.services.webhooks import stats_notifications
from tests.experiments.stats_support import PASSWORD, fast_passwords, make_login  # noqa: F401  (autouse)

pytestmark = pytest.mark.django_db

SECRET = "s" * 32


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers with the given statuses in turn and records every request."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"headers": dict(self.headers), "body": body})
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"nope")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=(200,)):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def running():
    boss = make_login(username="boss", promoter=True)
    experiment = lifecycle.experiment_create(slug="hooked", user=boss, arms=[
        lifecycle.ArmSpec("control", "popularity"), lifecycle.ArmSpec("treat", "popularity")])
    lifecycle.experiment_start(experiment=experiment, user=boss)
    return experiment, boss


def deliver_all():
    for delivery in WebhookDelivery.objects.order_by("id"):
        tasks.webhook_deliver.apply(args=[delivery.id])


def test_a_promotion_and_the_conclusion_reach_the_receiver_signed_and_slack_shaped(running, receiver):
    experiment, boss = running
    hook = receiver()
    lifecycle.experiment_webhook_set(experiment=experiment, url=hook.url, secret=SECRET, user=boss)

    decisions.arm_promote(experiment=experiment, arm=experiment.arms.get(name="treat"), user=boss, reason="wins")
    lifecycle.experiment_conclude(experiment=experiment, conclusion="treat ships", user=boss)
    deliver_all()

    assert [r["headers"]["X-Recsite-Event"] for r in hook.requests] == ["promotion", "conclusion"]
    for r in hook.requests:
        signed = r["headers"]["X-Recsite-Timestamp"].encode() + b"." + r["body"]
        expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r["headers"]["X-Recsite-Signature"], expected)
    body = json.loads(hook.requests[0]["body"])
    assert body["text"] == "[hooked] treat promoted: it serves everyone"
    assert body["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": "*[hooked] treat promoted: it "
                                                                                        "serves everyone*"}}
    assert (body["recsite"]["event"], body["recsite"]["arm"], body["recsite"]["by"]) == ("promotion", "treat", "boss")
    assert json.loads(hook.requests[1]["body"])["recsite"]["reason"] == "treat ships"
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("delivered", 1)}


def test_a_failing_receiver_is_retried_with_backoff_until_it_accepts(running, receiver, monkeypatch):
    experiment, boss = running
    hook = receiver(statuses=(500, 503, 200))
    lifecycle.experiment_webhook_set(experiment=experiment, url=hook.url, secret=SECRET, user=boss)
    countdowns = []
    retry = tasks.webhook_deliver.retry
    monkeypatch.setattr(tasks.webhook_deliver, "retry",
                        lambda *a, **kw: (countdowns.append(kw.get("countdown")), retry(*a, **kw))[1])

    decisions.arm_promote(experiment=experiment, arm=experiment.arms.get(name="treat"), user=boss, reason="wins")
    deliver_all()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.response_status, delivery.error) == ("delivered", 3, 200, "")
    assert countdowns == [2, 4]  # exponential backoff
    assert len(hook.requests) == 3


def test_a_receiver_that_never_accepts_ends_failed_after_six_attempts(running, receiver):
    experiment, boss = running
    hook = receiver(statuses=(500,))
    lifecycle.experiment_webhook_set(experiment=experiment, url=hook.url, secret=SECRET, user=boss)

    decisions.arm_promote(experiment=experiment, arm=experiment.arms.get(name="treat"), user=boss, reason="wins")
    deliver_all()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.response_status) == ("failed", 6, 500)
    assert delivery.error.startswith("HTTP 500")


def test_srm_starts_and_the_first_significant_result_per_arm_are_notified_once(running, receiver):
    experiment, boss = running
    lifecycle.experiment_webhook_set(experiment=experiment, url=receiver().url, user=boss)

    def payload(srm: bool, significant: bool) -> dict:
        return {"report": {"srm": {"alert": srm, "p_value": 1e-5 if srm else 0.5}, "arms": {
            "control": {"significant_sequential": False},
            "treat": {"significant_sequential": significant, "lift": 0.2, "always_valid_p": 0.01}}}}

    stats_notifications(experiment=experiment, previous=payload(False, False), payload=payload(True, True))
    stats_notifications(experiment=experiment, previous=payload(True, True), payload=payload(True, True))
    stats_notifications(experiment=experiment, previous=payload(False, True), payload=payload(True, True))

    assert list(WebhookDelivery.objects.order_by("id").values_list("event", "once_key")) == [
        ("srm", ""), ("significant", "significant:treat"), ("srm", "")]


def test_a_guardrail_pause_is_notified(running, receiver):
    experiment, boss = running
    lifecycle.experiment_webhook_set(experiment=experiment, url=receiver().url, user=boss)

    decisions.arm_status_set(arm=experiment.arms.get(name="treat"), status="paused", user=None, reason="diverged",
                             action=Decision.Action.GUARDRAIL_PAUSE, actor="guardrail")

    delivery = WebhookDelivery.objects.get()
    assert (delivery.event, delivery.payload["recsite"]["by"]) == ("guardrail", "guardrail")
    assert delivery.payload["text"] == "[hooked] Guardrail: pause treat"


def test_no_webhook_no_delivery_and_the_setting_is_audited_without_the_secret(running):
    experiment, boss = running
    decisions.arm_promote(experiment=experiment, arm=experiment.arms.get(name="treat"), user=boss, reason="wins")

    with pytest.raises(ApplicationError) as bad:
        lifecycle.experiment_webhook_set(experiment=experiment, url="ftp://example.com/x", user=boss)
    decision = lifecycle.experiment_webhook_set(experiment=experiment, url="https://hooks.example.com/x", user=boss)
    removed = lifecycle.experiment_webhook_set(experiment=experiment, url="", user=boss)

    assert not WebhookDelivery.objects.exists()
    assert bad.value.field == "url"
    assert (decision.action, decision.stats_snapshot) == ("webhook", {"webhook": "https://hooks.example.com/x",
                                                                      "secret_changed": False})
    assert removed.previous_state["webhook"] == "https://hooks.example.com/x"
    assert not WebhookEndpoint.objects.exists()


def test_the_delivery_log_is_on_the_audit_page_and_the_webhook_page_is_staff_only(running, receiver):
    experiment, boss = running
    hook = receiver(statuses=(500,))
    lifecycle.experiment_webhook_set(experiment=experiment, url=hook.url, secret=SECRET, user=boss)
    decisions.arm_promote(experiment=experiment, arm=experiment.arms.get(name="treat"), user=boss, reason="wins")
    deliver_all()
    make_login(username="analyst", promoter=False)
    analyst = Client()
    analyst.login(username="analyst", password=PASSWORD)

    audit = analyst.get("/dashboard/hooked/audit/")
    page = analyst.get("/dashboard/hooked/webhook/")

    assert b'data-testid="deliveries-table"' in audit.content
    assert b"[hooked] treat promoted" in audit.content and b"HTTP 500" in audit.content and b"failed" in audit.content
    assert page.status_code == 403
