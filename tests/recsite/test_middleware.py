"""Page views over ASGI do not pile up Postgres connections."""

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
import requests
from django.db import connection

from tests.support.live import start_daphne


class ConnectionSampler(threading.Thread):
    """Samples how many server connections the test database has, keeping the peak."""

    def __init__(self, db_name: str):
        super().__init__(daemon=True)
        self.db_name = db_name
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(host="127.0.0.1", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            while not self.done.wait(0.05):
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.db_name])
                self.peak = max(self.peak, cursor.fetchone()[0])
        conn.close()


@pytest.mark.e2e
def test_concurrent_page_views_hold_a_bounded_number_of_connections(transactional_db):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="viewer", password="viewer-pass-123")
    proc, url = start_daphne()
    sampler = ConnectionSampler(connection.settings_dict["NAME"])
    try:
        session = requests.Session()
        session.get(f"{url}/accounts/login/", timeout=30)
        session.post(
            f"{url}/accounts/login/",
            data={"username": "viewer", "password": "viewer-pass-123", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{url}/accounts/login/"},
            timeout=30,
        )
        cookies = session.cookies
        sampler.start()
        with ThreadPoolExecutor(8) as pool:
            statuses = set(pool.map(lambda _: requests.get(f"{url}/dashboard/", cookies=cookies, timeout=60).status_code,
                                    range(200)))
    finally:
        sampler.done.set()
        sampler.join(timeout=10)
        proc.stop()
    assert statuses == {200}
    # 8 clients, plus the test's own connection and the server's background ones. Without the
    # middleware every page view kept its connection until garbage collection: 64 at the peak here.
    assert sampler.peak < 20
