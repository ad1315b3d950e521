"""Celery interface. Tasks are thin: they take ids and call services."""

from __future__ import annotations

import os
import socket

from celery import shared_task


@shared_task(name="recsite.health.ping")
def health_ping() -> dict:
    """Proves a worker is alive and reachable through the broker."""
    return {"ok": True, "host": socket.gethostname(), "pid": os.getpid()}
