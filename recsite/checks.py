"""Deployment checks of recsite's own settings, beside Django's (``manage.py check --deploy``).

Django's ``security.W009`` already flags a short or ``django-insecure-`` key; these name our own
development switches, so that a production install that kept one of them fails the same check.
"""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Info, Tags, Warning, register


@register(Tags.security, deploy=True)
def recsite_deploy_check(app_configs, **kwargs) -> list:
    found: list = []
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        found.append(Warning(
            "SECRET_KEY is recsite's built-in development key: sessions, CSRF tokens and impression ids "
            "can be forged by anyone who has read the source.",
            hint="Set SECRET_KEY to at least 50 random characters.", id="recsite.W001"))
    if settings.RECSITE_DEV:
        found.append(Warning(
            "RECSITE_DEV=1 (development mode): the development key is allowed, ingestion is open without a key, "
            "TLS hardening is off by default and seed_demo resets passwords.",
            hint="Unset RECSITE_DEV (or set it to 0) in production.", id="recsite.W002"))
    recsite = settings.RECSITE
    if recsite.get("PUBLIC_INGEST") and not recsite.get("API_KEY"):
        found.append(Info(
            "RECSITE_PUBLIC_INGEST=1 without RECSITE_API_KEY: anyone can rewrite the catalogue and users.",
            hint="Set RECSITE_API_KEY unless this install is meant to be open.", id="recsite.I001"))
    return found
