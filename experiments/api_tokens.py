"""The staff bearer tokens of the operator API (a model of the ``experiments`` app, imported by ``experiments.models``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ApiToken(models.Model):
    """A staff member's bearer token for the operator API (``Authorization: Bearer <token>``).

    Issued and revoked in the Django admin; only the SHA-256 of the token is stored (tokens are
    32 random bytes, so a fast hash is enough), and the token is shown once, when it is made.
    A request with it acts as its user, with that user's permissions.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'ci' or 'notebook'.")
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Optional; empty = no expiry.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(name=""), name="apitoken_name_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
