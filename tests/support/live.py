"""Real processes for end-to-end tests: Daphne, Celery workers, beat, management commands.

They run against the test database that pytest-django created, so a test that uses
them must use the ``transactional_db`` fixture (rows must be committed to be seen).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def live_env(extra: dict | None = None) -> dict:
    """Environment for a child process that must see the same database and Redis as the test."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    user = db.get("USER") or ""
    auth = f"{user}@" if user else ""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "recsite.settings",
            "REDIS_URL": settings.REDIS_URL,
            "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
            "DATABASE_URL": f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}",
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # Tests write fixtures straight through the ORM, which announces nothing: a live server polls
            # at the fast interval, as it does while unsubscribed (tests of the announcement raise it).
            "RECSITE_SERVING_POLL_SUBSCRIBED_S": "0.25",
        }
    )
    env.update(extra or {})
    return env


class LiveProcess:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict, cwd: Path = ROOT):
        ARTIFACTS.mkdir(exist_ok=True)
        self.name = name
        self.log_path = ARTIFACTS / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> int:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a process that is still starting refuses connections
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def start_daphne(env: dict | None = None, port: int | None = None) -> tuple[LiveProcess, str]:
    port = port or free_port()
    proc = LiveProcess(
        "daphne",
        [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "recsite.asgi:application"],
        env or live_env(),
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"daphne exited:\n{proc.output()[-3000:]}")
        response = requests.get(f"{url}/healthz", timeout=2)
        # Ready (200), or down for a reason a test may be about (503 unavailable); never while still warming.
        return response.status_code == 200 or (response.status_code == 503 and response.json()["status"] != "warming")

    wait_until(up, timeout=120, what="daphne to answer /healthz (warm)")
    return proc, url


def start_worker(
    queues: str = "default", pool: str = "solo", env: dict | None = None, name: str | None = None, extra: Sequence[str] = ()
) -> LiveProcess:
    hostname = name or f"test-{queues.replace(',', '-')}-{time.monotonic_ns()}@%h"
    return LiveProcess(
        "celery-worker",
        [
            str(VENV_BIN / "celery"), "-A", "recsite", "worker", "-Q", queues, "-P", pool,
            "-n", hostname, "--without-gossip", "--without-mingle", "-l", "INFO", *extra,
        ],
        env or live_env(),
    )


def manage(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env or live_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def start_beat(*, schedule: Path, env: dict | None = None) -> LiveProcess:
    """Celery beat with its schedule file at ``schedule`` (a tmp path: runs never share one)."""
    return LiveProcess(
        "celery-beat",
        [str(VENV_BIN / "celery"), "-A", "recsite", "beat", "-l", "INFO", "-s", str(schedule)],
        env or live_env(),
    )


def start_gunicorn(*, workers: int, env: dict | None = None, port: int | None = None) -> tuple[LiveProcess, str]:
    """The production web server (recsite/gunicorn_conf.py): ``workers`` uvicorn processes on one port; waits
    until /healthz answers 200 (a worker accepts only once it is warm)."""
    port = port or free_port()
    env = dict(env or live_env())
    env.update({"WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)})
    proc = LiveProcess("gunicorn", [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "recsite" / "gunicorn_conf.py"),
                                    "recsite.asgi:application"], env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise RuntimeError(f"gunicorn exited:\n{proc.output()[-3000:]}")
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200

    wait_until(up, timeout=180, interval=0.2, what="gunicorn to answer /healthz 200")
    return proc, url


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def connection_owner(*, server_port: int, client_port: int, pids: Sequence[int]) -> int | None:
    """Which of ``pids`` holds the server side of the TCP connection from ``client_port`` (Linux /proc)."""
    wanted = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, remote_port = int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16)
            if local_port == server_port and remote_port == client_port:
                wanted = fields[9]
    if wanted is None:
        return None
    return next((pid for pid in pids if wanted in _socket_inodes(pid)), None)
