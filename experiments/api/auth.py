"""Who may call the operator endpoints: a logged-in session (with CSRF on writes) or a staff bearer token.

:func:`operator_view` wraps a handler ``handler(request, user, body, **kwargs)``:

* another method → 405 with ``Allow``;
* ``Authorization: Bearer <token>`` → the token's user (401 ``invalid_token``), no CSRF (browsers never send it);
  otherwise the session: 401 ``unauthenticated`` without one, 403 ``csrf_failed`` on a write without the token;
* ``staff=True`` → 403 ``forbidden`` for non-staff users (the services check promote_arm themselves);
* POST bodies: JSON objects up to ``max_body`` bytes (413), an empty body is ``{}``;
* every refusal is the API's one error shape; nothing else escapes as an HTML page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from experiments.api import validation as v
from experiments.api.errors import error_response, exception_response
from experiments.errors import ApplicationError
from experiments.services.tokens import api_token_user

MAX_BODY_BYTES = 64 * 1024


def _csrf_rejected(request: HttpRequest) -> bool:
    """Django's own CSRF check (token + origin), answered as a JSON error instead of an HTML page."""
    return CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, None, (), {}) is not None


def _bearer(request: HttpRequest) -> str | None:
    auth = request.headers.get("Authorization") or ""
    if auth[:7].lower() != "bearer ":
        return None
    return auth[7:].strip()


def request_user(request: HttpRequest, *, write: bool):
    """The acting user of an operator request (see module doc)."""
    raw = _bearer(request)
    if raw is not None:
        if not raw:
            raise ApplicationError("invalid_token", "The bearer token is empty.", status=401)
        return api_token_user(raw=raw)
    if not request.user.is_authenticated:
        raise ApplicationError("unauthenticated", "log in at /accounts/login/ first, or send Authorization: Bearer "
                               "<staff token>", status=401)
    if write and _csrf_rejected(request):
        raise ApplicationError("csrf_failed", "missing or wrong CSRF token (send X-CSRFToken)", status=403)
    return request.user


def _body_read(request: HttpRequest, max_body: int) -> None:
    """Reads (and caches) the body before anything parses it as a form: CSRF's check reads ``request.POST``,
    after which ``request.body`` of a multipart request would raise. Bounded by ``max_body`` (413)."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApplicationError("invalid_content_length", "Content-Length is not a number") from None
    if declared > max_body or len(request.body) > max_body:
        raise ApplicationError("body_too_large", f"the body must be at most {max_body} bytes", status=413)


def _body(request: HttpRequest, max_body: int) -> dict[str, Any]:
    _body_read(request, max_body)
    if not request.body.strip():
        return {}
    body = v.parse_json(request.body)
    if not isinstance(body, dict):
        raise ApplicationError("invalid_type", "the body must be a JSON object")
    return body


def operator_view(*, methods: Iterable[str], staff: bool = True, max_body: int = MAX_BODY_BYTES) -> Callable:
    allowed = tuple(methods)

    def decorate(handler: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(handler)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                response = error_response(405, "method_not_allowed",
                                          f"{request.method} is not allowed here; use {', '.join(allowed)}")
                response["Allow"] = ", ".join(allowed)
                return response
            try:
                write = request.method not in ("GET", "HEAD")
                if write:
                    _body_read(request, max_body)
                user = request_user(request, write=write)
                if staff and not user.is_staff:
                    raise ApplicationError("forbidden", "Only staff can use this endpoint.", status=403)
                body = _body(request, max_body) if request.method == "POST" else {}
                return handler(request, user, body, *args, **kwargs)
            except Exception as exc:
                return exception_response(exc, path=request.path)

        # The CSRF check above runs inside the view so that its failure is JSON (and a bearer token skips it).
        return csrf_exempt(view)

    return decorate
