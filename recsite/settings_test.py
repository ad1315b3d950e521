"""Settings for the test suite: the production settings, with Redis state kept apart from a demo on the same machine."""

import os

os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("CHANNELS_PREFIX", "recsite-test")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsite.settings import *  # noqa: E402,F403
