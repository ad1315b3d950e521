"""The one error shape of the API: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

import logging
from typing import Any

from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse

from experiments.errors import ApplicationError


def error_response(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> JsonResponse:
    return application_error_response(ApplicationError(code, message, status=status, field=field, **extra))


def application_error_response(exc: ApplicationError) -> JsonResponse:
    """The JSON answer to a refused request: every interface that speaks JSON maps errors here."""
    return JsonResponse(exc.as_dict(), status=exc.status)


log = logging.getLogger(__name__)


def exception_response(exc: Exception, request: HttpRequest) -> JsonResponse:
    """The JSON answer to anything a handler raised: a refusal, the database down (503), a value or a write
    Postgres refused (400, 409), or a bug (500, logged)."""
    if isinstance(exc, ApplicationError):
        return application_error_response(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):
        log.warning("api_database_unavailable path=%s error=%s", request.path, str(exc).strip()[:200])
        return error_response(503, "database_unavailable", "the database is unavailable; retry shortly")
    if isinstance(exc, DataError):
        return error_response(400, "invalid", f"a value was refused by the database: {str(exc).strip()[:200]}")
    if isinstance(exc, IntegrityError):
        return error_response(409, "conflict", f"the write conflicts with existing data: {str(exc).strip()[:200]}")
    log.exception("api_unhandled_error path=%s", request.path, exc_info=exc)
    return error_response(500, "internal_error", "unexpected server error (logged)")
