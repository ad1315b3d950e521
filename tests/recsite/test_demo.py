"""`make demo` comes up from a fresh clone, answers /healthz, and Ctrl-C stops all it started."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest
import requests

from tests.support.live import ROOT, free_port, wait_until


def pids_in_group(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid="], capture_output=True, text=True).stdout
    return [int(pid) for pid, group in (line.split() for line in out.splitlines()) if int(group) == pgid]


@pytest.mark.e2e
@pytest.mark.slow
def test_make_demo_from_a_fresh_clone_starts_answers_and_stops(tmp_path: Path):
    clone = tmp_path / "recsite"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    db_name = f"recsite_demo_{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            # The clone reuses this checkout's virtualenv so the test does not download TensorFlow again.
            "VENV": str(Path(sys.executable).parent.parent),
            "DEMO_PORT": str(port),
            "DATABASE_URL": f"postgres://127.0.0.1:5432/{db_name}",
            "REDIS_URL": "redis://127.0.0.1:6379/2",
            "DEMO_RATE": "5",
            "DEMO_SHOPPERS": "20",
        }
    )
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: b"recsite demo is up" in (tmp_path / "demo.log").read_bytes(), timeout=600, interval=0.5,
                   what="the demo banner")
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        banner = (tmp_path / "demo.log").read_text()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        admin = psycopg2.connect(host="127.0.0.1", dbname="postgres")
        admin.autocommit = True
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        admin.close()
    assert health.status_code == 200
    assert f"http://127.0.0.1:{port}/dashboard/" in banner
    assert "login (admin): admin /" in banner
    assert "login (analyst): analyst /" in banner
    # make itself gets the Ctrl-C too and reports it; the launcher has already cleaned up by then.
    assert code in (0, -signal.SIGINT)
    assert "stopped everything it started" in (tmp_path / "demo.log").read_text()
    wait_until(lambda: pids_in_group(proc.pid) == [], timeout=30, what="every demo process to exit")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
