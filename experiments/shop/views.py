"""Shop pages. The grid is served by the same service as ``POST /api/v1/recommendations``
(so every tile shown is a logged impression); clicks go through the public
``POST /api/v1/clicks`` from ``static/shop/shop.js`` before the product page opens.

The visitor is ``?user=<id>`` if given (remembered in a cookie), else the
``recsite_shopper`` cookie, else a new random visitor id.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from experiments.api.dbpool import run_db
from experiments.api.validation import identifier
from experiments.errors import ApplicationError
from experiments.models import Item
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
