"""Django starts without TensorFlow, its checks are clean, and migrations apply from zero."""

import subprocess
import sys
import uuid

import psycopg2
import pytest

from tests.support.live import ROOT, live_env


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_django_setup_does_not_import_tensorflow():
    # Every module of the app, so one that imports models.base or models.types at its top is covered too.
    code = (
        "import importlib, os, pkgutil, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'recsite.settings')\n"
        "django.setup()\n"
        "import recsite.asgi, recsite.urls, experiments\n"
        "for m in pkgutil.walk_packages(experiments.__path__, 'experiments.'):\n"
        "    if '.migrations' not in m.name: importlib.import_module(m.name)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_manage_check_is_clean():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_makemigrations_check_is_clean():
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
def test_migrations_apply_from_zero_on_an_empty_database():
    from django.db import connection

    name = f"recsite_migrate_{uuid.uuid4().hex[:8]}"
    params = {"host": connection.settings_dict.get("HOST") or "127.0.0.1", "port": connection.settings_dict.get("PORT") or 5432}
    admin = psycopg2.connect(dbname="postgres", **params)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        env = live_env({"DATABASE_URL": f"postgres://{params['host']}:{params['port']}/{name}"})
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stdout + result.stderr
        check = psycopg2.connect(dbname=name, **params)
        with check.cursor() as cur:
            cur.execute("SELECT count(*) FROM django_migrations WHERE app = 'experiments'")
            applied = cur.fetchone()[0]
        check.close()
        assert applied >= 1
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.django_db
def test_postgres_jit_is_off_on_the_apps_connections_unless_asked_for():
    """JIT compiled recsite's millisecond queries for 0.2-1.8 s whenever statistics ran stale (recsite/settings.py)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
    code = ("import os, django\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'recsite.settings')\ndjango.setup()\n"
            "from django.conf import settings\nprint(settings.DATABASES['default']['OPTIONS'].get('options', ''))\n")
    env = live_env()
    assert "jit=off" in run_python(code, env={**env, "RECSITE_PG_JIT": "off"}).stdout
    on = run_python(code, env={**env, "RECSITE_PG_JIT": "on"})
    assert on.returncode == 0, on.stderr
    assert "jit" not in on.stdout
