"""Shop pages. The grid is served by the same service as ``POST /api/v1/recommendations``
(so every tile shown is a logged impression); clicks go through the public
``POST /api/v1/clicks`` from ``static/shop/shop.js`` before the product page opens.

The tiles' "Add to cart" and "Buy" buttons post to :func:`shop_event` (same origin, CSRF token), which
records the business event server-side through the service behind ``POST /api/v1/events``: the shopper
is the visitor cookie and a purchase's value is the catalogue price, never what the page says — the
way a real shop reports orders from its servers (the public endpoint is ingestion, keyed).

The visitor is ``?user=<id>`` if given (remembered in a cookie), else the
``recsite_shopper`` cookie, else a new random visitor id.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from experiments.api import validation as v
from experiments.api.dbpool import run_db
from experiments.api.errors import application_error_response, exception_response
from experiments.api.validation import identifier
from experiments.errors import ApplicationError
from experiments.models import Item
from experiments.services import business_events
from experiments.services.events import recommendation_serve

COOKIE = "recsite_shopper"
GRID_SIZE = 12


def _visitor(request: HttpRequest) -> tuple[str, bool]:
    """(visitor id, whether to (re)set the cookie)."""
    given = request.GET.get("user")
    if given:
        return given, True
    cookie = request.COOKIES.get(COOKIE)
    if cookie:
        return cookie, False
    return f"visitor-{secrets.token_hex(6)}", True


def _grid(user_id: str) -> dict[str, Any]:
    result = recommendation_serve(user_id=user_id, k=GRID_SIZE, context={"source": "shop"})
    by_id = {i.external_id: i for i in Item.objects.filter(external_id__in=[s.item_id for s in result.items])}
    tiles = [{"served": served, "item": by_id.get(served.item_id)} for served in result.items]
    return {"result": result, "tiles": tiles}


async def shop_home(request: HttpRequest) -> HttpResponse:
    user_id, set_cookie = _visitor(request)
    context: dict[str, Any] = {"user_id": user_id}
    status = 200
    try:
        identifier(user_id, "user")
    except ApplicationError as exc:
        context["problem"], status, set_cookie = exc.message, 400, False
    else:
        try:
            context.update(await run_db(request, _grid, user_id))
        except ApplicationError as exc:
            context["problem"], status = exc.message, (503 if exc.status >= 500 else 409)
    response = render(request, "shop/home.html", context, status=status)
    if set_cookie:
        response.set_cookie(COOKIE, user_id, max_age=30 * 24 * 3600, samesite="Lax", httponly=True)
    return response


def _item(external_id: str) -> Item | None:
    return Item.objects.filter(external_id=external_id).first()


async def shop_item(request: HttpRequest) -> HttpResponse:
    external_id = request.GET.get("id", "")
    item = await run_db(request, _item, external_id) if external_id and "\x00" not in external_id else None
    return render(request, "shop/item.html", {"item": item, "external_id": external_id}, status=200 if item else 404)


SHOP_EVENT_TYPES = ("add_to_cart", "purchase")


def _shop_event(user_id: str, body: dict[str, Any]) -> business_events.BusinessEventResult:
    event_type = body.get("type")
    if event_type not in SHOP_EVENT_TYPES:
        raise ApplicationError("unknown_type", f"type must be one of {list(SHOP_EVENT_TYPES)}", field="type")
    item = _item(v.identifier(body.get("item_id"), "item_id"))
    if item is None:
        raise ApplicationError("item_not_found", "no such item in the catalogue", status=404, field="item_id")
    impression_id = body.get("impression_id")
    if not isinstance(impression_id, str) or not impression_id:
        raise ApplicationError("required", "impression_id is required", field="impression_id")
    event_id = body.get("event_id")
    try:
        return business_events.business_event_record(
            user_id=user_id, event_type=event_type, item_id=item.external_id,
            value=item.price if event_type == "purchase" else None, impression_id=impression_id,
            event_id=None if event_id is None else v.identifier(event_id, "event_id"))
    except business_events.UnknownImpression:
        raise ApplicationError("impression_not_found", "no such impression for this visitor", status=404,
                               field="impression_id") from None


@require_POST
async def shop_event(request: HttpRequest) -> HttpResponse:
    """``{"type": "add_to_cart"|"purchase", "item_id", "impression_id", "event_id"?}`` from a tile's button."""
    try:
        user_id = request.COOKIES.get(COOKIE)
        if not user_id:
            raise ApplicationError("no_visitor", "open the shop first: no visitor cookie", field="user_id")
        identifier(user_id, "user_id")
        body = v.parse_json(request.body)
        if not isinstance(body, dict):
            raise ApplicationError("invalid_type", "the body must be a JSON object")
        result = await run_db(request, _shop_event, user_id, body)
    except ApplicationError as exc:
        return application_error_response(exc)
    except Exception as exc:  # JSON for the page's script, whatever happened (logged by exception_response)
        return exception_response(exc, path=request.path)
    return JsonResponse(result.as_dict(), status=201 if result.created else 200)
