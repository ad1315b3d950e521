"""Liveness: the parts the product cannot work without (Postgres, Redis: 503), whether this process is still
warming its models (503 ``warming``), and the background parts that have not checked in (200 ``degraded``).

``/healthz`` is public (load balancers and probes call it without a login), so it says only which
part is down; the driver's error (host names, ports, database user, server messages) goes to the log.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from experiments.api.errors import exception_detail
from experiments.heartbeats import PARTS, parts_missing
from experiments.serving.startup import serving_warming

log = logging.getLogger(__name__)


def check_database() -> str | None:
    """Returns None when the database answers, else the error text (for the log, not for clients)."""
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down" to an operator
        connection.close_if_unusable_or_obsolete()
        return exception_detail(exc)
    return None


def check_redis() -> str | None:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return exception_detail(exc)
    return None


def healthz(request):
    checks = {"database": check_database(), "redis": check_redis()}
    failed = [name for name, error in checks.items() if error]
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": {name: ("ok" if error is None else "unavailable") for name, error in checks.items()},
    }
    if failed:
        log.warning("healthz_failed %s", " ".join(f"{name}={checks[name]}" for name in failed))
        body["error"] = {"code": "unavailable", "message": f"{', '.join(failed)} unavailable", "field": None}
        return JsonResponse(body, status=503)
    if serving_warming():
        # Not ready for traffic yet: a balancer keeps requests away until every arm is loaded and warmed.
        body["status"] = "warming"
        body["error"] = {"code": "warming", "message": "loading and warming the models", "field": None}
        response = JsonResponse(body, status=503)
        response._has_been_logged = True  # expected while starting: not one django.request ERROR line per probe
        return response
    try:
        missing = parts_missing()
    except redis.RedisError as exc:  # Redis answered a moment ago; say so in the log, not as an outage
        log.warning("healthz_parts_unknown error=%s", exception_detail(exc))
        return JsonResponse(body)
    body["parts"] = {part: ("missing" if part in missing else "ok") for part in PARTS}
    if missing:
        # Still 200: this process serves. But with the light worker down nothing trains; an operator must know.
        body["status"] = "degraded"
        body["missing"] = missing
        body["message"] = f"not checked in recently: {', '.join(missing)}"
    return JsonResponse(body)


def metrics(request):
    """Prometheus exposition of this machine's processes (experiments/observability.py), for a scraper.

    With ``RECSITE_METRICS_TOKEN`` set, only ``Authorization: Bearer <token>`` reads it; without one it is open
    in development or with ``RECSITE_METRICS_PUBLIC=1``, and 403 otherwise (docs/operations.md).
    """
    import hmac

    from django.http import HttpResponse

    from experiments.api.errors import error_response
    from experiments.observability import CONTENT_TYPE, metrics_text

    if request.method != "GET":
        response = error_response(405, "method_not_allowed", f"{request.method} is not allowed here; use GET")
        response["Allow"] = "GET"
        return response
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error_response(401, "unauthorized", "send Authorization: Bearer <RECSITE_METRICS_TOKEN>")
    elif not settings.METRICS_PUBLIC:
        return error_response(403, "metrics_closed", "set RECSITE_METRICS_TOKEN (or RECSITE_METRICS_PUBLIC=1 on a "
                                                     "private network) to scrape /metrics")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)
