"""Event endpoints of the public API: recommendations, clicks, business events, items, users, plus schema and ping.

Views only validate and translate; the work is in ``experiments.services``.
Every response, including failures, is JSON; see :func:`api_view` for how
errors map to statuses. Authentication (documented in the OpenAPI schema,
checks in :mod:`experiments.api.access`): recommendations and clicks are open,
because the shop's JavaScript and any shopper-facing client call them; items, users and
business events are ingestion: they need ``RECSITE_API_KEY`` when one is set and are closed
without one, unless ``RECSITE_PUBLIC_INGEST=1``. A deployment whose shop calls us
from its own servers can require the key on recommendations and clicks too
(``RECSITE_API_KEY_EVENTS=1``). None of these endpoints use the session, so
they are exempt from CSRF.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from experiments import observability
from experiments.api import validation as v
from experiments.api.access import AccessCheck, event_access, ingestion_access
from experiments.api.dbpool import run_db
from experiments.api.errors import error_response, exception_response
from experiments.errors import ApplicationError
from experiments.services import business_events
from experiments.services.catalogue import ItemRow, UserRow, item_bulk_upsert, user_bulk_upsert
from experiments.services.clicks import UnknownImpression, click_record
from experiments.services.events import recommendation_serve
from experiments.services.impression_ids import MAX_LENGTH as IMPRESSION_ID_MAX_LENGTH
from experiments.serving import health as serving_health

log = logging.getLogger(__name__)

SMALL_BODY_BYTES = 64 * 1024
MAX_ROW_ERRORS = 100


def _bulk_body_bytes() -> int:
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 5 * 1024 * 1024)


def _read_json(request: HttpRequest, max_bytes: int) -> Any:
    too_big = ApplicationError("body_too_large", f"the body must be at most {max_bytes} bytes", status=413)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise ApplicationError("invalid_content_length", "Content-Length is not a number") from None
    if declared > max_bytes:
        raise too_big
    try:
        raw = request.body
    except RequestDataTooBig:
        raise too_big from None
    if len(raw) > max_bytes:
        raise too_big
    if not raw.strip():
        raise ApplicationError("invalid_json", "the body is empty; send a JSON object")
    return v.parse_json(raw)


def api_view(*, methods: Iterable[str], max_body: int | Callable[[], int] = SMALL_BODY_BYTES,
             access: AccessCheck | None = None, database: bool = True):
    """JSON in, JSON out, never an HTML error page and never a bare 500 from bad input.

    405 for other methods, 413 for oversized bodies, 400 for invalid JSON or fields,
    503 when Postgres is unreachable. The view itself is async; the handler (sync,
    ``handler(request, body)``) runs on the database pool (:mod:`experiments.api.dbpool`).
    """
    allowed = tuple(methods)

    def decorate(handler: Callable[..., HttpResponse]) -> Callable[..., Any]:
        endpoint = handler.__name__

        @functools.wraps(handler)
        async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            started = time.perf_counter()
            response = await _view(request, *args, **kwargs)
            # Instrumented here, not in a middleware: the fast path (experiments.api.asgi) skips those.
            experiment, arm = getattr(request, "recsite_served", ("", ""))
            observability.API_SECONDS.labels(endpoint, experiment, arm).observe(time.perf_counter() - started)
            observability.API_REQUESTS.labels(endpoint, str(response.status_code)).inc()
            trace = getattr(request, "recsite_trace", None)
            if trace is not None and trace.arm_id is not None:
                serving_health.observe(experiment_id=trace.experiment_id, arm_id=trace.arm_id,
                                       seconds=getattr(request, "recsite_handler_s", 0.0),
                                       error=_arm_error(response), items=trace.items)
            return response

        async def _view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in allowed:
                    response = error_response(405, "method_not_allowed",
                                              f"{request.method} is not allowed here; use {', '.join(allowed)}")
                    response["Allow"] = ", ".join(allowed)
                    return response
                if access is not None:
                    access(request)
                body = None
                if request.method == "POST":
                    body = _read_json(request, max_body() if callable(max_body) else max_body)
                if not database:
                    return handler(request, body, *args, **kwargs)
                started = time.perf_counter()
                try:
                    response = await run_db(request, handler, request, body, *args, **kwargs)
                finally:
                    request.recsite_handler_s = time.perf_counter() - started
                # Time spent in the handler (ranking + SQL), for clients and benchmarks to separate it from transport.
                response["Server-Timing"] = f"app;dur={request.recsite_handler_s * 1000:.2f}"
                return response
            except Exception as exc:  # every failure is JSON: experiments.api.errors maps it, logs the detail
                return exception_response(exc, path=request.path)

        return csrf_exempt(view)

    return decorate


def _arm_error(response: HttpResponse) -> bool:
    """A failure that counts against the arm that was serving: an unexpected one (500), or its model could not be
    loaded (503 ``arm_unavailable``). Not the stack's outages (the database or Redis down: other 503s)."""
    return response.status_code == 500 or getattr(response, "recsite_error_code", None) == "arm_unavailable"


def _object_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApplicationError("invalid_type", "the body must be a JSON object")
    return body


# --------------------------------------------------------------------------- events


@api_view(methods=["POST"], access=event_access)
def recommendations(request: HttpRequest, body: Any) -> HttpResponse:
    body = _object_body(body)
    user_id = v.identifier(body.get("user_id"), "user_id")
    k = v.integer(body.get("k", 10), "k", lo=1, hi=int(settings.RECSITE["MAX_K"]))
    context = v.json_object(body.get("context"), "context")
    experiment = body.get("experiment")
    if experiment is not None:
        experiment = v.identifier(experiment, "experiment")
    layer = body.get("layer")
    if layer is not None:
        layer = v.identifier(layer, "layer")
    user_attributes = None
    if body.get("user") is not None:
        user_attributes = v.json_object(body["user"], "user")
    request.recsite_trace = trace = serving_health.Trace()
    result = recommendation_serve(user_id=user_id, k=k, experiment_slug=experiment, layer=layer,
                                  user_attributes=user_attributes, context=context, trace=trace)
    request.recsite_served = (result.experiment, result.arm)
    return JsonResponse(result.as_dict(), status=200)


# One answer for unknown, malformed, altered and forged ids alike: nothing to learn by probing.
IMPRESSION_NOT_FOUND = "no such impression (send impression_id exactly as served)"


def _impression_id(value: Any) -> str:
    """The opaque id as a recommendation returned it; whether it is genuine is the service's to say (404)."""
    if value is None:
        raise ApplicationError("required", "impression_id is required", field="impression_id")
    if not isinstance(value, str):
        raise ApplicationError("invalid_type", "impression_id must be the string a recommendation returned, unchanged",
                               field="impression_id")
    if len(value) > IMPRESSION_ID_MAX_LENGTH:
        raise ApplicationError("too_long", f"impression_id must be at most {IMPRESSION_ID_MAX_LENGTH} characters",
                               field="impression_id")
    return value


@api_view(methods=["POST"], access=event_access)
def clicks(request: HttpRequest, body: Any) -> HttpResponse:
    body = _object_body(body)
    impression_id = _impression_id(body.get("impression_id"))
    try:
        result = click_record(impression_id=impression_id)
    except UnknownImpression:
        # One answer for unknown, malformed, altered and forged ids alike: nothing to learn by probing.
        raise ApplicationError("impression_not_found", IMPRESSION_NOT_FOUND, status=404, field="impression_id") from None
    return JsonResponse(result.as_dict(), status=201 if result.created else 200)


@api_view(methods=["POST"], access=ingestion_access)
def events(request: HttpRequest, body: Any) -> HttpResponse:
    body = _object_body(body)
    user_id = v.identifier(body.get("user_id"), "user_id")
    event_type = body.get("type")
    if event_type is None:
        raise ApplicationError("required", "type is required", field="type")
    if not isinstance(event_type, str):
        raise ApplicationError("invalid_type", "type must be a string", field="type")
    item_id = body.get("item_id")
    item_id = None if item_id is None else v.identifier(item_id, "item_id")
    event_id = body.get("event_id")
    event_id = None if event_id is None else v.identifier(event_id, "event_id")
    impression_id = body.get("impression_id")
    impression_id = None if impression_id is None else _impression_id(impression_id)
    try:
        result = business_events.business_event_record(
            user_id=user_id, event_type=event_type, item_id=item_id, value=v.money(body.get("value"), "value"),
            impression_id=impression_id, event_id=event_id, ts=v.timestamp(body.get("ts"), "ts"))
    except business_events.UnknownImpression:
        raise ApplicationError("impression_not_found", IMPRESSION_NOT_FOUND, status=404, field="impression_id") from None
    return JsonResponse(result.as_dict(), status=201 if result.created else 200)


# ----------------------------------------------------------------------------- bulk


def _bulk_rows(body: Any, key: str) -> list[Any]:
    rows = body.get(key) if isinstance(body, dict) else body
    if isinstance(body, dict) and rows is None:
        raise ApplicationError("required", f"{key} is required: a list of rows", field=key)
    if not isinstance(rows, list):
        raise ApplicationError("invalid_type", f"{key} must be a list of objects", field=key)
    limit = int(settings.RECSITE["MAX_BULK_ROWS"])
    if len(rows) > limit:
        raise ApplicationError("too_many_rows", f"at most {limit} rows per call, got {len(rows)}", field=key)
    return rows


def _clean_rows(rows: list[Any], key: str, id_field: str, clean: Callable[[dict, str], Any]) -> list[Any]:
    """Validates every row; raises one 400 listing each bad row (nothing is written)."""
    cleaned: list[Any] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        prefix = f"{key}[{index}]"
        try:
            if not isinstance(row, dict):
                raise ApplicationError("invalid_type", f"{prefix} must be an object", field=prefix)
            value = clean(row, prefix)
            if value.external_id in seen:
                raise ApplicationError("duplicate", f"{prefix}.{id_field} repeats row {seen[value.external_id]}", field=f"{prefix}.{id_field}")
            seen[value.external_id] = index
            cleaned.append(value)
        except ApplicationError as exc:
            errors.append({"index": index, "code": exc.code, "message": exc.message, "field": exc.field})
    if errors:
        first = errors[0]
        raise ApplicationError(first["code"], f"{len(errors)} invalid row(s), nothing written; first: {first['message']}", field=first["field"], errors=errors[:MAX_ROW_ERRORS], invalid_rows=len(errors))
    return cleaned


def _external_id(row: dict, prefix: str, id_field: str) -> str:
    value = row.get(id_field, row.get("external_id"))
    return v.identifier(value, f"{prefix}.{id_field}")


def _item_row(row: dict, prefix: str) -> ItemRow:
    price = v.number(row.get("price"), f"{prefix}.price", lo=0, hi=9_999_999_999.99)
    return ItemRow(
        external_id=_external_id(row, prefix, "item_id"),
        title=v.text(row.get("title"), f"{prefix}.title", max_length=500),
        category=v.text(row.get("category"), f"{prefix}.category", max_length=100),
        price=None if price is None else Decimal(str(round(price, 2))),
        features=v.json_object(row.get("features"), f"{prefix}.features"),
        active=v.boolean(row.get("active"), f"{prefix}.active", default=True),
    )


def _user_row(row: dict, prefix: str) -> UserRow:
    return UserRow(
        external_id=_external_id(row, prefix, "user_id"),
        attributes=v.json_object(row.get("attributes"), f"{prefix}.attributes"),
    )


@api_view(methods=["POST"], max_body=_bulk_body_bytes, access=ingestion_access)
def items(request: HttpRequest, body: Any) -> HttpResponse:
    rows = _clean_rows(_bulk_rows(body, "items"), "items", "item_id", _item_row)
    result = item_bulk_upsert(rows=rows)
    return JsonResponse({**result.as_dict(), "errors": []}, status=200)


@api_view(methods=["POST"], max_body=_bulk_body_bytes, access=ingestion_access)
def users(request: HttpRequest, body: Any) -> HttpResponse:
    rows = _clean_rows(_bulk_rows(body, "users"), "users", "user_id", _user_row)
    result = user_bulk_upsert(rows=rows)
    return JsonResponse({**result.as_dict(), "errors": []}, status=200)


# ---------------------------------------------------------------------------- other


@api_view(methods=["GET"], database=False)
def schema(request: HttpRequest, body: Any) -> HttpResponse:
    from experiments.api.openapi import openapi_document

    return JsonResponse(openapi_document(), json_dumps_params={"indent": 1})


@api_view(methods=["GET"], database=False)
def ping(request: HttpRequest, body: Any) -> HttpResponse:
    """A trivial JSON endpoint: the baseline of the serving benchmark."""
    return JsonResponse({"ok": True})


@csrf_exempt
async def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return error_response(404, "not_found", f"no API endpoint at {request.path}")
