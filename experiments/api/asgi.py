"""A thin ASGI path for the hot event endpoints, in front of the whole Django application.

Under ASGI, Django runs each hook of each classic middleware through
``sync_to_async`` — about 13 thread hops per request for this project's seven
middlewares — although the event endpoints use none of them (no session, no
user, no CSRF, no messages). :func:`api_fast_path` answers
``POST /api/v1/recommendations``, ``POST /api/v1/clicks``, ``POST /api/v1/events`` and ``GET /api/v1/ping``
by calling the very same view coroutines directly with a Django ``ASGIRequest``,
and hands every other request to Django untouched. What the skipped
middlewares would have contributed to these responses is kept: the host is
checked against ``ALLOWED_HOSTS`` and the security headers are set.

``recsite.asgi`` builds the wrapped application and hands the Django one in: ``application``
is wrapped unless ``RECSITE_API_FAST_PATH=0``, ``fast_application`` regardless of that setting.
This module never imports the project's entry point.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse
from django.middleware.security import SecurityMiddleware

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def _fast_views() -> dict[tuple[str, str], Callable[..., Any]]:
    from experiments.api import views

    return {
        ("POST", "/api/v1/recommendations"): views.recommendations,
        ("POST", "/api/v1/clicks"): views.clicks,
        ("POST", "/api/v1/events"): views.events,
        ("GET", "/api/v1/ping"): views.ping,
    }


async def _read_body(receive: Callable[[], Awaitable[dict]], limit: int) -> tuple[bytes, bool]:
    """The request body, keeping at most ``limit + 1`` bytes (the view answers 413 beyond its own limit)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False
        chunk = message.get("body", b"")
        if size <= limit:
            chunks.append(chunk[: limit + 1 - size])
            size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _security() -> SecurityMiddleware:
    # Django's own: HTTPS redirect (SECURE_SSL_REDIRECT) and HSTS on secure responses, exactly as on other paths.
    return SecurityMiddleware(lambda request: HttpResponse())


def _secure(response: HttpResponse, request: ASGIRequest | None = None) -> HttpResponse:
    # What SecurityMiddleware and XFrameOptionsMiddleware add to every response.
    if request is not None:
        response = _security().process_response(request, response)
    if getattr(settings, "SECURE_CONTENT_TYPE_NOSNIFF", True):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
    referrer = getattr(settings, "SECURE_REFERRER_POLICY", "same-origin")
    if referrer:
        response.headers.setdefault("Referrer-Policy", referrer if isinstance(referrer, str) else ",".join(referrer))
    coop = getattr(settings, "SECURE_CROSS_ORIGIN_OPENER_POLICY", "same-origin")
    if coop:
        response.headers.setdefault("Cross-Origin-Opener-Policy", coop)
    response.headers.setdefault("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY"))
    return response


async def _send(response: HttpResponse, send: Callable[[dict], Awaitable[None]]) -> None:
    response.headers.setdefault("Content-Length", str(len(response.content)))
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.content})


def api_fast_path(app: ASGIApp) -> ASGIApp:
    fast: dict[tuple[str, str], Callable[..., Any]] = {}

    async def application(scope: dict, receive: Callable[[], Awaitable[dict]],
                          send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if not fast:
            fast.update(_fast_views())
        view = fast.get((scope.get("method", ""), scope.get("path", "")))
        if view is None:
            return await app(scope, receive, send)
        body, connected = await _read_body(receive, int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440))
        if not connected:
            return None
        from experiments.api.errors import error_response

        try:
            request = ASGIRequest(scope, io.BytesIO(body))
        except UnicodeDecodeError:
            # Daphne hands over a percent-encoded query string; other servers may pass raw non-UTF-8 bytes.
            await _send(_secure(error_response(400, "bad_request", "the query string is not valid UTF-8")), send)
            return None
        try:
            request.get_host()
        except DisallowedHost:
            response = error_response(400, "bad_host", "the Host header is not allowed")
        else:
            response = _security().process_request(request) or await view(request)
        await _send(_secure(response, request), send)
        return None

    return application
