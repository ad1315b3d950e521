"""Experiment endpoints of the API: live results, and promotion (session + CSRF, promote_arm only).

Thin: results come from ``selectors.results``, the promotion from ``services.decisions``
(which checks the permission itself). Errors use the API's one error shape.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from experiments.api import validation as v
from experiments.api.errors import error_response, exception_response
from experiments.errors import ApplicationError
from experiments.models import Arm, Experiment
from experiments.selectors import results as result_selectors
from experiments.services import decisions as decision_services

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024


def _csrf_rejected(request: HttpRequest) -> bool:
    """Django's own CSRF check (token + origin), answered as a JSON error instead of an HTML page."""
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {}) is not None


def _body_read(request: HttpRequest) -> None:
    """Reads (and caches) the body before anything parses it as a form: CSRF's check reads ``request.POST``,
    after which ``request.body`` of a multipart request would raise. Bounded by MAX_BODY_BYTES (413)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApplicationError("invalid_content_length", "Content-Length is not a number") from None
    if declared > MAX_BODY_BYTES or len(request.body) > MAX_BODY_BYTES:
        raise ApplicationError("body_too_large", f"the body must be at most {MAX_BODY_BYTES} bytes", status=413)


def session_view(*, method: str) -> Callable:
    """Logged-in session required (401); unsafe methods need the CSRF token (403); every answer is JSON."""

    def decorate(handler: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(handler)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != method:
                response = error_response(405, "method_not_allowed", f"{request.method} is not allowed here; use {method}")
                response["Allow"] = method
                return response
            try:
                if not request.user.is_authenticated:
                    return error_response(401, "unauthenticated", "log in at /accounts/login/ first")
                if method not in ("GET", "HEAD"):
                    _body_read(request)
                    if _csrf_rejected(request):
                        return error_response(403, "csrf_failed", "missing or wrong CSRF token (send X-CSRFToken)")
                return handler(request, *args, **kwargs)
            except Exception as exc:  # JSON, never Django's HTML 500 (experiments.api.errors logs the detail)
                return exception_response(exc, path=request.path)

        # The CSRF check above runs inside the view so that its failure is JSON.
        return csrf_exempt(view)

    return decorate


def _experiment(slug: str) -> Experiment:
    experiment = Experiment.objects.filter(slug=slug).first()
    if experiment is None:
        raise ApplicationError("experiment_not_found", f"no experiment {slug!r}", status=404)
    return experiment


@session_view(method="GET")
def experiment_stats(request: HttpRequest, slug: str) -> HttpResponse:
    experiment = _experiment(slug)
    payload = result_selectors.experiment_payload_current(experiment=experiment)
    return JsonResponse(result_selectors.results(payload))


@session_view(method="POST")
def experiment_promote(request: HttpRequest, slug: str) -> HttpResponse:
    body = v.parse_json(request.body or b"null")
    if not isinstance(body, dict):
        raise ApplicationError("invalid_type", "the body must be a JSON object")
    experiment = _experiment(slug)
    arm_name = v.identifier(body.get("arm"), "arm")
    reason = v.text(body.get("reason"), "reason", max_length=decision_services.MAX_REASON)
    arm = Arm.objects.filter(experiment=experiment, name=arm_name).first()
    if arm is None:
        raise ApplicationError("arm_not_found", f"experiment {slug!r} has no arm {arm_name!r}", status=404, field="arm")
    decision = decision_services.arm_promote(experiment=experiment, arm=arm, user=request.user, reason=reason)
    experiment.refresh_from_db()
    return JsonResponse(
        {
            "decision": {
                "id": decision.id,
                "action": decision.action,
                "arm": arm.name,
                "user": request.user.get_username(),
                "reason": decision.reason,
                "created_at": decision.created_at.isoformat(),
            },
            "experiment": {"slug": experiment.slug, "status": experiment.status, "winner": arm.name},
        },
        status=201,
    )
