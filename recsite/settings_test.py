"""Settings for the test suite: the production settings in development mode (RECSITE_DEV=1: the dev key, open
ingestion, no TLS redirect), with Redis state kept apart from a demo on the same machine.

Set in the environment, so the real processes that tests start (Daphne, Celery, manage.py) inherit them; the
tests of the production posture start their children with RECSITE_DEV=0 explicitly.
"""

import os

os.environ.setdefault("RECSITE_DEV", "1")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("CHANNELS_PREFIX", "recsite-test")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from recsite.settings import *  # noqa: E402,F403
