"""The shapes of the names operators choose: experiment and layer slugs, salts, arm names."""

from __future__ import annotations

import re

ARM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,100}")
SALT = re.compile(r"[-a-zA-Z0-9_.:]{1,64}")
