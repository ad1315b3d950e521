"""The one error shape of the API: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from experiments.errors import ApplicationError


def error_response(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> JsonResponse:
    return application_error_response(ApplicationError(code, message, status=status, field=field, **extra))


def application_error_response(exc: ApplicationError) -> JsonResponse:
    """The JSON answer to a refused request: every interface that speaks JSON maps errors here."""
    return JsonResponse(exc.as_dict(), status=exc.status)
