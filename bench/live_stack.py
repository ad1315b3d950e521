"""The whole product as benchmarks run it: a fresh database, then web, trainer(s), light worker and beat.

Shared by ``learning_e2e.py`` and ``learning_race.py``::

    django_for(database_url, redis_url, prefix="recsite-bench-x")   # fresh DB, migrate, django.setup()
    with running_stack(asgi_app="recsite.asgi:application") as url:
        ...  # drive it over HTTP

Each benchmark uses its own database and its own Redis database, so a demo or a
test run on the same machine is not disturbed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fresh_database(database_url: str) -> None:
    import psycopg2

    base, name = database_url.rsplit("/", 1)
    conn = psycopg2.connect(base + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def django_for(database_url: str, redis_url: str, *, prefix: str, extra_env: dict[str, str] | None = None) -> None:
    """A fresh, migrated database and an empty Redis database; Django set up on them in this process."""
    if "django.db" in sys.modules:  # a second run in this process: let go of the old database first
        from django.db import connections

        connections.close_all()
    fresh_database(database_url)
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CHANNELS_PREFIX": prefix,
            "DJANGO_SETTINGS_MODULE": "recsite.settings",
            "RECSITE_DEV": os.environ.get("RECSITE_DEV", "1"),  # a bench machine is a development machine
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
    )
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], check=True)
    import django
    import redis

    django.setup()
    redis.Redis.from_url(redis_url).flushdb()


@contextmanager
def running_stack(*, asgi_app: str = "recsite.asgi:application", trainers: int = 1, web: str = "gunicorn",
                  web_processes: int | None = None) -> Iterator[str]:
    """The web server, ``trainers`` warm trainers (``-Q training -P solo``), a light worker and beat; yields the base URL.

    ``web="gunicorn"`` (the default) is what the demo, the Procfile and docker-compose ship: recsite/gunicorn_conf.py,
    one uvicorn process per core (``web_processes`` overrides); ``web="daphne"`` is one Daphne process serving
    ``asgi_app``. The light worker runs as the demo's does (``-P threads -c 4``).
    """
    import requests

    from tests.support import live

    env = dict(os.environ)
    procs = []
    beat_dir = tempfile.mkdtemp(prefix="recsite-beat-")
    try:
        if web == "gunicorn":
            if asgi_app != "recsite.asgi:application":
                raise ValueError("gunicorn serves recsite.asgi:application (recsite/gunicorn_conf.py); use web='daphne'")
            server, url = live.start_gunicorn(workers=web_processes or len(os.sched_getaffinity(0)), env=env)
            procs.append(server)
        elif web == "daphne":
            port = live.free_port()
            procs.append(
                live.LiveProcess("daphne", [str(live.VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), asgi_app],
                                 env)
            )
            url = f"http://127.0.0.1:{port}"
            live.wait_until(lambda: requests.get(f"{url}/healthz", timeout=2).status_code in (200, 503), timeout=90,
                            what="daphne")
        else:
            raise ValueError(f"web must be 'gunicorn' or 'daphne', not {web!r}")
        started = [
            live.start_worker(queues="training", pool="solo", env=env, name=f"bench-trainer-{i}@%h")
            for i in range(trainers)
        ]
        procs.extend(started)
        for t in started:  # a deployed trainer is long running: measure it warm (TF imported, graphs built)
            live.wait_until(lambda t=t: "train_warmup_done" in t.output(), timeout=180, what="trainer warm-up")
        procs.append(live.start_worker(queues="default", pool="threads", env=env, name="bench-default@%h",
                                       extra=("-c", "4")))
        procs.append(
            live.LiveProcess(
                "celery-beat",
                [str(live.VENV_BIN / "celery"), "-A", "recsite", "beat", "-l", "INFO",
                 "-s", str(Path(beat_dir) / "schedule")],
                env,
            )
        )
        yield url
    finally:
        for p in procs:
            p.stop()


def simulate(url: str, *args: str, json_path: Path) -> dict:
    """``manage.py simulate`` against the stack; its JSON report."""
    import json

    sim = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "simulate", "--base-url", url, *args, "--json", str(json_path),
         "--no-progress"],
        env=dict(os.environ), capture_output=True, text=True,
    )
    if sim.returncode != 0:
        raise SystemExit(f"simulate failed:\n{sim.stdout[-3000:]}\n{sim.stderr[-3000:]}")
    return json.loads(json_path.read_text())


def demo_arms_with(pairs: list[list[str]], error) -> list[tuple[str, str, dict]]:
    """``DEMO_ARMS`` with ``--set ARM JSON`` pairs merged into their params; ``error(msg)`` reports a bad pair."""
    import json

    from experiments.services.demo import DEMO_ARMS
    from models.registry import validate_params

    names = {name for name, _, _ in DEMO_ARMS}
    overrides: dict[str, dict] = {}
    for name, raw in pairs:
        if name not in names:
            error(f"--set {name}: no demo arm of that name (demo arms: {', '.join(sorted(names))})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            error(f"--set {name}: not JSON: {exc}")
        if not isinstance(value, dict):
            error(f"--set {name}: expected a JSON object, got {raw}")
        overrides.setdefault(name, {}).update(value)
    arms = [(name, kind, {**params, **overrides.get(name, {})}) for name, kind, params in DEMO_ARMS]
    for name, kind, params in arms:
        if name in overrides:
            try:
                validate_params(kind, params)
            except ValueError as exc:
                error(f"--set {name}: {exc}")
    return arms


def set_flag(ap) -> None:
    """The ``--set ARM JSON`` option of the race benches."""
    ap.add_argument("--set", nargs=2, action="append", default=[], metavar=("ARM", "JSON"),
                    help="merge JSON params into a demo arm's, e.g. --set deep '{\"epochs\": 2}' (repeatable)")
