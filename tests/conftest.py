import os

import pytest

from tests.support import live


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
    config.addinivalue_line("markers", "e2e: starts real processes (Daphne, Celery, browser)")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """One test database per pytest process, so that concurrent runs on one machine never drop each other's."""
    from django.conf import settings

    test = settings.DATABASES["default"].setdefault("TEST", {})
    base = test.get("NAME") or f"test_{settings.DATABASES['default']['NAME']}"
    test["NAME"] = f"{base}_{os.environ.get('RECSITE_TEST_DB_SUFFIX') or os.getpid()}"


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
