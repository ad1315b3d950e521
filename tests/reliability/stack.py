"""A private recsite stack for fault tests: its own Postgres and Redis, migrated and seeded, plus traffic.

``Stack.env`` points child processes (Daphne, Celery) at the private servers;
``Traffic`` is a bounded loopback shopper that records every answer, so a test
can prove "no 5xx" and "every click answered 201 is in Postgres".
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field

import requests

from tests.reliability.private_services import PrivatePostgres, PrivateRedis
from tests.support.live import ROOT, manage

DBNAME = "recsite_faults"
ADMIN_PASSWORD = "faults-Admin-pw-1"

SEED = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from experiments.models import Arm, Experiment, Item
e = Experiment.objects.create(slug="faults", name="Faults", salt="faults-salt", status="running", started_at=timezone.now())
arms = [Arm.objects.create(experiment=e, name=n, kind=k, weight=1.0) for n, k in %(arms)r]
e.control_arm = arms[0]
e.save(update_fields=["control_arm"])
Item.objects.bulk_create([Item(external_id=f"item-{i:03d}", title=f"Item {i}", category=f"c{i %% 4}") for i in range(%(items)d)])
admin = get_user_model().objects.create_user(username="admin", password=%(password)r, is_staff=True)
admin.user_permissions.add(Permission.objects.get(codename="promote_arm"))
print("SEEDED " + json.dumps({"experiment": e.id, "arms": {a.name: a.id for a in arms}}))
"""


@dataclass
class Stack:
    pg: PrivatePostgres
    redis: PrivateRedis
    env: dict
    arms: dict[str, int]

    def db(self):
        return self.pg.connect(DBNAME)

    def destroy(self) -> None:
        self.redis.stop()
        self.pg.destroy()


def stack_make(*, arms: tuple[tuple[str, str], ...] = (("a", "popularity"), ("b", "popularity")),
               items: int = 40) -> Stack:
    """Starts, migrates and seeds the private stack: experiment ``faults`` with ``arms`` (name, kind), ``items`` items."""
    pg, redis = PrivatePostgres(), PrivateRedis()
    try:
        return _stack_start(pg, redis, arms=arms, items=items)
    except BaseException:
        redis.stop()  # a failed set-up must not leave servers behind
        pg.destroy()
        raise


def _stack_start(pg: PrivatePostgres, redis: PrivateRedis, *, arms: tuple[tuple[str, str], ...], items: int) -> Stack:
    pg.start()
    pg.createdb(DBNAME)
    redis.start()
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "recsite.settings",
        "DATABASE_URL": pg.url(DBNAME),
        "REDIS_URL": redis.url,
        "CHANNELS_PREFIX": f"faults-{os.getpid()}",
        "PYTHONUNBUFFERED": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(ROOT),
    })
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    seeded = manage("shell", "-c", SEED % {"password": ADMIN_PASSWORD, "arms": tuple(arms), "items": items}, env=env, timeout=120)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    info = json.loads(seeded.stdout.split("SEEDED ", 1)[1].splitlines()[0])
    return Stack(pg, redis, env, info["arms"])


@dataclass
class Answer:
    at: float
    kind: str  # "recommend" | "click"
    status: int  # 0 = no answer (connection error or timeout)
    code: str
    seconds: float
    impression_id: str | None = None


@dataclass
class Traffic:
    """A shopper loop on its own thread: recommend, then click the first item; about ``rate`` iterations/s."""

    base_url: str
    rate: float = 20.0
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _call(self, session: requests.Session, kind: str, path: str, body: dict) -> tuple[Answer, dict]:
        started = time.monotonic()
        try:
            response = session.post(f"{self.base_url}{path}", json=body, timeout=10)
            payload = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
            status = response.status_code
        except (requests.RequestException, ValueError) as exc:
            payload, status = {"error": {"code": type(exc).__name__}}, 0
        code = (payload.get("error") or {}).get("code", "") if isinstance(payload, dict) else ""
        answer = Answer(time.time(), kind, status, code, time.monotonic() - started)
        self.answers.append(answer)
        return answer, payload

    def _run(self) -> None:
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            tick = time.monotonic()
            _, served = self._call(session, "recommend", "/api/v1/recommendations", {"user_id": f"shopper-{i % 60}", "k": 3})
            items = served.get("items") if isinstance(served, dict) else None
            if items:
                impression_id = items[0]["impression_id"]
                answer, _ = self._call(session, "click", "/api/v1/clicks", {"impression_id": impression_id})
                answer.impression_id = impression_id
            i += 1
            self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - tick)))

    # ------------------------------------------------------------------ summaries
    def statuses(self, kind: str | None = None, since: float = 0.0, until: float = float("inf")) -> list[int]:
        return [a.status for a in list(self.answers) if (kind is None or a.kind == kind) and since <= a.at <= until]

    def clicked(self) -> list[str]:
        """Impression ids whose click was answered 201 (recorded now)."""
        return [a.impression_id for a in list(self.answers) if a.kind == "click" and a.status == 201]


ACCESS_5XX = re.compile(r'^.*" 5\d\d \d+\s*$', re.M)


def server_error_lines(log: str) -> list[str]:
    """Daphne access-log lines of 5xx answers (``"POST /path" 503 115``).

    ``/healthz`` is left out: it answers 503 by design while a process warms (and names a part that is down),
    and the tests' own start-up probes poll it.
    """
    return [line for line in ACCESS_5XX.findall(log) if '"GET /healthz' not in line]


def clicks_missing(stack: Stack, opaque_ids: list[str]) -> list[int]:
    from experiments.services.impression_ids import impression_id_decode

    # The stack's Daphne signs with this process's SECRET_KEY (its environment, or the development key).
    impression_ids = [impression_id_decode(token) for token in opaque_ids]
    conn = stack.db()
    with conn.cursor() as cur:
        cur.execute("SELECT impression_id FROM experiments_click WHERE impression_id = ANY(%s)", [impression_ids])
        stored = {row[0] for row in cur.fetchall()}
    conn.close()
    return sorted(set(impression_ids) - stored)


def login(base_url: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base_url}/accounts/login/", timeout=10)
    response = session.post(
        f"{base_url}/accounts/login/",
        data={"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=10, allow_redirects=False,
    )
    assert response.status_code == 302, response.text[:500]
    return session


def decide(session: requests.Session, base_url: str, arm_id: int, weight: float) -> int:
    """Re-weights an arm through the dashboard form (CSRF and all); returns the HTTP status."""
    url = f"{base_url}/dashboard/faults/arms/{arm_id}/reweight/"
    session.get(url, timeout=10)
    response = session.post(url, data={"reason": "fault test", "weight": str(weight),
                                       "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                            timeout=15, allow_redirects=False)
    return response.status_code
