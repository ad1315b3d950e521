"""Who may call the session-less JSON endpoints: the API key, and the gate in front of ingestion.

An access check is a callable ``check(request) -> None`` that raises
:class:`~experiments.errors.ApplicationError` (401/403) to refuse; :func:`experiments.api.views.api_view`
runs it before the body is read (``api_view(..., access=ingestion_access)``).

* :func:`ingestion_access` guards everything that writes what serving and the statistics trust —
  the catalogue, users, and business events (``POST /api/v1/events``: a purchase carries revenue, and unlike a
  click it needs no unguessable impression id, so an open endpoint would let anyone post revenue for any
  user): with ``RECSITE_API_KEY`` set the key is required; without one ingestion is **closed** (403
  ``ingestion_closed``) unless ``RECSITE_PUBLIC_INGEST=1`` opens it (the default only in development,
  ``RECSITE_DEV=1``). The demo shop's buttons therefore post to the shop itself (``/shop/event``, session
  cookie + CSRF), which records the event server-side, as a real shop reports purchases from its servers.
* :func:`event_access` guards recommendations and clicks: open (a shopper's browser calls them), unless
  ``RECSITE_API_KEY_EVENTS=1`` and a key is set.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest

from experiments.errors import ApplicationError

AccessCheck = Callable[[HttpRequest], None]


def _configured_key() -> str:
    return settings.RECSITE.get("API_KEY") or ""


def api_key_check(request: HttpRequest) -> None:
    """The key in ``X-API-Key`` or ``Authorization: Bearer``, compared in constant time; nothing to check without one."""
    expected = _configured_key()
    if not expected:
        return
    given = request.headers.get("X-API-Key") or ""
    auth = request.headers.get("Authorization") or ""
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    if not given:
        raise ApplicationError("unauthenticated", "this endpoint needs the API key (X-API-Key or Authorization: Bearer)",
                               status=401)
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
        raise ApplicationError("forbidden", "the API key is not valid", status=403)


def ingestion_access(request: HttpRequest) -> None:
    if _configured_key():
        api_key_check(request)
    elif not settings.RECSITE.get("PUBLIC_INGEST"):
        raise ApplicationError(
            "ingestion_closed",
            "ingestion is closed on this server: the operator sets RECSITE_API_KEY (then send it as X-API-Key or "
            "Authorization: Bearer), or opens it explicitly with RECSITE_PUBLIC_INGEST=1",
            status=403)


def event_access(request: HttpRequest) -> None:
    if settings.RECSITE.get("API_KEY_EVENTS"):
        api_key_check(request)
