"""Notifications to an experiment's webhook: Slack-compatible JSON, signed with HMAC-SHA256, delivered by Celery.

Events: ``srm`` (a sample-ratio-mismatch alert starts), ``guardrail`` (a guardrail paused an arm or rolled a model
back), ``significant`` (an arm's first significant result under the always-valid test; once per arm), ``promotion``
and ``conclusion``. :func:`webhook_notify` stores a pending :class:`WebhookDelivery` and, after commit, queues
``recsite.webhooks.deliver``, which posts it (:func:`webhook_deliver`) and retries with exponential backoff; every
attempt is kept on the row, and the audit page lists them.

The body is what Slack's incoming webhooks take (``text`` plus ``blocks``), with the event's own fields under
``recsite``. Signature headers: ``X-Recsite-Timestamp: <unix seconds>`` and ``X-Recsite-Signature: sha256=<hex>``,
the HMAC-SHA256 under the endpoint's secret of ``"<timestamp>.<raw body>"`` (:func:`webhook_signature`), so a
receiver can check both origin and freshness.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import requests
from celery import current_app
from django.db import IntegrityError, transaction
from django.utils import timezone

from experiments.models import Experiment, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

TASK = "recsite.webhooks.deliver"
EVENTS = ("srm", "guardrail", "significant", "promotion", "conclusion")
TIMEOUT_S = 5.0
MAX_ATTEMPTS = 6  # the first try and five retries, 2, 4, 8, 16 and 32 s apart (retry_backoff in the task)
USER_AGENT = "recsite-webhooks/1"


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def webhook_payload(*, experiment: Experiment, event: str, title: str, fields: dict[str, Any]) -> dict[str, Any]:
    lines = "\n".join(f"*{k}*: {v}" for k, v in fields.items())
    text = f"[{experiment.slug}] {title}"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
            *([{"type": "section", "text": {"type": "mrkdwn", "text": lines}}] if lines else []),
        ],
        "recsite": {"event": event, "experiment": experiment.slug, "at": timezone.now().isoformat(), **fields},
    }


def webhook_notify(*, experiment: Experiment, event: str, title: str, fields: dict[str, Any] | None = None,
                   once_key: str = "") -> WebhookDelivery | None:
    """Records a notification and queues its delivery after commit; None when the experiment has no webhook (or a
    once-only event was sent already)."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    endpoint = WebhookEndpoint.objects.filter(experiment=experiment).first()
    if endpoint is None:
        return None
    if once_key and WebhookDelivery.objects.filter(experiment=experiment, once_key=once_key).exists():
        return None
    payload = webhook_payload(experiment=experiment, event=event, title=title, fields=fields or {})
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(experiment=experiment, event=event, once_key=once_key,
                                                      url=endpoint.url, payload=payload)
    except IntegrityError:
        return None
    transaction.on_commit(lambda: current_app.send_task(TASK, args=[delivery.id], queue="default"))
    return delivery


def webhook_deliver(*, delivery_id: int) -> bool:
    """One attempt: True when the receiver answered 2xx (or the delivery is done already). Records the attempt."""
    delivery = WebhookDelivery.objects.filter(pk=delivery_id).select_related("experiment").first()
    if delivery is None or delivery.state == WebhookDelivery.State.DELIVERED:
        return True
    endpoint = WebhookEndpoint.objects.filter(experiment_id=delivery.experiment_id).first()
    secret = endpoint.secret if endpoint is not None else ""
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "X-Recsite-Timestamp": timestamp,
               "X-Recsite-Event": delivery.event,
               "X-Recsite-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=body)}
    delivery.attempts += 1
    try:
        response = requests.post(delivery.url, data=body, headers=headers, timeout=TIMEOUT_S, allow_redirects=False)
        delivery.response_status = response.status_code
        ok = 200 <= response.status_code < 300
        delivery.error = "" if ok else f"HTTP {response.status_code}: {response.text[:200]}"
    except requests.RequestException as exc:
        ok = False
        delivery.response_status = None
        delivery.error = f"{type(exc).__name__}: {exc}"[:500]
    if ok:
        delivery.state, delivery.delivered_at = WebhookDelivery.State.DELIVERED, timezone.now()
    elif delivery.attempts >= MAX_ATTEMPTS:
        delivery.state = WebhookDelivery.State.FAILED
    delivery.save(update_fields=["attempts", "response_status", "error", "state", "delivered_at"])
    log.info("webhook_attempt delivery=%s event=%s attempt=%s ok=%s status=%s", delivery.id, delivery.event,
             delivery.attempts, ok, delivery.response_status)
    return ok or delivery.state == WebhookDelivery.State.FAILED


def stats_notifications(*, experiment: Experiment, previous: dict | None, payload: dict) -> None:
    """From one stats tick to the next: an SRM alert that starts, and each arm's first significant result."""
    report, before = payload["report"], ((previous or {}).get("report") or {})
    if report["srm"].get("alert") and not (before.get("srm") or {}).get("alert"):
        webhook_notify(experiment=experiment, event="srm", title="Sample-ratio mismatch: the traffic split is broken",
                       fields={"p_value": f"{report['srm']['p_value']:.2g}"})
    for name, row in report["arms"].items():
        if row.get("significant_sequential"):
            webhook_notify(experiment=experiment, event="significant", once_key=f"significant:{name}",
                           title=f"{name}: first significant result under the always-valid test",
                           fields={"arm": name, "lift": row.get("lift"), "always_valid_p": row.get("always_valid_p")})
