"""The one error shape of the API: ``{"error": {"code", "message", "field"}}``, and what each failure maps to.

Whatever escapes a JSON view is answered by :func:`exception_response`: a refusal
(:class:`~experiments.errors.ApplicationError`) as itself, a database or request
failure as a 4xx/503 with generic text. The detail (driver messages name hosts,
database users, constraints and values) goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, IntegrityError, InterfaceError, OperationalError
from django.http import JsonResponse
from django.http.request import RawPostDataException, UnreadablePostError

from experiments.errors import ApplicationError

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> JsonResponse:
    return application_error_response(ApplicationError(code, message, status=status, field=field, **extra))


def application_error_response(exc: ApplicationError) -> JsonResponse:
    """The JSON answer to a refused request: every interface that speaks JSON maps errors here."""
    response = JsonResponse(exc.as_dict(), status=exc.status)
    response.recsite_error_code = exc.code  # for the instrumentation (experiments.api.views), never sent
    return response


def exception_detail(exc: BaseException) -> str:
    """What a log line says about an exception: its class and (bounded) message."""
    return f"{type(exc).__name__}: {str(exc).strip()[:300]!r}"


def exception_response(exc: Exception, *, path: str) -> JsonResponse:
    """The JSON answer to any exception a JSON view lets escape; logs what the client is not told."""
    if isinstance(exc, ApplicationError):
        return application_error_response(exc)
    if isinstance(exc, (OperationalError, InterfaceError)):
        log.warning("api_database_unavailable path=%s error=%s", path, exception_detail(exc))
        return error_response(503, "database_unavailable", "the database is unavailable; retry shortly")
    if isinstance(exc, TimeoutError):
        log.warning("api_serving_not_ready path=%s error=%s", path, exception_detail(exc))
        return error_response(503, "unavailable", "serving is not ready yet; retry shortly")
    if isinstance(exc, DataError):
        log.info("api_data_refused path=%s error=%s", path, exception_detail(exc))
        return error_response(400, "invalid", "a value was refused by the database (out of range or malformed)")
    if isinstance(exc, IntegrityError):
        log.info("api_conflict path=%s error=%s", path, exception_detail(exc))
        return error_response(409, "conflict", "the write conflicts with existing data; nothing was written")
    if isinstance(exc, DatabaseError):
        log.error("api_database_error path=%s error=%s", path, exception_detail(exc))
        return error_response(503, "database_error", "the database could not complete the request; retry shortly")
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, "body_too_large", "the body is too large")
    if isinstance(exc, (RawPostDataException, UnreadablePostError)):
        log.info("api_unreadable_body path=%s error=%s", path, exception_detail(exc))
        return error_response(400, "invalid_body", "the body could not be read; send one JSON object")
    log.exception("api_unhandled_error path=%s", path)
    return error_response(500, "internal_error", "unexpected server error (logged)")
