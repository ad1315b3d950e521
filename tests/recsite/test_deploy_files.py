"""The deployment files: the Procfile's processes run as written and make a whole stack; docker-compose.yml runs the
same commands as the Procfile against its own Postgres and Redis (Docker itself is not on the test machines)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import requests
import yaml

from tests.support import live

ROOT = Path(__file__).resolve().parents[2]


def _procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            entries[name.strip()] = command.strip()
    return entries


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _argv(command: str) -> list[str]:
    """A Procfile command without its leading VAR=value assignments."""
    words = shlex.split(command)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    return words


def test_the_procfile_names_every_part_of_the_stack():
    assert list(_procfile()) == ["release", "web", "trainer", "worker", "beat"]


def test_compose_has_the_stack_and_runs_the_procfile_commands():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "trainer", "worker", "beat"}
    procfile = _procfile()
    same = {"web": "web", "trainer": "trainer", "worker": "worker", "migrate": "release"}
    for service, entry in same.items():
        assert services[service]["command"] == _argv(procfile[entry]), service
    # beat's schedule file goes to /tmp in the container (the image's files are read-only to its user).
    assert services["beat"]["command"][:-1] == _argv(procfile["beat"])[:-1]
    app_services = ("migrate", "web", "trainer", "worker", "beat")
    for service in app_services:
        env = services[service]["environment"]
        assert env["DATABASE_URL"].endswith("@postgres:5432/recsite") and env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["PROMETHEUS_MULTIPROC_DIR"] == "/metrics" and "metrics:/metrics" in services[service]["volumes"]
        assert "RECSITE_DEV" not in env  # the production posture
    for service in ("web", "trainer", "worker", "beat"):
        assert services[service]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["web"]["environment"]["WEB_BIND"] == "0.0.0.0:8000"


@pytest.mark.e2e
def test_the_procfile_processes_start_as_written_and_check_in(transactional_db, tmp_path):
    from django.core.management import call_command

    from experiments.heartbeats import parts_missing

    call_command("seed_demo", "--items", "30", "--users", "5", stdout=open(os.devnull, "w"))
    port = live.free_port()
    env = live.live_env({"PORT": str(port), "PATH": f"{live.VENV_BIN}{os.pathsep}{os.environ['PATH']}",
                         "WEB_CONCURRENCY": "1", "RECSITE_CHECKIN_INTERVAL_S": "0.5", "RECSITE_CHECKIN_STALE_S": "5"})
    procs = []
    try:
        for name in ("web", "trainer", "worker", "beat"):
            command = _procfile()[name].replace("var/celerybeat-schedule", str(tmp_path / "beat-schedule"))
            procs.append(live.LiveProcess(f"procfile-{name}", ["bash", "-c", command], env))
        url = f"http://127.0.0.1:{port}"
        live.wait_until(lambda: requests.get(f"{url}/healthz", timeout=5).status_code == 200, timeout=180,
                        what="the Procfile's web on $PORT")
        live.wait_until(lambda: not parts_missing(), timeout=120, interval=0.2,
                        what="the Procfile's trainer, worker and beat to check in")
        health = requests.get(f"{url}/healthz", timeout=5).json()
        served = requests.post(f"{url}/api/v1/recommendations", json={"user_id": "procfile", "k": 3}, timeout=30)
    finally:
        for proc in procs:
            proc.stop()
    assert health["status"] == "ok" and set(health["parts"].values()) == {"ok"}
    assert served.status_code == 200 and len(served.json()["items"]) == 3
