"""The Celery application: broker and result backend on Redis, queues, beat schedule."""

import os

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")

app = Celery("recsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _logging(loglevel=None, **_kwargs) -> None:
    """Celery's processes log through Django's LOGGING, so RECSITE_LOG_FORMAT=json gives JSON lines there too.

    Connecting this receiver is what stops Celery from installing its own root handler; ``-l`` still sets the level.
    """
    import logging
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)
