"""Staff bearer tokens for the operator API: issue (shown once), authenticate, revoke.

A token is ``rs_`` + 32 random bytes (URL-safe base64); only its SHA-256 is
stored, so a leaked database does not leak usable tokens. A request carrying
``Authorization: Bearer <token>`` acts as the token's user: it needs no session
and no CSRF token (a browser never sends it by itself), and the user's own
permissions still apply (staff to use the API, promote_arm to change traffic).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from experiments.errors import ApplicationError
from experiments.models import ApiToken

PREFIX = "rs_"
# ``last_used_at`` is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def api_token_issue(*, user, name: str, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for a staff user: ``(row, plaintext)``; the plaintext is never stored."""
    if not user.is_staff or not user.is_active:
        raise ApplicationError("not_staff", "API tokens are for active staff users only.", field="user")
    if not (name or "").strip():
        raise ApplicationError("required", "Name the token after what uses it (e.g. 'ci').", field="name")
    raw = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name.strip()[:100], prefix=raw[:10], key_hash=token_hash(raw),
                                    expires_at=expires_at)
    return token, raw


def api_token_user(*, raw: str):
    """The user a presented token acts as; 401 for an unknown, revoked or expired token."""
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(raw), revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        raise ApplicationError("invalid_token", "The bearer token is unknown, revoked or expired.", status=401)
    if not token.user.is_active:
        raise ApplicationError("forbidden", "The token's user is deactivated.", status=403)
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def api_tokens_revoke(*, tokens) -> int:
    """Revokes the given tokens (a queryset) now; returns how many were still live."""
    return tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
