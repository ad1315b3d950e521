"""The one error shape of the API: ``{"error": {"code", "message", "field"}}``."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class ApiError(Exception):
    """Raised anywhere below a view; the view wrapper turns it into the error response."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra


def error_response(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> JsonResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "field": field}}
    body.update(extra)
    return JsonResponse(body, status=status)


def api_error_response(exc: ApiError) -> JsonResponse:
    return error_response(exc.status, exc.code, exc.message, exc.field, **exc.extra)
