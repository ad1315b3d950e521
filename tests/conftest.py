import os

# Tests keep their queues and channel groups apart from a demo running on the same Redis.
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("CHANNELS_PREFIX", "recsite-test")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tests.support import live  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
    config.addinivalue_line("markers", "e2e: starts real processes (Daphne, Celery, browser)")


@pytest.fixture
def daphne_server(transactional_db):
    """A live Daphne serving the project against the test database; yields its base URL."""
    proc, url = live.start_daphne()
    yield url
    proc.stop()


@pytest.fixture
def worker_factory(transactional_db):
    """Starts real Celery workers (``factory(queues=..., pool=...)``) and stops them at teardown."""
    started: list[live.LiveProcess] = []

    def factory(**kwargs) -> live.LiveProcess:
        proc = live.start_worker(**kwargs)
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.stop()
