"""Celery interface. Tasks are thin: they take ids and call services."""

from __future__ import annotations

import os
import socket

from celery import shared_task


@shared_task(name="recsite.health.ping")
def health_ping() -> dict:
    """Proves a worker is alive and reachable through the broker."""
    return {"ok": True, "host": socket.gethostname(), "pid": os.getpid()}


@shared_task(name="recsite.stats.tick", ignore_result=True, expires=5)
def stats_tick(experiment_id: int | None = None) -> dict:
    """One live-stats tick for one experiment, or for every live one (beat, every second; queue ``default``).

    ``expires`` drops ticks that waited too long in the queue: the next one is fresher.
    """
    from experiments.services import stats as stats_services

    if experiment_id is not None:
        return {"seq": stats_services.stats_tick(experiment_id=experiment_id)["stats"]["seq"]}
    return stats_services.stats_tick_running()
