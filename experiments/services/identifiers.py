"""The shapes of the names operators choose (experiment and layer slugs, salts, display names, arm names), and
the checks every service that takes them shares."""

from __future__ import annotations

import re
from typing import Any

from experiments.errors import ApplicationError

ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")
SALT = re.compile(r"[-a-zA-Z0-9_.:]{1,64}")


def names_check(*, slug: Any, name: Any, salt: Any) -> None:
    """Refuses a slug, display name or salt (None: a random one) of the wrong shape, next to its field."""
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise ApplicationError("invalid_slug", "slug is 1-100 letters, digits, '-' or '_'.", field="slug")
    if salt is not None and (not isinstance(salt, str) or not SALT.fullmatch(salt)):
        raise ApplicationError("invalid_salt", "salt is 1-64 letters, digits, '-', '_', '.' or ':' (leave it empty "
                               "for a random one).", field="salt")
    if not isinstance(name, str) or len(name) > 200:
        raise ApplicationError("invalid_name", "name is a text of at most 200 characters.", field="name")
