"""Middleware of the project as a whole."""

from __future__ import annotations

from collections.abc import Callable

from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse


class CloseConnectionsUnderASGI:
    """Closes the request thread's database connections when a request served over ASGI ends.

    Under ASGI, Django runs the sync middleware and sync views of each request in a thread
    of its own, so a persistent connection (CONN_MAX_AGE) opened there is never reused and
    lingers until garbage collection: a few dozen page views would hold as many Postgres
    slots. The API's async views keep their own long-lived pool (experiments.api.dbpool),
    which this does not touch. Outermost, so the session is saved before it runs.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if isinstance(request, ASGIRequest):
            for connection in connections.all(initialized_only=True):
                connection.close()
        return response
