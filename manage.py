#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Writing or checking migrations reads the models only, which are the same in every posture: it needs no
# deployment secret, so it runs in development posture unless told otherwise (linters call it on a bare checkout).
NO_SECRET_COMMANDS = ("makemigrations",)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "recsite.settings")
    if sys.argv[1:2] and sys.argv[1] in NO_SECRET_COMMANDS:
        os.environ.setdefault("RECSITE_DEV", "1")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 -- load the settings now: Django would swallow the error and fail later
    except ImproperlyConfigured as exc:  # with "Apps aren't loaded yet" instead of this message
        sys.exit(f"recsite: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
