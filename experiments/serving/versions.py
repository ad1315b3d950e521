"""The model-version notification between training and serving: a Redis pub/sub channel.

Training publishes ``{"arm_id", "version"}`` on :data:`MODEL_VERSION_CHANNEL`
after each checkpoint commits. (Serving processes poll the database for new
versions; nothing subscribes to this channel yet.)
"""

from __future__ import annotations

import json
import logging

import redis
from django.conf import settings

log = logging.getLogger(__name__)

MODEL_VERSION_CHANNEL = "recsite:model_version"


def model_version_notify(*, arm_id: int, version: int) -> bool:
    """Publishes a committed version; False (logged) when Redis is down. Never raises."""
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
        client.publish(MODEL_VERSION_CHANNEL, json.dumps({"arm_id": arm_id, "version": version}))
    except Exception as exc:
        log.warning("model_version_publish_failed arm=%s version=%s error=%s", arm_id, version, exc)
        return False
    return True
