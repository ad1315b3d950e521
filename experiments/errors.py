"""The one error a service raises when it refuses a request (HackSoft's ``ApplicationError``).

Services, validators and selectors raise it with a machine-readable ``code``, a
human ``message``, the HTTP ``status`` an interface should answer with and the
request ``field`` at fault. Interfaces map it once: the JSON API through
:func:`experiments.api.errors.application_error_response` (``{"error": {"code",
"message", "field"}}``), the dashboard forms next to the field.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    def __init__(self, code: str, message: str, *, status: int = 400, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.field = field
        # Extra top-level members of the error document (e.g. the per-row errors of a bulk call).
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}, **self.extra}
