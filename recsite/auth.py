"""Login throttling: django-axes in front of Django's ModelBackend.

Both login forms (``/accounts/login/`` and ``/admin/login/``) authenticate through
``django.contrib.auth.authenticate(request, ...)``; :class:`LoginThrottleBackend`, first in
``AUTHENTICATION_BACKENDS``, refuses a locked-out username or client address before the password
is even checked, and ``axes.middleware.AxesMiddleware`` answers that request with
``templates/registration/locked_out.html`` and HTTP 429 (:func:`lockout_response`). Settings and unlocking: docs/security.md.
"""

from __future__ import annotations

import logging

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

log = logging.getLogger(__name__)


class LoginThrottleBackend(AxesStandaloneBackend):
    """Axes' lockout check, for logins that come with an HTTP request.

    ``authenticate()`` without a request only happens in server-side code (``Client.login`` in tests, a
    management command): there is no client to throttle, so it falls through to the next backend instead of
    raising as axes does.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def _log_login_failure(sender, credentials: dict, request=None, **kwargs) -> None:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    locked = bool(getattr(request, "axes_locked_out", False))
    log.warning("login_failed username=%r address=%s locked_out=%s", str(credentials.get("username", ""))[:150],
                address, locked)


def lockout_minutes() -> int:
    return max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_response(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """429: the login page's own look for a browser, the API's error shape for a JSON client."""
    minutes = lockout_minutes()
    message = (f"too many failed logins for this username or from this address: try again in {minutes} minutes "
               "(each new failure restarts the wait)")
    if "application/json" in request.headers.get("Accept", "") or request.content_type == "application/json":
        return JsonResponse({"error": {"code": "login_throttled", "message": message, "field": None}}, status=429,
                            headers={"Retry-After": str(minutes * 60)})
    context = {"username": (credentials or {}).get("username", ""), "failure_limit": settings.AXES_FAILURE_LIMIT,
               "minutes": minutes}
    response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
