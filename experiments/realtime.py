"""The one module that talks to the Channels layer. Callers send after commit."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def group_name(slug: str) -> str:
    return f"experiment.{slug}"


def publish(slug: str, payload: dict) -> bool:
    """Sends ``payload`` to every dashboard watching ``slug``; False when the layer is down.

    A dead Redis must not break the write that triggered the event: the dashboard
    catches up from its next snapshot.
    """
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group_name(slug), {"type": "experiment.event", "payload": payload})
    except Exception as exc:
        log.warning("realtime_publish_failed slug=%s error=%s", slug, exc)
        return False
    return True
