"""Reads of the serving guardrail metrics per arm: what the web processes counted in Redis over the window.

The counts are written by :mod:`experiments.serving.health`; the rules and figures are
:mod:`experiments.stats.serving_health`'s. The window is the last ``RECSITE["GUARDRAIL_WINDOW_MINUTES"]`` (15)
whole and current minutes; an arm's window starts no earlier than the minute it was made, and for the guardrails
only after an operator last resumed it (what it did before does not count). Part of every stats tick's payload (``payload["guardrail_metrics"]``) and read live
by the guardrails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import redis
from django.conf import settings

from experiments.models import Arm, Experiment, GuardrailBounds, Item
from experiments.serving.health import cover_key, health_key, redis_client
from experiments.stats.serving_health import ArmHealth, Bounds, breaches

log = logging.getLogger(__name__)


def window_minutes() -> int:
    return max(1, min(120, int(settings.RECSITE.get("GUARDRAIL_WINDOW_MINUTES", 15))))


def bounds_of(experiment: Experiment) -> Bounds:
    """The experiment's bounds (the defaults when it has no row); no query when they were ``select_related``."""
    if Experiment.guardrail_bounds.is_cached(experiment):
        try:
            row = experiment.guardrail_bounds
        except GuardrailBounds.DoesNotExist:
            row = None
    else:
        row = GuardrailBounds.objects.filter(experiment=experiment).first()
    return Bounds() if row is None else Bounds(**{name: getattr(row, name) for name in Bounds().as_dict()})


def _minutes(now_s: float, arm: Arm, resumed: datetime | None, window: int) -> list[int]:
    """The window's minutes for this arm: from the arm's creation's minute (a key left by an earlier database of
    the same name is older), and only minutes that began after a resume."""
    current = int(now_s // 60)
    first = current - window + 1
    if arm.created_at is not None:
        first = max(first, int(arm.created_at.timestamp() // 60))
    if resumed is not None:
        first = max(first, int(resumed.timestamp() // 60) + 1)
    return list(range(first, current + 1))


def arms_health(*, experiment: Experiment, arms: Iterable[Arm], resumed: Mapping[int, datetime | None] | None = None,
                now_s: float | None = None, active_items: int | None = None) -> dict[int, ArmHealth] | None:
    """Each arm's serving over the window, read in one Redis round trip; None when Redis is unreachable."""
    now_s = time.time() if now_s is None else now_s
    window = window_minutes()
    arms = list(arms)
    arm_ids = [arm.id for arm in arms]
    active = Item.objects.filter(active=True).count() if active_items is None else active_items
    spans = {arm.id: _minutes(now_s, arm, (resumed or {}).get(arm.id), window) for arm in arms}
    try:
        pipe = redis_client().pipeline(transaction=False)
        for arm_id in arm_ids:
            for minute in spans[arm_id]:
                pipe.hgetall(health_key(experiment.id, arm_id, minute))
            if spans[arm_id]:
                pipe.pfcount(*[cover_key(experiment.id, arm_id, m) for m in spans[arm_id]])
            else:  # resumed this minute: nothing to read yet
                pipe.echo("0")
        replies = pipe.execute()
    except redis.RedisError as exc:
        log.warning("serving_health_read_failed experiment=%s error=%s", experiment.slug, exc)
        return None
    out: dict[int, ArmHealth] = {}
    at = 0
    for arm_id in arm_ids:
        requests = errors = shown = 0
        latency: dict[int, int] = {}
        for fields in replies[at:at + len(spans[arm_id])]:
            for name, value in fields.items():
                name, value = name.decode(), int(value)
                if name == "n":
                    requests += value
                elif name == "e":
                    errors += value
                elif name == "s":
                    shown += value
                elif name.startswith("b"):
                    latency[int(name[1:])] = latency.get(int(name[1:]), 0) + value
        at += len(spans[arm_id])
        distinct = int(replies[at])
        at += 1
        out[arm_id] = ArmHealth(requests=requests, errors=errors, latency=latency, shown=shown,
                                distinct_items=distinct, active_items=active)
    return out


def guardrail_metrics_section(*, experiment: Experiment, arms: list[Arm], now_s: float | None = None
                              ) -> dict[str, Any]:
    """``payload["guardrail_metrics"]``: the window, the bounds and each arm's figures with the bounds it breaches
    (interleaved slates are made by several arms at once and are not counted)."""
    bounds = bounds_of(experiment)
    section: dict[str, Any] = {"window_minutes": window_minutes(), "bounds": bounds.as_dict(), "available": True,
                               "arms": []}
    health = arms_health(experiment=experiment, arms=arms, now_s=now_s)
    if health is None:
        section["available"] = False
        return section
    for arm in arms:
        figures = health[arm.id]
        section["arms"].append({"arm": arm.name, **figures.as_dict(),
                                "breaches": [b.rule for b in breaches(figures, bounds)]})
    return section
