"""Production settings: ``check --deploy`` is clean, and each hardening knob really is on.

Settings are read from the environment at import, so each case runs in a child
process with the production environment: SECRET_KEY from the environment,
DEBUG off, RECSITE_DEV=0, TLS in front (RECSITE_TLS=1).
"""

import json
import os
import secrets
import subprocess
import sys

import pytest
import requests

from tests.support import live
from tests.support.live import ROOT

HOST = "shop.example.com"


def production_env(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "RECSITE_TLS", "RECSITE_DEV")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "recsite.settings",
        "DEBUG": "0",
        "RECSITE_DEV": "0",
        "RECSITE_TLS": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": HOST,
    })
    env.update(overrides)
    return env


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_under_production_settings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_the_dev_settings():
    """The check has teeth: without TLS the secure-cookie, HSTS and redirect warnings come back."""
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(RECSITE_TLS="0"))

    assert result.returncode != 0
    assert all(code in result.stdout + result.stderr
               for code in ("security.W004", "security.W008", "security.W012", "security.W016"))


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]

    result = run(["manage.py", "check"], env)

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


SETTINGS_PROBE = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({name: getattr(settings, name) for name in (
    "DEBUG", "SECRET_KEY", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_CONTENT_TYPE_NOSNIFF",
    "X_FRAME_OPTIONS", "SECURE_PROXY_SSL_HEADER")}))
"""


def test_production_settings_take_the_key_from_the_environment_and_harden_cookies():
    env = production_env()

    values = json.loads(run(["-c", SETTINGS_PROBE], env).stdout)

    assert values == {
        "DEBUG": False,
        "SECRET_KEY": env["SECRET_KEY"],
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


HTTP_PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="shop.example.com")
plain = client.get("/accounts/login/")
tls = client.get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https")
cookie = tls.cookies.get("csrftoken")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "tls": [tls.status_code, tls.get("Strict-Transport-Security", ""), tls.get("X-Frame-Options", "")],
    "csrf_cookie_secure": bool(cookie and cookie["secure"]),
}))
"""


def test_behind_tls_plain_http_redirects_and_https_answers_with_hsts_and_secure_cookies():
    seen = json.loads(run(["-c", HTTP_PROBE], production_env()).stdout)

    assert seen == {
        "plain": [301, f"https://{HOST}/accounts/login/"],
        "tls": [200, "max-age=31536000; includeSubDomains; preload", "DENY"],
        "csrf_cookie_secure": True,
    }


@pytest.mark.e2e
def test_live_daphne_redirects_plain_http_and_sends_hsts_on_every_path():
    """On the real ASGI application, fast event path included: plain HTTP → HTTPS, HSTS on HTTPS answers."""
    port = live.free_port()
    env = production_env(ALLOWED_HOSTS=f"{HOST},127.0.0.1", DATABASE_URL=f"postgres://127.0.0.1:{live.free_port()}/x")
    daphne = live.LiveProcess("daphne-prod", [str(live.VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                                              "recsite.asgi:application"], env)
    base = f"http://127.0.0.1:{port}"
    try:
        live.wait_until(lambda: requests.get(f"{base}/api/v1/ping", headers={"Host": HOST}, timeout=2,
                                             allow_redirects=False).status_code, timeout=60, what="daphne")
        seen = {}
        for path in ("/api/v1/ping", "/accounts/login/"):
            plain = requests.get(f"{base}{path}", headers={"Host": HOST}, timeout=10, allow_redirects=False)
            tls = requests.get(f"{base}{path}", headers={"Host": HOST, "X-Forwarded-Proto": "https"}, timeout=10,
                               allow_redirects=False)
            seen[path] = (plain.status_code, plain.headers.get("Location"), tls.status_code,
                          tls.headers.get("Strict-Transport-Security"))
    finally:
        daphne.stop()

    hsts = "max-age=31536000; includeSubDomains; preload"
    assert seen == {
        "/api/v1/ping": (301, f"https://{HOST}/api/v1/ping", 200, hsts),
        "/accounts/login/": (301, f"https://{HOST}/accounts/login/", 200, hsts),
    }
