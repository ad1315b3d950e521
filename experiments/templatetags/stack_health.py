"""The dashboard's banner for background parts that have not checked in (experiments/heartbeats.py)."""

from __future__ import annotations

import logging

import redis
from django import template

from experiments.heartbeats import PARTS, parts_missing

register = template.Library()
log = logging.getLogger(__name__)

CONSEQUENCES = {
    "trainer": "no arm learns",
    "light worker": "nothing is dispatched for training and the live numbers stop",
    "beat": "no training, stats or guardrail tick is scheduled",
}


@register.inclusion_tag("dashboard/_stack_banner.html")
def stack_banner() -> dict:
    try:
        missing = parts_missing()
    except redis.RedisError as exc:
        log.warning("stack_banner_unknown error=%s", type(exc).__name__)
        missing = []
    return {"missing": missing, "consequences": [CONSEQUENCES[p] for p in missing], "parts": PARTS}
