"""Shared plumbing of bench_serving.py and bench_import.py: a scratch database and the docs table.

Benchmarks run against their own database (``recsite_bench`` by default), never
the demo's, and rewrite only their own section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DOC = ROOT / "docs" / "benchmarks.md"


def bench_database_url(name: str) -> str:
    return f"postgres://{os.environ.get('PGUSER', 'root')}@127.0.0.1:5432/{name}"


def bench_database_create(name: str) -> str:
    """Drops and re-creates ``name``, migrates it, and points this process's Django at it."""
    url = bench_database_url(name)
    os.environ.setdefault("RECSITE_DEV", "1")  # a bench machine is a development machine (manage.py needs a posture)
    admin = ["psql", "-h", "127.0.0.1", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
    subprocess.run([*admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)
    subprocess.run([*admin, "-c", f'CREATE DATABASE "{name}"'], check=True)
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run([str(VENV_BIN / "python"), str(ROOT / "manage.py"), "migrate", "-v", "0"], env=env, check=True,
                   cwd=ROOT)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return url


def doc_section_write(title: str, body: str) -> None:
    """Replaces the ``## title`` section of docs/benchmarks.md (creating the file or section)."""
    DOC.parent.mkdir(exist_ok=True)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nMeasured on the shared 2-core machine; noisy, so medians and same-run ratios.\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text.rstrip() + "\n")
